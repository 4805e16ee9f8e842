//! The `fle` command line: the flags scripts depend on, exit codes, one-line errors.

mod common;

use std::process::Output;

use common::*;

fn fle(args: &[&str], stdin: &str) -> Output {
    run_fle(root(), args, stdin)
}

#[test]
fn demo_runs() {
    let out = fle(&["demo"], "");
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("Round trip OK"));
}

#[test]
fn encrypt_with_public_key_and_fields() {
    let args = [
        "encrypt",
        "--public-key",
        "keys/demo-01.pub.pem",
        "--fields",
        "ssn,$.card.number",
    ];
    let out = fle(
        &args,
        r#"{"ssn": "123-45-6789", "card": {"number": "4111"}, "n": 1}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.ends_with(r#"}, "n": 1}"#) && !text.contains("6789"));
    assert_eq!(demo_decrypt(&text), ["123-45-6789", "4111"]);

    let form = fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-01.pub.pem",
            "--fields",
            "ssn",
            "--content-type",
            "application/x-www-form-urlencoded",
        ],
        "a=1&ssn=123-45-6789",
    );
    assert!(form.status.success());
    assert!(String::from_utf8(form.stdout)
        .unwrap()
        .starts_with("a=1&ssn=%2301%23"));
}

#[test]
fn encrypt_event_jsonl_with_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fle.toml");
    std::fs::write(
        &config,
        format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n",
            root().join("keys/demo-01.pub.pem").to_str().unwrap()
        ),
    )
    .unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&read(&fixture("events/reference-3x6.json"))).unwrap();
    let mut truncated = event.clone();
    truncated["Records"][0]["cf"]["request"]["body"]["inputTruncated"] = serde_json::json!(true);
    let input = format!("{event}\n\n{truncated}\n");
    for args in [
        vec!["encrypt-event", "--config", config.to_str().unwrap()],
        vec![
            "encrypt-event",
            "--public-key",
            "keys/demo-01.pub.pem",
            "--fields",
            "fname,lname,email,ssn,dob,phone",
        ],
    ] {
        let out = fle(&args, &input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["body"]["action"], "replace");
        assert_eq!(
            demo_decrypt(lines[0]["body"]["data"].as_str().unwrap()).len(),
            18
        );
        assert_eq!(lines[1]["status"], "413");
    }
}

#[test]
fn errors_are_one_line_with_distinct_exit_codes() {
    // Usage: --public-key without --fields.
    let out = fle(&["encrypt", "--public-key", "keys/demo-01.pub.pem"], "{}");
    assert_eq!(out.status.code(), Some(2));
    // Refused input: a marker in the body. No value in the message.
    let out = fle(
        &[
            "encrypt",
            "--public-key",
            "keys/demo-01.pub.pem",
            "--fields",
            "ssn",
        ],
        r##"{"note": "#01#secretstuff"}"##,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("$.note") && !err.contains("secretstuff"),
        "{err}"
    );
    // Bad configuration.
    let out = fle(&["encrypt", "--config", "/nonexistent/fle.toml"], "{}");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8(out.stderr).unwrap().lines().count(), 1);
}
