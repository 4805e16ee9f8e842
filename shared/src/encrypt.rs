//! Encrypting field values into envelopes: the edge's hot path.

use std::fmt;

use crate::backend::{Backend, BackendError, EncryptionKey, P256Recipient};
use crate::envelope;
use crate::key::{KeyId, MarkerPair, P256PublicKey, PublicKey};
use crate::keyring::{EnvelopeVersion, Keyring};
use crate::v2::{self, KeyKind, SealError, V2Sealer, V2_MAX_MESSAGE_LEN};

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
    pub fn new(keyring: &Keyring, backend: &'static dyn Backend) -> Result<Self, BackendError> {
        let keys = keyring
            .keys()
            .iter()
            .map(|entry| {
                let prepared = match entry.public_key() {
                    PublicKey::Rsa(public) => Prepared::Rsa {
                        max_plaintext_len: public.max_plaintext_len(),
                        modulus_len: public.modulus_len(),
                        key: backend.encryption_key(public)?,
                    },
                    PublicKey::P256(public) => Prepared::P256 {
                        public: public.clone(),
                        recipient: backend.p256_recipient(public)?,
                    },
                };
                Ok(KeyEncryptor {
                    id: entry.id().clone(),
                    markers: entry.markers().clone(),
                    version: entry.envelope(),
                    prepared,
                    backend,
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

enum Prepared {
    Rsa {
        max_plaintext_len: usize,
        modulus_len: usize,
        key: Box<dyn EncryptionKey>,
    },
    P256 {
        public: P256PublicKey,
        recipient: Box<dyn P256Recipient>,
    },
}

/// One key, ready to encrypt.
pub struct KeyEncryptor {
    id: KeyId,
    markers: MarkerPair,
    version: EnvelopeVersion,
    prepared: Prepared,
    backend: &'static dyn Backend,
}

/// The encryption state of one request: the version-2 encapsulations made so far, one per key,
/// each made when the key's first value is sealed. Drop it when the request is done, so the
/// next request gets fresh encapsulations.
#[derive(Debug, Default)]
pub struct RequestState {
    sealers: Vec<V2Sealer>,
}

impl RequestState {
    /// A request with no encapsulation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many encapsulations (asymmetric operations) this request has made.
    pub fn encapsulations(&self) -> usize {
        self.sealers.len()
    }
}

impl KeyEncryptor {
    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The envelope version this key writes.
    pub fn version(&self) -> EnvelopeVersion {
        self.version
    }

    /// Largest plaintext in bytes: modulus bytes − 66 for version 1, 1 MiB for version 2.
    pub fn max_plaintext_len(&self) -> usize {
        match (&self.prepared, self.version) {
            (
                Prepared::Rsa {
                    max_plaintext_len, ..
                },
                EnvelopeVersion::V1,
            ) => *max_plaintext_len,
            _ => V2_MAX_MESSAGE_LEN,
        }
    }

    fn kind(&self) -> KeyKind {
        match &self.prepared {
            Prepared::Rsa { modulus_len, .. } => KeyKind::Rsa {
                modulus_len: *modulus_len,
            },
            Prepared::P256 { .. } => KeyKind::P256,
        }
    }

    /// Length of the envelope (markers included) this key writes for a `message_len`-byte value.
    pub fn envelope_len(&self, message_len: usize) -> usize {
        match (&self.prepared, self.version) {
            (Prepared::Rsa { modulus_len, .. }, EnvelopeVersion::V1) => {
                envelope::v1_envelope_len(&self.markers, *modulus_len)
            }
            _ => v2::v2_envelope_len(&self.markers, self.kind(), message_len),
        }
    }

    /// Encrypts `plaintext` (the value of field `field`) on its own and appends its envelope to
    /// `out`. For a version-2 key this makes an encapsulation for this one value: use
    /// [`encrypt_in`](Self::encrypt_in) to share one across a request.
    ///
    /// On error `out` is unchanged, and the error names the field and the limit, never the value.
    pub fn encrypt_into(
        &self,
        field: &str,
        plaintext: &[u8],
        out: &mut String,
    ) -> Result<(), EncryptError> {
        self.encrypt_in(&mut RequestState::new(), field, plaintext, out)
    }

    /// Encrypts `plaintext` (the value of field `field`) as part of the request `state` and
    /// appends its envelope to `out`: version 1 costs one RSA operation per value; version 2
    /// one encapsulation for the key's first value in the request and AES-256-GCM for each.
    ///
    /// Allocation-free for version 1 apart from growing `out`. On error `out` is unchanged, and
    /// the error names the field and the limit, never the value.
    pub fn encrypt_in(
        &self,
        state: &mut RequestState,
        field: &str,
        plaintext: &[u8],
        out: &mut String,
    ) -> Result<(), EncryptError> {
        self.encrypt_bound_in(state, field, plaintext, None, out)
    }

    /// [`encrypt_in`](Self::encrypt_in), binding the value to `path` when given
    /// (`docs/ENVELOPE.md` section 5.3): the envelope then opens only with the same path.
    /// Version 1 cannot bind: a path with a version-1 key is refused
    /// ([`EncryptError::CannotBind`]).
    pub fn encrypt_bound_in(
        &self,
        state: &mut RequestState,
        field: &str,
        plaintext: &[u8],
        path: Option<&[u8]>,
        out: &mut String,
    ) -> Result<(), EncryptError> {
        let limit = self.max_plaintext_len();
        if plaintext.len() > limit {
            return Err(EncryptError::PlaintextTooLong {
                field: field.chars().take(MAX_FIELD_NAME_IN_ERROR).collect(),
                len: plaintext.len(),
                limit,
                key: self.id.clone(),
            });
        }
        match (&self.prepared, self.version) {
            (
                Prepared::Rsa {
                    modulus_len, key, ..
                },
                EnvelopeVersion::V1,
            ) => {
                if path.is_some() {
                    return Err(EncryptError::CannotBind {
                        key: self.id.clone(),
                    });
                }
                let mut buf = [0u8; 512];
                let ciphertext = &mut buf[..*modulus_len];
                key.encrypt(plaintext, ciphertext)?;
                envelope::write_v1(&self.markers, ciphertext, out);
                Ok(())
            }
            _ => self.seal(state, plaintext, path, out),
        }
    }

    fn seal(
        &self,
        state: &mut RequestState,
        plaintext: &[u8],
        path: Option<&[u8]>,
        out: &mut String,
    ) -> Result<(), EncryptError> {
        let at = match state.sealers.iter().position(|s| s.key_id() == &self.id) {
            Some(at) => at,
            None => {
                state.sealers.push(self.new_sealer()?);
                state.sealers.len() - 1
            }
        };
        match state.sealers[at].seal_into(&self.markers, plaintext, path, out) {
            // 2^32 values under one encapsulation: the next ones get a new one.
            Err(SealError::Exhausted) => {
                state.sealers[at] = self.new_sealer()?;
                state.sealers[at]
                    .seal_into(&self.markers, plaintext, path, out)
                    .map_err(EncryptError::from)
            }
            other => other.map_err(EncryptError::from),
        }
    }

    fn new_sealer(&self) -> Result<V2Sealer, EncryptError> {
        Ok(match &self.prepared {
            Prepared::Rsa { key, .. } => V2Sealer::rsa(&self.id, &**key, self.backend)?,
            Prepared::P256 { public, recipient } => V2Sealer::p256(&self.id, public, &**recipient)?,
        })
    }
}

impl fmt::Debug for KeyEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: &dyn fmt::Debug = match &self.prepared {
            Prepared::Rsa { key, .. } => key,
            Prepared::P256 { recipient, .. } => recipient,
        };
        f.debug_struct("KeyEncryptor")
            .field("id", &self.id)
            .field("markers", &self.markers)
            .field("version", &self.version)
            .field("key", key)
            .finish()
    }
}

/// Why a value could not be encrypted. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The value is longer than the key's envelope can carry (RSA-OAEP-SHA256 for version 1,
    /// 1 MiB for version 2).
    #[error("field {field:?} is {len} bytes; key {key} encrypts at most {limit} bytes per value")]
    PlaintextTooLong {
        /// The field's name (not its value).
        field: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit: modulus bytes − 66 (190 for RSA-2048) for version 1, 1 MiB for version 2.
        limit: usize,
        /// The key.
        key: KeyId,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Version-2 sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A path to bind with a key that writes version 1, which cannot bind one.
    #[error("key {key} writes envelope version 1, which cannot bind a value to its field")]
    CannotBind {
        /// The key.
        key: KeyId,
    },
}
