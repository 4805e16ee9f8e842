//! What the body rewriters share: the compiled field rules, marker handling and errors.

use std::borrow::Cow;
use std::cell::RefCell;

use fle_shared::body::json::JsonError;
use fle_shared::body::{form::FormError, Seg};
use fle_shared::{EncapsulationCache, EncryptError, KeyEncryptor, RequestState, Scanner};

use crate::config::{FieldSelector, MarkerPolicy};
use crate::guard;
use crate::names::{self, NameMatching, Verdict};

pub(crate) use fle_shared::body::render_path;

pub use fle_shared::body::{JSON_VALUE_TAG, MAX_DEPTH};

/// U+2060 WORD JOINER: inserted after a prefix's first character to neutralise it.
pub const NEUTRALISER: char = '\u{2060}';

/// A field a rule selected: its key, and the name its values are bound to (with `bind_paths`).
#[derive(Clone, Copy)]
pub(crate) struct Field<'e> {
    pub key: &'e KeyEncryptor,
    pub bound: Option<&'e str>,
}

/// The field rules with their keys resolved, plus the policies the rewriters apply.
pub(crate) struct Rules<'e> {
    pub fields: Vec<(&'e FieldSelector, &'e KeyEncryptor)>,
    pub scanner: &'e Scanner,
    pub on_marker: MarkerPolicy,
    pub names: NameMatching,
    pub retired: &'e [String],
    pub max_values: usize,
    pub max_body: usize,
    /// With `bind_paths`: each rule's name, bound into its values' envelopes.
    pub bound_names: Option<&'e [String]>,
    /// The request's version-2 encapsulations: one per key, made at its first value (or taken
    /// from `reuse`).
    pub state: RefCell<RequestState>,
    /// With `reuse_encapsulation`: where `state`'s encapsulations go back when the request ends.
    pub reuse: Option<&'e EncapsulationCache>,
}

impl Drop for Rules<'_> {
    fn drop(&mut self) {
        if let Some(cache) = self.reuse {
            cache.finish(std::mem::take(self.state.get_mut()));
        }
    }
}

impl<'e> Rules<'e> {
    fn selectors(&self) -> impl Iterator<Item = &'e FieldSelector> + Clone + '_ {
        self.fields.iter().map(|(s, _)| *s)
    }

    /// The key for the JSON value at `path` if a rule selects it; an error if an origin would
    /// read it as a configured field that the name-matching mode does not select.
    pub fn select_json(&self, path: &[Seg<'_>]) -> Result<Option<Field<'e>>, BodyError> {
        self.verdict(
            names::classify_json(self.selectors(), self.names, path),
            path,
        )
    }

    /// The same for a form field (or query parameter) by its decoded name.
    pub fn select_form(
        &self,
        name: &str,
        path: &[Seg<'_>],
    ) -> Result<Option<Field<'e>>, BodyError> {
        self.verdict(
            names::classify_form(self.selectors(), self.names, name),
            path,
        )
    }

    fn verdict(&self, verdict: Verdict, path: &[Seg<'_>]) -> Result<Option<Field<'e>>, BodyError> {
        match verdict {
            Verdict::Select(n) => Ok(self.fields.get(n).map(|(_, key)| Field {
                key,
                bound: self
                    .bound_names
                    .and_then(|names| names.get(n))
                    .map(String::as_str),
            })),
            Verdict::Ambiguous => Err(BodyError::AmbiguousName {
                field: render_path(path),
            }),
            Verdict::None => Ok(None),
        }
    }

    /// `text` with every configured prefix neutralised, or an error if the policy is to reject.
    /// Borrowed when it contains no prefix. Envelope-shaped text of any other key (retired
    /// markers, the generic `#id#base64` shape, and all of these after NFKC normalisation) is
    /// refused whatever the policy.
    pub fn check_markers<'t>(
        &self,
        text: &'t str,
        path: &[Seg<'_>],
    ) -> Result<Cow<'t, str>, BodyError> {
        let checked = self.own_markers(text, path)?;
        self.check_foreign(checked.as_bytes(), path)?;
        if let Some(normal) = guard::compatibility_form(&checked) {
            if self.scanner.contains_prefix(normal.as_bytes()) {
                return Err(marker(path));
            }
            self.check_foreign(normal.as_bytes(), path)?;
        }
        Ok(checked)
    }

    /// [`Rules::check_markers`] for bytes that are not UTF-8 (form values the edge does not
    /// encrypt): any marker is refused.
    pub fn check_marker_bytes(&self, bytes: &[u8], path: &[Seg<'_>]) -> Result<(), BodyError> {
        if self.scanner.contains_prefix(bytes) {
            return Err(marker(path));
        }
        self.check_foreign(bytes, path)
    }

    fn check_foreign(&self, bytes: &[u8], path: &[Seg<'_>]) -> Result<(), BodyError> {
        let retired = self
            .retired
            .iter()
            .any(|m| memchr::memmem::find(bytes, m.as_bytes()).is_some());
        if retired || guard::looks_like_envelope(bytes) {
            return Err(marker(path));
        }
        Ok(())
    }

    fn own_markers<'t>(&self, text: &'t str, path: &[Seg<'_>]) -> Result<Cow<'t, str>, BodyError> {
        let Some((first, _)) = self.scanner.find_prefix(text.as_bytes(), 0) else {
            return Ok(Cow::Borrowed(text));
        };
        if self.on_marker == MarkerPolicy::Reject {
            return Err(marker(path));
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

    /// Encrypts `plaintext` for the field at `path` and appends the bare envelope to `out`.
    /// `written` is the length of the body written so far and `done` the number of values
    /// already encrypted: work stops, before the RSA operation, as soon as the cap on values is
    /// reached or the body already written is over the limit (the result can only be longer).
    pub fn encrypt(
        &self,
        field: Field<'_>,
        plaintext: &[u8],
        path: &[Seg<'_>],
        out: &mut String,
        written: usize,
        done: usize,
    ) -> Result<(), BodyError> {
        if plaintext.first() == Some(&JSON_VALUE_TAG) {
            return Err(BodyError::ReservedTag {
                field: render_path(path),
            });
        }
        self.before_encrypt(written, done)?;
        self.encrypt_field(field, plaintext, path, out)
    }

    /// [`Rules::encrypt`] for a JSON value's tagged plaintext (which starts with the tag).
    pub fn encrypt_tagged(
        &self,
        field: Field<'_>,
        tagged: &[u8],
        path: &[Seg<'_>],
        out: &mut String,
        written: usize,
        done: usize,
    ) -> Result<(), BodyError> {
        self.before_encrypt(written, done)?;
        self.encrypt_field(field, tagged, path, out)
    }

    /// Encrypts `plaintext` for the field at `path` and appends the bare envelope to `out`.
    fn encrypt_field(
        &self,
        field: Field<'_>,
        plaintext: &[u8],
        path: &[Seg<'_>],
        out: &mut String,
    ) -> Result<(), BodyError> {
        let mut state = self.state.borrow_mut();
        let bound = field.bound.map(str::as_bytes);
        field
            .key
            .encrypt_bound_in(&mut state, "", plaintext, bound, out)
            .map_err(|e| match e {
                EncryptError::PlaintextTooLong { len, limit, .. } => BodyError::TooLong {
                    field: render_path(path),
                    len,
                    limit,
                },
                other => BodyError::from(other),
            })
    }

    fn before_encrypt(&self, written: usize, done: usize) -> Result<(), BodyError> {
        if done >= self.max_values {
            return Err(BodyError::TooManyValues {
                limit: self.max_values,
            });
        }
        if written > self.max_body {
            return Err(BodyError::TooLarge {
                limit: self.max_body,
            });
        }
        Ok(())
    }
}

fn marker(path: &[Seg<'_>]) -> BodyError {
    BodyError::Marker {
        field: render_path(path),
    }
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
    /// A value or member name containing a configured key's prefix, a retired marker, or
    /// envelope-shaped text of any key (also after NFKC normalisation).
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
    /// A name an origin would read as a configured field, but not one the name-matching mode
    /// encrypts (`SSN` or `user[ssn]` for `ssn` with `names = "exact"`).
    #[error("field {field} would be read as a configured field by lenient parsers; send the exact configured name")]
    AmbiguousName {
        /// Path of the field.
        field: String,
    },
    /// A configured field in the query string (`query = "reject"`, or a query that splits pairs
    /// at `;`).
    #[error("field {field} must not be sent in the query string")]
    FieldInQuery {
        /// Name of the parameter.
        field: String,
    },
    /// More values to encrypt than `max_encrypted_values`.
    #[error("the body has more than {limit} values to encrypt")]
    TooManyValues {
        /// The configured cap.
        limit: usize,
    },
    /// The body (before or during encryption) is already over `max_body_bytes`.
    #[error("the encrypted body would be larger than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A body declared as one format that another common parser reads differently: form data
    /// with characters form serialisers never leave raw, or JSON that reads as form data
    /// carrying a configured field.
    #[error("body declared as {declared} does not look like it: {what} at byte {offset}")]
    Mismatch {
        /// The declared format.
        declared: &'static str,
        /// What gave it away.
        what: &'static str,
        /// Byte offset in the body.
        offset: usize,
    },
    /// The crypto backend failed (the value is never part of the error).
    #[error("encryption failed: {0}")]
    Encrypt(EncryptError),
    /// A broken internal invariant (a bug): answered like a backend failure.
    #[error("encryption failed: {0}")]
    Internal(&'static str),
}

impl BodyError {
    /// Whether the body itself is malformed (as opposed to well-formed but refused).
    pub fn is_unparseable(&self) -> bool {
        matches!(self, BodyError::Syntax { .. })
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

impl From<EncryptError> for BodyError {
    /// [`BodyError::TooLong`] for a value over the limit (named as the encryptor named it),
    /// [`BodyError::Encrypt`] for the rest.
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::PlaintextTooLong {
                field, len, limit, ..
            } => BodyError::TooLong { field, len, limit },
            other => BodyError::Encrypt(other),
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
