//! The test vectors of the written specification, `docs/ENVELOPE.md`, read from that file: each
//! `message (hex)` / `envelope` pair must be one well-formed envelope of its demo key (version 1
//! under the RSA key `01`, version 2 under `01` and the P-256 key `02`) and open, with the demo
//! private key, to exactly that message. So the specification's examples cannot drift from the
//! code.

use std::path::Path;

use fle_shared::demo::DEMO_PUBLIC_KEY_PEM;
use fle_shared::{
    v1_payload_len, Envelope, KeyEntry, KeyId, KeyKind, Keyring, MarkerPair, OaepPrivateKey,
    P256PrivateKey, RsaPublicKey, ScanItem,
};
use fle_test_support::SpecVector as Vector;

fn spec() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ENVELOPE.md");
    std::fs::read_to_string(path).unwrap()
}

/// The vectors of the specification, in order.
fn vectors(_text: &str) -> Vec<Vector> {
    fle_test_support::spec_vectors()
}

fn demo_private_key() -> OaepPrivateKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys/demo-01.key.pem");
    OaepPrivateKey::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn specification_vectors_open_with_the_demo_key() {
    let text = spec();
    let vectors: Vec<Vector> = vectors(&text)
        .into_iter()
        .filter(|v| v.envelope.len() == 4 + v1_payload_len(256) + 4)
        .collect();
    assert_eq!(
        vectors.len(),
        2,
        "the specification's version-1 vectors were not all found"
    );
    let public = RsaPublicKey::from_pem(DEMO_PUBLIC_KEY_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let private = demo_private_key();
    for Vector {
        message, envelope, ..
    } in vectors
    {
        let items: Vec<_> = keyring.scanner().scan_str(&envelope).collect();
        let [ScanItem::Envelope(found)] = &items[..] else {
            panic!("not exactly one well-formed envelope: {items:?}");
        };
        assert_eq!(found.span, 0..envelope.len());
        assert_eq!(found.key.as_str(), "01");
        assert!(matches!(found.envelope, Envelope::V1 { .. }));
        assert_eq!(found.envelope.version(), 1);
        let plain = private
            .decrypt_envelope(found.key, &found.envelope)
            .unwrap();
        assert_eq!(plain.as_bytes(), &message[..]);
    }
}

/// Opens a version-2 vector with the demo key it names; `path` overrides the vector's.
fn open_v2(v: &Vector, path: Option<&str>) -> Result<Vec<u8>, String> {
    let id: KeyId = v.key.parse().unwrap();
    let markers = MarkerPair::default_for(&id);
    let payload = v
        .envelope
        .strip_prefix(markers.prefix.as_str())
        .and_then(|p| p.strip_suffix(markers.suffix.as_str()))
        .expect("the vector carries its key's default markers");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let decode = |kind| match Envelope::decode_payload(payload.as_bytes(), kind) {
        Ok(Envelope::V2(token)) => Ok(token),
        Ok(_) => Err("not version 2".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let (token, secret) = match v.key.as_str() {
        "02" => {
            let pem = std::fs::read_to_string(root.join("keys/demo-02.key.pem")).unwrap();
            let token = decode(KeyKind::P256)?;
            let secret = P256PrivateKey::from_pem(&pem).unwrap().decapsulate(&token);
            (token, secret)
        }
        "01" => {
            let token = decode(KeyKind::Rsa { modulus_len: 256 })?;
            let secret = demo_private_key().unwrap_v2(&token);
            (token, secret)
        }
        other => panic!("no demo key {other}"),
    };
    let secret = secret.map_err(|e| e.to_string())?;
    secret
        .open(&id, &token, path.map(str::as_bytes))
        .map(|p| p.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}

#[test]
fn version_2_vectors_open_with_the_demo_keys() {
    let text = spec();
    let vectors: Vec<Vector> = vectors(&text)
        .into_iter()
        .filter(|v| v.envelope.len() != 4 + v1_payload_len(256) + 4)
        .collect();
    assert_eq!(
        vectors.len(),
        4,
        "the specification's version-2 vectors were not all found"
    );
    for v in &vectors {
        assert_eq!(
            open_v2(v, v.path.as_deref()).as_deref(),
            Ok(&v.message[..]),
            "{}",
            v.envelope
        );
        if v.path.is_some() {
            assert!(open_v2(v, None).is_err());
            assert!(open_v2(v, Some("SSN")).is_err());
        }
    }
    // An 11-byte value under the P-256 key: 96 characters with the markers (v1: 352); a 9-byte
    // value has the same length (64 token bytes either way round up to 88 base64 characters).
    assert_eq!(vectors[0].message.len(), 11);
    assert_eq!(vectors[0].envelope.len(), 96);
    // The first two are one request: one encapsulation, indexes 0 and 1.
    // (Payload characters 4..44 are token bytes 3..33, inside the 33-byte encapsulation.)
    assert_eq!(vectors[0].envelope[8..48], vectors[1].envelope[8..48]);
    // So are the last two, under RSA (the 256-byte wrapped data key: characters 4..344).
    assert_eq!(vectors[2].envelope[8..344], vectors[3].envelope[8..344]);
}

#[test]
fn a_damaged_vector_does_not_open() {
    // One payload character changed (the length stays, so it still scans as an envelope):
    // OAEP's integrity check refuses it; no other plaintext comes out.
    let text = spec();
    let envelope = vectors(&text).remove(0).envelope;
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
    assert!(private
        .decrypt_envelope(found.key, &found.envelope)
        .is_err());
}
