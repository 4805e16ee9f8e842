//! `fle keys generate|fetch|list`: files written (never overwritten, private key owner-only),
//! entries that load as a keyring, keys that work end to end, KMS keys refused by usage.

mod common;

use std::process::Output;
use std::time::Duration;

use common::*;

fn fle(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    run_fle(dir, args, stdin)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn generate_then_encrypt_decrypt_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let entry = ok(&fle(
        dir.path(),
        &["keys", "generate", "--id", "07", "--bits", "3072"],
        "",
    ));
    let key = dir.path().join("keys/07.key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(dir.path().join("fle.toml"), &entry).unwrap();
    let list = ok(&fle(
        dir.path(),
        &["keys", "list", "--config", "fle.toml"],
        "",
    ));
    assert_eq!(list.lines().nth(1), Some("07\t#07#\t#70#\tRSA-3072\tv1\t-"));

    let encrypted = ok(&fle(
        dir.path(),
        &[
            "encrypt",
            "--public-key",
            "keys/07.pub.pem",
            "--fields",
            "ssn",
        ],
        r#"{"ssn": "123-45-6789"}"#,
    ));
    // --public-key encrypts as key 01; decrypt as 01 with the generated private key.
    let clear = ok(&fle(
        dir.path(),
        &["decrypt", "--private-key", "keys/07.key.pem"],
        &encrypted,
    ));
    assert_eq!(clear, r#"{"ssn": "123-45-6789"}"#);

    // Never overwrites; bad sizes refused.
    let again = fle(dir.path(), &["keys", "generate", "--id", "07"], "");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not overwriting"));
    let bad = fle(
        dir.path(),
        &["keys", "generate", "--id", "08", "--bits", "1024"],
        "",
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn fetch_from_kms_and_refuse_signing_keys() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/fle-fetch";
    let sign = "arn:aws:kms:us-east-1:111122223333:key/fle-fetch-sign";
    let wire = kms_wire::KmsWire::start(
        vec![
            (arn.into(), demo_private_key()),
            (sign.into(), demo_private_key()),
        ],
        Duration::ZERO,
    );
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "keys",
        "fetch",
        "--key-id",
        arn,
        "--id",
        "03",
        "--kms-endpoint",
        &wire.endpoint,
    ];
    let entry = ok(&fle(dir.path(), &args, ""));
    assert!(entry.contains(&format!("kms_key_id = {arn:?}")), "{entry}");
    let pem = std::fs::read_to_string(dir.path().join("keys/03.pub.pem")).unwrap();
    assert_eq!(pem, demo_private_key().public_key().to_pem());
    std::fs::write(dir.path().join("fle.toml"), &entry).unwrap();
    let list = ok(&fle(
        dir.path(),
        &["keys", "list", "--config", "fle.toml"],
        "",
    ));
    assert!(list.contains(arn), "{list}");

    let args = [
        "keys",
        "fetch",
        "--key-id",
        sign,
        "--id",
        "04",
        "--kms-endpoint",
        &wire.endpoint,
    ];
    let out = fle(dir.path(), &args, "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SIGN_VERIFY") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("keys/04.pub.pem").exists());
}
