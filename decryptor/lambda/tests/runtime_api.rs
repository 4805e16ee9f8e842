//! The real binary against a Lambda Runtime API served on loopback by this test: it fetches
//! queued invocations one after another from one process, answers each through the runtime
//! (responses and structured errors), and a bad configuration stops it at start. Envelopes are
//! written by the edge encryptor; decryption uses the demo private key (`FLE_PRIVATE_KEY`) or,
//! in the KMS mode, the test suite's KMS-wire-compatible server.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fle_edge_encryptor::config::BodyKind;
use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::{backend, OaepPrivateKey};
use serde_json::{json, Value};

use fle_test_support::runtime_api::{fake_runtime, Posted};
use fle_test_support::{kms_wire, root};

fn demo_private_key() -> PathBuf {
    root().join("keys/demo-01.key.pem")
}

/// A keyring of key 01 (the demo key) and key 02 (a key whose private half the tests never
/// hold), with absolute paths.
fn keyring_01_02() -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[[keys]]\nid = \"02\"\npublic_key = {:?}\n",
        root().join("keys/demo-01.pub.pem"),
        root().join("tests/fixtures/keys/rsa-3072.pub.pem")
    )
}

/// The edge encryptor: `fields` with key 01, and `b` with key 02.
fn edge(fields: &str) -> EdgeEncryptor {
    let toml = format!(
        "{}[edge]\nkey = \"01\"\nfields = [{fields}, {{ name = \"b\", key = \"02\" }}]\n",
        keyring_01_02()
    );
    EdgeEncryptor::from_toml_str(&toml, root(), backend::default_backend()).unwrap()
}

fn encrypt_json(edge: &EdgeEncryptor, doc: &str) -> String {
    edge.encrypt_body(BodyKind::Json, doc).unwrap().0
}

/// The envelope a one-field JSON document `{"f": value}` encrypts to.
fn envelope_of(edge: &EdgeEncryptor, field: &str, value: &str) -> String {
    let doc = encrypt_json(edge, &format!("{{\"{field}\": {value}}}"));
    let start = doc.find("#01#").unwrap();
    let end = doc.rfind("#10#").unwrap() + 4;
    doc[start..end].to_owned()
}

/// The function, with only the environment given here of everything it reads.
fn start(env: &[(&str, &str)], api: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fle-decrypt-lambda"));
    for name in [
        "FLE_CONFIG",
        "FLE_PRIVATE_KEY",
        "FLE_KEY_ID",
        "LAMBDA_TASK_ROOT",
    ] {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "fle-decrypt")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Runs the function on `events`, in order, in one process; returns what it posted for each
/// and what it logged.
fn invoke(env: &[(&str, &str)], events: &[Value]) -> (Vec<Posted>, String) {
    let (api, rx) = fake_runtime(events);
    let mut child = start(env, &api);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut posted = Vec::new();
    while posted.len() < events.len() {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(p) => posted.push(p),
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!(
                        "the function exited ({status}) after {} answers: {}",
                        posted.len(),
                        stderr_of(&mut child)
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "no answer from the function after {} answers",
                    posted.len()
                );
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = stderr_of(&mut child);
    for (i, p) in posted.iter().enumerate() {
        assert_eq!(p.request_id, format!("req-{}", i + 1), "answered in order");
    }
    (posted, log)
}

fn local_key_env() -> Vec<(&'static str, String)> {
    vec![(
        "FLE_PRIVATE_KEY",
        demo_private_key().to_str().unwrap().to_owned(),
    )]
}

fn as_env<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn response(posted: &Posted) -> &Value {
    assert_eq!(posted.outcome, "response", "{:?}", posted.body);
    &posted.body
}

/// `(errorType, errorMessage)` of a posted error.
fn error(posted: &Posted) -> (&str, &str) {
    assert_eq!(posted.outcome, "error", "{:?}", posted.body);
    (
        posted.body["errorType"].as_str().unwrap(),
        posted.body["errorMessage"].as_str().unwrap(),
    )
}

#[test]
fn a_json_body_comes_back_equal_with_escapes_and_types() {
    let edge = edge(r#""name", "ssn", "n""#);
    let doc = r#"{"name": "Jo \"JJ\" O'Neil \\ C:\\temp\n", "ssn": "123-45-6789", "n": -1.5e3, "keep": "as is"}"#;
    let encrypted = encrypt_json(&edge, doc);
    assert_eq!(encrypted.matches("#01#").count(), 3);
    assert!(!encrypted.contains("123-45-6789"));

    let (posted, log) = invoke(
        &as_env(&local_key_env()),
        &[
            json!({ "body": encrypted }),
            json!({ "body": encrypted, "mode": "json", "on_error": "fail" }),
        ],
    );
    for p in &posted {
        let out = response(p);
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap())
            .expect("the decrypted body is valid JSON");
        assert_eq!(body, serde_json::from_str::<Value>(doc).unwrap());
        assert!(body["n"].is_number(), "restored as a number: {body}");
        assert_eq!(body["n"].as_f64(), Some(-1500.0));
        assert_eq!(out["envelopes"], 3);
        assert_eq!(out["decrypted"], 3);
        assert_eq!(out["problems"], json!([]));
    }
    assert!(!log.contains("123-45-6789"), "{log}");
}

#[test]
fn text_mode_puts_plaintext_back_as_is() {
    let edge = edge(r#""name", "ssn""#);
    let ssn = envelope_of(&edge, "ssn", r#""123-45-6789""#);
    let name = envelope_of(&edge, "name", r#""Jo \"JJ\" \\""#);
    let text = format!("audit: ssn={ssn} name={name} again={ssn}\n");
    let (posted, _) = invoke(
        &as_env(&local_key_env()),
        &[json!({"body": text, "mode": "text"})],
    );
    let out = response(&posted[0]);
    assert_eq!(
        out["body"],
        "audit: ssn=123-45-6789 name=Jo \"JJ\" \\ again=123-45-6789\n"
    );
    assert_eq!(out["envelopes"], 3);
    assert_eq!(out["decrypted"], 3);
}

#[test]
fn bad_events_and_documents_are_structured_errors_and_the_function_keeps_serving() {
    let edge = edge(r#""ssn""#);
    let good = encrypt_json(&edge, r#"{"ssn": "123-45-6789"}"#);
    // Invalid JSON holding an envelope (without one, there is nothing to decrypt and the body
    // comes back as it is).
    let invalid = format!("{},}}", good.trim_end_matches('}'));
    let (posted, log) = invoke(
        &as_env(&local_key_env()),
        &[
            json!({"mode": "json"}),
            json!(["not", "an", "object"]),
            json!({"body": good, "mode": "xml"}),
            json!({ "body": invalid }),
            json!({"body": "ssn=%zz", "mode": "form"}),
            json!({ "body": good }),
        ],
    );
    for p in &posted[..3] {
        let (kind, message) = error(p);
        assert_eq!(kind, "InvalidEvent", "{message}");
    }
    assert!(error(&posted[0]).1.contains("no \"body\""));
    assert!(error(&posted[2]).1.contains("json, form or text"));
    for p in &posted[3..5] {
        let (kind, message) = error(p);
        assert_eq!(kind, "InvalidDocument", "{message}");
        assert!(message.contains("at byte"), "{message}");
        assert!(!message.contains("123-45-6789"), "{message}");
    }
    let out: Value = serde_json::from_str(response(&posted[5])["body"].as_str().unwrap()).unwrap();
    assert_eq!(out, json!({"ssn": "123-45-6789"}));
    // JSON lines: one "request failed" event per failure, with its request id and error.
    let failed: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON log line"))
        .filter(|e| e["fields"]["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 5, "one event per failure: {log}");
    let req4 = failed
        .iter()
        .find(|e| e["fields"]["request_id"] == "req-4")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        req4["fields"]["error"]
            .as_str()
            .unwrap()
            .starts_with("InvalidDocument: "),
        "{log}"
    );
    assert!(!log.contains("123-45-6789"), "{log}");
}

#[test]
fn an_unconfigured_key_fails_with_position_and_key_id_or_is_left() {
    // The function holds the private key of 01 only; the config's keyring also has 02.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(&config, keyring_01_02()).unwrap();
    let edge = edge(r#""a""#);
    let encrypted = encrypt_json(&edge, r#"{"a": "secret-a", "b": "secret-b"}"#);
    let b_at = encrypted.find("#02#").unwrap();

    let mut env = local_key_env();
    env.push(("FLE_CONFIG", config.to_str().unwrap().to_owned()));
    let (posted, log) = invoke(
        &as_env(&env),
        &[
            json!({ "body": encrypted }),
            json!({"body": encrypted, "on_error": "leave"}),
        ],
    );
    let (kind, message) = error(&posted[0]);
    assert_eq!(kind, "DecryptionFailed");
    assert!(message.contains(&format!("byte {b_at}")), "{message}");
    assert!(
        message.contains("key 02") && message.contains("$.b"),
        "{message}"
    );
    assert!(!message.contains("secret-"), "{message}");

    let out = response(&posted[1]);
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["a"], "secret-a");
    assert!(
        body["b"].as_str().unwrap().starts_with("#02#"),
        "left as is"
    );
    assert_eq!(out["envelopes"], 2);
    assert_eq!(out["decrypted"], 1);
    let problems = out["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["offset"], b_at);
    assert_eq!(problems[0]["field"], "$.b");
    assert_eq!(problems[0]["key"], "02");
    assert!(
        problems[0]["kind"]
            .as_str()
            .unwrap()
            .contains("no private key"),
        "{problems:?}"
    );
    assert!(!log.contains("secret-"), "{log}");
    // JSON lines for CloudWatch: the problem with its request id, then the request's counts.
    let events: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let problem = events
        .iter()
        .find(|e| e["fields"]["message"] == "envelope problem")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(problem["level"], "WARN");
    assert_eq!(problem["fields"]["request_id"], "req-2");
    assert!(
        problem["fields"]["problem"]
            .as_str()
            .unwrap()
            .starts_with(&format!("envelope at byte {b_at}")),
        "{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "request done"
                && e["fields"]["request_id"] == "req-2"),
        "{log}"
    );
}

#[test]
fn a_corrupted_ciphertext_fails_without_plaintext_or_is_redacted() {
    let edge = edge(r#""ssn", "name""#);
    let encrypted = encrypt_json(&edge, r#"{"name": "Jo", "ssn": "123-45-6789"}"#);
    let ssn_at = encrypted.find(r#""ssn": ""#).unwrap() + 8;
    assert_eq!(&encrypted[ssn_at..ssn_at + 4], "#01#");
    // Flip one base64 character in the middle of the ssn's ciphertext.
    let mut bytes = encrypted.clone().into_bytes();
    let i = ssn_at + 4 + 100;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let corrupted = String::from_utf8(bytes).unwrap();

    let (posted, log) = invoke(
        &as_env(&local_key_env()),
        &[
            json!({ "body": corrupted }),
            json!({"body": corrupted, "on_error": "redact"}),
        ],
    );
    let (kind, message) = error(&posted[0]);
    assert_eq!(kind, "DecryptionFailed");
    assert!(message.contains(&format!("byte {ssn_at}")), "{message}");
    assert!(message.contains("key 01"), "{message}");
    assert!(
        !message.contains("123-45-6789") && !message.contains("Jo"),
        "{message}"
    );

    let out = response(&posted[1]);
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"name": "Jo", "ssn": "[redacted]"}));
    assert_eq!(out["problems"][0]["key"], "01");
    assert!(!log.contains("123-45-6789"), "{log}");
}

#[test]
fn the_kms_mode_decrypts_through_the_configured_kms_key_and_fields() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/fle-decrypt-lambda-test";
    let pem = std::fs::read_to_string(demo_private_key()).unwrap();
    let wire = kms_wire::KmsWire::start(
        vec![(arn.to_owned(), OaepPrivateKey::from_pem(&pem).unwrap())],
        Duration::ZERO,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {arn:?}\n\
             [decrypt]\nfields = [\"ssn\"]\nendpoint = {:?}\nconcurrency = 2\nrate_per_second = 100\n",
            root().join("keys/demo-01.pub.pem"),
            wire.endpoint
        ),
    )
    .unwrap();
    let edge = edge(r#""ssn""#);
    let victim = encrypt_json(&edge, r#"{"ssn": "123-45-6789"}"#);
    let stolen = &victim[9..victim.len() - 2];
    // The same envelope pasted into a field decryption is not configured for.
    let doc = format!(r#"{{"ssn": "{stolen}", "comment": "{stolen}"}}"#);

    let no_file = dir.path().join("none");
    let no_file = no_file.to_str().unwrap();
    let env = [
        ("FLE_CONFIG", config.to_str().unwrap()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_PROFILE", "default"),
        ("AWS_CONFIG_FILE", no_file),
        ("AWS_SHARED_CREDENTIALS_FILE", no_file),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (posted, log) = invoke(&env, &[json!({ "body": doc })]);
    let out = response(&posted[0]);
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["ssn"], "123-45-6789");
    assert_eq!(body["comment"], stolen, "marker injection: left encrypted");
    assert_eq!(out["decrypted"], 1);
    assert_eq!(out["problems"][0]["field"], "$.comment");
    assert_eq!(
        wire.stats()
            .decrypted
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one KMS Decrypt, with the configured key ARN"
    );
    assert!(!log.contains("123-45-6789"), "{log}");
}

#[test]
fn a_configuration_without_kms_keys_stops_the_function_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(&config, keyring_01_02()).unwrap();
    let (api, _rx) = fake_runtime(&[]);

    let mut child = start(&[("FLE_CONFIG", config.to_str().unwrap())], &api);
    let status = child.wait().unwrap();
    assert!(!status.success());
    let err = stderr_of(&mut child);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fle-decrypt-lambda: config ") && err.contains("no key has a kms_key_id"),
        "{err}"
    );

    // Without FLE_CONFIG: fle.toml in the task root, here an invalid one.
    std::fs::write(&config, "[decrypt]\nmode = \"json\"\n").unwrap();
    let mut child = start(&[("LAMBDA_TASK_ROOT", dir.path().to_str().unwrap())], &api);
    assert!(!child.wait().unwrap().success());
    let err = stderr_of(&mut child);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no keys"), "{err}");
}
