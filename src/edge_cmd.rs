//! `fle encrypt-event` and `fle encrypt`: the edge encryptor on the command line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use fle_edge_encryptor::{BodyKind, EdgeConfig, EdgeEncryptor, FieldRule, FieldSelector};
use fle_shared::{backend, KeyEntry, Keyring, PublicKey};

/// Where the keys and field rules come from: a configuration file, or a public key and a field
/// list for quick use (key id `01`).
#[derive(clap::Args, Debug)]
pub struct EdgeSource {
    /// Configuration file with `[[keys]]` and `[edge]` tables.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["public_key", "fields"])]
    config: Option<PathBuf>,
    /// Public key (PEM or DER SubjectPublicKeyInfo, RSA or EC P-256) used as key 01; needs
    /// --fields.
    #[arg(long, value_name = "FILE", requires = "fields")]
    public_key: Option<PathBuf>,
    /// Envelope version to write with an RSA --public-key [default: v1]; an EC P-256 key
    /// always writes v2. (With --config, each key's `envelope` setting decides.)
    #[arg(long, value_enum, requires = "public_key")]
    envelope: Option<crate::EnvelopeChoice>,
    /// Comma-separated names or $-paths of the fields to encrypt; needs --public-key.
    #[arg(
        long,
        value_name = "A,B,C",
        value_delimiter = ',',
        requires = "public_key"
    )]
    fields: Option<Vec<String>>,
    /// Crypto backend.
    #[arg(long, value_enum, default_value_t = crate::BackendChoice::AwsLc)]
    backend: crate::BackendChoice,
}

impl EdgeSource {
    /// Builds the edge encryptor these options describe.
    pub fn load(&self) -> anyhow::Result<EdgeEncryptor> {
        let backend = self.backend.backend();
        if let Some(path) = &self.config {
            return EdgeEncryptor::from_toml_file(path, backend)
                .with_context(|| format!("config {}", path.display()));
        }
        let (Some(key_path), Some(fields)) = (&self.public_key, &self.fields) else {
            bail!("give --config FILE, or --public-key FILE with --fields a,b,c");
        };
        let bytes =
            std::fs::read(key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let public = PublicKey::from_pem_or_der(&bytes)
            .with_context(|| format!("public key {}", key_path.display()))?;
        let mut entry = KeyEntry::new("01".parse()?, public);
        if let Some(version) = self.envelope {
            entry = entry.with_envelope(version.into());
        }
        let keyring = Keyring::new(vec![entry])?;
        let mut config =
            EdgeConfig::from_toml_str("[edge]\nkey = \"01\"\nfields = [\"placeholder\"]\n")?;
        config.fields = fields
            .iter()
            .map(|f| {
                Ok(FieldRule {
                    selector: FieldSelector::parse(f.trim())?,
                    key: "01".parse()?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        if config.fields.is_empty() {
            bail!("--fields is empty");
        }
        Ok(EdgeEncryptor::new(keyring, config, backend)?)
    }
}

/// Options of `fle encrypt-event`.
#[derive(clap::Args, Debug)]
pub struct EncryptEventArgs {
    #[command(flatten)]
    source: EdgeSource,
}

/// Reads CloudFront origin-request events as JSON Lines on `input`; writes one line per event:
/// the request to forward, or the generated response (with its `status`). Returns how many
/// events were answered with a response.
pub fn encrypt_event(
    args: &EncryptEventArgs,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let edge = args.source.load()?;
    let mut rejected = 0;
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&line)
            .with_context(|| format!("line {}: not a JSON event", n + 1))?;
        // The text path, as both Lambdas run it. A line of JSON Lines holds no newline, and
        // neither does what is copied from it.
        let outcome = edge.handle_event_json(&line);
        if matches!(outcome, fle_edge_encryptor::Outcome::Respond { .. }) {
            rejected += 1;
        }
        out.write_all(outcome.into_inner().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(rejected)
}

/// Options of `fle encrypt`.
#[derive(clap::Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    source: EdgeSource,
    /// Content type of the body: application/json (default) or application/x-www-form-urlencoded.
    #[arg(long, value_name = "TYPE", default_value = "application/json")]
    content_type: String,
}

/// Rewrites one body from `input` to `out`.
pub fn encrypt(
    args: &EncryptArgs,
    input: &mut dyn std::io::Read,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let edge = args.source.load()?;
    let kind = match args
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "application/x-www-form-urlencoded" => BodyKind::Form,
        t if t == "application/json" || (t.starts_with("application/") && t.ends_with("+json")) => {
            BodyKind::Json
        }
        other => bail!(
            "--content-type {other}: use application/json or application/x-www-form-urlencoded"
        ),
    };
    let mut body = String::new();
    input
        .read_to_string(&mut body)
        .context("stdin is not UTF-8 text")?;
    let (encrypted, _) = edge.encrypt_body(kind, &body)?;
    out.write_all(encrypted.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The backend a name stands for.
pub fn backend_for(choice: crate::BackendChoice) -> &'static dyn fle_shared::backend::Backend {
    match choice {
        crate::BackendChoice::AwsLc => &backend::aws_lc::AwsLcBackend,
        crate::BackendChoice::Rustcrypto => &backend::rustcrypto::RustCryptoBackend,
    }
}

/// Options of `fle bundle-config`.
#[derive(clap::Args, Debug)]
pub struct BundleConfigArgs {
    /// Configuration file with `[[keys]]` and `[edge]` tables.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// Prints the configuration validated and self-contained for the Lambda@Edge package: every
/// public key inline (`public_key_pem`), nothing the edge does not use (`kms_key_id`). The work
/// is [`fle_edge_encryptor::bundle::bundle_config_text`], shared with the `fle-bundle-config`
/// binary that `edge-encryptor/build-lambda-edge.sh` runs.
pub fn bundle_config(args: &BundleConfigArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = fle_edge_encryptor::bundle::bundle_config_text(&args.config)?;
    out.write_all(text.as_bytes())?;
    Ok(())
}
