//! Turning the inputs and output options into units: one per input file (directories walked in
//! sorted order, include/exclude globs applied), or stdin.
//!
//! Directory walks follow no symbolic link. Every entry a walk passes over (a link, a FIFO or
//! device, a temporary output or manifest by another job) is reported as [`Skipped`]: the job
//! still runs, and ends with exit status 3, because after a key rotation such a file would
//! otherwise keep the old key's envelopes without anyone noticing.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::BatchError;
use crate::records::Format;
use crate::{Job, Options, PARTIAL};

fn usage(text: impl Into<String>) -> BatchError {
    BatchError::Usage(text.into())
}

/// An entry of an input directory the job did not process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path (input directory joined with the relative path).
    pub path: PathBuf,
    /// Why.
    pub why: SkipReason,
}

/// Why a directory entry was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symbolic link (to a file or a directory): never followed in a walk.
    Symlink,
    /// A FIFO, socket or device.
    NotRegular,
    /// A temporary output (`*.fle-partial`) of another job.
    PartialOutput,
    /// A manifest (`.fle-manifest.json*`) of another job.
    Manifest,
    /// A name that is not UTF-8 (the manifest names inputs by their path).
    NotUtf8,
}

impl SkipReason {
    /// A short machine-readable name (JSON reports).
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Symlink => "symlink",
            SkipReason::NotRegular => "not_regular",
            SkipReason::PartialOutput => "partial_output",
            SkipReason::Manifest => "manifest",
            SkipReason::NotUtf8 => "not_utf8",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::Symlink => "a symbolic link (not followed)",
            SkipReason::NotRegular => "not a regular file",
            SkipReason::PartialOutput => "a temporary output of another job",
            SkipReason::Manifest => "a job manifest",
            SkipReason::NotUtf8 => "a file name that is not UTF-8",
        })
    }
}

/// The units of a job and the entries passed over.
#[derive(Debug)]
pub struct Plan {
    /// One per input, in order.
    pub units: Vec<Unit>,
    /// Directory entries not processed.
    pub skipped: Vec<Skipped>,
}

/// Name of the manifest file when `--manifest` is not given.
pub const MANIFEST_NAME: &str = ".fle-manifest.json";

/// One input and where its output goes.
#[derive(Debug)]
pub struct Unit {
    /// How it is named in warnings and the manifest ("" for stdin).
    pub name: String,
    /// The input file; `None`: stdin.
    pub source: Option<PathBuf>,
    /// Where the output goes.
    pub dest: Dest,
    /// How it is read.
    pub format: Format,
    /// Its size (0 for stdin).
    pub size: u64,
    /// Largest record.
    pub max_record: usize,
    /// Whether it was found by a directory walk (then a link in its place is refused).
    pub walked: bool,
    /// For a file destination: the root as the user named it (`--out`, or the input's
    /// directory in place) and the directory below it that holds the destination, reached
    /// without following links.
    pub dest_dir: Option<(PathBuf, PathBuf)>,
}

/// Where a unit's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// Standard output.
    Stdout,
    /// A file, through `FILE.fle-partial` and a rename.
    File(PathBuf),
    /// Nowhere (verify).
    Nowhere,
}

/// The units of a job.
pub fn plan(args: &Options, job: &Job<'_>) -> Result<Plan, BatchError> {
    let verify = job.command() == crate::Command::Verify;
    if verify && (args.out.is_some() || args.in_place || args.resume || args.manifest.is_some()) {
        return Err(usage("verify writes no data and keeps no manifest: --out, --in-place, --resume and --manifest do not apply"));
    }
    if args.inputs.is_empty() {
        if args.out.is_some() || args.in_place {
            return Err(usage(
                "--out and --in-place need input files (none given: stdin goes to stdout)",
            ));
        }
        let units = vec![Unit {
            name: String::new(),
            source: None,
            dest: if verify { Dest::Nowhere } else { Dest::Stdout },
            format: job.format.unwrap_or(job.stdin_format),
            size: 0,
            max_record: args.max_record,
            walked: false,
            dest_dir: None,
        }];
        check_fields(job, &units)?;
        return Ok(Plan {
            units,
            skipped: Vec::new(),
        });
    }
    let include = globs(&args.include, "--include")?;
    let exclude = globs(&args.exclude, "--exclude")?;
    let out_dir = args
        .out
        .as_ref()
        .map(|o| fs::canonicalize(o).unwrap_or_else(|_| o.clone()));
    // The manifest, wherever --manifest puts it, is never an input.
    let manifest = manifest_path(args, verify).map(|m| {
        let dir = m
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::canonicalize(dir).map_or(m.clone(), |d| d.join(m.file_name().unwrap_or_default()))
    });
    // (source, path relative to its input root, found by a walk)
    let mut found: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
    let mut skipped = Vec::new();
    for input in &args.inputs {
        let link = fs::symlink_metadata(input)
            .map_err(|e| BatchError::io("reading", input, e))?
            .file_type()
            .is_symlink();
        if link && args.in_place {
            // Replacing a link's target through the link, or the link by a regular file, are
            // both surprises: refused, name the target instead.
            return Err(BatchError::Unsafe {
                path: input.clone(),
                what: crate::fsafe::Unsafe::Symlink,
            });
        }
        let meta = fs::metadata(input).map_err(|e| BatchError::io("reading", input, e))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let skip = Skip {
                out_dir: out_dir.as_deref(),
                manifest: manifest.as_deref(),
                in_place: args.in_place,
            };
            walk(input, Path::new(""), &skip, &mut files, &mut skipped)?;
            files.sort();
            for rel in files {
                if include.as_ref().is_some_and(|g| !g.is_match(&rel)) {
                    continue;
                }
                if exclude.as_ref().is_some_and(|g| g.is_match(&rel)) {
                    continue;
                }
                found.push((input.join(&rel), rel, true));
            }
        } else {
            let name = input
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| usage(format!("{} is not a file name", input.display())))?;
            found.push((input.clone(), name, false));
        }
    }
    let several = found.len() > 1 || args.inputs.iter().any(|i| i.is_dir());
    if several && !verify && args.out.is_none() && !args.in_place {
        return Err(usage(
            "several input files: give --out DIR (a tree mirroring the inputs) or --in-place",
        ));
    }
    let mut dests = BTreeSet::new();
    let mut units = Vec::new();
    for (source, rel, walked) in found {
        let (dest, dest_dir) = if verify {
            (Dest::Nowhere, None)
        } else if let Some(out) = &args.out {
            let below = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            (Dest::File(out.join(&rel)), Some((out.clone(), below)))
        } else if args.in_place {
            let dir = source.parent().map(Path::to_path_buf).unwrap_or_default();
            (Dest::File(source.clone()), Some((dir, PathBuf::new())))
        } else {
            (Dest::Stdout, None)
        };
        if let Dest::File(d) = &dest {
            if !dests.insert(d.clone()) {
                return Err(usage(format!(
                    "two inputs would both be written to {}",
                    d.display()
                )));
            }
            if !args.in_place && !args.resume && !args.overwrite && d.symlink_metadata().is_ok() {
                return Err(usage(format!(
                    "{} exists: add --overwrite to replace it",
                    d.display()
                )));
            }
        }
        if source.to_str().is_none() {
            return Err(usage(format!(
                "{}: file names that are not UTF-8 are not supported (the manifest names inputs by their path)",
                source.display()
            )));
        }
        let size = fs::metadata(&source)
            .map_err(|e| BatchError::io("reading", &source, e))?
            .len();
        units.push(Unit {
            name: source.display().to_string(),
            format: job
                .format
                .unwrap_or_else(|| Format::from_extension(&source)),
            source: Some(source),
            dest,
            size,
            max_record: args.max_record,
            walked,
            dest_dir,
        });
    }
    if units.is_empty() && skipped.is_empty() {
        return Err(usage("no input files (after --include / --exclude)"));
    }
    check_fields(job, &units)?;
    Ok(Plan { units, skipped })
}

/// Field restrictions name JSON paths and form fields: CSV and text have neither.
fn check_fields(job: &Job<'_>, units: &[Unit]) -> Result<(), BatchError> {
    if !job.has_fields {
        return Ok(());
    }
    match units
        .iter()
        .find(|u| matches!(u.format, Format::Csv | Format::Text))
    {
        Some(u) => Err(usage(format!(
            "--fields selects JSON paths and form fields; it cannot apply to {} input{}",
            u.format.name(),
            if u.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", u.name)
            }
        ))),
        None => Ok(()),
    }
}

/// The manifest's path, if the job keeps one.
pub fn manifest_path(args: &Options, verify: bool) -> Option<PathBuf> {
    if let Some(m) = &args.manifest {
        return Some(m.clone());
    }
    if verify || args.inputs.is_empty() {
        return None;
    }
    if let Some(out) = &args.out {
        return Some(out.join(MANIFEST_NAME));
    }
    if args.in_place {
        let first = &args.inputs[0];
        let dir = if first.is_dir() {
            first.clone()
        } else {
            first.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        return Some(dir.join(MANIFEST_NAME));
    }
    None
}

fn globs(patterns: &[String], flag: &str) -> Result<Option<GlobSet>, BatchError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(Glob::new(p).map_err(|e| usage(format!("{flag} {p}: {e}")))?);
    }
    Ok(Some(
        set.build().map_err(|e| usage(format!("{flag}: {e}")))?,
    ))
}

/// What a walk passes over without a word: the job's own files.
struct Skip<'a> {
    out_dir: Option<&'a Path>,
    manifest: Option<&'a Path>,
    in_place: bool,
}

/// Regular files under `root/rel`, as paths relative to `root`, into `files`; entries passed
/// over into `skipped`. Symbolic links are not followed.
fn walk(
    root: &Path,
    rel: &Path,
    skip: &Skip<'_>,
    files: &mut Vec<PathBuf>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), BatchError> {
    let dir = root.join(rel);
    let canonical = fs::canonicalize(&dir).ok();
    if let (Some(out), Some(d)) = (skip.out_dir, &canonical) {
        if d == out {
            return Ok(());
        }
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| BatchError::io("reading", &dir, e))? {
        let entry = entry.map_err(|e| BatchError::io("reading", &dir, e))?;
        let kind = entry
            .file_type()
            .map_err(|e| BatchError::io("reading", entry.path(), e))?;
        entries.push((entry.file_name(), kind));
    }
    let names: BTreeSet<_> = entries.iter().map(|(n, _)| n.clone()).collect();
    for (name, kind) in entries {
        let path = rel.join(&name);
        let mut skip_as = |why| {
            skipped.push(Skipped {
                path: root.join(&path),
                why,
            })
        };
        let Some(text) = name.to_str() else {
            skip_as(SkipReason::NotUtf8);
            continue;
        };
        if kind.is_symlink() {
            skip_as(SkipReason::Symlink);
        } else if kind.is_dir() {
            walk(root, &path, skip, files, skipped)?;
        } else if !kind.is_file() {
            skip_as(SkipReason::NotRegular);
        } else if let Some(of) = text.strip_suffix(PARTIAL) {
            // In place, `X.fle-partial` beside `X` is this job's own (resumed) output.
            if !(skip.in_place && names.contains(std::ffi::OsStr::new(of))) {
                skip_as(SkipReason::PartialOutput);
            }
        } else if let Some(m) = skip.manifest.filter(|m| {
            let own = m.file_name().unwrap_or_default().to_string_lossy();
            let tmp = format!("{own}.tmp");
            (text == own || text == tmp) && canonical.as_ref().is_some_and(|d| d.join(&*own) == *m)
        }) {
            // The job's own manifest or its temporary copy.
            let _ = m;
        } else if text.starts_with(MANIFEST_NAME) {
            skip_as(SkipReason::Manifest);
        } else {
            files.push(path);
        }
    }
    Ok(())
}
