//! Whole-document decryption (JSON, form, text) of what the edge writes, with a local key
//! behind a counting provider standing in for KMS: types restored, strings re-escaped, the
//! reference design's two defects impossible, error policies, positions, no plaintext in errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fle_decryptor::{
    DecryptFuture, Decryptor, DocumentError, KeyProvider, LocalKeyProvider, Mode, OnError,
    ProblemKind, REDACTED,
};
use fle_edge_encryptor::config::BodyKind;
use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::body::FieldSelector;
use fle_shared::{backend, Envelope, KeyEntry, OaepPrivateKey};
use proptest::prelude::*;
use serde_json::{json, Value};

use fle_test_support::root;

const KEYRING: &str = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
                       [[keys]]\nid = \"02\"\npublic_key = \"tests/fixtures/keys/rsa-3072.pub.pem\"\n";

fn edge(fields: &str) -> EdgeEncryptor {
    let toml = format!("{KEYRING}[edge]\nkey = \"01\"\nfields = {fields}\n");
    EdgeEncryptor::from_toml_str(&toml, root(), backend::default_backend()).unwrap()
}

/// The KMS stand-in: a local key, counting calls.
struct Counting {
    inner: LocalKeyProvider,
    calls: AtomicUsize,
}

impl KeyProvider for Counting {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.decrypt(key, envelope)
    }
}

/// A decryptor holding only key 01's private key (key 02's envelopes fail: not configured).
fn decryptor(edge: &EdgeEncryptor) -> (Decryptor, Arc<Counting>) {
    let pem = std::fs::read_to_string(root().join("keys/demo-01.key.pem")).unwrap();
    let key = OaepPrivateKey::from_pem(&pem).unwrap();
    let provider = Arc::new(Counting {
        inner: LocalKeyProvider::new(vec![("01".parse().unwrap(), key)]),
        calls: AtomicUsize::new(0),
    });
    let d = Decryptor::new(edge.keyring().clone(), provider.clone());
    (d, provider)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn encrypt_json(edge: &EdgeEncryptor, doc: &str) -> String {
    edge.encrypt_body(BodyKind::Json, doc).unwrap().0
}

#[test]
fn json_values_come_back_with_their_types_and_escapes() {
    let edge = edge(r#"["name", "n", "ok", "nil", "obj", "arr", "f"]"#);
    let doc = r##"{"name": "Jo \"JJ\" O'Neil \\ \u00e9\n", "n": -1.50e3, "ok": true, "nil": null,
                 "obj": {"a": [1, {"b": "x\"y"}]}, "arr": [], "f": 0, "keep": "#not-a-marker"}"##;
    let encrypted = encrypt_json(&edge, doc);
    assert_eq!(encrypted.matches("#01#").count(), 7);
    let (d, calls) = decryptor(&edge);
    let out = block_on(d.decrypt(&encrypted, Mode::Json, OnError::Fail)).unwrap();
    let back: Value = serde_json::from_str(&out.text).expect("valid JSON (defect 1 impossible)");
    assert_eq!(back, serde_json::from_str::<Value>(doc).unwrap());
    assert_eq!(back["n"].as_f64(), Some(-1500.0));
    assert_eq!(out.report.envelopes, 7);
    assert_eq!(out.report.decrypted, 7);
    assert!(out.report.problems.is_empty());
    assert_eq!(calls.calls.load(Ordering::SeqCst), 7);
}

#[test]
fn envelopes_behind_escaped_slashes_and_duplicates() {
    let edge = edge(r#"["ssn"]"#);
    let encrypted = encrypt_json(&edge, r#"{"ssn": "123-45-6789"}"#);
    let envelope = &encrypted[9..encrypted.len() - 2];
    // A PHP-style serialiser escapes '/' in base64; the same envelope three times.
    let escaped = envelope.replace('/', "\\/");
    // Another escapes its markers' '#' as \u0023: found only after unescaping.
    let hashes = envelope.replace('#', "\\u0023");
    let doc =
        format!(r#"[{{"ssn": "{escaped}"}}, {{"ssn": "{envelope}"}}, "{envelope}", "{hashes}"]"#);
    let (d, calls) = decryptor(&edge);
    let out = block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&out.text).unwrap(),
        json!([{"ssn": "123-45-6789"}, {"ssn": "123-45-6789"}, "123-45-6789", "123-45-6789"])
    );
    assert_eq!(
        calls.calls.load(Ordering::SeqCst),
        1,
        "duplicates decrypt once"
    );
    assert_eq!(out.report.decrypted, 4);

    // The same, alone in a document: no '#' written out, still found.
    let out = block_on(d.decrypt(&format!("\"{hashes}\""), Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, "\"123-45-6789\"");
}

#[test]
fn marker_injection_is_refused_when_fields_are_configured() {
    let edge = edge(r#"["ssn"]"#);
    let victim = encrypt_json(&edge, r#"{"ssn": "123-45-6789"}"#);
    let stolen = &victim[9..victim.len() - 2];
    let attack = format!(r#"{{"ssn": "{stolen}", "comment": "{stolen}", "{stolen}": 1}}"#);

    // Schema-blind (the default, like the reference): the comment gets the victim's SSN; the
    // member name is left alone and reported unless names are asked for explicitly.
    let (blind, _) = decryptor(&edge);
    let out = block_on(blind.decrypt(&attack, Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(out.text.matches("123-45-6789").count(), 2);
    assert_eq!(
        out.text.matches(stolen).count(),
        1,
        "the name stays encrypted"
    );
    let (blind, _) = decryptor(&edge);
    let blind = blind.decrypt_member_names(true);
    let out = block_on(blind.decrypt(&attack, Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(out.text.matches("123-45-6789").count(), 3);

    // Restricted to the configured fields: only $.ssn is decrypted; the rest are reported.
    let (d, _) = decryptor(&edge);
    let d = d.only_fields(vec![FieldSelector::parse("ssn").unwrap()]);
    let out = block_on(d.decrypt(&attack, Mode::Json, OnError::Fail)).unwrap();
    let v: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v["ssn"], "123-45-6789");
    assert_eq!(v["comment"], stolen);
    assert_eq!(v[stolen], 1);
    let kinds: Vec<_> = out
        .report
        .problems
        .iter()
        .map(|p| (&p.kind, p.field.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (&ProblemKind::MarkerInjection, Some("$.comment")),
            (&ProblemKind::MarkerInjection, Some("$")),
        ]
    );
    assert_eq!(
        out.report.problems[0].offset,
        attack.find(r#""comment": ""#).unwrap() + 12
    );
}

#[test]
fn only_fields_decrypts_whole_values_only() {
    let edge = edge(r#"["ssn"]"#);
    let victim = encrypt_json(&edge, r#"{"ssn": "123-45-6789"}"#);
    let stolen = &victim[9..victim.len() - 2];
    // An envelope embedded in a longer string of an allowed field is marker injection.
    for value in [
        format!("x{stolen}"),
        format!("{stolen} "),
        format!("{stolen}{stolen}"),
    ] {
        let doc = json!({ "ssn": value }).to_string();
        let (d, calls) = decryptor(&edge);
        let d = d.only_fields(vec![FieldSelector::parse("ssn").unwrap()]);
        for policy in [OnError::Fail, OnError::Leave, OnError::Redact] {
            let out = block_on(d.decrypt(&doc, Mode::Json, policy)).unwrap();
            assert_eq!(*out.text, doc, "left as it is under {policy:?}");
            assert!(!out.text.contains("123-45-6789"));
            assert!(out
                .report
                .problems
                .iter()
                .all(|p| p.kind == ProblemKind::MarkerInjection));
            assert_eq!(out.report.decrypted, 0);
        }
        assert_eq!(
            calls.calls.load(Ordering::SeqCst),
            0,
            "no KMS call for them"
        );
        // Schema-blind decryption still opens them.
        let (blind, _) = decryptor(&edge);
        let out = block_on(blind.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap();
        assert!(out.text.contains("123-45-6789"));
    }
    // The same in form mode.
    let form = format!(
        "ssn=x{}",
        stolen
            .replace('#', "%23")
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let (d, _) = decryptor(&edge);
    let d = d.only_fields(vec![FieldSelector::parse("ssn").unwrap()]);
    let out = block_on(d.decrypt(&form, Mode::Form, OnError::Redact)).unwrap();
    assert_eq!(*out.text, form);
    assert_eq!(out.report.problems[0].kind, ProblemKind::MarkerInjection);
}

#[test]
fn member_names_are_decrypted_only_when_asked_and_never_into_duplicates() {
    let edge = edge(r#"["role", "x"]"#);
    let role = encrypt_json(&edge, r#"{"role": "role"}"#);
    let role = &role[10..role.len() - 2];
    let x = encrypt_json(&edge, r#"{"x": "nick"}"#);
    let nick = &x[7..x.len() - 2];
    assert!(role.starts_with("#01#") && nick.starts_with("#01#"));

    // Default: a name is left as it is and reported, whatever the policy; values still open.
    let doc = format!(r#"{{"role": "user", "{role}": "admin", "n": "{nick}"}}"#);
    for policy in [OnError::Fail, OnError::Leave, OnError::Redact] {
        let (d, _) = decryptor(&edge);
        let out = block_on(d.decrypt(&doc, Mode::Json, policy)).unwrap();
        let v: Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(v["role"], "user");
        assert_eq!(v[role], "admin", "name left encrypted under {policy:?}");
        assert_eq!(v["n"], "nick");
        assert_eq!(out.report.problems.len(), 1);
        assert_eq!(out.report.problems[0].kind, ProblemKind::MemberName);
    }

    // Asked for: a name that would duplicate a member stays encrypted (and fails under Fail).
    let (d, _) = decryptor(&edge);
    let d = d.decrypt_member_names(true);
    let out = block_on(d.decrypt(&doc, Mode::Json, OnError::Leave)).unwrap();
    let v: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!((&v["role"], &v[role]), (&json!("user"), &json!("admin")));
    assert_eq!(out.report.problems[0].kind, ProblemKind::DuplicateMember);
    let err = block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap_err();
    assert!(matches!(err, DocumentError::Envelope(p) if p.kind == ProblemKind::DuplicateMember));
    // Two encrypted names that decrypt to the same name collide with each other too.
    let twice = format!(r#"{{"{role}": 1, "{role}": 2}}"#);
    let out = block_on(d.decrypt(&twice, Mode::Json, OnError::Leave)).unwrap();
    assert_eq!(*out.text, twice);
    // Without a collision the name is decrypted.
    let alone = format!(r#"{{"a": {{"{role}": "admin"}}, "role": "user"}}"#);
    let out = block_on(d.decrypt(&alone, Mode::Json, OnError::Fail)).unwrap();
    let v: Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v, json!({"a": {"role": "admin"}, "role": "user"}));
}

#[test]
fn error_policies_report_position_and_key_never_plaintext() {
    // Key 02's private key is not held: its envelopes cannot be decrypted.
    let toml = format!(
        "{KEYRING}[edge]\nkey = \"01\"\nfields = [\"a\", {{ name = \"b\", key = \"02\" }}]\n"
    );
    let edge = EdgeEncryptor::from_toml_str(&toml, root(), backend::default_backend()).unwrap();
    let encrypted = encrypt_json(&edge, r#"{"a": "secret-a", "b": "secret-b"}"#);
    let b_at = encrypted.find("#02#").unwrap();
    let (d, _) = decryptor(&edge);

    let err = block_on(d.decrypt(&encrypted, Mode::Json, OnError::Fail)).unwrap_err();
    let DocumentError::Envelope(problem) = &err else {
        panic!("{err}")
    };
    assert_eq!(problem.offset, b_at);
    assert_eq!(problem.key.as_ref().map(|k| k.as_str()), Some("02"));
    assert_eq!(problem.field.as_deref(), Some("$.b"));
    let message = err.to_string();
    assert!(
        message.contains(&format!("byte {b_at}")) && message.contains("key 02"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");

    let left = block_on(d.decrypt(&encrypted, Mode::Json, OnError::Leave)).unwrap();
    let v: Value = serde_json::from_str(&left.text).unwrap();
    assert_eq!(v["a"], "secret-a");
    assert!(v["b"].as_str().unwrap().starts_with("#02#"));
    assert_eq!(left.report.problems.len(), 1);
    assert!(matches!(
        left.report.problems[0].kind,
        ProblemKind::Provider(_)
    ));

    let redacted = block_on(d.decrypt(&encrypted, Mode::Json, OnError::Redact)).unwrap();
    let v: Value = serde_json::from_str(&redacted.text).unwrap();
    assert_eq!(v, json!({"a": "secret-a", "b": REDACTED}));
    assert_eq!(redacted.report.decrypted, 1);
}

#[test]
fn malformed_envelopes_and_misplaced_values() {
    let edge = edge(r#"["n"]"#);
    let encrypted = encrypt_json(&edge, r#"{"n": 42}"#);
    let envelope = &encrypted[7..encrypted.len() - 2];
    let (d, _) = decryptor(&edge);

    // A JSON value's envelope inside a longer string cannot be restored as a value.
    let doc = format!(r#"{{"n": "x{envelope}"}}"#);
    let err = block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap_err();
    assert!(err.to_string().contains("does not stand alone"), "{err}");
    // In text mode it is its JSON text.
    let out = block_on(d.decrypt(&format!("n={envelope};"), Mode::Text, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, "n=42;");

    // Truncated: fails, or is left as is.
    let doc = format!(r#"{{"n": "{}"}}"#, &envelope[..100]);
    let err = block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let out = block_on(d.decrypt(&doc, Mode::Json, OnError::Leave)).unwrap();
    assert_eq!(*out.text, doc);

    // Not JSON, with something to decrypt: refused. Without any prefix there is nothing to
    // decrypt, and the document is returned as it is, unparsed.
    let bad = format!("{{\"n\": \"{envelope}\",}}");
    assert!(matches!(
        block_on(d.decrypt(&bad, Mode::Json, OnError::Leave)),
        Err(DocumentError::Json(_))
    ));
    let out = block_on(d.decrypt("{\"n\": 1,}", Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, "{\"n\": 1,}");
}

#[test]
fn form_and_text_modes() {
    let edge = edge(r#"["card", "name"]"#);
    let body = "name=Jo+%22JJ%22+O%27Neil&card=4111+1111&x=%23";
    let (encrypted, n) = edge.encrypt_body(BodyKind::Form, body).unwrap();
    assert_eq!(n, 2);
    assert!(encrypted.contains("%2301%23"));
    let (d, _) = decryptor(&edge);
    let out = block_on(d.decrypt(&encrypted, Mode::Form, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, body);

    // Text: envelopes anywhere, plaintext as is (the caller asked for raw text).
    let json_body = encrypt_json(&edge, r#"{"name": "a\"b"}"#);
    let envelope = &json_body[10..json_body.len() - 2];
    let text = format!("log line {envelope} and {envelope}\n");
    let out = block_on(d.decrypt(&text, Mode::Text, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, "log line a\"b and a\"b\n");
    assert!(matches!(
        block_on(d.decrypt("a=%zz&b=#01#", Mode::Form, OnError::Fail)),
        Err(DocumentError::Form(_))
    ));
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[ -~\\u{80}-\\u{10ffff}\"\\\\\\n]{0,20}".prop_map(Value::String),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the edge encrypts comes back equal as JSON.
    #[test]
    fn edge_then_decryptor_is_identity(
        values in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    json_leaf(),
                    prop::collection::vec(json_leaf(), 0..3).prop_map(Value::Array),
                ],
                6,
            ),
            1..4,
        )
    ) {
        let names = ["fname", "lname", "email", "ssn", "dob", "other"];
        let doc: Vec<Value> = values
            .into_iter()
            .map(|v| Value::Object(names.iter().map(|n| n.to_string()).zip(v).collect()))
            .collect();
        let doc = serde_json::to_string_pretty(&doc).unwrap();
        let edge = edge(r#"["fname", "lname", "email", "ssn", "dob"]"#);
        let encrypted = encrypt_json(&edge, &doc);
        let (d, _) = decryptor(&edge);
        let out = block_on(d.decrypt(&encrypted, Mode::Json, OnError::Fail)).unwrap();
        prop_assert_eq!(
            serde_json::from_str::<Value>(&out.text).unwrap(),
            serde_json::from_str::<Value>(&doc).unwrap()
        );
    }
}

/// Found in review: each of these once slipped past the policy or the field restriction.
#[test]
fn hostile_plaintexts_and_markers_stay_under_the_policy() {
    use fle_shared::{Marker, MarkerPair};
    let pem = std::fs::read_to_string(root().join("keys/demo-01.key.pem")).unwrap();
    let private = OaepPrivateKey::from_pem(&pem).unwrap();
    // A prefix with a '/', which PHP-style serialisers write as "\/".
    let markers = MarkerPair {
        prefix: Marker::new("#a/1#").unwrap(),
        suffix: Marker::new("#1/a#").unwrap(),
    };
    let entry =
        KeyEntry::new("01".parse().unwrap(), private.public_key().clone()).with_markers(markers);
    let keyring = fle_shared::Keyring::new(vec![entry]).unwrap();
    let encryptor = fle_shared::FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let envelope = |plaintext: &[u8]| {
        let mut out = String::new();
        encryptor
            .key_str("01")
            .unwrap()
            .encrypt_into("x", plaintext, &mut out)
            .unwrap();
        out
    };
    let provider = Arc::new(LocalKeyProvider::new(vec![(
        "01".parse().unwrap(),
        private,
    )]));
    let d = Decryptor::new(keyring.clone(), provider);

    let escaped = envelope(b"ok").replace('/', "\\/");
    let out = block_on(d.decrypt(&format!("[\"{escaped}\"]"), Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(&*out.text, "[\"ok\"]");

    // JSON-value envelopes whose plaintext is not valid JSON (a lone surrogate) or not UTF-8:
    // problems under the policy, never invalid output or a failed document under "leave".
    for bad in [&b"\0\"\\ud800\""[..], &b"\0\"\xff\""[..]] {
        let doc = format!("{{\"v\": \"{}\"}}", envelope(bad));
        let out = block_on(d.decrypt(&doc, Mode::Json, OnError::Leave)).unwrap();
        assert_eq!(*out.text, doc);
        assert_eq!(out.report.problems.len(), 1);
        assert!(block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).is_err());
        let out = block_on(d.decrypt(&doc, Mode::Text, OnError::Redact)).unwrap();
        assert_eq!(&*out.text, "{\"v\": \"[redacted]\"}");
    }

    // Under a field restriction, a malformed prefix elsewhere is reported, never fatal.
    let d = d.only_fields(vec![FieldSelector::parse("ssn").unwrap()]);
    let doc = format!(
        "{{\"ssn\": \"{}\", \"note\": \"see #a/1# here\"}}",
        envelope(b"123")
    );
    let out = block_on(d.decrypt(&doc, Mode::Json, OnError::Fail)).unwrap();
    assert_eq!(
        &*out.text,
        "{\"ssn\": \"123\", \"note\": \"see #a/1# here\"}"
    );
    assert_eq!(out.report.problems[0].kind, ProblemKind::MarkerInjection);
}
