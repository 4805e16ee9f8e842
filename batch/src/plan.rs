//! Turning the inputs and output options into units: one per input file (directories walked in
//! sorted order, include/exclude globs applied), or stdin.
//!
//! Directory walks follow no symbolic link. Every entry a walk passes over (a link, a FIFO or
//! device, a temporary output or manifest by another job, a directory or entry that could not
//! be read) is reported as [`Skipped`]: the job still runs, and ends with exit status 3,
//! because after a key rotation such a file would otherwise keep the old key's envelopes
//! without anyone noticing.
//!
//! A walk goes through directory handles only: the directory the user named is opened once
//! (as named, links included), every directory below it with `O_DIRECTORY | O_NOFOLLOW`
//! through its parent's handle, and the units keep that root handle ([`InputAt`]): the runner
//! opens, creates and renames relative to directories opened again component by component
//! from it, so a subdirectory swapped for a link after the walk is refused, never followed.
//!
//! Named inputs are checked against the job's own files: an input that is the job's manifest,
//! one of its temporary outputs or an output (or the same file as another input in place) is
//! refused before anything is written, and so is, with `--out` or `--in-place`, a named input
//! that is not a regular file (a FIFO, socket or device).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::BatchError;
use crate::fsafe::{self, Dir, FsError, Kind, Unsafe};
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
    /// What the system said, for [`SkipReason::Unreadable`].
    pub error: Option<String>,
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
    /// A directory or entry that could not be read or examined (see [`Skipped::error`]).
    Unreadable,
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
            SkipReason::Unreadable => "unreadable",
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
            SkipReason::Unreadable => "could not be read",
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
    /// A walked input, or a named one in place: reached through directory handles from the
    /// root the user named, never by its path again.
    pub at: Option<InputAt>,
    /// For an `--out` destination: the root as the user named it and the directory below it
    /// that holds the destination, reached without following links. (In place, the
    /// destination's directory is the input's, through [`Unit::at`].)
    pub dest_dir: Option<(PathBuf, PathBuf)>,
}

/// Where an input is, through directory handles.
#[derive(Debug, Clone)]
pub struct InputAt {
    /// The directory the user named (walked), or a named input's directory, opened once.
    pub root: Arc<Dir>,
    /// The input's path below it: normal components only.
    pub rel: PathBuf,
}

impl InputAt {
    /// Opens the input for reading: every directory below the root with `O_DIRECTORY |
    /// O_NOFOLLOW`, the file with `O_NOFOLLOW`, refused unless regular.
    pub fn open_read(&self) -> Result<fs::File, FsError> {
        self.root.open_read_below(&self.rel)
    }

    /// The directory that holds the input, opened component by component from the root
    /// without following links, and the input's name in it.
    pub fn parent(&self) -> Result<(Dir, &OsStr), FsError> {
        let (below, name) = fsafe::split(&self.rel)?;
        Ok((self.root.open_below(below, false)?, name))
    }
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
            at: None,
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
    // The output directory and the manifest's directory, by identity: a walk passes over the
    // one and the other's manifest (wherever --manifest puts it, it is never an input).
    let out_dir = args
        .out
        .as_ref()
        .and_then(|o| Dir::open(o).ok())
        .and_then(|d| d.dev_ino().ok());
    let manifest_file = manifest_path(args, verify);
    let manifest = manifest_file.as_deref().and_then(|m| {
        let (dir, name) = fsafe::split(m).ok()?;
        let id = Dir::open(dir).ok()?.dev_ino().ok()?;
        Some((id, name.to_os_string()))
    });
    let mut found: Vec<Found> = Vec::new();
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
            // The root as the user named it, opened once: everything below through it.
            let root = Arc::new(Dir::open(input).map_err(|e| BatchError::io("reading", input, e))?);
            let mut files = Vec::new();
            let skip = Skip {
                out_dir,
                manifest: manifest.as_ref().map(|(id, name)| (*id, name.as_os_str())),
                in_place: args.in_place,
            };
            walk(input, &root, Path::new(""), &skip, &mut files, &mut skipped);
            files.sort();
            for (rel, size) in files {
                if include.as_ref().is_some_and(|g| !g.is_match(&rel)) {
                    continue;
                }
                if exclude.as_ref().is_some_and(|g| g.is_match(&rel)) {
                    continue;
                }
                found.push(Found {
                    source: input.join(&rel),
                    at: Some(InputAt {
                        root: root.clone(),
                        rel: rel.clone(),
                    }),
                    rel,
                    size,
                });
            }
        } else {
            let name = input
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| usage(format!("{} is not a file name", input.display())))?;
            if !meta.is_file() && (args.out.is_some() || args.in_place) {
                // Reading a FIFO would wait for a writer, a device never ends: refused.
                return Err(usage(format!(
                    "{}: not a regular file (a FIFO, socket or device): --out and --in-place read regular files only (pipe it to standard input instead)",
                    input.display()
                )));
            }
            let at = if args.in_place {
                let (dir, file) =
                    fsafe::split(input).map_err(|e| BatchError::io("reading", input, e))?;
                let root = Dir::open(dir).map_err(|e| BatchError::io("reading", input, e))?;
                Some(InputAt {
                    root: Arc::new(root),
                    rel: PathBuf::from(file),
                })
            } else {
                None
            };
            found.push(Found {
                source: input.clone(),
                rel: name,
                at,
                size: meta.len(),
            });
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
    for Found {
        source,
        rel,
        at,
        size,
    } in found
    {
        let (dest, dest_dir) = if verify {
            (Dest::Nowhere, None)
        } else if let Some(out) = &args.out {
            let below = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            (Dest::File(out.join(&rel)), Some((out.clone(), below)))
        } else if args.in_place {
            (Dest::File(source.clone()), None)
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
        units.push(Unit {
            name: source.display().to_string(),
            format: job
                .format
                .unwrap_or_else(|| Format::from_extension(&source)),
            source: Some(source),
            dest,
            size,
            max_record: args.max_record,
            at,
            dest_dir,
        });
    }
    if units.is_empty() && skipped.is_empty() {
        return Err(usage("no input files (after --include / --exclude)"));
    }
    check_fields(job, &units)?;
    if !verify {
        check_own_files(args, &units, manifest_file.as_deref())?;
    }
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

/// An input file found: a named one or one of a walk.
struct Found {
    /// Its path as the user sees it.
    source: PathBuf,
    /// Its path relative to its input root (its name for a named input).
    rel: PathBuf,
    /// Reached through directory handles.
    at: Option<InputAt>,
    /// Its size.
    size: u64,
}

/// Refuses a job that would read one of its own files: an input that is the job's manifest
/// (or its temporary copy), a temporary output or an output of the job (with `--out`, its own
/// output included), or, in place, the same file as another input. Files are compared by
/// device and inode, both the entry itself and what a link there points to, so differently
/// spelled paths are caught; names that do not exist yet cannot be an existing input.
fn check_own_files(
    args: &Options,
    units: &[Unit],
    manifest: Option<&Path>,
) -> Result<(), BatchError> {
    /// Which of the job's own files an identity belongs to.
    #[derive(Clone, Copy)]
    enum Own {
        Manifest,
        /// The destination of unit `i` (in place: the input itself).
        Dest(usize),
        /// The temporary output of unit `i`.
        Partial(usize),
    }
    let mut own: Vec<((u64, u64), Own)> = Vec::new();
    let mut add = |path: &Path, kind: Own| {
        for meta in [fs::symlink_metadata(path), fs::metadata(path)]
            .into_iter()
            .flatten()
        {
            own.push(((meta.dev(), meta.ino()), kind));
        }
    };
    if let Some(m) = manifest {
        add(m, Own::Manifest);
        add(&crate::manifest::sibling(m, ".tmp"), Own::Manifest);
    }
    for (i, unit) in units.iter().enumerate() {
        if let Dest::File(d) = &unit.dest {
            add(d, Own::Dest(i));
            add(&crate::manifest::sibling(d, PARTIAL), Own::Partial(i));
        }
    }
    if own.is_empty() {
        return Ok(());
    }
    for (j, unit) in units.iter().enumerate() {
        let Some(source) = &unit.source else { continue };
        let Ok(meta) = fs::metadata(source) else {
            continue;
        };
        let id = (meta.dev(), meta.ino());
        // In place an input is its own destination.
        let clash = own.iter().find(|(other, kind)| {
            *other == id && !(args.in_place && matches!(kind, Own::Dest(i) if *i == j))
        });
        if let Some((_, kind)) = clash {
            let what = match *kind {
                Own::Manifest => "this job's manifest".to_owned(),
                Own::Dest(i) if args.in_place => {
                    format!("the same file as the input {}", units[i].name)
                }
                Own::Dest(i) => format!("the output of {}", units[i].name),
                Own::Partial(i) => {
                    format!("a temporary output of this job (for {})", units[i].name)
                }
            };
            return Err(usage(format!(
                "the input {} is {what}: a job cannot read its own files (nothing was written)",
                source.display()
            )));
        }
    }
    Ok(())
}

/// What a walk passes over without a word: the output directory and the job's own manifest
/// (by the identity of the directories they are in).
struct Skip<'a> {
    out_dir: Option<(u64, u64)>,
    manifest: Option<((u64, u64), &'a OsStr)>,
    in_place: bool,
}

/// Regular files under `dir` (the directory `root/rel`, reached through handles from `root`),
/// as paths relative to `root` with their sizes, into `files`; entries passed over into
/// `skipped`, entries and directories that could not be read included. Symbolic links are
/// not followed.
fn walk(
    root: &Path,
    dir: &Dir,
    rel: &Path,
    skip: &Skip<'_>,
    files: &mut Vec<(PathBuf, u64)>,
    skipped: &mut Vec<Skipped>,
) {
    let id = dir.dev_ino().ok();
    if id.is_some() && id == skip.out_dir {
        return;
    }
    let own_manifest = skip
        .manifest
        .filter(|(d, _)| Some(*d) == id)
        .map(|(_, name)| name);
    let (entries, error) = dir.entries();
    let names: BTreeSet<&OsStr> = entries.iter().map(|(n, _)| n.as_os_str()).collect();
    let skip_as = |skipped: &mut Vec<Skipped>, path: &Path, why, error: Option<String>| {
        skipped.push(Skipped {
            path: root.join(path),
            why,
            error,
        })
    };
    for (name, kind) in &entries {
        let path = rel.join(name);
        let Some(text) = name.to_str() else {
            skip_as(skipped, &path, SkipReason::NotUtf8, None);
            continue;
        };
        let kind = match kind {
            Ok(kind) => *kind,
            Err(e) => {
                skip_as(skipped, &path, SkipReason::Unreadable, Some(e.to_string()));
                continue;
            }
        };
        match kind {
            Kind::Symlink => skip_as(skipped, &path, SkipReason::Symlink, None),
            Kind::Other => skip_as(skipped, &path, SkipReason::NotRegular, None),
            Kind::Dir => match dir.open_below(Path::new(name), false) {
                Ok(child) => walk(root, &child, &path, skip, files, skipped),
                // Swapped for a link since it was listed.
                Err(FsError::Unsafe(Unsafe::Symlink)) => {
                    skip_as(skipped, &path, SkipReason::Symlink, None)
                }
                Err(e) => skip_as(skipped, &path, SkipReason::Unreadable, Some(e.to_string())),
            },
            Kind::File => {
                if let Some(of) = text.strip_suffix(PARTIAL) {
                    // In place, `X.fle-partial` beside `X` is this job's own (resumed) output.
                    if !(skip.in_place && names.contains(OsStr::new(of))) {
                        skip_as(skipped, &path, SkipReason::PartialOutput, None);
                    }
                    continue;
                }
                if let Some(own) = own_manifest {
                    let mut tmp = OsString::from(own);
                    tmp.push(".tmp");
                    if name.as_os_str() == own || *name == tmp {
                        // The job's own manifest or its temporary copy.
                        continue;
                    }
                }
                if text.starts_with(MANIFEST_NAME) {
                    skip_as(skipped, &path, SkipReason::Manifest, None);
                    continue;
                }
                match dir.identity(name) {
                    Ok(found) => files.push((path, found.size)),
                    Err(FsError::Unsafe(Unsafe::Symlink)) => {
                        skip_as(skipped, &path, SkipReason::Symlink, None)
                    }
                    Err(FsError::Unsafe(_)) => {
                        skip_as(skipped, &path, SkipReason::NotRegular, None)
                    }
                    Err(FsError::Io(e)) => {
                        skip_as(skipped, &path, SkipReason::Unreadable, Some(e.to_string()))
                    }
                }
            }
        }
    }
    if let Some(e) = error {
        skip_as(
            skipped,
            rel,
            SkipReason::Unreadable,
            Some(format!("listing the directory: {e}")),
        );
    }
}
