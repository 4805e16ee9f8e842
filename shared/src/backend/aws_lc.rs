//! The aws-lc-rs backend: native, within a few percent of OpenSSL's raw RSA operation.

use std::fmt;

use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::rand::SystemRandom;
use zeroize::Zeroizing;

use super::{check_encrypt_args, Backend, BackendError, EncryptionKey, P256Encap, P256Recipient};
use crate::key::{P256PublicKey, RsaPublicKey};

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

    fn p256_recipient(&self, key: &P256PublicKey) -> Result<Box<dyn P256Recipient>, BackendError> {
        Ok(Box::new(AwsLcP256 {
            point: *key.uncompressed_point(),
        }))
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), BackendError> {
        aws_lc_rs::rand::fill(out)
            .map_err(|_| BackendError::Random("aws-lc-rs: no randomness".into()))
    }
}

/// A P-256 recipient for aws-lc-rs ECDH: the point, checked on parsing.
#[derive(Debug)]
struct AwsLcP256 {
    point: [u8; 65],
}

impl P256Recipient for AwsLcP256 {
    fn encap(&self) -> Result<P256Encap, BackendError> {
        let failed = |_| BackendError::Encrypt { backend: NAME };
        let ephemeral =
            EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).map_err(failed)?;
        let public = ephemeral.compute_public_key().map_err(failed)?;
        let enc: [u8; 65] = public
            .as_ref()
            .try_into()
            .map_err(|_| BackendError::Encrypt { backend: NAME })?;
        let mut dh = Zeroizing::new([0u8; 32]);
        agreement::agree_ephemeral(
            ephemeral,
            UnparsedPublicKey::new(&ECDH_P256, &self.point),
            BackendError::Encrypt { backend: NAME },
            |secret| {
                if secret.len() == 32 {
                    dh.copy_from_slice(secret);
                    Ok(())
                } else {
                    Err(BackendError::Encrypt { backend: NAME })
                }
            },
        )?;
        Ok(P256Encap { enc, dh })
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
