//! Interoperability with Python's pyca/cryptography, both ways, every key size and backend.
//!
//! The interpreter is `$FLE_PYTHON` (the test command sets it to a virtualenv with
//! `cryptography` installed). Without it the tests are skipped with a message, or fail under
//! `FLE_REQUIRE_ALL=1` (as the test command runs them).

mod common;

use common::*;
use fle_shared::backend;

/// Runs tests/support/oaep.py with one hex line per input, returns one decoded line per output.
fn oaep_py(mode: &str, key: &std::path::Path, inputs: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let lines: Vec<String> = inputs
        .iter()
        .map(|input| {
            if input.is_empty() {
                "-".to_owned()
            } else {
                hex(input)
            }
        })
        .collect();
    python_lines("oaep.py", &[mode.as_ref(), key.as_os_str()], &lines)
        .iter()
        .map(|line| unhex(line))
        .collect()
}

#[test]
fn python_decrypts_what_every_backend_encrypts() {
    require!(Tool::Python);
    for bits in SIZES {
        let (private_path, _) = key_paths(bits);
        let (_, public) = key_pair(bits);
        let plaintexts = plaintexts(public.max_plaintext_len());
        for backend in backend::all_backends() {
            let key = backend.encryption_key(&public).unwrap();
            let cts: Vec<Vec<u8>> = plaintexts
                .iter()
                .map(|p| {
                    let mut ct = vec![0u8; bits / 8];
                    key.encrypt(p, &mut ct).unwrap();
                    ct
                })
                .collect();
            assert_eq!(
                oaep_py("decrypt", &private_path, &cts),
                plaintexts,
                "{} {bits}",
                backend.name()
            );
        }
    }
}

#[test]
fn we_decrypt_what_python_encrypts() {
    require!(Tool::Python);
    for bits in SIZES {
        let (_, public_path) = key_paths(bits);
        let (private, public) = key_pair(bits);
        let plaintexts = plaintexts(public.max_plaintext_len());
        let cts = oaep_py("encrypt", &public_path, &plaintexts);
        assert_eq!(cts.len(), plaintexts.len());
        for (ct, p) in cts.iter().zip(&plaintexts) {
            assert_eq!(ct.len(), bits / 8);
            assert_eq!(private.decrypt(ct).unwrap().as_bytes(), &p[..]);
        }
    }
}
