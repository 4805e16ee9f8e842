//! Decrypting a 60-envelope JSON document against a KMS endpoint with a 20 ms round trip, side
//! by side in one criterion run:
//!
//! - `fle decrypt --config` as a whole process (what a batch step or a shell pipeline runs);
//! - the reference design's decrypt handler (Python + boto3, one KMS call after another),
//!   also as a whole process (`benches/peers/reference_decrypt.py`);
//! - the decryptor library in process (`Decryptor::decrypt`), for the cost without process
//!   start-up.
//!
//! The KMS endpoint is the test suite's own KMS-wire server (`fle_test_support::kms_wire`) on
//! 127.0.0.1, answering each call after 20 ms with the demo private key; both
//! sides talk to it with their real AWS SDKs. The document is 10 persons × the reference
//! design's 6 fields, encrypted by the edge. The same document in envelope version 2 (the demo
//! P-256 key through `DeriveSharedSecret`, and the demo RSA key with `envelope = "v2"` through
//! one `Decrypt` of the data key): one KMS call for the 60 values, the library's cache of
//! secrets emptied before every iteration. Also: decryptor throughput on marker-free text and
//! JSON (the part that is not KMS).
//!
//! Needs Python with boto3 (`FLE_PYTHON`; the test command installs it into
//! `target/test-env/venv`). Run: `cargo bench --bench decrypt_document`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fle_decryptor::{Decryptor, KmsKeyProvider, LocalKeyProvider, Mode, OnError};
use fle_edge_encryptor::{BodyKind, EdgeEncryptor};
use fle_shared::backend;
use serde_json::Value;

use fle_test_support::{demo_private_key as private_key, kms_wire, require, root, Tool};

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-bench";
const P256_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fle-bench-p256";
const RTT: Duration = Duration::from_millis(20);
const FIELDS: [&str; 6] = ["fname", "lname", "email", "ssn", "dob", "phone"];

/// 10 persons × 6 encrypted fields (60 distinct envelopes), and the same document in clear.
fn documents() -> (String, String) {
    documents_with("public_key = \"keys/demo-01.pub.pem\"\n")
}

/// [`documents`] with key 01 configured by `key` (its `public_key` and settings).
fn documents_with(key: &str) -> (String, String) {
    let people: Vec<Value> = (0..10)
        .map(|i| {
            serde_json::json!({
                "fname": format!("First{i}"), "lname": format!("Last{i}"),
                "email": format!("person{i}@example.com"), "ssn": format!("123-45-{i:04}"),
                "dob": format!("19{:02}-01-01", 50 + i), "phone": format!("+1 555 01{i:02}"),
                "plan": "gold",
            })
        })
        .collect();
    let clear = serde_json::to_string(&people).unwrap();
    let toml = format!("[[keys]]\nid = \"01\"\n{key}[edge]\nkey = \"01\"\nfields = {FIELDS:?}\n");
    let edge = EdgeEncryptor::from_toml_str(&toml, root(), backend::default_backend()).unwrap();
    let (encrypted, n) = edge.encrypt_body(BodyKind::Json, &clear).unwrap();
    assert_eq!(n, 60);
    (clear, encrypted)
}

fn run_process(mut command: Command, input: &str) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn aws_env(command: &mut Command) {
    command
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
}

fn bench_decrypt(c: &mut Criterion) {
    require!(Tool::Python);
    let p256 = fle_shared::P256PrivateKey::from_pem(
        &std::fs::read_to_string(root().join("keys/demo-02.key.pem")).unwrap(),
    )
    .unwrap();
    let p256_public = p256.public_key().clone();
    let wire = kms_wire::KmsWire::start(
        vec![
            (ARN.to_owned(), fle_shared::PrivateKey::Rsa(private_key())),
            (P256_ARN.to_owned(), fle_shared::PrivateKey::P256(p256)),
        ],
        RTT,
    );
    let (clear, encrypted) = documents();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {ARN:?}\n\
             [decrypt]\nendpoint = {:?}\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap(),
            wire.endpoint
        ),
    )
    .unwrap();

    let fle = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fle"));
        command.args(["decrypt", "--config", config.to_str().unwrap()]);
        aws_env(&mut command);
        command
    };
    let reference = || {
        let mut command = Tool::Python.command();
        command
            .arg(root().join("benches/peers/reference_decrypt.py"))
            .env("FLE_KMS_KEY_ID", ARN)
            .env("FLE_KMS_ENDPOINT", &wire.endpoint);
        aws_env(&mut command);
        command
    };
    // Both give the clear document back before anything is timed.
    let parsed = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(parsed(&run_process(fle(), &encrypted)), parsed(&clear));
    assert_eq!(
        parsed(&run_process(reference(), &encrypted)),
        parsed(&clear)
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let library = runtime.block_on(async {
        std::env::set_var("AWS_ACCESS_KEY_ID", "bench");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "bench");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let provider =
            KmsKeyProvider::from_env(Some("us-east-1".into()), Some(wire.endpoint.clone())).await;
        let keyring = fle_shared::Keyring::new(vec![fle_shared::KeyEntry::new(
            "01".parse().unwrap(),
            private_key().public_key().clone(),
        )
        .with_kms_key_id(ARN)])
        .unwrap();
        Decryptor::new(keyring, Arc::new(provider))
    });

    let mut group = c.benchmark_group("decrypt 60 envelopes, KMS at 20 ms RTT");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("reference Python+boto3, serial (process)", |b| {
        b.iter(|| run_process(reference(), &encrypted))
    });
    group.bench_function("fle decrypt --config (process)", |b| {
        b.iter(|| run_process(fle(), &encrypted))
    });
    group.bench_function("fle library, in process", |b| {
        b.iter(|| {
            runtime
                .block_on(library.decrypt(&encrypted, Mode::Json, OnError::Fail))
                .unwrap()
        })
    });

    // Envelope version 2: one request's 60 values, one KMS call.
    for (label, key, entry, arn) in [
        (
            "v2 hpke-p256 (DeriveSharedSecret)",
            "public_key = \"keys/demo-02.pub.pem\"\n",
            fle_shared::KeyEntry::new("01".parse().unwrap(), p256_public.clone())
                .with_kms_key_id(P256_ARN),
            P256_ARN,
        ),
        (
            "v2 rsa-oaep (Decrypt of the data key)",
            "public_key = \"keys/demo-01.pub.pem\"\nenvelope = \"v2\"\n",
            fle_shared::KeyEntry::new("01".parse().unwrap(), private_key().public_key().clone())
                .with_kms_key_id(ARN),
            ARN,
        ),
    ] {
        let (clear_v2, encrypted_v2) = documents_with(key);
        let keyring = fle_shared::Keyring::new(vec![entry]).unwrap();
        let v2 = runtime.block_on(async {
            let provider =
                KmsKeyProvider::from_env(Some("us-east-1".into()), Some(wire.endpoint.clone()))
                    .await;
            Decryptor::new(keyring, Arc::new(provider))
        });
        let before = wire
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let out = runtime
            .block_on(v2.decrypt(&encrypted_v2, Mode::Json, OnError::Fail))
            .unwrap();
        assert_eq!(parsed(&out.text), parsed(&clear_v2));
        let calls = wire
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
            - before;
        assert_eq!(calls, 1, "{label}: one KMS call for 60 values");
        // The whole process too: `fle decrypt --config` with this key.
        let config_v2 = dir.path().join(format!(
            "fle-{arn_tail}.toml",
            arn_tail = &arn[arn.len() - 4..]
        ));
        let public = if arn == P256_ARN {
            "keys/demo-02.pub.pem"
        } else {
            "keys/demo-01.pub.pem"
        };
        std::fs::write(
            &config_v2,
            format!(
                "[[keys]]\nid = \"01\"\npublic_key = {:?}\nkms_key_id = {arn:?}\n\
                 [decrypt]\nendpoint = {:?}\n",
                root().join(public).to_str().unwrap(),
                wire.endpoint
            ),
        )
        .unwrap();
        let fle_v2 = || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_fle"));
            command.args(["decrypt", "--config", config_v2.to_str().unwrap()]);
            aws_env(&mut command);
            command
        };
        assert_eq!(
            parsed(&run_process(fle_v2(), &encrypted_v2)),
            parsed(&clear_v2)
        );
        group.bench_function(format!("fle decrypt --config (process), {label}"), |b| {
            b.iter(|| run_process(fle_v2(), &encrypted_v2))
        });
        group.bench_function(format!("fle library, in process, {label}"), |b| {
            b.iter(|| {
                v2.secret_cache().clear();
                runtime
                    .block_on(v2.decrypt(&encrypted_v2, Mode::Json, OnError::Fail))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// What the decryptor costs besides KMS: a large document with no envelope, or just one.
fn bench_marker_free(c: &mut Criterion) {
    let private = private_key();
    let keyring = fle_shared::Keyring::new(vec![fle_shared::KeyEntry::new(
        "01".parse().unwrap(),
        private.public_key().clone(),
    )])
    .unwrap();
    let decryptor = Decryptor::new(
        keyring,
        Arc::new(LocalKeyProvider::new(vec![(
            "01".parse().unwrap(),
            private,
        )])),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // ~10 MB of JSON records without envelopes (but with '#' here and there).
    let record = r##"{"id": 12345, "name": "Jo O'Neil", "tags": ["a", "#b"], "note": "nothing \"secret\" here", "n": 1.5e3},"##;
    let mut doc = String::from("[");
    while doc.len() < 10_000_000 {
        doc.push_str(record);
    }
    doc.pop();
    doc.push(']');
    // The same with one envelope at the end: JSON mode must parse the whole document.
    let encryptor =
        fle_shared::FieldEncryptor::new(decryptor.keyring(), backend::default_backend()).unwrap();
    let mut one = doc.clone();
    one.pop();
    one.push_str(",\"");
    encryptor
        .key_str("01")
        .unwrap()
        .encrypt_into("x", b"value", &mut one)
        .unwrap();
    one.push_str("\"]");
    let mut group = c.benchmark_group("decryptor on 10 MB of JSON");
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.sample_size(10);
    for (name, input, mode) in [
        ("marker-free, text mode", &doc, Mode::Text),
        ("marker-free, json mode", &doc, Mode::Json),
        ("one envelope, text mode", &one, Mode::Text),
        ("one envelope, json mode (full parse)", &one, Mode::Json),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            b.iter(|| {
                runtime
                    .block_on(decryptor.decrypt(input, mode, OnError::Fail))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decrypt, bench_marker_free);
criterion_main!(benches);
