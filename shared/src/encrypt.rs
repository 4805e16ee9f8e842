//! Encrypting field values into envelopes: the edge's hot path.

use std::fmt;

use crate::backend::{Backend, BackendError, EncryptionKey};
use crate::envelope;
use crate::key::{KeyId, MarkerPair};
use crate::keyring::Keyring;

/// Longest field name kept in an error message.
const MAX_FIELD_NAME_IN_ERROR: usize = 128;

/// Encrypts values with the keys of a keyring, each prepared once by a [`Backend`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey};
/// let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?;
/// let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, public)])?;
/// let encryptor = FieldEncryptor::new(&keyring, backend::default_backend())?;
/// let mut out = String::new();
/// encryptor.key_str("01").unwrap().encrypt_into("ssn", b"123-45-6789", &mut out)?;
/// assert!(out.starts_with("#01#") && out.ends_with("#10#") && out.len() == 352);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FieldEncryptor {
    keys: Vec<KeyEncryptor>,
}

impl FieldEncryptor {
    /// Prepares every key of `keyring` with `backend`.
    pub fn new(keyring: &Keyring, backend: &dyn Backend) -> Result<Self, BackendError> {
        let keys = keyring
            .keys()
            .iter()
            .map(|entry| {
                Ok(KeyEncryptor {
                    id: entry.id().clone(),
                    markers: entry.markers().clone(),
                    max_plaintext_len: entry.public_key().max_plaintext_len(),
                    modulus_len: entry.public_key().modulus_len(),
                    key: backend.encryption_key(entry.public_key())?,
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(FieldEncryptor { keys })
    }

    /// The encryptor for one key.
    pub fn key(&self, id: &KeyId) -> Option<&KeyEncryptor> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// The encryptor for one key, by id text.
    pub fn key_str(&self, id: &str) -> Option<&KeyEncryptor> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }
}

/// One key, ready to encrypt.
pub struct KeyEncryptor {
    id: KeyId,
    markers: MarkerPair,
    max_plaintext_len: usize,
    modulus_len: usize,
    key: Box<dyn EncryptionKey>,
}

impl KeyEncryptor {
    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Largest plaintext in bytes (modulus bytes − 66).
    pub fn max_plaintext_len(&self) -> usize {
        self.max_plaintext_len
    }

    /// Length of every envelope this key writes, markers included.
    pub fn envelope_len(&self) -> usize {
        envelope::v1_envelope_len(&self.markers, self.modulus_len)
    }

    /// Encrypts `plaintext` (the value of field `field`) and appends its envelope to `out`.
    ///
    /// Allocation-free apart from growing `out`. On error `out` is unchanged, and the error
    /// names the field and the limit, never the value.
    pub fn encrypt_into(
        &self,
        field: &str,
        plaintext: &[u8],
        out: &mut String,
    ) -> Result<(), EncryptError> {
        if plaintext.len() > self.max_plaintext_len {
            return Err(EncryptError::PlaintextTooLong {
                field: field.chars().take(MAX_FIELD_NAME_IN_ERROR).collect(),
                len: plaintext.len(),
                limit: self.max_plaintext_len,
                key: self.id.clone(),
            });
        }
        let mut buf = [0u8; 512];
        let ciphertext = &mut buf[..self.modulus_len];
        self.key.encrypt(plaintext, ciphertext)?;
        envelope::write_v1(&self.markers, ciphertext, out);
        Ok(())
    }
}

impl fmt::Debug for KeyEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEncryptor")
            .field("id", &self.id)
            .field("markers", &self.markers)
            .field("key", &self.key)
            .finish()
    }
}

/// Why a value could not be encrypted. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The value is longer than RSA-OAEP-SHA256 can carry under the key.
    #[error("field {field:?} is {len} bytes; key {key} encrypts at most {limit} bytes per value")]
    PlaintextTooLong {
        /// The field's name (not its value).
        field: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit: modulus bytes − 66 (190 for RSA-2048).
        limit: usize,
        /// The key.
        key: KeyId,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}
