//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fle_shared::{KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey};

/// Key sizes every test covers.
pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Paths of the test key pair of `bits` bits (private PKCS#8 PEM, public SPKI PEM).
pub fn key_paths(bits: usize) -> (PathBuf, PathBuf) {
    (
        fixture(&format!("keys/rsa-{bits}.key.pem")),
        fixture(&format!("keys/rsa-{bits}.pub.pem")),
    )
}

/// The test key pair of `bits` bits.
pub fn key_pair(bits: usize) -> (OaepPrivateKey, RsaPublicKey) {
    let (private, public) = key_paths(bits);
    let private = OaepPrivateKey::from_pem(&read(&private)).unwrap();
    let public = RsaPublicKey::from_pem(&read(&public)).unwrap();
    assert_eq!(private.public_key(), &public);
    (private, public)
}

/// A one-key keyring (id `01`) for a public key.
pub fn keyring(public: RsaPublicKey) -> Keyring {
    Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap()
}

/// Reads a text file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Plaintexts that exercise the edges: empty, one byte, UTF-8, binary, JSON-hostile, the maximum.
pub fn plaintexts(max: usize) -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"x".to_vec(),
        "Jo \"JJ\" O'Neil \\ é ✓ 🦀".as_bytes().to_vec(),
        (0..=255u8).take(max).collect(),
        b"123-45-6789".to_vec(),
        vec![b'A'; max],
    ]
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
