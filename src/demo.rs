//! `fle demo`: the whole round trip on built-in defaults.

use std::io::Write;

use anyhow::{bail, Context};
use fle_shared::{
    backend, FieldEncryptor, KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey, ScanItem,
};
use serde_json::Value;

/// The demo private key. **Demo only**: published in the repository, so it protects nothing.
const DEMO_PRIVATE_KEY_PEM: &str = include_str!("../keys/demo-01.key.pem");

/// The sample record: a person as the reference design's edge function receives it. The first
/// name holds quotes, which broke the reference design's decryption.
const SAMPLE_RECORD: &str = r#"{"fname":"Jo \"JJ\"","lname":"O'Neil","email":"jo.oneil@example.com","ssn":"123-45-6789","dob":"1990-04-01","phone":"+1 555 0100","plan":"gold"}"#;

/// The fields the demo encrypts (the reference design's six).
const FIELDS: [&str; 6] = ["fname", "lname", "email", "ssn", "dob", "phone"];

/// Options of `fle demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Crypto backend for encryption.
    #[arg(long, value_enum, default_value_t = BackendChoice::AwsLc)]
    backend: BackendChoice,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendChoice {
    /// aws-lc-rs (native, fast).
    AwsLc,
    /// RustCrypto `rsa` (pure Rust, as on wasm32 without a host).
    Rustcrypto,
}

/// Runs the demo, writing a readable report to `out`.
pub fn run(args: &DemoArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let backend: &dyn fle_shared::Backend = match args.backend {
        BackendChoice::AwsLc => &backend::aws_lc::AwsLcBackend,
        BackendChoice::Rustcrypto => &backend::rustcrypto::RustCryptoBackend,
    };
    let public =
        RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).context("demo public key")?;
    let keyring = Keyring::new(vec![KeyEntry::new(
        fle_shared::demo::DEMO_KEY_ID.parse()?,
        public,
    )])?;
    let encryptor = FieldEncryptor::new(&keyring, backend)?;
    let key = encryptor
        .key_str(fle_shared::demo::DEMO_KEY_ID)
        .context("demo key missing")?;

    writeln!(
        out,
        "fle demo: key {} (DEMO ONLY, RSA-2048), backend {}",
        key.id(),
        backend.name()
    )?;
    writeln!(out, "\n1. Plaintext record:\n{SAMPLE_RECORD}")?;

    // Encrypt the six fields of the record.
    let mut record: Value = serde_json::from_str(SAMPLE_RECORD)?;
    let Value::Object(map) = &mut record else {
        bail!("sample record is not an object");
    };
    for field in FIELDS {
        if let Some(Value::String(value)) = map.get_mut(field) {
            let mut envelope = String::with_capacity(key.envelope_len());
            key.encrypt_into(field, value.as_bytes(), &mut envelope)?;
            *value = envelope;
        }
    }
    let encrypted = serde_json::to_string_pretty(&record)?;
    writeln!(
        out,
        "\n2. Encrypted with RSA-OAEP-SHA256, envelopes #01#...#10#:\n{encrypted}"
    )?;

    // Decrypt: find every envelope, decrypt with the demo private key, splice the plaintext back
    // escaped as JSON string content (the reference design pasted it raw, breaking the JSON).
    let private = OaepPrivateKey::from_pem(DEMO_PRIVATE_KEY_PEM).context("demo private key")?;
    let mut decrypted = String::with_capacity(encrypted.len());
    let mut last = 0;
    let mut count = 0;
    for item in keyring.scanner().scan_str(&encrypted) {
        let found = match item {
            ScanItem::Envelope(found) => found,
            ScanItem::Malformed(bad) => {
                bail!("malformed envelope at {:?}: {}", bad.span, bad.problem)
            }
        };
        let plaintext = private.decrypt_envelope(&found.envelope)?;
        let text = plaintext.as_str().context("decrypted value is not UTF-8")?;
        let quoted = serde_json::to_string(text)?;
        decrypted.push_str(&encrypted[last..found.span.start]);
        decrypted.push_str(&quoted[1..quoted.len() - 1]);
        last = found.span.end;
        count += 1;
    }
    decrypted.push_str(&encrypted[last..]);
    writeln!(
        out,
        "\n3. Decrypted back with the demo private key ({count} envelopes):\n{decrypted}"
    )?;

    let original: Value = serde_json::from_str(SAMPLE_RECORD)?;
    let round_trip: Value =
        serde_json::from_str(&decrypted).context("decrypted text is not valid JSON")?;
    if original != round_trip {
        bail!("round trip changed the record");
    }
    writeln!(
        out,
        "\nRound trip OK: the decrypted record equals the original."
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
            assert!(text.contains("6 envelopes"), "{text}");
            assert!(text.contains("Round trip OK"));
            assert_eq!(text.matches("\"#01#").count(), 6, "six encrypted values");
        }
    }
}
