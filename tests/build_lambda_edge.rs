//! `edge-encryptor/build-lambda-edge.sh` ships what cargo built: the wasm module from the target
//! directory cargo reports (`CARGO_TARGET_DIR` honoured), and the configuration from the
//! `fle-bundle-config` binary, which bundles exactly as `fle bundle-config` does.
//!
//! Cheap on a warm build: the wasm target directory is copied (not rebuilt) and its module
//! marked, so a script that copied from `target/` instead would ship the unmarked module.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// Runs `cargo build --release --locked` with `args` (and `CARGO_TARGET_DIR=target_dir` if
/// given) and returns the one artifact of target `name` cargo reports: its executable, or the
/// file ending in `suffix`.
fn cargo_artifact(args: &[&str], target_dir: Option<&Path>, name: &str, suffix: &str) -> PathBuf {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--locked", "-q"])
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root());
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo build {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != name {
            continue;
        }
        if let Some(exe) = msg["executable"].as_str() {
            found.push(PathBuf::from(exe));
        } else {
            found.extend(
                msg["filenames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| PathBuf::from(f.as_str().unwrap()))
                    .filter(|f| f.to_str().unwrap().ends_with(suffix)),
            );
        }
    }
    assert_eq!(found.len(), 1, "artifacts of {name}: {found:?}");
    found.pop().unwrap()
}

fn wasm_artifact(target_dir: Option<&Path>) -> PathBuf {
    let wasm = ["-p", "fle-edge-wasm", "--target", "wasm32-unknown-unknown"];
    cargo_artifact(&wasm, target_dir, "fle_edge_wasm", ".wasm")
}

/// The `fle-bundle-config` binary, built as the script builds it.
fn bundler() -> PathBuf {
    let args = [
        "-p",
        "fle-edge-encryptor",
        "--no-default-features",
        "--features",
        "rustcrypto",
        "--bin",
        "fle-bundle-config",
    ];
    cargo_artifact(&args, None, "fle-bundle-config", "")
}

/// Runs the script on `config` with `CARGO_TARGET_DIR=target_dir`; returns the unpacked package
/// and the script's report.
fn build_package(dir: &Path, config: &Path, target_dir: &Path) -> (PathBuf, String) {
    let zip = dir.join("fle-edge.zip");
    let report = run_build_lambda_edge(config, &zip, &[("CARGO_TARGET_DIR", target_dir)]);
    let unpacked = dir.join("package");
    unzip(&zip, &unpacked);
    (unpacked, report)
}

/// A wasm custom section named `name` holding `payload` (both under 100 bytes).
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let body_len = 1 + name.len() + payload.len();
    assert!(name.len() < 128 && body_len < 128);
    let mut section = vec![0u8, body_len as u8, name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    section.extend_from_slice(payload);
    section
}

#[test]
fn package_ships_the_wasm_cargo_reports_for_cargo_target_dir() {
    let status = Command::new("bash")
        .args([
            "-c",
            "rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
             || rustup target add wasm32-unknown-unknown",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    // The workspace's own build, warm: where a script that guesses paths would copy from.
    let normal_wasm = wasm_artifact(None);
    let wasm_dir = normal_wasm.parent().unwrap(); // <target>/wasm32-unknown-unknown/release
    assert!(
        wasm_dir.ends_with("wasm32-unknown-unknown/release"),
        "{wasm_dir:?}"
    );
    let normal_target = wasm_dir.parent().unwrap().parent().unwrap();
    let normal_bytes = std::fs::read(&normal_wasm).unwrap();

    // Another target directory, reached through a symlink under another name: host artifacts
    // shared (a symlink), the wasm build copied with its timestamps (so cargo finds it fresh),
    // and its module marked with a custom section (still a valid module).
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let other = tmp.path().join("other-target");
    std::fs::create_dir_all(other.join("wasm32-unknown-unknown")).unwrap();
    std::os::unix::fs::symlink(normal_target.join("release"), other.join("release")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(wasm_dir)
        .arg(other.join("wasm32-unknown-unknown"))
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
    let marker = custom_section("fle-build-test", tmp.path().to_str().unwrap().as_bytes());
    let deps_wasm = other.join("wasm32-unknown-unknown/release/deps/fle_edge_wasm.wasm");
    let mut marked = std::fs::read(&deps_wasm).unwrap();
    assert_eq!(marked, normal_bytes, "the copy is not the warm build");
    marked.extend_from_slice(&marker);
    // A new file, never a write through a hard link into the workspace's build.
    std::fs::remove_file(&deps_wasm).unwrap();
    std::fs::write(&deps_wasm, &marked).unwrap();
    let alias = tmp.path().join("alias");
    std::os::unix::fs::symlink(&other, &alias).unwrap();

    let config = tmp.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap()
        ),
    )
    .unwrap();
    let (package, report) = build_package(tmp.path(), &config, &alias);
    let shipped = std::fs::read(package.join("fle_edge.wasm")).unwrap();

    let reported = wasm_artifact(Some(&alias));
    assert!(reported.starts_with(&alias), "{reported:?}");
    assert_eq!(
        shipped,
        std::fs::read(&reported).unwrap(),
        "the package's wasm is not the artifact cargo reports for CARGO_TARGET_DIR"
    );
    assert!(shipped.starts_with(b"\0asm") && shipped.ends_with(&marker));
    assert_ne!(
        shipped, normal_bytes,
        "shipped the workspace's target/ module"
    );
    assert!(
        report.contains(&format!("fle_edge.wasm {} bytes", shipped.len())),
        "{report}"
    );
    // The configuration comes from the bundling binary: as `fle bundle-config` prints it.
    let fle = run_fle(
        tmp.path(),
        &["bundle-config", "--config", config.to_str().unwrap()],
        "",
    );
    assert!(fle.status.success());
    assert_eq!(std::fs::read(package.join("fle.toml")).unwrap(), fle.stdout);
}

fn run_bundler(bin: &Path, dir: &Path, config: &str) -> Output {
    Command::new(bin)
        .args(["--config", config])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// `fle bundle-config` and `fle-bundle-config` agree, byte for byte, on the tests'
/// configurations, and fail alike on bad ones.
#[test]
fn bundle_config_binary_matches_fle() {
    let bin = bundler();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("conf/keys")).unwrap();
    std::fs::copy(
        fixture("keys/rsa-2048.pub.der"),
        dir.path().join("conf/keys/k.der"),
    )
    .unwrap();
    let pem = read(&fixture("keys/rsa-4096.pub.pem"));
    let configs = [
        // tests/lambda_edge.rs: two keys, a kms_key_id that must not ship, a path selector.
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n\
             [[keys]]\nid = \"02\"\npublic_key = {:?}\nkms_key_id = \"alias/not-shipped\"\n\
             [edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\", {{ path = \"$.card.number\", key = \"02\" }}]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap(),
            fixture("keys/rsa-3072.pub.pem").to_str().unwrap(),
        ),
        // tests/edge_hardening.rs and tests/edge_uris.rs options; a relative DER key path,
        // custom markers, an inline PEM key, another component's table.
        format!(
            "[decrypt]\nconcurrency = 4\n\
             [[keys]]\nid = \"01\"\npublic_key = \"keys/k.der\"\nprefix = \"<k1>\"\nsuffix = \"</k1>\"\n\
             [[keys]]\nid = \"k3\"\npublic_key_pem = \"\"\"\n{pem}\"\"\"\n\
             [edge]\nkey = \"01\"\n\
             fields = [\"fname\", \"first_name\", \"$.card.number\", {{ name = \"ssn\", key = \"k3\" }}]\n\
             names = \"origin\"\nquery = \"encrypt\"\nretired_markers = [\"ENC[\"]\n\
             max_body_bytes = 1000\nmax_encrypted_values = 3\n\
             uris = [\"/signup\", \"/api/*\"]\nexclude_uris = [\"/api/health\"]\n"
        ),
    ];
    for (n, text) in configs.iter().enumerate() {
        let name = format!("conf/fle-{n}.toml");
        std::fs::write(dir.path().join(&name), text).unwrap();
        let absolute = dir.path().join(&name);
        for arg in [name.as_str(), absolute.to_str().unwrap()] {
            let fle = run_fle(dir.path(), &["bundle-config", "--config", arg], "");
            let ours = run_bundler(&bin, dir.path(), arg);
            assert!(
                fle.status.success() && ours.status.success(),
                "{arg}: {}\n{}",
                String::from_utf8_lossy(&fle.stderr),
                String::from_utf8_lossy(&ours.stderr)
            );
            assert_eq!(
                String::from_utf8(ours.stdout.clone()).unwrap(),
                String::from_utf8(fle.stdout).unwrap(),
                "{arg}"
            );
            let bundled = String::from_utf8(ours.stdout).unwrap();
            assert!(
                bundled.starts_with(&format!("# Bundled by `fle bundle-config` from {arg}:"))
                    && bundled.contains("BEGIN PUBLIC KEY")
                    && !bundled.contains("public_key =")
                    && !bundled.contains("kms_key_id")
                    && !bundled.contains("[decrypt]"),
                "{bundled}"
            );
            // A bundle bundles to itself, apart from the comment naming its source.
            let again = dir.path().join(format!("bundled-{n}.toml"));
            std::fs::write(&again, &bundled).unwrap();
            let rebundled = run_bundler(&bin, dir.path(), again.to_str().unwrap());
            assert!(rebundled.status.success());
            let rest = |t: &str| t.split_once('\n').unwrap().1.to_owned();
            assert_eq!(
                rest(&String::from_utf8(rebundled.stdout).unwrap()),
                rest(&bundled)
            );
        }
    }

    // Bad configurations: both refuse with exit status 2 and the same message.
    std::fs::write(
        dir.path().join("unknown-key.toml"),
        "[[keys]]\nid = \"01\"\npublic_key = \"conf/keys/k.der\"\n[edge]\nfields = [{ name = \"ssn\", key = \"09\" }]\n",
    )
    .unwrap();
    for arg in ["unknown-key.toml", "missing.toml"] {
        let fle = run_fle(dir.path(), &["bundle-config", "--config", arg], "");
        let ours = run_bundler(&bin, dir.path(), arg);
        assert_eq!((fle.status.code(), ours.status.code()), (Some(2), Some(2)));
        assert!(fle.stdout.is_empty() && ours.stdout.is_empty());
        let fle_err = String::from_utf8(fle.stderr).unwrap();
        let our_err = String::from_utf8(ours.stderr).unwrap();
        assert_eq!(
            fle_err.strip_prefix("fle: "),
            our_err.strip_prefix("fle-bundle-config: "),
            "{fle_err}{our_err}"
        );
    }
}
