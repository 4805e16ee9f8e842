//! Helpers shared by fle's fuzz targets: the demo keys, a few edge configurations, event
//! templates, verdicts, envelope masking and the decrypt-back check.

use std::sync::Arc;

use base64::Engine;
use fle_decryptor::{Decryptor, LocalKeyProvider, Mode, OnError};
use fle_edge_encryptor::config::BodyKind;
use fle_edge_encryptor::{EdgeEncryptor, MarkerPolicy, Outcome};
use fle_shared::backend::Backend;
use fle_shared::body::form;
use fle_shared::{
    KeyEntry, Keyring, Marker, MarkerPair, OaepPrivateKey, RsaPublicKey, ScanItem, ScanKey,
};
use serde_json::{json, Value};

/// The demo public key (RSA-2048, key `01`).
pub const DEMO_PUBLIC_PEM: &str = include_str!("../../keys/demo-01.pub.pem");
/// The demo private key.
pub const DEMO_PRIVATE_PEM: &str = include_str!("../../keys/demo-01.key.pem");

/// A keyring with the demo key as `01`.
pub fn demo_keyring() -> Keyring {
    let public = RsaPublicKey::from_pem(DEMO_PUBLIC_PEM).expect("demo public key");
    Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).expect("keyring")
}

/// The `[edge]` tables the edge targets choose from (by an input byte): default policies,
/// lenient names with query encryption, origin names with neutralising and restricted
/// methods/URIs, paths with small limits.
pub const EDGE_TABLES: &[&str] = &[
    "fields = [\"ssn\", \"email\", \"$.card.number\"]\n",
    "fields = [\"ssn\", \"first_name\", \"$.a.b\"]\nnames = \"case-insensitive\"\nquery = \"encrypt\"\n",
    "fields = [\"ssn\", \"first_name\", \"$.a.b\"]\nnames = \"origin\"\nquery = \"encrypt\"\non_marker = \"neutralise\"\nmethods = [\"POST\", \"PUT\"]\nuris = [\"/api/*\", \"/signup\"]\nexclude_uris = [\"/api/health\"]\n",
    "fields = [\"$.a[*].b\", \"$.*.c\", \"pin\", { name = \"iban\" }]\nnames = \"origin\"\nuri_case = \"sensitive\"\nmax_encrypted_values = 3\nmax_body_bytes = 3000\nretired_markers = [\"#00#\"]\ncontent_types = [\"application/json\", \"application/vnd.api+json\", \"application/x-www-form-urlencoded\"]\n",
];

/// A scan key with a tiny "modulus" (so the fuzzer can write whole envelopes): default markers
/// for `id` unless `markers` gives the prefix and suffix.
pub fn scan_key(id: &str, markers: Option<(&str, &str)>, modulus_len: usize) -> ScanKey {
    let id: fle_shared::KeyId = id.parse().unwrap();
    let markers = match markers {
        None => MarkerPair::default_for(&id),
        Some((p, s)) => MarkerPair {
            prefix: Marker::new(p).unwrap(),
            suffix: Marker::new(s).unwrap(),
        },
    };
    ScanKey {
        id,
        markers,
        kind: fle_shared::KeyKind::Rsa { modulus_len },
    }
}

/// The configuration file text (demo key inline) for `EDGE_TABLES[i]`.
pub fn edge_toml(i: usize) -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key_pem = \"\"\"\n{}\"\"\"\n[edge]\nkey = \"01\"\n{}",
        DEMO_PUBLIC_PEM,
        EDGE_TABLES[i % EDGE_TABLES.len()]
    )
}

/// An edge for `EDGE_TABLES[i]` with `backend`.
pub fn edge(i: usize, backend: &'static dyn Backend) -> EdgeEncryptor {
    EdgeEncryptor::from_toml_str(&edge_toml(i), std::path::Path::new("."), backend)
        .expect("fuzz edge configuration")
}

/// An edge for a configuration text built by a target.
pub fn edge_from(text: &str, backend: &'static dyn Backend) -> EdgeEncryptor {
    EdgeEncryptor::from_toml_str(text, std::path::Path::new("."), backend)
        .unwrap_or_else(|e| panic!("fuzz edge configuration: {e}\n{text}"))
}

/// The configuration header (keyring with the demo key inline, `[edge]` with key 01).
pub fn edge_toml_header() -> String {
    format!(
        "[[keys]]\nid = \"01\"\npublic_key_pem = \"\"\"\n{}\"\"\"\n[edge]\nkey = \"01\"\n",
        DEMO_PUBLIC_PEM
    )
}

/// A CloudFront origin-request event.
pub fn event(
    method: &str,
    uri: &str,
    query: &str,
    content_type: Option<&str>,
    body: &[u8],
    base64: bool,
) -> Value {
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
        ("text", String::from_utf8_lossy(body).into_owned())
    };
    json!({"Records": [{"cf": {
        "config": {"distributionId": "EDFDVBD6EXAMPLE", "eventType": "origin-request", "requestId": "r-1"},
        "request": {
            "clientIp": "203.0.113.178",
            "method": method,
            "uri": uri,
            "querystring": query,
            "headers": headers,
            "body": {"inputTruncated": false, "action": "read-only", "encoding": encoding, "data": data}
        }
    }}]})
}

/// The verdict of one outcome, comparable across backends and implementations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forwarded: the request with every envelope masked, and the number of values encrypted.
    Forward(String, usize),
    /// Answered: HTTP status and rejection code.
    Respond(u16, String),
}

/// Checks the shape of an outcome (a forwarded request object, or a well-formed 4xx/5xx
/// generated response) and returns its verdict.
pub fn verdict(edge: &EdgeEncryptor, outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Forward { request, encrypted } => {
            assert!(request.is_object(), "forwarded a non-object: {request}");
            Verdict::Forward(mask_request(edge.keyring(), request), *encrypted)
        }
        Outcome::Respond {
            response,
            rejection,
            ..
        } => {
            assert!(
                (400..600).contains(&rejection.status()),
                "status {}",
                rejection.status()
            );
            assert_eq!(response["status"], rejection.status().to_string());
            let body: Value =
                serde_json::from_str(response["body"].as_str().expect("response body"))
                    .expect("response body is JSON");
            assert_eq!(body["error"], rejection.code());
            Verdict::Respond(rejection.status(), rejection.code().to_owned())
        }
    }
}

/// An outcome of `EdgeEncryptor::handle_event_json` with its JSON text parsed, for
/// [`verdict`]; panics if the text path wrote something that is not JSON.
pub fn parsed(outcome: Outcome<String>) -> Outcome {
    let parse = |text: &str| -> Value {
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the text path wrote invalid JSON ({e}): {text}"))
    };
    match outcome {
        Outcome::Forward { request, encrypted } => Outcome::Forward {
            request: parse(&request),
            encrypted,
        },
        Outcome::Respond {
            response,
            rejection,
            message,
        } => Outcome::Respond {
            response: parse(&response),
            rejection,
            message,
        },
    }
}

/// Percent-decodes leniently (lossy UTF-8; left as it is when malformed).
pub fn lenient_decode(text: &str) -> String {
    match form::decode(text, 0) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => text.to_owned(),
    }
}

/// `text` with every envelope replaced by `<ENV>`, then percent-decoded and masked again (form
/// bodies and query strings hold percent-encoded envelopes).
pub fn mask(keyring: &Keyring, text: &str) -> String {
    let once = mask_raw(keyring, text);
    if !once.contains('%') {
        return once;
    }
    // Piece by piece, so one malformed escape does not keep the rest from being decoded.
    once.split('&')
        .map(|piece| {
            piece
                .split('=')
                .map(|part| mask_raw(keyring, &lenient_decode(part)))
                .collect::<Vec<_>>()
                .join("=")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn mask_raw(keyring: &Keyring, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
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

/// The request as JSON text with the body data and query string masked.
pub fn mask_request(keyring: &Keyring, request: &Value) -> String {
    let mut r = request.clone();
    if let Some(data) = r.pointer("/body/data").and_then(Value::as_str) {
        let masked = mask(keyring, data);
        r["body"]["data"] = Value::from(masked);
    }
    if let Some(q) = r.get("querystring").and_then(Value::as_str) {
        let masked = mask(keyring, q);
        r["querystring"] = Value::from(masked);
    }
    r.to_string()
}

/// A decryptor with the demo private key.
pub fn demo_decryptor() -> Decryptor {
    let private = OaepPrivateKey::from_pem(DEMO_PRIVATE_PEM).expect("demo private key");
    let keyring = demo_keyring();
    let provider = LocalKeyProvider::new(vec![("01".parse().unwrap(), private)]);
    Decryptor::new(keyring, Arc::new(provider))
}

/// A current-thread runtime.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// The body bytes of a request object, decoded per `body.encoding` (`None` without a body or
/// with an undecodable one).
pub fn body_bytes(request: &Value) -> Option<Vec<u8>> {
    let body = request.get("body").filter(|b| !b.is_null())?;
    let data = body.get("data").and_then(Value::as_str).unwrap_or("");
    match body.get("encoding").and_then(Value::as_str) {
        Some("base64") => base64::engine::general_purpose::STANDARD.decode(data).ok(),
        Some("text") => Some(data.as_bytes().to_vec()),
        _ => None,
    }
}

/// The decoded `(name, value)` pairs of a form body or query string.
pub fn form_pairs(text: &str) -> Option<Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    form::pairs(text)
        .map(|p| {
            let name = form::decode(p.name, p.offset).ok()?.into_owned();
            let value = match p.value {
                Some(v) => Some(form::decode(v, p.value_offset()).ok()?.into_owned()),
                None => None,
            };
            Some((name, value))
        })
        .collect()
}

/// When `original` was forwarded as `forwarded` with values encrypted, decrypting the
/// forwarded body gives the original body back (JSON: the same value; form: the same pairs).
pub fn check_decrypts_back(
    edge: &EdgeEncryptor,
    decryptor: &Decryptor,
    rt: &tokio::runtime::Runtime,
    original: &Value,
    forwarded: &Value,
) {
    let Some(before) = body_bytes(original) else {
        return;
    };
    let Some(after) = forwarded.pointer("/body/data").and_then(Value::as_str) else {
        return;
    };
    if forwarded.pointer("/body/action") != Some(&Value::from("replace")) {
        // Forwarded as it was (rules do not apply, or an empty body).
        return;
    }
    let ct = original
        .pointer("/headers/content-type/0/value")
        .and_then(Value::as_str)
        .expect("a rewritten body had a content type");
    let kind = edge
        .config()
        .body_kind(ct)
        .expect("charset accepted")
        .expect("listed content type");
    let before = std::str::from_utf8(&before).expect("a rewritten body was UTF-8");
    let mode = match kind {
        BodyKind::Json => Mode::Json,
        BodyKind::Form => Mode::Form,
    };
    let out = rt
        .block_on(decryptor.decrypt(after, mode, OnError::Fail))
        .unwrap_or_else(|e| panic!("the forwarded body does not decrypt: {e}"));
    // `on_marker = "neutralise"` inserts U+2060 into text holding a prefix: compare without it.
    let neutralised = edge.config().on_marker == MarkerPolicy::Neutralise;
    match kind {
        BodyKind::Json => {
            // serde_json refuses numbers out of f64 range, which the walker copies.
            let Ok(mut a) = serde_json::from_str::<Value>(before) else {
                return;
            };
            let mut b: Value = serde_json::from_str(&out.text).expect("decrypted JSON parses");
            if neutralised {
                strip_joiner(&mut a);
                strip_joiner(&mut b);
            }
            assert_eq!(a, b, "decrypted JSON differs from the original");
        }
        BodyKind::Form => {
            let strip = |pairs: Vec<(Vec<u8>, Option<Vec<u8>>)>| {
                if !neutralised {
                    return pairs;
                }
                let s = |v: Vec<u8>| {
                    String::from_utf8_lossy(&v)
                        .replace('\u{2060}', "")
                        .into_bytes()
                };
                pairs.into_iter().map(|(n, v)| (s(n), v.map(s))).collect()
            };
            assert_eq!(
                strip(form_pairs(before).expect("original form decodes")),
                strip(form_pairs(&out.text).expect("decrypted form decodes")),
                "decrypted form differs from the original"
            );
        }
    }
}

/// Removes U+2060 WORD JOINER (the neutraliser) from every string and member name.
pub fn strip_joiner(v: &mut Value) {
    match v {
        Value::String(s) => *s = s.replace('\u{2060}', ""),
        Value::Array(a) => a.iter_mut().for_each(strip_joiner),
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut x) in old {
                strip_joiner(&mut x);
                m.insert(k.replace('\u{2060}', ""), x);
            }
        }
        _ => {}
    }
}

/// Methods of template events.
pub const METHODS: [&str; 4] = ["POST", "PUT", "GET", "patch"];
/// Content types of template events.
pub const TYPES: [Option<&str>; 6] = [
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/vnd.api+json; charset=UTF-8"),
    Some("text/plain"),
    None,
    Some("application/json; charset=latin1"),
];

/// The event an input of the edge targets describes: `shape` 0, the JSON text of an event;
/// otherwise `URI[?QUERY]\nBODY` in a template, `shape` choosing method, content type and
/// encoding. The event (`None` when it is not one).
pub fn event_of(shape: u8, rest: &[u8]) -> Option<Value> {
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
    Some(event(
        METHODS[shape % 4],
        uri,
        query,
        TYPES[(shape / 4) % 6],
        body,
        (shape / 24) % 2 == 1,
    ))
}
