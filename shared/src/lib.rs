//! The core of fle: the envelope format, keyring, scanner and RSA-OAEP crypto backends shared
//! by the edge encryptor, the decryptor and the command line.
//!
//! A sensitive value becomes one **envelope**: the key's prefix, the standard base64 of its
//! RSA-OAEP-SHA256 ciphertext, and the key's suffix (`#01#…#10#`), byte-compatible with the
//! AWS reference design ([`Envelope`], [`write_v1`]). Envelope version 2 ([`V2Sealer`],
//! [`V2Secret`], [`EnvelopeV2`]) encapsulates one key per request (HPKE with a P-256 key, or an
//! RSA-OAEP-wrapped data key) and seals each value with AES-256-GCM; `docs/ENVELOPE.md` is the
//! specification of both. A [`Keyring`] names the keys and their markers; a
//! [`Scanner`] finds envelopes in any text in one pass; a [`FieldEncryptor`] writes them using a
//! crypto [`backend::Backend`]; an [`OaepPrivateKey`] (aws-lc-rs) opens them locally, while production
//! decryption goes through AWS KMS in `fle-decryptor`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey, ScanItem};
//!
//! let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?;
//! let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, public)])?;
//! let encryptor = FieldEncryptor::new(&keyring, backend::default_backend())?;
//!
//! let mut body = String::from(r#"{"ssn":""#);
//! encryptor.key_str("01").unwrap().encrypt_into("ssn", b"123-45-6789", &mut body)?;
//! body.push_str(r#""}"#);
//!
//! let found: Vec<_> = keyring.scanner().scan_str(&body).collect();
//! assert!(matches!(&found[..], [ScanItem::Envelope(e)] if e.span == (8..360)));
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `aws-lc` (default): the aws-lc-rs backend and [`OaepPrivateKey`].
//! - `rustcrypto` (default): the pure-Rust backend; the only one that builds for
//!   `wasm32-unknown-unknown` (with `default-features = false, features = ["rustcrypto"]`).
//!
//! # Guarantees
//!
//! No function panics on any input. No error's `Display` or `Debug` contains plaintext, and
//! decrypted values ([`Plaintext`]) are zeroized on drop.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod alphabet;
pub mod backend;
pub mod body;
pub mod demo;
mod encrypt;
mod envelope;
mod key;
mod keyring;
#[cfg(feature = "aws-lc")]
mod private_key;
mod scan;
mod secret;
mod stream;
mod v2;

pub use encrypt::{
    EncapsulationCache, EncryptError, FieldEncryptor, KeyEncryptor, RequestState, ReuseLimits,
};
pub use envelope::{
    is_payload_byte, v1_envelope_len, v1_payload_len, write_v1, Envelope, EnvelopeError,
};
pub use key::{
    p256_spki_der, KeyId, KeyIdError, Marker, MarkerError, MarkerOverlap, MarkerPair,
    P256PublicKey, PublicKey, PublicKeyError, RsaPublicKey, MAX_KEY_ID_LEN, MAX_MARKER_LEN,
    P256_SPKI_PREFIX, SUPPORTED_MODULUS_BITS,
};
pub use keyring::{EnvelopeVersion, KeyEntry, Keyring, KeyringError};
#[cfg(feature = "aws-lc")]
pub use private_key::{DecryptError, OaepPrivateKey, P256PrivateKey, PrivateKey, PrivateKeyError};
pub use scan::{
    FoundEnvelope, MalformedEnvelope, MalformedReason, ScanError, ScanItem, ScanIter, ScanKey,
    Scanner,
};
pub use secret::Plaintext;
pub use stream::{StreamRegion, StreamScanner};
pub use v2::{
    is_v2_data_key, v2_envelope_len, EnvelopeV2, KeyKind, OpenError, SealError, V2Sealer, V2Secret,
    V2_DATA_KEY_PREFIX, V2_FLAG_PATH, V2_MAX_MESSAGE_LEN, V2_MAX_PATH_LEN, V2_VERSION,
};
