//! The Lambda@Edge package, end to end: built by `edge-encryptor/build-lambda-edge.sh`, run under
//! `node` on CloudFront events, its output decrypted with the demo private key and with OpenSSL.

mod common;

use std::path::Path;

use common::*;
use fle_shared::Keyring;
use serde_json::{json, Value};

fn build_package(dir: &Path) -> std::path::PathBuf {
    let config = format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n\
         [[keys]]\nid = \"02\"\npublic_key = {:?}\nkms_key_id = \"alias/not-shipped\"\n\
         [edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\", {{ path = \"$.card.number\", key = \"02\" }}]\n",
        root().join("keys/demo-01.pub.pem").to_str().unwrap(),
        fixture("keys/rsa-3072.pub.pem").to_str().unwrap(),
    );
    let (unpacked, size, report) = build_lambda_edge_package(dir, &config);
    assert!(report.contains(&format!("{size} bytes")), "{report}");
    let mut names: Vec<String> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["fle.toml", "fle_edge.wasm", "index.mjs"]);
    let bundled = read(&unpacked.join("fle.toml"));
    assert!(
        bundled.contains("BEGIN PUBLIC KEY")
            && !bundled.contains("public_key =")
            && !bundled.contains("not-shipped")
    );
    unpacked
}

fn decrypt_with_keys(keyring: &Keyring, text: &str) -> Vec<(String, Vec<u8>)> {
    let k01 = demo_private_key();
    let (k02, _) = key_pair(3072);
    decrypt_envelopes(keyring, &[("01", &k01), ("02", &k02)], text)
}

fn openssl_decrypt(envelope_payload: &str, key: &Path) -> Vec<u8> {
    use base64::Engine;
    let ct = base64::engine::general_purpose::STANDARD
        .decode(envelope_payload)
        .unwrap();
    openssl_oaep(&["-decrypt"], key, &ct)
}

#[test]
fn lambda_edge_package_under_node() {
    require!(Tool::Node, Tool::OpenSsl);
    let dir = tempfile::tempdir().unwrap();
    let package = build_package(dir.path());
    let keyring = Keyring::from_toml_file(dir.path().join("fle.toml")).unwrap();

    let reference: Value =
        serde_json::from_str(&read(&fixture("events/reference-3x6.json"))).unwrap();
    let mut text_event = reference.clone();
    let body = json!({"card": {"number": "4111 1111 1111 1111", "brand": "visa"}, "email": "x@example.com"}).to_string();
    text_event["Records"][0]["cf"]["request"]["body"] =
        json!({"inputTruncated": false, "action": "read-only", "encoding": "text", "data": body});
    let mut truncated = reference.clone();
    truncated["Records"][0]["cf"]["request"]["body"]["inputTruncated"] = json!(true);
    let mut injection = text_event.clone();
    injection["Records"][0]["cf"]["request"]["body"]["data"] =
        json!(r##"{"comment": "#01#AAAA#10#"}"##);

    for host_rsa in [true, false] {
        let (backend, results, _) = run_lambda_edge(
            &package,
            &[
                reference.clone(),
                text_event.clone(),
                truncated.clone(),
                injection.clone(),
            ],
            host_rsa,
        );
        assert_eq!(
            backend,
            if host_rsa {
                "node-crypto"
            } else {
                "rustcrypto-rsa"
            }
        );

        // The reference event: 18 values, every other request field untouched.
        let forwarded = &results[0];
        let original = &reference["Records"][0]["cf"]["request"];
        for field in [
            "clientIp",
            "method",
            "uri",
            "querystring",
            "headers",
            "origin",
        ] {
            assert_eq!(forwarded[field], original[field], "{field}");
        }
        assert_eq!(forwarded["body"]["action"], "replace");
        let text = forwarded["body"]["data"].as_str().unwrap();
        let values = decrypt_with_keys(&keyring, text);
        assert_eq!(values.len(), 18);
        assert_eq!(values[0].1, b"Jo \"JJ\"");
        assert_eq!(values[7].1, "Núñez".as_bytes());
        // And with OpenSSL, straight from the envelope text.
        let first = &text[text.find("#01#").unwrap() + 4..];
        let payload = &first[..first.find("#10#").unwrap()];
        assert_eq!(
            openssl_decrypt(payload, &root().join("keys/demo-01.key.pem")),
            b"Jo \"JJ\""
        );

        // Text encoding, a path with its own key (RSA-3072).
        let text = results[1]["body"]["data"].as_str().unwrap();
        assert!(text.contains(r#""brand":"visa""#));
        let values = decrypt_with_keys(&keyring, text);
        assert_eq!(
            values,
            [
                ("02".into(), b"4111 1111 1111 1111".to_vec()),
                ("01".into(), b"x@example.com".to_vec())
            ]
        );
        let at = &text[text.find("#02#").unwrap() + 4..];
        let payload = &at[..at.find("#20#").unwrap()];
        assert_eq!(
            openssl_decrypt(payload, &fixture("keys/rsa-3072.key.pem")),
            b"4111 1111 1111 1111"
        );

        // Refusals are generated responses.
        assert_eq!(results[2]["status"], "413");
        assert_eq!(results[3]["status"], "400");
        assert!(results[3]["body"]
            .as_str()
            .unwrap()
            .contains("marker_injection"));
    }
}

#[test]
fn lambda_edge_package_writes_version_2() {
    require!(Tool::Node);
    let reference: Value =
        serde_json::from_str(&read(&fixture("events/reference-3x6.json"))).unwrap();
    for (public, private, extra) in [
        ("keys/demo-02.pub.pem", "keys/demo-02.key.pem", ""),
        (
            "keys/demo-01.pub.pem",
            "keys/demo-01.key.pem",
            "envelope = \"v2\"\n",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[[keys]]\nid = \"01\"\npublic_key = {:?}\n{extra}\
             [edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n",
            root().join(public).to_str().unwrap(),
        );
        let (package, _, _) = build_lambda_edge_package(dir.path(), &config);
        // The bundled configuration keeps the key's envelope version.
        assert!(read(&package.join("fle.toml")).contains("envelope = \"v2\""));
        let private = fle_shared::PrivateKey::from_pem(&read(&root().join(private))).unwrap();
        let keyring = Keyring::from_toml_file(package.join("fle.toml")).unwrap();
        for host_rsa in [true, false] {
            let (_, results, _) =
                run_lambda_edge(&package, std::slice::from_ref(&reference), host_rsa);
            let body = results[0]["body"]["data"].as_str().unwrap();
            let (values, encaps) = open_v2_envelopes(&keyring, &private, body);
            assert_eq!(values.len(), 18, "{public}");
            assert_eq!(values[3], "123-45-6789");
            assert_eq!(encaps, 1, "one encapsulation for the request");
        }
    }
}

#[test]
fn lambda_edge_package_reuses_an_encapsulation_within_limits() {
    require!(Tool::Node);
    let reference: Value =
        serde_json::from_str(&read(&fixture("events/reference-3x6.json"))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[[keys]]\nid = \"01\"\npublic_key = {:?}\n\
         [edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n\
         reuse_encapsulation = {{ seconds = 3600, requests = 2 }}\n",
        root().join("keys/demo-02.pub.pem").to_str().unwrap(),
    );
    let (package, _, _) = build_lambda_edge_package(dir.path(), &config);
    // The bundled configuration keeps the setting.
    assert!(read(&package.join("fle.toml")).contains("reuse_encapsulation"));
    let private =
        fle_shared::PrivateKey::from_pem(&read(&root().join("keys/demo-02.key.pem"))).unwrap();
    let keyring = Keyring::from_toml_file(package.join("fle.toml")).unwrap();
    let events = vec![reference; 3];
    let (_, results, _) = run_lambda_edge(&package, &events, true);
    let mut encaps = Vec::new();
    let mut indexes = Vec::new();
    for result in &results {
        let body = result["body"]["data"].as_str().unwrap();
        let (values, _) = open_v2_envelopes(&keyring, &private, body);
        assert_eq!(values.len(), 18);
        assert_eq!(values[3], "123-45-6789");
        for item in keyring.scanner().scan_str(body) {
            let fle_shared::ScanItem::Envelope(f) = item else {
                panic!("malformed")
            };
            let fle_shared::Envelope::V2(token) = &f.envelope else {
                panic!("not version 2")
            };
            encaps.push(token.encapsulation().to_vec());
            indexes.push(token.index());
        }
    }
    // The first two requests share one encapsulation (the host's clock is read, the age limit
    // is far), its index going on; the third (requests = 2) gets a new one.
    assert!(encaps[..36].iter().all(|e| *e == encaps[0]));
    assert!(encaps[36..].iter().all(|e| *e == encaps[36]));
    assert_ne!(encaps[0], encaps[36]);
    assert_eq!(indexes[..36], (0..36).collect::<Vec<u32>>()[..]);
    assert_eq!(indexes[36..], (0..18).collect::<Vec<u32>>()[..]);
}
