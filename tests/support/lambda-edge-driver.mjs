// Runs a Lambda@Edge package's handler on CloudFront events: JSON Lines in, one result per line out.
// The first output line is {"backend": "..."}, the RSA implementation the package loaded with;
// with FLE_DRIVER_REPORT_RSS=1 the last is {"max_rss_kib": N}, the process's peak resident set.
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
if (process.env.FLE_DRIVER_REPORT_RSS === '1') {
  process.stdout.write(JSON.stringify({ max_rss_kib: process.resourceUsage().maxRSS }) + '\n');
}
