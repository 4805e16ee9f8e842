//! The Lambda@Edge build of fle's edge encryptor: a `wasm32-unknown-unknown` module, run by the
//! Node.js loader `edge-encryptor/lambda-edge/index.mjs` (Lambda@Edge runs only managed Node.js
//! and Python runtimes).
//!
//! The Rust core does everything (event parsing, field selection, size and marker rules, base64,
//! envelopes) except the RSA public-key operation itself, which the host performs with Node's
//! `crypto` (OpenSSL, a cached `KeyObject` per key): pure-Rust RSA in wasm is about 60× slower
//! than OpenSSL. The pure-Rust backend remains available (`fle_init` with `host_rsa = 0`).
//!
//! # The ABI
//!
//! Host imports (module `fle_host`), all synchronous:
//! - `load_public_key(der_ptr, der_len) -> i32`: a DER SubjectPublicKeyInfo; returns a key
//!   handle ≥ 0, or −1 if refused.
//! - `rsa_oaep_sha256_encrypt(key, in_ptr, in_len, out_ptr, out_len) -> i32`: RSA-OAEP with
//!   SHA-256 and MGF1-SHA-256, empty label, writing exactly `out_len` bytes; 0 on success.
//! - `random_fill(ptr, len) -> i32`: cryptographically secure random bytes; 0 on success.
//! - `p256_encap(peer_ptr, enc_ptr, dh_ptr) -> i32`: a fresh P-256 key pair's uncompressed
//!   public point (65 bytes) and its ECDH secret with the 65-byte point at `peer_ptr` (32
//!   bytes); 0 on success.
//! - `now_ms() -> f64`: the host's time in milliseconds (`Date.now()`), for
//!   `reuse_encapsulation`'s age limit (wasm32-unknown-unknown has no clock of its own). A value
//!   that is not a time (NaN, negative) means no time: nothing is reused then.
//!
//! Exports:
//! - `memory`; `fle_alloc(len) -> ptr` and `fle_free(ptr, len)` for buffers crossing the boundary.
//! - `fle_init(config_ptr, config_len, host_rsa) -> result` with the TOML configuration (keys
//!   inline, as `build-lambda-edge.sh` bundles it); `host_rsa` 1 uses the host's RSA, 0 the
//!   pure-Rust backend.
//! - `fle_handle(event_ptr, event_len) -> result` with one origin-request event as JSON: what
//!   to do with the event's `request` object (status 0: return the generated response, the
//!   payload's JSON; 2: return the request unchanged; 3: replace its `querystring` and/or
//!   `body`, the payload being `[query_len: u32 LE][body_len: u32 LE]` and both texts,
//!   `u32::MAX` marking a member that stays). The host keeps the event object it was given
//!   rather than parsing a JSON copy of the whole request.
//!
//! Inputs passed to `fle_init`/`fle_handle` are owned (and freed) by the module. A `result` is
//! a pointer to `[status: u32 LE][len: u32 LE][len bytes]`: a status above and its payload, or
//! status 1 and an error message (UTF-8); the host frees it with `fle_free(result, 8 + len)`.
//!
//! On targets other than wasm32 this crate is empty.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod wasm;
