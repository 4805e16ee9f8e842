//! `fle decrypt`, `fle reencrypt` and `fle verify`: the decryptor on the command line, over
//! stdin or files and directory trees (see [`crate::batch`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fle_decryptor::{
    Action, DecryptConfig, DecryptPolicy, Decryptor, KeyProvider, KmsConfig, KmsKeyProvider,
    LocalKeyProvider, OnError,
};
use fle_shared::body::FieldSelector;
use fle_shared::{backend, FieldEncryptor, KeyEntry, KeyId, Keyring, OaepPrivateKey, RsaPublicKey};

use crate::batch::records::Format;
use crate::batch::{self, BatchArgs, Ended, Job, Metered, Progress};

/// Where the keys that open envelopes come from: exactly one of `--private-key`,
/// `--kms-key-id` or `--config`.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// RSA private key (PEM, PKCS#8) of the key named by --key-id: the external-key-pair mode.
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
    /// Public key (PEM) of the --to key, when it is not in --config.
    #[arg(long, value_name = "FILE")]
    to_public_key: Option<PathBuf>,
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
pub fn decrypt(args: &DecryptArgs) -> anyhow::Result<Ended> {
    run(&args.keys, &args.common, &args.batch, None, |config| {
        (
            "decrypt",
            args.on_error.map_or(config.on_error, |e| match e {
                OnErrorArg::Fail => OnError::Fail,
                OnErrorArg::Leave => OnError::Leave,
                OnErrorArg::Redact => OnError::Redact,
            }),
        )
    })
}

/// Re-encrypts stdin, files or trees to another key.
pub fn reencrypt(args: &ReencryptArgs) -> anyhow::Result<Ended> {
    let to: KeyId = args.to.parse()?;
    let extra = match &args.to_public_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let public = RsaPublicKey::from_pem(&pem)
                .with_context(|| format!("public key {}", path.display()))?;
            Some(KeyEntry::new(to.clone(), public))
        }
        None => None,
    };
    run(
        &args.keys,
        &args.common,
        &args.batch,
        Some((to, extra)),
        |config| {
            let on_error = match args.on_error {
                Some(ReencryptOnError::Fail) => OnError::Fail,
                Some(ReencryptOnError::Leave) => OnError::Leave,
                None if config.on_error == OnError::Redact => OnError::Fail,
                None => config.on_error,
            };
            ("reencrypt", on_error)
        },
    )
}

/// Checks every envelope of stdin, files or trees decrypts; writes no data.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<Ended> {
    run(&args.keys, &args.common, &args.batch, None, |_| {
        ("verify", OnError::Leave)
    })
}

fn run(
    keys: &KeyArgs,
    common: &CommonArgs,
    batch_args: &BatchArgs,
    target: Option<(KeyId, Option<KeyEntry>)>,
    policy: impl FnOnce(&DecryptConfig) -> (&'static str, OnError),
) -> anyhow::Result<Ended> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let extra = target.as_ref().and_then(|(_, e)| e.clone());
        let (keyring, provider, config) = build(keys, extra).await?;
        let (command, on_error) = policy(&config);
        let progress = Arc::new(Progress::default());
        let concurrency = batch_args.concurrency.or(config.concurrency).unwrap_or(32);
        let rate = batch_args
            .kms_rps
            .or(config.rate_per_second)
            .unwrap_or(250.0);
        let metered = Metered::new(provider, progress.clone(), concurrency, rate);
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
            Some((to, _)) => {
                let entry = keyring.get(to).with_context(|| {
                    format!(
                        "--to {to}: no such key (add it to the config, or give --to-public-key)"
                    )
                })?;
                let one = Keyring::new(vec![entry.clone()])?;
                encryptor = FieldEncryptor::new(&one, backend::default_backend())?;
                Action::Reencrypt(encryptor.key(to).expect("the key just added"))
            }
            None if command == "verify" => Action::Verify,
            None => Action::Decrypt,
        };
        let mut decryptor = Decryptor::new(keyring, Arc::new(metered) as Arc<dyn KeyProvider>)
            .with_limiter(batch::unlimited())
            .with_policy(DecryptPolicy {
                concurrency,
                ..DecryptPolicy::default()
            });
        if let Some(fields) = &fields {
            decryptor = decryptor.only_fields(fields.clone());
        }
        let stdin_format = match config.mode {
            fle_decryptor::Mode::Json => Format::Json,
            fle_decryptor::Mode::Form => Format::Form,
            fle_decryptor::Mode::Text => Format::Text,
        };
        let job = Job {
            command,
            decryptor: &decryptor,
            action,
            on_error,
            format: common.format,
            stdin_format,
            has_fields: fields.is_some(),
            progress,
            // Settings a resumed job must share with the interrupted one.
            fingerprint: format!(
                "keys={:?} to={:?} fields={:?}",
                (
                    &keys.private_key,
                    &keys.kms_key_id,
                    &keys.config,
                    &keys.key_id
                ),
                target
                    .as_ref()
                    .map(|(to, extra)| (to.as_str(), extra.is_some())),
                common.fields,
            ),
        };
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr();
        let ended = batch::run(&job, batch_args, &mut stdout, &mut stderr).await;
        stdout.flush()?;
        ended
    })
}

/// The keyring, provider and settings the options describe; `extra` (a re-encryption target
/// given by its public key) joins the keyring.
async fn build(
    args: &KeyArgs,
    extra: Option<KeyEntry>,
) -> anyhow::Result<(Keyring, Arc<dyn KeyProvider>, DecryptConfig)> {
    let mut config = DecryptConfig::default();
    let with_extra = |mut keys: Vec<KeyEntry>| -> anyhow::Result<Keyring> {
        if let Some(e) = &extra {
            if keys.iter().any(|k| k.id() == e.id()) {
                bail!("--to-public-key: key {} is already configured", e.id());
            }
            keys.push(e.clone());
        }
        Ok(Keyring::new(keys)?)
    };
    let (keyring, provider): (Keyring, Arc<dyn KeyProvider>) = if let Some(path) = &args.private_key
    {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let private = OaepPrivateKey::from_pem(&pem)
            .with_context(|| format!("private key {}", path.display()))?;
        let id: KeyId = args.key_id.parse()?;
        let keyring = with_extra(vec![KeyEntry::new(
            id.clone(),
            private.public_key().clone(),
        )])?;
        (
            keyring,
            Arc::new(LocalKeyProvider::new(vec![(id, private)])),
        )
    } else if let Some(kms_key_id) = &args.kms_key_id {
        let probe = KmsKeyProvider::from_env(
            fle_decryptor::kms::region_from_arn(kms_key_id)
                .map(str::to_owned)
                .or_else(|| args.region.clone()),
            args.kms_endpoint.clone(),
        )
        .await;
        let id: KeyId = args.key_id.parse()?;
        let public = KmsKeyProvider::public_key(probe.client(&id), kms_key_id).await?;
        let keyring = with_extra(vec![
            KeyEntry::new(id, public).with_kms_key_id(kms_key_id.clone())
        ])?;
        (keyring, Arc::new(probe))
    } else if let Some(path) = &args.config {
        let (keyring, mut file_config) = read_config(path)?;
        let keyring = with_extra(keyring.keys().to_vec())?;
        if args.region.is_some() || args.kms_endpoint.is_some() {
            override_all(&mut file_config.kms, args);
        }
        let provider = KmsKeyProvider::for_keyring(&keyring, &file_config.kms)
            .await
            .with_context(|| format!("config {}", path.display()))?;
        config = file_config;
        (keyring, Arc::new(provider))
    } else {
        bail!("give --private-key FILE, --kms-key-id ARN or --config FILE");
    };
    Ok((keyring, provider, config))
}

fn read_config(path: &Path) -> anyhow::Result<(Keyring, DecryptConfig)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keyring = Keyring::from_file_text(path, &text)
        .with_context(|| format!("config {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = DecryptConfig::from_toml_str(&text, base)
        .with_context(|| format!("config {}", path.display()))?;
    Ok((keyring, config))
}

/// `--region` / `--kms-endpoint` given with `--config`: they win for every key.
fn override_all(kms: &mut KmsConfig, args: &KeyArgs) {
    for settings in std::iter::once(&mut kms.default).chain(kms.keys.values_mut()) {
        if let Some(region) = &args.region {
            settings.region = Some(region.clone());
        }
        if let Some(url) = &args.kms_endpoint {
            settings.endpoint_url = Some(url.clone());
        }
    }
}
