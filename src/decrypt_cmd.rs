//! `fle decrypt`: the decryptor on the command line, stdin to stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use fle_decryptor::{
    DecryptConfig, Decryptor, KmsConfig, KmsKeyProvider, KmsSettings, LocalKeyProvider, Mode,
    OnError,
};
use fle_shared::body::FieldSelector;
use fle_shared::{KeyEntry, KeyId, Keyring, OaepPrivateKey};

/// Options of `fle decrypt`. Exactly one key source: `--private-key`, `--kms-key-id` or
/// `--config`.
#[derive(clap::Args, Debug)]
pub struct DecryptArgs {
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
    /// How the input is encoded [default: json, or the config's].
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// What to do with an envelope that cannot be decrypted [default: fail, or the config's].
    #[arg(long, value_enum)]
    on_error: Option<OnErrorArg>,
    /// Decrypt only these comma-separated names or $-paths; envelopes elsewhere stay encrypted
    /// and are reported (marker injection). Default: everywhere, or the config's fields.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    fields: Option<Vec<String>>,
    /// Key id the --private-key or --kms-key-id key has (its markers: #ID# ... #DI#).
    #[arg(
        long,
        value_name = "ID",
        default_value = "01",
        conflicts_with = "config"
    )]
    key_id: String,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModeArg {
    /// A JSON document: plaintext re-escaped, non-string values restored.
    Json,
    /// application/x-www-form-urlencoded: plaintext percent-encoded.
    Form,
    /// Any text: plaintext as is.
    Text,
}

/// `--on-error`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OnErrorArg {
    /// Fail the whole input; write nothing.
    Fail,
    /// Leave the envelope encrypted.
    Leave,
    /// Replace the envelope with `[redacted]`.
    Redact,
}

/// What a decryption run ended with, for the exit code.
pub enum Ended {
    /// Every envelope decrypted.
    Clean,
    /// Written, but some envelopes were left, redacted or refused (reported on stderr).
    WithProblems,
}

/// Decrypts `input` to `output`; problems (never plaintext) go to `errors`, one line each.
pub fn run(
    args: &DecryptArgs,
    input: &mut dyn Read,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> anyhow::Result<Ended> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let (decryptor, config) = build(args).await?;
        let mut text = String::new();
        input
            .read_to_string(&mut text)
            .context("reading stdin (it must be UTF-8 text)")?;
        let mode = args.mode.map_or(config.mode, |m| match m {
            ModeArg::Json => Mode::Json,
            ModeArg::Form => Mode::Form,
            ModeArg::Text => Mode::Text,
        });
        let on_error = args.on_error.map_or(config.on_error, |e| match e {
            OnErrorArg::Fail => OnError::Fail,
            OnErrorArg::Leave => OnError::Leave,
            OnErrorArg::Redact => OnError::Redact,
        });
        let decrypted = decryptor.decrypt(&text, mode, on_error).await?;
        output.write_all(decrypted.text.as_bytes())?;
        output.flush()?;
        for problem in &decrypted.report.problems {
            writeln!(errors, "fle: warning: {problem}")?;
        }
        Ok(if decrypted.report.problems.is_empty() {
            Ended::Clean
        } else {
            Ended::WithProblems
        })
    })
}

/// The decryptor and settings the options describe.
async fn build(args: &DecryptArgs) -> anyhow::Result<(Decryptor, DecryptConfig)> {
    let mut config = DecryptConfig::default();
    let decryptor = if let Some(path) = &args.private_key {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let private = OaepPrivateKey::from_pem(&pem)
            .with_context(|| format!("private key {}", path.display()))?;
        let id: KeyId = args.key_id.parse()?;
        let keyring = Keyring::new(vec![KeyEntry::new(
            id.clone(),
            private.public_key().clone(),
        )])?;
        Decryptor::new(
            keyring,
            Arc::new(LocalKeyProvider::new(vec![(id, private)])),
        )
    } else if let Some(kms_key_id) = &args.kms_key_id {
        let settings = KmsSettings {
            region: args.region.clone(),
            endpoint_url: args.kms_endpoint.clone(),
            assume_role: None,
        };
        let probe = KmsKeyProvider::from_env(
            fle_decryptor::kms::region_from_arn(kms_key_id)
                .map(str::to_owned)
                .or_else(|| settings.region.clone()),
            settings.endpoint_url.clone(),
        )
        .await;
        let id: KeyId = args.key_id.parse()?;
        let public = KmsKeyProvider::public_key(probe.client(&id), kms_key_id).await?;
        let keyring = Keyring::new(vec![
            KeyEntry::new(id, public).with_kms_key_id(kms_key_id.clone())
        ])?;
        Decryptor::new(keyring, Arc::new(probe))
    } else if let Some(path) = &args.config {
        let (keyring, mut file_config) = read_config(path)?;
        if args.region.is_some() || args.kms_endpoint.is_some() {
            override_all(&mut file_config.kms, args);
        }
        let provider = KmsKeyProvider::for_keyring(&keyring, &file_config.kms)
            .await
            .with_context(|| format!("config {}", path.display()))?;
        let decryptor = Decryptor::new(keyring, Arc::new(provider)).with_config(&file_config);
        config = file_config;
        decryptor
    } else {
        bail!("give --private-key FILE, --kms-key-id ARN or --config FILE");
    };
    let decryptor = match &args.fields {
        Some(fields) => decryptor.only_fields(
            fields
                .iter()
                .map(|f| FieldSelector::parse(f.trim()))
                .collect::<Result<_, _>>()?,
        ),
        None => decryptor,
    };
    Ok((decryptor, config))
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
fn override_all(kms: &mut KmsConfig, args: &DecryptArgs) {
    for settings in std::iter::once(&mut kms.default).chain(kms.keys.values_mut()) {
        if let Some(region) = &args.region {
            settings.region = Some(region.clone());
        }
        if let Some(url) = &args.kms_endpoint {
            settings.endpoint_url = Some(url.clone());
        }
    }
}
