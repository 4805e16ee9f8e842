//! Turning the inputs and output options into units: one per input file (directories walked in
//! sorted order, include/exclude globs applied), or stdin.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use globset::{Glob, GlobSet, GlobSetBuilder};

use super::records::Format;
use super::{BatchArgs, Job, PARTIAL};

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
pub fn plan(args: &BatchArgs, job: &Job<'_>, verify: bool) -> anyhow::Result<Vec<Unit>> {
    if verify && (args.out.is_some() || args.in_place || args.resume || args.manifest.is_some()) {
        bail!("verify writes no data and keeps no manifest: --out, --in-place, --resume and --manifest do not apply");
    }
    if args.inputs.is_empty() {
        if args.out.is_some() || args.in_place {
            bail!("--out and --in-place need input files (none given: stdin goes to stdout)");
        }
        let units = vec![Unit {
            name: String::new(),
            source: None,
            dest: if verify { Dest::Nowhere } else { Dest::Stdout },
            format: job.format.unwrap_or(job.stdin_format),
            size: 0,
            max_record: args.max_record,
        }];
        check_fields(job, &units)?;
        return Ok(units);
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
    // (source, path relative to its input root)
    let mut found: Vec<(PathBuf, PathBuf)> = Vec::new();
    for input in &args.inputs {
        let meta = fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            let skip = Skip {
                out_dir: out_dir.as_deref(),
                manifest: manifest.as_deref(),
            };
            walk(input, Path::new(""), &skip, &mut files)?;
            files.sort();
            for rel in files {
                if include.as_ref().is_some_and(|g| !g.is_match(&rel)) {
                    continue;
                }
                if exclude.as_ref().is_some_and(|g| g.is_match(&rel)) {
                    continue;
                }
                found.push((input.join(&rel), rel));
            }
        } else {
            let name = input
                .file_name()
                .map(PathBuf::from)
                .with_context(|| format!("{} is not a file name", input.display()))?;
            found.push((input.clone(), name));
        }
    }
    let several = found.len() > 1 || args.inputs.iter().any(|i| i.is_dir());
    if several && !verify && args.out.is_none() && !args.in_place {
        bail!("several input files: give --out DIR (a tree mirroring the inputs) or --in-place");
    }
    let mut dests = BTreeSet::new();
    let mut units = Vec::new();
    for (source, rel) in found {
        let dest = if verify {
            Dest::Nowhere
        } else if let Some(out) = &args.out {
            Dest::File(out.join(&rel))
        } else if args.in_place {
            Dest::File(source.clone())
        } else {
            Dest::Stdout
        };
        if let Dest::File(d) = &dest {
            if !dests.insert(d.clone()) {
                bail!("two inputs would both be written to {}", d.display());
            }
            if !args.in_place && !args.resume && !args.overwrite && d.exists() {
                bail!("{} exists: add --overwrite to replace it", d.display());
            }
        }
        if source.to_str().is_none() {
            bail!(
                "{}: file names that are not UTF-8 are not supported (the manifest names inputs by their path)",
                source.display()
            );
        }
        let size = fs::metadata(&source)
            .with_context(|| format!("reading {}", source.display()))?
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
        });
    }
    if units.is_empty() {
        bail!("no input files (after --include / --exclude)");
    }
    check_fields(job, &units)?;
    Ok(units)
}

/// Field restrictions name JSON paths and form fields: CSV and text have neither.
fn check_fields(job: &Job<'_>, units: &[Unit]) -> anyhow::Result<()> {
    if !job.has_fields {
        return Ok(());
    }
    match units
        .iter()
        .find(|u| matches!(u.format, Format::Csv | Format::Text))
    {
        Some(u) => bail!(
            "--fields selects JSON paths and form fields; it cannot apply to {} input{}",
            u.format.name(),
            if u.name.is_empty() {
                String::new()
            } else {
                format!(" ({})", u.name)
            }
        ),
        None => Ok(()),
    }
}

/// The manifest's path, if the job keeps one.
pub fn manifest_path(args: &BatchArgs, verify: bool) -> Option<PathBuf> {
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

fn globs(patterns: &[String], flag: &str) -> anyhow::Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(Glob::new(p).with_context(|| format!("{flag} {p}"))?);
    }
    Ok(Some(set.build().with_context(|| flag.to_string())?))
}

/// Regular files under `root/rel`, as paths relative to `root`. Symbolic links are not
/// followed; the job's own files (temporary outputs, manifests) and the output directory are
/// skipped.
struct Skip<'a> {
    out_dir: Option<&'a Path>,
    manifest: Option<&'a Path>,
}

fn walk(root: &Path, rel: &Path, skip: &Skip<'_>, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let dir = root.join(rel);
    if let Some(out) = skip.out_dir {
        if fs::canonicalize(&dir).is_ok_and(|d| d == out) {
            return Ok(());
        }
    }
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let path = rel.join(&name);
        if kind.is_dir() {
            walk(root, &path, skip, files)?;
        } else if kind.is_file() && !text.ends_with(PARTIAL) && !text.starts_with(MANIFEST_NAME) {
            // The manifest or its temporary copy, by another name.
            if let Some(m) = skip.manifest {
                let name = m.file_name().unwrap_or_default().to_string_lossy();
                if text.starts_with(&*name)
                    && fs::canonicalize(&dir).is_ok_and(|d| d.join(&*name) == m)
                {
                    continue;
                }
            }
            files.push(path);
        }
    }
    Ok(())
}
