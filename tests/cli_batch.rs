//! Batch jobs on the command line: `fle decrypt|reencrypt|verify` over directory trees in
//! every format (JSON Lines, CSV, text, JSON), outputs mirrored under --out or in place,
//! include/exclude globs, refusal to overwrite, per-file failure with the others landing, the
//! JSON summary, verify's problem list without plaintext, and a job killed with SIGKILL then
//! resumed giving exactly the output of an uninterrupted run. Keys are local (the demo key and
//! the 3072-bit test key), so no KMS is involved; KMS runs are in batch_localstack.rs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fle_edge_encryptor::{BodyKind, EdgeEncryptor};
use fle_shared::backend;
use serde_json::Value;

const DEMO_KEY: &str = "keys/demo-01.key.pem";

/// The edge, encrypting name, ssn, note and age (a number: tagged) with the demo key.
fn edge() -> EdgeEncryptor {
    let toml = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
                [edge]\nkey = \"01\"\nfields = [\"name\", \"ssn\", \"note\", \"age\"]\n";
    EdgeEncryptor::from_toml_str(toml, root(), backend::default_backend()).unwrap()
}

fn encrypt_json(edge: &EdgeEncryptor, doc: &str) -> String {
    edge.encrypt_body(BodyKind::Json, doc).unwrap().0
}

/// One envelope of `value` (a string field), as the edge writes it.
fn envelope(edge: &EdgeEncryptor, value: &str) -> String {
    let doc = encrypt_json(edge, &serde_json::json!({ "name": value }).to_string());
    let v: Value = serde_json::from_str(&doc).unwrap();
    v["name"].as_str().unwrap().to_owned()
}

/// Plaintext JSON Lines: `n` records with hostile strings and a number.
fn plain_jsonl(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({
                    "id": i,
                    "name": format!("Jo \"JJ\" O'Neil \\ é ✓ {i}"),
                    "ssn": format!("123-45-{i:04}"),
                    "age": 20 + i,
                    "plan": "gold",
                })
            )
        })
        .collect()
}

fn encrypt_jsonl(edge: &EdgeEncryptor, plain: &str) -> String {
    plain
        .split_inclusive('\n')
        .map(|line| {
            let body = line.trim_end_matches('\n');
            if body.is_empty() {
                return "\n".to_owned();
            }
            format!("{}\n", encrypt_json(edge, body))
        })
        .collect()
}

/// A tree of encrypted inputs and the plaintext each must decrypt to, by relative path.
struct Tree {
    dir: tempfile::TempDir,
    expected: Vec<(PathBuf, Vec<u8>)>,
}

impl Tree {
    fn enc(&self) -> PathBuf {
        self.dir.path().join("enc")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn tree() -> Tree {
    let edge = edge();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    fs::create_dir_all(enc.join("sub/deeper")).unwrap();
    let mut expected = Vec::new();
    let mut put = |rel: &str, encrypted: Vec<u8>, plain: Vec<u8>| {
        fs::write(enc.join(rel), encrypted).unwrap();
        expected.push((PathBuf::from(rel), plain));
    };

    // JSON Lines with an empty line, a marker-free line and CRLF on one line.
    let mut plain = plain_jsonl(12);
    plain.push_str("\n{\"no\": \"secrets\"}\n");
    let mut enc_lines = encrypt_jsonl(&edge, &plain);
    let crlf_plain = "{\"name\": \"crlf\"}\r\n";
    enc_lines.push_str(&format!(
        "{}\r\n",
        encrypt_json(&edge, crlf_plain.trim_end())
    ));
    plain.push_str(crlf_plain);
    put("a.jsonl", enc_lines.into_bytes(), plain.into_bytes());

    // CSV: envelopes in cells, plaintext needing quotes, a quoted multi-line cell untouched.
    let (e1, e2) = (envelope(&edge, "Smith, \"Jo\""), envelope(&edge, "plain"));
    let csv = format!("name,other,note\n{e1},\"multi\nline, \"\"q\"\"\",{e2}\nx,y,z\n");
    let csv_plain =
        "name,other,note\n\"Smith, \"\"Jo\"\"\",\"multi\nline, \"\"q\"\"\",plain\nx,y,z\n";
    put("sub/b.csv", csv.into_bytes(), csv_plain.as_bytes().to_vec());

    // Text that is not UTF-8 around the envelopes.
    let e3 = envelope(&edge, "token-123");
    let mut text = b"\xff\xfe binary prefix ".to_vec();
    text.extend_from_slice(format!("key={e3}; again={e3}\nend\n").as_bytes());
    let mut text_plain = b"\xff\xfe binary prefix ".to_vec();
    text_plain.extend_from_slice(b"key=token-123; again=token-123\nend\n");
    put("sub/deeper/c.log", text, text_plain);

    // One JSON document.
    let doc = r#"{"people": [{"name": "Ann", "age": 31}, {"name": "Bob \"B\"", "age": null}]}"#;
    put(
        "d.json",
        encrypt_json(&edge, doc).into_bytes(),
        doc.as_bytes().to_vec(),
    );

    // Excluded by the tests' --exclude.
    fs::write(enc.join("sub/skip.tmp"), "not processed").unwrap();
    Tree { dir, expected }
}

fn fle(dir: &Path, args: &[&str]) -> Output {
    run_fle(dir, args, "")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every regular file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn assert_tree(dir: &Path, expected: &[(PathBuf, Vec<u8>)]) {
    let mut want: Vec<PathBuf> = expected.iter().map(|(p, _)| p.clone()).collect();
    want.sort();
    assert_eq!(files(dir), want);
    for (rel, bytes) in expected {
        let got = fs::read(dir.join(rel)).unwrap();
        assert!(
            &got == bytes,
            "{}:\n got {}\nwant {}",
            rel.display(),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(bytes)
        );
    }
}

fn summary(text: &[u8]) -> Value {
    let text = String::from_utf8_lossy(text);
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("\"type\":\"summary\""))
        .unwrap_or_else(|| panic!("no summary in {text}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn decrypt_tree_in_every_format() {
    let t = tree();
    let out = t.path("plain");
    let enc = t.enc();
    let args = [
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
        "--exclude",
        "**/*.tmp",
        "--json",
    ];
    let run = fle(root(), &args);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_tree(&out, &t.expected);
    let sum = summary(&run.stdout);
    // 12 records × 3 fields, 1 CRLF record, 2 CSV cells, 2 in the text, 4 in the JSON.
    assert_eq!(sum["envelopes"], 36 + 1 + 2 + 2 + 4, "{sum}");
    assert_eq!(sum["decrypted"], sum["envelopes"]);
    assert_eq!(sum["inputs_done"], 4);
    assert_eq!(sum["problems"], 0);
    assert_eq!(sum["keys"]["01"], sum["envelopes"]);
    // Two envelopes in the text are one: decrypted once.
    assert_eq!(sum["kms_calls"], 44, "{sum}");
    assert!(sum["peak_rss_bytes"].as_u64().unwrap() > 0);

    // Again: the outputs exist, so nothing is written without --overwrite.
    let again = fle(root(), &args);
    assert_eq!(code(&again), 2);
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    let mut forced = args.to_vec();
    forced.push("--overwrite");
    let run = fle(root(), &forced);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_tree(&out, &t.expected);

    // --include keeps only what matches; a plain summary ends on stderr.
    let only = t.path("only-csv");
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&t.enc()),
            "--out",
            s(&only),
            "--include",
            "**/*.csv",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(files(&only), [PathBuf::from("sub/b.csv")]);
    assert!(
        stderr(&run).contains("fle decrypt: 1 inputs"),
        "{}",
        stderr(&run)
    );

    // Several inputs need --out or --in-place: a usage error.
    let run = fle(root(), &["decrypt", "--private-key", DEMO_KEY, s(&t.enc())]);
    assert_eq!(code(&run), 2);
    assert!(stderr(&run).contains("--out"), "{}", stderr(&run));

    // Field restrictions cannot apply to CSV or text: a usage error before anything runs.
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            DEMO_KEY,
            "--fields",
            "ssn",
            s(&enc),
            "--out",
            s(&t.path("x")),
        ],
    );
    assert_eq!(code(&run), 2);
    assert!(stderr(&run).contains("--fields"), "{}", stderr(&run));
    assert!(!t.path("x").exists());

    // One file without --out: to stdout.
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&t.enc().join("d.json")),
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(run.stdout, t.expected[3].1);
}

#[test]
fn reencrypt_to_a_new_key_then_decrypt_with_it() {
    let t = tree();
    let (new_private, new_public) = key_paths(3072);
    let rotated = t.path("rotated");
    let run = fle(
        root(),
        &[
            "reencrypt",
            "--private-key",
            DEMO_KEY,
            "--to",
            "02",
            "--to-public-key",
            s(&new_public),
            s(&t.enc()),
            "--out",
            s(&rotated),
            "--exclude",
            "*.tmp",
            "--json",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let sum = summary(&run.stdout);
    assert_eq!(sum["decrypted"], sum["envelopes"], "{sum}");
    for rel in files(&rotated) {
        let text = String::from_utf8_lossy(&fs::read(rotated.join(&rel)).unwrap()).into_owned();
        assert!(!text.contains("#01#"), "{}", rel.display());
        assert!(text.contains("#02#"), "{}", rel.display());
        assert!(!text.contains("O'Neil") && !text.contains("token-123"));
    }

    // Verify with the new key: every envelope under 02, all decryptable.
    let run = fle(
        root(),
        &[
            "verify",
            "--private-key",
            s(&new_private),
            "--key-id",
            "02",
            s(&rotated),
            "--json",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let check = summary(&run.stdout);
    assert_eq!(check["keys"]["02"], sum["envelopes"], "{check}");
    assert_eq!(check["problems"], 0);

    // Decrypted with the new key: the original plaintext, numbers restored as numbers.
    let plain = t.path("plain");
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            s(&new_private),
            "--key-id",
            "02",
            s(&rotated),
            "--out",
            s(&plain),
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_tree(&plain, &t.expected);

    // Re-encrypting again to 02 keeps what is already under 02 (a key ring with both keys).
    let run = fle(
        root(),
        &[
            "reencrypt",
            "--private-key",
            s(&new_private),
            "--key-id",
            "02",
            "--to",
            "02",
            s(&rotated.join("a.jsonl")),
            "--json",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let data = String::from_utf8_lossy(&run.stdout);
    assert!(data.contains("#02#") && !data.contains("\"summary\""));
    let again = summary(&run.stderr);
    assert_eq!(again["kept"], again["envelopes"], "{again}");
    assert_eq!(again["kms_calls"], 0);

    // In place: inputs replaced, no temporary file or manifest left.
    let in_place = t.path("enc");
    let run = fle(
        root(),
        &[
            "reencrypt",
            "--private-key",
            DEMO_KEY,
            "--to",
            "02",
            "--to-public-key",
            s(&new_public),
            s(&in_place),
            "--in-place",
            "--include",
            "*.json",
        ],
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let doc = fs::read_to_string(in_place.join("d.json")).unwrap();
    assert!(doc.contains("#02#") && !doc.contains("#01#"));
    assert!(files(&in_place)
        .iter()
        .all(|p| !p.to_string_lossy().contains(".fle-")));
}

#[test]
fn failures_and_problems_are_reported_without_plaintext() {
    let t = tree();
    let enc = t.enc();
    // Damage one envelope of a.jsonl (the ciphertext no longer decrypts) and cut one short in
    // the text file.
    let a = fs::read_to_string(enc.join("a.jsonl")).unwrap();
    let at = a.find("#01#").unwrap() + 10;
    let mut damaged = a.clone().into_bytes();
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    fs::write(enc.join("a.jsonl"), &damaged).unwrap();
    let log = fs::read(enc.join("sub/deeper/c.log")).unwrap();
    let cut = String::from_utf8_lossy(&log).replacen("#10#", "", 1);
    fs::write(enc.join("sub/deeper/c.log"), cut.as_bytes()).unwrap();

    // verify: every problem on stdout with its file and byte, exit 3, no plaintext anywhere.
    let run = fle(
        root(),
        &[
            "verify",
            "--private-key",
            DEMO_KEY,
            s(&enc),
            "--exclude",
            "*.tmp",
        ],
    );
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(lines[0].contains("a.jsonl: envelope at byte "), "{report}");
    assert!(lines[1].contains("c.log: envelope at byte "), "{report}");
    assert!(lines[1].contains("without its suffix"), "{report}");
    for secret in ["O'Neil", "123-45-", "token-123", "Smith"] {
        assert!(!report.contains(secret) && !stderr(&run).contains(secret));
    }

    // decrypt, failing inputs with a bad envelope: the others land, exit 3, the failed ones
    // have no output and no temporary file; the manifest stays for --resume.
    let out = t.path("plain");
    let args = [
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--out",
        s(&out),
        "--exclude",
        "*.tmp",
    ];
    let run = fle(root(), &args);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("a.jsonl: envelope at byte"), "{err}");
    assert!(err.contains("2 failed"), "{err}");
    assert_eq!(
        files(&out),
        [
            PathBuf::from(".fle-manifest.json"),
            "d.json".into(),
            "sub/b.csv".into()
        ]
    );
    // Resuming before the inputs are fixed fails them again; after, they land.
    fs::write(enc.join("a.jsonl"), &a).unwrap();
    fs::write(enc.join("sub/deeper/c.log"), &log).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let run = fle(root(), &resume);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert!(
        stderr(&run).contains("2 done, 0 failed, 2 already done"),
        "{}",
        stderr(&run)
    );
    assert_tree(&out, &t.expected);

    // --on-error redact: written, exit 3, warnings on stderr.
    fs::write(enc.join("a.jsonl"), &damaged).unwrap();
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&enc.join("a.jsonl")),
            "--on-error",
            "redact",
        ],
    );
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(text.matches("[redacted]").count(), 1);
    assert!(
        stderr(&run).starts_with("fle: warning: "),
        "{}",
        stderr(&run)
    );
}

/// A job killed with SIGKILL half-way and resumed writes exactly what an uninterrupted job
/// writes: no record lost, none twice.
#[test]
fn sigkill_mid_job_then_resume_matches_an_uninterrupted_run() {
    let edge = edge();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    fs::create_dir_all(&enc).unwrap();
    let small = encrypt_jsonl(&edge, &plain_jsonl(5));
    fs::write(enc.join("1-first.jsonl"), &small).unwrap();
    // Long enough to be caught half-way: ~1,500 records of 3 envelopes with the local key.
    let big = encrypt_jsonl(&edge, &plain_jsonl(1500));
    fs::write(enc.join("2-big.jsonl"), &big).unwrap();
    fs::write(enc.join("3-last.jsonl"), &small).unwrap();

    let job = |out: &Path| -> Vec<String> {
        [
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&enc),
            "--out",
            s(out),
            "--kms-rps",
            "1000000",
            "--checkpoint-bytes",
            "20000",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let reference = dir.path().join("reference");
    let run = fle(
        root(),
        &job(&reference)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code(&run), 0, "{}", stderr(&run));

    let out = dir.path().join("out");
    let mut child = fle_command(root())
        .args(job(&out))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the big file has a checkpoint half-way, then SIGKILL.
    let manifest = out.join(".fle-manifest.json");
    let started = Instant::now();
    let at_kill = loop {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint seen"
        );
        assert!(child.try_wait().unwrap().is_none(), "the job ended first");
        if let Some(m) = fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            let entry = &m["inputs"][s(&enc.join("2-big.jsonl"))];
            let offset = entry["input_offset"].as_u64().unwrap_or(0);
            if entry["state"] == "partial" && offset > 0 && offset < big.len() as u64 / 2 {
                child.kill().unwrap();
                child.wait().unwrap();
                break m;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        at_kill["inputs"][s(&enc.join("1-first.jsonl"))]["state"],
        "done"
    );
    assert!(out.join("2-big.jsonl.fle-partial").exists());
    assert!(!out.join("2-big.jsonl").exists() && !out.join("3-last.jsonl").exists());

    // Without --resume the job refuses to start over the interrupted one.
    let args = job(&out);
    let plain: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fle(root(), &plain);
    assert_eq!(code(&run), 2);
    assert!(stderr(&run).contains("--resume"), "{}", stderr(&run));

    let mut resume = plain.clone();
    resume.extend(["--resume", "--json"]);
    let run = fle(root(), &resume);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    let sum = summary(&run.stdout);
    assert_eq!(sum["inputs_skipped"], 1, "{sum}");
    // The counts cover the whole job, the part before the kill included.
    assert_eq!(sum["envelopes"], (5 + 1500 + 5) * 3, "{sum}");
    assert_eq!(files(&out), files(&reference));
    for rel in files(&reference) {
        assert!(
            fs::read(out.join(&rel)).unwrap() == fs::read(reference.join(&rel)).unwrap(),
            "{} differs",
            rel.display()
        );
    }
}

/// Review regressions: --resume never replaces a file the manifest does not list; temporary and
/// in-place outputs keep owner-only permissions; a --manifest inside the input tree is not an
/// input; a quote inside an unquoted CSV cell is an ordinary byte.
#[test]
fn resume_permissions_manifest_and_loose_csv() {
    use std::os::unix::fs::PermissionsExt;
    let edge = edge();
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("enc");
    fs::create_dir_all(&enc).unwrap();
    let e = envelope(&edge, "Ann");
    fs::write(enc.join("a.csv"), format!("1,5'11\",{e}\n2,x,y\n")).unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("a.csv"), "PRECIOUS").unwrap();
    let run = fle(
        root(),
        &[
            "decrypt",
            "--private-key",
            DEMO_KEY,
            s(&enc),
            "--out",
            s(&out),
            "--resume",
        ],
    );
    assert_eq!(code(&run), 2, "{}", stderr(&run));
    assert!(stderr(&run).contains("--overwrite"), "{}", stderr(&run));
    assert_eq!(fs::read_to_string(out.join("a.csv")).unwrap(), "PRECIOUS");

    // In place, an owner-only input stays owner-only; the manifest named inside the tree is
    // skipped by the walk.
    // (b.csv fails first, so the manifest stays in the tree for the resumed run to walk past.)
    fs::set_permissions(enc.join("a.csv"), fs::Permissions::from_mode(0o600)).unwrap();
    let b_good = format!("{e}\n");
    fs::write(enc.join("b.csv"), &b_good[..100]).unwrap();
    let manifest = enc.join("job-state.json");
    let mut args = vec![
        "decrypt",
        "--private-key",
        DEMO_KEY,
        s(&enc),
        "--in-place",
        "--manifest",
        s(&manifest),
        "--json",
    ];
    let run = fle(root(), &args);
    assert_eq!(code(&run), 3, "{}", stderr(&run));
    assert!(manifest.exists());
    fs::write(enc.join("b.csv"), &b_good).unwrap();
    args.push("--resume");
    let run = fle(root(), &args);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    assert_eq!(summary(&run.stdout)["inputs"], 2);
    assert_eq!(fs::read_to_string(enc.join("b.csv")).unwrap(), "Ann\n");
    assert_eq!(
        fs::read_to_string(enc.join("a.csv")).unwrap(),
        "1,5'11\",Ann\n2,x,y\n"
    );
    let mode = fs::metadata(enc.join("a.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!manifest.exists());
}
