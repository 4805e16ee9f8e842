//! Step 4 of the flow, reporting: what a call found and did ([`Report`]), the envelopes it did
//! not decrypt and why ([`Problem`], [`ProblemKind`]), why a whole document failed
//! ([`DocumentError`]), and the one trace event per document.

use std::collections::BTreeMap;
use std::fmt;

use fle_shared::body::form;
use fle_shared::body::json::JsonError;
use fle_shared::MalformedReason;
use fle_shared::{EncryptError, KeyId};

use super::Mode;
#[cfg(doc)]
use super::{Action, Decryptor, OnError};
use crate::provider::ProviderError;

/// What a call found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Well-formed envelopes found.
    pub envelopes: usize,
    /// Well-formed envelopes found, per key.
    pub keys: BTreeMap<KeyId, usize>,
    /// Envelopes decrypted: replaced by their plaintext ([`Action::Decrypt`]), by a new
    /// envelope ([`Action::Reencrypt`]), or found decryptable ([`Action::Verify`]).
    pub decrypted: usize,
    /// Envelopes already under the [`Action::Reencrypt`] target key, left as they are.
    pub kept: usize,
    /// Envelopes left, redacted, or refused, in document order: the first [`MAX_PROBLEMS`]
    /// of them ([`Report::problem_count`] counts them all).
    pub problems: Vec<Problem>,
    /// How many problems were found, including those beyond [`MAX_PROBLEMS`] that
    /// [`Report::problems`] does not keep.
    pub problem_count: usize,
}

/// Most problems a [`Report`] keeps: a document with a million bad candidates is reported by
/// its first problems and an exact count, so the report stays small whatever the document.
pub const MAX_PROBLEMS: usize = 100;

impl Report {
    /// Counts `problem`, and keeps it if fewer than [`MAX_PROBLEMS`] are kept.
    pub fn add_problem(&mut self, problem: Problem) {
        self.note(|| problem);
    }

    /// Adds `other`'s counts and problems to these, its problem offsets moved by `offset`
    /// (for front ends that process a document in parts).
    pub fn merge(&mut self, other: Report, offset: usize) {
        self.envelopes += other.envelopes;
        self.decrypted += other.decrypted;
        self.kept += other.kept;
        for (key, n) in other.keys {
            *self.keys.entry(key).or_insert(0) += n;
        }
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems
            .extend(other.problems.into_iter().take(room).map(|mut p| {
                p.offset += offset;
                p
            }));
        self.problem_count += other.problem_count;
    }

    /// Counts a problem, building it only if it is kept.
    pub(super) fn note(&mut self, problem: impl FnOnce() -> Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem());
        }
    }
}

/// One envelope that was not decrypted, and why. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset in the document: of the envelope itself, or of the JSON string or form part
    /// holding it when that is escaped or percent-encoded.
    pub offset: usize,
    /// The field's path (JSON) or name (form); `None` in text mode.
    pub field: Option<String>,
    /// The key the envelope's markers name.
    pub key: Option<KeyId>,
    /// What went wrong.
    pub kind: ProblemKind,
}

/// What went wrong with one envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A configured prefix that does not start a well-formed envelope.
    #[error(transparent)]
    Malformed(#[from] MalformedReason),
    /// The provider could not decrypt it.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The plaintext is not UTF-8 text, which a JSON string or text cannot hold.
    #[error("the plaintext is not UTF-8 text")]
    NotUtf8,
    /// A JSON value the edge encrypted from a non-string whose plaintext is not valid JSON, or
    /// that does not stand as a whole JSON string value where it could be restored.
    #[error("{0}")]
    JsonValue(&'static str),
    /// An envelope outside the fields decryption is restricted to, or (with a field
    /// restriction) not the whole value of an allowed field: left encrypted, whatever the error
    /// policy.
    #[error("envelope outside the configured fields or not a whole field value (marker injection): left encrypted")]
    MarkerInjection,
    /// An envelope in a JSON member name, which is decrypted only with
    /// [`Decryptor::decrypt_member_names`]: left encrypted, whatever the error policy.
    #[error("envelope in a JSON member name (member names are decrypted only when asked for): left encrypted")]
    MemberName,
    /// Decrypting member names would give one object two members of the same name: that
    /// object's member names are left encrypted.
    #[error(
        "decrypting member names would duplicate a member of the object: names left encrypted"
    )]
    DuplicateMember,
    /// The plaintext could not be encrypted to the re-encryption target key (longer than
    /// that key can carry).
    #[error("cannot re-encrypt: {0}")]
    Reencrypt(EncryptError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "envelope at byte {}", self.offset)?;
        // A provider error names the key itself.
        let key = match self.kind {
            ProblemKind::Provider(_) => &None,
            _ => &self.key,
        };
        match (&self.field, key) {
            (Some(field), Some(key)) => write!(f, " (field {field}, key {key})")?,
            (Some(field), None) => write!(f, " (field {field})")?,
            (None, Some(key)) => write!(f, " (key {key})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for Problem {}

/// Why a document could not be decrypted. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not valid JSON (JSON mode).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Not valid form data (form mode).
    #[error(transparent)]
    Form(#[from] form::FormError),
    /// An envelope failed under [`OnError::Fail`].
    #[error(transparent)]
    Envelope(Box<Problem>),
    /// The document holds more distinct version-2 encapsulations (one KMS call each) than
    /// [`Decryptor::max_encapsulations_per_document`] allows in its mode (by default 256 for
    /// JSON and form documents, no limit for text; a limit set explicitly applies to every
    /// mode): refused whole before any provider call, whatever the error policy.
    #[error(
        "document refused: it holds {count} distinct version-2 encapsulations (one KMS call \
         each), more than the limit of {limit} per document; nothing was decrypted (raise \
         max_encapsulations_per_document in [decrypt], or --max-encapsulations-per-document \
         on the command line, to allow more)"
    )]
    TooManyEncapsulations {
        /// Distinct (key, encapsulation) pairs among the version-2 envelopes to decrypt.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// One trace event per document or region: counts, never content.
pub(super) fn trace_report(mode: Mode, bytes: usize, report: &Report) {
    tracing::trace!(
        ?mode,
        bytes,
        envelopes = report.envelopes,
        decrypted = report.decrypted,
        kept = report.kept,
        problems = report.problems.len(),
        "document processed"
    );
}
