//! Envelope version 2 against an independent implementation, both ways:
//! `tests/support/envelope_v2.py`, written from `docs/ENVELOPE.md` alone, with pyhpke's standard
//! HPKE receiver for P-256 and pyca/cryptography for RSA-OAEP, HKDF and AES-GCM.
//!
//! The interpreter is `$FLE_PYTHON` (the test command sets it to a virtualenv with
//! `cryptography` and `pyhpke`). Without it the tests are skipped with a message, or fail under
//! `FLE_REQUIRE_ALL=1` (as the test command runs them).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use fle_shared::{
    backend, Envelope, KeyId, KeyKind, MarkerPair, OaepPrivateKey, P256PrivateKey, V2Sealer,
};

/// Runs envelope_v2.py `mode` with `lines` on stdin and returns its stdout lines.
fn envelope_py(mode: &str, id: &str, key: &Path, lines: &[String]) -> Vec<String> {
    python_lines(
        "envelope_v2.py",
        &[mode.as_ref(), id.as_ref(), key.as_os_str()],
        lines,
    )
}

fn hex_or_dash(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "-".into()
    } else {
        hex(bytes)
    }
}

/// The values of one request: (message, path).
fn request() -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    vec![
        (b"123-45-6789".to_vec(), None),
        (b"\x0042".to_vec(), Some(b"ssn".to_vec())),
        (Vec::new(), None),
        (Vec::new(), Some(Vec::new())),
        (
            "jos\u{e9}@example.com".as_bytes().to_vec(),
            Some("e-mail".as_bytes().to_vec()),
        ),
        ((0..=255u8).cycle().take(65536).collect(), None),
    ]
}

struct Key {
    id: &'static str,
    public: PathBuf,
    private: PathBuf,
}

fn keys() -> Vec<Key> {
    vec![
        Key {
            id: "02",
            public: root().join("keys/demo-02.pub.pem"),
            private: root().join("keys/demo-02.key.pem"),
        },
        Key {
            id: "01",
            public: root().join("keys/demo-01.pub.pem"),
            private: root().join("keys/demo-01.key.pem"),
        },
        Key {
            id: "rsa3072",
            public: fixture("keys/rsa-3072.pub.pem"),
            private: fixture("keys/rsa-3072.key.pem"),
        },
    ]
}

/// Seals `request()` with fle under `key` and `backend`; returns the payloads.
fn fle_seal(key: &Key, backend: &dyn backend::Backend) -> Vec<String> {
    let id: KeyId = key.id.parse().unwrap();
    let markers = MarkerPair::default_for(&id);
    let pem = read(&key.private);
    let mut sealer = match P256PrivateKey::from_pem(&pem) {
        Ok(p256) => {
            let recipient = backend.p256_recipient(p256.public_key()).unwrap();
            V2Sealer::p256(&id, p256.public_key(), &*recipient).unwrap()
        }
        Err(_) => {
            let rsa = OaepPrivateKey::from_pem(&pem).unwrap();
            let prepared = backend.encryption_key(rsa.public_key()).unwrap();
            V2Sealer::rsa(&id, &*prepared, backend).unwrap()
        }
    };
    request()
        .iter()
        .map(|(message, path)| {
            let mut out = String::new();
            sealer
                .seal_into(&markers, message, path.as_deref(), &mut out)
                .unwrap();
            out[markers.prefix.as_str().len()..out.len() - markers.suffix.as_str().len()].to_owned()
        })
        .collect()
}

/// Opens one payload with fle's local private key.
fn fle_open(key: &Key, payload: &str, path: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let id: KeyId = key.id.parse().unwrap();
    let pem = read(&key.private);
    let (secret, token) = match P256PrivateKey::from_pem(&pem) {
        Ok(p256) => {
            let Envelope::V2(token) = Envelope::decode_payload(payload.as_bytes(), KeyKind::P256)
                .map_err(|e| e.to_string())?
            else {
                return Err("not version 2".into());
            };
            (p256.decapsulate(&token).map_err(|e| e.to_string())?, token)
        }
        Err(_) => {
            let rsa = OaepPrivateKey::from_pem(&pem).unwrap();
            let kind = KeyKind::Rsa {
                modulus_len: rsa.public_key().modulus_len(),
            };
            let Envelope::V2(token) =
                Envelope::decode_payload(payload.as_bytes(), kind).map_err(|e| e.to_string())?
            else {
                return Err("not version 2".into());
            };
            (rsa.unwrap_v2(&token).map_err(|e| e.to_string())?, token)
        }
    };
    secret
        .open(&id, &token, path)
        .map(|p| p.as_bytes().to_vec())
        .map_err(|e| e.to_string())
}

#[test]
fn python_opens_what_fle_seals_on_every_backend() {
    require!(Tool::Python);
    for key in keys() {
        for backend in backend::all_backends() {
            let payloads = fle_seal(&key, backend);
            let lines: Vec<String> = payloads
                .iter()
                .zip(request())
                .map(|(payload, (_, path))| match path {
                    Some(p) => format!("{payload} {}", hex_or_dash(&p)),
                    None => payload.clone(),
                })
                .collect();
            let opened = envelope_py("open", key.id, &key.private, &lines);
            let expected: Vec<String> = request().iter().map(|(m, _)| hex_or_dash(m)).collect();
            assert_eq!(
                opened,
                expected,
                "key {} backend {}",
                key.id,
                backend.name()
            );
        }
    }
}

#[test]
fn fle_opens_what_python_seals() {
    require!(Tool::Python);
    for key in keys() {
        let lines: Vec<String> = request()
            .iter()
            .map(|(m, path)| match path {
                Some(p) => format!("{} {}", hex_or_dash(m), hex_or_dash(p)),
                None => hex_or_dash(m),
            })
            .collect();
        let payloads = envelope_py("seal", key.id, &key.public, &lines);
        assert_eq!(payloads.len(), lines.len());
        for (payload, (message, path)) in payloads.iter().zip(request()) {
            assert_eq!(
                fle_open(&key, payload, path.as_deref()).as_deref(),
                Ok(&message[..]),
                "key {}",
                key.id
            );
            if let Some(path) = &path {
                let mut other = path.clone();
                other.push(b'x');
                assert!(fle_open(&key, payload, Some(&other)).is_err());
                assert!(fle_open(&key, payload, None).is_err());
            }
        }
    }
}

#[test]
fn python_refuses_fle_tokens_that_were_tampered_with_or_moved() {
    require!(Tool::Python);
    let key = &keys()[0];
    let payloads = fle_seal(key, backend::default_backend());
    // Each of: another key id, a flipped bit in the sealed part, a wrong path.
    let mut lines = Vec::new();
    let mut flipped = base64_decode(&payloads[0]);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    lines.push(base64_encode(&flipped));
    lines.push(format!("{} {}", payloads[1], hex(b"ssm")));
    let opened = envelope_py("open", key.id, &key.private, &lines);
    assert_eq!(opened.len(), 2);
    assert!(opened.iter().all(|l| l.starts_with("error:")), "{opened:?}");
    let moved = envelope_py("open", "03", &key.private, &payloads[..1]);
    assert!(moved[0].starts_with("error:"), "{moved:?}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}
