//! The edge with envelope version 2: a P-256 key, and an RSA key set to `envelope = "v2"`. One
//! encapsulation per key per request (query string and body together), a fresh one for the next
//! request, and every value opens alone with the private key to what the client sent.

use std::collections::HashSet;

use base64::Engine;
use fle_edge_encryptor::{EdgeEncryptor, Outcome};
use fle_shared::backend::{self, Backend};
use fle_shared::{Envelope, PrivateKey, ScanItem};
use serde_json::{json, Value};

const FIELDS: &str = r#"["fname", "lname", "email", "ssn", "dob", "phone"]"#;

fn edge(key: &str, envelope: &str, backend: &'static dyn Backend) -> EdgeEncryptor {
    let toml = format!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n{envelope}\n\
         [[keys]]\nid = \"02\"\npublic_key = \"keys/demo-02.pub.pem\"\n\
         [edge]\nkey = \"{key}\"\nfields = {FIELDS}\nquery = \"encrypt\"\n"
    );
    EdgeEncryptor::from_toml_str(&toml, fle_test_support::root(), backend).unwrap()
}

fn private(id: &str) -> PrivateKey {
    let file = match id {
        "01" => "keys/demo-01.key.pem",
        _ => "keys/demo-02.key.pem",
    };
    PrivateKey::from_pem(&std::fs::read_to_string(fle_test_support::root().join(file)).unwrap())
        .unwrap()
}

fn reference_event(query: &str) -> Value {
    let path = fle_test_support::root().join("tests/fixtures/events/reference-3x6.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["Records"][0]["cf"]["request"]["querystring"] = json!(query);
    event
}

/// The body text of a request (`Records[0].cf.request` of an event, or a forwarded request).
fn body_of(request: &Value) -> String {
    let body = &request["body"];
    match body["encoding"].as_str() {
        Some("base64") => String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(body["data"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap(),
        _ => body["data"].as_str().unwrap().to_owned(),
    }
}

/// Every envelope of `text`: (key id, encapsulation, plaintext).
fn open_all(edge: &EdgeEncryptor, text: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    edge.keyring()
        .scanner()
        .scan_str(text)
        .map(|item| match item {
            ScanItem::Envelope(f) => {
                let Envelope::V2(token) = &f.envelope else {
                    panic!("not version 2: {:?}", f.envelope)
                };
                let plain = private(f.key.as_str())
                    .decrypt_envelope(f.key, &f.envelope)
                    .unwrap();
                (
                    f.key.to_string(),
                    token.encapsulation().to_vec(),
                    plain.as_bytes().to_vec(),
                )
            }
            ScanItem::Malformed(m) => panic!("malformed {m:?}"),
        })
        .collect()
}

fn forwarded(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Forward { request, .. } => request,
        Outcome::Respond { rejection, .. } => panic!("rejected: {rejection:?}"),
    }
}

#[test]
fn one_encapsulation_per_request_and_key_on_every_backend() {
    for (key, envelope) in [("02", ""), ("01", "envelope = \"v2\"")] {
        for backend in backend::all_backends() {
            let edge = edge(key, envelope, backend);
            let mut seen = HashSet::new();
            for _ in 0..2 {
                let input = reference_event("ssn=111-22-3333&page=2");
                let original = body_of(&input["Records"][0]["cf"]["request"]);
                let request = forwarded(edge.handle_event(&input));
                let body = body_of(&request);
                let query = request["querystring"].as_str().unwrap();
                let query = percent_decode(query);
                let mut opened = open_all(&edge, &query);
                opened.extend(open_all(&edge, &body));
                assert_eq!(opened.len(), 19, "18 body values and 1 query value");
                let encaps: HashSet<_> = opened.iter().map(|(_, e, _)| e.clone()).collect();
                assert_eq!(encaps.len(), 1, "one encapsulation for the whole request");
                assert!(opened.iter().all(|(k, _, _)| k == key));
                // A new request, a new encapsulation.
                assert!(seen.insert(encaps.into_iter().next().unwrap()));
                assert_eq!(opened[0].2, b"111-22-3333");
                for (_, _, plain) in &opened[1..] {
                    let plain = std::str::from_utf8(plain).unwrap();
                    let escaped = serde_json::to_string(plain).unwrap();
                    assert!(
                        original.contains(&escaped[1..escaped.len() - 1]),
                        "{plain:?} was not a value of the request"
                    );
                }
            }
        }
    }
}

#[test]
fn version_2_takes_values_longer_than_rsa_oaep_can() {
    let edge = edge("02", "", backend::default_backend());
    let long = "x".repeat(64 * 1024);
    let body = json!({ "ssn": long, "fname": "Jo" }).to_string();
    let input = json!({"Records": [{"cf": {
        "config": {"distributionId": "E", "eventType": "origin-request", "requestId": "r"},
        "request": {
            "clientIp": "203.0.113.1", "method": "POST", "uri": "/api/people", "querystring": "",
            "headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]},
            "body": {"inputTruncated": false, "action": "read-only", "encoding": "text", "data": body}
        }
    }}]});
    let out = forwarded(edge.handle_event(&input));
    let opened = open_all(&edge, &body_of(&out));
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[0].2, long.as_bytes());
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
