//! fle's decryptor: what backend services link to open the envelopes the edge wrote.
//!
//! [`Decryptor::decrypt`] takes a whole document (JSON, form data or any text, [`Mode`]) and
//! returns it with every envelope replaced by its plaintext, encoded for where it stands: JSON
//! strings re-escaped and non-string values restored to their JSON type, form values
//! percent-encoded. All envelopes of a document are decrypted concurrently through one
//! [`KeyProvider`]: [`KmsKeyProvider`] (AWS KMS `Decrypt` with `RSAES_OAEP_SHA_256` and the
//! explicit KMS key id configured for the envelope's key; per-key region, endpoint and assumed
//! role) or [`LocalKeyProvider`] (a local RSA private key, aws-lc-rs, for the reference design's
//! external-key-pair mode and the demo). The engine underneath ([`decrypt_all`]) decrypts
//! duplicates once and makes every call through one [`KmsBudget`] shared by `Arc` (a
//! process-wide concurrency permit, then a rate token, then the call; transient errors retried
//! with jitter, the permit released while backing off). [`OnError`] decides what a failed
//! envelope does to the document; [`Decryptor::only_fields`] refuses envelopes outside the
//! fields the edge encrypts (marker injection);
//! [`Decryptor::max_encapsulations_per_document`] bounds the KMS calls one document's
//! version-2 envelopes may cost (refused whole beyond it; by default 256 for JSON and form
//! documents, no limit for text, which holds many requests' lines). Settings come from a configuration
//! file's `[decrypt]` table ([`DecryptConfig`]); [`DecryptorBuilder`] sets a decryptor up from
//! a configuration file, a private key or a KMS key id, for every front end alike.
//!
//! One envelope through a provider:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # rt.block_on(async {
//! use fle_decryptor::{KeyProvider, LocalKeyProvider};
//! use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, OaepPrivateKey, ScanItem};
//!
//! let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../keys/demo-01.key.pem"))?;
//! let private = OaepPrivateKey::from_pem(&pem)?;
//! let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, private.public_key().clone())])?;
//! let provider = LocalKeyProvider::new(vec![("01".parse()?, private)]);
//!
//! let mut text = String::new();
//! FieldEncryptor::new(&keyring, backend::default_backend())?
//!     .key_str("01").unwrap()
//!     .encrypt_into("ssn", b"123-45-6789", &mut text)?;
//! let Some(ScanItem::Envelope(found)) = keyring.scanner().scan_str(&text).next() else { panic!() };
//! let key = keyring.get(found.key).unwrap();
//! let plaintext = provider.decrypt(key, &found.envelope).await?;
//! assert_eq!(plaintext.as_bytes(), b"123-45-6789");
//! # Ok::<(), Box<dyn std::error::Error>>(()) })?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod budget;
mod builder;
mod cache;
mod config;
mod document;
mod engine;
pub mod kms;
mod local;
pub mod logging;
mod provider;

pub use budget::{
    BudgetError, KmsBudget, RetryPolicy, DEFAULT_CONCURRENCY, DEFAULT_MAX_BURST,
    DEFAULT_RATE_PER_SECOND,
};
pub use builder::{BuildError, DecryptorBuilder, DecryptorParts};
pub use cache::{SecretCache, DEFAULT_SECRET_CACHE_CAPACITY, DEFAULT_SECRET_MAX_AGE};
pub use config::{DecryptConfig, DecryptConfigError};
pub use document::{
    Action, Decrypted, Decryptor, DocumentError, Mode, OnError, Problem, ProblemKind,
    ProcessedBytes, Report, UnknownName, DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT, MAX_PROBLEMS,
    REDACTED,
};
pub use engine::{decrypt_all, decrypt_all_cached, DecryptPolicy, RateLimiter};
pub use kms::{AssumeRole, KmsConfig, KmsKeyProvider, KmsSettings, KmsSettingsError, SecretSource};
pub use local::LocalKeyProvider;
pub use provider::{DecapsulateFuture, DecryptFuture, ErrorClass, KeyProvider, ProviderError};
