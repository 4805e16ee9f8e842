//! The repository's files as the tests see them: root, fixtures, test and demo keys.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fle_shared::{KeyEntry, Keyring, OaepPrivateKey, RsaPublicKey};

/// Key sizes every test covers.
pub const SIZES: [usize; 3] = [2048, 3072, 4096];

/// The repository (workspace) root: the parent of this crate's directory, whichever package's
/// test asks.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("test-support sits in the workspace root")
            .to_path_buf();
        assert!(
            root.join("Cargo.toml").is_file() && root.join("keys").is_dir(),
            "{} is not fle's workspace root",
            root.display()
        );
        root
    })
}

/// A fixture file (`tests/fixtures/REL`).
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

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string (surrounding white space ignored).
pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The demo private key (`keys/demo-01.key.pem`).
pub fn demo_private_key() -> OaepPrivateKey {
    OaepPrivateKey::from_pem(&read(&root().join("keys/demo-01.key.pem"))).unwrap()
}

/// Decrypts every envelope of `keyring` in `text`, each with the private key its marker names
/// (`keys`: key id → private key). Panics on a malformed envelope or an unknown key.
pub fn decrypt_envelopes(
    keyring: &Keyring,
    keys: &[(&str, &OaepPrivateKey)],
    text: &str,
) -> Vec<(String, Vec<u8>)> {
    keyring
        .scanner()
        .scan_str(text)
        .map(|item| match item {
            fle_shared::ScanItem::Envelope(f) => {
                let (_, key) = keys
                    .iter()
                    .find(|(id, _)| *id == f.key.as_str())
                    .unwrap_or_else(|| panic!("no private key for {}", f.key));
                (
                    f.key.to_string(),
                    key.decrypt_envelope(f.key, &f.envelope)
                        .unwrap()
                        .as_bytes()
                        .to_vec(),
                )
            }
            fle_shared::ScanItem::Malformed(m) => panic!("malformed envelope {m:?}"),
        })
        .collect()
}

/// Decrypts every demo-key envelope in `text` to text.
pub fn demo_decrypt(text: &str) -> Vec<String> {
    let private = demo_private_key();
    let ring = keyring(private.public_key().clone());
    decrypt_envelopes(&ring, &[("01", &private)], text)
        .into_iter()
        .map(|(_, p)| String::from_utf8(p).unwrap())
        .collect()
}

/// One test vector of `docs/ENVELOPE.md` (sections 2 and 5.7).
#[derive(Debug, Clone)]
pub struct SpecVector {
    /// The key id (`01` when the vector does not say).
    pub key: String,
    /// The bound path, for version-2 vectors that have one.
    pub path: Option<String>,
    /// The message.
    pub message: Vec<u8>,
    /// The whole envelope, markers included.
    pub envelope: String,
}

/// The test vectors of `docs/ENVELOPE.md`, in order, read from the file.
pub fn spec_vectors() -> Vec<SpecVector> {
    let text = read(&root().join("docs/ENVELOPE.md"));
    let mut out = Vec::new();
    let (mut key, mut path, mut message) = (None, None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("key:") {
            key = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("path (utf-8):") {
            let rest = rest.trim();
            path = (rest != "(none)").then(|| rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("message (hex):") {
            let hex = rest.split_whitespace().next().unwrap_or_default();
            message = Some(unhex(hex));
        } else if let Some(rest) = line.strip_prefix("envelope:") {
            out.push(SpecVector {
                key: key.take().unwrap_or_else(|| "01".into()),
                path: path.take(),
                message: message
                    .take()
                    .expect("an envelope line follows its message line"),
                envelope: rest.trim().to_owned(),
            });
        }
    }
    out
}

/// Opens every envelope of `text` (all version 2) with `private` under `keyring`: the
/// plaintexts (UTF-8) in order, and how many distinct encapsulations they came under.
pub fn open_v2_envelopes(
    keyring: &Keyring,
    private: &fle_shared::PrivateKey,
    text: &str,
) -> (Vec<String>, usize) {
    let mut encaps = std::collections::HashSet::new();
    let values = keyring
        .scanner()
        .scan_str(text)
        .map(|item| match item {
            fle_shared::ScanItem::Envelope(f) => {
                let fle_shared::Envelope::V2(token) = &f.envelope else {
                    panic!("not version 2: {:?}", f.envelope)
                };
                encaps.insert(token.encapsulation().to_vec());
                let plain = private.decrypt_envelope(f.key, &f.envelope).unwrap();
                plain.as_str().unwrap().to_owned()
            }
            fle_shared::ScanItem::Malformed(m) => panic!("malformed envelope {m:?}"),
        })
        .collect();
    (values, encaps.len())
}
