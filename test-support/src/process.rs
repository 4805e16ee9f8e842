//! Running the programs the tests drive: the `fle` binary, `openssl pkeyutl`, the Lambda@Edge
//! package build and its Node.js driver.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::fixtures::root;
use crate::tools::Tool;

/// A command for the `fle` binary at `fle` (a test passes `env!("CARGO_BIN_EXE_fle")`), run in
/// `dir`. AWS settings come from here only (test credentials, no region, no profile, no
/// instance metadata), so nothing can leave loopback; logging is off unless asked for.
pub fn fle_command(fle: &Path, dir: &Path) -> Command {
    let mut command = Command::new(fle);
    command
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
        .env_remove("FLE_LOG_FORMAT");
    command
}

/// Runs the `fle` binary at `fle` in `dir` with `args` and `stdin` (see [`fle_command`]), with
/// extra environment variables `env` (set after the AWS ones are cleared).
pub fn run_fle(fle: &Path, dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = fle_command(fle, dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", fle.display()));
    // The process may exit (a usage error) before reading its input: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The exit code (-1 for a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `openssl pkeyutl ARGS -inkey KEY` with OAEP, SHA-256 and MGF1-SHA-256 on `input`. Needs
/// [`Tool::OpenSsl`].
pub fn openssl_oaep(args: &[&str], key: &Path, input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::write(&inp, input).unwrap();
    let status = Tool::OpenSsl
        .command()
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

/// Unpacks `zip` into `dest` (Python's zipfile: no `unzip` needed).
pub fn unzip(zip: &Path, dest: &Path) {
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
        ])
        .arg(zip)
        .arg(dest)
        .status()
        .unwrap();
    assert!(status.success(), "unzip of {} failed", zip.display());
}

/// Runs `edge-encryptor/build-lambda-edge.sh CONFIG ZIP` (with `envs` added); panics when it
/// fails, else returns its report (stdout).
pub fn run_build_lambda_edge(config: &Path, zip: &Path, envs: &[(&str, &Path)]) -> String {
    let out = Command::new("bash")
        .arg(root().join("edge-encryptor/build-lambda-edge.sh"))
        .arg(config)
        .arg(zip)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-lambda-edge.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
    let report = run_build_lambda_edge(&config, &zip, &[]);
    let unpacked = dir.join("package");
    unzip(&zip, &unpacked);
    let size = std::fs::metadata(&zip).unwrap().len();
    (unpacked, size, report)
}

/// Runs the unpacked Lambda@Edge package's handler under Node.js ([`Tool::Node`]) on `events`
/// (`tests/support/lambda-edge-driver.mjs`); `host_rsa` picks Node's RSA or the module's own.
/// Returns the backend the package loaded with, one result per event, and the process's peak
/// resident set size in bytes.
pub fn run_lambda_edge(
    package: &Path,
    events: &[serde_json::Value],
    host_rsa: bool,
) -> (String, Vec<serde_json::Value>, u64) {
    let mut child = Tool::Node
        .command()
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
