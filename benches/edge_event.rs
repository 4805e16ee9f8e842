//! Whole CloudFront events through the edge encryptor, side by side in one criterion run:
//!
//! - fle native (`EdgeEncryptor::handle_event_json`, what the native Lambda runs: event text in,
//!   request text out; aws-lc-rs and RustCrypto backends);
//! - fle's Lambda@Edge package under Node.js (wasm core, RSA by Node's crypto), and the same
//!   package with its pure-Rust RSA in wasm;
//! - a plain Node.js handler with `crypto.publicEncrypt` (the peer the package must stay close to);
//! - the reference design's handler (Python + PyCryptodome), rebuilt as a peer.
//!
//! The event is `tests/fixtures/events/reference-3x6.json`: 3 persons × 6 fields, JSON body,
//! base64. One invocation = parse the event JSON, handle it, serialise the result. Peers run as
//! long-lived processes timing their own loops (`iter_custom`); every peer's output is decrypted
//! with the demo key before timing. Also: the package's cold start and zip size.
//!
//! Envelope version 2 (`edge_event_3x6_v2`): the same event natively with `rsa-oaep` (demo RSA
//! key, `envelope = "v2"`) and `hpke-p256` (demo P-256 key), next to their physical floors in
//! the same run: one RSA-2048 OAEP encryption, and one P-256 key generation plus one ECDH
//! (aws-lc-rs); and the Lambda@Edge package with each, next to its version-1 run above. The
//! `_reuse1000` variants set `reuse_encapsulation = { seconds = 60, requests = 1000 }`: one
//! asymmetric operation per 1,000 requests (off by default: requests become linkable).
//!
//! Needs `node`, and Python with pycryptodome (`FLE_PYTHON`, which the test command sets up in
//! `target/test-env/venv`). Run: `cargo bench --bench edge_event`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::backend;
use serde_json::Value;

use fle_test_support::process::build_lambda_edge_package;
use fle_test_support::{demo_decrypt, require, root, Tool};

const CONFIG: &str = "[edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n";

fn config_text() -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n{CONFIG}",
        root().join("keys/demo-01.pub.pem").to_str().unwrap()
    )
}

/// The `[edge]` line that reuses one encapsulation for up to 1,000 requests within 60 s.
const REUSE: &str = "reuse_encapsulation = { seconds = 60, requests = 1000 }\n";

/// The configuration with key 01 writing version 2: the demo RSA key with `envelope = "v2"`
/// (`rsa`), or the demo P-256 key; with `reuse`, one encapsulation serves up to 1,000 requests.
fn config_text_v2(rsa: bool, reuse: bool) -> String {
    let (file, extra) = if rsa {
        ("keys/demo-01.pub.pem", "envelope = \"v2\"\n")
    } else {
        ("keys/demo-02.pub.pem", "")
    };
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n{extra}{CONFIG}{}",
        root().join(file).to_str().unwrap(),
        if reuse { REUSE } else { "" }
    )
}

/// Opens every envelope of a forwarded body with the private key of `file` (as key 01): the
/// 18 values of the fixture, all version 2, one encapsulation.
fn check_output_v2(name: &str, result: &str, file: &str) {
    let request: Value =
        serde_json::from_str(result).unwrap_or_else(|e| panic!("{name}: {e}: {result}"));
    let body = request["body"]["data"].as_str().unwrap();
    let private =
        fle_shared::PrivateKey::from_pem(&std::fs::read_to_string(root().join(file)).unwrap())
            .unwrap();
    let keyring = fle_shared::Keyring::new(vec![fle_shared::KeyEntry::new(
        "01".parse().unwrap(),
        private.public_key(),
    )])
    .unwrap();
    let (values, encaps) = fle_test_support::open_v2_envelopes(&keyring, &private, body);
    assert_eq!(values.len(), 18, "{name}");
    assert_eq!(values[3], "123-45-6789", "{name}");
    assert_eq!(encaps, 1, "{name}: one encapsulation per request");
}

/// A peer process speaking the loop protocol of benches/peers/reference_edge.py.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(mut command: Command) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "peer {command:?} did not start");
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    fn ask(&mut self, request: &str) -> String {
        writeln!(self.stdin, "{request}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    fn run(&mut self, iters: u64) -> Duration {
        Duration::from_nanos(self.ask(&iters.to_string()).trim().parse().unwrap())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decrypts every envelope in a handler's forwarded body: the 18 values of the fixture.
fn check_output(name: &str, result: &str) {
    let request: Value =
        serde_json::from_str(result).unwrap_or_else(|e| panic!("{name}: {e}: {result}"));
    let body = request["body"]["data"]
        .as_str()
        .unwrap_or_else(|| panic!("{name}: no body in {result}"));
    let values = demo_decrypt(body);
    assert_eq!(values.len(), 18, "{name}");
    assert_eq!(values[3], "123-45-6789", "{name}");
}

fn edge_event(c: &mut Criterion) {
    require!(Tool::Node, Tool::Python);
    let event_path = root().join("tests/fixtures/events/reference-3x6.json");
    let event_text = std::fs::read_to_string(&event_path).unwrap();
    let public_key = root().join("keys/demo-01.pub.pem");
    let work = std::env::temp_dir().join(format!("fle-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let (package, zip_len, _) = build_lambda_edge_package(&work, &config_text());
    println!("Lambda@Edge package: {zip_len} bytes zipped");

    let node_peer = |script: &str, first: &Path, host_rsa: &str| {
        let mut cmd = Tool::Node.command();
        cmd.arg(root().join("benches/peers").join(script))
            .arg(first)
            .arg(&event_path)
            .env("FLE_HOST_RSA", host_rsa);
        cmd
    };
    let mut reference = {
        let mut cmd = Tool::Python.command();
        cmd.arg(root().join("benches/peers/reference_edge.py"))
            .arg(&public_key)
            .arg(&event_path);
        Peer::spawn(cmd)
    };
    let mut plain_node = Peer::spawn(node_peer("plain_node.mjs", &public_key, "1"));
    let mut package_node = Peer::spawn(node_peer("lambda_edge.mjs", &package, "1"));
    let mut package_wasm_rsa = Peer::spawn(node_peer("lambda_edge.mjs", &package, "0"));
    for (name, peer) in [
        ("reference", &mut reference),
        ("plain node", &mut plain_node),
        ("package", &mut package_node),
        ("package, wasm RSA", &mut package_wasm_rsa),
    ] {
        let out = peer.ask("check");
        check_output(name, &out);
    }

    let mut group = c.benchmark_group("edge_event_3x6");
    for backend in backend::all_backends() {
        let edge = EdgeEncryptor::from_toml_str(&config_text(), Path::new("/"), backend).unwrap();
        check_output(
            backend.name(),
            &edge.handle_event_json(&event_text).into_inner(),
        );
        group.bench_function(format!("fle_native_{}", backend.name()), |b| {
            b.iter(|| edge.handle_event_json(&event_text).into_inner())
        });
    }
    group.bench_function("fle_lambda_edge_package_node", |b| {
        b.iter_custom(|n| package_node.run(n))
    });
    group.bench_function("plain_node_publicEncrypt_handler", |b| {
        b.iter_custom(|n| plain_node.run(n))
    });
    group.bench_function("reference_python_pycryptodome", |b| {
        b.iter_custom(|n| reference.run(n))
    });
    group.sample_size(10);
    group.bench_function("fle_lambda_edge_package_wasm_rsa", |b| {
        b.iter_custom(|n| package_wasm_rsa.run(n))
    });
    group.finish();
    drop((reference, plain_node, package_wasm_rsa));

    // Envelope version 2, with its floors in the same group.
    let mut group = c.benchmark_group("edge_event_3x6_v2");
    {
        use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
        use aws_lc_rs::rand::SystemRandom;
        let rng = SystemRandom::new();
        let recipient = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
        let recipient = recipient.compute_public_key().unwrap().as_ref().to_vec();
        group.bench_function("floor_p256_keygen_plus_ecdh_aws-lc-rs", |b| {
            b.iter(|| {
                let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).unwrap();
                let public = ephemeral.compute_public_key().unwrap();
                let peer = UnparsedPublicKey::new(&ECDH_P256, &recipient);
                let dh = agreement::agree_ephemeral(ephemeral, peer, (), |s| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(s);
                    Ok(out)
                })
                .unwrap();
                (public, dh)
            })
        });
        let public =
            fle_shared::RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap();
        let key = backend::default_backend().encryption_key(&public).unwrap();
        group.bench_function("floor_rsa2048_oaep_encrypt_aws-lc-rs", |b| {
            let mut out = [0u8; 256];
            b.iter(|| key.encrypt(&[7u8; 32], &mut out).unwrap())
        });
    }
    for (rsa, reuse, label, private) in [
        (true, false, "rsa-oaep", "keys/demo-01.key.pem"),
        (false, false, "hpke-p256", "keys/demo-02.key.pem"),
        // One encapsulation for up to 1,000 requests (off by default; see the README).
        (true, true, "rsa-oaep_reuse1000", "keys/demo-01.key.pem"),
        (false, true, "hpke-p256_reuse1000", "keys/demo-02.key.pem"),
    ] {
        let edge = EdgeEncryptor::from_toml_str(
            &config_text_v2(rsa, reuse),
            Path::new("/"),
            backend::default_backend(),
        )
        .unwrap();
        check_output_v2(
            label,
            &edge.handle_event_json(&event_text).into_inner(),
            private,
        );
        group.bench_function(format!("fle_native_{label}_aws-lc-rs"), |b| {
            b.iter(|| edge.handle_event_json(&event_text).into_inner())
        });
    }
    group.bench_function("fle_lambda_edge_package_node_v1", |b| {
        b.iter_custom(|n| package_node.run(n))
    });
    drop(package_node);
    for (rsa, reuse, label, private) in [
        (true, false, "rsa-oaep", "keys/demo-01.key.pem"),
        (false, false, "hpke-p256", "keys/demo-02.key.pem"),
        (true, true, "rsa-oaep_reuse1000", "keys/demo-01.key.pem"),
    ] {
        let dir = work.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let (package, _, _) = build_lambda_edge_package(&dir, &config_text_v2(rsa, reuse));
        let mut peer = Peer::spawn(node_peer("lambda_edge.mjs", &package, "1"));
        check_output_v2(label, &peer.ask("check"), private);
        group.bench_function(format!("fle_lambda_edge_package_node_{label}"), |b| {
            b.iter_custom(|n| peer.run(n))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("lambda_edge_cold_start");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("module_load_wasm_instantiate_config", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| {
                    let out = Tool::Node
                        .command()
                        .arg(root().join("benches/peers/lambda_edge.mjs"))
                        .arg(&package)
                        .arg("cold")
                        .output()
                        .unwrap();
                    Duration::from_nanos(
                        String::from_utf8(out.stdout)
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap(),
                    )
                })
                .sum()
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&work);
}

criterion_group!(benches, edge_event);
criterion_main!(benches);
