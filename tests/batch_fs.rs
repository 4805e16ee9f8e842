//! The file-system threat model of batch jobs, on the command line: someone who can write into
//! a job's directories plants links, other jobs' files and forged names; inputs change while a
//! job reads them; the disk fills up. Each case is one the engine once got wrong: plaintext
//! written through a planted link, outputs sent outside --out, records appended during an
//! in-place job lost, links silently skipped with exit 0, a resumed job accepting another key
//! under the same id, a plaintext temporary file left behind on a write error, report lines
//! forged by a file name, a `--kms-rps` of 0 meaning 1/s, and CSV formulas written as they are.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use fle_edge_encryptor::{BodyKind, EdgeEncryptor};
use fle_shared::backend;
use serde_json::Value;

const DEMO_KEY: &str = "keys/demo-01.key.pem";
const SECRET: &str = "123-45-6789";

fn edge() -> EdgeEncryptor {
    let toml = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
                [edge]\nkey = \"01\"\nfields = [\"ssn\", \"name\"]\n";
    EdgeEncryptor::from_toml_str(toml, root(), backend::default_backend()).unwrap()
}

/// `n` JSON Lines records, each with an encrypted SSN.
fn jsonl(edge: &EdgeEncryptor, n: usize) -> String {
    (0..n)
        .map(|i| {
            let doc = format!(r#"{{"id":{i},"ssn":"{SECRET}"}}"#);
            format!("{}\n", edge.encrypt_body(BodyKind::Json, &doc).unwrap().0)
        })
        .collect()
}

/// A temporary directory holding `enc/a.jsonl` (`records` edge-encrypted records), and the
/// path `out` beside `enc` (not created).
fn enc_tree(edge: &EdgeEncryptor, records: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (enc, out) = (t.path().join("enc"), t.path().join("out"));
    fs::create_dir_all(&enc).unwrap();
    fs::write(enc.join("a.jsonl"), jsonl(edge, records)).unwrap();
    (t, enc, out)
}

/// One envelope of `value`.
fn envelope(edge: &EdgeEncryptor, value: &str) -> String {
    let doc = serde_json::json!({ "name": value }).to_string();
    let v: Value =
        serde_json::from_str(&edge.encrypt_body(BodyKind::Json, &doc).unwrap().0).unwrap();
    v["name"].as_str().unwrap().to_owned()
}

fn fle(args: &[&str]) -> Output {
    run_fle(root(), args, "")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every entry under `dir` (links not followed), relative, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn planted_links_in_the_output_directory_are_never_written_through() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let (enc, out, elsewhere) = (
        t.path().join("enc"),
        t.path().join("out"),
        t.path().join("elsewhere"),
    );
    fs::create_dir_all(enc.join("sub")).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(enc.join("a.jsonl"), jsonl(&edge, 3)).unwrap();
    fs::write(enc.join("sub/b.jsonl"), jsonl(&edge, 2)).unwrap();
    // The attacker's file, world-readable, and links to it and to their directory.
    let loot = elsewhere.join("loot");
    fs::write(&loot, "").unwrap();
    fs::set_permissions(&loot, fs::Permissions::from_mode(0o644)).unwrap();
    symlink(&loot, out.join("a.jsonl.fle-partial")).unwrap();
    symlink(&loot, out.join(".fle-manifest.json.tmp")).unwrap();
    symlink(&elsewhere, out.join("sub")).unwrap();

    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
    ]);
    let err = stderr(&run);
    // a.jsonl lands; sub/b.jsonl is refused (its directory is a link); exit 3.
    assert_eq!(code(&run), 3, "{err}");
    assert!(
        err.contains("sub") && err.contains("symbolic link") && err.contains("refused"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(&loot).unwrap(),
        "",
        "written through a link"
    );
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        1,
        "outputs left --out"
    );
    let a = fs::read_to_string(out.join("a.jsonl")).unwrap();
    assert_eq!(a.matches(SECRET).count(), 3);
    assert_eq!(mode(&out.join("a.jsonl")), 0o600);
    assert!(!out.join("a.jsonl.fle-partial").exists());
    // Directories fle creates are owner-only too.
    fs::remove_file(out.join("sub")).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
        "--resume",
    ]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(mode(&out.join("sub")), 0o700);
    assert_eq!(mode(&out.join("sub/b.jsonl")), 0o600);
}

#[test]
fn in_place_refuses_links_and_keeps_records_appended_while_it_runs() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real.jsonl");
    let encrypted = jsonl(&edge, 4);
    fs::write(&real, &encrypted).unwrap();
    let link = t.path().join("link.jsonl");
    symlink(&real, &link).unwrap();
    let run = fle(&["decrypt", "--private-key", DEMO_KEY, s(&link), "--in-place"]);
    assert_eq!(code(&run), 2, "{}", stderr(&run));
    assert!(stderr(&run).contains("symbolic link"), "{}", stderr(&run));
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs::read_to_string(&real).unwrap(), encrypted);

    // One KMS call a second with a burst of one: four envelopes take about three seconds, and
    // a record is appended after half a second. The job must not replace the input.
    let child = fle_command(root())
        .args([
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&real),
            "--in-place",
            "--kms-rps",
            "1",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let appended = "{\"id\":99,\"note\":\"appended while the job ran\"}\n";
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(&real).unwrap();
        f.write_all(appended.as_bytes()).unwrap();
    }
    let run = child.wait_with_output().unwrap();
    let err = stderr(&run);
    assert_ne!(code(&run), 0, "{err}");
    assert!(err.contains("changed while the job read it"), "{err}");
    assert_eq!(
        fs::read_to_string(&real).unwrap(),
        format!("{encrypted}{appended}")
    );
    assert_eq!(
        entries(t.path()),
        [
            PathBuf::from(".fle-manifest.json"),
            "link.jsonl".into(),
            "real.jsonl".into()
        ]
    );
}

#[test]
fn resume_in_the_committing_state_checks_the_input_is_unchanged() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("data");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("a.jsonl"), jsonl(&edge, 2)).unwrap();
    // b.jsonl fails (a damaged envelope under --on-error fail): the manifest stays.
    let mut damaged = jsonl(&edge, 1);
    let at = damaged.find("#01#").unwrap() + 10;
    damaged.replace_range(at..at + 1, "!");
    fs::write(dir.join("b.jsonl"), &damaged).unwrap();
    let args = ["decrypt", "--private-key", DEMO_KEY, s(&dir), "--in-place"];
    let run = fle(&args);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let manifest_path = dir.join(".fle-manifest.json");
    let mut manifest: Value = serde_json::from_str(&read(&manifest_path)).unwrap();
    let a_name = dir.join("a.jsonl").display().to_string();
    assert_eq!(manifest["inputs"][&a_name]["state"], "done");

    // As if the job had died between "committing" and the rename, then the input changed.
    manifest["inputs"][&a_name]["state"] = "committing".into();
    fs::write(&manifest_path, manifest.to_string()).unwrap();
    let partial = dir.join("a.jsonl.fle-partial");
    fs::write(&partial, "stale output").unwrap();
    fs::set_permissions(&partial, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::read_to_string(dir.join("a.jsonl")).unwrap();
    let changed = format!("{before}{{\"late\":1}}\n");
    fs::write(dir.join("a.jsonl"), &changed).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let run = fle(&resume);
    let err = stderr(&run);
    // Both inputs fail (b is still damaged): no input could be processed, exit 2.
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("changed while the job read it"), "{err}");
    assert_eq!(fs::read_to_string(dir.join("a.jsonl")).unwrap(), changed);
    assert!(!partial.exists());
}

#[test]
fn walks_report_every_skipped_entry_and_exit_3() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let (enc, other) = (t.path().join("enc"), t.path().join("other"));
    fs::create_dir_all(&enc).unwrap();
    fs::create_dir_all(&other).unwrap();
    fs::write(enc.join("a.jsonl"), jsonl(&edge, 1)).unwrap();
    fs::write(other.join("hidden.jsonl"), jsonl(&edge, 1)).unwrap();
    symlink(other.join("hidden.jsonl"), enc.join("file-link.jsonl")).unwrap();
    symlink(&other, enc.join("dir-link")).unwrap();
    fs::write(enc.join("old.jsonl.fle-partial"), jsonl(&edge, 1)).unwrap();
    fs::write(enc.join(".fle-manifest.json.bak"), "{}").unwrap();
    let fifo = enc.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let run = fle(&["verify", "--private-key", DEMO_KEY, s(&enc), "--json"]);
    let err = stderr(&run);
    assert_eq!(code(&run), 3, "{err}");
    let lines: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut skipped: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["type"] == "skipped")
        .map(|l| {
            let p = PathBuf::from(l["path"].as_str().unwrap());
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            (".fle-manifest.json.bak".into(), "manifest".into()),
            ("dir-link".into(), "symlink".into()),
            ("file-link.jsonl".into(), "symlink".into()),
            ("old.jsonl.fle-partial".into(), "partial_output".into()),
            ("pipe".into(), "not_regular".into()),
        ]
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["entries_skipped"], 5);
    assert_eq!(summary["inputs_done"], 1);
    for name in ["dir-link", "file-link.jsonl", "pipe"] {
        assert!(
            err.contains(&format!("skipped {}", s(&enc.join(name)))),
            "{err}"
        );
    }
    // The same tree without the odd entries: exit 0.
    for name in [
        "file-link.jsonl",
        "dir-link",
        "old.jsonl.fle-partial",
        ".fle-manifest.json.bak",
        "pipe",
    ] {
        fs::remove_file(enc.join(name)).unwrap();
    }
    let run = fle(&["verify", "--private-key", DEMO_KEY, s(&enc)]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
}

#[test]
fn resume_refuses_another_key_under_the_same_id() {
    let edge = edge();
    let (t, enc, out) = enc_tree(&edge, 1);
    let mut damaged = jsonl(&edge, 1);
    let at = damaged.find("#01#").unwrap() + 10;
    damaged.replace_range(at..at + 1, "!");
    fs::write(enc.join("b.jsonl"), &damaged).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
    ]);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    assert!(out.join(".fle-manifest.json").exists());
    // Another key file with the same key id: another job, even though the options match.
    let other = key_paths(3072).0;
    let copy = t.path().join("demo-01.key.pem");
    fs::copy(other, &copy).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        s(&copy),
        s(&enc),
        "--out",
        s(&out),
        "--resume",
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("belongs to another job"), "{err}");
    // The same key material from another path is the same job.
    fs::copy(root().join(DEMO_KEY), &copy).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        s(&copy),
        s(&enc),
        "--out",
        s(&out),
        "--resume",
    ]);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    assert!(stderr(&run).contains("1 already done"), "{}", stderr(&run));
}

#[test]
fn a_write_error_leaves_no_plaintext_behind() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let (enc, out) = (t.path().join("enc"), t.path().join("out"));
    fs::create_dir_all(&enc).unwrap();
    fs::create_dir_all(&out).unwrap();
    // 600 records: about 18 KB of plaintext, written at the final flush.
    fs::write(enc.join("a.jsonl"), jsonl(&edge, 600)).unwrap();
    // Files may not grow past 8 KiB (SIGXFSZ ignored, so write fails with EFBIG), as on a
    // full disk.
    let script = format!(
        "trap '' XFSZ; ulimit -f 8; exec '{}' decrypt --private-key {DEMO_KEY} '{}' --out '{}'",
        env!("CARGO_BIN_EXE_fle"),
        s(&enc),
        s(&out)
    );
    let run = Command::new("bash")
        .args(["-c", &script])
        .current_dir(root())
        .output()
        .unwrap();
    let err = stderr(&run);
    assert_ne!(code(&run), 0, "{err}");
    assert!(err.contains("a.jsonl"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(entries(&out), [PathBuf::from(".fle-manifest.json")]);
    let manifest: Value = serde_json::from_str(&read(&out.join(".fle-manifest.json"))).unwrap();
    let name = enc.join("a.jsonl").display().to_string();
    assert_eq!(manifest["inputs"][&name]["state"], "failed");
}

#[test]
fn report_lines_cannot_be_forged_by_names_and_json_is_json_lines() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let enc = t.path().join("enc");
    fs::create_dir_all(&enc).unwrap();
    let mut damaged = jsonl(&edge, 1);
    let at = damaged.find("#01#").unwrap() + 10;
    damaged.replace_range(at..at + 1, "!");
    let forged = "x.jsonl\nfle verify: everything decrypts\u{202e}.jsonl";
    fs::write(enc.join(forged), &damaged).unwrap();
    fs::write(enc.join("good.jsonl"), jsonl(&edge, 2)).unwrap();

    let run = fle(&["verify", "--private-key", DEMO_KEY, s(&enc)]);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let report = String::from_utf8(run.stdout).unwrap();
    assert_eq!(report.lines().count(), 1, "{report}");
    assert!(
        report
            .contains("x.jsonl\\nfle verify: everything decrypts\\u{202e}.jsonl: envelope at byte"),
        "{report}"
    );

    let run = fle(&["verify", "--private-key", DEMO_KEY, s(&enc), "--json"]);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let lines: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "problem");
    assert!(lines[0]["input"].as_str().unwrap().ends_with(forged));
    assert_eq!(lines[0]["key"], "01");
    assert!(lines[0]["offset"].as_u64().is_some());
    assert_eq!(lines[1]["type"], "summary");
    assert_eq!(lines[1]["problems"], 1);
    assert_eq!(lines[1]["decrypted"], 2);
}

#[test]
fn kms_rate_and_concurrency_must_be_positive() {
    for bad in ["0", "-1", "NaN", "inf", "-0", "x"] {
        let flag = format!("--kms-rps={bad}");
        let run = fle(&["verify", "--private-key", DEMO_KEY, &flag]);
        assert_eq!(code(&run), 2, "--kms-rps {bad}: {}", stderr(&run));
        assert!(stderr(&run).contains("--kms-rps"), "{}", stderr(&run));
    }
    let run = fle(&["verify", "--private-key", DEMO_KEY, "--concurrency", "0"]);
    assert_eq!(code(&run), 2, "{}", stderr(&run));
    let run = run_fle(
        root(),
        &["verify", "--private-key", DEMO_KEY, "--kms-rps", "0.5"],
        "{}",
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
}

#[test]
fn csv_formulas_are_neutralised_on_request() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let cells = [
        "=HYPERLINK(\"http://x\",\"y\")",
        "+1",
        "-5",
        "@SUM(A1)",
        "plain",
    ];
    let row: Vec<String> = cells.iter().map(|c| envelope(&edge, c)).collect();
    let input = t.path().join("a.csv");
    fs::write(&input, format!("a,b,c,d,e\n{}\n", row.join(","))).unwrap();
    let run = fle(&["decrypt", "--private-key", DEMO_KEY, s(&input)]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "a,b,c,d,e\n\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",+1,-5,@SUM(A1),plain\n"
    );
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&input),
        "--neutralize-formulas",
    ]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        "a,b,c,d,e\n\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",\"'+1\",\"'-5\",\"'@SUM(A1)\",plain\n"
    );
}

#[test]
fn planted_manifests_and_setuid_bits_are_refused() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    // In place keeps the input's permission bits, never setuid/setgid/sticky.
    let input = t.path().join("x.jsonl");
    fs::write(&input, jsonl(&edge, 1)).unwrap();
    fs::set_permissions(&input, fs::Permissions::from_mode(0o6755)).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&input),
        "--in-place",
    ]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(
        fs::metadata(&input).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert!(read(&input).contains(SECRET));

    // A manifest this user did not write as the job writes it is not trusted: a planted one
    // could mark inputs done (the job would exit 0 having processed nothing).
    let (enc, out) = (t.path().join("enc"), t.path().join("out"));
    fs::create_dir_all(&enc).unwrap();
    fs::create_dir_all(&out).unwrap();
    fs::write(enc.join("a.jsonl"), jsonl(&edge, 1)).unwrap();
    let forged = out.join(".fle-manifest.json");
    fs::write(&forged, r#"{"version":2,"job":"x","inputs":{}}"#).unwrap();
    fs::set_permissions(&forged, fs::Permissions::from_mode(0o644)).unwrap();
    let args = [
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
        "--resume",
    ];
    let run = fle(&args);
    assert_eq!(code(&run), 2, "{}", stderr(&run));
    assert!(
        stderr(&run).contains("accessible to other users"),
        "{}",
        stderr(&run)
    );
    if fle_batch::fsafe::effective_uid() == 0 {
        fs::set_permissions(&forged, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&forged, Some(1000), Some(1000)).unwrap();
        let run = fle(&args);
        assert_eq!(code(&run), 2, "{}", stderr(&run));
        assert!(
            stderr(&run).contains("owned by another user"),
            "{}",
            stderr(&run)
        );
    }
    assert!(!out.join("a.jsonl").exists());
}

/// Waits for `child` at most `secs` seconds (killed then, and the test fails).
fn wait_for(mut child: std::process::Child, secs: u64, what: &str) -> Output {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Polls until `path` exists (at most 30 s).
fn wait_until_exists(path: &Path) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while fs::symlink_metadata(path).is_err() {
        assert!(
            std::time::Instant::now() < until,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn walks_never_follow_a_subdirectory_swapped_for_a_link_after_the_walk() {
    // In place, and with --out (inputs read through the walk's handles): while a.jsonl is
    // processed (slowly: one KMS call a second), sub/ is replaced by a link to a directory
    // outside the tree. The job must neither replace nor read the file out there.
    let edge = edge();
    for in_place in [true, false] {
        let t = tempfile::tempdir().unwrap();
        let (dir, out, elsewhere) = (
            t.path().join("data"),
            t.path().join("out"),
            t.path().join("elsewhere"),
        );
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(dir.join("a.jsonl"), jsonl(&edge, 4)).unwrap();
        fs::write(dir.join("sub/b.jsonl"), jsonl(&edge, 1)).unwrap();
        let outside = jsonl(&edge, 1);
        fs::write(elsewhere.join("b.jsonl"), &outside).unwrap();
        let mut args = vec![
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&dir),
            "--kms-rps",
            "1",
            "--concurrency",
            "1",
        ];
        if in_place {
            args.push("--in-place");
        } else {
            args.extend(["--out", s(&out)]);
        }
        let child = fle_command(root())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let first_tmp = if in_place { &dir } else { &out }.join("a.jsonl.fle-partial");
        wait_until_exists(&first_tmp);
        fs::rename(dir.join("sub"), dir.join("sub.orig")).unwrap();
        symlink(&elsewhere, dir.join("sub")).unwrap();
        let run = wait_for(child, 60, "the job");
        let err = stderr(&run);
        assert_eq!(code(&run), 3, "{err}");
        assert!(
            err.contains("b.jsonl") && err.contains("symbolic link"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(elsewhere.join("b.jsonl")).unwrap(),
            outside
        );
        assert_eq!(
            fs::read_dir(&elsewhere).unwrap().count(),
            1,
            "a file written outside the tree"
        );
        if in_place {
            assert!(read(&dir.join("a.jsonl")).contains(SECRET));
        } else {
            assert!(read(&out.join("a.jsonl")).contains(SECRET));
            assert!(!out.join("sub/b.jsonl").exists(), "read through the link");
        }
    }
}

#[test]
fn a_failed_input_leaves_no_temporary_file_even_before_its_first_record() {
    // The manifest cannot be written (its directory does not exist): the input fails right
    // after its temporary output was created, which must not stay behind.
    let edge = edge();
    let (t, enc, out) = enc_tree(&edge, 2);
    let manifest = t.path().join("missing/m.json");
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
        "--manifest",
        s(&manifest),
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("manifest"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(entries(&out), Vec::<PathBuf>::new());
}

#[test]
fn named_fifos_and_devices_are_refused_without_hanging() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("pipe.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = t.path().join("out");
    for args in [vec!["--out", s(&out)], vec!["--in-place"]] {
        for input in [s(&fifo), "/dev/null"] {
            let child = fle_command(root())
                .args(["decrypt", "--private-key", DEMO_KEY, input])
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let run = wait_for(child, 30, "a job on a FIFO");
            let err = stderr(&run);
            assert_eq!(code(&run), 2, "{input} {args:?}: {err}");
            assert!(err.contains("not a regular file"), "{err}");
        }
    }
    assert!(!out.exists() || entries(&out).is_empty());
    // Standard input still streams.
    let run = run_fle(
        root(),
        &["decrypt", "--private-key", DEMO_KEY, "--format", "jsonl"],
        &jsonl(&edge, 1),
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert!(String::from_utf8(run.stdout).unwrap().contains(SECRET));
}

#[test]
fn resume_refuses_finished_inputs_changed_since() {
    let edge = edge();
    for in_place in [false, true] {
        let (_t, enc, out) = enc_tree(&edge, 1);
        // b.jsonl fails (a damaged envelope under --on-error fail): the manifest stays.
        let mut damaged = jsonl(&edge, 1);
        let at = damaged.find("#01#").unwrap() + 10;
        damaged.replace_range(at..at + 1, "!");
        fs::write(enc.join("b.jsonl"), &damaged).unwrap();
        let mut args = vec!["decrypt", "--private-key", DEMO_KEY, s(&enc)];
        if in_place {
            args.push("--in-place");
        } else {
            args.extend(["--out", s(&out)]);
        }
        let run = fle(&args);
        assert_eq!(code(&run), 3, "{}", stderr(&run));
        args.push("--resume");
        // Unchanged: skipped.
        let run = fle(&args);
        let err = stderr(&run);
        assert_eq!(code(&run), 3, "{err}");
        assert!(err.contains("1 already done"), "{err}");
        // Changed since it was finished: refused, not skipped and not processed again.
        let a = enc.join("a.jsonl");
        let output = if in_place {
            a.clone()
        } else {
            out.join("a.jsonl")
        };
        let before = read(&output);
        let changed = format!("{}{}", read(&a), jsonl(&edge, 1));
        fs::write(&a, &changed).unwrap();
        let written = read(&output);
        let run = fle(&args);
        let err = stderr(&run);
        assert_ne!(code(&run), 0, "{err}");
        assert!(
            err.contains("a.jsonl changed since an earlier run of this job finished it"),
            "{err}"
        );
        assert!(!err.contains("1 already done"), "{err}");
        assert_eq!(read(&output), written);
        if !in_place {
            assert_eq!(read(&output), before);
        }
        assert_eq!(read(&a), changed);
    }
}

#[test]
fn inputs_that_are_the_jobs_own_files_are_refused() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let (enc, out) = (t.path().join("enc"), t.path().join("out"));
    fs::create_dir_all(&enc).unwrap();
    let encrypted = jsonl(&edge, 1);
    fs::write(enc.join("a.jsonl"), &encrypted).unwrap();
    // In place, one file named twice would be processed twice.
    let twice = t.path().join("enc/../enc/a.jsonl");
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc.join("a.jsonl")),
        s(&twice),
        "--in-place",
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("the same file as the input"), "{err}");
    assert_eq!(read(&enc.join("a.jsonl")), encrypted);
    assert_eq!(entries(&enc), [PathBuf::from("a.jsonl")], "nothing written");

    // An input that is its own output under --out.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("x.jsonl"), &encrypted).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&out.join("x.jsonl")),
        "--out",
        s(&out),
        "--overwrite",
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("is the output of"), "{err}");
    assert_eq!(read(&out.join("x.jsonl")), encrypted);
    fs::remove_file(out.join("x.jsonl")).unwrap();

    // An input that is a temporary output of the same job.
    fs::write(out.join("a.jsonl.fle-partial"), "stale").unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc.join("a.jsonl")),
        s(&out.join("a.jsonl.fle-partial")),
        "--out",
        s(&out),
        "--overwrite",
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("a temporary output of this job"), "{err}");
    assert_eq!(entries(&out), [PathBuf::from("a.jsonl.fle-partial")]);
    fs::remove_file(out.join("a.jsonl.fle-partial")).unwrap();

    // An input that is the job's manifest.
    let mut damaged = jsonl(&edge, 1);
    let at = damaged.find("#01#").unwrap() + 10;
    damaged.replace_range(at..at + 1, "!");
    fs::write(enc.join("b.jsonl"), &damaged).unwrap();
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc.join("b.jsonl")),
        "--out",
        s(&out),
    ]);
    assert_eq!(code(&run), 1, "{}", stderr(&run));
    let manifest = out.join(".fle-manifest.json");
    assert!(manifest.exists());
    let run = fle(&[
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc.join("b.jsonl")),
        s(&manifest),
        "--out",
        s(&out),
        "--resume",
    ]);
    let err = stderr(&run);
    assert_eq!(code(&run), 2, "{err}");
    assert!(err.contains("is this job's manifest"), "{err}");
}

#[test]
fn unreadable_directories_are_reported_as_skipped_and_exit_3() {
    let edge = edge();
    let t = tempfile::tempdir().unwrap();
    let enc = t.path().join("enc");
    fs::create_dir_all(enc.join("locked")).unwrap();
    fs::write(enc.join("a.jsonl"), jsonl(&edge, 1)).unwrap();
    fs::write(enc.join("locked/b.jsonl"), jsonl(&edge, 1)).unwrap();
    fs::write(enc.join("z.jsonl"), jsonl(&edge, 1)).unwrap();
    fs::set_permissions(enc.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: run the job without the capabilities that allow it.
    let mut command = if fle_batch::fsafe::effective_uid() == 0 {
        let mut c = Command::new("setpriv");
        c.args([
            "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search",
            "--",
        ])
        .arg(fle_bin())
        .current_dir(root());
        c
    } else {
        fle_command(root())
    };
    let run = command
        .args(["verify", "--private-key", DEMO_KEY, s(&enc), "--json"])
        .output()
        .unwrap();
    fs::set_permissions(enc.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
    let err = stderr(&run);
    assert_eq!(code(&run), 3, "{err}");
    let lines: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let skipped: Vec<&Value> = lines.iter().filter(|l| l["type"] == "skipped").collect();
    assert_eq!(skipped.len(), 1, "{lines:?}");
    assert_eq!(skipped[0]["reason"], "unreadable");
    assert!(skipped[0]["path"].as_str().unwrap().ends_with("locked"));
    assert!(
        skipped[0]["error"].as_str().unwrap().contains("denied"),
        "{lines:?}"
    );
    let summary = lines.last().unwrap();
    assert_eq!(summary["entries_skipped"], 1);
    assert_eq!(summary["inputs_done"], 2);
    assert!(err.contains("skipped") && err.contains("locked"), "{err}");
}
