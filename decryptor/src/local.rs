//! Decryption with local private keys, RSA or P-256 (aws-lc-rs): the reference design's
//! external-key-pair mode, the demo, and tests.

use fle_shared::{Envelope, EnvelopeV2, KeyEntry, KeyId, PrivateKey};

use crate::provider::{DecapsulateFuture, DecryptFuture, ErrorClass, KeyProvider, ProviderError};

/// Private keys by key id.
#[derive(Debug)]
pub struct LocalKeyProvider {
    keys: Vec<(KeyId, PrivateKey)>,
}

impl LocalKeyProvider {
    /// A provider holding these private keys.
    pub fn new<K: Into<PrivateKey>>(keys: Vec<(KeyId, K)>) -> Self {
        LocalKeyProvider {
            keys: keys.into_iter().map(|(id, k)| (id, k.into())).collect(),
        }
    }
}

impl LocalKeyProvider {
    /// The private key of `key`, checked against the keyring's public key.
    fn private(&self, key: &KeyEntry) -> Result<&PrivateKey, ProviderError> {
        match self.keys.iter().find(|(id, _)| id == key.id()) {
            None => Err(ProviderError::NotConfigured {
                key: key.id().clone(),
                what: "no private key",
            }),
            Some((_, private)) if &private.public_key() != key.public_key() => {
                Err(ProviderError::Failed {
                    key: key.id().clone(),
                    class: ErrorClass::Permanent,
                    code: "KeyMismatch".into(),
                    message: "the private key does not match the keyring's public key".into(),
                })
            }
            Some((_, private)) => Ok(private),
        }
    }
}

fn failed(key: &KeyEntry, e: fle_shared::DecryptError) -> ProviderError {
    ProviderError::Failed {
        key: key.id().clone(),
        class: ErrorClass::Permanent,
        code: "DecryptionFailed".into(),
        message: e.to_string(),
    }
}

impl KeyProvider for LocalKeyProvider {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        let result = self.private(key).and_then(|private| {
            private
                .decrypt_envelope(key.id(), envelope)
                .map_err(|e| failed(key, e))
        });
        Box::pin(std::future::ready(result))
    }

    fn decapsulate<'a>(
        &'a self,
        key: &'a KeyEntry,
        token: &'a EnvelopeV2,
    ) -> DecapsulateFuture<'a> {
        let result = self
            .private(key)
            .and_then(|private| private.v2_secret(token).map_err(|e| failed(key, e)));
        Box::pin(std::future::ready(result))
    }
}
