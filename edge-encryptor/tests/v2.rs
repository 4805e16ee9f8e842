//! The edge with envelope version 2: a P-256 key, and an RSA key set to `envelope = "v2"`. One
//! encapsulation per key per request (query string and body together), a fresh one for the next
//! request, and every value opens alone with the private key to what the client sent. With
//! `reuse_encapsulation`, one encapsulation across requests within its limits (a driven clock),
//! its index never repeating.

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

// ---- reuse_encapsulation ----

/// A clock the test moves by hand.
#[derive(Debug, Clone, Default)]
struct TestClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl fle_edge_encryptor::Clock for TestClock {
    fn now_ms(&self) -> Option<u64> {
        Some(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A clock that has no time.
#[derive(Debug)]
struct NoClock;

impl fle_edge_encryptor::Clock for NoClock {
    fn now_ms(&self) -> Option<u64> {
        None
    }
}

fn reuse_toml(key: &str, envelope: &str, reuse: &str) -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n{envelope}\n\
         [[keys]]\nid = \"02\"\npublic_key = \"keys/demo-02.pub.pem\"\n\
         [edge]\nkey = \"{key}\"\nfields = {FIELDS}\nquery = \"encrypt\"\n{reuse}\n"
    )
}

fn reuse_edge(key: &str, envelope: &str, reuse: &str) -> Result<EdgeEncryptor, String> {
    EdgeEncryptor::from_toml_str(
        &reuse_toml(key, envelope, reuse),
        fle_test_support::root(),
        backend::default_backend(),
    )
    .map_err(|e| e.to_string())
}

/// One request through `edge`: every value opened with the private key and checked against
/// what the client sent; returns (encapsulation, index) of each token.
fn one_request(edge: &EdgeEncryptor) -> Vec<(Vec<u8>, u32)> {
    let input = reference_event("ssn=111-22-3333&page=2");
    let original = body_of(&input["Records"][0]["cf"]["request"]);
    let request = forwarded(edge.handle_event(&input));
    let text = format!(
        "{} {}",
        percent_decode(request["querystring"].as_str().unwrap()),
        body_of(&request)
    );
    let opened = open_all(edge, &text);
    assert_eq!(opened.len(), 19, "18 body values and 1 query value");
    assert_eq!(opened[0].2, b"111-22-3333");
    for (_, _, plain) in &opened[1..] {
        let escaped = serde_json::to_string(std::str::from_utf8(plain).unwrap()).unwrap();
        assert!(original.contains(&escaped[1..escaped.len() - 1]));
    }
    edge.keyring()
        .scanner()
        .scan_str(&text)
        .map(|item| match item {
            ScanItem::Envelope(f) => match &f.envelope {
                Envelope::V2(token) => (token.encapsulation().to_vec(), token.index()),
                other => panic!("not version 2: {other:?}"),
            },
            ScanItem::Malformed(m) => panic!("malformed {m:?}"),
        })
        .collect()
}

/// The one encapsulation of a request's tokens.
fn only_encap(tokens: &[(Vec<u8>, u32)]) -> Vec<u8> {
    let encaps: HashSet<_> = tokens.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(encaps.len(), 1, "one encapsulation per request");
    encaps.into_iter().next().unwrap()
}

#[test]
fn off_by_default() {
    let edge = edge("02", "", backend::default_backend());
    assert_eq!(edge.config().reuse_encapsulation, None);
    let a = only_encap(&one_request(&edge));
    let b = only_encap(&one_request(&edge));
    assert_ne!(
        a, b,
        "without reuse_encapsulation every request makes its own"
    );
}

#[test]
fn reuse_within_limits_then_new_after_m_requests_and_after_n_seconds() {
    for (key, envelope) in [("02", ""), ("01", "envelope = \"v2\"")] {
        let clock = TestClock::default();
        let edge = reuse_edge(
            key,
            envelope,
            "reuse_encapsulation = { seconds = 60, requests = 3 }",
        )
        .unwrap()
        .with_clock(clock.clone());
        let reuse = edge.config().reuse_encapsulation.unwrap();
        assert_eq!((reuse.seconds, reuse.requests), (60, 3));

        // Three requests (the limit) share one encapsulation; the index goes on across them.
        let mut shared = Vec::new();
        for now in [0, 1_000, 59_999] {
            clock.set(now);
            shared.extend(one_request(&edge));
        }
        let first = only_encap(&shared);
        let indexes: Vec<u32> = shared.iter().map(|(_, i)| *i).collect();
        assert_eq!(indexes, (0..57).collect::<Vec<u32>>(), "{key}");

        // The fourth request, within the age limit: a new encapsulation (requests = 3).
        clock.set(59_999);
        let fourth = one_request(&edge);
        let second = only_encap(&fourth);
        assert_ne!(second, first);
        assert_eq!(fourth[0].1, 0, "a new encapsulation counts from 0");

        // It serves requests younger than 60 s (born at 59,999 ms) ...
        clock.set(59_999 + 59_999);
        let fifth = one_request(&edge);
        assert_eq!(only_encap(&fifth), second);
        assert_eq!(fifth[0].1, 19);
        // ... and not one 60 s after it was made.
        clock.set(59_999 + 60_000);
        let third = only_encap(&one_request(&edge));
        assert!(third != first && third != second, "{key}");

        // A clock going backwards expires it too (fail closed).
        clock.set(1_000);
        let fourth_encap = only_encap(&one_request(&edge));
        assert!(![&first, &second, &third].contains(&&fourth_encap));
    }
}

#[test]
fn one_request_limit_and_no_clock_mean_no_reuse() {
    let edge = reuse_edge(
        "02",
        "",
        "reuse_encapsulation = { seconds = 60, requests = 1 }",
    )
    .unwrap()
    .with_clock(TestClock::default());
    let mut seen = HashSet::new();
    for _ in 0..3 {
        assert!(seen.insert(only_encap(&one_request(&edge))));
    }

    // Without a time (wasm32 without the host's clock) nothing is reused.
    let edge = reuse_edge(
        "02",
        "",
        "reuse_encapsulation = { seconds = 60, requests = 1000 }",
    )
    .unwrap()
    .with_clock(NoClock);
    let mut seen = HashSet::new();
    for _ in 0..3 {
        assert!(seen.insert(only_encap(&one_request(&edge))));
    }
}

#[test]
fn reuse_with_the_default_clock() {
    let edge = reuse_edge(
        "02",
        "",
        "reuse_encapsulation = { seconds = 3600, requests = 1000 }",
    )
    .unwrap();
    let a = one_request(&edge);
    let b = one_request(&edge);
    assert_eq!(only_encap(&a), only_encap(&b));
    assert_eq!(b[0].1, 19);
}

#[test]
fn reuse_refused_for_version_1_keys_and_out_of_range() {
    let line = "reuse_encapsulation = { seconds = 60, requests = 1000 }";
    // Key 01 writes version 1: nothing to reuse, refused at load.
    let e = reuse_edge("01", "", line).unwrap_err();
    assert!(
        e.contains("reuse_encapsulation") && e.contains("version 1") && e.contains("01"),
        "{e}"
    );
    // One v1 field among v2 ones is enough.
    let toml = reuse_toml("02", "", line).replace(
        "fields = [\"fname\",",
        "fields = [{ name = \"iban\", key = \"01\" }, \"fname\",",
    );
    let e =
        EdgeEncryptor::from_toml_str(&toml, fle_test_support::root(), backend::default_backend())
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("reuse_encapsulation") && e.contains("iban"),
        "{e}"
    );
    // Allowed for an RSA key written as version 2 and for a P-256 key.
    reuse_edge("01", "envelope = \"v2\"", line).unwrap();
    reuse_edge("02", "", line).unwrap();

    for (reuse, expect) in [
        (
            "{ seconds = 0, requests = 10 }",
            "reuse_encapsulation.seconds = 0",
        ),
        (
            "{ seconds = 86401, requests = 10 }",
            "reuse_encapsulation.seconds = 86401",
        ),
        (
            "{ seconds = 60, requests = 0 }",
            "reuse_encapsulation.requests = 0",
        ),
        (
            "{ seconds = 60, requests = 1000001 }",
            "reuse_encapsulation.requests = 1000001",
        ),
        ("{ seconds = 60 }", "requests"),
        ("{ requests = 10 }", "seconds"),
        ("{ seconds = 60, requests = 10, bytes = 5 }", "bytes"),
        ("{ seconds = -1, requests = 10 }", "-1"),
        ("true", "reuse_encapsulation"),
    ] {
        let e = reuse_edge("02", "", &format!("reuse_encapsulation = {reuse}")).unwrap_err();
        assert!(e.contains(expect), "{reuse}: {e}");
    }
    // The extremes are allowed.
    reuse_edge(
        "02",
        "",
        "reuse_encapsulation = { seconds = 1, requests = 1 }",
    )
    .unwrap();
    reuse_edge(
        "02",
        "",
        "reuse_encapsulation = { seconds = 86400, requests = 1000000 }",
    )
    .unwrap();
}
