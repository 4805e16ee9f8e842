//! fle's batch engine: decrypt, re-encrypt (key rotation) and verify jobs over a stream, files
//! and directory trees; streamed record by record with bounded memory, resumable from a
//! manifest, safe in directories others can write to.
//!
//! The split follows ripgrep's searcher / printer: [`records`] cuts an input into records by
//! [`Format`] (JSON Lines, CSV, text, whole JSON or form documents); the runner ([`run`])
//! processes a window of records concurrently through a [`fle_decryptor::Decryptor`] and hands
//! outputs, in input order, to a sink (a stream, or a checkpointing file under the
//! [`manifest`]'s two-phase commit); [`report`] writes what the user is told. A front end (the
//! `fle` command line today; S3 or Python later) fills in a [`Job`] and [`Options`], gives the
//! streams ([`Io`]) and reads [`Progress`] counters while the job runs.
//!
//! Every file the job writes is created through [`fsafe`]: no link planted in an output
//! directory is ever written through, outputs are owner-only, a failed input leaves no output,
//! and an input changed while it was read is not committed.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod fsafe;
pub mod manifest;
mod plan;
mod progress;
pub mod records;
pub mod report;
mod run;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use fle_decryptor::{Action, Decryptor, OnError};
use sha2::{Digest, Sha256};

pub use error::{BatchError, ManifestProblem};
pub use plan::{SkipReason, Skipped};
pub use progress::Progress;
pub use records::Format;
pub use report::Summary;
pub use run::run;

/// Suffix of temporary outputs, beside their destination.
pub const PARTIAL: &str = ".fle-partial";

/// Name of the manifest file when [`Options::manifest`] is not given.
pub const MANIFEST_NAME: &str = plan::MANIFEST_NAME;

/// What a job does with each envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Replace envelopes with their plaintext.
    Decrypt,
    /// Replace envelopes with envelopes under another key.
    Reencrypt,
    /// Check every envelope decrypts; write no data.
    Verify,
}

impl Command {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Command::Decrypt => "decrypt",
            Command::Reencrypt => "reencrypt",
            Command::Verify => "verify",
        }
    }
}

/// A typed job description: what to do with each envelope, and how inputs are read.
pub struct Job<'a> {
    /// The decryptor (its key provider is the process's one KMS budget).
    pub decryptor: &'a Decryptor,
    /// What to do with each plaintext; it decides the [`Command`].
    pub action: Action<'a>,
    /// The error policy.
    pub on_error: OnError,
    /// The format forced for every input; otherwise by extension (files) or `stdin_format`.
    pub format: Option<Format>,
    /// Format of stdin when `format` is not given.
    pub stdin_format: Format,
    /// Whether field restrictions are set (they do not apply to CSV and text).
    pub has_fields: bool,
    /// Counters a progress display reads.
    pub progress: Arc<Progress>,
    /// What else identifies the job for `--resume` (the front end's settings: the
    /// configuration's content digest, fields, target key). The keyring's key material is
    /// added by the engine ([`key_fingerprint`]).
    pub settings: String,
    /// Prefix CSV cells whose plaintext a spreadsheet would run as a formula (`=`, `+`, `-`,
    /// `@`, tab, CR) with `'`: see [`records::is_formula`].
    pub neutralize_formulas: bool,
}

impl Job<'_> {
    /// The command the action means.
    pub fn command(&self) -> Command {
        match self.action {
            Action::Decrypt => Command::Decrypt,
            Action::Reencrypt(_) => Command::Reencrypt,
            Action::Verify => Command::Verify,
        }
    }
}

/// Where the inputs come from and the outputs go; the same for every command.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Files or directories (walked recursively). None: stdin to stdout.
    pub inputs: Vec<PathBuf>,
    /// Write outputs under this directory, mirroring the inputs' tree.
    pub out: Option<PathBuf>,
    /// Replace each input with its output (through a temporary file and an atomic rename).
    pub in_place: bool,
    /// In directories, only files whose relative path matches one of these globs.
    pub include: Vec<String>,
    /// In directories, skip files whose relative path matches one of these globs.
    pub exclude: Vec<String>,
    /// Continue the interrupted job its manifest describes.
    pub resume: bool,
    /// The job manifest (default: `OUT/.fle-manifest.json`, or in the first input's
    /// directory in place).
    pub manifest: Option<PathBuf>,
    /// Replace destination files that already exist.
    pub overwrite: bool,
    /// Report as JSON Lines.
    pub json: bool,
    /// Largest record (line, CSV row) or whole JSON / form document, in bytes.
    pub max_record: usize,
    /// Input bytes between checkpoints of the manifest (at the next record boundary).
    pub checkpoint_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: Vec::new(),
            out: None,
            in_place: false,
            include: Vec::new(),
            exclude: Vec::new(),
            resume: false,
            manifest: None,
            overwrite: false,
            json: false,
            max_record: 64 << 20,
            checkpoint_bytes: 8 << 20,
        }
    }
}

/// The streams of a job: stdin is read when no input files are given; data goes to stdout
/// when it is the destination; verify's findings and JSON reports to stdout (or stderr when
/// stdout carries data); warnings, errors and the text summary to stderr.
pub struct Io<'a> {
    /// Standard input.
    pub stdin: &'a mut dyn Read,
    /// Standard output.
    pub stdout: &'a mut dyn Write,
    /// Standard error.
    pub stderr: &'a mut dyn Write,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// Every input processed, every envelope handled, no entry skipped.
    Clean,
    /// Some inputs failed, some envelopes were left, redacted or refused, or some directory
    /// entries were skipped.
    Partial,
    /// Every input was refused.
    Refused,
}

impl Ended {
    /// The process exit status: 0 clean, 3 partial, 1 refused.
    pub fn exit_status(self) -> u8 {
        match self {
            Ended::Clean => 0,
            Ended::Partial => 3,
            Ended::Refused => 1,
        }
    }
}

/// SHA-256 of `bytes`, hex, for job identities.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A digest of the key material a decryptor opens envelopes with: every key's id, markers and
/// public key (SPKI) and KMS key. A job resumed with another key under the same id is another job.
pub fn key_fingerprint(decryptor: &Decryptor) -> String {
    let mut h = Sha256::new();
    for key in decryptor.keyring().keys() {
        let markers = key.markers();
        for part in [
            key.id().as_str().as_bytes(),
            markers.prefix.as_bytes(),
            markers.suffix.as_bytes(),
            key.public_key().spki_der(),
            key.kms_key_id().unwrap_or("").as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
