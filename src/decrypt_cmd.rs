//! `fle decrypt`, `fle reencrypt` and `fle verify`: the decryptor on the command line, over
//! stdin or files and directory trees. The options become a [`fle_batch::Job`] and
//! [`fle_batch::Options`]; the batch library does the rest.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use fle_batch::{Format, Job, Progress};
use fle_decryptor::{Action, DecryptConfig, DecryptorBuilder, DecryptorParts, KmsBudget, OnError};
use fle_shared::body::FieldSelector;
use fle_shared::{backend, FieldEncryptor, KeyEntry, KeyId, Keyring, PublicKey};

use crate::progress_line::{Display, LineStderr};

/// Options every batch command shares.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchArgs {
    /// Files or directories (walked recursively; symbolic links in them are skipped and
    /// reported) to process. None: stdin to stdout.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Write outputs under this directory, mirroring the inputs' tree (owner-only files and
    /// directories; a symbolic link below it is refused).
    #[arg(long, short = 'o', value_name = "DIR", conflicts_with = "in_place")]
    pub out: Option<PathBuf>,
    /// Replace each input with its output (through a temporary file and an atomic rename; an
    /// input that changes meanwhile is not replaced; a symbolic link is refused: name its target).
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
    /// Report as JSON Lines: one object per problem, failed input and skipped entry, then the
    /// summary (on stdout, or on stderr when stdout carries data).
    #[arg(long)]
    pub json: bool,
    /// Most KMS requests per second for the whole job [default: the config's rate, else 250:
    /// half the default KMS quota of 500/s for RSA keys, leaving room for live traffic].
    #[arg(long, value_name = "N", value_parser = positive_rate)]
    pub kms_rps: Option<f64>,
    /// Most KMS requests in flight at once [default: the config's, else 32].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Option<u32>,
    /// Most distinct version-2 encapsulations (one KMS call each) one record may hold (a JSON
    /// Lines line, a CSV cell, a whole JSON / form document, or about 1 MiB of text); a record
    /// over it fails its input before any KMS call for it, whatever --on-error. Set here or in
    /// the config, it applies to every format [default: the config's
    /// max_encapsulations_per_document, else 256 for JSON, JSON Lines and form records and no
    /// limit for text and CSV cells (decrypted as text): text holds many requests' lines, and
    /// is bounded by --concurrency and --kms-rps instead].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_encapsulations_per_document: Option<u32>,
    /// Largest record (line, CSV row) or whole JSON / form document, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_record: usize,
    /// Input bytes between checkpoints of the manifest (at the next record boundary).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub checkpoint_bytes: u64,
    /// CSV: write a decrypted cell a spreadsheet would run as a formula (starting with =, +,
    /// -, @, tab or CR) as text: prefixed with ' and quoted (CSV injection).
    #[arg(long)]
    pub neutralize_formulas: bool,
}

/// `--kms-rps`: a finite rate above zero.
fn positive_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!(
            "{text} requests per second: give a number above 0 (e.g. 250)"
        ))
    }
}

impl BatchArgs {
    fn options(&self) -> fle_batch::Options {
        let mut o = fle_batch::Options::default();
        o.inputs = self.inputs.clone();
        o.out = self.out.clone();
        o.in_place = self.in_place;
        o.include = self.include.clone();
        o.exclude = self.exclude.clone();
        o.resume = self.resume;
        o.manifest = self.manifest.clone();
        o.overwrite = self.overwrite;
        o.json = self.json;
        o.max_record = self.max_record;
        o.checkpoint_bytes = self.checkpoint_bytes;
        o
    }
}

/// Where the keys that open envelopes come from: exactly one of `--private-key`,
/// `--kms-key-id` or `--config`.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// Private key (PEM: PKCS#8 RSA or P-256, or SEC 1 P-256) of the key named by --key-id: the
    /// external-key-pair mode.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kms_key_id", "config"], required_unless_present_any = ["kms_key_id", "config"])]
    private_key: Option<PathBuf>,
    /// KMS key (ARN, key id or alias) of the key named by --key-id; its public key is read once
    /// with GetPublicKey.
    #[arg(long, value_name = "ARN", conflicts_with = "config")]
    kms_key_id: Option<String>,
    /// KMS endpoint (LocalStack, VPC endpoints); with --config, overrides its endpoint.
    #[arg(long, value_name = "URL", conflicts_with = "private_key")]
    kms_endpoint: Option<String>,
    /// AWS region for a key id or alias (a key ARN's own region always wins); default: the
    /// environment's.
    #[arg(long, value_name = "R", conflicts_with = "private_key")]
    region: Option<String>,
    /// Configuration file: `[[keys]]` with `kms_key_id` per key, and an optional `[decrypt]` table.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Key id the --private-key or --kms-key-id key has (its markers: #ID# ... #DI#).
    #[arg(
        long,
        value_name = "ID",
        default_value = "01",
        conflicts_with = "config"
    )]
    key_id: String,
}

/// Options of `fle decrypt`.
#[derive(clap::Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    common: CommonArgs,
    /// What to do with an envelope that cannot be decrypted [default: fail, or the config's].
    #[arg(long, value_enum)]
    on_error: Option<OnErrorArg>,
    #[command(flatten)]
    batch: BatchArgs,
}

/// Options of `fle reencrypt`.
#[derive(clap::Args, Debug)]
pub struct ReencryptArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// Key id to re-encrypt to: a key of --config, or the key of --to-public-key. Envelopes
    /// already under it are left as they are.
    #[arg(long, value_name = "ID")]
    to: String,
    /// Public key (PEM, RSA or EC P-256) of the --to key, when it is not in --config.
    #[arg(long, value_name = "FILE")]
    to_public_key: Option<PathBuf>,
    /// Envelope version to write under an RSA --to key [default: its `envelope` setting, else
    /// v1]; an EC P-256 key always writes v2. With v2, version-1 envelopes already under --to
    /// are re-encrypted too (migration in place of the format).
    #[arg(long, value_enum)]
    envelope: Option<crate::EnvelopeChoice>,
    #[command(flatten)]
    common: CommonArgs,
    /// What to do with an envelope that cannot be decrypted [default: fail, or the config's].
    #[arg(long, value_enum)]
    on_error: Option<ReencryptOnError>,
    #[command(flatten)]
    batch: BatchArgs,
}

/// Options of `fle verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    keys: KeyArgs,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    batch: BatchArgs,
}

/// Options of every command that reads envelopes.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// How inputs are encoded [default: by extension for files (.json, .jsonl/.ndjson, .csv,
    /// else text); for stdin json, or the config's mode].
    #[arg(long, value_enum, visible_alias = "mode")]
    format: Option<Format>,
    /// Only envelopes in these comma-separated names or $-paths (JSON and form); envelopes
    /// elsewhere stay encrypted and are reported (marker injection). Default: everywhere, or
    /// the config's fields.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    fields: Option<Vec<String>>,
}

/// `--on-error`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OnErrorArg {
    /// Fail the whole input; write nothing of it.
    Fail,
    /// Leave the envelope encrypted.
    Leave,
    /// Replace the envelope with `[redacted]`.
    Redact,
}

/// `--on-error` of reencrypt (redacting stored data is not a re-encryption).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ReencryptOnError {
    /// Fail the whole input; write nothing of it.
    Fail,
    /// Leave the envelope under its old key.
    Leave,
}

/// Decrypts stdin, files or trees.
pub fn decrypt(args: &DecryptArgs) -> anyhow::Result<ExitCode> {
    run(&args.keys, &args.common, &args.batch, None, |config| {
        (
            false,
            args.on_error.map_or(config.on_error, |e| match e {
                OnErrorArg::Fail => OnError::Fail,
                OnErrorArg::Leave => OnError::Leave,
                OnErrorArg::Redact => OnError::Redact,
            }),
        )
    })
}

/// Re-encrypts stdin, files or trees to another key.
pub fn reencrypt(args: &ReencryptArgs) -> anyhow::Result<ExitCode> {
    let to: KeyId = args.to.parse()?;
    let extra = match &args.to_public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let public = PublicKey::from_pem(&pem)
                .with_context(|| format!("public key {}", path.display()))?;
            Some(KeyEntry::new(to.clone(), public))
        }
        None => None,
    };
    run(
        &args.keys,
        &args.common,
        &args.batch,
        Some((to, extra, args.envelope)),
        |config| {
            let on_error = match args.on_error {
                Some(ReencryptOnError::Fail) => OnError::Fail,
                Some(ReencryptOnError::Leave) => OnError::Leave,
                None if config.on_error == OnError::Redact => OnError::Fail,
                None => config.on_error,
            };
            (false, on_error)
        },
    )
}

/// Checks every envelope of stdin, files or trees decrypts; writes no data.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    run(&args.keys, &args.common, &args.batch, None, |_| {
        (true, OnError::Leave)
    })
}

fn run(
    keys: &KeyArgs,
    common: &CommonArgs,
    batch_args: &BatchArgs,
    target: Option<(KeyId, Option<KeyEntry>, Option<crate::EnvelopeChoice>)>,
    policy: impl FnOnce(&DecryptConfig) -> (bool, OnError),
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let extra = target.as_ref().and_then(|(_, e, _)| e.clone());
        let limit = batch_args.max_encapsulations_per_document;
        let (parts, settings) = build(keys, extra, limit.map(|n| n as usize)).await?;
        let config = parts.config.clone();
        let (verify, on_error) = policy(&config);
        let concurrency = batch_args
            .concurrency
            .map(|c| c as usize)
            .or(config.concurrency)
            .unwrap_or(32);
        let rate = batch_args
            .kms_rps
            .or(config.rate_per_second)
            .unwrap_or(250.0);
        // The job's one KMS budget: every call of every record takes a permit, then a token.
        let budget =
            Arc::new(KmsBudget::new(concurrency, rate).context("--kms-rps / --concurrency")?);
        let progress = Arc::new(Progress::for_budget(budget.clone()));
        let fields = match &common.fields {
            Some(fields) => Some(
                fields
                    .iter()
                    .map(|f| FieldSelector::parse(f.trim()))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => config.fields.clone(),
        };
        let encryptor;
        let action = match &target {
            Some((to, _, envelope)) => {
                let entry = parts.keyring.get(to).with_context(|| {
                    format!(
                        "--to {to}: no such key (add it to the config, or give --to-public-key)"
                    )
                })?;
                let mut entry = entry.clone();
                if let Some(version) = envelope {
                    entry = entry.with_envelope((*version).into());
                }
                let one = Keyring::new(vec![entry])?;
                encryptor = FieldEncryptor::new(&one, backend::default_backend())?;
                Action::Reencrypt(encryptor.key(to).expect("the key just added"))
            }
            None if verify => Action::Verify,
            None => Action::Decrypt,
        };
        let mut decryptor = parts.decryptor_with_budget(budget);
        if let Some(fields) = &fields {
            decryptor = decryptor.only_fields(fields.clone());
        }
        let stdin_format = match config.mode {
            fle_decryptor::Mode::Json => Format::Json,
            fle_decryptor::Mode::Form => Format::Form,
            fle_decryptor::Mode::Text => Format::Text,
        };
        let job = Job {
            decryptor: &decryptor,
            action,
            on_error,
            format: common.format,
            stdin_format,
            has_fields: fields.is_some(),
            progress: progress.clone(),
            // Settings a resumed job must share with the interrupted one (the key material is
            // added by the engine).
            settings: format!(
                "{settings} to={:?} fields={:?}",
                target.as_ref().map(|(to, extra, envelope)| (
                    to.as_str(),
                    extra.is_some(),
                    envelope
                )),
                common.fields,
            ),
            neutralize_formulas: batch_args.neutralize_formulas,
        };
        let display = Display::start(progress, stderr_is_terminal());
        let mut stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout().lock();
        let mut stderr = LineStderr::new(&display);
        let io = fle_batch::Io {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        let ended = fle_batch::run(&job, &batch_args.options(), io).await;
        drop(stderr);
        display.stop();
        stdout.flush()?;
        Ok(match ended {
            Ok((ended, _)) => ExitCode::from(ended.exit_status()),
            Err(e) => {
                // Job errors may quote file names and a manifest's contents: escaped.
                eprintln!("fle: {}", fle_batch::report::escape(&e.to_string()));
                ExitCode::from(e.exit_status())
            }
        })
    })
}

fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// The keyring, provider and settings the options describe; `extra` (a re-encryption target
/// given by its public key) joins the keyring; `max_encapsulations`, when given, replaces the
/// configuration's limit. Also what identifies the key source for `--resume` beyond the key
/// material: the configuration file's content.
async fn build(
    args: &KeyArgs,
    extra: Option<KeyEntry>,
    max_encapsulations: Option<usize>,
) -> anyhow::Result<(DecryptorParts, String)> {
    let id: KeyId = args.key_id.parse()?;
    let (mut builder, settings) = if let Some(path) = &args.private_key {
        (
            DecryptorBuilder::from_private_key_file(path, id),
            format!("key_id={}", args.key_id),
        )
    } else if let Some(kms_key_id) = &args.kms_key_id {
        (
            DecryptorBuilder::from_kms_key(kms_key_id.clone(), id),
            format!("key_id={} kms_key_id={kms_key_id}", args.key_id),
        )
    } else if let Some(path) = &args.config {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        (
            DecryptorBuilder::from_config_file(path),
            format!("config=sha256:{}", fle_batch::digest(&text)),
        )
    } else {
        bail!("give --private-key FILE, --kms-key-id ARN or --config FILE");
    };
    if let Some(region) = &args.region {
        builder = builder.region(region.clone());
    }
    if let Some(url) = &args.kms_endpoint {
        builder = builder.endpoint(url.clone());
    }
    if let Some(entry) = extra {
        builder = builder.extra_key(entry);
    }
    if let Some(limit) = max_encapsulations {
        builder = builder.max_encapsulations_per_document(limit);
    }
    Ok((builder.build().await?, settings))
}
