//! KmsKeyProvider against a real KMS (LocalStack on loopback): every backend's and the edge's
//! envelopes open through KMS `Decrypt` (RSAES_OAEP_SHA_256) for 2048/3072/4096-bit keys, and
//! every error class comes back classified.

use fle_decryptor::{ErrorClass, KeyProvider, KmsKeyProvider, ProviderError};
use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome};
use fle_shared::{backend, Envelope, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey, ScanItem};
use fle_test_support::localstack::{kms_client_for, LocalStack};
use fle_test_support::{require, root, Tool};

async fn create_key(
    client: &aws_sdk_kms::Client,
    spec: aws_sdk_kms::types::KeySpec,
) -> (String, RsaPublicKey) {
    let meta = client
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .key_spec(spec)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let public = client
        .get_public_key()
        .key_id(meta.key_id())
        .send()
        .await
        .unwrap();
    let algorithms = public.encryption_algorithms();
    assert!(algorithms.contains(&aws_sdk_kms::types::EncryptionAlgorithmSpec::RsaesOaepSha256));
    let der = public.public_key.unwrap().into_inner();
    (
        meta.arn.unwrap(),
        RsaPublicKey::from_spki_der(&der).unwrap(),
    )
}

fn envelopes(keyring: &Keyring, text: &str) -> Vec<(String, Envelope)> {
    keyring
        .scanner()
        .scan_str(text)
        .map(|i| match i {
            ScanItem::Envelope(f) => (f.key.to_string(), f.envelope),
            ScanItem::Malformed(m) => panic!("{m:?}"),
        })
        .collect()
}

fn failed(result: Result<fle_shared::Plaintext, ProviderError>) -> (ErrorClass, String) {
    let err = result.expect_err("decryption should fail");
    (
        err.class(),
        err.code().unwrap_or("NotConfigured").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_decrypts_what_fle_encrypts_and_classifies_errors() {
    require!(Tool::LocalStack);
    let localstack = LocalStack::start();
    let client = localstack.kms_client();
    let provider = KmsKeyProvider::new(client.clone());

    // Keys of every size, as KMS makes them.
    let mut entries = Vec::new();
    for (id, spec) in [
        ("k2048", aws_sdk_kms::types::KeySpec::Rsa2048),
        ("k3072", aws_sdk_kms::types::KeySpec::Rsa3072),
        ("k4096", aws_sdk_kms::types::KeySpec::Rsa4096),
    ] {
        let (arn, public) = create_key(&client, spec).await;
        entries.push(KeyEntry::new(id.parse().unwrap(), public).with_kms_key_id(arn));
    }
    let keyring = Keyring::new(entries).unwrap();

    // Every backend, every size, edge-case values.
    for backend in backend::all_backends() {
        let encryptor = FieldEncryptor::new(&keyring, backend).unwrap();
        for key in keyring.keys() {
            let limit = key.public_key().as_rsa().unwrap().max_plaintext_len();
            let values: Vec<Vec<u8>> = vec![
                Vec::new(),
                b"123-45-6789".to_vec(),
                "Jo \"JJ\" ✓".as_bytes().to_vec(),
                vec![b'x'; limit],
            ];
            let mut text = String::new();
            for v in &values {
                encryptor
                    .key(key.id())
                    .unwrap()
                    .encrypt_into("f", v, &mut text)
                    .unwrap();
                text.push(' ');
            }
            for ((id, envelope), expected) in envelopes(&keyring, &text).iter().zip(&values) {
                let entry = keyring.get_str(id).unwrap();
                let plaintext = provider.decrypt(entry, envelope).await.unwrap();
                assert_eq!(
                    plaintext.as_bytes(),
                    &expected[..],
                    "{} {}",
                    backend.name(),
                    key.id()
                );
            }
        }
    }

    // Envelope version 2 (`rsa-oaep`) under the same KMS keys: one request of values, among
    // them one far longer than RSA-OAEP carries, costs one KMS Decrypt (of its data key).
    let v2_ring = Keyring::new(
        keyring
            .keys()
            .iter()
            .map(|k| k.clone().with_envelope(fle_shared::EnvelopeVersion::V2))
            .collect(),
    )
    .unwrap();
    let encryptor = FieldEncryptor::new(&v2_ring, backend::default_backend()).unwrap();
    let mut doc = String::from("[");
    let values: Vec<String> = vec!["123-45-6789".into(), "Jo \"JJ\"".into(), "x".repeat(65536)];
    for key in v2_ring.keys() {
        let mut state = fle_shared::RequestState::new();
        for v in &values {
            if doc.len() > 1 {
                doc.push(',');
            }
            doc.push('"');
            let mut envelope = String::new();
            encryptor
                .key(key.id())
                .unwrap()
                .encrypt_in(&mut state, "f", v.as_bytes(), &mut envelope)
                .unwrap();
            doc.push_str(&envelope);
            doc.push('"');
        }
    }
    doc.push(']');
    let budget = std::sync::Arc::new(fle_decryptor::KmsBudget::new(4, 1000.0).unwrap());
    let decryptor = fle_decryptor::Decryptor::new(v2_ring, std::sync::Arc::new(provider.clone()))
        .with_budget(budget.clone());
    let out = decryptor
        .decrypt(
            &doc,
            fle_decryptor::Mode::Json,
            fle_decryptor::OnError::Fail,
        )
        .await
        .unwrap();
    let opened: Vec<String> = serde_json::from_str(&out.text).unwrap();
    assert_eq!(opened.len(), 9);
    for (i, v) in opened.iter().enumerate() {
        assert_eq!(v, &values[i % 3]);
    }
    assert_eq!(budget.calls(), 3, "one KMS Decrypt per key's encapsulation");

    // The edge's output: the reference event's 18 values.
    let edge_keyring = Keyring::new(vec![keyring.get_str("k2048").unwrap().clone()]).unwrap();
    let config = EdgeConfig::from_toml_str(
        "[edge]\nkey = \"k2048\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n",
    )
    .unwrap();
    let edge =
        EdgeEncryptor::new(edge_keyring.clone(), config, backend::default_backend()).unwrap();
    let event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/events/reference-3x6.json")).unwrap(),
    )
    .unwrap();
    let Outcome::Forward { request, .. } = edge.handle_event(&event) else {
        panic!("refused")
    };
    let body = request["body"]["data"].as_str().unwrap();
    let mut values = Vec::new();
    for (id, envelope) in envelopes(&edge_keyring, body) {
        let plaintext = provider
            .decrypt(edge_keyring.get_str(&id).unwrap(), &envelope)
            .await
            .unwrap();
        values.push(plaintext.as_str().unwrap().to_owned());
    }
    assert_eq!(values.len(), 18);
    assert_eq!(
        (values[0].as_str(), values[3].as_str()),
        ("Jo \"JJ\"", "123-45-6789")
    );

    // An alias works as the configured KMS key id.
    let k2048 = keyring.get_str("k2048").unwrap();
    client
        .create_alias()
        .alias_name("alias/fle-test")
        .target_key_id(k2048.kms_key_id().unwrap())
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    FieldEncryptor::new(&edge_keyring, backend::default_backend())
        .unwrap()
        .key_str("k2048")
        .unwrap()
        .encrypt_into("ssn", b"987-65-4321", &mut text)
        .unwrap();
    let (_, envelope) = envelopes(&edge_keyring, &text).remove(0);
    let by_alias = k2048.clone().with_kms_key_id("alias/fle-test");
    assert_eq!(
        provider
            .decrypt(&by_alias, &envelope)
            .await
            .unwrap()
            .as_bytes(),
        b"987-65-4321"
    );

    // No KMS key configured: refused before any call.
    let unconfigured = KeyEntry::new("k2048".parse().unwrap(), k2048.public_key().clone());
    let err = provider
        .decrypt(&unconfigured, &envelope)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotConfigured { .. }));
    assert_eq!(err.class(), ErrorClass::Permanent);

    // Another key of the same size: refused. (Real KMS says IncorrectKeyException, which the unit
    // tests classify; LocalStack answers some wrong-key requests with a 500, so no class here.)
    let (other_arn, _) = create_key(&client, aws_sdk_kms::types::KeySpec::Rsa2048).await;
    let wrong = k2048.clone().with_kms_key_id(other_arn.clone());
    assert!(provider.decrypt(&wrong, &envelope).await.is_err());

    // A disabled key: permanent.
    client
        .disable_key()
        .key_id(k2048.kms_key_id().unwrap())
        .send()
        .await
        .unwrap();
    let (class, code) = failed(provider.decrypt(k2048, &envelope).await);
    assert_eq!(
        (class, code.as_str()),
        (ErrorClass::Permanent, "DisabledException")
    );
    client
        .enable_key()
        .key_id(k2048.kms_key_id().unwrap())
        .send()
        .await
        .unwrap();
    assert!(provider.decrypt(k2048, &envelope).await.is_ok());

    // A key that does not exist: permanent.
    let missing = k2048.clone().with_kms_key_id(
        "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000",
    );
    let (class, code) = failed(provider.decrypt(&missing, &envelope).await);
    assert_eq!(
        (class, code.as_str()),
        (ErrorClass::Permanent, "NotFoundException")
    );

    // Nothing listening: transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = KmsKeyProvider::new(kms_client_for(&format!("http://{closed}")));
    let (class, code) = failed(unreachable.decrypt(k2048, &envelope).await);
    assert_eq!(
        (class, code.as_str()),
        (ErrorClass::Transient, "DispatchFailure")
    );
    drop(localstack);
}

/// A KMS client for LocalStack acting as `account` (LocalStack takes a 12-digit access key id
/// as the account).
fn client_as(endpoint: &str, account: &str) -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            account,
            "test",
            None,
            None,
            "fle-tests",
        ))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_key_through_an_assumed_role() {
    require!(Tool::LocalStack);
    use fle_decryptor::{
        AssumeRole, Decryptor, KmsConfig, KmsSettings, KmsSettingsError, Mode, OnError,
        SecretSource,
    };
    use std::sync::Arc;

    let localstack = LocalStack::start();
    // The key lives in account 111111111111, region us-east-1.
    let owner = client_as(&localstack.endpoint, "111111111111");
    let (arn, public) = create_key(&owner, aws_sdk_kms::types::KeySpec::Rsa2048).await;
    assert!(arn.contains(":us-east-1:111111111111:"), "{arn}");
    // By its bare key id, the key is found only in its own account: a call made with the
    // service's own credentials cannot reach it, one made through the role can.
    let key_id = arn.rsplit('/').next().unwrap().to_owned();
    let keyring = Keyring::new(vec![
        KeyEntry::new("01".parse().unwrap(), public).with_kms_key_id(key_id)
    ])
    .unwrap();
    let edge = EdgeEncryptor::new(
        keyring.clone(),
        EdgeConfig::from_toml_str("[edge]\nkey = \"01\"\nfields = [\"ssn\", \"age\"]\n").unwrap(),
        backend::default_backend(),
    )
    .unwrap();
    let doc = r#"{"ssn": "123-45-6789", "age": 42, "note": "a \"quoted\" note"}"#;
    let (encrypted, _) = edge
        .encrypt_body(fle_edge_encryptor::BodyKind::Json, doc)
        .unwrap();

    // The service runs as account 000000000000, region us-east-1. No instance metadata is ever
    // asked (loopback only).
    std::env::set_var("AWS_ACCESS_KEY_ID", "000000000000");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    let direct = KmsConfig {
        default: KmsSettings {
            endpoint_url: Some(localstack.endpoint.clone()),
            ..KmsSettings::default()
        },
        ..KmsConfig::default()
    };
    let provider = KmsKeyProvider::for_keyring(&keyring, &direct)
        .await
        .unwrap();
    let d = Decryptor::new(keyring.clone(), Arc::new(provider));
    let err = d
        .decrypt(&encrypted, Mode::Json, OnError::Fail)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NotFoundException"), "{err}");

    // Through the role in the key's account, external ID from the environment.
    std::env::set_var("FLE_TEST_EXTERNAL_ID", "ext-6f1c");
    let role = |external_id| KmsConfig {
        default: KmsSettings {
            endpoint_url: Some(localstack.endpoint.clone()),
            region: None,
            assume_role: Some(AssumeRole {
                role_arn: "arn:aws:iam::111111111111:role/fle-decrypt".into(),
                external_id: Some(external_id),
                session_name: Some("fle-test".into()),
            }),
        },
        ..KmsConfig::default()
    };
    let provider = KmsKeyProvider::for_keyring(
        &keyring,
        &role(SecretSource::Env("FLE_TEST_EXTERNAL_ID".into())),
    )
    .await
    .unwrap();
    let d = Decryptor::new(keyring.clone(), Arc::new(provider));
    let out = d
        .decrypt(&encrypted, Mode::Json, OnError::Fail)
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out.text).unwrap(),
        serde_json::from_str::<serde_json::Value>(doc).unwrap()
    );

    // External ID from a file works the same; a missing one stops before any call.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("external-id");
    std::fs::write(&file, "ext-6f1c\n").unwrap();
    let provider = KmsKeyProvider::for_keyring(&keyring, &role(SecretSource::File(file)))
        .await
        .unwrap();
    let d = Decryptor::new(keyring.clone(), Arc::new(provider));
    assert!(d
        .decrypt(&encrypted, Mode::Json, OnError::Fail)
        .await
        .is_ok());
    let missing = KmsKeyProvider::for_keyring(
        &keyring,
        &role(SecretSource::Env("FLE_TEST_NO_SUCH_VARIABLE".into())),
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, KmsSettingsError::Secret(_)), "{missing}");

    // A key given by ARN gets the ARN's region, whatever the environment's.
    std::env::set_var("AWS_REGION", "eu-west-3");
    let by_arn = Keyring::new(vec![KeyEntry::new(
        "01".parse().unwrap(),
        keyring.keys()[0].public_key().clone(),
    )
    .with_kms_key_id(arn.replace(":us-east-1:", ":ap-south-2:"))])
    .unwrap();
    let provider = KmsKeyProvider::for_keyring(&by_arn, &direct).await.unwrap();
    let region = provider
        .client(&"01".parse().unwrap())
        .config()
        .region()
        .cloned();
    assert_eq!(region.as_ref().map(|r| r.as_ref()), Some("ap-south-2"));
}
