//! The keyring ([`Keyring`]): its TOML form and invariants are documented on the type.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::key::{
    check_marker_overlap, KeyId, KeyIdError, Marker, MarkerError, MarkerOverlap, MarkerPair,
    PublicKey, PublicKeyError,
};
use crate::scan::{ScanKey, Scanner};

/// Which envelope version a key's writers produce. Readers open both under any key that can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EnvelopeVersion {
    /// Version 1: one RSA-OAEP ciphertext per value (the reference design's format; RSA keys
    /// only; the default for them).
    #[default]
    V1,
    /// Version 2: one encapsulation per request, AES-256-GCM per value (always for P-256 keys).
    V2,
}

impl EnvelopeVersion {
    /// The version number (1 or 2), as [`crate::Envelope::version`] reports it.
    pub fn number(self) -> u8 {
        match self {
            EnvelopeVersion::V1 => 1,
            EnvelopeVersion::V2 => 2,
        }
    }
}

impl std::str::FromStr for EnvelopeVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "1" => Ok(EnvelopeVersion::V1),
            "v2" | "2" => Ok(EnvelopeVersion::V2),
            other => Err(format!("unknown envelope version {other:?}: use v1 or v2")),
        }
    }
}

impl std::fmt::Display for EnvelopeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvelopeVersion::V1 => "v1",
            EnvelopeVersion::V2 => "v2",
        })
    }
}

/// One configured key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    id: KeyId,
    markers: MarkerPair,
    public_key: PublicKey,
    envelope: EnvelopeVersion,
    kms_key_id: Option<String>,
}

impl KeyEntry {
    /// A key with the default markers, no KMS key id, and the default envelope version for its
    /// kind (version 1 for RSA, version 2 for P-256).
    pub fn new(id: KeyId, public_key: impl Into<PublicKey>) -> Self {
        let public_key = public_key.into();
        let envelope = match public_key {
            PublicKey::P256(_) => EnvelopeVersion::V2,
            _ => EnvelopeVersion::V1,
        };
        KeyEntry {
            markers: MarkerPair::default_for(&id),
            id,
            public_key,
            envelope,
            kms_key_id: None,
        }
    }

    /// Chooses the envelope version this key's writers produce. Version 1 needs an RSA key
    /// ([`Keyring::new`] refuses it for a P-256 key).
    pub fn with_envelope(mut self, version: EnvelopeVersion) -> Self {
        self.envelope = version;
        self
    }

    /// Replaces the markers.
    pub fn with_markers(mut self, markers: MarkerPair) -> Self {
        self.markers = markers;
        self
    }

    /// Sets the KMS key id (key id, key ARN, alias name or alias ARN) used to decrypt.
    pub fn with_kms_key_id(mut self, kms_key_id: impl Into<String>) -> Self {
        self.kms_key_id = Some(kms_key_id.into());
        self
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key's markers.
    pub fn markers(&self) -> &MarkerPair {
        &self.markers
    }

    /// The key's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// The envelope version this key's writers produce.
    pub fn envelope(&self) -> EnvelopeVersion {
        self.envelope
    }

    /// The KMS key to decrypt with, if configured.
    pub fn kms_key_id(&self) -> Option<&str> {
        self.kms_key_id.as_deref()
    }
}

/// A validated set of keys: which keys exist, their markers, public keys and KMS key ids.
///
/// Loaded from TOML. The minimal file:
///
/// ```toml
/// [[keys]]
/// id = "01"
/// public_key = "keys/demo-01.pub.pem"   # PEM or DER SubjectPublicKeyInfo: RSA or EC P-256
/// kms_key_id = "arn:aws:kms:us-east-1:111122223333:key/..."   # optional, for the decryptor
/// ```
///
/// Optional per key: `prefix` and `suffix` (default `#<id>#` and `#<id reversed>#`),
/// `public_key_pem` (the PEM text inline, instead of a `public_key` path), and `envelope`
/// (`"v1"` or `"v2"`: what writers produce with an RSA key, default `"v1"`; a P-256 key is
/// always `"v2"`). Readers open both versions under any key whatever this setting says. Relative paths are
/// resolved against the directory of the TOML file. Other top-level tables (such as `[edge]`)
/// belong to other components and are ignored here; unknown fields inside a `[[keys]]` entry are
/// errors, so a typo never silently drops a setting.
///
/// Every keyring upholds, checked when it is built:
/// - at least one key; ids are unique;
/// - keys are RSA 2048, 3072 or 4096 bits ([`crate::RsaPublicKey`]) or EC P-256
///   ([`crate::P256PublicKey`], envelope version 2 only);
/// - markers are valid ([`Marker`]) and no marker of one key equals or is a prefix
///   of a marker of another key, so every envelope in a text belongs to exactly one key.
#[derive(Debug, Clone)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
    scanner: Scanner,
}

impl Keyring {
    /// Builds a keyring, checking ids and markers.
    pub fn new(entries: Vec<KeyEntry>) -> Result<Self, KeyringError> {
        if entries.is_empty() {
            return Err(KeyringError::Empty);
        }
        for (i, a) in entries.iter().enumerate() {
            if a.envelope == EnvelopeVersion::V1 && a.public_key.as_rsa().is_none() {
                return Err(KeyringError::VersionNeedsRsa { id: a.id.clone() });
            }
            if let Some(kms) = &a.kms_key_id {
                if kms.is_empty() || kms.len() > 2048 || kms.chars().any(char::is_whitespace) {
                    return Err(KeyringError::InvalidKmsKeyId { id: a.id.clone() });
                }
            }
            for b in &entries[..i] {
                if a.id == b.id {
                    return Err(KeyringError::DuplicateId(a.id.clone()));
                }
            }
        }
        let markers: Vec<(&KeyId, &MarkerPair)> =
            entries.iter().map(|e| (&e.id, &e.markers)).collect();
        check_marker_overlap(&markers)?;
        let scanner = Scanner::for_checked_keys(
            entries
                .iter()
                .map(|k| ScanKey {
                    id: k.id.clone(),
                    markers: k.markers.clone(),
                    kind: k.public_key.kind(),
                })
                .collect(),
        );
        Ok(Keyring { entries, scanner })
    }

    /// Reads a keyring from a TOML file; relative key paths are resolved against its directory.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, KeyringError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| KeyringError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_file_text(path, &text)
    }

    /// Parses `text`, the contents of the file at `path` (already read, for callers that parse
    /// other tables of the same file): relative key paths resolve against its directory and
    /// errors name the file.
    pub fn from_file_text(path: &Path, text: &str) -> Result<Self, KeyringError> {
        let base = path.parent().unwrap_or(Path::new(""));
        Self::from_toml_str(text, base).map_err(|e| match e {
            KeyringError::Toml { message, .. } => KeyringError::Toml {
                path: Some(path.to_owned()),
                message,
            },
            other => other,
        })
    }

    /// Parses a keyring from TOML text; relative key paths are resolved against `base_dir`.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Self, KeyringError> {
        let file: KeyringFile = toml::from_str(text).map_err(|e| KeyringError::Toml {
            path: None,
            message: e.message().to_owned(),
        })?;
        let entries = file
            .keys
            .into_iter()
            .map(|spec| spec.into_entry(base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(entries)
    }

    /// The key with this id.
    pub fn get(&self, id: &KeyId) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| &e.id == id)
    }

    /// The key with this id, given as text.
    pub fn get_str(&self, id: &str) -> Option<&KeyEntry> {
        self.entries.iter().find(|e| e.id.as_str() == id)
    }

    /// All keys, in configuration order.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The scanner that finds this keyring's envelopes in text (built once, with the keyring).
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }
}

#[derive(Deserialize)]
struct KeyringFile {
    #[serde(default)]
    keys: Vec<KeySpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    id: String,
    public_key: Option<PathBuf>,
    public_key_pem: Option<String>,
    kms_key_id: Option<String>,
    prefix: Option<String>,
    suffix: Option<String>,
    envelope: Option<String>,
}

impl KeySpec {
    fn into_entry(self, base_dir: &Path) -> Result<KeyEntry, KeyringError> {
        let id: KeyId = self.id.parse()?;
        let key_err = |source| KeyringError::PublicKey {
            id: id.clone(),
            source,
        };
        let public_key = match (self.public_key, self.public_key_pem) {
            (Some(path), None) => {
                let path = base_dir.join(path);
                let bytes = std::fs::read(&path).map_err(|e| KeyringError::Io {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                PublicKey::from_pem_or_der(&bytes).map_err(key_err)?
            }
            (None, Some(pem)) => PublicKey::from_pem(&pem).map_err(key_err)?,
            _ => return Err(KeyringError::PublicKeySource { id }),
        };
        let defaults = MarkerPair::default_for(&id);
        let marker = |text: Option<String>, default: Marker| match text {
            Some(t) => Marker::new(&t).map_err(|source| KeyringError::InvalidMarker {
                id: id.clone(),
                source,
            }),
            None => Ok(default),
        };
        let markers = MarkerPair {
            prefix: marker(self.prefix, defaults.prefix)?,
            suffix: marker(self.suffix, defaults.suffix)?,
        };
        let mut entry = KeyEntry::new(id.clone(), public_key).with_markers(markers);
        if let Some(text) = self.envelope {
            let version = text
                .parse()
                .map_err(|message| KeyringError::InvalidEnvelope { id, message })?;
            entry = entry.with_envelope(version);
        }
        entry.kms_key_id = self.kms_key_id;
        Ok(entry)
    }
}

/// Why a keyring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
    /// The TOML does not parse or has the wrong shape.
    #[error("invalid keyring{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Toml {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// The parser's message.
        message: String,
    },
    /// No `[[keys]]` entry.
    #[error("the keyring has no keys: add at least one [[keys]] entry")]
    Empty,
    /// A bad key id.
    #[error(transparent)]
    InvalidKeyId(#[from] KeyIdError),
    /// Two keys with one id.
    #[error("key id {0} is configured twice")]
    DuplicateId(KeyId),
    /// A bad marker.
    #[error("key {id}: {source}")]
    InvalidMarker {
        /// The key.
        id: KeyId,
        /// What is wrong with its marker.
        source: MarkerError,
    },
    /// A marker of one key equals or starts another key's marker.
    #[error(
        "markers overlap: {:?} of key {} and {:?} of key {}; give one of them other markers (prefix = ..., suffix = ...)",
        first.1, first.0, second.1, second.0
    )]
    OverlappingMarkers {
        /// One key and its marker.
        first: (KeyId, String),
        /// The other key and its marker.
        second: (KeyId, String),
    },
    /// Neither or both of `public_key` and `public_key_pem`.
    #[error("key {id}: give exactly one of public_key (a path) or public_key_pem (inline PEM)")]
    PublicKeySource {
        /// The key.
        id: KeyId,
    },
    /// A public key that is refused.
    #[error("key {id}: {source}")]
    PublicKey {
        /// The key.
        id: KeyId,
        /// Why it is refused.
        source: PublicKeyError,
    },
    /// `envelope = "v1"` for a key that is not RSA.
    #[error("key {id}: envelope version 1 needs an RSA key; P-256 keys write version 2 (envelope = \"v2\")")]
    VersionNeedsRsa {
        /// The key.
        id: KeyId,
    },
    /// An `envelope` setting other than `"v1"` or `"v2"`.
    #[error("key {id}: {message}")]
    InvalidEnvelope {
        /// The key.
        id: KeyId,
        /// What is wrong.
        message: String,
    },
    /// An empty or malformed `kms_key_id`.
    #[error("key {id}: kms_key_id must be a non-empty KMS key id, ARN or alias without spaces")]
    InvalidKmsKeyId {
        /// The key.
        id: KeyId,
    },
}

impl From<MarkerOverlap> for KeyringError {
    fn from(o: MarkerOverlap) -> Self {
        KeyringError::OverlappingMarkers {
            first: o.first,
            second: o.second,
        }
    }
}
