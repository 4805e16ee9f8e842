//! The job manifest: what a batch job has done so far, so that `--resume` continues it with no
//! record lost or processed twice.
//!
//! Protocol, per output file:
//! - records are written to a temporary file beside the destination (`NAME.fle-partial`);
//! - at a checkpoint the temporary file is flushed and fsynced first, then the manifest is
//!   replaced atomically (write, fsync, rename, fsync the directory) with the input offset and
//!   the output length reached: everything up to them is durable and consistent;
//! - on resume the temporary file is cut back to the recorded length and the input continues
//!   from the recorded offset, so records after the last checkpoint are done again, exactly once
//!   in the output;
//! - at the end the entry becomes `committing`, then the temporary file is renamed over the
//!   destination, then the entry becomes `done`. A resume that finds `committing` completes the
//!   rename if the temporary file is still there, and otherwise knows it happened.

//!
//! The manifest and its temporary copy are created and read through [`crate::fsafe`]: a link
//! planted under their names is refused, never followed.
//!
//! Finished inputs: a `done` entry is skipped by `--resume` only while the file it describes
//! is still the same (device, inode, size and modification time): the input with `--out`,
//! the output now under the input's name in place ([`Entry::output`]). A finished input
//! replaced or modified since is **refused** (the fail-closed choice: reprocessing it would
//! overwrite the output the earlier run committed, in place process an output as an input),
//! reported as a failed input (exit status 3), its entry left `done` and the manifest kept:
//! remove the manifest and run the job on that input again.
//!
//! Manifests of version 2 (no output identity) are refused with a message saying so.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BatchError, ManifestProblem};
use crate::fsafe::{self, Dir, Identity};

/// Largest manifest read (about 200,000 inputs).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Manifest file format version (2: key-material job ids, input inode; 3: identity of the
/// committed output).
const VERSION: u32 = 3;

/// The state of a whole job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// What the job does, so that a manifest is never resumed with other settings.
    pub job: String,
    /// Per input, by its display path.
    pub inputs: BTreeMap<String, Entry>,
}

/// Where one input stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Progress.
    pub state: State,
    /// Input bytes consumed, every record before them written.
    pub input_offset: u64,
    /// Length of the temporary output at that point.
    pub output_offset: u64,
    /// The input's size and modification time when the job started it: a changed input is
    /// never resumed.
    pub input_size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub input_mtime_ns: u128,
    /// Device and inode of the input: a file replaced under the same name is another input.
    pub input_file: (u64, u64),
    /// The finished output as written (set from `committing` on): what a resume checks the
    /// temporary file, or in place the file under the input's name, still is.
    #[serde(default)]
    pub output: Option<FileState>,
    /// Counters up to the checkpoint.
    pub counts: Counts,
}

/// The identity and state of a file, as recorded in the manifest.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileState {
    /// Device and inode.
    pub file: (u64, u64),
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
}

impl From<Identity> for FileState {
    fn from(i: Identity) -> Self {
        FileState {
            file: i.dev_ino,
            size: i.size,
            mtime_ns: i.mtime_ns,
        }
    }
}

/// An input's progress.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Started; `input_offset` / `output_offset` say how far.
    Partial,
    /// Finished; the temporary file is being renamed over the destination.
    Committing,
    /// Finished and in place.
    Done,
    /// Refused (the error policy failed it, or it could not be read as its format).
    Failed,
}

/// What was found in an input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Well-formed envelopes found.
    pub envelopes: u64,
    /// Envelopes decrypted (or re-encrypted, or found decryptable).
    pub decrypted: u64,
    /// Envelopes already under the re-encryption target.
    pub kept: u64,
    /// Problems reported.
    pub problems: u64,
    /// Well-formed envelopes per key.
    pub keys: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Counts) {
        self.envelopes += other.envelopes;
        self.decrypted += other.decrypted;
        self.kept += other.kept;
        self.problems += other.problems;
        for (key, n) in &other.keys {
            *self.keys.entry(key.clone()).or_insert(0) += n;
        }
    }
}

impl Manifest {
    /// An empty manifest for `job`.
    pub fn new(job: String) -> Self {
        Manifest {
            version: VERSION,
            job,
            inputs: BTreeMap::new(),
        }
    }

    /// Reads the manifest at `path`, checking it belongs to `job`.
    pub fn load(path: &Path, job: &str) -> Result<Self, BatchError> {
        let (dir, name) = fsafe::split(path).map_err(|e| BatchError::io("reading", path, e))?;
        let dir = Dir::open(dir).map_err(|e| BatchError::io("reading", path, e))?;
        let mut text = String::new();
        // A manifest is trusted only if this user wrote it: owned, owner-only, one link
        // (a planted one could mark inputs done or skip records), and not absurdly large.
        dir.open_own_read(name)
            .map_err(|e| BatchError::fs("reading the manifest", path, e))?
            .take(MAX_MANIFEST_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| BatchError::io("reading the manifest", path, e))?;
        let problem = |problem| BatchError::Manifest {
            path: path.to_owned(),
            problem,
        };
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(problem(ManifestProblem::Damaged(format!(
                "larger than {MAX_MANIFEST_BYTES} bytes"
            ))));
        }
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| problem(ManifestProblem::Damaged(e.to_string())))?;
        if manifest.version != VERSION {
            return Err(problem(ManifestProblem::Version {
                found: manifest.version,
                expected: VERSION,
            }));
        }
        if manifest.job != job {
            return Err(problem(ManifestProblem::OtherJob {
                found: manifest.job,
                expected: job.to_owned(),
            }));
        }
        Ok(manifest)
    }

    /// Replaces the manifest at `path` atomically and durably: a fresh owner-only temporary
    /// file (whatever was under its name removed first, never followed), fsync, rename, fsync
    /// of the directory.
    pub fn save(&self, path: &Path) -> Result<(), BatchError> {
        let (dir_path, name) =
            fsafe::split(path).map_err(|e| BatchError::io("writing the manifest", path, e))?;
        let dir =
            Dir::open(dir_path).map_err(|e| BatchError::io("writing the manifest", path, e))?;
        let mut tmp_name = OsString::from(name);
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(&tmp_name);
        let text = serde_json::to_vec_pretty(self).expect("a manifest encodes");
        dir.remove(&tmp_name)
            .map_err(|e| BatchError::io("writing the manifest", &tmp, e))?;
        let mut file = dir
            .create_new(&tmp_name)
            .map_err(|e| BatchError::fs("writing the manifest", &tmp, e))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| BatchError::io("writing the manifest", &tmp, e))?;
        // The manifest itself may be a planted link: rename replaces the link, not its target.
        dir.rename(&tmp_name, name)
            .map_err(|e| BatchError::io("replacing the manifest", path, e))?;
        dir.sync();
        Ok(())
    }

    /// Removes the manifest of a finished job.
    pub fn remove(path: &Path) -> Result<(), BatchError> {
        let (dir, name) = fsafe::split(path).map_err(|e| BatchError::io("removing", path, e))?;
        Dir::open(dir)
            .and_then(|d| d.remove(name))
            .map_err(|e| BatchError::io("removing the finished manifest", path, e))
    }
}

/// `path` with `suffix` appended to its file name.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

impl Entry {
    /// Whether `now` is the input this entry was started on, unchanged.
    pub fn same_input(&self, now: &Identity) -> bool {
        (self.input_size, self.input_mtime_ns, self.input_file)
            == (now.size, now.mtime_ns, now.dev_ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_job_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut m = Manifest::new("decrypt json".into());
        m.inputs.insert(
            "a/b.jsonl".into(),
            Entry {
                state: State::Partial,
                input_offset: 10,
                output_offset: 12,
                input_size: 100,
                input_mtime_ns: 5,
                input_file: (1, 2),
                output: Some(FileState {
                    file: (3, 4),
                    size: 12,
                    mtime_ns: 6,
                }),
                counts: Counts {
                    envelopes: 2,
                    decrypted: 2,
                    kept: 0,
                    problems: 0,
                    keys: [("01".to_string(), 2)].into(),
                },
            },
        );
        m.save(&path).unwrap();
        assert_eq!(Manifest::load(&path, "decrypt json").unwrap(), m);
        let err = Manifest::load(&path, "verify json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("another job"), "{err}");
        assert!(!sibling(&path, ".tmp").exists());
    }

    #[test]
    fn manifests_of_version_2_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut m = Manifest::new("x".into());
        m.version = 2;
        m.save(&path).unwrap();
        let err = Manifest::load(&path, "x").unwrap_err().to_string();
        assert!(err.contains("version 2") && err.contains("remove"), "{err}");
    }

    #[test]
    fn save_replaces_a_planted_link_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("m.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        std::os::unix::fs::symlink(&target, sibling(&path, ".tmp")).unwrap();
        assert!(Manifest::load(&path, "x").is_err());
        Manifest::new("x".into()).save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        Manifest::load(&path, "x").unwrap();
    }
}
