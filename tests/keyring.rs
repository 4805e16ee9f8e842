//! Loading keyrings from TOML: the minimal shape, every option, every refusal.

mod common;

use std::path::Path;

use common::*;
use fle_shared::{EnvelopeVersion, KeyKind, Keyring, KeyringError, PublicKeyError};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A temporary directory holding a copy of the test keys under `keys/`.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for name in [
        "rsa-2048.pub.pem",
        "rsa-2048.pub.der",
        "rsa-3072.pub.pem",
        "rsa-4096.pub.pem",
        "rsa-1024.pub.pem",
        "ec-p256.pub.pem",
        "ec-p384.pub.pem",
        "ed25519.pub.pem",
        "rsa-2048.pkcs1.pub.pem",
        "rsa-2048.key.pem",
    ] {
        std::fs::copy(
            fixture(&format!("keys/{name}")),
            dir.path().join("keys").join(name),
        )
        .unwrap();
    }
    dir
}

fn load(text: &str) -> Result<Keyring, KeyringError> {
    let dir = workdir();
    Keyring::from_toml_file(write(dir.path(), "fle.toml", text))
}

#[test]
fn the_minimal_shape_from_the_issue() {
    let ring = load(
        r#"
[[keys]]
id = "01"
public_key = "keys/rsa-2048.pub.pem"   # PEM or DER SubjectPublicKeyInfo
kms_key_id = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
"#,
    )
    .unwrap();
    let key = ring.get_str("01").unwrap();
    assert_eq!(key.markers().prefix.as_str(), "#01#");
    assert_eq!(key.markers().suffix.as_str(), "#10#");
    assert_eq!(key.public_key().as_rsa().unwrap().modulus_bits(), 2048);
    assert_eq!(key.public_key().as_rsa().unwrap().max_plaintext_len(), 190);
    assert!(key.kms_key_id().unwrap().ends_with("7890ab"));
    // kms_key_id is optional.
    let ring = load("[[keys]]\nid = \"01\"\npublic_key = \"keys/rsa-2048.pub.pem\"\n").unwrap();
    assert_eq!(ring.get_str("01").unwrap().kms_key_id(), None);
}

#[test]
fn every_option() {
    let pem = read(&fixture("keys/rsa-3072.pub.pem"));
    let ring = load(&format!(
        r#"
[edge]                         # other components' tables are left to them
key = "01"
fields = ["ssn"]

[[keys]]
id = "01"
public_key = "keys/rsa-2048.pub.der"

[[keys]]
id = "k3"
public_key_pem = """
{pem}"""
prefix = "<k3>"
suffix = "</k3>"

[[keys]]
id = "4096"
public_key = "keys/rsa-4096.pub.pem"
"#
    ))
    .unwrap();
    let ids: Vec<_> = ring.keys().iter().map(|k| k.id().as_str()).collect();
    assert_eq!(ids, ["01", "k3", "4096"]);
    let k3 = ring.get_str("k3").unwrap();
    assert_eq!(
        (k3.markers().prefix.as_str(), k3.markers().suffix.as_str()),
        ("<k3>", "</k3>")
    );
    assert_eq!(k3.public_key().as_rsa().unwrap().modulus_bits(), 3072);
    assert_eq!(
        ring.get_str("4096").unwrap().markers().suffix.as_str(),
        "#6904#"
    );
    assert_eq!(ring.scanner().keys().len(), 3);
}

#[test]
fn relative_paths_follow_the_config_file() {
    let dir = workdir();
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).unwrap();
    let path = write(
        &sub,
        "fle.toml",
        "[[keys]]\nid = \"01\"\npublic_key = \"../keys/rsa-2048.pub.pem\"\n",
    );
    assert!(Keyring::from_toml_file(&path).is_ok());
    let abs = dir.path().join("keys/rsa-2048.pub.pem");
    let path = write(
        &sub,
        "abs.toml",
        &format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n",
            abs.to_str().unwrap()
        ),
    );
    assert!(Keyring::from_toml_file(&path).is_ok());
}

fn refused(text: &str) -> String {
    let err = load(text).unwrap_err();
    err.to_string()
}

#[test]
fn refusals() {
    let key = |id: &str, extra: &str| {
        format!("[[keys]]\nid = \"{id}\"\npublic_key = \"keys/rsa-2048.pub.pem\"\n{extra}\n")
    };

    assert!(refused("").contains("no keys"));
    assert!(refused(&format!("{}{}", key("01", ""), key("01", ""))).contains("configured twice"));
    // 01's suffix #10# is 10's prefix.
    let msg = refused(&format!("{}{}", key("01", ""), key("10", "")));
    assert!(
        msg.contains("markers overlap") && msg.contains("#10#"),
        "{msg}"
    );
    // One prefix is a prefix of another.
    let msg = refused(&format!(
        "{}{}",
        key("01", ""),
        key("02", "prefix = \"#01#2\"")
    ));
    assert!(msg.contains("markers overlap"), "{msg}");
    assert!(refused(&key("01", "prefix = \"A01#\"")).contains("cannot occur in base64"));
    assert!(refused(&key("01", "suffix = \"=\"")).contains("cannot occur in base64"));
    assert!(refused(&key("01", "suffix = \"#\\\"#\"")).contains("JSON would escape"));
    assert!(refused(&key("0 1", "")).contains("invalid key id"));
    assert!(refused(&key("01", "kms_key_id = \"\"")).contains("kms_key_id"));
    let msg = refused(&key("01", "kms_keyid = \"x\""));
    assert!(
        msg.contains("unknown field") && msg.contains("kms_keyid"),
        "{msg}"
    );
    assert!(refused("[[keys]]\nid = \"01\"\n").contains("exactly one of public_key"));
    assert!(
        refused("[[keys]]\nid = \"01\"\npublic_key = \"keys/missing.pem\"\n")
            .contains("cannot read")
    );
    assert!(refused("[[keys]\n").contains("invalid keyring"));

    let public = |file: &str| {
        refused(&format!(
            "[[keys]]\nid = \"01\"\npublic_key = \"keys/{file}\"\n"
        ))
    };
    assert!(public("rsa-1024.pub.pem").contains("1024 bits"));
    assert!(public("ec-p384.pub.pem").contains("not an EC P-256 key"));
    assert!(public("ed25519.pub.pem").contains("neither RSA nor EC P-256"));
    let with = |file: &str, extra: &str| {
        refused(&format!(
            "[[keys]]\nid = \"01\"\npublic_key = \"keys/{file}\"\n{extra}\n"
        ))
    };
    assert!(with("ec-p256.pub.pem", "envelope = \"v1\"").contains("needs an RSA key"));
    assert!(with("rsa-2048.pub.pem", "envelope = \"v3\"").contains("use v1 or v2"));
    assert!(public("rsa-2048.pkcs1.pub.pem").contains("RSAPublicKey_in"));
    assert!(public("rsa-2048.key.pem").contains("\"PRIVATE KEY\""));
    assert!(
        !public("rsa-2048.key.pem").contains("MII"),
        "never echo key material"
    );
}

#[test]
fn p256_keys_write_version_2_and_rsa_keys_choose() {
    let ring = load(concat!(
        "[[keys]]\nid = \"01\"\npublic_key = \"keys/rsa-2048.pub.pem\"\n",
        "[[keys]]\nid = \"02\"\npublic_key = \"keys/ec-p256.pub.pem\"\n",
        "[[keys]]\nid = \"03\"\npublic_key = \"keys/rsa-3072.pub.pem\"\nenvelope = \"v2\"\n",
    ))
    .unwrap();
    let versions: Vec<_> = ring.keys().iter().map(|k| k.envelope()).collect();
    assert_eq!(
        versions,
        [
            EnvelopeVersion::V1,
            EnvelopeVersion::V2,
            EnvelopeVersion::V2
        ]
    );
    assert_eq!(ring.keys()[1].public_key().kind(), KeyKind::P256);
    assert_eq!(ring.keys()[1].public_key().describe(), "P-256");
    assert_eq!(
        ring.scanner().keys()[2].kind,
        KeyKind::Rsa { modulus_len: 384 }
    );
}

#[test]
fn typed_errors() {
    let err = load("[[keys]]\nid = \"01\"\npublic_key = \"keys/rsa-1024.pub.pem\"\n").unwrap_err();
    assert!(matches!(
        err,
        KeyringError::PublicKey {
            source: PublicKeyError::UnsupportedSize { bits: 1024 },
            ..
        }
    ));
}
