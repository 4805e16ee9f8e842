//! Envelope version 2 on the command line: `fle encrypt` with an EC P-256 `--public-key`, or an
//! RSA one with `--envelope v2`; `fle decrypt --private-key` with either kind of key; `fle
//! reencrypt` migrating version-1 data to a P-256 key and to version 2 under the same RSA key.

mod common;

use std::process::Output;

use common::*;

fn fle(args: &[&str], stdin: &str) -> Output {
    run_fle(root(), args, stdin)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const BODY: &str = r#"{"ssn":"123-45-6789","name":"Jo","card":{"pan":"4111111111111111"},"n":42}"#;

/// The payloads of `text`'s envelopes under `prefix` … `suffix`.
fn envelopes<'t>(text: &'t str, prefix: &str, suffix: &str) -> Vec<&'t str> {
    text.split(prefix)
        .skip(1)
        .map(|rest| &rest[..rest.find(suffix).unwrap()])
        .collect()
}

#[test]
fn a_p256_public_key_writes_version_2_and_its_private_key_reads_it() {
    let encrypted = ok(fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-02.pub.pem",
            "--fields",
            "ssn,pan,n",
        ],
        BODY,
    ));
    let payloads = envelopes(&encrypted, "#01#", "#10#");
    assert_eq!(payloads.len(), 3, "{encrypted}");
    // 11 bytes: 88 characters; one encapsulation (token bytes 2..35) for the whole body.
    assert_eq!(payloads[0].len(), 88);
    assert!(payloads.iter().all(|p| p[4..44] == payloads[0][4..44]));
    assert!(!encrypted.contains("6789") && !encrypted.contains("4111"));
    let clear = ok(fle(
        &["decrypt", "--private-key", "keys/demo-02.key.pem"],
        &encrypted,
    ));
    assert_eq!(clear, BODY);
    // The RSA demo key cannot open them: refused, nothing decrypted.
    let wrong = fle(
        &["decrypt", "--private-key", "keys/demo-01.key.pem"],
        &encrypted,
    );
    assert!(!wrong.status.success());
    assert!(!String::from_utf8_lossy(&wrong.stdout).contains("6789"));
}

#[test]
fn an_rsa_key_writes_version_2_when_asked() {
    let encrypted = ok(fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-01.pub.pem",
            "--envelope",
            "v2",
            "--fields",
            "ssn,pan",
        ],
        BODY,
    ));
    let payloads = envelopes(&encrypted, "#01#", "#10#");
    assert_eq!(payloads.len(), 2);
    assert!(payloads
        .iter()
        .all(|p| p.len() > 344 && p.starts_with("Ag")));
    let clear = ok(fle(
        &["decrypt", "--private-key", "keys/demo-01.key.pem"],
        &encrypted,
    ));
    assert_eq!(clear, BODY);
}

#[test]
fn reencrypt_migrates_version_1_to_a_p256_key_and_to_version_2() {
    let v1 = ok(fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-01.pub.pem",
            "--fields",
            "ssn,pan",
        ],
        BODY,
    ));
    assert_eq!(envelopes(&v1, "#01#", "#10#")[0].len(), 344);
    let to_p256 = ok(fle(
        &[
            "reencrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--to",
            "02",
            "--to-public-key",
            "keys/demo-02.pub.pem",
        ],
        &v1,
    ));
    assert_eq!(envelopes(&to_p256, "#02#", "#20#").len(), 2, "{to_p256}");
    let clear = ok(fle(
        &[
            "decrypt",
            "--private-key",
            "keys/demo-02.key.pem",
            "--key-id",
            "02",
        ],
        &to_p256,
    ));
    assert_eq!(clear, BODY);

    // The same RSA key, now writing version 2: its version-1 envelopes are re-encrypted.
    let to_v2 = ok(fle(
        &[
            "reencrypt",
            "--private-key",
            "keys/demo-01.key.pem",
            "--to",
            "01",
            "--envelope",
            "v2",
        ],
        &v1,
    ));
    let payloads = envelopes(&to_v2, "#01#", "#10#");
    assert_eq!(payloads.len(), 2);
    assert!(payloads.iter().all(|p| p.len() > 344), "{to_v2}");
    let clear = ok(fle(
        &["decrypt", "--private-key", "keys/demo-01.key.pem"],
        &to_v2,
    ));
    assert_eq!(clear, BODY);
}

#[test]
fn keys_generate_makes_p256_pairs_that_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_fle(
        dir.path(),
        &[
            "keys", "generate", "--id", "07", "--type", "p256", "--dir", "k",
        ],
        "",
    );
    let entry = ok(out);
    assert!(entry.contains("id = \"07\""), "{entry}");
    let public = std::fs::read_to_string(dir.path().join("k/07.pub.pem")).unwrap();
    assert!(fle_shared::P256PublicKey::from_spki_der(&pem_der(&public)).is_ok());
    std::fs::write(dir.path().join("fle.toml"), &entry).unwrap();
    let list = ok(run_fle(
        dir.path(),
        &["keys", "list", "--config", "fle.toml"],
        "",
    ));
    assert_eq!(list.lines().nth(1), Some("07\t#07#\t#70#\tP-256\tv2\t-"));
    let encrypted = ok(run_fle(
        dir.path(),
        &["encrypt", "--public-key", "k/07.pub.pem", "--fields", "ssn"],
        BODY,
    ));
    let clear = ok(run_fle(
        dir.path(),
        &["decrypt", "--private-key", "k/07.key.pem"],
        &encrypted,
    ));
    assert_eq!(clear, BODY);
    let refused = run_fle(
        dir.path(),
        &[
            "keys", "generate", "--id", "08", "--type", "p256", "--bits", "3072",
        ],
        "",
    );
    assert!(!refused.status.success());
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn decrypt_through_kms_derive_shared_secret_with_one_call() {
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-cli-p256";
    let pem = std::fs::read_to_string(root().join("keys/demo-02.key.pem")).unwrap();
    let private = fle_shared::P256PrivateKey::from_pem(&pem).unwrap();
    let wire = kms_wire::KmsWire::start(vec![(ARN.to_owned(), private)], Default::default());
    let encrypted = ok(fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-02.pub.pem",
            "--fields",
            "ssn,pan,n,name",
        ],
        BODY,
    ));
    // GetPublicKey says KEY_AGREEMENT: the four values cost one DeriveSharedSecret.
    let clear = ok(fle(
        &[
            "decrypt",
            "--kms-key-id",
            ARN,
            "--kms-endpoint",
            &wire.endpoint,
        ],
        &encrypted,
    ));
    assert_eq!(clear, BODY);
    let stats = wire.stats();
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(stats.derived.load(SeqCst), 1);
    assert_eq!(
        stats.requests.load(SeqCst),
        2,
        "GetPublicKey + DeriveSharedSecret"
    );
}

#[test]
fn bound_values_open_only_in_their_own_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = |extra: &str, key: &str| {
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n{extra}\
             [edge]\nkey = \"01\"\nfields = [\"ssn\", \"email\"]\nbind_paths = true\n",
            root().join(key).to_str().unwrap()
        )
    };
    let path = dir.path().join("fle.toml");
    std::fs::write(&path, config("", "keys/demo-02.pub.pem")).unwrap();
    let body = r#"{"ssn":"123-45-6789","email":"jo@example.com"}"#;
    let encrypted = ok(run_fle(
        dir.path(),
        &["encrypt", "--config", "fle.toml"],
        body,
    ));
    let key = root().join("keys/demo-02.key.pem");
    let key = key.to_str().unwrap();
    // With the same fields, each value opens in its own field.
    let clear = ok(fle(
        &["decrypt", "--private-key", key, "--fields", "ssn,email"],
        &encrypted,
    ));
    assert_eq!(clear, body);
    // Swapped into each other's field: neither opens, nothing is released.
    let doc: serde_json::Value = serde_json::from_str(&encrypted).unwrap();
    let swapped = serde_json::json!({"ssn": doc["email"], "email": doc["ssn"]}).to_string();
    let out = fle(
        &["decrypt", "--private-key", key, "--fields", "ssn,email"],
        &swapped,
    );
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("6789") && !stdout.contains("jo@"),
        "{stdout}"
    );
    // A schema-blind decryptor cannot tell the field: refused, fail closed.
    let out = fle(&["decrypt", "--private-key", key], &encrypted);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PathRequired"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Re-encrypted to an RSA key writing version 2, the values stay bound to their fields;
    // to a key writing version 1, which cannot bind, re-encryption refuses.
    let to = |extra: &[&str]| {
        let mut args = vec![
            "reencrypt",
            "--private-key",
            key,
            "--fields",
            "ssn,email",
            "--to",
            "03",
            "--to-public-key",
            "keys/demo-01.pub.pem",
        ];
        args.extend_from_slice(extra);
        fle(&args, &encrypted)
    };
    let rsa_v2 = ok(to(&["--envelope", "v2"]));
    assert_eq!(rsa_v2.matches("#03#").count(), 2, "{rsa_v2}");
    let rsa_key = root().join("keys/demo-01.key.pem");
    let rsa_key = rsa_key.to_str().unwrap();
    let opened = ok(fle(
        &[
            "decrypt",
            "--private-key",
            rsa_key,
            "--key-id",
            "03",
            "--fields",
            "ssn,email",
        ],
        &rsa_v2,
    ));
    assert_eq!(opened, body);
    let out = fle(
        &["decrypt", "--private-key", rsa_key, "--key-id", "03"],
        &rsa_v2,
    );
    assert!(
        !out.status.success(),
        "still bound: refused without the fields"
    );
    let out = to(&[]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("6789"));

    // A key writing version 1 cannot bind: refused when the configuration loads.
    std::fs::write(&path, config("", "keys/demo-01.pub.pem")).unwrap();
    let out = run_fle(dir.path(), &["encrypt", "--config", "fle.toml"], body);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("envelope version 1"));
    std::fs::write(&path, config("envelope = \"v2\"\n", "keys/demo-01.pub.pem")).unwrap();
    let encrypted = ok(run_fle(
        dir.path(),
        &["encrypt", "--config", "fle.toml"],
        body,
    ));
    let key = root().join("keys/demo-01.key.pem");
    let clear = ok(fle(
        &[
            "decrypt",
            "--private-key",
            key.to_str().unwrap(),
            "--fields",
            "ssn,email",
        ],
        &encrypted,
    ));
    assert_eq!(clear, body);
}

#[test]
fn a_document_over_the_encapsulation_limit_is_refused_before_any_kms_call() {
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-cli-limit";
    // Three bodies encrypted apart: three encapsulations in one JSON document.
    let one = |body: &str| {
        ok(fle(
            &[
                "encrypt",
                "--public-key",
                "keys/demo-02.pub.pem",
                "--fields",
                "ssn",
            ],
            body,
        ))
    };
    let doc = format!(
        "[{},{},{}]",
        one(r#"{"ssn":"111-11-1111"}"#),
        one(r#"{"ssn":"222-22-2222"}"#),
        one(r#"{"ssn":"333-33-3333"}"#)
    );
    let clear = r#"[{"ssn":"111-11-1111"},{"ssn":"222-22-2222"},{"ssn":"333-33-3333"}]"#;
    let refused = |out: Output| {
        assert!(!out.status.success());
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            !stdout.contains("-11") && !stderr.contains("-11"),
            "{stdout}"
        );
        assert!(
            stderr.contains("holds 3 distinct version-2 encapsulations")
                && stderr.contains("limit of 2")
                && stderr.contains("max_encapsulations_per_document"),
            "{stderr}"
        );
    };

    // The flag, whatever --on-error, for JSON and text input alike.
    let key = ["decrypt", "--private-key", "keys/demo-02.key.pem"];
    for on_error in ["fail", "leave", "redact"] {
        for mode in ["json", "text"] {
            let args = [
                &key[..],
                &[
                    "--max-encapsulations-per-document",
                    "2",
                    "--on-error",
                    on_error,
                    "--mode",
                    mode,
                ],
            ]
            .concat();
            refused(fle(&args, &doc));
        }
    }
    let args = [&key[..], &["--max-encapsulations-per-document", "3"]].concat();
    assert_eq!(ok(fle(&args, &doc)), clear);
    let zero = fle(
        &[&key[..], &["--max-encapsulations-per-document", "0"]].concat(),
        &doc,
    );
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--max-encapsulations-per-document"));

    // The config's [decrypt] setting, through KMS: no call at all; the flag overrides it.
    let pem = std::fs::read_to_string(root().join("keys/demo-02.key.pem")).unwrap();
    let private = fle_shared::P256PrivateKey::from_pem(&pem).unwrap();
    let wire = kms_wire::KmsWire::start(vec![(ARN.to_owned(), private)], Default::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fle.toml"),
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {ARN:?}\n\
             [decrypt]\nendpoint = {:?}\nmax_encapsulations_per_document = 2\n",
            root().join("keys/demo-02.pub.pem").to_str().unwrap(),
            wire.endpoint
        ),
    )
    .unwrap();
    use std::sync::atomic::Ordering::SeqCst;
    refused(run_fle(
        dir.path(),
        &["decrypt", "--config", "fle.toml"],
        &doc,
    ));
    // Set, it holds for text input too (which has no limit by default).
    refused(run_fle(
        dir.path(),
        &["decrypt", "--config", "fle.toml", "--mode", "text"],
        &doc,
    ));
    assert_eq!(wire.stats().requests.load(SeqCst), 0);
    let out = run_fle(
        dir.path(),
        &[
            "decrypt",
            "--config",
            "fle.toml",
            "--max-encapsulations-per-document",
            "3",
        ],
        &doc,
    );
    assert_eq!(ok(out), clear);
    assert_eq!(wire.stats().derived.load(SeqCst), 3);
}

#[test]
fn text_input_has_no_default_encapsulation_limit_unless_one_is_set() {
    use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, P256PrivateKey, RequestState};
    // The lines of 257 requests (one over the JSON default), sealed to key 01 (the default
    // --key-id): 257 encapsulations.
    let pem = std::fs::read_to_string(root().join("keys/demo-02.key.pem")).unwrap();
    let public = P256PrivateKey::from_pem(&pem).unwrap().public_key().clone();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let envelopes: Vec<String> = (0..257)
        .map(|i| {
            let mut out = String::new();
            key.encrypt_in(
                &mut RequestState::new(),
                "v",
                format!("ssn-{i}").as_bytes(),
                &mut out,
            )
            .unwrap();
            out
        })
        .collect();
    let line = |i: usize, value: &str| format!("request {i}: ssn={value}\n");
    let log: String = envelopes
        .iter()
        .enumerate()
        .map(|(i, e)| line(i, e))
        .collect();
    let clear: String = (0..257).map(|i| line(i, &format!("ssn-{i}"))).collect();
    let key = ["decrypt", "--private-key", "keys/demo-02.key.pem"];

    // A log opens by default.
    let text = [&key[..], &["--mode", "text"]].concat();
    assert_eq!(ok(fle(&text, &log)), clear);
    // The same values in one JSON document: over the default of 256.
    let doc = serde_json::to_string(&envelopes).unwrap();
    let out = fle(&[&key[..], &["--mode", "json"]].concat(), &doc);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds 257 distinct version-2 encapsulations")
            && stderr.contains("limit of 256")
            && !stderr.contains("ssn-"),
        "{stderr}"
    );
    // Set explicitly, the limit holds for text too.
    let limited = [&text[..], &["--max-encapsulations-per-document", "256"]].concat();
    let out = fle(&limited, &log);
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr.contains("holds 257 distinct version-2 encapsulations")
            && stderr.contains("limit of 256")
            && !stderr.contains("ssn-")
            && !stdout.contains("ssn-"),
        "{stderr}"
    );
    let raised = [&text[..], &["--max-encapsulations-per-document", "257"]].concat();
    assert_eq!(ok(fle(&raised, &log)), clear);
}
