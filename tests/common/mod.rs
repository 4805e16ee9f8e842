//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fle_shared::{KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey};

/// Key sizes every test covers.
pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// Runs the `fle` binary in `dir` with `stdin`. AWS settings come from here only (test
/// credentials, no region, no profile, no instance metadata), so nothing can leave loopback.
pub fn run_fle(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    run_fle_with(dir, args, stdin, &[])
}

/// [`run_fle`] with extra environment variables (set after the AWS ones are cleared).
pub fn run_fle_with(
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fle"))
        .args(args)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("RUST_LOG")
        .env_remove("FLE_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit (a usage error) before reading its input: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Paths of the test key pair of `bits` bits (private PKCS#8 PEM, public SPKI PEM).
pub fn key_paths(bits: usize) -> (PathBuf, PathBuf) {
    (
        fixture(&format!("keys/rsa-{bits}.key.pem")),
        fixture(&format!("keys/rsa-{bits}.pub.pem")),
    )
}

/// The test key pair of `bits` bits.
pub fn key_pair(bits: usize) -> (OaepPrivateKey, RsaPublicKey) {
    let (private, public) = key_paths(bits);
    let private = OaepPrivateKey::from_pem(&read(&private)).unwrap();
    let public = RsaPublicKey::from_pem(&read(&public)).unwrap();
    assert_eq!(private.public_key(), &public);
    (private, public)
}

/// A one-key keyring (id `01`) for a public key.
pub fn keyring(public: RsaPublicKey) -> Keyring {
    Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap()
}

/// Reads a text file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plaintexts that exercise the edges: empty, one byte, UTF-8, binary, JSON-hostile, the maximum.
pub fn plaintexts(max: usize) -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"x".to_vec(),
        "Jo \"JJ\" O'Neil \\ é ✓ 🦀".as_bytes().to_vec(),
        (0..=255u8).take(max).collect(),
        b"123-45-6789".to_vec(),
        vec![b'A'; max],
    ]
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The demo private key (`keys/demo-01.key.pem`).
pub fn demo_private_key() -> OaepPrivateKey {
    OaepPrivateKey::from_pem(&read(&root().join("keys/demo-01.key.pem"))).unwrap()
}

/// Decrypts every envelope of `keyring` in `text`, each with the private key its marker names
/// (`keys`: key id → private key). Panics on a malformed envelope or an unknown key.
pub fn decrypt_envelopes(
    keyring: &Keyring,
    keys: &[(&str, &OaepPrivateKey)],
    text: &str,
) -> Vec<(String, Vec<u8>)> {
    keyring
        .scanner()
        .scan_str(text)
        .map(|item| match item {
            fle_shared::ScanItem::Envelope(f) => {
                let (_, key) = keys
                    .iter()
                    .find(|(id, _)| *id == f.key.as_str())
                    .unwrap_or_else(|| panic!("no private key for {}", f.key));
                (
                    f.key.to_string(),
                    key.decrypt_envelope(&f.envelope)
                        .unwrap()
                        .as_bytes()
                        .to_vec(),
                )
            }
            fle_shared::ScanItem::Malformed(m) => panic!("malformed envelope {m:?}"),
        })
        .collect()
}

/// Decrypts every demo-key envelope in `text` to text.
pub fn demo_decrypt(text: &str) -> Vec<String> {
    let private = demo_private_key();
    let ring = keyring(private.public_key().clone());
    decrypt_envelopes(&ring, &[("01", &private)], text)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect()
}

/// `openssl pkeyutl ARGS -inkey KEY` with OAEP, SHA-256 and MGF1-SHA-256 on `input`.
pub fn openssl_oaep(args: &[&str], key: &Path, input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&inp, input).unwrap();
    let status = std::process::Command::new("openssl")
        .arg("pkeyutl")
        .args(args)
        .arg("-inkey")
        .arg(key)
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ])
        .arg("-in")
        .arg(&inp)
        .arg("-out")
        .arg(&out)
        .status()
        .expect("the openssl command line is required (apt-get install openssl)");
    assert!(status.success(), "openssl pkeyutl {args:?} failed");
    std::fs::read(out).unwrap()
}

/// Builds the Lambda@Edge package for `config_text` with `edge-encryptor/build-lambda-edge.sh`
/// in `dir` and unzips it. Returns the unpacked folder, the zip's size and the script's report.
pub fn build_lambda_edge_package(dir: &Path, config_text: &str) -> (PathBuf, u64, String) {
    // One build at a time: concurrent builds race on `rustup target add` and on cargo's lock.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let config = dir.join("fle.toml");
    std::fs::write(&config, config_text).unwrap();
    let zip = dir.join("fle-edge.zip");
    let out = std::process::Command::new("bash")
        .arg(root().join("edge-encryptor/build-lambda-edge.sh"))
        .arg(&config)
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-lambda-edge.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unpacked = dir.join("package");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(&zip)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success(), "unzip failed");
    let size = std::fs::metadata(&zip).unwrap().len();
    (unpacked, size, String::from_utf8(out.stdout).unwrap())
}

/// Runs the unpacked Lambda@Edge package's handler under `node` on `events`
/// (`tests/support/lambda-edge-driver.mjs`); `host_rsa` picks Node's RSA or the module's own.
/// Returns the backend the package loaded with, one result per event, and the process's peak
/// resident set size in bytes.
pub fn run_lambda_edge(
    package: &Path,
    events: &[serde_json::Value],
    host_rsa: bool,
) -> (String, Vec<serde_json::Value>, u64) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("node")
        .arg(root().join("tests/support/lambda-edge-driver.mjs"))
        .arg(package)
        .env("FLE_HOST_RSA", if host_rsa { "1" } else { "0" })
        .env("FLE_DRIVER_REPORT_RSS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (Node.js 20 or later) is required");
    let mut stdin = child.stdin.take().unwrap();
    for e in events {
        writeln!(stdin, "{e}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let mut lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let backend = lines.remove(0)["backend"].as_str().unwrap().to_owned();
    let rss = lines.pop().unwrap()["max_rss_kib"].as_u64().unwrap() * 1024;
    (backend, lines, rss)
}
