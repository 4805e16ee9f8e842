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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// Manifest file format version.
const VERSION: u32 = 1;

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
    /// Counters up to the checkpoint.
    pub counts: Counts,
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
    pub fn load(path: &Path, job: &str) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading the manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("manifest {} is damaged", path.display()))?;
        if manifest.version != VERSION {
            bail!(
                "manifest {} has version {}, this fle writes {VERSION}",
                path.display(),
                manifest.version
            );
        }
        if manifest.job != job {
            bail!(
                "manifest {} belongs to another job ({}); this one is {job}: run that job's command \
                 again with --resume, or remove the manifest",
                path.display(),
                manifest.job
            );
        }
        Ok(manifest)
    }

    /// Replaces the manifest at `path` atomically and durably.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = sibling(path, ".tmp");
        let text = serde_json::to_vec_pretty(self).context("encoding the manifest")?;
        let mut file = File::create(&tmp)
            .with_context(|| format!("writing the manifest {}", tmp.display()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing the manifest {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("replacing the manifest {}", path.display()))?;
        sync_dir(path);
        Ok(())
    }
}

/// `path` with `suffix` appended to its file name.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes a rename in `path`'s directory durable (best effort: not every file system allows
/// opening a directory).
pub fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// An input's size and modification time (ns since the epoch).
pub fn identity(path: &Path) -> anyhow::Result<(u64, u128)> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok((meta.len(), mtime))
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
}
