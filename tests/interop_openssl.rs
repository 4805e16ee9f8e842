//! Interoperability with OpenSSL (`openssl pkeyutl`, OAEP with SHA-256 and MGF1-SHA-256), both
//! ways, every key size and backend.

mod common;

use common::*;
use fle_shared::{backend, write_v1, MarkerPair, ScanItem};

fn pkeyutl(args: &[&str], key: &std::path::Path, input: &[u8]) -> Vec<u8> {
    openssl_oaep(args, key, input)
}

#[test]
fn openssl_decrypts_what_every_backend_encrypts() {
    require!(Tool::OpenSsl);
    for bits in SIZES {
        let (private_path, _) = key_paths(bits);
        let (_, public) = key_pair(bits);
        for backend in backend::all_backends() {
            let key = backend.encryption_key(&public).unwrap();
            for plaintext in plaintexts(public.max_plaintext_len()) {
                let mut ct = vec![0u8; bits / 8];
                key.encrypt(&plaintext, &mut ct).unwrap();
                assert_eq!(
                    pkeyutl(&["-decrypt"], &private_path, &ct),
                    plaintext,
                    "{} {bits}",
                    backend.name()
                );
            }
        }
    }
}

#[test]
fn we_decrypt_what_openssl_encrypts() {
    require!(Tool::OpenSsl);
    for bits in SIZES {
        let (_, public_path) = key_paths(bits);
        let (private, public) = key_pair(bits);
        for plaintext in plaintexts(public.max_plaintext_len()) {
            let ct = pkeyutl(&["-encrypt", "-pubin"], &public_path, &plaintext);
            assert_eq!(ct.len(), bits / 8);
            assert_eq!(private.decrypt(&ct).unwrap().as_bytes(), &plaintext[..]);

            // The same ciphertext as an envelope, written and found again.
            let markers = MarkerPair::default_for(&"01".parse().unwrap());
            let mut text = String::from("x ");
            write_v1(&markers, &ct, &mut text);
            let ring = keyring(public.clone());
            let Some(ScanItem::Envelope(found)) = ring.scanner().scan_str(&text).next() else {
                panic!("envelope not found")
            };
            assert_eq!(
                private
                    .decrypt_envelope(found.key, &found.envelope)
                    .unwrap()
                    .as_bytes(),
                &plaintext[..]
            );
        }
    }
}

/// The envelope text decodes with the standard `base64` tool and decrypts with OpenSSL: the
/// format is plain base64 of a plain RSA-OAEP ciphertext, nothing fle-specific inside.
#[test]
fn envelope_payload_is_plain_base64_for_openssl() {
    require!(Tool::OpenSsl);
    let (private_path, public) = key_paths(2048);
    let ring = keyring(fle_shared::RsaPublicKey::from_pem(&read(&public)).unwrap());
    let enc = fle_shared::FieldEncryptor::new(&ring, backend::default_backend()).unwrap();
    let mut text = String::new();
    enc.key_str("01")
        .unwrap()
        .encrypt_into("ssn", b"123-45-6789", &mut text)
        .unwrap();
    let payload = text
        .strip_prefix("#01#")
        .unwrap()
        .strip_suffix("#10#")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b64"), format!("{payload}\n")).unwrap();
    let out = Tool::OpenSsl
        .command()
        .args(["base64", "-d", "-A", "-in"])
        .arg(dir.path().join("b64"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        pkeyutl(&["-decrypt"], &private_path, &out.stdout),
        b"123-45-6789"
    );
}
