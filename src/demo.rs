//! `fle demo`: the whole round trip on built-in defaults.

use std::io::Write;

use anyhow::{bail, Context};
use base64::Engine;
use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome, JSON_VALUE_TAG};
use fle_shared::{KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey, ScanItem};
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
    let decrypted = decrypt_json(edge.keyring(), &private, body)?;
    writeln!(
        out,
        "\n3. Its body decrypted back with the demo private key:\n{decrypted}"
    )?;

    if decrypted != original {
        bail!("round trip changed the body");
    }
    writeln!(
        out,
        "\nRound trip OK: the decrypted body is byte for byte the body the viewer sent."
    )?;
    Ok(())
}

/// Replaces each envelope in a JSON text with its plaintext: re-escaped as JSON string content,
/// or, for values the edge encrypted from another JSON type, the JSON value in place of the string.
/// (The KMS decryptor library will do this for real services.)
fn decrypt_json(keyring: &Keyring, private: &OaepPrivateKey, text: &str) -> anyhow::Result<String> {
    let mut result = String::with_capacity(text.len());
    let mut last = 0;
    for item in keyring.scanner().scan_str(text) {
        let found = match item {
            ScanItem::Envelope(found) => found,
            ScanItem::Malformed(bad) => {
                bail!("malformed envelope at {:?}: {}", bad.span, bad.problem)
            }
        };
        let plaintext = private.decrypt_envelope(&found.envelope)?;
        let value = plaintext.as_str().context("decrypted value is not UTF-8")?;
        let (start, end) = (found.span.start, found.span.end);
        if let Some(json) = value.strip_prefix(char::from(JSON_VALUE_TAG)) {
            serde_json::from_str::<Value>(json).context("decrypted JSON value")?;
            result.push_str(&text[last..start - 1]);
            result.push_str(json);
            last = end + 1;
        } else {
            let quoted = serde_json::to_string(value)?;
            result.push_str(&text[last..start]);
            result.push_str(&quoted[1..quoted.len() - 1]);
            last = end;
        }
    }
    result.push_str(&text[last..]);
    Ok(result)
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
