//! URI rules against origins that normalise paths (issue 11): every spelling an origin may route
//! to a protected handler is encrypted, exclusions are not reachable by an encoding trick, and
//! paths the edge cannot read are refused with 400 `invalid_uri`.

mod common;

use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome};
use fle_shared::{backend, OaepPrivateKey, ScanItem};
use serde_json::{json, Value};

const DEMO_PRIVATE: &str = include_str!("../../keys/demo-01.key.pem");
const SECRET: &str = "123-45-6789";
/// Includes and an exclusion; `uri_case` is the default ("insensitive").
const RULES: &str = r#"uris = ["/signup", "/api/*"]
exclude_uris = ["/api/health"]"#;

fn edge(extra: &str) -> Result<EdgeEncryptor, String> {
    let dir = fle_test_support::root();
    let toml = format!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
         [edge]\nkey = \"01\"\nfields = [\"ssn\"]\n{extra}\n"
    );
    EdgeEncryptor::from_toml_str(&toml, dir, backend::default_backend()).map_err(|e| e.to_string())
}

fn event(method: &str, uri: &str) -> Value {
    json!({"Records": [{"cf": {
        "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
        "request": {
            "clientIp": "203.0.113.178",
            "method": method,
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
    let all: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/uri-cases.json")).unwrap();
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

fn check(edge: &EdgeEncryptor, method: &str, uri: &str, expect: Expect) {
    let input = event(method, uri);
    match (common::handle(edge, &input), expect) {
        (Outcome::Forward { request, encrypted }, Encrypt) => {
            assert_eq!(encrypted, 1, "{uri}");
            let body = request["body"]["data"].as_str().unwrap();
            assert!(!body.contains(SECRET), "{uri}: secret in clear");
            let key = OaepPrivateKey::from_pem(DEMO_PRIVATE).unwrap();
            let plain: Vec<String> = edge
                .keyring()
                .scanner()
                .scan_str(body)
                .map(|item| match item {
                    ScanItem::Envelope(f) => String::from_utf8(
                        key.decrypt_envelope(f.key, &f.envelope)
                            .unwrap()
                            .as_bytes()
                            .to_vec(),
                    )
                    .unwrap(),
                    ScanItem::Malformed(m) => panic!("{uri}: malformed envelope {m:?}"),
                })
                .collect();
            assert_eq!(plain, [SECRET], "{uri}");
            assert_eq!(request["uri"], uri, "{uri}: the URI is forwarded as sent");
        }
        (Outcome::Forward { request, encrypted }, Pass) => {
            assert_eq!(encrypted, 0, "{uri}");
            assert_eq!(request, input["Records"][0]["cf"]["request"], "{uri}");
        }
        (
            Outcome::Respond {
                rejection,
                response,
                ..
            },
            Invalid,
        ) => {
            assert_eq!(
                (rejection.status(), rejection.code()),
                (400, "invalid_uri"),
                "{uri}"
            );
            assert_eq!(response["status"], "400");
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["error"], "invalid_uri");
            assert!(!response.to_string().contains(SECRET));
        }
        (outcome, expect) => panic!("{uri}: expected {expect:?}, got {outcome:?}"),
    }
}

#[test]
fn attack_paths_are_covered_and_exclusions_are_plain_only() {
    let edge = edge(RULES).unwrap();
    for (uri, expect) in cases("insensitive") {
        check(&edge, "POST", &uri, expect);
    }
}

#[test]
fn case_sensitive_includes() {
    let edge = edge(&format!("{RULES}\nuri_case = \"sensitive\"")).unwrap();
    for (uri, expect) in cases("sensitive") {
        check(&edge, "POST", &uri, expect);
    }
}

#[test]
fn exclusions_without_includes() {
    let edge = edge(r#"exclude_uris = ["/health", "/static/*"]"#).unwrap();
    for (uri, expect) in [
        ("/anything", Encrypt),
        ("/health", Pass),
        ("/health/", Pass),
        ("/static/app.js", Pass),
        ("/static/caf%C3%A9", Pass),
        ("/static/../signup", Encrypt),
        ("/static/..%2Fsignup", Encrypt),
        ("/static%2F..%2Fsignup", Encrypt),
        ("/HEALTH", Encrypt),
        ("/x/%00", Invalid),
    ] {
        check(&edge, "POST", uri, expect);
    }
}

#[test]
fn methods_not_covered_never_read_the_uri() {
    let edge = edge(&format!("{RULES}\nmethods = [\"POST\"]")).unwrap();
    check(&edge, "GET", "/signup%00", Pass);
    check(&edge, "GET", "/signup", Pass);
    check(&edge, "POST", "/signup%00", Invalid);
    check(&edge, "post", "/SIGNUP/", Encrypt);
}

#[test]
fn patterns_are_normalised_when_loaded() {
    let edge = edge(r#"uris = ["/signup/", "//api//*"]"#).unwrap();
    assert_eq!(edge.config().uris, ["/signup", "/api/*"]);
    check(&edge, "POST", "/signup", Encrypt);
    check(&edge, "POST", "/api/x", Encrypt);

    // A configuration built in code is normalised (or refused) by `EdgeEncryptor::new` too.
    let mut config =
        EdgeConfig::from_toml_str("[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n").unwrap();
    config.uris = vec!["/signup/".into()];
    config.exclude_uris = vec!["//signup//health/".into()];
    let keyring = edge.keyring().clone();
    let built =
        EdgeEncryptor::new(keyring.clone(), config.clone(), backend::default_backend()).unwrap();
    assert_eq!(built.config().uris, ["/signup"]);
    assert_eq!(built.config().exclude_uris, ["/signup/health"]);
    config.uris = vec!["/a/../signup".into()];
    let err = EdgeEncryptor::new(keyring, config, backend::default_backend()).unwrap_err();
    assert!(err.to_string().contains("dot segment"), "{err}");
}

#[test]
fn configuration_errors() {
    for (extra, expected) in [
        (r#"uris = ["/signup;x"]"#, "contains ';'"),
        (r#"uris = ["/api/%2A"]"#, "contains '%'"),
        (r#"uris = ['/api\x']"#, "contains '\\'"),
        (r#"uris = ["/api/../x"]"#, "dot segment"),
        (r#"uris = ["/api/./x"]"#, "dot segment"),
        (r#"uris = ["api/*"]"#, "must start with '/' or '*'"),
        (r#"exclude_uris = ["*/health"]"#, "must start with '/'"),
        (r#"exclude_uris = ["/health;x"]"#, "contains ';'"),
        (r#"exclude_uris = ["/Health"]"#, "not in lower case"),
        (r#"uri_case = "fuzzy""#, "unknown variant"),
        (r#"exclude_uri = ["/x"]"#, "unknown field"),
    ] {
        let err = edge(extra).unwrap_err();
        assert!(err.contains(expected), "{extra}: {err}");
    }
    // Upper case in an exclusion is fine when exclusions and includes are both exact.
    let edge = edge("uri_case = \"sensitive\"\nexclude_uris = [\"/Health\"]").unwrap();
    check(&edge, "POST", "/Health", Pass);
    check(&edge, "POST", "/health", Encrypt);
}
