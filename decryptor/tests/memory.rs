//! Peak memory of documents dense with prefixes (issue 11): a document made of nothing but
//! configured prefixes (`#01##01#…`, one candidate every 4 bytes) or of many tiny strings holding
//! one, in every mode and error policy, stays within a small multiple of its size.
//!
//! Each case runs in a child process (this test binary again, told which case by an environment
//! variable) that reads its own high-water mark (`VmHWM` in /proc/self/status) when done, so
//! cases do not see each other's peaks. Run with `--nocapture` to see the figures.

use std::process::Command;
use std::sync::Arc;

use fle_decryptor::{Decryptor, LocalKeyProvider, Mode, OnError, Report};
use fle_shared::body::FieldSelector;
use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, OaepPrivateKey};

/// Size of each case's document.
const DOC: usize = 16 << 20;
/// Variable naming the case a child runs.
const CASE_VAR: &str = "FLE_MEMORY_CASE";

use fle_test_support::root;

fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line[6..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// `open` + `unit` repeated + `close`, about [`DOC`] bytes, built in place.
fn repeat(open: &str, unit: &str, close: &str) -> String {
    let n = (DOC - open.len() - close.len()) / unit.len();
    let mut doc = String::with_capacity(open.len() + n * unit.len() + close.len());
    doc.push_str(open);
    for _ in 0..n {
        doc.push_str(unit);
    }
    doc.push_str(close);
    doc
}

/// The cases: name, mode, error policy, field restriction, the document.
const CASES: &[(&str, Mode, OnError, Option<&str>)] = &[
    ("json-string-leave", Mode::Json, OnError::Leave, None),
    ("json-string-redact", Mode::Json, OnError::Redact, None),
    (
        "json-string-fail-restricted",
        Mode::Json,
        OnError::Fail,
        Some("b"),
    ),
    ("json-escaped-redact", Mode::Json, OnError::Redact, None),
    ("json-strings-leave", Mode::Json, OnError::Leave, None),
    (
        "json-strings-redact-restricted",
        Mode::Json,
        OnError::Redact,
        Some("a"),
    ),
    ("json-names-leave", Mode::Json, OnError::Leave, None),
    ("json-envelopes-leave", Mode::Json, OnError::Leave, None),
    ("text-leave", Mode::Text, OnError::Leave, None),
    ("text-redact", Mode::Text, OnError::Redact, None),
    ("form-leave", Mode::Form, OnError::Leave, None),
    ("form-redact", Mode::Form, OnError::Redact, None),
];

fn document(case: &str, envelope: &str) -> String {
    match case {
        c if c.starts_with("json-strings-") => repeat("[", "\"#01#\",", "\"#01#\"]"),
        c if c.starts_with("json-string-") => repeat(r#"{"a":""#, "#01#", r#""}"#),
        // Escapes force an unescaped copy of the string.
        "json-escaped-redact" => repeat(r#"{"a":""#, r"#01#\/", r#""}"#),
        "json-names-leave" => repeat("{", "\"#01##01#\":0,", "\"x\":0}"),
        "json-envelopes-leave" => repeat("[", &format!("\"{envelope}\",\n"), "0]"),
        c if c.starts_with("text") => repeat("", "#01#", ""),
        c if c.starts_with("form") => repeat("a=", "#01#", ""),
        other => panic!("unknown case {other}"),
    }
}

fn run_case(case: &str) {
    let &(_, mode, on_error, fields) = CASES.iter().find(|c| c.0 == case).unwrap();
    let pem = std::fs::read_to_string(root().join("keys/demo-01.key.pem")).unwrap();
    let private = OaepPrivateKey::from_pem(&pem).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new(
        "01".parse().unwrap(),
        private.public_key().clone(),
    )])
    .unwrap();
    let mut envelope = String::new();
    FieldEncryptor::new(&keyring, backend::default_backend())
        .unwrap()
        .key_str("01")
        .unwrap()
        .encrypt_into("a", b"123-45-6789", &mut envelope)
        .unwrap();
    let provider = LocalKeyProvider::new(vec![("01".parse().unwrap(), private)]);
    let mut d = Decryptor::new(keyring, Arc::new(provider));
    if let Some(field) = fields {
        d = d.only_fields(vec![FieldSelector::parse(field).unwrap()]);
    }
    let doc = document(case, &envelope);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let before = vm_hwm();
    let (out_len, report): (usize, Report) = match rt.block_on(d.decrypt(&doc, mode, on_error)) {
        Ok(out) => (out.text.len(), out.report),
        Err(e) => panic!("{case}: {e}"),
    };
    let peak = vm_hwm();
    println!(
        "\nFLE_MEMORY doc={} out={out_len} stored={} before={before} peak={peak}",
        doc.len(),
        report.problems.len(),
    );
}

/// Runs every case in a child; checks each peak against the bound.
#[test]
fn dense_documents_peak_within_a_small_multiple_of_their_size() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        run_case(&case);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut failures = Vec::new();
    for (case, ..) in CASES {
        let started = std::time::Instant::now();
        let output = Command::new(&exe)
            .args([
                "--exact",
                "dense_documents_peak_within_a_small_multiple_of_their_size",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CASE_VAR, case)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout
            .lines()
            .find_map(|l| l.find("FLE_MEMORY ").map(|at| &l[at..]))
        else {
            failures.push(format!(
                "{case}: no figures ({}): {stdout} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        };
        let field = |name: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (doc, peak, stored) = (field("doc"), field("peak"), field("stored"));
        println!(
            "{case:32} doc {:5.1} MiB  peak {:7.1} MiB  ({:4.1}x)  problems kept {stored}  {:.1}s",
            doc as f64 / (1 << 20) as f64,
            peak as f64 / (1 << 20) as f64,
            peak as f64 / doc as f64,
            started.elapsed().as_secs_f64(),
        );
        let bound = 8 * doc + (64 << 20);
        if peak > bound {
            failures.push(format!(
                "{case}: peak {peak} bytes for a {doc}-byte document (bound {bound})"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
