//! The edge encryptor's behaviour, one test per rule, decrypting what it forwards with the demo
//! private key.

mod common;

use base64::Engine;
use fle_edge_encryptor::{EdgeEncryptor, Outcome, Rejection, JSON_VALUE_TAG};
use fle_shared::backend::{self, Backend};
use fle_shared::{OaepPrivateKey, ScanItem};
use serde_json::{json, Value};

const DEMO_PRIVATE: &str = include_str!("../../keys/demo-01.key.pem");
const REFERENCE_FIELDS: &str = r#"["fname", "lname", "email", "ssn", "dob", "phone"]"#;

fn edge_with(extra: &str, backend: &'static dyn Backend) -> EdgeEncryptor {
    let dir = fle_test_support::root();
    let toml = format!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
         [[keys]]\nid = \"02\"\npublic_key = \"tests/fixtures/keys/rsa-3072.pub.pem\"\n\
         [edge]\nkey = \"01\"\n{extra}"
    );
    EdgeEncryptor::from_toml_str(&toml, dir, backend).unwrap()
}

fn make_edge(extra: &str) -> EdgeEncryptor {
    edge_with(extra, backend::default_backend())
}

fn reference_edge() -> EdgeEncryptor {
    make_edge(&format!("fields = {REFERENCE_FIELDS}\n"))
}

fn event(method: &str, content_type: Option<&str>, body: &str, base64: bool) -> Value {
    let mut headers = json!({"host": [{"key": "Host", "value": "api.example.com"}]});
    if let Some(ct) = content_type {
        headers["content-type"] = json!([{"key": "Content-Type", "value": ct}]);
    }
    let (encoding, data) = if base64 {
        (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(body),
        )
    } else {
        ("text", body.to_owned())
    };
    json!({"Records": [{"cf": {
        "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
        "request": {
            "clientIp": "203.0.113.178",
            "method": method,
            "uri": "/api/people",
            "querystring": "a=1",
            "headers": headers,
            "origin": {"custom": {"domainName": "origin.example.com", "port": 443, "protocol": "https"}},
            "body": {"inputTruncated": false, "action": "read-only", "encoding": encoding, "data": data}
        }
    }}]})
}

fn json_event(body: &str) -> Value {
    event("POST", Some("application/json"), body, true)
}

/// Decrypts every envelope in `text` with the demo key (key 01) and the 3072 fixture (key 02).
fn decrypt_all(edge: &EdgeEncryptor, text: &str) -> Vec<Vec<u8>> {
    let k01 = OaepPrivateKey::from_pem(DEMO_PRIVATE).unwrap();
    let (k02, _) = fle_test_support::key_pair(3072);
    edge.keyring()
        .scanner()
        .scan_str(text)
        .map(|item| match item {
            ScanItem::Envelope(f) => {
                let key = if f.key.as_str() == "01" { &k01 } else { &k02 };
                key.decrypt_envelope(f.key, &f.envelope)
                    .unwrap()
                    .as_bytes()
                    .to_vec()
            }
            ScanItem::Malformed(m) => panic!("malformed envelope {m:?}"),
        })
        .collect()
}

fn forwarded(outcome: Outcome) -> (Value, usize) {
    match outcome {
        Outcome::Forward { request, encrypted } => (request, encrypted),
        Outcome::Respond { rejection, .. } => panic!("rejected: {rejection:?}"),
    }
}

fn rejected(outcome: Outcome) -> (u16, &'static str, Value) {
    match outcome {
        Outcome::Respond {
            response,
            rejection,
            ..
        } => {
            // A valid Lambda@Edge generated response with a small JSON body.
            assert_eq!(response["status"], rejection.status().to_string());
            assert!(response["statusDescription"].is_string());
            assert_eq!(
                response["headers"]["content-type"][0]["value"],
                "application/json"
            );
            let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["error"], rejection.code());
            (rejection.status(), rejection.code(), response)
        }
        Outcome::Forward { .. } => panic!("forwarded"),
    }
}

const PEOPLE: &str = r#"[
  {"fname": "Jo \"JJ\"", "lname": "O'Neil", "email": "jo@example.com", "ssn": "123-45-6789", "dob": "1990-04-01", "phone": "+1 555 0100", "plan": "gold", "score": 1.50e+2},
  {"fname": "Ana", "lname": "Núñez ✓", "email": "ana@example.com", "ssn": "987-65-4321", "dob": "1985-12-31", "phone": "+34 600 000 000"},
  {"fname": "Li", "lname": "Wei", "email": "li@example.com", "ssn": "111-22-3333", "dob": "2000-01-01", "phone": "+86 10 0000 0000"}
]"#;

#[test]
fn reference_event_is_encrypted_and_decrypts_back_with_both_backends() {
    for backend in backend::all_backends() {
        let edge = edge_with(&format!("fields = {REFERENCE_FIELDS}\n"), backend);
        let input = json_event(PEOPLE);
        let (request, encrypted) = forwarded(common::handle(&edge, &input));
        assert_eq!(encrypted, 18);
        let body = &request["body"];
        assert_eq!(body["action"], "replace");
        assert_eq!(body["encoding"], "text");
        let text = body["data"].as_str().unwrap();
        for secret in [
            "123-45-6789",
            "O'Neil",
            "jo@example.com",
            "Núñez",
            "+1 555 0100",
        ] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
        // Everything but the encrypted values is byte for byte the same.
        assert!(text.contains(r#""plan": "gold", "score": 1.50e+2}"#));
        assert!(text.starts_with("[\n  {\"fname\": \"#01#"));
        // Every other request field is untouched.
        let original = &input["Records"][0]["cf"]["request"];
        for field in [
            "clientIp",
            "method",
            "uri",
            "querystring",
            "headers",
            "origin",
        ] {
            assert_eq!(request[field], original[field], "{field}");
        }
        let plain: Vec<String> = decrypt_all(&edge, text)
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect();
        assert_eq!(plain[0], "Jo \"JJ\"");
        assert_eq!(plain[7], "Núñez ✓");
        assert_eq!(plain.len(), 18);
        // Splicing the JSON-escaped plaintext back yields the original document.
        let mut restored = String::new();
        let mut last = 0;
        for (item, p) in edge.keyring().scanner().scan_str(text).zip(&plain) {
            let span = item.span();
            restored.push_str(&text[last..span.start]);
            let quoted = serde_json::to_string(p).unwrap();
            restored.push_str(&quoted[1..quoted.len() - 1]);
            last = span.end;
        }
        restored.push_str(&text[last..]);
        let a: Value = serde_json::from_str(&restored).unwrap();
        let b: Value = serde_json::from_str(PEOPLE).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn text_encoding_and_form_bodies() {
    let edge = reference_edge();
    let (request, n) = forwarded(common::handle(
        &edge,
        &event("POST", Some("application/json"), r#"{"ssn":"1"}"#, false),
    ));
    assert_eq!(n, 1);
    assert_eq!(
        decrypt_all(&edge, request["body"]["data"].as_str().unwrap()),
        vec![b"1".to_vec()]
    );

    let form = "fname=Jo+%22JJ%22&plan=gold&ssn=123-45-6789&empty=&flag&email=a%40b.c";
    let ev = event(
        "POST",
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        form,
        true,
    );
    let (request, n) = forwarded(common::handle(&edge, &ev));
    assert_eq!(n, 3);
    let out = request["body"]["data"].as_str().unwrap();
    assert!(
        out.contains("&plan=gold&ssn=%2301%23") && out.contains("&empty=&flag&email=%2301%23"),
        "{out}"
    );
    assert!(!out.contains("6789") && !out.contains('#') && !out.contains('+'));
    // Decode the form and decrypt.
    let decoded: Vec<(String, String)> = out
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| {
            (
                n.to_owned(),
                v.replace("%23", "#")
                    .replace("%2B", "+")
                    .replace("%2F", "/")
                    .replace("%3D", "="),
            )
        })
        .collect();
    let values: Vec<Vec<u8>> = decoded
        .iter()
        .flat_map(|(_, v)| decrypt_all(&edge, v))
        .collect();
    assert_eq!(
        values,
        vec![
            b"Jo \"JJ\"".to_vec(),
            b"123-45-6789".to_vec(),
            b"a@b.c".to_vec()
        ]
    );
}

#[test]
fn truncated_input_is_413_never_forwarded() {
    let edge = reference_edge();
    let mut ev = json_event(r#"{"ssn": "123-45-6789"#);
    ev["Records"][0]["cf"]["request"]["body"]["inputTruncated"] = json!(true);
    let (status, code, response) = rejected(common::handle(&edge, &ev));
    assert_eq!((status, code), (413, "input_truncated"));
    assert!(!response.to_string().contains("6789"));
}

#[test]
fn unparseable_bodies_and_content_types() {
    let edge = reference_edge();
    for bad in [
        r#"{"ssn": "1",}"#,
        r#"{"ssn": "1"} x"#,
        r#"{"ssn": '1'}"#,
        r#"{"ssn": NaN}"#,
        r#"{"ssn": "\ud800"}"#,
        "{\"ssn\": \"a\u{1}b\"}",
        r#"{"ssn": 01}"#,
        r#"// c
{}"#,
        "",
        "[",
    ] {
        if bad.is_empty() {
            continue; // an empty body has nothing to encrypt: forwarded (tested below)
        }
        let (status, code, response) = rejected(common::handle(&edge, &json_event(bad)));
        assert_eq!((status, code), (400, "invalid_body"), "{bad}");
        assert!(!response["body"].as_str().unwrap().contains("ssn\": "));
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // Valid JSON deeper than the walker's limit is refused too (not "unparseable": too deep).
    let (status, code, _) = rejected(common::handle(&edge, &json_event(&deep)));
    assert_eq!((status, code), (400, "body_too_deep"));
    let not_utf8 = {
        let mut ev = json_event("");
        ev["Records"][0]["cf"]["request"]["body"]["data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(b"{\"ssn\":\"\xff\"}"));
        ev
    };
    assert_eq!(rejected(common::handle(&edge, &not_utf8)).1, "invalid_body");

    for ct in [None, Some("text/plain"), Some("application/xml")] {
        let (status, code, _) = rejected(common::handle(
            &edge,
            &event("POST", ct, r#"{"ssn":"1"}"#, true),
        ));
        assert_eq!((status, code), (415, "unsupported_content_type"), "{ct:?}");
    }
    let latin1 = event(
        "POST",
        Some("application/json; charset=iso-8859-1"),
        r#"{"ssn":"1"}"#,
        true,
    );
    assert_eq!(rejected(common::handle(&edge, &latin1)).0, 415);

    // There is no policy that forwards them: "pass" was removed.
    let dir = fle_test_support::root();
    let err = EdgeEncryptor::from_toml_str(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
         [edge]\nkey = \"01\"\nfields = [\"ssn\"]\non_unparseable = \"pass\"\n",
        dir,
        backend::default_backend(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("was removed"), "{err}");
}

#[test]
fn value_over_the_limit_is_413_naming_the_field() {
    let edge = reference_edge();
    let long = "x".repeat(191);
    let (status, code, response) = rejected(common::handle(
        &edge,
        &json_event(&format!(r#"{{"people": [{{"email": "{long}"}}]}}"#)),
    ));
    assert_eq!((status, code), (413, "field_too_long"));
    let message = response["body"].as_str().unwrap();
    assert!(
        message.contains("$.people[0].email") && message.contains("190"),
        "{message}"
    );
    assert!(!message.contains("xxxx"));
    // 190 bytes is fine; 189 ASCII + a 2-byte character is not.
    forwarded(common::handle(
        &edge,
        &json_event(&format!(r#"{{"email": "{}"}}"#, "x".repeat(190))),
    ));
    let straddle = format!(r#"{{"email": "{}é"}}"#, "x".repeat(189));
    assert_eq!(
        rejected(common::handle(&edge, &json_event(&straddle))).0,
        413
    );
    // Key 02 (RSA-3072) takes 318 bytes.
    let k02 = make_edge(
        "fields = [{ name = \"email\", key = \"02\" }]
",
    );
    forwarded(k02.handle_event(&json_event(&format!(
        r#"{{"email": "{}"}}"#,
        "x".repeat(318)
    ))));
}

#[test]
fn marker_injection_is_rejected_anywhere_or_neutralised() {
    let edge = reference_edge();
    let (captured, _) = forwarded(common::handle(
        &edge,
        &json_event(r#"{"ssn": "123-45-6789"}"#),
    ));
    let envelope = captured["body"]["data"].as_str().unwrap()[9..361].to_owned();
    assert!(envelope.starts_with("#01#") && envelope.ends_with("#10#"));

    let attacks = [
        format!(r#"{{"comment": "{envelope}"}}"#), // an unencrypted field
        format!(r#"{{"ssn": "{envelope}"}}"#),     // an encrypted field
        format!(r#"{{"{envelope}": "x"}}"#),       // a member name
        format!(r#"{{"a": {{"b": ["x", "see {envelope} here"]}}}}"#), // nested, inside text
        r#"{"comment": "\u002301#abc"}"#.to_owned(), // escaped prefix
        r##"{"note": "#02#"}"##.to_owned(),        // another key's prefix
    ];
    for attack in &attacks {
        let (status, code, response) = rejected(common::handle(&edge, &json_event(attack)));
        assert_eq!((status, code), (400, "marker_injection"), "{attack}");
        assert!(!response.to_string().contains(&envelope[4..40]));
    }
    let form = format!(
        "comment={}",
        envelope
            .replace('#', "%23")
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let ev = event(
        "POST",
        Some("application/x-www-form-urlencoded"),
        &form,
        true,
    );
    assert_eq!(rejected(common::handle(&edge, &ev)).1, "marker_injection");

    // Neutralised: the text survives but is no envelope any more.
    let neutral = make_edge(&format!(
        "fields = {REFERENCE_FIELDS}\non_marker = \"neutralise\"\n"
    ));
    for (i, attack) in attacks.iter().enumerate() {
        if i == 1 {
            // In an encrypted field, the neutralised envelope is too long to encrypt.
            assert_eq!(
                rejected(neutral.handle_event(&json_event(attack))).1,
                "field_too_long"
            );
            continue;
        }
        let (request, _) = forwarded(neutral.handle_event(&json_event(attack)));
        let text = request["body"]["data"].as_str().unwrap();
        serde_json::from_str::<Value>(text).unwrap();
        let decrypted = decrypt_all(&neutral, text);
        assert!(
            decrypted
                .iter()
                .all(|p| !neutral.keyring().scanner().contains_prefix(p)),
            "{attack}"
        );
        // Scanning the forwarded text finds only envelopes the edge made itself.
        assert!(decrypted.len() <= 1, "{attack}: {text}");
    }
    let ev = event(
        "POST",
        Some("application/x-www-form-urlencoded"),
        &form,
        true,
    );
    let (request, _) = forwarded(neutral.handle_event(&ev));
    assert!(request["body"]["data"]
        .as_str()
        .unwrap()
        .starts_with("comment=%23%E2%81%A001%23"));
}

#[test]
fn non_string_values_are_encrypted_as_tagged_json() {
    let edge = make_edge("fields = [\"age\", \"vip\", \"none\", \"card\", \"tags\"]\n");
    let body = r#"{"age": 42, "vip": true, "none": null, "card": {"number": "4111 1111", "exp": [12, 2030]}, "tags": [ "a" , 1.5e3 ], "keep": 7}"#;
    let (request, n) = forwarded(common::handle(&edge, &json_event(body)));
    assert_eq!(n, 5);
    let text = request["body"]["data"].as_str().unwrap();
    assert!(text.ends_with(r#""keep": 7}"#));
    let tag = char::from(JSON_VALUE_TAG);
    let plain: Vec<String> = decrypt_all(&edge, text)
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(
        plain,
        [
            format!("{tag}42"),
            format!("{tag}true"),
            format!("{tag}null"),
            format!(r#"{tag}{{"number":"4111 1111","exp":[12,2030]}}"#),
            format!(r#"{tag}["a",1.5e3]"#),
        ]
    );
    // A string that starts with the tag would be ambiguous: refused.
    let (status, code, _) = rejected(common::handle(
        &edge,
        &json_event(r#"{"age": "\u0000 42"}"#),
    ));
    assert_eq!((status, code), (400, "reserved_value"));
}

#[test]
fn paths_wildcards_and_keys_per_field() {
    let edge = make_edge("fields = [\"$.customers[*].card.number\", { path = \"$.customers[0].name\", key = \"02\" }, \"$['odd key'].*\"]\n");
    let body = r#"{"customers": [{"name": "A", "card": {"number": "4111", "cvv": "1"}}, {"name": "B", "card": {"number": "4222"}}], "card": {"number": "not me"}, "odd key": {"x": "1", "y": 2}}"#;
    let (request, n) = forwarded(common::handle(&edge, &json_event(body)));
    assert_eq!(n, 5);
    let text = request["body"]["data"].as_str().unwrap();
    assert!(text.contains(r#""card": {"number": "not me"}"#) && text.contains(r#""cvv": "1""#));
    let found: Vec<String> = edge
        .keyring()
        .scanner()
        .scan_str(text)
        .map(|i| match i {
            ScanItem::Envelope(f) => f.key.to_string(),
            ScanItem::Malformed(_) => panic!(),
        })
        .collect();
    assert_eq!(found, ["02", "01", "01", "01", "01"]);
    let plain = decrypt_all(&edge, text);
    assert_eq!(plain[0], b"A");
    assert_eq!(plain[1], b"4111");
    assert_eq!(plain[2], b"4222");
    assert_eq!(plain[4], [&[JSON_VALUE_TAG][..], b"2"].concat());
}

#[test]
fn methods_uris_and_missing_bodies() {
    let edge = make_edge(&format!(
        "fields = {REFERENCE_FIELDS}\nmethods = [\"POST\"]\nuris = [\"/api/*\"]\n"
    ));
    // Not covered: forwarded untouched, even with a plaintext field.
    let get = event("GET", Some("application/json"), r#"{"ssn":"1"}"#, true);
    assert_eq!(
        forwarded(common::handle(&edge, &get)).0,
        get["Records"][0]["cf"]["request"]
    );
    let mut other = json_event(r#"{"ssn":"1"}"#);
    other["Records"][0]["cf"]["request"]["uri"] = json!("/public");
    assert_eq!(forwarded(common::handle(&edge, &other)).1, 0);

    // Covered, empty body: nothing to do.
    let (request, n) = forwarded(common::handle(&edge, &json_event("")));
    assert_eq!(
        (n, request["body"]["action"].as_str()),
        (0, Some("read-only"))
    );

    // Covered, body not included in the event although the request has one: fail closed.
    let mut hidden = json_event("");
    let req = &mut hidden["Records"][0]["cf"]["request"];
    req.as_object_mut().unwrap().remove("body");
    req["headers"]["content-length"] = json!([{"key": "Content-Length", "value": "42"}]);
    assert_eq!(
        rejected(common::handle(&edge, &hidden)),
        (
            500,
            "body_not_visible",
            rejected(common::handle(&edge, &hidden)).2
        )
    );
    hidden["Records"][0]["cf"]["request"]["headers"]["content-length"] =
        json!([{"key": "Content-Length", "value": "0"}]);
    forwarded(common::handle(&edge, &hidden));

    // Not an event at all.
    assert_eq!(
        rejected(common::handle(&edge, &json!({"hello": 1}))).1,
        "invalid_event"
    );
}

#[test]
fn result_over_the_body_limit_is_413() {
    let edge = make_edge(&format!(
        "fields = {REFERENCE_FIELDS}\nmax_body_bytes = 1500\n"
    ));
    let five: Vec<String> = (0..5).map(|i| format!(r#"{{"ssn": "{i}"}}"#)).collect();
    let body = format!("[{}]", five.join(","));
    assert!(body.len() < 1500);
    let (status, code, response) = rejected(common::handle(&edge, &json_event(&body)));
    assert_eq!((status, code), (413, "body_too_large"));
    assert!(response["body"].as_str().unwrap().contains("1500"));
    forwarded(common::handle(
        &edge,
        &json_event(&format!("[{}]", five[..4].join(","))),
    ));
}

#[test]
fn unicode_escapes_are_decoded_before_encryption() {
    let edge = reference_edge();
    let (request, _) = forwarded(common::handle(
        &edge,
        &json_event(r#"{"fname": "J\u00f6 \ud83e\udd80 \"q\" \\ \/ \n"}"#),
    ));
    let plain = decrypt_all(&edge, request["body"]["data"].as_str().unwrap());
    assert_eq!(
        String::from_utf8(plain[0].clone()).unwrap(),
        "Jö 🦀 \"q\" \\ / \n"
    );
}

#[test]
fn typed_view_borrows_from_the_event() {
    use fle_edge_encryptor::{BodyEncoding, EventError, OriginRequest};
    use std::borrow::Cow;

    let mut ev = event("POST", Some("application/json"), r#"{"ssn":"1"}"#, false);
    ev["Records"][0]["cf"]["request"]["headers"]["x-multi"] =
        json!([{"key": "X-Multi", "value": "a"}, {"value": "b"}]);
    let request = OriginRequest::from_event(&ev).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri(), "/api/people");
    assert_eq!(request.querystring(), "a=1");
    let headers = request.headers();
    assert_eq!(headers.len(), 3);
    let ct = headers.get("content-type").unwrap();
    assert_eq!(
        (ct.key, ct.value),
        (Some("Content-Type"), "application/json")
    );
    assert_eq!(
        headers
            .get_all("x-multi")
            .map(|h| (h.key, h.value))
            .collect::<Vec<_>>(),
        [(Some("X-Multi"), "a"), (None, "b")]
    );
    assert_eq!(
        headers
            .iter()
            .map(|(n, h)| (n, h.value))
            .collect::<Vec<_>>(),
        [
            ("host", "api.example.com"),
            ("content-type", "application/json"),
            ("x-multi", "a"),
            ("x-multi", "b")
        ]
    );
    assert!(headers.get("content-length").is_none());
    let body = request.body().unwrap();
    assert!(!body.input_truncated());
    assert_eq!(body.action(), Some("read-only"));
    assert_eq!(body.encoding(), Ok(BodyEncoding::Text));
    // A text body is borrowed from the event, not copied.
    let data = ev["Records"][0]["cf"]["request"]["body"]["data"]
        .as_str()
        .unwrap();
    assert_eq!(body.data().as_ptr(), data.as_ptr());
    assert!(matches!(body.decode().unwrap(), Cow::Borrowed(b) if b.as_ptr() == data.as_ptr()));

    let ev = json_event(r#"{"ssn":"1"}"#);
    let body = OriginRequest::from_event(&ev).unwrap().body().unwrap();
    assert_eq!(body.encoding(), Ok(BodyEncoding::Base64));
    assert_eq!(&*body.decode().unwrap(), br#"{"ssn":"1"}"#);

    // Optional members may be missing or null.
    let bare =
        json!({"method": "GET", "uri": "/", "querystring": null, "headers": null, "body": null});
    let request = OriginRequest::from_value(&bare).unwrap();
    assert_eq!(request.querystring(), "");
    assert!(request.headers().is_empty() && request.body().is_none());

    assert_eq!(
        OriginRequest::from_event(&json!({"hello": 1})),
        Err(EventError::NotOriginRequest)
    );
    assert_eq!(
        OriginRequest::from_value(&json!({"uri": "/"})),
        Err(EventError::NoMethod)
    );
    assert_eq!(
        OriginRequest::from_value(&json!({"method": "GET", "uri": 1})),
        Err(EventError::NoUri)
    );
}

/// Members the view does not model, and the order of all members, are forwarded as they came:
/// only `body` (and an encrypted query string) is replaced, in place.
#[test]
fn unknown_members_round_trip() {
    let edge = make_edge(&format!(
        "fields = {REFERENCE_FIELDS}\nquery = \"encrypt\"\n"
    ));
    let mut ev = json_event(r#"{"ssn": "123-45-6789", "plan": "gold"}"#);
    let req = ev["Records"][0]["cf"]["request"].as_object_mut().unwrap();
    req.insert("querystring".into(), json!("a=1&ssn=987"));
    req.insert(
        "x-future".into(),
        json!({"nested": [1, 2.5, null, {"k": "v"}], "s": "\u{1f980}"}),
    );
    let original = ev["Records"][0]["cf"]["request"].clone();
    let (request, n) = forwarded(common::handle(&edge, &ev));
    assert_eq!(n, 2);
    let (a, b) = (original.as_object().unwrap(), request.as_object().unwrap());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same members, same order"
    );
    for (name, value) in a {
        match name.as_str() {
            "body" => {
                assert_eq!(b[name]["action"], "replace");
                assert!(!b[name]["data"].as_str().unwrap().contains("6789"));
            }
            "querystring" => {
                let q = b[name].as_str().unwrap();
                assert!(
                    q.starts_with("a=1&ssn=%2301%23") && !q.contains("987"),
                    "{q}"
                );
            }
            _ => assert_eq!(&b[name], value, "{name}"),
        }
    }
    // Nothing to encrypt in the body: forwarded as it came, the query string still rewritten.
    let mut ev = json_event("");
    ev["Records"][0]["cf"]["request"]["querystring"] = json!("ssn=1");
    let (request, n) = forwarded(common::handle(&edge, &ev));
    assert_eq!(n, 1);
    assert_eq!(
        request["body"], ev["Records"][0]["cf"]["request"]["body"],
        "body untouched"
    );
    assert_ne!(request["querystring"], "ssn=1");
}

/// Coverage is decided from method and URI before anything else is read: a request the rules
/// do not cover is forwarded as it came even when the rest is malformed; a covered one is 500
/// `invalid_event`, naming the member and never its value.
#[test]
fn malformed_members_only_matter_when_covered() {
    let edge = make_edge(&format!(
        "fields = {REFERENCE_FIELDS}\nmethods = [\"POST\"]\n"
    ));
    let cases: [(&str, Value, &str); 9] = [
        ("querystring", json!(["secret"]), "malformed querystring"),
        ("headers", json!("secret"), "malformed headers"),
        (
            "headers",
            json!({"content-type": {"value": "secret"}}),
            "malformed headers",
        ),
        (
            "headers",
            json!({"content-type": [{"key": "Content-Type", "value": 7}]}),
            "malformed headers",
        ),
        ("body", json!("secret"), "malformed body"),
        (
            "body",
            json!({"inputTruncated": "secret", "encoding": "text", "data": ""}),
            "malformed body.inputTruncated",
        ),
        (
            "body",
            json!({"encoding": "text", "data": {"secret": 1}}),
            "malformed body.data",
        ),
        (
            "body",
            json!({"encoding": "secret", "data": "e30="}),
            "body encoding other than base64 or text",
        ),
        (
            "body",
            json!({"encoding": "base64", "data": "secret!"}),
            "without a valid base64 body",
        ),
    ];
    for (member, value, message) in cases {
        for (method, covered) in [("GET", false), ("POST", true)] {
            let mut ev = json_event(r#"{"ssn":"1"}"#);
            let req = &mut ev["Records"][0]["cf"]["request"];
            req["method"] = json!(method);
            req[member] = value.clone();
            if covered {
                let Outcome::Respond {
                    rejection,
                    message: m,
                    ..
                } = common::handle(&edge, &ev)
                else {
                    panic!("{member}: {value} forwarded")
                };
                assert_eq!(rejection.code(), "invalid_event", "{member}: {value}");
                assert!(m.contains(message) && !m.contains("secret"), "{m}");
            } else {
                let (request, n) = forwarded(common::handle(&edge, &ev));
                assert_eq!((&request, n), (&ev["Records"][0]["cf"]["request"], 0));
            }
        }
    }
    // The checks run in the order they always did: a truncated body is 413 whatever its
    // encoding, a missing encoding is reported as such.
    let mut ev = json_event(r#"{"ssn":"1"}"#);
    ev["Records"][0]["cf"]["request"]["body"] =
        json!({"inputTruncated": true, "encoding": "gzip", "data": "x"});
    assert_eq!(rejected(common::handle(&edge, &ev)).1, "input_truncated");
    ev["Records"][0]["cf"]["request"]["body"] = json!({"data": "x"});
    let Outcome::Respond { message, .. } = common::handle(&edge, &ev) else {
        panic!()
    };
    assert_eq!(message, "origin-request event without a body encoding");
    // A method or URI that is not a string is refused before coverage can be decided.
    for (member, message) in [
        ("method", "origin-request event without a method"),
        ("uri", "origin-request event without a uri"),
    ] {
        let mut ev = json_event(r#"{"ssn":"1"}"#);
        ev["Records"][0]["cf"]["request"][member] = json!(1);
        let Outcome::Respond {
            rejection,
            message: m,
            ..
        } = common::handle(&edge, &ev)
        else {
            panic!()
        };
        assert_eq!((rejection.code(), m.as_str()), ("invalid_event", message));
    }
    let mut ev = json_event("");
    ev["Records"][0]["cf"]["request"] = json!("secret");
    assert_eq!(rejected(common::handle(&edge, &ev)).1, "invalid_event");
}

#[test]
fn the_text_path_copies_what_it_does_not_change_and_refuses_read_members_named_twice() {
    let edge = reference_edge();
    let request = |members: &str| {
        format!(r#"{{"Records": [{{"cf": {{"config": {{}}, "request": {{{members}}}}}}}, 7]}}"#)
    };
    let body = r#""body": {"inputTruncated": false, "action": "read-only", "encoding": "text", "data": "{\"ssn\": \"123-45-6789\"}"}"#;
    let headers =
        r#""headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]}"#;
    // Members the edge does not change keep their text (Value would write 1e2 as 100.0), in
    // their order; a missing query string stays missing.
    let text = request(&format!(
        r#""origin": {{"custom": {{"port": 1e2, "x": "\u00e9"}}}}, "method": "POST", "uri": "/api/people", {headers}, {body}, "z": [ ]"#
    ));
    let Outcome::Forward {
        request: out,
        encrypted,
    } = edge.handle_event_json(&text)
    else {
        panic!("refused");
    };
    assert_eq!(encrypted, 1);
    assert!(
        out.starts_with(r#"{"origin":{"custom": {"port": 1e2, "x": "\u00e9"}},"method":"POST","uri":"/api/people","headers":{"content-type""#),
        "{out}"
    );
    assert!(out.ends_with(r#"},"z":[ ]}"#), "{out}");
    assert!(!out.contains("querystring") && !out.contains("123-45-6789"));
    let forwarded: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(forwarded["body"]["action"], "replace");
    let decrypted = OaepPrivateKey::from_pem(DEMO_PRIVATE).unwrap();
    let data = forwarded["body"]["data"].as_str().unwrap();
    let items: Vec<_> = edge.keyring().scanner().scan_str(data).collect();
    let [ScanItem::Envelope(found)] = &items[..] else {
        panic!("{items:?}");
    };
    assert_eq!(
        decrypted
            .decrypt_envelope(found.key, &found.envelope)
            .unwrap()
            .as_bytes(),
        b"123-45-6789"
    );

    // A member the edge reads, named twice: another parser of the forwarded object could take
    // the copy the edge did not judge. Refused; Value keeps the last copy silently.
    for twice in [
        format!(r#""method": "GET", "method": "POST", "uri": "/api/people", {headers}, {body}"#),
        format!(r#""method": "POST", "uri": "/api/people", {headers}, {body}, {body}"#),
        format!(r#""method": "POST", "uri": "/api/people", {headers}, {headers}, {body}"#),
        format!(
            r#""method": "POST", "uri": "/api/people", {headers}, "body": {{"encoding": "text", "data": "", "data": "{{\"ssn\": \"1\"}}"}}"#
        ),
    ] {
        let outcome = edge.handle_event_json(&request(&twice));
        assert_eq!(
            outcome.rejection(),
            Some(Rejection::InvalidEvent),
            "{twice}"
        );
    }
    // Members nobody reads may repeat; they are copied.
    let repeated = request(&format!(
        r#""x": 1, "x": 2, "method": "POST", "uri": "/api/people", {headers}, {body}"#
    ));
    let Outcome::Forward { request: out, .. } = edge.handle_event_json(&repeated) else {
        panic!("refused");
    };
    assert!(out.starts_with(r#"{"x":1,"x":2,"#), "{out}");

    // Arrays where objects belong (serde's derived structs would read them by position): the
    // same answer from both paths, 500 invalid_event.
    let mut array_body = json_event(r#"{"ssn": "123-45-6789"}"#);
    array_body["Records"][0]["cf"]["request"]["body"] =
        json!([false, "read-only", "text", "{\"ssn\": \"1\"}"]);
    let array_event = json!([[[array_body["Records"][0]["cf"]["request"].clone()]]]);
    let mut array_cf = json_event("{}");
    array_cf["Records"][0]["cf"] = json!([{}, array_body["Records"][0]["cf"]["request"].clone()]);
    for ev in [&array_body, &array_event, &array_cf] {
        let (status, code, _) = rejected(common::handle(&edge, ev));
        assert_eq!((status, code), (500, "invalid_event"), "{ev}");
    }
    // `null` body members read as missing in both paths: nothing to read, forwarded as it is;
    // or, with data, encrypted.
    let mut null_members = json_event("{}");
    null_members["Records"][0]["cf"]["request"]["body"] =
        json!({"inputTruncated": null, "action": null, "encoding": "text", "data": null});
    assert!(matches!(
        common::handle(&edge, &null_members),
        Outcome::Forward { encrypted: 0, .. }
    ));
    null_members["Records"][0]["cf"]["request"]["body"]["data"] =
        json!(r#"{"ssn": "123-45-6789"}"#);
    assert!(matches!(
        common::handle(&edge, &null_members),
        Outcome::Forward { encrypted: 1, .. }
    ));

    // `Records` as an object with a member "0" reads as a record through a JSON pointer; the
    // text path wants the array CloudFront sends (fail closed).
    let mut records_object = json_event(r#"{"ssn": "1"}"#);
    records_object["Records"] = json!({"0": records_object["Records"][0].clone()});
    assert_eq!(
        edge.handle_event_json(&records_object.to_string())
            .rejection(),
        Some(Rejection::InvalidEvent)
    );

    // Not JSON, or not an origin-request event: 500 invalid_event, as handle_event.
    for bad in [
        "",
        "{",
        "[]",
        r#"{"Records": []}"#,
        r#"{"Records": [{"cf": {}}]}"#,
        r#"{"Records": [{"cf": {"request": []}}]}"#,
        &format!("{} x", request(r#""method": "GET", "uri": "/""#)),
    ] {
        assert_eq!(
            edge.handle_event_json(bad).rejection(),
            Some(Rejection::InvalidEvent),
            "{bad}"
        );
    }
}
