//! The wasm boundary: the one module of fle with `unsafe` code. Each block says why it is sound.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::path::Path;

use fle_edge_encryptor::{EdgeEncryptor, EventChange};
use fle_shared::backend::{check_encrypt_args, rustcrypto::RustCryptoBackend};
use fle_shared::backend::{Backend, BackendError, EncryptionKey, P256Encap, P256Recipient};
use fle_shared::{P256PublicKey, RsaPublicKey};
use zeroize::Zeroizing;

const HOST_BACKEND: &str = "node-crypto";

#[link(wasm_import_module = "fle_host")]
extern "C" {
    fn load_public_key(der_ptr: *const u8, der_len: usize) -> i32;
    fn rsa_oaep_sha256_encrypt(
        key: i32,
        in_ptr: *const u8,
        in_len: usize,
        out_ptr: *mut u8,
        out_len: usize,
    ) -> i32;
    fn random_fill(ptr: *mut u8, len: usize) -> i32;
    fn p256_encap(peer_ptr: *const u8, enc_ptr: *mut u8, dh_ptr: *mut u8) -> i32;
    fn now_ms() -> f64;
}

/// The host's clock (`Date.now()`), for `reuse_encapsulation`'s age limit:
/// wasm32-unknown-unknown has none of its own (`std::time::Instant::now` panics there).
#[derive(Debug)]
struct HostClock;

impl fle_edge_encryptor::Clock for HostClock {
    fn now_ms(&self) -> Option<u64> {
        // SAFETY: no arguments, no memory shared; the host returns a number.
        let ms = unsafe { now_ms() };
        // Not a time (NaN, negative, beyond 2^53): no time, so nothing is reused.
        (ms.is_finite() && (0.0..=9_007_199_254_740_992.0).contains(&ms)).then_some(ms as u64)
    }
}

fn host_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    // SAFETY: the pointer and length describe `buf`, which is valid for writes for the whole
    // call; the host writes at most `len` bytes and keeps no reference after returning.
    let rc = unsafe { random_fill(buf.as_mut_ptr(), buf.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(getrandom::Error::from(
            NonZeroU32::new(getrandom::Error::CUSTOM_START + 1).unwrap_or(NonZeroU32::MIN),
        ))
    }
}

getrandom::register_custom_getrandom!(host_random);

/// RSA-OAEP-SHA256 by the host (Node.js `crypto.publicEncrypt` with a cached `KeyObject`).
#[derive(Debug)]
struct HostBackend;

#[derive(Debug)]
struct HostKey {
    handle: i32,
    modulus_len: usize,
}

impl Backend for HostBackend {
    fn name(&self) -> &'static str {
        HOST_BACKEND
    }

    fn encryption_key(&self, key: &RsaPublicKey) -> Result<Box<dyn EncryptionKey>, BackendError> {
        let der = key.spki_der();
        // SAFETY: `der` is a live slice for the whole call; the host copies it and keeps no
        // reference into our memory.
        let handle = unsafe { load_public_key(der.as_ptr(), der.len()) };
        if handle < 0 {
            return Err(BackendError::KeyRejected {
                backend: HOST_BACKEND,
                reason: "the host refused the public key".into(),
            });
        }
        Ok(Box::new(HostKey {
            handle,
            modulus_len: key.modulus_len(),
        }))
    }

    /// P-256 by the host (Node.js `crypto.createECDH('prime256v1')`, OpenSSL), far faster than
    /// the pure-Rust `p256` compiled to wasm.
    fn p256_recipient(&self, key: &P256PublicKey) -> Result<Box<dyn P256Recipient>, BackendError> {
        Ok(Box::new(HostP256 {
            point: *key.uncompressed_point(),
        }))
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), BackendError> {
        getrandom::getrandom(out).map_err(|e| BackendError::Random(e.to_string()))
    }
}

/// A P-256 recipient whose ephemeral key pair and ECDH the host computes.
#[derive(Debug)]
struct HostP256 {
    point: [u8; 65],
}

impl P256Recipient for HostP256 {
    fn encap(&self) -> Result<P256Encap, BackendError> {
        let mut enc = [0u8; 65];
        let mut dh = Zeroizing::new([0u8; 32]);
        // SAFETY: `self.point` is 65 readable bytes, `enc` 65 and `dh` 32 writable bytes, all
        // live for the whole call and not overlapping; the host reads the point, writes exactly
        // those lengths and keeps no reference after returning.
        let rc = unsafe { p256_encap(self.point.as_ptr(), enc.as_mut_ptr(), dh.as_mut_ptr()) };
        if rc != 0 || enc[0] != 0x04 {
            return Err(BackendError::Encrypt {
                backend: HOST_BACKEND,
            });
        }
        Ok(P256Encap { enc, dh })
    }
}

impl EncryptionKey for HostKey {
    fn modulus_len(&self) -> usize {
        self.modulus_len
    }

    fn encrypt(&self, plaintext: &[u8], out: &mut [u8]) -> Result<(), BackendError> {
        check_encrypt_args(self.modulus_len, plaintext, out)?;
        // SAFETY: both slices are live for the whole call and do not overlap (one is shared, the
        // other exclusive); the host reads `plaintext`, writes exactly `out.len()` bytes to `out`
        // and keeps no reference to either after returning.
        let rc = unsafe {
            rsa_oaep_sha256_encrypt(
                self.handle,
                plaintext.as_ptr(),
                plaintext.len(),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(BackendError::Encrypt {
                backend: HOST_BACKEND,
            })
        }
    }
}

thread_local! {
    // wasm32-unknown-unknown runs one thread; the encryptor lives as long as the instance.
    static EDGE: RefCell<Option<EdgeEncryptor>> = const { RefCell::new(None) };
}

/// Allocates `len` bytes for the host to fill; ownership passes to whoever frees it.
#[no_mangle]
pub extern "C" fn fle_alloc(len: usize) -> *mut u8 {
    Box::into_raw(vec![0u8; len].into_boxed_slice()).cast::<u8>()
}

/// Frees a buffer from [`fle_alloc`] or a result.
///
/// # Safety
/// `ptr` and `len` must come from one `fle_alloc(len)` call or one result of `8 + len` bytes,
/// not freed before.
#[no_mangle]
pub unsafe extern "C" fn fle_free(ptr: *mut u8, len: usize) {
    // SAFETY: per the contract, (ptr, len) is exactly a boxed slice we leaked and still own.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Takes back ownership of an input buffer.
///
/// # Safety
/// As for [`fle_free`].
unsafe fn take_input(ptr: *mut u8, len: usize) -> Box<[u8]> {
    // SAFETY: forwarded contract of the exported caller.
    unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) }
}

fn result(status: u32, message: &[u8]) -> *mut u8 {
    result_of(status, &[message])
}

/// A result whose payload is `parts` one after the other (cut at `u32::MAX` bytes), written
/// once into the buffer the host reads.
fn result_of(status: u32, parts: &[&[u8]]) -> *mut u8 {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(total).unwrap_or(u32::MAX);
    let mut buf = Vec::with_capacity(8 + len as usize);
    buf.extend_from_slice(&status.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    for part in parts {
        let room = 8 + len as usize - buf.len();
        buf.extend_from_slice(&part[..part.len().min(room)]);
    }
    Box::into_raw(buf.into_boxed_slice()).cast::<u8>()
}

/// Loads the configuration (TOML, keys inline). `host_rsa` 1: RSA by the host; 0: pure Rust.
///
/// # Safety
/// `(ptr, len)` must come from `fle_alloc(len)`; this function frees it.
#[no_mangle]
pub unsafe extern "C" fn fle_init(ptr: *mut u8, len: usize, host_rsa: i32) -> *mut u8 {
    // SAFETY: forwarded contract.
    let input = unsafe { take_input(ptr, len) };
    let Ok(text) = std::str::from_utf8(&input) else {
        return result(1, b"configuration is not UTF-8");
    };
    let backend: &dyn Backend = if host_rsa == 1 {
        &HostBackend
    } else {
        &RustCryptoBackend
    };
    match EdgeEncryptor::from_toml_str(text, Path::new("/"), backend) {
        Ok(edge) => {
            let edge = edge.with_clock(HostClock);
            EDGE.with(|cell| *cell.borrow_mut() = Some(edge));
            result(0, backend.name().as_bytes())
        }
        Err(e) => result(1, e.to_string().as_bytes()),
    }
}

/// Handles one origin-request event (JSON text; `EdgeEncryptor::rewrite_event_json`). The
/// result's status says what the host does with the event's `request` object:
/// - 0: return the generated response, the payload's JSON;
/// - 2: return the request as it is (no payload);
/// - 3: replace members, then return it. Payload: `[query_len: u32 LE][body_len: u32 LE]`,
///   then the new query string and the new body text (UTF-8), a length of `u32::MAX` meaning
///   "unchanged" (and no bytes). The body member becomes `{inputTruncated: false, action:
///   "replace", encoding: "text", data: body}`.
///
/// The host keeps its parsed event instead of parsing the module's JSON of the whole request.
///
/// # Safety
/// `(ptr, len)` must come from `fle_alloc(len)`; this function frees it.
#[no_mangle]
pub unsafe extern "C" fn fle_handle(ptr: *mut u8, len: usize) -> *mut u8 {
    // SAFETY: forwarded contract.
    let input = unsafe { take_input(ptr, len) };
    let Ok(event) = std::str::from_utf8(&input) else {
        return result(1, b"the event is not UTF-8");
    };
    EDGE.with(|cell| match cell.borrow().as_ref() {
        Some(edge) => match edge.rewrite_event_json(event) {
            EventChange::Respond { response, .. } => result(0, response.as_bytes()),
            EventChange::Rewritten {
                querystring, body, ..
            } => {
                let (query, body) = (querystring.as_deref(), body.as_deref());
                // Each length, or u32::MAX for a member that stays.
                let len = |part: Option<&str>| match part {
                    None => Some(u32::MAX),
                    Some(text) => u32::try_from(text.len()).ok().filter(|&n| n < u32::MAX),
                };
                let (Some(query_len), Some(body_len)) = (len(query), len(body)) else {
                    return result(1, b"rewritten request too large");
                };
                result_of(
                    3,
                    &[
                        &query_len.to_le_bytes(),
                        &body_len.to_le_bytes(),
                        query.unwrap_or_default().as_bytes(),
                        body.unwrap_or_default().as_bytes(),
                    ],
                )
            }
            EventChange::Unchanged => result(2, b""),
            _ => result(1, b"unknown outcome"),
        },
        None => result(1, b"fle_init was not called"),
    })
}
