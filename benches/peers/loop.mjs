// The loop protocol of the benchmark peers (see reference_edge.py), for Node.js handlers.
export async function serve(handler, eventText, lines) {
  process.stdout.write('ready\n');
  for await (const raw of lines) {
    const line = raw.trim();
    if (line === 'check') {
      process.stdout.write(JSON.stringify(await handler(JSON.parse(eventText))) + '\n');
      continue;
    }
    const n = Number(line);
    const start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) JSON.stringify(await handler(JSON.parse(eventText)));
    process.stdout.write(String(process.hrtime.bigint() - start) + '\n');
  }
}
