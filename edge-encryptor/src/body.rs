//! What the body rewriters share: the compiled field rules, marker handling and errors.

use std::borrow::Cow;

use fle_shared::body::json::JsonError;
use fle_shared::body::{form::FormError, Seg};
use fle_shared::{EncryptError, KeyEncryptor, Scanner};

use crate::config::{FieldSelector, MarkerPolicy};

pub(crate) use fle_shared::body::render_path;

pub use fle_shared::body::{JSON_VALUE_TAG, MAX_DEPTH};

/// U+2060 WORD JOINER: inserted after a prefix's first character to neutralise it.
pub const NEUTRALISER: char = '\u{2060}';

/// The field rules with their keys resolved, plus the marker policy.
pub(crate) struct Rules<'e> {
    pub fields: Vec<(&'e FieldSelector, &'e KeyEncryptor)>,
    pub scanner: &'e Scanner,
    pub on_marker: MarkerPolicy,
}

impl<'e> Rules<'e> {
    /// The key for the value at `path`, if a rule selects it.
    pub fn select(&self, path: &[Seg<'_>]) -> Option<&'e KeyEncryptor> {
        self.fields
            .iter()
            .find(|(sel, _)| sel.matches(path))
            .map(|(_, key)| *key)
    }

    /// `text` with every configured prefix neutralised, or an error if the policy is to reject.
    /// Borrowed when it contains no prefix.
    pub fn check_markers<'t>(
        &self,
        text: &'t str,
        path: &[Seg<'_>],
    ) -> Result<Cow<'t, str>, BodyError> {
        let Some((first, _)) = self.scanner.find_prefix(text.as_bytes(), 0) else {
            return Ok(Cow::Borrowed(text));
        };
        if self.on_marker == MarkerPolicy::Reject {
            return Err(BodyError::Marker {
                field: render_path(path),
            });
        }
        let mut out = String::with_capacity(text.len() + 12);
        let mut last = 0;
        let mut at = Some(first);
        while let Some(pos) = at {
            // Prefixes start with an ASCII byte, so pos + 1 is a character boundary.
            out.push_str(&text[last..=pos]);
            out.push(NEUTRALISER);
            last = pos + 1;
            at = self
                .scanner
                .find_prefix(text.as_bytes(), last)
                .map(|(p, _)| p);
        }
        out.push_str(&text[last..]);
        Ok(Cow::Owned(out))
    }
}

/// Encrypts `plaintext` for the field at `path` and appends the bare envelope to `out`.
pub(crate) fn encrypt_field(
    key: &KeyEncryptor,
    plaintext: &[u8],
    path: &[Seg<'_>],
    out: &mut String,
) -> Result<(), BodyError> {
    key.encrypt_into("", plaintext, out).map_err(|e| match e {
        EncryptError::PlaintextTooLong { len, limit, .. } => BodyError::TooLong {
            field: render_path(path),
            len,
            limit,
        },
        other => BodyError::Encrypt(other.to_string()),
    })
}

/// Why a body could not be rewritten. Names fields by path; never contains values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Not valid JSON / form encoding.
    #[error("body is not valid {format}: {what} at byte {offset}")]
    Syntax {
        /// `JSON` or `form data`.
        format: &'static str,
        /// What was expected or found.
        what: &'static str,
        /// Byte offset in the body.
        offset: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A value or member name containing a configured key's prefix.
    #[error("field {field} contains an encryption marker; ciphertext cannot be submitted")]
    Marker {
        /// Path of the field.
        field: String,
    },
    /// A string to encrypt that starts with the reserved [`JSON_VALUE_TAG`] byte.
    #[error("field {field} starts with a NUL character, which cannot be encrypted")]
    ReservedTag {
        /// Path of the field.
        field: String,
    },
    /// A value longer than the key can encrypt.
    #[error("field {field} is {len} bytes; at most {limit} can be encrypted")]
    TooLong {
        /// Path of the field.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The key's limit.
        limit: usize,
    },
    /// The crypto backend failed.
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

impl BodyError {
    /// Whether the body itself is malformed (as opposed to well-formed but refused), which
    /// `on_unparseable` governs.
    pub fn is_unparseable(&self) -> bool {
        matches!(self, BodyError::Syntax { .. } | BodyError::TooDeep)
    }
}

impl From<JsonError> for BodyError {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Syntax { what, offset } => BodyError::Syntax {
                format: "JSON",
                what,
                offset,
            },
            JsonError::TooDeep => BodyError::TooDeep,
        }
    }
}

impl From<FormError> for BodyError {
    fn from(e: FormError) -> Self {
        BodyError::Syntax {
            format: "form data",
            what: e.what,
            offset: e.offset,
        }
    }
}
