// open-envelope.mjs: opens fle envelopes (versions 1 and 2) with your own private key.
// Node.js 20 or later; `npm install @hpke/core@1.9.0` for the P-256 (hpke-p256) envelopes.
//
//     node open-envelope.mjs KEY_ID PRIVATE_KEY_PEM < envelopes.txt
//
// KEY_ID is the key's id in fle's keyring ("01"); PRIVATE_KEY_PEM a PKCS#8 PEM file
// ("-----BEGIN PRIVATE KEY-----"), RSA 2048/3072/4096 or EC P-256. Each stdin line is one whole
// envelope with the default markers (#01#...#10#), optionally followed by a space and the hex of
// the path it is bound to (version 2 path binding; "-" for the empty path). Prints one line per
// input line: the hex of the opened message ("-" if empty) or "error: <reason>".
// The format is docs/ENVELOPE.md; section numbers below refer to it.

import crypto from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { Aes256Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";

const MAX_MESSAGE = 1 << 20; // 5.5
const TAG_LEN = 16;
const DATA_KEY_PREFIX = Buffer.from([0x00, 0xff, ...Buffer.from("fle-v2-dk")]); // 5.4
const RSA_OAEP_INFO = Buffer.from("fle v2 rsa-oaep"); // 5.4: the HKDF info of rsa-oaep
const MAX_PATH = 65535; // 5.3

class EnvelopeError extends Error {}

// RFC 9180 suite of 5.4: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM.
const suite = new CipherSuite({
  kem: new DhkemP256HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

function u32be(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

// Standard padded base64, canonical (section 2). Buffer.from(_, "base64") alone accepts almost
// anything (URL-safe characters, missing padding, junk), so check the text and re-encode.
function base64Canonical(text) {
  if (text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new EnvelopeError("payload is not standard padded base64");
  }
  const raw = Buffer.from(text, "base64");
  if (raw.toString("base64") !== text) {
    throw new EnvelopeError("payload is not canonical base64");
  }
  return raw;
}

async function loadKey(keyId, pemFile) {
  if (!/^[A-Za-z0-9_-]{1,32}$/.test(keyId)) {
    throw new EnvelopeError("key id must be 1-32 of A-Z a-z 0-9 - _");
  }
  const pem = readFileSync(pemFile, "ascii");
  if (!pem.includes("-----BEGIN PRIVATE KEY-----")) {
    throw new EnvelopeError("expected a PKCS#8 PEM file (-----BEGIN PRIVATE KEY-----)");
  }
  const key = crypto.createPrivateKey(pem);
  const id = Buffer.from(keyId, "ascii");
  const opener = {
    keyId,
    key,
    prefix: `#${keyId}#`,
    suffix: `#${[...keyId].reverse().join("")}#`,
    kctx: Buffer.concat([Buffer.from("fle v2\0", "ascii"), Buffer.from([id.length]), id]), // 5.2
    k: 0, // RSA modulus length in bytes; 0 for P-256
    recipientKey: null, // P-256: the key pair, as Web Crypto keys, for @hpke/core
  };
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails.modulusLength;
    if (![2048, 3072, 4096].includes(bits)) {
      throw new EnvelopeError("RSA key must be 2048, 3072 or 4096 bits");
    }
    opener.k = bits / 8;
  } else if (key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails.namedCurve === "prime256v1") {
    const ecdh = { name: "ECDH", namedCurve: "P-256" };
    const pkcs8 = key.export({ type: "pkcs8", format: "der" });
    const spki = crypto.createPublicKey(key).export({ type: "spki", format: "der" });
    opener.recipientKey = {
      privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, ecdh, false, ["deriveBits"]),
      publicKey: await crypto.subtle.importKey("spki", spki, ecdh, true, []),
    };
  } else {
    throw new EnvelopeError("private key must be RSA or EC P-256");
  }
  return opener;
}

// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label (section 2). Node's `oaepHash` sets
// both the OAEP hash and the MGF1 hash.
function rsaOaepSha256(opener, ciphertext) {
  try {
    return crypto.privateDecrypt(
      { key: opener.key, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
      ciphertext,
    );
  } catch {
    throw new EnvelopeError("RSA-OAEP decryption failed");
  }
}

// Sections 3 and 4: strip the markers, tell version 1 from version 2.
async function openEnvelope(opener, envelope, path) {
  const { prefix, suffix, k } = opener;
  if (envelope.length < prefix.length + suffix.length || !envelope.startsWith(prefix) || !envelope.endsWith(suffix)) {
    throw new EnvelopeError(`not an envelope of key ${opener.keyId} (markers ${prefix} ${suffix})`);
  }
  const payload = envelope.slice(prefix.length, envelope.length - suffix.length);
  if (k > 0 && payload.length === 4 * Math.ceil(k / 3)) {
    // Under an RSA key, exactly the version-1 length is version 1.
    const ciphertext = base64Canonical(payload);
    if (ciphertext.length !== k) {
      throw new EnvelopeError(`version 1 payload does not decode to ${k} bytes`);
    }
    const message = rsaOaepSha256(opener, ciphertext);
    if (message.subarray(0, DATA_KEY_PREFIX.length).equals(DATA_KEY_PREFIX)) {
      // A version-2 encapsulation re-labelled as a value: never release a data key.
      throw new EnvelopeError("a version-2 data key presented as a version-1 value");
    }
    return message;
  }
  const token = base64Canonical(payload);
  if (token[0] !== 0x02) {
    throw new EnvelopeError(`unsupported version 0x${token[0].toString(16).padStart(2, "0")}`);
  }
  return openV2(opener, token, path);
}

// Section 5.
async function openV2(opener, token, path) {
  const { k, kctx } = opener;
  if (token.length < 2) {
    throw new EnvelopeError("token truncated");
  }
  const flags = token[1];
  if ((flags & ~0x01) !== 0) {
    throw new EnvelopeError(`unknown flag bits 0x${flags.toString(16).padStart(2, "0")}`);
  }
  const encapLen = k > 0 ? k : 33;
  const headerLen = 2 + encapLen + 4;
  const sealedLen = token.length - headerLen;
  if (sealedLen < TAG_LEN) {
    throw new EnvelopeError("token too short");
  }
  if (sealedLen > MAX_MESSAGE + TAG_LEN) {
    throw new EnvelopeError("token too long");
  }
  const encap = token.subarray(2, 2 + encapLen);
  const index = token.subarray(2 + encapLen, headerLen);
  const sealed = token.subarray(headerLen);

  const info = Buffer.concat([kctx, index]); // info_i = kctx || u32be(i) (hpke-p256)
  const bound = Buffer.concat([kctx, token.subarray(0, 2), index]); // kctx || version || flags || u32be(i)
  let aad; // aad_i = that [ || u32be(len(path)) || path ]
  if (flags & 0x01) {
    if (path === null) {
      throw new EnvelopeError("token is path-bound: a path is required");
    }
    if (path.length > MAX_PATH) {
      throw new EnvelopeError("path longer than 65535 bytes");
    }
    aad = Buffer.concat([bound, u32be(path.length), path]);
  } else {
    aad = bound; // a token without the flag opens wherever it is found
  }

  if (k > 0) {
    // rsa-oaep (5.4): unwrap 0x00 0xFF "fle-v2-dk" + the 32-byte data key;
    // HKDF-SHA256(salt "", info "fle v2 rsa-oaep", L = 44) gives key and base_nonce;
    // the nonce is base_nonce XOR the index (in its last four bytes).
    const unwrapped = rsaOaepSha256(opener, encap);
    if (unwrapped.length !== DATA_KEY_PREFIX.length + 32 || !unwrapped.subarray(0, DATA_KEY_PREFIX.length).equals(DATA_KEY_PREFIX)) {
      throw new EnvelopeError("unwrapped data key is not the prefix and 32 bytes");
    }
    const dataKey = unwrapped.subarray(DATA_KEY_PREFIX.length);
    const okm = Buffer.from(crypto.hkdfSync("sha256", dataKey, Buffer.alloc(0), RSA_OAEP_INFO, 44));
    const nonce = okm.subarray(32, 44);
    for (let i = 0; i < 4; i++) nonce[8 + i] ^= index[i];
    const decipher = crypto.createDecipheriv("aes-256-gcm", okm.subarray(0, 32), nonce, {
      authTagLength: TAG_LEN,
    });
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
    const head = decipher.update(sealed.subarray(0, sealed.length - TAG_LEN));
    try {
      // update() returns plaintext before the tag is checked: use none of it unless final() passes.
      return Buffer.concat([head, decipher.final()]);
    } catch {
      head.fill(0);
      throw new EnvelopeError("AES-GCM open failed");
    }
  }

  // hpke-p256 (5.4): the token stores the ephemeral key compressed (33 bytes); HPKE's `enc` is
  // the 65-byte uncompressed point (it enters the key schedule), so decompress it first.
  if (encap[0] !== 0x02 && encap[0] !== 0x03) {
    throw new EnvelopeError("encapsulation is not a compressed point");
  }
  let enc;
  try {
    enc = crypto.ECDH.convertKey(encap, "prime256v1", undefined, undefined, "uncompressed");
  } catch {
    throw new EnvelopeError("encapsulation is not a point on P-256");
  }
  try {
    // SetupBaseR(enc, skR, info_i).Open(aad_i, sealed): the context's first message.
    const recipient = await suite.createRecipientContext({ recipientKey: opener.recipientKey, enc, info });
    return Buffer.from(await recipient.open(sealed, aad));
  } catch {
    throw new EnvelopeError("HPKE open failed");
  }
}

async function main(argv) {
  if (argv.length !== 2) {
    process.stderr.write("usage: node open-envelope.mjs KEY_ID PRIVATE_KEY_PEM < envelopes\n");
    return 2;
  }
  let opener;
  try {
    opener = await loadKey(argv[0], argv[1]);
  } catch (e) {
    process.stderr.write(`open-envelope: ${e.message}\n`);
    return 2;
  }
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    let result;
    try {
      const fields = line.trim().split(" ");
      if (fields.length > 2 || fields[0] === "") {
        throw new EnvelopeError("expected `ENVELOPE [PATH_HEX]`");
      }
      let path = null;
      if (fields.length === 2) {
        if (fields[1] !== "-" && !/^([0-9A-Fa-f]{2})+$/.test(fields[1])) {
          throw new EnvelopeError("path is not hex");
        }
        path = fields[1] === "-" ? Buffer.alloc(0) : Buffer.from(fields[1], "hex");
      }
      const message = await openEnvelope(opener, fields[0], path);
      result = message.length === 0 ? "-" : message.toString("hex");
    } catch (e) {
      // never crash on a bad line
      result = `error: ${e instanceof EnvelopeError ? e.message : e.name}`;
    }
    process.stdout.write(result + "\n");
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
