//! Replays the committed seeds of the `edge_event` and `differential` fuzz targets
//! (`fuzz/corpus/`) that describe events through the native core (aws-lc) and through the
//! Lambda@Edge package (the wasm core under `node`, with Node's RSA and with the module's own),
//! and asserts the same verdict: the same status and rejection code, or both forwarded with
//! the same body and query string once envelopes are masked.
//!
//! A seed is `[config byte][shape byte][rest]` as in `fuzz/src/lib.rs` (`event_of`): shape 0 is
//! the JSON text of an event; any other shape is `URI[?QUERY]\nBODY` in an event template. The
//! package is built once, for the first of the fuzz configurations (the config byte is
//! ignored).

mod common;

use std::path::Path;

use base64::Engine;
use common::*;
use fle_edge_encryptor::{EdgeEncryptor, Outcome};
use fle_shared::{backend, Keyring, ScanItem};
use serde_json::{json, Value};

/// `fle_fuzz::EDGE_TABLES[0]`.
const EDGE_TABLE: &str = "fields = [\"ssn\", \"email\", \"$.card.number\"]\n";
/// `fle_fuzz::METHODS` and `fle_fuzz::TYPES`.
const METHODS: [&str; 4] = ["POST", "PUT", "GET", "patch"];
const TYPES: [Option<&str>; 6] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/vnd.api+json; charset=UTF-8"),
    Some("text/plain"),
    None,
    Some("application/json; charset=latin1"),
];

/// `fle_fuzz::event_of`.
fn event_of(shape: u8, rest: &[u8]) -> Option<Value> {
    if shape == 0 {
        return serde_json::from_slice(rest).ok();
    }
    let (head, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(n) => (&rest[..n], &rest[n + 1..]),
        None => (&b"/api/people"[..], rest),
    };
    let head = String::from_utf8_lossy(head);
    let (uri, query) = head.split_once('?').unwrap_or((&head, ""));
    let shape = usize::from(shape - 1);
    let mut headers = json!({"host": [{"key": "Host", "value": "api.example.com"}]});
    if let Some(ct) = TYPES[(shape / 4) % 6] {
        headers["content-type"] = json!([{"key": "Content-Type", "value": ct}]);
    }
    let (encoding, data) = if (shape / 24) % 2 == 1 {
        (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(body),
        )
    } else {
        ("text", String::from_utf8_lossy(body).into_owned())
    };
    Some(json!({"Records": [{"cf": {
        "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
        "request": {
            "clientIp": "203.0.113.178",
            "method": METHODS[shape % 4],
            "uri": uri,
            "querystring": query,
            "headers": headers,
            "body": {"inputTruncated": false, "action": "read-only", "encoding": encoding, "data": data}
        }
    }}]}))
}

/// Every envelope replaced by `<ENV>`.
fn mask(keyring: &Keyring, text: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for item in keyring.scanner().scan_str(text) {
        if let ScanItem::Envelope(f) = item {
            out.push_str(&text[at..f.span.start]);
            out.push_str("<ENV>");
            at = f.span.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Forward { body: Option<String>, query: String },
    Respond { status: u16, code: String },
}

fn forwarded(keyring: &Keyring, request: &Value) -> Verdict {
    Verdict::Forward {
        body: request
            .pointer("/body/data")
            .and_then(Value::as_str)
            .map(|d| mask(keyring, d)),
        query: mask(
            keyring,
            request
                .get("querystring")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
    }
}

fn native_verdict(edge: &EdgeEncryptor, event: &Value) -> Verdict {
    match edge.handle_event(event) {
        Outcome::Forward { request, .. } => forwarded(edge.keyring(), &request),
        Outcome::Respond { rejection, .. } => Verdict::Respond {
            status: rejection.status(),
            code: rejection.code().to_owned(),
        },
    }
}

/// The handler's result: a generated response has a `status`, a forwarded request does not.
fn package_verdict(keyring: &Keyring, result: &Value) -> Verdict {
    match result.get("status") {
        Some(status) => {
            let body: Value =
                serde_json::from_str(result["body"].as_str().unwrap_or("{}")).unwrap_or_default();
            Verdict::Respond {
                status: status.as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
                code: body["error"].as_str().unwrap_or("").to_owned(),
            }
        }
        None => forwarded(keyring, result),
    }
}

fn seeds(target: &str) -> Vec<(String, Value)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let [_, shape, rest @ ..] = &bytes[..] else {
                return None;
            };
            let event = event_of(*shape, rest)?;
            Some((format!("{target}/{}", path.file_name()?.to_str()?), event))
        })
        .collect()
}

#[test]
fn fuzz_seeds_give_the_same_verdict_natively_and_in_the_lambda_edge_package() {
    require!(Tool::Node);
    let config = format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n[edge]\nkey = \"01\"\n{EDGE_TABLE}",
        root().join("keys/demo-01.pub.pem").to_str().unwrap(),
    );
    let edge =
        EdgeEncryptor::from_toml_str(&config, Path::new("."), backend::default_backend()).unwrap();
    let mut cases = seeds("edge_event");
    cases.extend(seeds("differential"));
    assert!(cases.len() >= 10, "too few seeds: {}", cases.len());
    let events: Vec<Value> = cases.iter().map(|(_, e)| e.clone()).collect();

    let dir = tempfile::tempdir().unwrap();
    let (package, _, _) = build_lambda_edge_package(dir.path(), &config);
    let mut forwarded_with_values = 0;
    for host_rsa in [true, false] {
        let (backend, results, _) = run_lambda_edge(&package, &events, host_rsa);
        assert_eq!(
            results.len(),
            events.len(),
            "one result per event ({backend})"
        );
        for ((name, event), result) in cases.iter().zip(&results) {
            let native = native_verdict(&edge, event);
            let wasm = package_verdict(edge.keyring(), result);
            assert_eq!(
                native, wasm,
                "{name}: native and package ({backend}) disagree"
            );
            if matches!(&native, Verdict::Forward { body: Some(b), .. } if b.contains("<ENV>")) {
                forwarded_with_values += 1;
            }
        }
    }
    assert!(forwarded_with_values > 0, "no seed had a value encrypted");
}
