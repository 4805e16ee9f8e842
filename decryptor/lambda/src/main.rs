//! fle's decryptor as a native Lambda function (`provided.al2023`): an event
//! `{"body": "...", "mode": "json" | "form" | "text", "on_error": "fail" | "leave" | "redact"}`
//! in, the body with its envelopes decrypted (and a report of what was found) out.
//!
//! Configuration, read once at cold start ([`setup`]): the file named by `FLE_CONFIG`, else
//! `fle.toml` in `LAMBDA_TASK_ROOT` (the deployment package), else `./fle.toml`: its `[[keys]]`
//! (each with the `kms_key_id` KMS decrypts it with) and an optional `[decrypt]` table. For the
//! external-key-pair mode and tests, `FLE_PRIVATE_KEY` names a local RSA private key (PEM) for
//! the key `FLE_KEY_ID` (default `01`) instead of KMS. An invalid configuration stops the
//! function at start (one line on stderr, non-zero exit), so no event is ever served without
//! its keys and rules.
//!
//! Each invocation ([`handler`]) answers with the decrypted body or a structured error
//! (`InvalidEvent`, `InvalidDocument`, `DecryptionFailed`). Plaintext goes into the response
//! and nowhere else: never into an error, never into a log line.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod handler;
mod setup;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

/// Logs as JSON lines on stderr (CloudWatch), level from `RUST_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`; the SDK's and HTTP stack's events capped at `info`
/// ([`fle_decryptor::logging`]).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, EnvFilter, Layer};
    let spec = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let env = EnvFilter::builder().parse_lossy(spec);
    let cap =
        filter::filter_fn(|meta| fle_decryptor::logging::allowed(meta.target(), *meta.level()));
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(env)
        .with_filter(cap);
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Cold start (configuration, keys, KMS clients), then the Lambda Runtime API loop.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    init_logging();
    let setup = match setup::Sources::from_env().build().await {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("fle-decrypt-lambda: {e}");
            std::process::exit(1);
        }
    };
    let setup = &setup;
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let request_id = event.context.request_id;
        let result = handler::handle(setup, event.payload).await;
        handler::log(&request_id, &result);
        result
            .map(|answer| answer.response)
            .map_err(Diagnostic::from)
    }))
    .await;
    if let Err(e) = served {
        eprintln!("fle-decrypt-lambda: Lambda Runtime API: {e}");
        std::process::exit(1);
    }
}
