//! `fle decrypt`: the contract flags (--private-key, --kms-key-id with --kms-endpoint and
//! --region, --config; --mode, --on-error, --fields), exit codes, one-line errors without
//! plaintext. KMS is the test suite's KMS-wire server on 127.0.0.1, reached by the real SDK.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-cli";

fn fle(args: &[&str], stdin: &str) -> Output {
    run_fle(root(), args, stdin)
}

/// `fle encrypt` with the demo public key: these fields, these extra arguments.
fn encrypt_with(fields: &str, extra: &[&str], body: &str) -> String {
    let mut args = vec![
        "encrypt",
        "--public-key",
        "keys/demo-01.pub.pem",
        "--fields",
        fields,
    ];
    args.extend_from_slice(extra);
    let out = fle(&args, body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn encrypt(fields: &str, body: &str) -> String {
    encrypt_with(fields, &[], body)
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BODY: &str = r#"{"name": "Jo \"JJ\" O'Neil", "age": 42, "ssn": "123-45-6789"}"#;

#[test]
fn private_key_json_round_trip_and_exit_codes() {
    let encrypted = encrypt("name,age,ssn", BODY);
    let (code, out, err) = text(&fle(
        &["decrypt", "--private-key", "keys/demo-01.key.pem"],
        &encrypted,
    ));
    assert_eq!((code, out.as_str(), err.as_str()), (0, BODY, ""));

    // A truncated envelope: exit 1, one line naming its byte offset; nothing on stdout.
    let cut = encrypted.replacen("#10#", "", 1);
    let (code, out, err) = text(&fle(
        &["decrypt", "--private-key", "keys/demo-01.key.pem"],
        &cut,
    ));
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("at byte") && !err.contains("O'Neil"), "{err}");

    // --on-error redact: written, exit 3, a warning line.
    let (code, out, err) = text(&fle(
        &[
            "decrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--on-error",
            "redact",
        ],
        &cut,
    ));
    assert_eq!(code, 3, "{err}");
    assert!(
        out.contains("[redacted]") && out.contains("123-45-6789"),
        "{out}"
    );
    assert!(err.starts_with("fle: warning: envelope at byte"), "{err}");

    // --fields: an envelope outside them stays and is reported.
    let (code, out, _) = text(&fle(
        &[
            "decrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--fields",
            "ssn",
        ],
        &encrypted,
    ));
    assert_eq!(code, 3);
    assert!(out.contains("123-45-6789") && out.contains("#01#"), "{out}");

    // Usage errors: exit 2.
    for args in [
        &["decrypt"][..],
        &[
            "decrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--mode",
            "xml",
        ],
        &[
            "decrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--kms-key-id",
            ARN,
        ],
        &["decrypt", "--private-key", "keys/demo-01.pub.pem"],
    ] {
        let (code, _, err) = text(&fle(args, &encrypted));
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn text_and_form_modes() {
    let form = encrypt_with(
        "card",
        &["--content-type", "application/x-www-form-urlencoded"],
        "card=4111+1111&x=1",
    );
    let args = [
        "decrypt",
        "--private-key",
        "keys/demo-01.key.pem",
        "--mode",
        "form",
    ];
    let (code, out, _) = text(&fle(&args, &form));
    assert_eq!((code, out.as_str()), (0, "card=4111+1111&x=1"));

    let json = encrypt("ssn", BODY);
    let envelope = json.split('"').find(|s| s.starts_with("#01#")).unwrap();
    let log = format!("user ssn={envelope} ok\n");
    let args = [
        "decrypt",
        "--private-key",
        "keys/demo-01.key.pem",
        "--mode",
        "text",
    ];
    let (code, out, _) = text(&fle(&args, &log));
    assert_eq!((code, out.as_str()), (0, "user ssn=123-45-6789 ok\n"));
}

#[test]
fn kms_key_id_and_config_through_a_kms_endpoint() {
    let wire = kms_wire::KmsWire::start(vec![(ARN.into(), demo_private_key())], Duration::ZERO);
    let encrypted = encrypt("name,age,ssn", BODY);

    // --kms-key-id: public key by GetPublicKey, region from the ARN, then one Decrypt per value.
    let args = [
        "decrypt",
        "--kms-key-id",
        ARN,
        "--kms-endpoint",
        &wire.endpoint,
    ];
    let (code, out, err) = text(&fle(&args, &encrypted));
    assert_eq!((code, out.as_str()), (0, BODY), "{err}");
    let stats = wire.stats();
    assert_eq!(stats.decrypted.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(stats.requests.load(std::sync::atomic::Ordering::SeqCst), 4);

    // --config: kms_key_id per key, [decrypt] settings, --kms-endpoint and --region overriding.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {ARN:?}\n\
             [decrypt]\non_error = \"leave\"\nfields = [\"name\", \"ssn\"]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "decrypt",
        "--config",
        config,
        "--kms-endpoint",
        &wire.endpoint,
        "--region",
        "us-east-1",
    ];
    let (code, out, err) = text(&fle(&args, &encrypted));
    assert_eq!(code, 3, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "Jo \"JJ\" O'Neil");
    assert!(
        v["age"].as_str().unwrap().starts_with("#01#"),
        "age is outside the fields"
    );
    assert!(
        err.contains("field $.age") && err.contains("marker injection"),
        "{err}"
    );

    // A KMS key the endpoint does not know: exit 2, one line, from GetPublicKey.
    let args = [
        "decrypt",
        "--kms-key-id",
        "alias/nope",
        "--kms-endpoint",
        &wire.endpoint,
        "--region",
        "us-east-1",
    ];
    let (code, _, err) = text(&fle(&args, &encrypted));
    assert_eq!(code, 2);
    assert!(
        err.contains("NotFoundException") && err.lines().count() == 1,
        "{err}"
    );
}
