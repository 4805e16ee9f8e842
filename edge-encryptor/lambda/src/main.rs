//! fle's edge encryptor as a native Lambda function (`provided.al2023`): for regional Lambdas
//! (an API Gateway or ALB integration that rewrites CloudFront-shaped events), local invocation
//! with event files, tests and benchmarks. Lambda@Edge itself cannot run native code; use the
//! package from `edge-encryptor/build-lambda-edge.sh` there.
//!
//! Configuration: the file named by `FLE_CONFIG`, else `fle.toml` in `LAMBDA_TASK_ROOT` (the
//! deployment package), else `./fle.toml`. It is read once at start; an invalid configuration
//! fails the start, so no request is ever served without its rules.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use fle_edge_encryptor::EdgeEncryptor;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::value::RawValue;

/// The configuration file this process uses.
fn config_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FLE_CONFIG") {
        return PathBuf::from(path);
    }
    std::env::var_os("LAMBDA_TASK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join("fle.toml")
}

/// One invocation: the origin-request event in, the request to forward or the response out,
/// as JSON text (`EdgeEncryptor::handle_event_json`: members it does not change are copied
/// from the event's text). Logged: the outcome, how many values were encrypted or the
/// rejection's code and status; never the URI, a header or the body (any of them may hold
/// what the edge protects).
fn handle(edge: &EdgeEncryptor, event: LambdaEvent<Box<RawValue>>) -> Result<Box<RawValue>, Error> {
    let outcome = edge.handle_event_json(event.payload.get());
    let request_id = event.context.request_id.as_str();
    match &outcome {
        fle_edge_encryptor::Outcome::Forward { encrypted, .. } => {
            tracing::info!(request_id, encrypted, "forwarded")
        }
        other => {
            if let Some(r) = other.rejection() {
                tracing::warn!(request_id, code = r.code(), status = r.status(), "rejected")
            }
        }
    }
    // `handle_event_json` writes valid JSON; `from_string` checks it again (a few µs against
    // the runtime's HTTP round trip) because serde_json has no unchecked constructor.
    Ok(RawValue::from_string(outcome.into_inner())?)
}

/// Logs as JSON lines on stderr (CloudWatch), level from `RUST_LOG`, else
/// `AWS_LAMBDA_LOG_LEVEL`, else `info`.
fn init_logging() {
    let spec = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::builder().parse_lossy(spec))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_logging();
    let path = config_path();
    let edge = EdgeEncryptor::from_toml_file(&path, fle_shared::backend::default_backend())
        .map_err(|e| format!("fle-edge-lambda: configuration {}: {e}", path.display()))?;
    let edge = &edge;
    lambda_runtime::run(service_fn(move |event| async move { handle(edge, event) })).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_without_the_runtime() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n";
        let edge =
            EdgeEncryptor::from_toml_str(config, &dir, fle_shared::backend::default_backend())
                .unwrap();
        let event = RawValue::from_string(
            std::fs::read_to_string(dir.join("tests/fixtures/events/reference-3x6.json")).unwrap(),
        )
        .unwrap();
        let out = handle(
            &edge,
            LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_str(out.get()).unwrap();
        assert_eq!(out["body"]["action"], "replace");
        assert_eq!(
            out["body"]["data"]
                .as_str()
                .unwrap()
                .matches("#01#")
                .count(),
            3
        );
    }
}
