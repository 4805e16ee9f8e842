//! Property tests of the JSON rewriter: it accepts exactly what a strict JSON parser accepts,
//! copies unselected text byte for byte, and never panics.

use fle_edge_encryptor::{BodyKind, EdgeConfig, EdgeEncryptor};
use fle_shared::{backend, KeyEntry, Keyring, RsaPublicKey};
use proptest::prelude::*;
use serde_json::Value;

fn edge(fields: &str) -> EdgeEncryptor {
    let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let config =
        EdgeConfig::from_toml_str(&format!("[edge]\nkey = \"01\"\nfields = {fields}\n")).unwrap();
    EdgeEncryptor::new(keyring, config, backend::default_backend()).unwrap()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z \"\\\\é✓\u{1}/]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("(ssn|name|[a-z]{1,3})", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// With no field selected, the output is the input, byte for byte, however it is formatted.
    #[test]
    fn unselected_documents_are_copied_exactly(v in json_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
        let (out, n) = edge("[\"nothing-is-called-this\"]").encrypt_body(BodyKind::Json, &text).unwrap();
        prop_assert_eq!(n, 0);
        prop_assert_eq!(out, text);
    }

    /// With `ssn` selected, the output is valid JSON whose `ssn` members are envelopes and whose
    /// other parts are unchanged.
    #[test]
    fn selected_members_become_envelopes(v in json_value()) {
        let text = serde_json::to_string(&v).unwrap();
        // Compare against the text's own parse (float text does not always round-trip to `v`).
        let v: Value = serde_json::from_str(&text).unwrap();
        let (out, _) = edge("[\"ssn\"]").encrypt_body(BodyKind::Json, &text).unwrap();
        let got: Value = serde_json::from_str(&out).unwrap();
        fn check(orig: &Value, got: &Value) -> bool {
            match (orig, got) {
                (Value::Object(a), Value::Object(b)) => a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
                    ka == kb && if ka == "ssn" {
                        vb.as_str().is_some_and(|s| s.starts_with("#01#") && s.ends_with("#10#") && s.len() == 352)
                    } else { check(va, vb) }
                }),
                (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| check(x, y)),
                (a, b) => a == b,
            }
        }
        prop_assert!(check(&v, &got), "{} -> {}", text, out);
    }

    /// Differential: accepted exactly when serde_json (strict) accepts, on JSON-like noise.
    #[test]
    fn accepts_exactly_valid_json(text in "[\\[\\]{}\":,0-9.eE+\\- a-z\\\\u]{0,40}") {
        let ours = edge("[\"a\"]").encrypt_body(BodyKind::Json, &text);
        let strict = serde_json::from_str::<Value>(&text);
        prop_assert_eq!(ours.is_ok(), strict.is_ok(), "{:?}: ours {:?}, serde_json {:?}", text, ours.err(), strict.err());
    }

    #[test]
    fn form_bodies_never_panic(text in "[a-z=&%+#0-9A-F]{0,60}") {
        let _ = edge("[\"a\"]").encrypt_body(BodyKind::Form, &text);
    }
}
