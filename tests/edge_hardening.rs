//! The edge against lenient origins (issue 11), each case run three ways with one expectation:
//! the native core (`EdgeEncryptor::handle_event`), `fle encrypt-event`, and the Lambda@Edge
//! package under Node (the wasm core, with Node's RSA). A forwarded request must carry none of
//! the case's secrets in clear, in the body or the query string, and its envelopes must decrypt
//! back to them; a refused one must be the expected generated response.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use common::*;
use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::backend;
use serde_json::{json, Value};

const FIELDS: &str =
    r#"fields = ["fname", "lname", "email", "ssn", "dob", "phone", "first_name", "$.card.number"]"#;
const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
/// 80 base64 characters: a payload long enough for the generic envelope rule.
const B64: &str =
    "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3";

fn config(extra: &str) -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\n{FIELDS}\n{extra}\n",
        root().join("keys/demo-01.pub.pem").to_str().unwrap()
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Forwarded with this many values encrypted.
    Forward(usize),
    /// Answered with this status and code.
    Refuse(u16, &'static str),
}
use Expect::*;

struct Case {
    name: &'static str,
    /// Extra `[edge]` lines.
    extra: &'static str,
    query: String,
    content_type: Option<&'static str>,
    body: String,
    expect: Expect,
    /// Values that must never be forwarded in clear.
    secrets: Vec<&'static str>,
}

fn case(name: &'static str, ct: Option<&'static str>, body: &str, expect: Expect) -> Case {
    Case {
        name,
        extra: "",
        query: String::new(),
        content_type: ct,
        body: body.to_owned(),
        expect,
        secrets: vec![],
    }
}

impl Case {
    fn extra(mut self, extra: &'static str) -> Self {
        self.extra = extra;
        self
    }
    fn query(mut self, query: &str) -> Self {
        self.query = query.to_owned();
        self
    }
    fn secrets(mut self, secrets: &[&'static str]) -> Self {
        self.secrets = secrets.to_vec();
        self
    }

    fn event(&self) -> Value {
        let mut headers = json!({"host": [{"key": "Host", "value": "api.example.com"}]});
        if let Some(ct) = self.content_type {
            headers["content-type"] = json!([{"key": "Content-Type", "value": ct}]);
        }
        json!({"Records": [{"cf": {
            "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
            "request": {
                "clientIp": "203.0.113.178",
                "method": "POST",
                "uri": "/api/people",
                "querystring": self.query,
                "headers": headers,
                "body": {"inputTruncated": false, "action": "read-only", "encoding": "base64",
                         "data": base64::engine::general_purpose::STANDARD.encode(&self.body)}
            }
        }}]})
    }

    /// Checks one runner's result against the expectation.
    fn check(&self, runner: &str, result: &Value) {
        let what = format!("{} ({runner})", self.name);
        if let Some(status) = result.get("status") {
            let body: Value = serde_json::from_str(result["body"].as_str().unwrap()).unwrap();
            let got = (
                status.as_str().unwrap().parse::<u16>().unwrap(),
                body["error"].as_str().unwrap().to_owned(),
            );
            for secret in &self.secrets {
                assert!(
                    !result.to_string().contains(secret),
                    "{what}: secret in the response"
                );
            }
            match self.expect {
                Refuse(s, c) => assert_eq!(got, (s, c.to_owned()), "{what}"),
                Forward(_) => panic!("{what}: expected forwarding, got {got:?}"),
            }
            return;
        }
        let Forward(n) = self.expect else {
            panic!(
                "{what}: expected {:?}, got a forwarded request",
                self.expect
            )
        };
        let query = result["querystring"].as_str().unwrap_or("");
        let body = if result["body"]["action"] == "replace" {
            result["body"]["data"].as_str().unwrap().to_owned()
        } else {
            self.body.clone()
        };
        for secret in &self.secrets {
            assert!(
                !body.contains(secret) && !query.contains(secret),
                "{what}: {secret} in clear"
            );
        }
        let decode = |t: &str| {
            String::from_utf8(fle_shared::body::form::decode(t, 0).unwrap().into_owned()).unwrap()
        };
        let body_text = if self.content_type == FORM {
            decode(&body)
        } else {
            body
        };
        let mut plaintexts = demo_decrypt(&body_text);
        plaintexts.extend(demo_decrypt(&decode(query)));
        assert_eq!(plaintexts.len(), n, "{what}: envelopes");
        for secret in &self.secrets {
            assert!(
                plaintexts.iter().any(|p| p.contains(secret)),
                "{what}: {secret} not among the decrypted values"
            );
        }
    }
}

fn cases() -> Vec<Case> {
    let fullwidth: String = "#01#"
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
        .collect();
    vec![
        // Content-type confusion.
        case(
            "JSON declared as form",
            FORM,
            r#"{"ssn":"123-45-6789"}"#,
            Refuse(400, "content_type_mismatch"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "pairs split at ';'",
            FORM,
            "note=a;ssn=123-45-6789",
            Refuse(400, "content_type_mismatch"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "raw space in form",
            FORM,
            "note=a b&ssn=1",
            Refuse(400, "content_type_mismatch"),
        ),
        case(
            "JSON read as form",
            JSON,
            r#"{"note":"x&ssn=123-45-6789"}"#,
            Refuse(400, "content_type_mismatch"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "JSON read as form, one pair",
            JSON,
            r#"{"x":"y[ssn]=123-45-6789"}"#,
            Refuse(400, "content_type_mismatch"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "JSON read as form, Rack 2 name",
            JSON,
            r#"{"a":"x&]ssn=123-45-6789"}"#,
            Refuse(400, "content_type_mismatch"),
        ),
        case(
            "JSON with '=' and '&' but no field name",
            JSON,
            r#"{"ssn":"123-45-6789","url":"https://x.example/?a=b&c=d.e"}"#,
            Forward(1),
        )
        .secrets(&["123-45-6789"]),
        case(
            "JSON read as form, ';'",
            JSON,
            r#"{"note":"x;SSN=123-45-6789"}"#,
            Refuse(400, "content_type_mismatch"),
        ),
        case(
            "JSON as text/plain",
            Some("text/plain"),
            r#"{"ssn":"123-45-6789"}"#,
            Refuse(415, "unsupported_content_type"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "form as it should be",
            FORM,
            "ssn=123-45-6789&note=hi%21",
            Forward(1),
        )
        .secrets(&["123-45-6789"]),
        case(
            "JSON with & elsewhere",
            JSON,
            r#"{"note":"fish & chips=good","ssn":"123-45-6789"}"#,
            Forward(1),
        )
        .secrets(&["123-45-6789"]),
        // Names as origins read them, default mode "exact".
        case(
            "upper case member",
            JSON,
            r#"{"SSN":"123-45-6789"}"#,
            Refuse(400, "ambiguous_field_name"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "long s member",
            JSON,
            "{\"\u{17F}sn\":\"123-45-6789\"}",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "escaped long s",
            JSON,
            r#"{"\u017fsn":"123-45-6789"}"#,
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "kelvin sign in a path",
            JSON,
            r#"{"Card":{"number":"4111111111111111"}}"#,
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "bracket form name",
            FORM,
            "user%5Bssn%5D=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "raw bracket form name",
            FORM,
            "user[ssn]=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "array form name",
            FORM,
            "ssn[]=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        // Rack 2 (leading brackets, trailing ']'), qs allowDots ('.ssn'), PHP's NUL cut,
        // Spring's '!' prefix and quoted map keys.
        case(
            "Rack 2 leading bracket",
            FORM,
            "%5Dssn=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        )
        .secrets(&["123-45-6789"]),
        case(
            "qs leading dot",
            FORM,
            ".ssn=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "PHP NUL cut",
            FORM,
            "ssn%00x=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "Spring default prefix",
            FORM,
            "!ssn=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "Spring quoted map key",
            FORM,
            "user%5B%27ssn%27%5D=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "PHP dot mangling",
            FORM,
            "first.name=Jo",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "PHP leading space",
            FORM,
            "%20first_name=Jo",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "form path reading",
            FORM,
            "card%5Bnumber%5D=4111",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "name without value",
            FORM,
            "SSN&a=1",
            Refuse(400, "ambiguous_field_name"),
        ),
        case(
            "case-insensitive mode",
            JSON,
            r#"{"SSN":"123-45-6789","Card":{"NUMBER":"4111111111111111"}}"#,
            Forward(2),
        )
        .extra(r#"names = "case-insensitive""#)
        .secrets(&["123-45-6789", "4111111111111111"]),
        case(
            "case-insensitive mode, brackets",
            FORM,
            "user%5Bssn%5D=123-45-6789",
            Refuse(400, "ambiguous_field_name"),
        )
        .extra(r#"names = "case-insensitive""#),
        case(
            "origin mode",
            FORM,
            "user%5Bssn%5D=123-45-6789&first.name=Jo&ssn[]=987-65-4321&x=1",
            Forward(3),
        )
        .extra(r#"names = "origin""#)
        .secrets(&["123-45-6789", "987-65-4321"]),
        // Query strings.
        case(
            "field in the query",
            JSON,
            "{}",
            Refuse(400, "field_in_query"),
        )
        .query("ssn=123-45-6789")
        .secrets(&["123-45-6789"]),
        case(
            "look-alike in the query",
            JSON,
            "{}",
            Refuse(400, "ambiguous_field_name"),
        )
        .query("a=1&user%5Bssn%5D=123-45-6789"),
        case(
            "Rack 2 name in the query",
            JSON,
            "{}",
            Refuse(400, "ambiguous_field_name"),
        )
        .query("%5Dssn=123-45-6789"),
        case("query after ';'", JSON, "{}", Refuse(400, "field_in_query"))
            .query("a=1;ssn=123-45-6789"),
        case(
            "query encrypted",
            JSON,
            r#"{"ssn":"111-11-1111"}"#,
            Forward(2),
        )
        .extra(r#"query = "encrypt""#)
        .query("page=2&ssn=123-45-6789")
        .secrets(&["123-45-6789", "111-11-1111"]),
        case("query without fields", JSON, "{}", Forward(0)).query("page=2&sort=name"),
        case(
            "envelope in the query",
            JSON,
            "{}",
            Refuse(400, "marker_injection"),
        )
        .query(&format!("note=%2307%23{B64}")),
        // Foreign envelopes.
        case(
            "other key's envelope",
            JSON,
            &format!(r##"{{"note":"#02#{B64}#20#"}}"##),
            Refuse(400, "marker_injection"),
        ),
        case(
            "custom marker id",
            JSON,
            &format!(r##"{{"note":"x #old-key#{B64}"}}"##),
            Refuse(400, "marker_injection"),
        ),
        case(
            "retired marker",
            JSON,
            r#"{"note":"ENC[abc"}"#,
            Refuse(400, "marker_injection"),
        )
        .extra(r#"retired_markers = ["ENC["]"#),
        case(
            "fullwidth own marker",
            JSON,
            &format!(r#"{{"note":"{fullwidth}{B64}"}}"#),
            Refuse(400, "marker_injection"),
        ),
        case(
            "fullwidth in a form",
            FORM,
            &format!("note=%EF%BC%83%EF%BC%90%EF%BC%91%EF%BC%83{B64}"),
            Refuse(400, "marker_injection"),
        ),
        case(
            "hash tags are fine",
            JSON,
            r##"{"note":"#1# and #two# things"}"##,
            Forward(0),
        ),
        // The reserved JSON-value tag, everywhere.
        case(
            "tag in JSON",
            JSON,
            r#"{"ssn":"\u0000{\"a\":1}"}"#,
            Refuse(400, "reserved_value"),
        ),
        case(
            "tag in a form",
            FORM,
            "ssn=%00%7B%22a%22%3A1%7D",
            Refuse(400, "reserved_value"),
        ),
        case(
            "tag in the query",
            JSON,
            "{}",
            Refuse(400, "reserved_value"),
        )
        .extra(r#"query = "encrypt""#)
        .query("ssn=%00123"),
        // What on_unparseable = "pass" used to forward.
        case(
            "lone surrogate",
            JSON,
            r#"{"ssn":"123-45-6789\ud800"}"#,
            Refuse(400, "invalid_body"),
        ),
        case(
            "valid but deep",
            JSON,
            &format!(
                "{}{{\"ssn\":\"123-45-6789\"}}{}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            Refuse(400, "body_too_deep"),
        )
        .secrets(&["123-45-6789"]),
        // Resource exhaustion.
        case(
            "too many values",
            JSON,
            &dense_json(80_000),
            Refuse(413, "too_many_values"),
        ),
        case(
            "over the body limit early",
            JSON,
            &dense_json(80_000),
            Refuse(413, "body_too_large"),
        )
        .extra("max_encrypted_values = 100000"),
        case(
            "form: too many values",
            FORM,
            &"ssn=1&".repeat(150_000),
            Refuse(413, "too_many_values"),
        ),
        case(
            "body over the limit",
            JSON,
            &format!(r#"{{"note":"{}"}}"#, "x".repeat(2000)),
            Refuse(413, "body_too_large"),
        )
        .extra("max_body_bytes = 1000"),
        case("cap respected", JSON, &dense_json(3), Forward(3)).extra("max_encrypted_values = 3"),
        case(
            "cap exceeded by one",
            JSON,
            &dense_json(4),
            Refuse(413, "too_many_values"),
        )
        .extra("max_encrypted_values = 3"),
    ]
}

/// `{"a":[{"ssn":"1"},...]}` with `n` selected one-byte values.
fn dense_json(n: usize) -> String {
    let mut s = String::from(r#"{"a":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r#"{"ssn":"1"}"#);
    }
    s.push_str("]}");
    s
}

/// The cases grouped by configuration.
fn by_config(cases: &[Case]) -> BTreeMap<&'static str, Vec<&Case>> {
    let mut groups: BTreeMap<&'static str, Vec<&Case>> = BTreeMap::new();
    for c in cases {
        groups.entry(c.extra).or_default().push(c);
    }
    groups
}

#[test]
fn native_core() {
    let cases = cases();
    for (extra, group) in by_config(&cases) {
        let edge = EdgeEncryptor::from_toml_str(
            &config(extra),
            Path::new("/"),
            backend::default_backend(),
        )
        .unwrap();
        for c in group {
            c.check("native", &edge.handle_event(&c.event()).into_value());
        }
    }
}

#[test]
fn fle_encrypt_event() {
    let cases = cases();
    let dir = tempfile::tempdir().unwrap();
    for (extra, group) in by_config(&cases) {
        std::fs::write(dir.path().join("fle.toml"), config(extra)).unwrap();
        let input: String = group.iter().map(|c| format!("{}\n", c.event())).collect();
        let out = run_fle(
            dir.path(),
            &["encrypt-event", "--config", "fle.toml"],
            &input,
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let results: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            results.len(),
            group.len(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (c, result) in group.iter().zip(&results) {
            c.check("fle encrypt-event", result);
        }
    }
}

#[test]
fn lambda_edge_package() {
    require!(Tool::Node);
    let cases = cases();
    for (extra, group) in by_config(&cases) {
        let dir = tempfile::tempdir().unwrap();
        let (package, _, _) = build_lambda_edge_package(dir.path(), &config(extra));
        let events: Vec<Value> = group.iter().map(|c| c.event()).collect();
        let (backend, results, _) = run_lambda_edge(&package, &events, true);
        assert_eq!(backend, "node-crypto");
        for (c, result) in group.iter().zip(&results) {
            c.check("Lambda@Edge package", result);
        }
    }
}

/// The package stays under Lambda@Edge's default 128 MB on the worst bodies CloudFront can
/// deliver: a 1 MB body dense with tiny selected values (refused early, by the cap or by the
/// size limit) and the largest body forwarded.
#[test]
fn lambda_edge_package_memory() {
    require!(Tool::Node);
    let dir = tempfile::tempdir().unwrap();
    let (package, _, _) =
        build_lambda_edge_package(dir.path(), &config("max_encrypted_values = 100000"));
    let events: Vec<Value> = [
        case(
            "dense",
            JSON,
            &dense_json(80_000),
            Refuse(413, "body_too_large"),
        ),
        case(
            "dense form",
            FORM,
            &"ssn=1&".repeat(160_000),
            Refuse(413, "body_too_large"),
        ),
        case(
            "largest forwarded",
            JSON,
            &format!(r#"{{"note":"{}","ssn":"1"}}"#, "x".repeat(990_000)),
            Forward(1),
        ),
    ]
    .iter()
    .map(|c| {
        let e = c.event();
        let (_, results, _) = run_lambda_edge(&package, std::slice::from_ref(&e), true);
        c.check("Lambda@Edge package", &results[0]);
        e
    })
    .collect();
    let (_, results, rss) = run_lambda_edge(&package, &events, true);
    assert_eq!(results.len(), 3);
    eprintln!(
        "Lambda@Edge package peak RSS over the worst bodies: {} MiB",
        rss >> 20
    );
    assert!(rss < 128 << 20, "peak RSS {} MiB", rss >> 20);
}

#[test]
fn selectors_that_can_never_match_are_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fle.toml"),
        config("").replace(FIELDS, r#"fields = ["card.number"]"#),
    )
    .unwrap();
    let out = run_fle(dir.path(), &["encrypt-event", "--config", "fle.toml"], "");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("$.card.number"), "{err}");
    let out = run_fle(
        dir.path(),
        &[
            "encrypt",
            "--public-key",
            root().join("keys/demo-01.pub.pem").to_str().unwrap(),
            "--fields",
            "user[ssn]",
        ],
        "{}",
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
