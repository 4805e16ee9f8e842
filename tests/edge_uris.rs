//! URI rules against origins that normalise paths (issue 11), through `fle encrypt-event` and
//! the Lambda@Edge package (the wasm core under Node): every spelling an origin may route to a
//! protected handler is encrypted, exclusions are not reachable by an encoding trick, and paths
//! the edge cannot read are answered 400 `invalid_uri`. The native core runs the same table in
//! `edge-encryptor/tests/uris.rs`.

mod common;

use common::*;
use serde_json::{json, Value};

const SECRET: &str = "123-45-6789";
/// Includes and an exclusion; `uri_case` is the default ("insensitive").
const RULES: &str = r#"uris = ["/signup", "/api/*"]
exclude_uris = ["/api/health"]"#;

fn config(extra: &str) -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n{extra}\n",
        root().join("keys/demo-01.pub.pem").to_str().unwrap()
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Covered: the ssn is encrypted.
    Encrypt,
    /// Not covered: forwarded untouched, ssn in clear.
    Pass,
    /// 400 `invalid_uri`.
    Invalid,
}
use Expect::*;

/// The shared table (`tests/fixtures/uri-cases.json`): `"insensitive"` against [`RULES`],
/// `"sensitive"` against [`RULES`] with `uri_case = "sensitive"`.
fn cases(table: &str) -> Vec<(String, Expect)> {
    let all: Value = serde_json::from_str(include_str!("fixtures/uri-cases.json")).unwrap();
    all[table]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            let expect = match case[1].as_str().unwrap() {
                "encrypt" => Encrypt,
                "pass" => Pass,
                "invalid" => Invalid,
                other => panic!("unknown expectation {other}"),
            };
            (case[0].as_str().unwrap().to_owned(), expect)
        })
        .collect()
}

fn event(uri: &str) -> Value {
    json!({"Records": [{"cf": {
        "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
        "request": {
            "clientIp": "203.0.113.178",
            "method": "POST",
            "uri": uri,
            "querystring": "",
            "headers": {
                "host": [{"key": "Host", "value": "api.example.com"}],
                "content-type": [{"key": "Content-Type", "value": "application/json"}]
            },
            "body": {"inputTruncated": false, "action": "read-only", "encoding": "text",
                     "data": format!(r#"{{"name":"Jo","ssn":"{SECRET}"}}"#)}
        }
    }}]})
}

fn check(runner: &str, uri: &str, expect: Expect, result: &Value) {
    let what = format!("{uri} ({runner})");
    match expect {
        Encrypt => {
            assert!(result.get("status").is_none(), "{what}: refused: {result}");
            assert_eq!(result["body"]["action"], "replace", "{what}");
            let body = result["body"]["data"].as_str().unwrap();
            assert!(!body.contains(SECRET), "{what}: secret in clear");
            assert_eq!(demo_decrypt(body), [SECRET], "{what}");
            assert_eq!(result["uri"], uri, "{what}: the URI is forwarded as sent");
        }
        Pass => assert_eq!(
            result,
            &event(uri)["Records"][0]["cf"]["request"],
            "{what}: not forwarded untouched"
        ),
        Invalid => {
            assert_eq!(result["status"], "400", "{what}: {result}");
            let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["error"], "invalid_uri", "{what}");
            assert!(!result.to_string().contains(SECRET), "{what}");
        }
    }
}

#[test]
fn fle_encrypt_event() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, cases) in [
        (RULES.to_owned(), cases("insensitive")),
        (
            format!("{RULES}\nuri_case = \"sensitive\""),
            cases("sensitive"),
        ),
    ] {
        std::fs::write(dir.path().join("fle.toml"), config(&extra)).unwrap();
        let input: String = cases
            .iter()
            .map(|(uri, _)| format!("{}\n", event(uri)))
            .collect();
        let out = run_fle(
            dir.path(),
            &["encrypt-event", "--config", "fle.toml"],
            &input,
        );
        let results: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            results.len(),
            cases.len(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for ((uri, expect), result) in cases.iter().zip(&results) {
            check("fle encrypt-event", uri, *expect, result);
        }
    }
}

#[test]
fn fle_encrypt_event_refuses_bad_patterns() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, expected) in [
        (r#"uris = ["/signup;x"]"#, "contains ';'"),
        (r#"uris = ["/a/../signup"]"#, "dot segment"),
        (r#"exclude_uris = ["/Health"]"#, "not in lower case"),
        (r#"exclude_uris = ["*/health"]"#, "must start with '/'"),
    ] {
        std::fs::write(dir.path().join("fle.toml"), config(extra)).unwrap();
        let out = run_fle(dir.path(), &["encrypt-event", "--config", "fle.toml"], "");
        assert_eq!(out.status.code(), Some(2), "{extra}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(expected), "{extra}: {err}");
    }
}

#[test]
fn lambda_edge_package() {
    require!(Tool::Node);
    let dir = tempfile::tempdir().unwrap();
    let (package, _, _) = build_lambda_edge_package(dir.path(), &config(RULES));
    let cases = cases("insensitive");
    let events: Vec<Value> = cases.iter().map(|(uri, _)| event(uri)).collect();
    let (backend, results, _) = run_lambda_edge(&package, &events, true);
    assert_eq!(backend, "node-crypto");
    assert_eq!(results.len(), cases.len());
    for ((uri, expect), result) in cases.iter().zip(&results) {
        check("Lambda@Edge package", uri, *expect, result);
    }
}
