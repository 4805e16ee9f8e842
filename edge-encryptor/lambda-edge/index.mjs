// fle edge encryptor for Lambda@Edge (Node.js 20/22, origin request). No npm dependencies.
//
// Lambda@Edge runs only managed runtimes, so the Rust core is a WebAssembly module
// (fle_edge.wasm). This loader gives it RSA-OAEP-SHA256 and random bytes from Node's crypto
// (OpenSSL, one cached KeyObject per key), P-256 key pairs and ECDH for envelope version 2, the
// time (for reuse_encapsulation's age limit), and exports `handler`. The configuration (fle.toml,
// public keys inline) sits next to this file in the package, since Lambda@Edge has no
// environment variables. Everything else, including every security rule, is in the Rust core.
//
// Fails closed: if the module cannot give an answer, the viewer gets a 500 and the origin
// gets nothing.

import { readFileSync } from 'node:fs';
import { constants, createECDH, createPublicKey, publicEncrypt, randomFillSync } from 'node:crypto';

const here = new URL('.', import.meta.url);
const wasmModule = new WebAssembly.Module(readFileSync(new URL('fle_edge.wasm', here)));
const configText = readFileSync(new URL('fle.toml', here));

// FLE_HOST_RSA=0 selects the pure-Rust RSA inside the module (for comparison and for hosts
// without OpenSSL); Lambda@Edge has no environment variables, so there it is always the host's.
const hostRsa = process.env.FLE_HOST_RSA === '0' ? 0 : 1;

let exports_;
let keys;

function view(ptr, len) {
  // A fresh view each time: memory.buffer changes when the module's memory grows.
  return new Uint8Array(exports_.memory.buffer, ptr, len);
}

const imports = {
  fle_host: {
    load_public_key(ptr, len) {
      try {
        keys.push(createPublicKey({ key: Buffer.from(view(ptr, len)), format: 'der', type: 'spki' }));
        return keys.length - 1;
      } catch {
        return -1;
      }
    },
    rsa_oaep_sha256_encrypt(key, inPtr, inLen, outPtr, outLen) {
      try {
        const ciphertext = publicEncrypt(
          { key: keys[key], padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
          view(inPtr, inLen),
        );
        if (ciphertext.length !== outLen) return 1;
        view(outPtr, outLen).set(ciphertext);
        return 0;
      } catch {
        return 1;
      }
    },
    // Envelope version 2 (hpke-p256): a fresh ephemeral key pair, its public point (65 bytes,
    // uncompressed) and its ECDH secret with the recipient's point (32 bytes). The secret's
    // buffer is wiped once copied; the ephemeral private key goes with the ECDH object.
    p256_encap(peerPtr, encPtr, dhPtr) {
      let dh;
      try {
        const ecdh = createECDH('prime256v1');
        const enc = ecdh.generateKeys();
        dh = ecdh.computeSecret(view(peerPtr, 65));
        if (enc.length !== 65 || dh.length !== 32) return 1;
        view(encPtr, 65).set(enc);
        view(dhPtr, 32).set(dh);
        return 0;
      } catch {
        return 1;
      } finally {
        if (dh) dh.fill(0);
      }
    },
    // Envelope version 2 with reuse_encapsulation: the time for its age limit, in milliseconds.
    now_ms() {
      return Date.now();
    },
    random_fill(ptr, len) {
      try {
        randomFillSync(view(ptr, len));
        return 0;
      } catch {
        return 1;
      }
    },
  },
};

// Passes `input` (bytes) to an exported function; returns {status, bytes} (a copy of the
// result's payload).
function call(fn, input, ...args) {
  const ptr = exports_.fle_alloc(input.length);
  view(ptr, input.length).set(input);
  const result = fn(ptr, input.length, ...args);
  const header = new DataView(exports_.memory.buffer, result, 8);
  const status = header.getUint32(0, true);
  const len = header.getUint32(4, true);
  const bytes = Buffer.from(view(result + 8, len));
  exports_.fle_free(result, 8 + len);
  return { status, bytes };
}

function instantiate() {
  keys = [];
  exports_ = new WebAssembly.Instance(wasmModule, imports).exports;
  const { status, bytes } = call(exports_.fle_init, configText, hostRsa);
  const text = bytes.toString('utf8');
  if (status !== 0) throw new Error(`fle: invalid configuration: ${text}`);
  return text;
}

// At module load (cold start): a bad configuration fails the deployment's first invocation
// loudly instead of letting requests through.
export const backend = instantiate();

const failClosed = {
  status: '500',
  statusDescription: 'Internal Server Error',
  headers: {
    'content-type': [{ key: 'Content-Type', value: 'application/json' }],
    'cache-control': [{ key: 'Cache-Control', value: 'no-store' }],
  },
  bodyEncoding: 'text',
  body: '{"error":"edge_failure","message":"the request could not be encrypted"}',
};

export const handler = async (event) => {
  try {
    const { status, bytes } = call(exports_.fle_handle, Buffer.from(JSON.stringify(event), 'utf8'));
    // 0: a generated response; 2: forward the request as it is; 3: forward it with the members
    // the module rewrote (each length u32 LE, 0xffffffff for a member that stays).
    if (status === 0) return JSON.parse(bytes.toString('utf8'));
    if (status === 2 || status === 3) {
      const request = event.Records[0].cf.request;
      if (status === 3) {
        const queryLen = bytes.readUInt32LE(0);
        const bodyLen = bytes.readUInt32LE(4);
        let at = 8;
        if (queryLen !== 0xffffffff) {
          request.querystring = bytes.toString('utf8', at, at + queryLen);
          at += queryLen;
        }
        if (bodyLen !== 0xffffffff) {
          const data = bytes.toString('utf8', at, at + bodyLen);
          request.body = { inputTruncated: false, action: 'replace', encoding: 'text', data };
          at += bodyLen;
        }
        if (at !== bytes.length) throw new Error('malformed result from the module');
      }
      return request;
    }
    console.error(`fle: ${bytes.toString('utf8')}`);
  } catch (err) {
    // A trap leaves the instance unusable: start a fresh one for the next request.
    console.error(`fle: ${err && err.message}`);
    try {
      instantiate();
    } catch (e) {
      console.error(`fle: ${e && e.message}`);
    }
  }
  return failClosed;
};
