//! The RustCrypto backend (`rsa` crate): pure Rust, for `wasm32-unknown-unknown` and other
//! targets without a C toolchain. About 8× slower than aws-lc-rs natively.
//!
//! Public-key operations only: the `rsa` crate's private-key operations are subject to the
//! Marvin timing advisory (RUSTSEC-2023-0071), so fle never decrypts with it.
//!
//! Randomness comes from `getrandom`. On `wasm32-unknown-unknown` the final module must register
//! a source with `getrandom::register_custom_getrandom!` (the edge package does, over one host
//! import); native targets use the operating system.

use std::fmt;

use rand_core::{CryptoRng, RngCore};
use rsa::pkcs8::DecodePublicKey;
use rsa::Oaep;

use zeroize::Zeroizing;

use super::{check_encrypt_args, Backend, BackendError, EncryptionKey, P256Encap, P256Recipient};
use crate::key::{P256PublicKey, RsaPublicKey};

const NAME: &str = "rustcrypto-rsa";

/// RSA-OAEP-SHA256 with the pure-Rust `rsa` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCryptoBackend;

impl Backend for RustCryptoBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn encryption_key(&self, key: &RsaPublicKey) -> Result<Box<dyn EncryptionKey>, BackendError> {
        let key = rsa::RsaPublicKey::from_public_key_der(key.spki_der()).map_err(|e| {
            BackendError::KeyRejected {
                backend: NAME,
                reason: e.to_string(),
            }
        })?;
        Ok(Box::new(RustCryptoKey { key }))
    }

    fn p256_recipient(&self, key: &P256PublicKey) -> Result<Box<dyn P256Recipient>, BackendError> {
        let key = p256::PublicKey::from_sec1_bytes(key.uncompressed_point()).map_err(|e| {
            BackendError::KeyRejected {
                backend: NAME,
                reason: e.to_string(),
            }
        })?;
        Ok(Box::new(RustCryptoP256 { key }))
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), BackendError> {
        getrandom::getrandom(out).map_err(|e| BackendError::Random(e.to_string()))
    }
}

/// A P-256 recipient for the pure-Rust `p256` crate.
#[derive(Debug)]
struct RustCryptoP256 {
    key: p256::PublicKey,
}

impl P256Recipient for RustCryptoP256 {
    fn encap(&self) -> Result<P256Encap, BackendError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let mut rng = CheckedRng { failure: None };
        let ephemeral = p256::ecdh::EphemeralSecret::random(&mut rng);
        if let Some(failure) = rng.failure {
            return Err(BackendError::Random(failure.to_string()));
        }
        let enc: [u8; 65] = ephemeral
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .try_into()
            .map_err(|_| BackendError::Encrypt { backend: NAME })?;
        let shared = ephemeral.diffie_hellman(&self.key);
        let mut dh = Zeroizing::new([0u8; 32]);
        dh.copy_from_slice(shared.raw_secret_bytes());
        Ok(P256Encap { enc, dh })
    }
}

struct RustCryptoKey {
    key: rsa::RsaPublicKey,
}

impl fmt::Debug for RustCryptoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RustCryptoKey")
            .field("modulus_len", &self.modulus_len())
            .finish()
    }
}

impl EncryptionKey for RustCryptoKey {
    fn modulus_len(&self) -> usize {
        rsa::traits::PublicKeyParts::size(&self.key)
    }

    fn encrypt(&self, plaintext: &[u8], out: &mut [u8]) -> Result<(), BackendError> {
        check_encrypt_args(self.modulus_len(), plaintext, out)?;
        let mut rng = CheckedRng { failure: None };
        let ciphertext = self
            .key
            .encrypt(&mut rng, Oaep::new::<sha2::Sha256>(), plaintext)
            .map_err(|_| BackendError::Encrypt { backend: NAME })?;
        if let Some(failure) = rng.failure {
            return Err(BackendError::Random(failure.to_string()));
        }
        if ciphertext.len() != out.len() {
            return Err(BackendError::Encrypt { backend: NAME });
        }
        out.copy_from_slice(&ciphertext);
        Ok(())
    }
}

/// `getrandom` as an RNG that records failure instead of panicking (as `OsRng` would): the
/// caller discards what it computed and reports [`BackendError::Random`].
struct CheckedRng {
    failure: Option<getrandom::Error>,
}

impl RngCore for CheckedRng {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if let Err(e) = getrandom::getrandom(dest) {
            self.failure.get_or_insert(e);
            // Whatever is computed from here on is discarded. A fixed non-zero filler keeps
            // callers that draw until they get a usable value (a non-zero P-256 scalar) from
            // looping forever on zeros.
            dest.fill(0x5a);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        getrandom::getrandom(dest).map_err(|e| rand_core::Error::from(e.code()))
    }
}

impl CryptoRng for CheckedRng {}
