//! `fle`: the command line of fle, field-level encryption for HTTP APIs.

#![forbid(unsafe_code)]

mod decrypt_cmd;
mod demo;
mod edge_cmd;
mod keys_cmd;
mod progress_line;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Field-level encryption for HTTP APIs: encrypt at the CDN edge, decrypt with AWS KMS.
#[derive(Parser)]
#[command(name = "fle", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt a sample CloudFront event with the built-in demo key, then decrypt it back (no AWS, no network).
    ///
    /// Example: fle demo --backend rustcrypto
    Demo(demo::DemoArgs),
    /// Encrypt CloudFront origin-request events: JSON Lines on stdin, one result per line on stdout.
    ///
    /// Each output line is the request to forward or, when the edge refuses the request, the generated
    /// response (with its "status").
    ///
    /// Examples:
    ///   fle encrypt-event --config fle.toml < events.jsonl
    ///   fle encrypt-event --public-key keys/demo-01.pub.pem --fields fname,ssn < events.jsonl
    #[command(verbatim_doc_comment)]
    EncryptEvent(edge_cmd::EncryptEventArgs),
    /// Encrypt the configured fields of one request body: stdin to stdout.
    ///
    /// Examples:
    ///   echo '{"ssn":"123-45-6789"}' | fle encrypt --public-key keys/demo-01.pub.pem --fields ssn
    ///   fle encrypt --config fle.toml --content-type application/x-www-form-urlencoded < form.txt
    #[command(verbatim_doc_comment)]
    Encrypt(edge_cmd::EncryptArgs),
    /// Print a configuration validated and self-contained (public keys inline), as the Lambda@Edge package embeds it.
    ///
    /// Example: fle bundle-config --config fle.toml > bundled.toml
    BundleConfig(edge_cmd::BundleConfigArgs),
    /// Decrypt every envelope: stdin to stdout, or files and directory trees (streamed, resumable).
    ///
    /// Plaintext is put back encoded for where it stands (JSON re-escaped, form percent-encoded,
    /// CSV quoted). Files are read by extension (.json, .jsonl/.ndjson, .csv, else text) or
    /// --format; outputs go to --out DIR (a mirrored tree) or --in-place, always through a
    /// temporary file and an atomic rename; --resume continues an interrupted job from its
    /// manifest. A progress line is drawn when stderr is a terminal; a summary ends file jobs
    /// (--json: as JSON).
    ///
    /// Exit status: 0 all decrypted; 1 the input was refused (--on-error fail), or every
    /// input; 2 usage, configuration or I/O error; 3 partial: written, with envelopes left,
    /// redacted or refused, some inputs failed, or directory entries (symbolic links, other
    /// jobs' files) skipped (one line each on stderr, never plaintext).
    ///
    /// Examples:
    ///   fle decrypt --private-key keys/demo-01.key.pem < body.json
    ///   fle decrypt --kms-key-id arn:aws:kms:eu-west-1:111122223333:key/1234abcd-... < body.json
    ///   fle decrypt --kms-key-id alias/fle --kms-endpoint http://127.0.0.1:4566 --region us-east-1 --mode text < app.log
    ///   fle decrypt --config fle.toml --mode form --on-error redact < form.txt
    ///   fle decrypt --config fle.toml exports/ --include '**/*.jsonl' --out plain/ --kms-rps 300
    ///   fle decrypt --config fle.toml exports/ --out plain/ --resume
    #[command(verbatim_doc_comment)]
    Decrypt(decrypt_cmd::DecryptArgs),
    /// Re-encrypt every envelope to another key (key rotation): plaintext exists only in memory.
    ///
    /// Each envelope is decrypted (KMS or --private-key) and its plaintext bytes, as they are,
    /// encrypted to the --to key's public key; envelopes already under it are left. Inputs,
    /// outputs, --resume and exit status as for decrypt.
    ///
    /// Examples:
    ///   fle reencrypt --config fle.toml --to 02 data/ --out rotated/
    ///   fle reencrypt --config fle.toml --to 02 data/ --in-place --include '*.csv' --kms-rps 200
    ///   fle reencrypt --private-key keys/old.key.pem --to 02 --to-public-key keys/02.pub.pem < in.jsonl > out.jsonl
    #[command(verbatim_doc_comment)]
    Reencrypt(decrypt_cmd::ReencryptArgs),
    /// Audit: count envelopes per key and find the ones that cannot be decrypted; no plaintext is output.
    ///
    /// Every envelope is decrypted and its plaintext dropped at once. Each problem is printed
    /// on stdout (FILE: envelope at byte N ..., names escaped); the summary on stderr. --json:
    /// JSON Lines on stdout, one object per problem, failed input and skipped entry, then the
    /// summary. Exit status: 0 every envelope decrypts; 3 problems found or entries skipped;
    /// 2 usage or I/O error.
    ///
    /// Examples:
    ///   fle verify --config fle.toml data/ --json
    ///   fle verify --config fle.toml --format jsonl < export.jsonl
    #[command(verbatim_doc_comment)]
    Verify(decrypt_cmd::VerifyArgs),
    /// Key tooling: generate a local key pair, fetch a KMS public key, list a keyring.
    #[command(subcommand)]
    Keys(keys_cmd::KeysCommand),
}

/// A crypto backend, by name.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum BackendChoice {
    /// aws-lc-rs (native, fast).
    AwsLc,
    /// RustCrypto `rsa` (pure Rust, as on wasm32 without a host).
    Rustcrypto,
}

/// Envelope version for `--envelope` (what a writer produces with an RSA key).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeChoice {
    /// Version 1: one RSA-OAEP ciphertext per value (the reference design's format).
    V1,
    /// Version 2: one encapsulation per request, AES-256-GCM per value (always for P-256 keys).
    V2,
}

impl From<EnvelopeChoice> for fle_shared::EnvelopeVersion {
    fn from(choice: EnvelopeChoice) -> Self {
        match choice {
            EnvelopeChoice::V1 => fle_shared::EnvelopeVersion::V1,
            EnvelopeChoice::V2 => fle_shared::EnvelopeVersion::V2,
        }
    }
}

impl BackendChoice {
    /// The backend this names.
    pub fn backend(self) -> &'static dyn fle_shared::backend::Backend {
        edge_cmd::backend_for(self)
    }
}

/// Diagnostics through `tracing`, off unless `RUST_LOG` is set (`RUST_LOG=fle=debug`,
/// `RUST_LOG=trace`): on stderr, text, or JSON lines with `FLE_LOG_FORMAT=json`. The AWS SDK's
/// and HTTP stack's own events are capped at `info` whatever `RUST_LOG` says: at `debug` and
/// `trace` they describe HTTP requests and responses (see [`fle_decryptor::logging`]).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, EnvFilter, Layer};
    let Some(spec) = std::env::var_os("RUST_LOG") else {
        return;
    };
    let env = EnvFilter::builder().parse_lossy(spec.to_string_lossy());
    let cap =
        filter::filter_fn(|meta| fle_decryptor::logging::allowed(meta.target(), *meta.level()));
    let json = std::env::var("FLE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let layer = if json {
        layer.json().with_filter(env).with_filter(cap).boxed()
    } else {
        layer.with_filter(env).with_filter(cap).boxed()
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Demo(args) => done(demo::run(&args, &mut std::io::stdout().lock())),
        Command::EncryptEvent(args) => done(
            edge_cmd::encrypt_event(
                &args,
                &mut std::io::stdin().lock(),
                &mut std::io::stdout().lock(),
            )
            .map(|_| ()),
        ),
        Command::Encrypt(args) => done(edge_cmd::encrypt(
            &args,
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        )),
        Command::BundleConfig(args) => done(edge_cmd::bundle_config(
            &args,
            &mut std::io::stdout().lock(),
        )),
        Command::Keys(command) => done(keys_cmd::run(&command, &mut std::io::stdout().lock())),
        Command::Decrypt(args) => decrypt_cmd::decrypt(&args),
        Command::Reencrypt(args) => decrypt_cmd::reencrypt(&args),
        Command::Verify(args) => decrypt_cmd::verify(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fle: {e:#}");
            // 1: the input was refused; 2: bad usage, configuration or I/O.
            if e.downcast_ref::<fle_edge_encryptor::BodyError>().is_some()
                || e.downcast_ref::<fle_decryptor::DocumentError>().is_some()
            {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            }
        }
    }
}
