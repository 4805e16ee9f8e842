//! What can stop a batch job or one of its inputs. No variant ever holds plaintext: messages
//! name files, byte offsets, keys and settings.

use std::io;
use std::path::PathBuf;

use crate::fsafe::{FsError, Unsafe};

/// Why a job, or one input of it, stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Options that do not go together or describe no work (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// A file or directory could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "creating", "renaming over", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An entry the job would write through or read from is unsafe (a planted link, a hard
    /// link, a shared file): refused, never followed.
    #[error("{}: {what}: refused (fle never writes through links in the directories it writes to)", path.display())]
    Unsafe {
        /// The entry.
        path: PathBuf,
        /// What is wrong with it.
        what: Unsafe,
    },
    /// An input a finished run of the job processed was replaced or modified since: with
    /// `--resume` it is refused (neither skipped nor processed again).
    #[error("{} changed since an earlier run of this job finished it: not processed again; remove the manifest and run the job on it again", path.display())]
    ChangedSinceDone {
        /// The input.
        path: PathBuf,
    },
    /// An input changed while the job read it, or since an interrupted job read it: its
    /// output is not committed.
    #[error("{} changed while the job read it (size, modification time or file); its output is not written: run the job again", path.display())]
    InputChanged {
        /// The input.
        path: PathBuf,
    },
    /// The manifest cannot be used.
    #[error("manifest {}: {problem}", path.display())]
    Manifest {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        problem: ManifestProblem,
    },
    /// A record is longer than the job's limit.
    #[error("a {format} {what} longer than {limit} bytes (--max-record){}", at.map(|a| format!(" at input byte {a}")).unwrap_or_default())]
    RecordTooLong {
        /// The format's name.
        format: &'static str,
        /// "record" or "document".
        what: &'static str,
        /// The limit.
        limit: usize,
        /// Where the record starts, when known.
        at: Option<u64>,
    },
    /// The input was refused: under `--on-error fail` an envelope could not be handled, or
    /// the input is not valid in its format (exit status 1).
    #[error("{0}")]
    Refused(String),
    /// No input could be processed.
    #[error("no input could be processed")]
    NothingProcessed,
}

/// What is wrong with a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// It exists and `--resume` was not given.
    #[error("exists: an earlier job was interrupted. Add --resume to continue it, or remove the file to start again")]
    Exists,
    /// It is not a manifest this version of fle reads.
    #[error("is damaged: {0}")]
    Damaged(String),
    /// Another format version.
    #[error("has version {found}, this fle writes {expected}: finish the job with the fle that wrote it, or remove the manifest to start again")]
    Version {
        /// Found.
        found: u32,
        /// Written by this build.
        expected: u32,
    },
    /// It describes another job (other command, settings, inputs or key material).
    #[error("belongs to another job ({found}); this one is {expected}: run that job's command again with --resume, or remove the manifest")]
    OtherJob {
        /// The manifest's job id.
        found: String,
        /// This job's id.
        expected: String,
    },
}

impl BatchError {
    /// The process exit status this error means: 1 for a refused input, 2 for everything else
    /// (usage, configuration, I/O).
    pub fn exit_status(&self) -> u8 {
        match self {
            BatchError::Refused(_) => 1,
            _ => 2,
        }
    }

    /// An I/O error while doing `action` to `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        BatchError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A safe-file-system error while doing `action` to `path`.
    pub(crate) fn fs(action: &'static str, path: impl Into<PathBuf>, e: FsError) -> Self {
        match e {
            FsError::Io(source) => BatchError::io(action, path, source),
            FsError::Unsafe(what) => BatchError::Unsafe {
                path: path.into(),
                what,
            },
        }
    }

    /// Whether the input itself was refused (as opposed to the job failing around it).
    pub fn is_refusal(&self) -> bool {
        matches!(self, BatchError::Refused(_))
    }
}
