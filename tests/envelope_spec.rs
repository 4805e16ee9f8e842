//! The test vectors of the written specification, `docs/ENVELOPE.md`, read from that file: each
//! `message (hex)` / `envelope` pair must be found by the scanner as one well-formed version-1
//! envelope of the demo key and open, with the demo private key, to exactly that message. So
//! the specification's examples cannot drift from the code.

use std::path::Path;

use fle_shared::demo::DEMO_PUBLIC_KEY_PEM;
use fle_shared::{
    v1_payload_len, Envelope, KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey, ScanItem,
};

fn spec() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ENVELOPE.md");
    std::fs::read_to_string(path).unwrap()
}

/// The (message, envelope) pairs of the specification, in order.
fn vectors(text: &str) -> Vec<(Vec<u8>, String)> {
    let mut out = Vec::new();
    let mut message = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("message (hex):") {
            let hex = rest.split_whitespace().next().unwrap();
            message = Some(decode_hex(hex));
        } else if let Some(rest) = line.strip_prefix("envelope:") {
            let m = message
                .take()
                .expect("an envelope line follows its message line");
            out.push((m, rest.trim().to_owned()));
        }
    }
    out
}

fn demo_private_key() -> OaepPrivateKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/demo-01.key.pem");
    OaepPrivateKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn decode_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex length: {hex}");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn specification_vectors_open_with_the_demo_key() {
    let text = spec();
    let vectors = vectors(&text);
    assert_eq!(
        vectors.len(),
        2,
        "the specification's vectors were not all found"
    );
    let public = RsaPublicKey::from_pem(DEMO_PUBLIC_KEY_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let private = demo_private_key();
    for (message, envelope) in vectors {
        // Version 1 for RSA-2048: markers + exactly 344 payload characters.
        assert_eq!(envelope.len(), 4 + v1_payload_len(256) + 4);
        let items: Vec<_> = keyring.scanner().scan_str(&envelope).collect();
        let [ScanItem::Envelope(found)] = &items[..] else {
            panic!("not exactly one well-formed envelope: {items:?}");
        };
        assert_eq!(found.span, 0..envelope.len());
        assert_eq!(found.key.as_str(), "01");
        assert!(matches!(found.envelope, Envelope::V1 { .. }));
        assert_eq!(found.envelope.version(), 1);
        let plain = private.decrypt_envelope(&found.envelope).unwrap();
        assert_eq!(plain.as_bytes(), &message[..]);
    }
}

#[test]
fn a_damaged_vector_does_not_open() {
    // One payload character changed (the length stays, so it still scans as an envelope):
    // OAEP's integrity check refuses it; no other plaintext comes out.
    let text = spec();
    let (_, envelope) = vectors(&text).remove(0);
    let public = RsaPublicKey::from_pem(DEMO_PUBLIC_KEY_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let private = demo_private_key();
    let mut damaged = envelope.into_bytes();
    damaged[100] = if damaged[100] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).unwrap();
    let items: Vec<_> = keyring.scanner().scan_str(&damaged).collect();
    let [ScanItem::Envelope(found)] = &items[..] else {
        panic!("not exactly one envelope: {items:?}");
    };
    assert!(private.decrypt_envelope(&found.envelope).is_err());
}
