//! What a front end's log subscriber may let through. fle's own events carry counts, key ids,
//! offsets, latencies and error kinds, never a value; the crates below are not ours. At `debug`
//! and `trace` they describe HTTP requests and responses (the AWS SDK prints request bodies
//! when `LOG_SIGNABLE_BODY=true`; a KMS `Decrypt` response body is the plaintext, in base64),
//! so every front end caps them at `info` whatever `RUST_LOG` asks for: defense in depth.

/// Crates never logged above `info`.
pub const CAPPED_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_smithy_json",
    "aws_sdk_kms",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_credential_types",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
];

/// Whether an event of `target` at `level` may be logged: [`CAPPED_TARGETS`] up to `info` only.
/// Use it in a `tracing_subscriber::filter::filter_fn`.
pub fn allowed(target: &str, level: tracing::Level) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    level <= tracing::Level::INFO || !CAPPED_TARGETS.contains(&crate_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn http_and_sdk_crates_are_capped_at_info() {
        assert!(!allowed(
            "aws_smithy_runtime::client::orchestrator",
            Level::TRACE
        ));
        assert!(!allowed("hyper_util::client", Level::DEBUG));
        assert!(allowed("aws_smithy_runtime", Level::INFO));
        assert!(allowed("aws_smithy_runtime", Level::WARN));
        assert!(allowed("fle_decryptor::budget", Level::TRACE));
        assert!(allowed("fle_batch::run", Level::DEBUG));
    }
}
