//! Batch jobs: `fle decrypt`, `fle reencrypt` and `fle verify` over stdin, files and directory
//! trees, streamed record by record with bounded memory, resumable from a manifest.
//!
//! A job is a list of *units* (stdin, or one input file with its destination). Units run one
//! after another; inside a unit, records (lines, rows, text regions, or the whole document)
//! are read ahead into a window of bounded size and processed concurrently, and their outputs
//! are written in input order. Every record boundary is a point the job may checkpoint at (see
//! [`manifest`]).

pub mod manifest;
mod plan;
mod progress;
pub mod records;

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fle_decryptor::{Action, DecryptFuture, DocumentError, KeyProvider, OnError, Problem, Report};
use fle_shared::{Envelope, KeyEntry};
use futures_util::stream::{FuturesOrdered, StreamExt};
use zeroize::Zeroizing;

use manifest::{Counts, Entry, Manifest, State};
use plan::{Dest, Unit};
use records::{Format, Piece, Record, Splitter};

pub use progress::Progress;

/// Options every batch command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// Files or directories (walked recursively) to process. None: stdin to stdout.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Write outputs under this directory, mirroring the inputs' tree.
    #[arg(long, short = 'o', value_name = "DIR", conflicts_with = "in_place")]
    pub out: Option<PathBuf>,
    /// Replace each input with its output (through a temporary file and an atomic rename).
    #[arg(long)]
    pub in_place: bool,
    /// In directories, only files whose path (relative to the directory) matches one of these
    /// globs, e.g. '**/*.jsonl' [default: every file].
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// In directories, skip files whose relative path matches one of these globs.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Continue the interrupted job its manifest describes: finished files are skipped, a
    /// started one continues from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Job manifest [default: OUT/.fle-manifest.json, or .fle-manifest.json in the first
    /// input's directory with --in-place].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Replace destination files that already exist.
    #[arg(long)]
    pub overwrite: bool,
    /// Print the summary as one JSON object (on stdout, or on stderr when stdout carries data).
    #[arg(long)]
    pub json: bool,
    /// Most KMS requests per second for the whole job [default: the config's rate, else 250:
    /// half the default KMS quota of 500/s for RSA keys, leaving room for live traffic].
    #[arg(long, value_name = "N")]
    pub kms_rps: Option<f64>,
    /// Most KMS requests in flight at once [default: the config's, else 32].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Largest record (line, CSV row) or whole JSON / form document, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_record: usize,
    /// Input bytes between checkpoints of the manifest (at the next record boundary).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub checkpoint_bytes: u64,
}

/// What a batch command does with each envelope, and its name.
pub struct Job<'a> {
    /// `decrypt`, `reencrypt` or `verify`.
    pub command: &'static str,
    /// The decryptor (already metered: see [`Metered`]).
    pub decryptor: &'a fle_decryptor::Decryptor,
    /// What to do with each plaintext.
    pub action: Action<'a>,
    /// The error policy.
    pub on_error: OnError,
    /// The format forced by `--format`; otherwise by extension (files) or the default.
    pub format: Option<Format>,
    /// Format of stdin when `--format` is not given.
    pub stdin_format: Format,
    /// Whether field restrictions are set (they do not apply to CSV and text).
    pub has_fields: bool,
    /// Counters shared with the progress display.
    pub progress: Arc<Progress>,
    /// Settings that identify the job in its manifest (beyond the command and inputs).
    pub fingerprint: String,
}

/// How a job ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every input processed, every envelope handled.
    Clean,
    /// Some inputs failed or some envelopes were left, redacted or refused.
    Partial,
    /// Every input was refused.
    Refused,
}

/// Runs the job. Data goes to `stdout` when it is the destination; the summary and warnings to
/// `stderr` (the summary as JSON to `stdout` with `--json` when stdout carries no data).
pub async fn run(
    job: &Job<'_>,
    args: &BatchArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<Ended> {
    let started = Instant::now();
    let verify = matches!(job.action, Action::Verify);
    // The manifest: only for jobs that write files (or verify jobs given one). An interrupted
    // job's manifest is looked at first: its outputs exist.
    let manifest_path = plan::manifest_path(args, verify);
    if let Some(path) = &manifest_path {
        if path.exists() && !args.resume {
            bail!(
                "{} exists: an earlier job was interrupted. Add --resume to continue it, \
                 or remove the file to start again",
                path.display()
            );
        }
    }
    let units = plan::plan(args, job, verify)?;
    let data_on_stdout = units.iter().any(|u| matches!(u.dest, Dest::Stdout));
    let files = units.iter().any(|u| u.source.is_some());
    if args.resume && !files {
        bail!("--resume needs input files (stdin cannot be resumed)");
    }
    let mut manifest = match &manifest_path {
        Some(path) if path.exists() => Manifest::load(path, &job_id(job, args))?,
        _ => Manifest::new(job_id(job, args)),
    };
    let total: u64 = units.iter().map(|u| u.size).sum();
    job.progress.set_total(total);
    let display = progress::Display::start(job.progress.clone(), stderr_is_terminal());

    let mut totals = Counts::default();
    let (mut done, mut failed, mut skipped, mut not_refused) = (0usize, 0usize, 0usize, 0usize);
    let mut warnings = Warnings::new(verify);
    let out_bytes = AtomicU64::new(0);
    for unit in &units {
        let name = unit.name.clone();
        let result = match &unit.dest {
            Dest::Stdout | Dest::Nowhere if unit.source.is_none() => {
                let mut input = io::stdin().lock();
                let mut sink = StreamSink {
                    out: if verify { None } else { Some(&mut *stdout) },
                    written: &out_bytes,
                };
                let r = pump(job, unit, &mut input, 0, &mut sink, &mut warnings).await;
                // stdin has no manifest: a failure is the whole job's.
                match r {
                    Ok(counts) => Ok(Some(counts)),
                    Err(e) => {
                        display.stop();
                        return Err(e);
                    }
                }
            }
            _ => {
                run_file_unit(
                    job,
                    args,
                    unit,
                    &mut manifest,
                    manifest_path.as_deref(),
                    stdout,
                    &mut warnings,
                    &out_bytes,
                )
                .await
            }
        };
        match result {
            Ok(Some(counts)) => {
                done += 1;
                totals.add(&counts);
            }
            Ok(None) => {
                skipped += 1;
                if let Some(e) = manifest.inputs.get(&name) {
                    totals.add(&e.counts);
                }
            }
            Err(e) => {
                // A lone input to stdout: the error is the command's (printed once, by main).
                if units.len() == 1 && matches!(unit.dest, Dest::Stdout) {
                    display.stop();
                    return Err(e);
                }
                failed += 1;
                if e.downcast_ref::<Refused>().is_none() {
                    not_refused += 1;
                }
                display.suspend(|| {
                    let _ = writeln!(stderr, "fle: {name}: {e:#}");
                });
            }
        }
    }
    display.stop();
    warnings.finish(stderr)?;
    if let Some(path) = &manifest_path {
        // Removed only when nothing in it is unfinished (entries of inputs no longer given
        // included: their temporary outputs are still there).
        let finished = manifest.inputs.values().all(|e| e.state == State::Done);
        if failed == 0 && finished && path.exists() {
            fs::remove_file(path)
                .with_context(|| format!("removing the finished manifest {}", path.display()))?;
        }
    }
    let elapsed = started.elapsed();
    let summary = Summary {
        kind: "summary",
        command: job.command,
        inputs: units.len(),
        inputs_done: done,
        inputs_failed: failed,
        inputs_skipped: skipped,
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
    if args.json {
        let text = serde_json::to_string(&summary)?;
        if data_on_stdout && !verify {
            writeln!(stderr, "{text}")?;
        } else {
            writeln!(stdout, "{text}")?;
        }
    } else if files {
        summary.write_text(stderr)?;
    }
    stdout.flush()?;
    if not_refused > 0 && done + skipped == 0 {
        bail!("no input could be processed");
    }
    Ok(if failed > 0 && done + skipped == 0 {
        Ended::Refused
    } else if failed > 0 || totals.problems > 0 {
        Ended::Partial
    } else {
        Ended::Clean
    })
}

fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    io::stderr().is_terminal()
}

/// The manifest's job id: command, settings and inputs.
fn job_id(job: &Job<'_>, args: &BatchArgs) -> String {
    let inputs: Vec<String> = args
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut id = format!(
        "{} {} on_error={:?} inputs={}",
        job.command,
        job.fingerprint,
        job.on_error,
        inputs.join(",")
    );
    if let Some(f) = job.format {
        id.push_str(&format!(" format={}", f.name()));
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

/// One input file: straight through, or resumed from its manifest entry. `Ok(None)`: already
/// done by an earlier run.
#[allow(clippy::too_many_arguments)]
async fn run_file_unit(
    job: &Job<'_>,
    args: &BatchArgs,
    unit: &Unit,
    manifest: &mut Manifest,
    manifest_path: Option<&Path>,
    stdout: &mut dyn Write,
    warnings: &mut Warnings,
    out_bytes: &AtomicU64,
) -> anyhow::Result<Option<Counts>> {
    let source = unit.source.as_deref().expect("file unit");
    let (size, mtime) = manifest::identity(source)?;
    let save = |m: &Manifest| match manifest_path {
        Some(p) => m.save(p),
        None => Ok(()),
    };
    let mut start = Entry {
        state: State::Partial,
        input_offset: 0,
        output_offset: 0,
        input_size: size,
        input_mtime_ns: mtime,
        counts: Counts::default(),
    };
    if let (None, Dest::File(dest)) = (manifest.inputs.get(&unit.name), &unit.dest) {
        if args.resume && !args.overwrite && !args.in_place && dest.exists() {
            bail!(
                "{} exists and the manifest does not list it: add --overwrite to replace it",
                dest.display()
            );
        }
    }
    if let Some(entry) = manifest.inputs.get(&unit.name).cloned() {
        match entry.state {
            State::Done => {
                job.progress.add_bytes(entry.input_size);
                return Ok(None);
            }
            State::Committing => {
                if let Dest::File(dest) = &unit.dest {
                    let tmp = manifest::sibling(dest, PARTIAL);
                    if tmp.exists() {
                        fs::rename(&tmp, dest)
                            .with_context(|| format!("renaming over {}", dest.display()))?;
                        manifest::sync_dir(dest);
                    }
                }
                let entry = manifest.inputs.get_mut(&unit.name).expect("entry");
                entry.state = State::Done;
                let size = entry.input_size;
                save(manifest)?;
                job.progress.add_bytes(size);
                return Ok(None);
            }
            State::Failed => {}
            State::Partial => {
                if (entry.input_size, entry.input_mtime_ns) != (size, mtime) {
                    bail!(
                        "changed since the interrupted job read it (size or modification time): \
                         remove the manifest to start again"
                    );
                }
                start = entry;
            }
        }
    }
    let mut input = File::open(source).with_context(|| format!("opening {}", source.display()))?;
    let result = match &unit.dest {
        Dest::File(dest) => {
            let tmp = manifest::sibling(dest, PARTIAL);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            // Owner-only while it is written (it may hold plaintext); in place, the input's
            // permissions at the end.
            let file = {
                use std::os::unix::fs::OpenOptionsExt;
                OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .read(true)
                    .mode(0o600)
                    .open(&tmp)
                    .with_context(|| format!("creating {}", tmp.display()))?
            };
            // What the last checkpoint did not cover is done again.
            let have = file.metadata()?.len();
            if start.input_offset > 0 && have < start.output_offset {
                start = Entry {
                    input_offset: 0,
                    output_offset: 0,
                    counts: Counts::default(),
                    ..start
                };
            }
            file.set_len(start.output_offset)?;
            let mut file = file;
            file.seek(SeekFrom::Start(start.output_offset))?;
            input.seek(SeekFrom::Start(start.input_offset))?;
            job.progress.add_bytes(start.input_offset);
            manifest.inputs.insert(unit.name.clone(), start.clone());
            save(manifest)?;
            let mut sink = FileSink {
                file: BufWriter::with_capacity(1 << 20, file),
                written: start.output_offset,
                total: out_bytes,
                entry: start.clone(),
                last_checkpoint: (start.input_offset, Instant::now()),
                every: args.checkpoint_bytes,
                manifest: RefCell::new(manifest),
                manifest_path,
                name: &unit.name,
            };
            let pumped = pump(
                job,
                unit,
                &mut input,
                start.input_offset,
                &mut sink,
                warnings,
            )
            .await;
            let FileSink {
                file,
                written,
                manifest: m,
                ..
            } = sink;
            let manifest = m.into_inner();
            match pumped {
                Ok(counts) => {
                    let file = file.into_inner().map_err(|e| e.into_error())?;
                    if args.in_place {
                        let perms = fs::metadata(source)?.permissions();
                        file.set_permissions(perms)?;
                    }
                    file.sync_all()
                        .with_context(|| format!("writing {}", tmp.display()))?;
                    drop(file);
                    let mut all = start.counts.clone();
                    all.add(&counts);
                    let entry = Entry {
                        state: State::Committing,
                        input_offset: size,
                        output_offset: written,
                        input_size: size,
                        input_mtime_ns: mtime,
                        counts: all.clone(),
                    };
                    manifest.inputs.insert(unit.name.clone(), entry);
                    save(manifest)?;
                    fs::rename(&tmp, dest)
                        .with_context(|| format!("renaming over {}", dest.display()))?;
                    manifest::sync_dir(dest);
                    manifest.inputs.get_mut(&unit.name).expect("entry").state = State::Done;
                    save(manifest)?;
                    Ok(all)
                }
                Err(e) => {
                    drop(file);
                    let _ = fs::remove_file(&tmp);
                    if let Some(entry) = manifest.inputs.get_mut(&unit.name) {
                        entry.state = State::Failed;
                    }
                    save(manifest)?;
                    Err(e)
                }
            }
        }
        Dest::Stdout | Dest::Nowhere => {
            let verify = matches!(unit.dest, Dest::Nowhere);
            let mut sink = StreamSink {
                out: if verify { None } else { Some(stdout) },
                written: out_bytes,
            };
            pump(job, unit, &mut input, 0, &mut sink, warnings).await
        }
    };
    result.map(Some)
}

/// Suffix of temporary outputs, beside their destination.
pub const PARTIAL: &str = ".fle-partial";

/// Where a unit's output goes, and what happens at record boundaries.
trait Sink {
    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
    /// Every record before input offset `input_end` has been written; `counts` so far.
    fn boundary(&mut self, input_end: u64, counts: &Counts) -> anyhow::Result<()>;
}

struct StreamSink<'a> {
    out: Option<&'a mut dyn Write>,
    written: &'a AtomicU64,
}

impl Sink for StreamSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if let Some(out) = &mut self.out {
            out.write_all(bytes).context("writing the output")?;
            self.written
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn boundary(&mut self, _: u64, _: &Counts) -> anyhow::Result<()> {
        Ok(())
    }
}

struct FileSink<'a> {
    file: BufWriter<File>,
    written: u64,
    total: &'a AtomicU64,
    entry: Entry,
    last_checkpoint: (u64, Instant),
    every: u64,
    manifest: RefCell<&'a mut Manifest>,
    manifest_path: Option<&'a Path>,
    name: &'a str,
}

impl Sink for FileSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.file.write_all(bytes).context("writing the output")?;
        self.written += bytes.len() as u64;
        self.total.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn boundary(&mut self, input_end: u64, counts: &Counts) -> anyhow::Result<()> {
        let (at, when) = self.last_checkpoint;
        let due = input_end - at >= self.every || when.elapsed() >= Duration::from_secs(5);
        let Some(path) = self.manifest_path else {
            return Ok(());
        };
        if !due {
            return Ok(());
        }
        // Output first, durably; then the manifest that points into it.
        self.file.flush().context("writing the output")?;
        self.file
            .get_ref()
            .sync_data()
            .context("writing the output")?;
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
    warnings: &mut Warnings,
) -> anyhow::Result<Counts> {
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
            match split.next_record()? {
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
                warnings.problem(&unit.name, done.at, p);
            }
        }
        for note in &done.notes {
            counts.problems += 1;
            warnings.note(&unit.name, note);
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

async fn handle(job: &Job<'_>, record: Record<'_>) -> anyhow::Result<Done> {
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
                            records::csv_encode_into(&processed.bytes, &mut out);
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
fn refused(e: DocumentError, record_at: u64) -> anyhow::Error {
    Refused(offset_error(&e, record_at)).into()
}

/// An input refused: under `--on-error fail` an envelope could not be handled, or the input
/// is not valid in its format. Never contains plaintext.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn offset_error(e: &DocumentError, record_at: u64) -> String {
    match e {
        DocumentError::Envelope(p) => at_input(p, record_at).to_string(),
        other if record_at == 0 => other.to_string(),
        other => format!("record at byte {record_at}: {other}"),
    }
}

fn at_input(p: &Problem, record_at: u64) -> Problem {
    let mut p = p.clone();
    p.offset = p.offset.saturating_add(record_at as usize);
    p
}

/// Problem lines: on stderr, the first [`MAX_WARNINGS`] of a job, or (verify) every one on
/// stdout.
struct Warnings {
    verify: bool,
    /// Whether stderr is a terminal (a progress line may need clearing).
    terminal: bool,
    shown: usize,
    hidden: usize,
}

/// Most warning lines a decrypt or reencrypt job prints.
const MAX_WARNINGS: usize = 100;

impl Warnings {
    fn new(verify: bool) -> Self {
        Warnings {
            verify,
            terminal: stderr_is_terminal(),
            shown: 0,
            hidden: 0,
        }
    }

    fn problem(&mut self, unit: &str, record_at: u64, p: &Problem) {
        self.note(unit, &at_input(p, record_at).to_string());
    }

    fn note(&mut self, unit: &str, text: &str) {
        let at = if unit.is_empty() {
            String::new()
        } else {
            format!("{unit}: ")
        };
        if self.verify {
            // Verify's findings are its output: every one, on stdout, as it goes.
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{at}{text}");
            return;
        }
        if self.shown < MAX_WARNINGS {
            self.shown += 1;
            let mut err = io::stderr().lock();
            let clear = if self.terminal { "\r\x1b[2K" } else { "" };
            let _ = writeln!(err, "{clear}fle: warning: {at}{text}");
        } else {
            self.hidden += 1;
        }
    }

    fn finish(&mut self, stderr: &mut dyn Write) -> io::Result<()> {
        if self.hidden > 0 {
            writeln!(
                stderr,
                "fle: warning: {} more problems not shown (see the summary's count)",
                self.hidden
            )?;
        }
        Ok(())
    }
}

/// The end-of-job summary.
#[derive(serde::Serialize)]
struct Summary {
    #[serde(rename = "type")]
    kind: &'static str,
    command: &'static str,
    inputs: usize,
    inputs_done: usize,
    inputs_failed: usize,
    inputs_skipped: usize,
    bytes_in: u64,
    bytes_out: u64,
    envelopes: u64,
    decrypted: u64,
    kept: u64,
    problems: u64,
    keys: std::collections::BTreeMap<String, u64>,
    kms_calls: u64,
    seconds: f64,
    mb_per_second: f64,
    kms_calls_per_second: f64,
    peak_rss_bytes: Option<u64>,
}

impl Summary {
    fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(k, n)| format!("key {k}: {n}"))
            .collect();
        let verb = match self.command {
            "reencrypt" => "re-encrypted",
            "verify" => "decryptable",
            _ => "decrypted",
        };
        writeln!(
            out,
            "fle {}: {} inputs ({} done, {} failed, {} already done); {:.1} MB in {:.2} s ({:.1} MB/s)",
            self.command,
            self.inputs,
            self.inputs_done,
            self.inputs_failed,
            self.inputs_skipped,
            self.bytes_in as f64 / 1e6,
            self.seconds,
            self.mb_per_second,
        )?;
        writeln!(
            out,
            "  envelopes: {}{}; {} {verb}{}, {} problems; KMS calls: {} ({:.0}/s)",
            self.envelopes,
            if keys.is_empty() {
                String::new()
            } else {
                format!(" ({})", keys.join(", "))
            },
            self.decrypted,
            if self.command == "reencrypt" {
                format!(", {} already under the target key", self.kept)
            } else {
                String::new()
            },
            self.problems,
            self.kms_calls,
            self.kms_calls_per_second,
        )
    }
}

/// Peak resident set size of this process (Linux: `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
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

/// A [`KeyProvider`] that counts calls (for progress and the summary) and bounds how many are
/// in flight across every record of the job.
pub struct Metered {
    inner: Arc<dyn KeyProvider>,
    progress: Arc<Progress>,
    gate: tokio::sync::Semaphore,
    limiter: fle_decryptor::RateLimiter,
}

impl Metered {
    /// Wraps `inner`: at most `concurrency` calls at once, at most `per_second` calls a
    /// second. The rate token is taken after the concurrency slot, so that calls queued behind
    /// a slow provider cannot hoard tokens and fire in a burst above the rate when it recovers
    /// (give the decryptor [`unlimited`] so it does not rate-limit a second time).
    pub fn new(
        inner: Arc<dyn KeyProvider>,
        progress: Arc<Progress>,
        concurrency: usize,
        per_second: f64,
    ) -> Self {
        Metered {
            inner,
            progress,
            gate: tokio::sync::Semaphore::new(concurrency.max(1)),
            limiter: fle_decryptor::RateLimiter::new(
                per_second,
                per_second.clamp(1.0, 50.0) as u32,
            ),
        }
    }
}

impl KeyProvider for Metered {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        Box::pin(async move {
            let _permit = self.gate.acquire().await;
            self.limiter.acquire().await;
            self.progress.add_call();
            self.inner.decrypt(key, envelope).await
        })
    }
}

/// A limiter that never waits, for a decryptor whose provider is [`Metered`].
pub fn unlimited() -> Arc<fle_decryptor::RateLimiter> {
    Arc::new(fle_decryptor::RateLimiter::new(1e12, u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_reads_the_kernel_counter() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss().unwrap() > 1 << 20);
        }
    }
}
