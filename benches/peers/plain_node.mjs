// A plain Node.js edge handler (no wasm, no fle): the same work as the reference design's, with
// crypto.publicEncrypt and a KeyObject cached at module load. The benchmark peer the Lambda@Edge
// package must stay close to. Loop protocol: see reference_edge.py.
//
//   node plain_node.mjs PUBLIC_KEY.pem EVENT.json
import { readFileSync } from 'node:fs';
import { constants, createPublicKey, publicEncrypt } from 'node:crypto';
import { createInterface } from 'node:readline';
import { serve } from './loop.mjs';

const FIELDS = ['fname', 'lname', 'email', 'ssn', 'dob', 'phone'];
const key = createPublicKey(readFileSync(process.argv[2]));

export const handler = async (event) => {
  const request = event.Records[0].cf.request;
  const people = JSON.parse(Buffer.from(request.body.data, 'base64').toString('utf8'));
  for (const person of people) {
    for (const name of FIELDS) {
      if (name in person) {
        const ciphertext = publicEncrypt(
          { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
          Buffer.from(person[name], 'utf8'),
        );
        person[name] = '#01#' + ciphertext.toString('base64') + '#10#';
      }
    }
  }
  request.body.action = 'replace';
  request.body.encoding = 'text';
  request.body.data = JSON.stringify(people);
  return request;
};

await serve(handler, readFileSync(process.argv[3], 'utf8'), createInterface({ input: process.stdin }));
