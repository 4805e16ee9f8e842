//! The key-provider trait: one envelope in, its plaintext out.

use std::future::Future;
use std::pin::Pin;

use fle_shared::{Envelope, EnvelopeV2, KeyEntry, KeyId, Plaintext, V2Secret};

/// The future a [`KeyProvider`] returns.
pub type DecryptFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Plaintext, ProviderError>> + Send + 'a>>;

/// The future of [`KeyProvider::decapsulate`].
pub type DecapsulateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<V2Secret, ProviderError>> + Send + 'a>>;

/// Something that can open envelopes of configured keys: AWS KMS, or a local private key.
///
/// Callers pass the [`KeyEntry`] the envelope's markers name, so a provider only ever sees keys
/// of the keyring: an envelope whose marker maps to no configured key never reaches it.
pub trait KeyProvider: Send + Sync {
    /// Decrypts one envelope of `key`.
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a>;

    /// The secret of a version-2 envelope's encapsulation (one private-key operation: KMS
    /// `Decrypt` of the data key, or `DeriveSharedSecret`), which then opens every value sealed
    /// under it locally. The default refuses: a provider without it opens version 1 only.
    fn decapsulate<'a>(
        &'a self,
        key: &'a KeyEntry,
        token: &'a EnvelopeV2,
    ) -> DecapsulateFuture<'a> {
        let _ = token;
        Box::pin(std::future::ready(Err(ProviderError::Failed {
            key: key.id().clone(),
            class: ErrorClass::Permanent,
            code: "UnsupportedEnvelope".into(),
            message: "this key provider does not open envelope version 2".into(),
        })))
    }
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The same request will fail the same way (wrong key, bad ciphertext, access denied,
    /// disabled or missing key, no KMS key configured).
    Permanent,
    /// Throttling, timeouts, 5xx, connection failures: retry with backoff.
    Transient,
}

/// Why an envelope could not be decrypted. Carries key ids and provider error codes, never
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The key has no `kms_key_id` (KMS) or no private key (local provider).
    #[error("key {key}: {what} is configured to decrypt it")]
    NotConfigured {
        /// The key.
        key: KeyId,
        /// What is missing.
        what: &'static str,
    },
    /// The provider refused or failed the request.
    #[error("key {key}: {code}: {message}")]
    Failed {
        /// The key.
        key: KeyId,
        /// Permanent or transient.
        class: ErrorClass,
        /// The provider's error code (for KMS, the exception name, e.g. `IncorrectKeyException`).
        code: String,
        /// The provider's message (never plaintext).
        message: String,
    },
}

impl ProviderError {
    /// Whether retrying can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::NotConfigured { .. } => ErrorClass::Permanent,
            ProviderError::Failed { class, .. } => *class,
        }
    }

    /// Whether the provider refused the call for its request rate (KMS `ThrottlingException`,
    /// or another service's throttling code): what [`KmsBudget::throttles`] counts.
    ///
    /// [`KmsBudget::throttles`]: crate::KmsBudget::throttles
    pub fn is_throttling(&self) -> bool {
        const THROTTLING: [&str; 7] = [
            "ThrottlingException",
            "Throttling",
            "ThrottledException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
            "RequestThrottled",
            "SlowDown",
        ];
        self.code().is_some_and(|code| THROTTLING.contains(&code))
    }

    /// The provider's error code, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            ProviderError::NotConfigured { .. } => None,
            ProviderError::Failed { code, .. } => Some(code),
        }
    }
}
