// Runs a Lambda@Edge package's handler on CloudFront events: JSON Lines in, one result per line out.
// The first output line is {"backend": "..."}, the RSA implementation the package loaded with.
//
//   node lambda-edge-driver.mjs PACKAGE_DIR < events.jsonl
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const mod = await import(new URL('index.mjs', pathToFileURL(process.argv[2] + '/')));
process.stdout.write(JSON.stringify({ backend: mod.backend }) + '\n');
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const result = await mod.handler(JSON.parse(line));
  process.stdout.write(JSON.stringify(result) + '\n');
}
