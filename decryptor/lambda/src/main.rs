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

/// Cold start (configuration, keys, KMS clients), then the Lambda Runtime API loop.
#[tokio::main(flavor = "current_thread")]
async fn main() {
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
