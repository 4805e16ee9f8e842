// Runs fle's Lambda@Edge package (an unzipped build-lambda-edge.sh output) as a benchmark peer.
// Loop protocol: see reference_edge.py. With "cold" as the second argument, instead prints the
// nanoseconds its cold start took (module load, wasm compile and instantiate, configuration) and
// exits.
//
//   node lambda_edge.mjs PACKAGE_DIR EVENT.json
//   node lambda_edge.mjs PACKAGE_DIR cold
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { serve } from './loop.mjs';

const start = process.hrtime.bigint();
const mod = await import(new URL('index.mjs', pathToFileURL(process.argv[2] + '/')));
const cold = process.hrtime.bigint() - start;
if (process.argv[3] === 'cold') {
  process.stdout.write(String(cold) + '\n');
} else {
  await serve(mod.handler, readFileSync(process.argv[3], 'utf8'), createInterface({ input: process.stdin }));
}
