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

/// Spellings of protected and excluded paths, against [`RULES`].
const CASES: &[(&str, Expect)] = &[
    ("/signup", Encrypt),
    ("/Signup", Encrypt),
    ("/SIGNUP", Encrypt),
    ("/signup/", Encrypt),
    ("/signup;jsessionid=1", Encrypt),
    ("/signup%3Bjsessionid=1", Encrypt),
    ("//signup", Encrypt),
    ("/./signup", Encrypt),
    ("/x/../signup", Encrypt),
    ("/x/..;/signup", Encrypt),
    ("/%2e/signup", Encrypt),
    ("/%73ignup", Encrypt),
    ("/%2fsignup", Encrypt),
    ("/%5Csignup", Encrypt),
    ("/%C5%BFignup", Encrypt),
    ("/api/x", Encrypt),
    ("/api//x", Encrypt),
    ("/%61pi/x", Encrypt),
    ("/api\\x", Encrypt),
    ("/API/x", Encrypt),
    ("/api/", Encrypt),
    ("/api%2Fx", Encrypt),
    ("/api/health", Pass),
    ("/api/health/", Pass),
    ("/API/health", Encrypt),
    ("/api/Health", Encrypt),
    ("/api/%68ealth", Encrypt),
    ("/api%2Fhealth", Encrypt),
    ("/api%5Chealth", Encrypt),
    ("/api\\health", Encrypt),
    ("/api/health;x", Encrypt),
    ("/api//health", Encrypt),
    ("/api/./health", Encrypt),
    ("/api/x/../health", Encrypt),
    ("/", Pass),
    ("/other", Pass),
    ("/signupx", Pass),
    ("/api", Pass),
    ("/signup%00", Invalid),
    ("/api/x%zz", Invalid),
    ("/other%0a", Invalid),
];

/// With `uri_case = "sensitive"`.
const SENSITIVE_CASES: &[(&str, Expect)] = &[
    ("/signup/", Encrypt),
    ("/%73ignup", Encrypt),
    ("/api/x", Encrypt),
    ("/Signup", Pass),
    ("/API/x", Pass),
    ("/api/health", Pass),
    ("/api/Health", Encrypt),
];

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
        (RULES.to_owned(), CASES),
        (
            format!("{RULES}\nuri_case = \"sensitive\""),
            SENSITIVE_CASES,
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
        for (&(uri, expect), result) in cases.iter().zip(&results) {
            check("fle encrypt-event", uri, expect, result);
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
    let dir = tempfile::tempdir().unwrap();
    let (package, _, _) = build_lambda_edge_package(dir.path(), &config(RULES));
    let events: Vec<Value> = CASES.iter().map(|(uri, _)| event(uri)).collect();
    let (backend, results, _) = run_lambda_edge(&package, &events, true);
    assert_eq!(backend, "node-crypto");
    assert_eq!(results.len(), CASES.len());
    for (&(uri, expect), result) in CASES.iter().zip(&results) {
        check("Lambda@Edge package", uri, expect, result);
    }
}
