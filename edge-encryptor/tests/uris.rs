//! URI rules against origins that normalise paths (issue 11): every spelling an origin may route
//! to a protected handler is encrypted, exclusions are not reachable by an encoding trick, and
//! paths the edge cannot read are refused with 400 `invalid_uri`.

use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome};
use fle_shared::{backend, OaepPrivateKey, ScanItem};
use serde_json::{json, Value};

const DEMO_PRIVATE: &str = include_str!("../../keys/demo-01.key.pem");
const SECRET: &str = "123-45-6789";
/// Includes and an exclusion; `uri_case` is the default ("insensitive").
const RULES: &str = r#"uris = ["/signup", "/api/*"]
exclude_uris = ["/api/health"]"#;

fn edge(extra: &str) -> Result<EdgeEncryptor, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let toml = format!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
         [edge]\nkey = \"01\"\nfields = [\"ssn\"]\n{extra}\n"
    );
    EdgeEncryptor::from_toml_str(&toml, &dir, backend::default_backend()).map_err(|e| e.to_string())
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

/// Spellings of protected and excluded paths, against [`RULES`].
const CASES: &[(&str, Expect)] = &[
    // Includes: every reading an origin may route to /signup or /api/*.
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
    ("/../../signup", Encrypt),
    ("/%2e/signup", Encrypt),
    ("/%73ignup", Encrypt),
    ("/%2fsignup", Encrypt),
    ("/%5Csignup", Encrypt),
    ("\\signup", Encrypt),
    ("/%C5%BFignup", Encrypt), // ſ: upper-cases to S
    ("/api/x", Encrypt),
    ("/api//x", Encrypt),
    ("/%61pi/x", Encrypt),
    ("/api\\x", Encrypt),
    ("/API/x", Encrypt),
    ("/api/", Encrypt),
    ("/api%2Fx", Encrypt),
    ("/api/../api/x", Encrypt),
    // Exclusions: only plain spellings, compared case-sensitively.
    ("/api/health", Pass),
    ("/api/health/", Pass),
    ("/API/health", Encrypt),
    ("/api/Health", Encrypt),
    ("/api/%68ealth", Encrypt),
    ("/api%2Fhealth", Encrypt),
    ("/api%2fhealth", Encrypt),
    ("/api%5Chealth", Encrypt),
    ("/api\\health", Encrypt),
    ("/api/health;x", Encrypt),
    ("/api/health%3Bx", Encrypt),
    ("/api//health", Encrypt),
    ("/api/./health", Encrypt),
    ("/api/x/../health", Encrypt),
    ("/api/health%2e", Encrypt),
    // Not covered at all.
    ("/", Pass),
    ("/other", Pass),
    ("/signupx", Pass),
    ("/signup/x", Pass),
    ("/api", Pass),
    ("/x/signup", Pass),
    // Unreadable paths.
    ("/signup%00", Invalid),
    ("/%00/../signup", Invalid),
    ("/api/x%zz", Invalid),
    ("/api/x%4", Invalid),
    ("/other%0a", Invalid),
    ("/api/\u{7f}", Invalid),
];

/// Same spellings with `uri_case = "sensitive"`.
const SENSITIVE_CASES: &[(&str, Expect)] = &[
    ("/signup", Encrypt),
    ("/signup/", Encrypt),
    ("/%73ignup", Encrypt),
    ("/x/../signup", Encrypt),
    ("/api/x", Encrypt),
    ("/Signup", Pass),
    ("/SIGNUP", Pass),
    ("/API/x", Pass),
    ("/api/health", Pass),
    ("/API/health", Pass),
    ("/api/Health", Encrypt),
];

fn check(edge: &EdgeEncryptor, method: &str, uri: &str, expect: Expect) {
    let input = event(method, uri);
    match (edge.handle_event(&input), expect) {
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
                        key.decrypt_envelope(&f.envelope)
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
            },
            Invalid,
        ) => {
            assert_eq!(
                (rejection.status, rejection.code),
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
    for &(uri, expect) in CASES {
        check(&edge, "POST", uri, expect);
    }
}

#[test]
fn case_sensitive_includes() {
    let edge = edge(&format!("{RULES}\nuri_case = \"sensitive\"")).unwrap();
    for &(uri, expect) in SENSITIVE_CASES {
        check(&edge, "POST", uri, expect);
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
