//! RSA-OAEP-SHA256 public-key encryption behind one small trait.
//!
//! In the spirit of rustls' `CryptoProvider`: everything above this module asks a [`Backend`]
//! for an [`EncryptionKey`] and never names a crypto crate. Implementations:
//!
//! | backend | feature | where |
//! |---|---|---|
//! | [`aws_lc::AwsLcBackend`] | `aws-lc` (default) | native: within a few percent of OpenSSL, FIPS-capable |
//! | [`rustcrypto::RustCryptoBackend`] | `rustcrypto` (default) | pure Rust: builds for `wasm32-unknown-unknown` |
//!
//! The Lambda@Edge package adds a third, implemented by the Node.js host. All of them produce
//! the same format (OAEP with SHA-256, MGF1-SHA-256, empty label), so any backend's ciphertext
//! opens with any other's private key, with OpenSSL and with KMS `RSAES_OAEP_SHA_256`.
//!
//! Private-key decryption is not part of this trait: it is done by aws-lc-rs only
//! ([`crate::OaepPrivateKey`]), never by the `rsa` crate (RUSTSEC-2023-0071).

use std::fmt;

use zeroize::Zeroizing;

use crate::key::{P256PublicKey, RsaPublicKey};

#[cfg(feature = "aws-lc")]
pub mod aws_lc;
#[cfg(feature = "rustcrypto")]
pub mod rustcrypto;

/// A provider of RSA-OAEP-SHA256 public-key encryption.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and benchmark labels (`aws-lc-rs`, `rustcrypto-rsa`).
    fn name(&self) -> &'static str;

    /// Prepares `key` for repeated encryption (parsing it once).
    fn encryption_key(&self, key: &RsaPublicKey) -> Result<Box<dyn EncryptionKey>, BackendError>;

    /// Prepares a P-256 recipient key for envelope version 2's `hpke-p256` encapsulation.
    ///
    /// The default refuses: a backend that cannot do P-256 writes RSA envelopes only.
    fn p256_recipient(&self, key: &P256PublicKey) -> Result<Box<dyn P256Recipient>, BackendError> {
        let _ = key;
        Err(BackendError::KeyRejected {
            backend: self.name(),
            reason: "this backend has no P-256 support".into(),
        })
    }

    /// Fills `out` with cryptographically secure random bytes (envelope version 2's data keys).
    fn fill_random(&self, out: &mut [u8]) -> Result<(), BackendError>;
}

/// A P-256 recipient public key prepared by a [`Backend`]: the sender's half of DHKEM(P-256).
pub trait P256Recipient: Send + Sync + fmt::Debug {
    /// Generates a fresh ephemeral key pair `(skE, pkE)` and returns `pkE` with
    /// `DH(skE, pkR)`; `skE` is gone when this returns.
    fn encap(&self) -> Result<P256Encap, BackendError>;
}

/// What [`P256Recipient::encap`] returns.
pub struct P256Encap {
    /// The ephemeral public key, SEC 1 uncompressed (`0x04 ‖ x ‖ y`): HPKE's `enc`.
    pub enc: [u8; 65],
    /// The Diffie-Hellman shared secret: the x-coordinate of `skE · pkR` (zeroized on drop).
    pub dh: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for P256Encap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P256Encap").finish_non_exhaustive()
    }
}

/// A public key prepared by a [`Backend`].
pub trait EncryptionKey: Send + Sync + fmt::Debug {
    /// Modulus length in bytes: the length of every ciphertext.
    fn modulus_len(&self) -> usize;

    /// Encrypts `plaintext` with RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) and fresh
    /// randomness into `out`, which must be exactly [`modulus_len`](Self::modulus_len) bytes.
    /// `plaintext` must be at most `modulus_len - 66` bytes.
    fn encrypt(&self, plaintext: &[u8], out: &mut [u8]) -> Result<(), BackendError>;
}

/// Checks the arguments of [`EncryptionKey::encrypt`] (output exactly modulus-sized, plaintext
/// within the limit); every backend calls it first, including backends outside this crate.
pub fn check_encrypt_args(
    modulus_len: usize,
    plaintext: &[u8],
    out: &[u8],
) -> Result<(), BackendError> {
    if out.len() != modulus_len {
        return Err(BackendError::OutputLength {
            expected: modulus_len,
            found: out.len(),
        });
    }
    let limit = modulus_len - 66;
    if plaintext.len() > limit {
        return Err(BackendError::PlaintextTooLong {
            len: plaintext.len(),
            limit,
        });
    }
    Ok(())
}

/// The best backend compiled in: aws-lc-rs when available, otherwise RustCrypto.
#[cfg(any(feature = "aws-lc", feature = "rustcrypto"))]
pub fn default_backend() -> &'static dyn Backend {
    #[cfg(feature = "aws-lc")]
    {
        &aws_lc::AwsLcBackend
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        &rustcrypto::RustCryptoBackend
    }
}

/// Every backend compiled in, for tests and benchmarks that must cover each.
pub fn all_backends() -> Vec<&'static dyn Backend> {
    #[cfg(feature = "aws-lc")]
    const AWS_LC: Option<&dyn Backend> = Some(&aws_lc::AwsLcBackend);
    #[cfg(not(feature = "aws-lc"))]
    const AWS_LC: Option<&dyn Backend> = None;
    #[cfg(feature = "rustcrypto")]
    const RUSTCRYPTO: Option<&dyn Backend> = Some(&rustcrypto::RustCryptoBackend);
    #[cfg(not(feature = "rustcrypto"))]
    const RUSTCRYPTO: Option<&dyn Backend> = None;
    [AWS_LC, RUSTCRYPTO].into_iter().flatten().collect()
}

/// A backend failure, in the caller's terms. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend refused the public key.
    #[error("the {backend} backend refused the public key: {reason}")]
    KeyRejected {
        /// Which backend.
        backend: &'static str,
        /// Its reason.
        reason: String,
    },
    /// More plaintext than RSA-OAEP-SHA256 can carry under this key.
    #[error("plaintext of {len} bytes exceeds this key's limit of {limit} bytes")]
    PlaintextTooLong {
        /// Plaintext length.
        len: usize,
        /// The limit (modulus bytes − 66).
        limit: usize,
    },
    /// The output buffer is not modulus-sized.
    #[error("ciphertext buffer is {found} bytes, expected {expected}")]
    OutputLength {
        /// Modulus length.
        expected: usize,
        /// Buffer length given.
        found: usize,
    },
    /// No randomness available.
    #[error("no random bytes available: {0}")]
    Random(String),
    /// The encryption itself failed.
    #[error("the {backend} backend failed to encrypt")]
    Encrypt {
        /// Which backend.
        backend: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_checks() {
        assert!(check_encrypt_args(256, &[0; 190], &[0; 256]).is_ok());
        assert_eq!(
            check_encrypt_args(256, &[0; 191], &[0; 256]),
            Err(BackendError::PlaintextTooLong {
                len: 191,
                limit: 190
            })
        );
        assert_eq!(
            check_encrypt_args(256, &[], &[0; 255]),
            Err(BackendError::OutputLength {
                expected: 256,
                found: 255
            })
        );
    }
}
