//! The aws-lc-rs backend: native, within a few percent of OpenSSL's raw RSA operation.

use std::fmt;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};

use super::{check_encrypt_args, Backend, BackendError, EncryptionKey};
use crate::key::RsaPublicKey;

const NAME: &str = "aws-lc-rs";

/// RSA-OAEP-SHA256 with aws-lc-rs (AWS-LC, BoringSSL-derived, FIPS-capable).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLcBackend;

impl Backend for AwsLcBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn encryption_key(&self, key: &RsaPublicKey) -> Result<Box<dyn EncryptionKey>, BackendError> {
        let rejected = |reason: String| BackendError::KeyRejected {
            backend: NAME,
            reason,
        };
        let public =
            PublicEncryptingKey::from_der(key.spki_der()).map_err(|e| rejected(e.to_string()))?;
        let key = OaepPublicEncryptingKey::new(public).map_err(|e| rejected(e.to_string()))?;
        Ok(Box::new(AwsLcKey { key }))
    }
}

struct AwsLcKey {
    key: OaepPublicEncryptingKey,
}

impl fmt::Debug for AwsLcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsLcKey")
            .field("modulus_bits", &self.key.key_size_bits())
            .finish()
    }
}

impl EncryptionKey for AwsLcKey {
    fn modulus_len(&self) -> usize {
        self.key.key_size_bytes()
    }

    fn encrypt(&self, plaintext: &[u8], out: &mut [u8]) -> Result<(), BackendError> {
        check_encrypt_args(self.modulus_len(), plaintext, out)?;
        let written = self
            .key
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, out, None)
            .map_err(|_| BackendError::Encrypt { backend: NAME })?
            .len();
        if written != out.len() {
            return Err(BackendError::Encrypt { backend: NAME });
        }
        Ok(())
    }
}
