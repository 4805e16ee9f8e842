//! `fle demo`: the whole round trip on built-in defaults.

use anyhow::{bail, Context};
use base64::Engine;
use std::io::Write;
use std::sync::Arc;

use fle_decryptor::{Decryptor, LocalKeyProvider, Mode, OnError};
use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome};
use fle_shared::{KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey};
use serde_json::Value;

use crate::BackendChoice;

/// The demo private key. **Demo only**: published in the repository, so it protects nothing.
const DEMO_PRIVATE_KEY_PEM: &str = include_str!("../keys/demo-01.key.pem");

/// A CloudFront origin-request event: 3 persons, the reference design's 6 fields each.
const SAMPLE_EVENT: &str = include_str!("../tests/fixtures/events/reference-3x6.json");

/// The edge configuration of the reference design.
const DEMO_CONFIG: &str = r#"[edge]
key = "01"
fields = ["fname", "lname", "email", "ssn", "dob", "phone"]
"#;

/// Options of `fle demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Crypto backend for encryption.
    #[arg(long, value_enum, default_value_t = BackendChoice::AwsLc)]
    backend: BackendChoice,
}

/// Runs the demo, writing a readable report to `out`.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let backend = args.backend.backend();
    let public =
        RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).context("demo public key")?;
    let keyring = Keyring::new(vec![KeyEntry::new(
        fle_shared::demo::DEMO_KEY_ID.parse()?,
        public,
    )])?;
    let edge = EdgeEncryptor::new(keyring, EdgeConfig::from_toml_str(DEMO_CONFIG)?, backend)?;
    let event: Value = serde_json::from_str(SAMPLE_EVENT)?;
    let data = event["Records"][0]["cf"]["request"]["body"]["data"]
        .as_str()
        .unwrap_or_default();
    let original = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data)?)?;

    writeln!(
        out,
        "fle demo: key 01 (DEMO ONLY, RSA-2048), backend {}",
        backend.name()
    )?;
    writeln!(out, "\n1. CloudFront origin-request body, as the viewer sent it (base64 in the event):\n{original}")?;

    let Outcome::Forward { request, encrypted } = edge.handle_event(&event) else {
        bail!("the edge refused the sample event");
    };
    writeln!(
        out,
        "\n2. The request the edge forwards to the origin ({encrypted} values encrypted with RSA-OAEP-SHA256):\n{}",
        serde_json::to_string_pretty(&request)?
    )?;

    let body = request["body"]["data"].as_str().context("forwarded body")?;
    let private = OaepPrivateKey::from_pem(DEMO_PRIVATE_KEY_PEM).context("demo private key")?;
    let provider = LocalKeyProvider::new(vec![(fle_shared::demo::DEMO_KEY_ID.parse()?, private)]);
    let decryptor = Decryptor::new(edge.keyring().clone(), Arc::new(provider));
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let decrypted = runtime
        .block_on(decryptor.decrypt(body, Mode::Json, OnError::Fail))?
        .text;
    writeln!(
        out,
        "\n3. Its body decrypted back with the demo private key:\n{}",
        decrypted.as_str()
    )?;

    if *decrypted != original {
        bail!("round trip changed the body");
    }
    writeln!(
        out,
        "\nRound trip OK: the decrypted body is byte for byte the body the viewer sent."
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_round_trips_with_both_backends() {
        for backend in [BackendChoice::AwsLc, BackendChoice::Rustcrypto] {
            let mut out = Vec::new();
            run(&DemoArgs { backend }, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("18 values encrypted"), "{text}");
            assert!(text.contains("Round trip OK"));
            assert_eq!(
                text.matches("\\\"#01#").count(),
                18,
                "eighteen envelopes in the forwarded body"
            );
        }
    }
}
