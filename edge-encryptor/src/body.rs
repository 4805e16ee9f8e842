//! What the body rewriters share: the compiled field rules, marker handling and errors.

use std::borrow::Cow;
use std::fmt::Write as _;

use fle_shared::{EncryptError, KeyEncryptor, Scanner};

use crate::config::{FieldSelector, MarkerPolicy, PathStep};

/// Deepest nesting of JSON arrays and objects accepted (hostile bodies must not exhaust the stack).
pub const MAX_DEPTH: usize = 128;

/// First byte of the plaintext of a non-string JSON value (number, boolean, null, object or
/// array): the plaintext is this byte followed by the value's compact JSON text, and the
/// decryptor restores it as that JSON value instead of a string. Part of the envelope format;
/// incoming strings that start with it are refused, so the two can never be confused.
pub const JSON_VALUE_TAG: u8 = 0x00;

/// U+2060 WORD JOINER: inserted after a prefix's first character to neutralise it.
pub const NEUTRALISER: char = '\u{2060}';

/// One step of the path to the value being parsed.
#[derive(Debug, Clone)]
pub(crate) enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

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
            .find(|(sel, _)| matches(sel, path))
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

fn matches(selector: &FieldSelector, path: &[Seg<'_>]) -> bool {
    match selector {
        FieldSelector::Name(name) => matches!(path.last(), Some(Seg::Key(k)) if k == name),
        FieldSelector::Path(steps) => {
            steps.len() == path.len()
                && steps.iter().zip(path).all(|(step, seg)| match (step, seg) {
                    (PathStep::Member(m), Seg::Key(k)) => m == k,
                    (PathStep::AnyMember, Seg::Key(_)) => true,
                    (PathStep::Index(i), Seg::Index(j)) => i == j,
                    (PathStep::AnyIndex, Seg::Index(_)) => true,
                    _ => false,
                })
        }
    }
}

/// Longest member name shown in an error path.
const MAX_NAME_IN_PATH: usize = 64;

/// `$.a[0].b` for error messages: member names JSON-escaped and shortened, never values.
pub(crate) fn render_path(path: &[Seg<'_>]) -> String {
    let mut out = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Seg::Key(k) => {
                let short: String = k.chars().take(MAX_NAME_IN_PATH).collect();
                if !short.is_empty()
                    && short
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push('.');
                    out.push_str(&short);
                } else {
                    let quoted = serde_json::to_string(&short).unwrap_or_default();
                    let _ = write!(out, "[{quoted}]");
                }
            }
        }
    }
    out
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
