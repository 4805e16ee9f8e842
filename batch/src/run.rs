//! The job runner: units one after another; inside a unit, records read ahead into a window
//! of bounded size and processed concurrently, outputs written in input order. Every record
//! boundary is a point the job may checkpoint at (see [`crate::manifest`]).

use std::cell::{Cell, RefCell};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fle_decryptor::{Action, DocumentError, OnError, Problem, Report};
use futures_util::stream::{FuturesOrdered, StreamExt};
use zeroize::Zeroizing;

use crate::error::{BatchError, ManifestProblem};
use crate::fsafe::{self, Dir, FsError, Identity};
use crate::manifest::{Counts, Entry, Manifest, State};
use crate::plan::{self, Dest, Unit};
use crate::records::{self, Piece, Record, Splitter};
use crate::report::{escape, Reporter, Summary};
use crate::{key_fingerprint, Command, Ended, Io, Job, Options, PARTIAL};

/// Runs the job: plans the units (reporting skipped directory entries), processes them, and
/// reports. An `Err` is the whole job's failure (usage, manifest, a lone input to stdout);
/// inputs that fail among several are reported and counted, and the job goes on.
pub async fn run(
    job: &Job<'_>,
    args: &Options,
    io: Io<'_>,
) -> Result<(Ended, Summary), BatchError> {
    let started = Instant::now();
    let command = job.command();
    let verify = command == Command::Verify;
    // The manifest: only for jobs that write files. An interrupted job's manifest is looked
    // at first: its outputs exist.
    let manifest_path = plan::manifest_path(args, verify);
    if let Some(path) = &manifest_path {
        if path.symlink_metadata().is_ok() && !args.resume {
            return Err(BatchError::Manifest {
                path: path.clone(),
                problem: ManifestProblem::Exists,
            });
        }
    }
    let plan = plan::plan(args, job)?;
    let units = plan.units;
    let data_on_stdout = !verify && units.iter().any(|u| matches!(u.dest, Dest::Stdout));
    let files = units.iter().any(|u| u.source.is_some()) || !plan.skipped.is_empty();
    if args.resume && !files {
        return Err(BatchError::Usage(
            "--resume needs input files (stdin cannot be resumed)".into(),
        ));
    }
    let Io {
        stdin,
        stdout,
        stderr,
    } = io;
    let stdout = RefCell::new(stdout);
    let stderr = RefCell::new(stderr);
    let mut reporter = Reporter::new(command, args.json, data_on_stdout, &stdout, &stderr);
    tracing::info!(
        command = command.name(),
        inputs = units.len(),
        entries_skipped = plan.skipped.len(),
        resume = args.resume,
        "job planned"
    );
    for s in &plan.skipped {
        tracing::warn!(path = %escape(&s.path.to_string_lossy()), reason = s.why.name(), "entry skipped");
        reporter.skipped(s);
    }
    let id = job_id(job, args);
    let mut manifest = match &manifest_path {
        Some(path) if path.symlink_metadata().is_ok() => Manifest::load(path, &id)?,
        _ => Manifest::new(id),
    };
    let total: u64 = units.iter().map(|u| u.size).sum();
    job.progress.set_total(total);

    let mut totals = Counts::default();
    let (mut done, mut failed, mut skipped, mut not_refused) = (0usize, 0usize, 0usize, 0usize);
    let out_bytes = AtomicU64::new(0);
    let mut stdin = Some(stdin);
    for unit in &units {
        let result = match &unit.dest {
            Dest::Stdout | Dest::Nowhere if unit.source.is_none() => {
                let input = stdin.take().expect("stdin is one unit");
                let mut sink = StreamSink {
                    out: (!verify).then_some(&stdout),
                    written: &out_bytes,
                };
                // stdin has no manifest: a failure is the whole job's.
                let counts = pump(job, unit, input, 0, &mut sink, &mut reporter).await?;
                Ok(Some(counts))
            }
            _ => {
                run_file_unit(
                    job,
                    args,
                    unit,
                    &mut manifest,
                    manifest_path.as_deref(),
                    &stdout,
                    &mut reporter,
                    &out_bytes,
                )
                .await
            }
        };
        match result {
            Ok(Some(counts)) => {
                tracing::info!(
                    input = %escape(&unit.name),
                    envelopes = counts.envelopes,
                    decrypted = counts.decrypted,
                    kept = counts.kept,
                    problems = counts.problems,
                    "input done"
                );
                done += 1;
                totals.add(&counts);
            }
            Ok(None) => {
                skipped += 1;
                if let Some(e) = manifest.inputs.get(&unit.name) {
                    totals.add(&e.counts);
                }
            }
            Err(e) => {
                // A lone input to stdout: the error is the command's (printed once, by the
                // front end).
                if units.len() == 1 && matches!(unit.dest, Dest::Stdout) {
                    return Err(e);
                }
                tracing::warn!(input = %escape(&unit.name), error = %escape(&e.to_string()), "input failed");
                failed += 1;
                if !e.is_refusal() {
                    not_refused += 1;
                }
                reporter.failed(&unit.name, &e.to_string());
            }
        }
    }
    reporter.finish();
    if let Some(path) = &manifest_path {
        // Removed only when nothing in it is unfinished (entries of inputs no longer given
        // included: their temporary outputs are still there).
        let finished = manifest.inputs.values().all(|e| e.state == State::Done);
        if failed == 0 && finished && path.symlink_metadata().is_ok() {
            Manifest::remove(path)?;
        }
    }
    let elapsed = started.elapsed();
    tracing::info!(
        command = command.name(),
        done,
        failed,
        already_done = skipped,
        envelopes = totals.envelopes,
        problems = totals.problems,
        kms_calls = job.progress.calls(),
        kms_retries = job.progress.retries(),
        seconds = elapsed.as_secs_f64(),
        "job finished"
    );
    let summary = Summary {
        kind: "summary",
        command: command.name(),
        inputs: units.len(),
        inputs_done: done,
        inputs_failed: failed,
        inputs_skipped: skipped,
        entries_skipped: plan.skipped.len(),
        bytes_in: job.progress.bytes(),
        bytes_out: out_bytes.load(Ordering::Relaxed),
        envelopes: totals.envelopes,
        decrypted: totals.decrypted,
        kept: totals.kept,
        problems: totals.problems,
        keys: totals.keys.clone(),
        kms_calls: job.progress.calls(),
        seconds: elapsed.as_secs_f64(),
        mb_per_second: job.progress.bytes() as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
        kms_calls_per_second: job.progress.calls() as f64 / elapsed.as_secs_f64().max(1e-9),
        peak_rss_bytes: peak_rss(),
    };
    reporter
        .summary(&summary, files)
        .map_err(|e| BatchError::io("writing", "the report", e))?;
    stdout
        .borrow_mut()
        .flush()
        .map_err(|e| BatchError::io("writing", "the output", e))?;
    if not_refused > 0 && done + skipped == 0 {
        return Err(BatchError::NothingProcessed);
    }
    let ended = if failed > 0 && done + skipped == 0 && plan.skipped.is_empty() {
        Ended::Refused
    } else if failed > 0 || totals.problems > 0 || !plan.skipped.is_empty() {
        Ended::Partial
    } else {
        Ended::Clean
    };
    Ok((ended, summary))
}

/// The manifest's job id: command, settings, key material, inputs and output options.
fn job_id(job: &Job<'_>, args: &Options) -> String {
    let inputs: Vec<String> = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut id = format!(
        "{} {} keys=sha256:{} on_error={:?} inputs={}",
        job.command().name(),
        job.settings,
        key_fingerprint(job.decryptor),
        job.on_error,
        inputs.join(",")
    );
    if let Some(f) = job.format {
        id.push_str(&format!(" format={}", f.name()));
    }
    if job.neutralize_formulas {
        id.push_str(" neutralize_formulas");
    }
    for g in &args.include {
        id.push_str(&format!(" include={g}"));
    }
    for g in &args.exclude {
        id.push_str(&format!(" exclude={g}"));
    }
    if let Some(out) = &args.out {
        id.push_str(&format!(" out={}", out.display()));
    }
    if args.in_place {
        id.push_str(" in_place");
    }
    id
}

/// Opens a unit's input: a file found by a walk, or replaced in place, through directory
/// handles from its root (every directory below it and the file itself opened without
/// following links, and without blocking on a FIFO); a file the user named for `--out` as
/// named, refused unless regular (never blocking on a FIFO); for stdout or verify, as named.
fn open_input(unit: &Unit, source: &Path) -> Result<File, BatchError> {
    if let Some(at) = &unit.at {
        at.open_read()
            .map_err(|e| BatchError::fs("opening", source, e))
    } else if matches!(unit.dest, Dest::File(_)) {
        fsafe::open_regular(source).map_err(|e| BatchError::fs("opening", source, e))
    } else {
        File::open(source).map_err(|e| BatchError::io("opening", source, e))
    }
}

/// The directory holding a file destination, reached without following links below the root
/// (in place: the input's directory, from the root handle the plan opened), and the
/// destination's and temporary file's names in it.
fn dest_dir(unit: &Unit, dest: &Path) -> Result<(Dir, OsString, OsString), BatchError> {
    if unit.dest_dir.is_none() {
        let at = unit
            .at
            .as_ref()
            .expect("in-place inputs are reached through handles");
        let (dir, name) = at
            .parent()
            .map_err(|e| BatchError::fs("opening the directory of", dest, e))?;
        let name = name.to_os_string();
        let mut tmp = name.clone();
        tmp.push(PARTIAL);
        return Ok((dir, name, tmp));
    }
    let (root, below) = unit
        .dest_dir
        .as_ref()
        .expect("file destinations have a directory");
    if !root.as_os_str().is_empty() && root.symlink_metadata().is_err() {
        // The root as the user named it (owner-only when created here).
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(fsafe::DIR_MODE)
            .create(root)
            .map_err(|e| BatchError::io("creating", root, e))?;
    }
    let dir = Dir::open(root)
        .map_err(FsError::Io)
        .and_then(|d| d.open_below(below, true))
        .map_err(|e| BatchError::fs("creating the directory of", dest, e))?;
    let name = dest
        .file_name()
        .expect("destinations name files")
        .to_os_string();
    let mut tmp = name.clone();
    tmp.push(PARTIAL);
    Ok((dir, name, tmp))
}

/// One input file: straight through, or resumed from its manifest entry. `Ok(None)`: already
/// done by an earlier run.
#[allow(clippy::too_many_arguments)]
async fn run_file_unit(
    job: &Job<'_>,
    args: &Options,
    unit: &Unit,
    manifest: &mut Manifest,
    manifest_path: Option<&Path>,
    stdout: &RefCell<&mut dyn Write>,
    reporter: &mut Reporter<'_, '_>,
    out_bytes: &AtomicU64,
) -> Result<Option<Counts>, BatchError> {
    let source = unit.source.as_deref().expect("file unit");
    let save = |m: &Manifest| match manifest_path {
        Some(p) => m.save(p),
        None => Ok(()),
    };
    let dest = match &unit.dest {
        Dest::File(dest) => dest,
        Dest::Stdout | Dest::Nowhere => {
            let verify = matches!(unit.dest, Dest::Nowhere);
            let mut input = open_input(unit, source)?;
            let mut sink = StreamSink {
                out: (!verify).then_some(stdout),
                written: out_bytes,
            };
            return pump(job, unit, &mut input, 0, &mut sink, reporter)
                .await
                .map(Some);
        }
    };
    let (dir, dest_name, tmp_name) = dest_dir(unit, dest)?;
    let tmp = crate::manifest::sibling(dest, PARTIAL);
    let entry = manifest.inputs.get(&unit.name).cloned();
    if entry.is_none()
        && args.resume
        && !args.overwrite
        && !args.in_place
        && dir
            .entry_kind(&dest_name)
            .map_err(|e| BatchError::io("reading", dest, e))?
            .is_some()
    {
        return Err(BatchError::Usage(format!(
            "{} exists and the manifest does not list it: add --overwrite to replace it",
            dest.display()
        )));
    }
    let mut start = match entry {
        Some(entry) if entry.state == State::Done => {
            // Skipped only while it is still the file the earlier run finished; otherwise
            // refused, fail-closed (see the manifest module's docs): the entry stays.
            let same = if args.in_place {
                let now = input_identity(unit, source)?;
                entry.output == Some(now.into())
            } else {
                entry.same_input(&input_identity(unit, source)?)
            };
            if !same {
                return Err(BatchError::ChangedSinceDone {
                    path: source.to_owned(),
                });
            }
            job.progress.add_bytes(entry.input_size);
            return Ok(None);
        }
        Some(entry) if entry.state == State::Committing => {
            let tmp_there = dir
                .entry_kind(&tmp_name)
                .map_err(|e| BatchError::io("reading", &tmp, e))?
                .is_some();
            if tmp_there {
                // The output is complete; commit it only if the input is still what was
                // read and the temporary file is still the one written.
                let now = input_identity(unit, source)?;
                if !entry.same_input(&now) {
                    let _ = dir.remove(&tmp_name);
                    fail_entry(manifest, &unit.name, save)?;
                    return Err(BatchError::InputChanged {
                        path: source.to_owned(),
                    });
                }
                // Ours (regular, owner-only, one link) or refused.
                let file = dir
                    .reopen_own(&tmp_name)
                    .map_err(|e| BatchError::fs("reopening", &tmp, e))?;
                let written =
                    Identity::of(&file).map_err(|e| BatchError::io("reading", &tmp, e))?;
                if entry.output != Some(written.into()) {
                    let _ = dir.remove(&tmp_name);
                    fail_entry(manifest, &unit.name, save)?;
                    return Err(BatchError::Unsafe {
                        path: tmp.clone(),
                        what: fsafe::Unsafe::Replaced,
                    });
                }
                drop(file);
                dir.rename(&tmp_name, &dest_name)
                    .map_err(|e| BatchError::io("renaming over", dest, e))?;
                dir.sync();
            } else {
                // The rename happened before the interruption: the destination must be the
                // output written, and (with --out) the input unchanged.
                let now = if args.in_place {
                    input_identity(unit, source)?
                } else {
                    let i = dir
                        .identity(&dest_name)
                        .map_err(|e| BatchError::fs("reading", dest, e))?;
                    if !entry.same_input(&input_identity(unit, source)?) {
                        fail_entry(manifest, &unit.name, save)?;
                        return Err(BatchError::InputChanged {
                            path: source.to_owned(),
                        });
                    }
                    i
                };
                if entry.output != Some(now.into()) {
                    fail_entry(manifest, &unit.name, save)?;
                    return Err(BatchError::ChangedSinceDone {
                        path: source.to_owned(),
                    });
                }
            }
            let entry = manifest.inputs.get_mut(&unit.name).expect("entry");
            entry.state = State::Done;
            let size = entry.input_size;
            save(manifest)?;
            job.progress.add_bytes(size);
            return Ok(None);
        }
        Some(entry) if entry.state == State::Partial => Some(entry),
        _ => None,
    };
    let mut input = open_input(unit, source)?;
    let at_start = Identity::of(&input).map_err(|e| BatchError::io("reading", source, e))?;
    if let Some(entry) = &start {
        if !entry.same_input(&at_start) {
            let _ = dir.remove(&tmp_name);
            fail_entry(manifest, &unit.name, save)?;
            return Err(BatchError::InputChanged {
                path: source.to_owned(),
            });
        }
    }
    // The temporary output: continued if the checkpoint's file is ours and long enough;
    // otherwise whatever is under its name is removed (a link itself, never its target) and
    // a fresh owner-only file created exclusively.
    let mut resumed = None;
    if let Some(entry) = start.take() {
        if entry.input_offset > 0 {
            match dir.reopen_own(&tmp_name) {
                Ok(file) => {
                    let have = file
                        .metadata()
                        .map_err(|e| BatchError::io("reading", &tmp, e))?
                        .len();
                    if have >= entry.output_offset {
                        resumed = Some((file, entry));
                    }
                }
                Err(FsError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(BatchError::fs("reopening", &tmp, e)),
            }
        }
    }
    let (mut file, start) = match resumed {
        Some(r) => r,
        None => {
            dir.remove(&tmp_name)
                .map_err(|e| BatchError::io("removing", &tmp, e))?;
            let file = dir
                .create_new(&tmp_name)
                .map_err(|e| BatchError::fs("creating", &tmp, e))?;
            (
                file,
                Entry {
                    state: State::Partial,
                    input_offset: 0,
                    output_offset: 0,
                    input_size: at_start.size,
                    input_mtime_ns: at_start.mtime_ns,
                    input_file: at_start.dev_ino,
                    output: None,
                    counts: Counts::default(),
                },
            )
        }
    };
    // From here the temporary file (plaintext) is guarded: removed on every error and on a
    // panic; kept when the job is interrupted after a checkpoint pointed the manifest at it.
    let guard = TempGuard::new(&dir, &tmp_name, start.input_offset > 0);
    let finished = async {
        file.set_len(start.output_offset)
            .and_then(|()| file.seek(SeekFrom::Start(start.output_offset)))
            .map_err(|e| BatchError::io("writing", &tmp, e))?;
        input
            .seek(SeekFrom::Start(start.input_offset))
            .map_err(|e| BatchError::io("reading", source, e))?;
        job.progress.add_bytes(start.input_offset);
        tracing::debug!(
            input = %escape(&unit.name),
            format = unit.format.name(),
            size = at_start.size,
            from_offset = start.input_offset,
            "input started"
        );
        manifest.inputs.insert(unit.name.clone(), start.clone());
        save(manifest)?;
        let mut sink = FileSink {
            file: BufWriter::with_capacity(1 << 20, file),
            path: &tmp,
            written: start.output_offset,
            total: out_bytes,
            entry: start.clone(),
            last_checkpoint: (start.input_offset, Instant::now()),
            every: args.checkpoint_bytes,
            manifest: RefCell::new(&mut *manifest),
            manifest_path,
            name: &unit.name,
            checkpointed: &guard.resumable,
        };
        let pumped = pump(
            job,
            unit,
            &mut input,
            start.input_offset,
            &mut sink,
            reporter,
        )
        .await;
        let FileSink {
            file,
            written,
            manifest: m,
            ..
        } = sink;
        let counts = pumped?;
        // Everything after the records: flush, permissions, fsync, the input unchanged, the
        // two-phase commit.
        commit(
            args,
            unit,
            source,
            dest,
            &tmp,
            (&dir, &dest_name, &tmp_name),
            file,
            &input,
            at_start,
            &start,
            counts,
            written,
            m.into_inner(),
            save,
            &guard,
        )
    }
    .await;
    match finished {
        Ok(all) => Ok(Some(all)),
        Err(e) => {
            // A failed input leaves no output and no temporary file.
            guard.remove();
            fail_entry(manifest, &unit.name, save)?;
            Err(e)
        }
    }
}

/// The temporary output of an input while it is written (plaintext): removed when the unit
/// fails ([`TempGuard::remove`]) and when dropped while a panic unwinds; disarmed once renamed
/// over the destination. Dropped otherwise (the job's future dropped: an interruption), it is
/// kept only if a checkpoint pointed the manifest at it (`resumable`), so that `--resume`
/// continues it as after a killed process; a temporary file no checkpoint names is removed.
struct TempGuard<'a> {
    dir: &'a Dir,
    name: &'a OsStr,
    armed: Cell<bool>,
    resumable: Cell<bool>,
}

impl<'a> TempGuard<'a> {
    fn new(dir: &'a Dir, name: &'a OsStr, resumable: bool) -> Self {
        TempGuard {
            dir,
            name,
            armed: Cell::new(true),
            resumable: Cell::new(resumable),
        }
    }

    /// The file was renamed over its destination: nothing to remove any more.
    fn disarm(&self) {
        self.armed.set(false);
    }

    /// Removes the temporary file now (a failed unit), whatever checkpoints say.
    fn remove(&self) {
        if self.armed.replace(false) {
            let _ = self.dir.remove(self.name);
        }
    }
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed.get() && (std::thread::panicking() || !self.resumable.get()) {
            let _ = self.dir.remove(self.name);
        }
    }
}

/// The input's identity now: through its directory without following a link for a walked
/// file, as named otherwise.
fn input_identity(unit: &Unit, source: &Path) -> Result<Identity, BatchError> {
    let file = open_input(unit, source)?;
    Identity::of(&file).map_err(|e| BatchError::io("reading", source, e))
}

fn fail_entry(
    manifest: &mut Manifest,
    name: &str,
    save: impl Fn(&Manifest) -> Result<(), BatchError>,
) -> Result<(), BatchError> {
    if let Some(entry) = manifest.inputs.get_mut(name) {
        entry.state = State::Failed;
    }
    save(manifest)
}

/// Finishes a file unit whose records are all written.
#[allow(clippy::too_many_arguments)]
fn commit(
    args: &Options,
    unit: &Unit,
    source: &Path,
    dest: &Path,
    tmp: &Path,
    (dir, dest_name, tmp_name): (&Dir, &OsString, &OsString),
    file: BufWriter<File>,
    input: &File,
    at_start: Identity,
    start: &Entry,
    counts: Counts,
    written: u64,
    manifest: &mut Manifest,
    save: impl Fn(&Manifest) -> Result<(), BatchError>,
    guard: &TempGuard<'_>,
) -> Result<Counts, BatchError> {
    let file = file
        .into_inner()
        .map_err(|e| BatchError::io("writing", tmp, e.into_error()))?;
    if args.in_place {
        // The input's permission bits, never setuid, setgid or sticky, and only when the input
        // is the job user's own: another user's file (planted in a shared directory) must not
        // hand its permissions, world-readable ones say, to plaintext. Otherwise 0600 stays.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let m = input
            .metadata()
            .map_err(|e| BatchError::io("reading", source, e))?;
        if m.uid() == fsafe::effective_uid() {
            file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o777))
                .map_err(|e| BatchError::io("writing", tmp, e))?;
        }
    }
    file.sync_all()
        .map_err(|e| BatchError::io("writing", tmp, e))?;
    // Records appended (or the file rewritten) while the job read it would be lost by the
    // rename: the input must be the same file, same size, same modification time, both
    // through the open handle and under its name.
    let through_handle = Identity::of(input).map_err(|e| BatchError::io("reading", source, e))?;
    let by_name = input_identity(unit, source)?;
    if through_handle != at_start || by_name != at_start {
        return Err(BatchError::InputChanged {
            path: source.to_owned(),
        });
    }
    let mut all = start.counts.clone();
    all.add(&counts);
    // The temporary name must still be the file written: something renamed in its place
    // would be committed instead, the plaintext left elsewhere.
    let written_file = Identity::of(&file).map_err(|e| BatchError::io("reading", tmp, e))?;
    let under_name = dir
        .identity(tmp_name)
        .map_err(|e| BatchError::fs("reading", tmp, e))?;
    if under_name.dev_ino != written_file.dev_ino {
        return Err(BatchError::Unsafe {
            path: tmp.to_owned(),
            what: crate::fsafe::Unsafe::Replaced,
        });
    }
    drop(file);
    // What a resume checks the output still is (the temporary file before the rename, the
    // destination after it).
    let entry = Entry {
        state: State::Committing,
        input_offset: at_start.size,
        output_offset: written,
        output: Some(written_file.into()),
        counts: all.clone(),
        ..start.clone()
    };
    manifest.inputs.insert(unit.name.clone(), entry);
    save(manifest)?;
    dir.rename(tmp_name, dest_name)
        .map_err(|e| BatchError::io("renaming over", dest, e))?;
    guard.disarm();
    dir.sync();
    manifest.inputs.get_mut(&unit.name).expect("entry").state = State::Done;
    save(manifest)?;
    Ok(all)
}

/// Where a unit's output goes, and what happens at record boundaries.
trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BatchError>;
    /// Every record before input offset `input_end` has been written; `counts` so far.
    fn boundary(&mut self, input_end: u64, counts: &Counts) -> Result<(), BatchError>;
}

struct StreamSink<'a, 'w> {
    out: Option<&'a RefCell<&'w mut dyn Write>>,
    written: &'a AtomicU64,
}

impl Sink for StreamSink<'_, '_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BatchError> {
        if let Some(out) = &self.out {
            out.borrow_mut()
                .write_all(bytes)
                .map_err(|e| BatchError::io("writing", "the output", e))?;
            self.written
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn boundary(&mut self, _: u64, _: &Counts) -> Result<(), BatchError> {
        Ok(())
    }
}

struct FileSink<'a> {
    file: BufWriter<File>,
    path: &'a Path,
    written: u64,
    total: &'a AtomicU64,
    entry: Entry,
    last_checkpoint: (u64, Instant),
    every: u64,
    manifest: RefCell<&'a mut Manifest>,
    manifest_path: Option<&'a Path>,
    name: &'a str,
    /// Set once a checkpoint points the manifest at the temporary file.
    checkpointed: &'a Cell<bool>,
}

impl Sink for FileSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BatchError> {
        self.file
            .write_all(bytes)
            .map_err(|e| BatchError::io("writing", self.path, e))?;
        self.written += bytes.len() as u64;
        self.total.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn boundary(&mut self, input_end: u64, counts: &Counts) -> Result<(), BatchError> {
        let (at, when) = self.last_checkpoint;
        let due = input_end - at >= self.every || when.elapsed() >= Duration::from_secs(5);
        let Some(path) = self.manifest_path else {
            return Ok(());
        };
        if !due {
            return Ok(());
        }
        // Output first, durably; then the manifest that points into it.
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_data())
            .map_err(|e| BatchError::io("writing", self.path, e))?;
        let mut all = self.entry.counts.clone();
        all.add(counts);
        let entry = Entry {
            state: State::Partial,
            input_offset: input_end,
            output_offset: self.written,
            counts: all,
            ..self.entry.clone()
        };
        let mut manifest = self.manifest.borrow_mut();
        manifest.inputs.insert(self.name.to_owned(), entry);
        manifest.save(path)?;
        self.checkpointed.set(true);
        tracing::debug!(
            input = %escape(self.name),
            input_offset = input_end,
            output_offset = self.written,
            "checkpoint"
        );
        self.last_checkpoint = (input_end, Instant::now());
        Ok(())
    }
}

/// Records in flight at most, and their input bytes at most (beyond one record). Measured on
/// 2 GiB of JSON Lines: 16 MiB of input in flight gave a peak RSS of 265 MiB, 1 MiB gave 34
/// MiB and ran faster; concurrency comes from the records' envelopes, not their bytes.
const WINDOW: usize = 512;
const WINDOW_BYTES: usize = 1 << 20;

/// Streams one unit: read records, process a window of them concurrently, write outputs in
/// order. Returns what was found (from `start` on).
async fn pump(
    job: &Job<'_>,
    unit: &Unit,
    input: &mut dyn Read,
    start: u64,
    sink: &mut dyn Sink,
    reporter: &mut Reporter<'_, '_>,
) -> Result<Counts, BatchError> {
    let mut split = Splitter::new(
        input,
        unit.format,
        job.decryptor,
        // A whole JSON document may be as long as --max-record.
        unit.max_record,
        start,
    );
    let mut counts = Counts::default();
    let mut inflight = FuturesOrdered::new();
    let mut inflight_bytes = 0usize;
    let mut eof = false;
    let mut seen = 0;
    loop {
        while !eof
            && inflight.len() < WINDOW
            && (inflight_bytes < WINDOW_BYTES || inflight.is_empty())
        {
            let next = split.next_record().map_err(|e| match e {
                records::Error::Read(e) => BatchError::io("reading", unit_path(unit), e),
                records::Error::TooLong(e) => e,
            })?;
            match next {
                None => eof = true,
                Some(record) => {
                    inflight_bytes += (record.end - record.at) as usize;
                    inflight.push_back(handle(job, record));
                }
            }
            job.progress.add_bytes(split.bytes_read - seen);
            seen = split.bytes_read;
        }
        let Some(done) = inflight.next().await else {
            break;
        };
        let done = done?;
        inflight_bytes -= (done.end - done.at) as usize;
        sink.write(&done.bytes)?;
        if let Some(report) = &done.report {
            counts.envelopes += report.envelopes as u64;
            counts.decrypted += report.decrypted as u64;
            counts.kept += report.kept as u64;
            counts.problems += report.problems.len() as u64;
            for (key, n) in &report.keys {
                *counts.keys.entry(key.to_string()).or_insert(0) += *n as u64;
            }
            job.progress.add_envelopes(report.envelopes as u64);
            for p in &report.problems {
                reporter.problem(&unit.name, done.at, p);
            }
        }
        for note in &done.notes {
            counts.problems += 1;
            reporter.note(&unit.name, note);
        }
        sink.boundary(done.end, &counts)?;
    }
    Ok(counts)
}

/// A processed record.
struct Done {
    at: u64,
    end: u64,
    bytes: Zeroizing<Vec<u8>>,
    report: Option<Report>,
    /// Problems that are not an envelope's (a record left as it is).
    notes: Vec<String>,
}

async fn handle(job: &Job<'_>, record: Record<'_>) -> Result<Done, BatchError> {
    let Record { at, end, piece } = record;
    let mut done = Done {
        at,
        end,
        bytes: Zeroizing::new(Vec::new()),
        report: None,
        notes: Vec::new(),
    };
    match piece {
        Piece::Pass(bytes) => done.bytes = Zeroizing::new(bytes),
        Piece::Text(text, items) => {
            let out = job
                .decryptor
                .process_region(&text, items, job.on_error, job.action)
                .await
                .map_err(|e| refused(e, at))?;
            done.bytes = out.bytes;
            done.report = Some(out.report);
        }
        Piece::Doc { bytes, mode, tail } => {
            let processed = match std::str::from_utf8(&bytes) {
                Ok(text) => job
                    .decryptor
                    .process(text, mode, job.on_error, job.action)
                    .await
                    .map(|d| (d.text, d.report)),
                Err(e) => Err(DocumentError::Json(
                    fle_shared::body::json::JsonError::Syntax {
                        what: "text that is not UTF-8",
                        offset: e.valid_up_to(),
                    },
                )),
            };
            match processed {
                Ok((text, report)) => {
                    let mut out = Zeroizing::new(Vec::with_capacity(text.len() + tail.len()));
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(&tail);
                    done.bytes = out;
                    done.report = Some(report);
                }
                // A record that cannot be read is left as it is, unless the policy is to fail.
                Err(e @ (DocumentError::Json(_) | DocumentError::Form(_)))
                    if job.on_error != OnError::Fail =>
                {
                    done.notes.push(format!(
                        "record at byte {at} left as it is: {}",
                        offset_error(&e, at)
                    ));
                    let mut out = bytes;
                    out.extend_from_slice(&tail);
                    done.bytes = Zeroizing::new(out);
                }
                Err(e) => return Err(refused(e, at)),
            }
        }
        Piece::Csv(row) => {
            let scanner = job.decryptor.keyring().scanner();
            let cells = records::csv_cells(&row);
            let mut work = Vec::new();
            for (i, cell) in cells.iter().enumerate() {
                let value = records::csv_decode(&row[cell.clone()]);
                if scanner.contains_prefix(&value) {
                    work.push((i, value));
                }
            }
            let results = futures_util::future::join_all(work.iter().map(|(_, value)| {
                let items = scanner.scan(value).collect();
                job.decryptor
                    .process_region(value, items, job.on_error, job.action)
            }))
            .await;
            let mut out = Zeroizing::new(Vec::with_capacity(row.len()));
            let mut report = Report::default();
            let mut next = work.iter().zip(results).peekable();
            let mut last = 0;
            for (i, cell) in cells.iter().enumerate() {
                out.extend_from_slice(&row[last..cell.start]);
                last = cell.end;
                match next.peek() {
                    Some(((w, _), _)) if *w == i => {
                        let (_, result) = next.next().expect("peeked");
                        let processed = result.map_err(|e| refused(e, at + cell.start as u64))?;
                        if matches!(job.action, Action::Verify) {
                            out.extend_from_slice(&row[cell.clone()]);
                        } else {
                            records::csv_encode_into(
                                &processed.bytes,
                                job.neutralize_formulas,
                                &mut out,
                            );
                        }
                        merge(&mut report, processed.report, cell.start);
                    }
                    _ => out.extend_from_slice(&row[cell.clone()]),
                }
            }
            out.extend_from_slice(&row[last..]);
            done.bytes = out;
            done.report = Some(report);
        }
    }
    if matches!(job.action, Action::Verify) {
        done.bytes = Zeroizing::new(Vec::new());
    }
    Ok(done)
}

/// Adds a cell's report to a row's; problem offsets become row offsets.
fn merge(row: &mut Report, cell: Report, cell_at: usize) {
    row.envelopes += cell.envelopes;
    row.decrypted += cell.decrypted;
    row.kept += cell.kept;
    for (k, n) in cell.keys {
        *row.keys.entry(k).or_insert(0) += n;
    }
    row.problems.extend(cell.problems.into_iter().map(|mut p| {
        p.offset += cell_at;
        p
    }));
}

/// A record's failure as the input's, its offsets made input offsets.
fn refused(e: DocumentError, record_at: u64) -> BatchError {
    BatchError::Refused(offset_error(&e, record_at))
}

/// How an input is named in I/O errors.
fn unit_path(unit: &Unit) -> &Path {
    unit.source.as_deref().unwrap_or(Path::new("stdin"))
}

fn offset_error(e: &DocumentError, record_at: u64) -> String {
    match e {
        DocumentError::Envelope(p) => at_input(p, record_at).to_string(),
        other if record_at == 0 => other.to_string(),
        other => format!("record at byte {record_at}: {other}"),
    }
}

pub(crate) fn at_input(p: &Problem, record_at: u64) -> Problem {
    let mut p = p.clone();
    p.offset = p.offset.saturating_add(record_at as usize);
    p
}

/// Peak resident set size of this process (Linux: `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_file_guard_removes_on_failure_and_panic_keeps_checkpoints() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open(t.path()).unwrap();
        let name = OsStr::new("a.fle-partial");
        let exists = || t.path().join("a.fle-partial").exists();
        // A failed unit: removed even after a checkpoint.
        drop(dir.create_new(name).unwrap());
        let guard = TempGuard::new(&dir, name, true);
        guard.remove();
        drop(guard);
        assert!(!exists());
        // Panic unwinding: removed even after a checkpoint.
        drop(dir.create_new(name).unwrap());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = TempGuard::new(&dir, name, true);
            panic!("boom");
        }));
        assert!(unwound.is_err());
        assert!(!exists());
        // Interrupted (dropped) before any checkpoint: nothing to resume, removed.
        drop(dir.create_new(name).unwrap());
        drop(TempGuard::new(&dir, name, false));
        assert!(!exists());
        // Interrupted after a checkpoint: kept for --resume.
        drop(dir.create_new(name).unwrap());
        let guard = TempGuard::new(&dir, name, false);
        guard.resumable.set(true);
        drop(guard);
        assert!(exists());
        // Committed: disarmed.
        let guard = TempGuard::new(&dir, name, false);
        guard.disarm();
        drop(guard);
        assert!(exists());
    }

    #[test]
    fn peak_rss_reads_the_kernel_counter() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss().unwrap() > 1 << 20);
        }
    }
}
