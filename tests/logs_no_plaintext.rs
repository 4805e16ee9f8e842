//! Structured logs never carry a value: a full edge → decrypt → batch cycle at `RUST_LOG=trace`
//! (text and JSON lines), with KMS reached through the real AWS SDK (the test suite's KMS-wire
//! server on 127.0.0.1), logs what it did (provider calls with key and latency, documents with
//! counts, batch inputs and the job) and none of the secrets: not as they are, not in base64
//! (a KMS `Decrypt` response carries the plaintext in base64, and the SDK's own trace events
//! print response bodies), not JSON-escaped.

mod common;

use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use common::*;

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-logs";
const SECRETS: [&str; 3] = ["Zanzibar-Quokka", "987-65-4321", "4111111111111111"];

/// Runs `fle` with `RUST_LOG=trace` (and `FLE_LOG_FORMAT` when given) and `stdin`. The SDK
/// is asked to print request bodies too (`LOG_SIGNABLE_BODY`): the cap must hold anyway.
fn fle_traced(args: &[&str], stdin: &str, format: Option<&str>) -> Output {
    let mut env = vec![("RUST_LOG", "trace"), ("LOG_SIGNABLE_BODY", "true")];
    if let Some(f) = format {
        env.push(("FLE_LOG_FORMAT", f));
    }
    run_fle_with(root(), args, stdin, &env)
}

/// Every way a secret could appear in a log.
fn spellings(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![
        secret.to_owned(),
        b64.encode(secret),
        // The JSON-value tag byte the edge puts before non-string values.
        b64.encode([&[0u8][..], secret.as_bytes()].concat()),
    ];
    // base64 of the secret at any alignment inside a longer plaintext (its stable middle).
    for pad in 1..3 {
        let padded = format!("{}{secret}", "x".repeat(pad));
        let enc = b64.encode(&padded);
        out.push(enc[4..enc.len() - 4].to_owned());
    }
    out
}

fn assert_clean(what: &str, log: &str) {
    for secret in SECRETS {
        for s in spellings(secret) {
            assert!(!log.contains(&s), "{what}: the log holds {s:?} ({secret})");
        }
    }
}

#[test]
fn a_full_cycle_at_trace_level_logs_no_value() {
    let wire = kms_wire::KmsWire::start(vec![(ARN.into(), demo_private_key())], Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {ARN:?}\n\
             [edge]\nkey = \"01\"\nfields = [\"name\", \"ssn\", \"card\"]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let body = format!(
        r#"{{"name":"{}","ssn":"{}","card":{},"plan":"gold"}}"#,
        SECRETS[0], SECRETS[1], SECRETS[2]
    );

    // Edge: an origin-request event through `fle encrypt-event`.
    let event = serde_json::json!({"Records": [{"cf": {"config": {"eventType": "origin-request"},
        "request": {"method": "POST", "uri": "/signup", "querystring": "", "clientIp": "203.0.113.1",
        "headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]},
        "body": {"inputTruncated": false, "action": "read-only", "encoding": "text", "data": body}}}}]});
    let out = fle_traced(
        &["encrypt-event", "--config", config],
        &format!("{event}\n"),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("encrypt-event", &String::from_utf8_lossy(&out.stderr));
    let forwarded: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let encrypted = forwarded["body"]["data"].as_str().unwrap().to_owned();
    for secret in SECRETS {
        assert!(!encrypted.contains(secret));
    }

    // Decrypt, stdin to stdout, KMS through the SDK: text logs.
    let args = [
        "decrypt",
        "--config",
        config,
        "--kms-endpoint",
        &wire.endpoint,
    ];
    let out = fle_traced(&args, &encrypted, None);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), body);
    assert!(
        log.contains("provider call") && log.contains("key=01"),
        "{log}"
    );
    assert!(log.contains("latency_ms"), "{log}");
    assert!(log.contains("document processed"), "{log}");
    assert_clean("decrypt", &log);

    // Batch: a tree, JSON lines logs; every line is JSON.
    let (enc, out_dir) = (dir.path().join("enc"), dir.path().join("out"));
    std::fs::create_dir_all(&enc).unwrap();
    std::fs::write(enc.join("a.jsonl"), format!("{encrypted}\n{encrypted}\n")).unwrap();
    std::fs::write(enc.join("b.log"), format!("user {encrypted} done\n")).unwrap();
    let mut args = args.to_vec();
    args.extend([enc.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    let out = fle_traced(&args, "", Some("json"));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let messages: Vec<String> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON log line");
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for wanted in [
        "job planned",
        "input started",
        "input done",
        "job finished",
        "provider call",
    ] {
        assert!(messages.iter().any(|m| m == wanted), "{wanted}: {log}");
    }
    assert_clean("batch decrypt", &log);
    let plain = std::fs::read_to_string(out_dir.join("a.jsonl")).unwrap();
    assert_eq!(plain, format!("{body}\n{body}\n"));

    // Verify and reencrypt at trace level too.
    let mut verify = vec![
        "verify",
        "--config",
        config,
        "--kms-endpoint",
        &wire.endpoint,
    ];
    verify.push(enc.to_str().unwrap());
    let out = fle_traced(&verify, "", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("verify", &String::from_utf8_lossy(&out.stderr));
    assert_clean("verify stdout", &String::from_utf8_lossy(&out.stdout));
}
