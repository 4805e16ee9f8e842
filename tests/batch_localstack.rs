//! End to end against LocalStack: plaintext encrypted by the edge (`fle encrypt --config`, key
//! 01), audited (`fle verify`), rotated to a second KMS key (`fle reencrypt --to 02`), decrypted
//! (`fle decrypt`) and compared byte for byte with the originals (the pretty-printed JSON
//! document: by value, since the edge encrypts an object as its compact JSON text).
//!
//! The tree mixes every batch format: JSON Lines (50 records: quotes, backslashes, control
//! characters, non-ASCII, numbers, `null`, objects), a pretty-printed JSON document in a
//! subdirectory, CSV and a text log whose cells and lines hold the edge's envelopes, and a file
//! without any. Both keys are real KMS keys (RSA_2048, ENCRYPT_DECRYPT) of a LocalStack started
//! on a free loopback port (`FLE_LOCALSTACK_PYTHON`, installed by `scripts/test-all.sh`); their
//! public keys come from `fle keys fetch`. Rotation must leave every byte outside the envelopes
//! as it was, a second rotation must be a no-op without KMS calls, and a disabled key must give
//! exit 3 with the envelopes left. No command may ever print a plaintext value on stderr.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{require, run_fle, Tool};
use fle_test_support::localstack::LocalStack;
use serde_json::{json, Value};

/// Records in the JSON Lines file.
const RECORDS: usize = 50;
/// Fields the edge encrypts.
const FIELDS: [&str; 3] = ["name", "ssn", "card"];

/// Creates an RSA_2048 ENCRYPT_DECRYPT KMS key; returns its ARN.
async fn create_key(client: &aws_sdk_kms::Client) -> String {
    client
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap()
}

/// One plaintext record: strings that need JSON escaping, non-ASCII, and non-string values
/// (number, `null`, object) in the encrypted fields; one record lacks `ssn`, odd ones `card`
/// (LocalStack takes some 40 ms per RSA Decrypt: every envelope costs four of them).
fn record(i: usize) -> Value {
    let names = [
        "Jo \"JJ\" O'Neil",
        "C:\\Users\\zoë\\",
        "Zoë Ångström-Łukasz",
        "李小龍 🦀",
        "tab\there, comma, and \u{1} control",
        "</script>\u{2028}end",
    ];
    let name = format!("{} No. {i}", names[i % names.len()]);
    let ssn = match i {
        7 => json!(""),
        8 => Value::Null,
        _ => json!(format!("{:03}-{:02}-{:04}", 100 + i, 10 + i, 1000 + 7 * i)),
    };
    let card = match i % 10 {
        0 => json!({"number": format!("4000 0000 0000 {i:04}"), "cvv": 100 + i}),
        2 | 6 => json!(4_111_111_111_110_000u64 + i as u64),
        _ => json!(format!("5500-0000-0000-{i:04}")),
    };
    let mut v = json!({
        "id": i,
        "name": name,
        "ssn": ssn,
        "card": card,
        "note": format!("untouched \"note\" \\ {i} é"),
    });
    if i == 9 {
        v.as_object_mut().unwrap().remove("ssn");
    }
    if i % 2 == 1 {
        v.as_object_mut().unwrap().remove("card");
    }
    v
}

/// A field's plaintext as `fle decrypt` writes it outside JSON: a string's text, or the raw
/// JSON of any other value.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every plaintext value a command must never print (strings of at least 4 bytes).
fn secrets_of(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if FIELDS.contains(&k.as_str()) {
                    if !v.is_null() {
                        out.push(plain_text(v));
                    }
                    if let Value::Object(inner) = v {
                        out.extend(inner.values().map(plain_text));
                    }
                } else {
                    secrets_of(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| secrets_of(v, out)),
        _ => {}
    }
}

/// RFC 4180 quoting, only where needed.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `text` with every envelope (`#0N#base64#N0#`) replaced by `<0N>`, and its envelopes' count
/// per key id.
fn skeleton(text: &str) -> (String, BTreeMap<String, usize>) {
    let bytes = text.as_bytes();
    let (mut out, mut counts, mut i, mut copied) = (String::new(), BTreeMap::new(), 0, 0);
    while i + 4 <= bytes.len() {
        let b = &bytes[i..];
        if b[0] == b'#' && b[1] == b'0' && b[2].is_ascii_digit() && b[3] == b'#' {
            let id = &text[i + 1..i + 3];
            let body_len = b[4..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
                .count();
            let suffix = format!("#{}0#", &id[1..]);
            let end = i + 4 + body_len;
            assert!(
                text[end..].starts_with(&suffix),
                "malformed envelope at byte {i}"
            );
            out.push_str(&text[copied..i]);
            out.push_str(&format!("<{id}>"));
            *counts.entry(id.to_owned()).or_default() += 1;
            i = end + suffix.len();
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    (out, counts)
}

/// Where `actual` and `expected` part: the line, and both versions of it.
fn first_difference(actual: &str, expected: &str) -> String {
    let mut a = actual.split_inclusive('\n');
    let mut e = expected.split_inclusive('\n');
    for line in 1.. {
        match (a.next(), e.next()) {
            (None, None) => break,
            (x, y) if x != y => return format!("line {line}:\n  got  {x:?}\n  want {y:?}"),
            _ => {}
        }
    }
    "no difference".to_owned()
}

/// JSON text without the whitespace between tokens.
fn json_without_whitespace(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
    for c in text.chars() {
        if in_string {
            (in_string, escaped) = (escaped || c != '"', !escaped && c == '\\');
        } else if c.is_ascii_whitespace() {
            continue;
        } else {
            in_string = c == '"';
        }
        out.push(c);
    }
    out
}

/// Every file under `dir`: relative path (with `/`) → contents.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().to_str().unwrap();
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(rel.replace('\\', "/"), text);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Writes `files` (relative path → contents) under `dir`.
fn write_tree(dir: &Path, files: &BTreeMap<String, String>) {
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Runs `fle` in `dir`; checks its exit code and that neither stream holds a secret where none
/// may be (stderr always; stdout too when `stdout_secret_free`). Returns (stdout, stderr).
fn fle(
    dir: &Path,
    args: &[&str],
    stdin: &str,
    code: i32,
    secrets: &[String],
    stdout_secret_free: bool,
) -> (String, String) {
    let out = run_fle(dir, args, stdin);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(code), "fle {args:?}: {stderr}");
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        assert!(
            !stderr.contains(secret.as_str()),
            "fle {args:?}: plaintext {secret:?} on stderr: {stderr}"
        );
        assert!(
            !stdout_secret_free || !stdout.contains(secret.as_str()),
            "fle {args:?}: plaintext {secret:?} on stdout: {stdout}"
        );
    }
    (stdout, stderr)
}

/// The `--json` summary (the last line of stdout).
fn summary(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("no summary")).unwrap()
}

#[test]
fn edge_encrypt_rotate_decrypt_through_localstack() {
    require!(Tool::LocalStack);
    let started = std::time::Instant::now();
    let localstack = LocalStack::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = localstack.kms_client();
    let arns = runtime.block_on(async { [create_key(&client).await, create_key(&client).await] });
    let endpoint = localstack.endpoint.as_str();

    // The keyring from `fle keys fetch`, the edge's fields, and where KMS is.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut entries = String::new();
    for (id, arn) in ["01", "02"].iter().zip(&arns) {
        let args = [
            "keys",
            "fetch",
            "--key-id",
            arn,
            "--id",
            id,
            "--dir",
            "keys",
            "--kms-endpoint",
            endpoint,
        ];
        let (entry, _) = fle(dir, &args, "", 0, &[], false);
        assert!(entry.contains(&format!("kms_key_id = {arn:?}")), "{entry}");
        assert!(dir.join(format!("keys/{id}.pub.pem")).is_file());
        entries.push_str(&entry);
        entries.push('\n');
    }
    std::fs::write(
        dir.join("fle.toml"),
        format!(
            "{entries}[edge]\nkey = \"01\"\nfields = [\"name\", \"ssn\", \"card\"]\n\n\
             [decrypt]\nregion = \"us-east-1\"\nendpoint = {endpoint:?}\n"
        ),
    )
    .unwrap();

    // Plaintext: the records, and a JSON document of three customers.
    let records: Vec<Value> = (0..RECORDS).map(record).collect();
    let document = json!({
        "batch": "b-2024-01",
        "customers": (0..3).map(|i| record(100 + i)).collect::<Vec<_>>(),
        "total": 12.5,
    });
    let mut secrets = Vec::new();
    records.iter().for_each(|r| secrets_of(r, &mut secrets));
    secrets_of(&document, &mut secrets);
    assert!(secrets.len() > 2 * RECORDS, "{}", secrets.len());

    // The edge encrypts each JSON body.
    let edge = |body: &str| {
        fle(
            dir,
            &["encrypt", "--config", "fle.toml"],
            body,
            0,
            &secrets,
            false,
        )
        .0
    };
    let lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let encrypted_lines: Vec<String> = lines.iter().map(|l| edge(l)).collect();
    let document_text = serde_json::to_string_pretty(&document).unwrap() + "\n";
    let encrypted_lines_values: Vec<Value> = encrypted_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // CSV and a log built from the edge's envelopes (plaintext: the values, as decrypt writes
    // them there); a file without envelopes.
    let envelope = |i: usize, field: &str| {
        encrypted_lines_values[i]
            .get(field)
            .map(|v| v.as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (mut csv_plain, mut csv_enc) = (
        String::from("id,name,ssn,card,comment\r\n"),
        String::from("id,name,ssn,card,comment\r\n"),
    );
    for (i, r) in records.iter().enumerate().take(6) {
        let [name, ssn, card] = FIELDS.map(|f| r.get(f).map(plain_text).unwrap_or_default());
        csv_plain.push_str(&format!(
            "{i},{},{},{},{}\r\n",
            csv_cell(&name),
            csv_cell(&ssn),
            csv_cell(&card),
            csv_cell(&format!("ssn was {ssn}; ok"))
        ));
        csv_enc.push_str(&format!(
            "{i},{},{},{},ssn was {}; ok\r\n",
            envelope(i, "name"),
            envelope(i, "ssn"),
            envelope(i, "card"),
            envelope(i, "ssn"),
        ));
    }
    let (mut log_plain, mut log_enc) = (String::new(), String::new());
    for (i, r) in records.iter().enumerate().skip(20).take(5) {
        let line = |name: &str, ssn: &str| {
            format!("2024-01-01T00:00:{i:02}Z INFO user={i} name=[{name}] ssn={ssn}\n")
        };
        log_plain.push_str(&line(&plain_text(&r["name"]), &plain_text(&r["ssn"])));
        log_enc.push_str(&line(&envelope(i, "name"), &envelope(i, "ssn")));
    }
    let readme = "No secrets here: #01 is not an envelope.\n".to_owned();
    let plain: BTreeMap<String, String> = [
        ("customers.jsonl", lines.join("\n") + "\n"),
        ("sub/2024/orders.json", document_text.clone()),
        ("sub/report.csv", csv_plain),
        ("logs/app.log", log_plain),
        ("README.txt", readme.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let encrypted: BTreeMap<String, String> = [
        ("customers.jsonl", encrypted_lines.join("\n") + "\n"),
        ("sub/2024/orders.json", edge(&document_text)),
        ("sub/report.csv", csv_enc),
        ("logs/app.log", log_enc),
        ("README.txt", readme),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    write_tree(&dir.join("plain"), &plain);
    write_tree(&dir.join("enc"), &encrypted);

    // Every encrypted field is one envelope; nothing else is touched.
    let fields_present = |v: &Value| FIELDS.iter().filter(|f| v.get(**f).is_some()).count();
    let jsonl_count: usize = records.iter().map(fields_present).sum();
    let document_count: usize = document["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(fields_present)
        .sum();
    let csv_count: usize = records[..6].iter().map(|r| fields_present(r) + 1).sum();
    let expected = jsonl_count + document_count + csv_count + 2 * 5;
    assert_eq!(
        (jsonl_count, document_count, csv_count),
        (50 + 49 + 25, 3 + 2 + 3, 6 * 3 + 3)
    );
    let mut total = 0;
    for (rel, text) in &encrypted {
        let (_, counts) = skeleton(text);
        assert!(counts.keys().all(|k| k == "01"), "{rel}: {counts:?}");
        total += counts.values().sum::<usize>();
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            assert!(!text.contains(secret.as_str()), "{rel} holds {secret:?}");
        }
    }
    assert_eq!(total, expected);
    let n = expected as u64;

    // Audit: all under key 01, one KMS Decrypt each, no problem.
    let (out, _) = fle(
        dir,
        &["verify", "--config", "fle.toml", "enc", "--json"],
        "",
        0,
        &secrets,
        true,
    );
    let s = summary(&out);
    assert_eq!(
        (&s["envelopes"], &s["decrypted"], &s["problems"], &s["keys"]),
        (&json!(n), &json!(n), &json!(0), &json!({"01": n})),
        "{out}"
    );
    assert_eq!((&s["inputs"], &s["inputs_done"]), (&json!(5), &json!(5)));
    assert_eq!(s["kms_calls"], json!(n), "{out}");

    // Rotation to key 02 (KMS endpoint and region given on the command line this time).
    let rotate = [
        "reencrypt",
        "--config",
        "fle.toml",
        "--to",
        "02",
        "enc",
        "--out",
        "rot",
        "--kms-endpoint",
        endpoint,
        "--region",
        "us-east-1",
    ];
    fle(dir, &rotate, "", 0, &secrets, true);
    let rotated = tree(&dir.join("rot"));
    assert_eq!(
        rotated.keys().collect::<Vec<_>>(),
        encrypted.keys().collect::<Vec<_>>()
    );
    for (rel, text) in &rotated {
        assert!(!text.contains("#01#") && !text.contains("#10#"), "{rel}");
        let (rot_skeleton, rot_counts) = skeleton(text);
        let (enc_skeleton, enc_counts) = skeleton(&encrypted[rel]);
        // Every byte outside the envelopes as it was; every envelope now under 02.
        assert_eq!(rot_skeleton, enc_skeleton.replace("<01>", "<02>"), "{rel}");
        assert_eq!(
            rot_counts.get("02").copied().unwrap_or(0),
            enc_counts.get("01").copied().unwrap_or(0),
            "{rel}"
        );
    }
    let (out, _) = fle(
        dir,
        &["verify", "--config", "fle.toml", "rot", "--json"],
        "",
        0,
        &secrets,
        true,
    );
    let s = summary(&out);
    assert_eq!(
        (&s["envelopes"], &s["problems"], &s["keys"]),
        (&json!(n), &json!(0), &json!({"02": n})),
        "{out}"
    );

    // Rotating again is a no-op: every envelope kept, no KMS call, identical files.
    let again = [
        "reencrypt",
        "--config",
        "fle.toml",
        "--to",
        "02",
        "rot",
        "--out",
        "rot2",
        "--json",
    ];
    let (out, _) = fle(dir, &again, "", 0, &secrets, true);
    let s = summary(&out);
    assert_eq!(
        (&s["envelopes"], &s["kept"], &s["kms_calls"]),
        (&json!(n), &json!(n), &json!(0)),
        "{out}"
    );
    assert_eq!(tree(&dir.join("rot2")), rotated);

    // Decryption gives back the original files, byte for byte.
    fle(
        dir,
        &["decrypt", "--config", "fle.toml", "rot", "--out", "dec"],
        "",
        0,
        &secrets,
        true,
    );
    let decrypted = tree(&dir.join("dec"));
    assert_eq!(
        decrypted.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (rel, text) in &plain {
        if rel.ends_with(".json") {
            // The edge encrypts a non-string value as its compact JSON text: the pretty-printed
            // objects come back compact. Same values, same bytes outside whitespace.
            let got: Value = serde_json::from_str(&decrypted[rel]).unwrap();
            assert_eq!(got, document, "{rel}");
            assert_eq!(
                json_without_whitespace(&decrypted[rel]),
                json_without_whitespace(text)
            );
            assert_ne!(
                decrypted[rel], *text,
                "the document's objects were pretty-printed"
            );
            continue;
        }
        assert!(
            decrypted[rel] == *text,
            "{rel} differs: {}",
            first_difference(&decrypted[rel], text)
        );
    }
    // Non-string values come back as JSON values, not strings.
    let line = |n: usize| -> Value {
        serde_json::from_str(decrypted["customers.jsonl"].lines().nth(n).unwrap()).unwrap()
    };
    assert!(line(0)["card"].is_object(), "{}", line(0));
    assert_eq!(line(2)["card"], json!(4_111_111_111_110_002u64));
    assert_eq!(
        (&line(7)["ssn"], &line(8)["ssn"]),
        (&json!(""), &Value::Null)
    );

    // A wrong turn: key 02 disabled in KMS. The audit finds every envelope a problem (exit 3),
    // decryption with --on-error leave writes the files with their envelopes left (exit 3).
    runtime.block_on(async {
        client.disable_key().key_id(&arns[1]).send().await.unwrap();
    });
    let (out, err) = fle(
        dir,
        &["verify", "--config", "fle.toml", "rot", "--json"],
        "",
        3,
        &secrets,
        true,
    );
    let s = summary(&out);
    assert_eq!(
        (&s["envelopes"], &s["decrypted"], &s["problems"]),
        (&json!(n), &json!(0), &json!(n)),
        "{out}\n{err}"
    );
    let leave = [
        "decrypt",
        "--config",
        "fle.toml",
        "rot",
        "--out",
        "left",
        "--on-error",
        "leave",
    ];
    let (_, err) = fle(dir, &leave, "", 3, &secrets, true);
    assert!(err.contains("DisabledException"), "{err}");
    assert_eq!(tree(&dir.join("left")), rotated);

    eprintln!(
        "{n} envelopes, end to end in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
