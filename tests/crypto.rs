//! Round trips per key size and backend, known answers, size limits, error hygiene.

mod common;

use common::*;
use fle_shared::{
    backend, DecryptError, EncryptError, FieldEncryptor, OaepPrivateKey, RsaPublicKey, ScanItem,
};

#[test]
fn every_backend_round_trips_every_size_through_aws_lc_decryption() {
    for bits in SIZES {
        let (private, public) = key_pair(bits);
        let max = public.max_plaintext_len();
        assert_eq!(max, bits / 8 - 66);
        for backend in backend::all_backends() {
            let key = backend.encryption_key(&public).unwrap();
            assert_eq!(key.modulus_len(), bits / 8);
            for plaintext in plaintexts(max) {
                let mut ct = vec![0u8; bits / 8];
                key.encrypt(&plaintext, &mut ct).unwrap();
                let back = private.decrypt(&ct).unwrap();
                assert_eq!(back.as_bytes(), &plaintext[..], "{} {bits}", backend.name());
            }
            // OAEP is randomised: the same value never encrypts the same way twice.
            let (mut a, mut b) = (vec![0u8; bits / 8], vec![0u8; bits / 8]);
            key.encrypt(b"same", &mut a).unwrap();
            key.encrypt(b"same", &mut b).unwrap();
            assert_ne!(a, b);
        }
    }
}

#[test]
fn envelopes_round_trip_through_the_scanner() {
    for bits in SIZES {
        let (private, public) = key_pair(bits);
        let keyring = keyring(public);
        for backend in backend::all_backends() {
            let enc = FieldEncryptor::new(&keyring, backend).unwrap();
            let key = enc.key_str("01").unwrap();
            let mut text = String::from("{\"a\":\"");
            key.encrypt_into("a", "first ✓".as_bytes(), &mut text)
                .unwrap();
            text.push_str("\",\"b\":\"");
            key.encrypt_into("b", b"second", &mut text).unwrap();
            text.push_str("\"}");
            let values: Vec<String> = keyring
                .scanner()
                .scan_str(&text)
                .map(|item| match item {
                    ScanItem::Envelope(f) => {
                        assert_eq!(f.span.len(), key.envelope_len(0));
                        private
                            .decrypt_envelope(f.key, &f.envelope)
                            .unwrap()
                            .as_str()
                            .unwrap()
                            .to_owned()
                    }
                    ScanItem::Malformed(m) => panic!("{m:?}"),
                })
                .collect();
            assert_eq!(values, ["first ✓", "second"]);
        }
    }
}

/// Size rule: at most modulus bytes − 66; a multi-byte character straddling the limit is refused
/// whole, and the error names the field and the limit but not the value.
#[test]
fn size_boundaries() {
    for bits in SIZES {
        let (private, public) = key_pair(bits);
        let limit = bits / 8 - 66;
        let keyring = keyring(public);
        for backend in backend::all_backends() {
            let enc = FieldEncryptor::new(&keyring, backend).unwrap();
            let key = enc.key_str("01").unwrap();
            assert_eq!(key.max_plaintext_len(), limit);
            for len in [limit - 1, limit] {
                let mut out = String::new();
                key.encrypt_into("f", &vec![b'q'; len], &mut out).unwrap();
                assert_eq!(out.len(), key.envelope_len(len));
            }
            // "é" is two bytes: limit-1 ASCII + é = limit + 1 bytes.
            let straddling = format!("{}é", "Z".repeat(limit - 1));
            let fits = format!("{}é", "Z".repeat(limit - 2));
            let mut out = String::from("keep");
            for over in [vec![b'Z'; limit + 1], straddling.clone().into_bytes()] {
                let err = key
                    .encrypt_into("card.number", &over, &mut out)
                    .unwrap_err();
                assert_eq!(
                    err,
                    EncryptError::PlaintextTooLong {
                        field: "card.number".into(),
                        len: limit + 1,
                        limit,
                        key: "01".parse().unwrap()
                    }
                );
                let shown = format!("{err} {err:?}");
                assert!(
                    shown.contains("card.number") && shown.contains(&limit.to_string()),
                    "{shown}"
                );
                assert!(!shown.contains("ZZZ"), "error leaks the value: {shown}");
                assert_eq!(out, "keep", "a failed encryption must not write");
            }
            key.encrypt_into("f", fits.as_bytes(), &mut out).unwrap();
            let env = keyring.scanner().scan_str(&out).next().unwrap();
            let ScanItem::Envelope(found) = env else {
                panic!()
            };
            assert_eq!(
                private
                    .decrypt_envelope(found.key, &found.envelope)
                    .unwrap()
                    .as_str(),
                Some(fits.as_str())
            );
            // The backend enforces the limit too, for callers below FieldEncryptor.
            let raw = backend
                .encryption_key(keyring.keys()[0].public_key().as_rsa().unwrap())
                .unwrap();
            let mut ct = vec![0; bits / 8];
            assert!(raw.encrypt(&vec![0; limit + 1], &mut ct).is_err());
        }
    }
}

/// Known answers: pyca/cryptography's RSA-2048 OAEP-SHA256/MGF1-SHA256 vectors (see
/// tests/fixtures/kat/README.md) decrypt to their published messages.
#[test]
fn known_answer_vectors_decrypt() {
    let kat: serde_json::Value =
        serde_json::from_str(&read(&fixture("kat/oaep-sha256-kat.json"))).unwrap();
    let mut checked = 0;
    for key in kat["keys"].as_array().unwrap() {
        let private = OaepPrivateKey::from_pem(key["private_key_pem"].as_str().unwrap()).unwrap();
        let public = RsaPublicKey::from_pem(key["public_key_pem"].as_str().unwrap()).unwrap();
        assert_eq!(private.public_key(), &public);
        for ex in key["examples"].as_array().unwrap() {
            let ct = unhex(ex["ciphertext"].as_str().unwrap());
            let msg = unhex(ex["message"].as_str().unwrap());
            assert_eq!(private.decrypt(&ct).unwrap().as_bytes(), &msg[..]);
            // And every backend's fresh encryption of the message opens with the same key.
            for backend in backend::all_backends() {
                let mut out = vec![0; 256];
                backend
                    .encryption_key(&public)
                    .unwrap()
                    .encrypt(&msg, &mut out)
                    .unwrap();
                assert_eq!(private.decrypt(&out).unwrap().as_bytes(), &msg[..]);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn wrong_key_tampering_and_bad_lengths_are_errors() {
    let (private, public) = key_pair(2048);
    let (other, _) = key_pair(3072);
    let kat: serde_json::Value =
        serde_json::from_str(&read(&fixture("kat/oaep-sha256-kat.json"))).unwrap();
    let kat_private =
        OaepPrivateKey::from_pem(kat["keys"][0]["private_key_pem"].as_str().unwrap()).unwrap();

    let mut ct = vec![0u8; 256];
    backend::default_backend()
        .encryption_key(&public)
        .unwrap()
        .encrypt(b"secret", &mut ct)
        .unwrap();
    assert_eq!(kat_private.decrypt(&ct), Err(DecryptError::Rejected));
    assert!(matches!(
        other.decrypt(&ct),
        Err(DecryptError::CiphertextLength {
            found: 256,
            expected: 384
        })
    ));
    for i in [0, 100, 255] {
        let mut bad = ct.clone();
        bad[i] ^= 1;
        assert_eq!(private.decrypt(&bad), Err(DecryptError::Rejected));
    }
    assert!(private.decrypt(&ct[1..]).is_err());
    assert!(private.decrypt(&[0xff; 256]).is_err());
    assert!(private.decrypt(&[]).is_err());
}

#[test]
fn private_key_parsing_errors() {
    assert!(OaepPrivateKey::from_pem("").is_err());
    assert!(OaepPrivateKey::from_pem(&read(&fixture("keys/rsa-2048.pub.pem"))).is_err());
    require!(Tool::OpenSsl);
    let pkcs1 = Tool::OpenSsl
        .command()
        .args(["rsa", "-traditional", "-in"])
        .arg(fixture("keys/rsa-2048.key.pem"))
        .output()
        .unwrap();
    let err = OaepPrivateKey::from_pem(std::str::from_utf8(&pkcs1.stdout).unwrap()).unwrap_err();
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    assert!(
        !format!("{err:?}").contains("MII"),
        "must not echo key material"
    );
}
