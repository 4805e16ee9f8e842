//! The decryptor against the test suite's own KMS-wire server, through the real aws-sdk-kms
//! client: every envelope of a document in flight at once up to the bound, duplicates once,
//! injected throttling / 5xx / connection resets retried, permanent errors not retried.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fle_decryptor::{
    DecryptPolicy, Decryptor, DocumentError, ErrorClass, KmsKeyProvider, Mode, OnError,
    ProblemKind, ProviderError, RateLimiter,
};
use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring};
use fle_test_support::demo_private_key as private_key;
use fle_test_support::kms_wire::{Fault, KmsWire};
use fle_test_support::localstack::kms_client_for;

const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/0f1e2d3c-demo";

fn keyring(kms_key_id: &str) -> Keyring {
    let entry = KeyEntry::new("01".parse().unwrap(), private_key().public_key().clone())
        .with_kms_key_id(kms_key_id);
    Keyring::new(vec![entry]).unwrap()
}

/// A JSON array of `n` distinct envelopes (values "value-0", "value-1", ...).
fn document(keyring: &Keyring, n: usize) -> String {
    let encryptor = FieldEncryptor::new(keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let mut doc = String::from("[");
    for i in 0..n {
        if i > 0 {
            doc.push(',');
        }
        doc.push('"');
        key.encrypt_into("v", format!("value-{i}").as_bytes(), &mut doc)
            .unwrap();
        doc.push('"');
    }
    doc.push(']');
    doc
}

fn decryptor(wire: &KmsWire, kms_key_id: &str, policy: DecryptPolicy) -> Decryptor {
    let provider = KmsKeyProvider::new(kms_client_for(&wire.endpoint));
    Decryptor::new(keyring(kms_key_id), Arc::new(provider))
        .with_limiter(Arc::new(RateLimiter::new(10_000.0, 10_000)))
        .with_policy(policy)
}

fn fast_retries() -> DecryptPolicy {
    DecryptPolicy {
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..DecryptPolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_envelopes_in_flight_up_to_the_bound() {
    let wire = KmsWire::start(vec![(ARN.into(), private_key())], Duration::from_millis(50));
    let d = decryptor(&wire, ARN, DecryptPolicy::default());
    let doc = document(d.keyring(), 60);
    // Each envelope twice: still one call each.
    let doc = format!("{{\"a\": {doc}, \"b\": {doc}}}");
    let out = d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v["b"][59], "value-59");
    assert_eq!(out.report.decrypted, 120);
    let stats = wire.stats();
    assert_eq!(stats.requests.load(Ordering::SeqCst), 60);
    assert_eq!(
        stats.max_in_flight.load(Ordering::SeqCst),
        DecryptPolicy::default().concurrency
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_5xx_and_resets_are_retried() {
    let wire = KmsWire::start(vec![(ARN.into(), private_key())], Duration::from_millis(2));
    let d = decryptor(&wire, ARN, fast_retries());
    let doc = document(d.keyring(), 3);
    wire.inject([
        Fault::Throttle,
        Fault::Internal,
        Fault::Unavailable,
        Fault::Reset,
        Fault::Throttle,
    ]);
    let out = d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v, serde_json::json!(["value-0", "value-1", "value-2"]));
    let stats = wire.stats();
    assert_eq!(stats.faults.load(Ordering::SeqCst), 5);
    assert_eq!(stats.decrypted.load(Ordering::SeqCst), 3);
    assert_eq!(stats.requests.load(Ordering::SeqCst), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_max_attempts() {
    let wire = KmsWire::start(vec![(ARN.into(), private_key())], Duration::from_millis(1));
    let policy = DecryptPolicy {
        max_attempts: 3,
        ..fast_retries()
    };
    let d = decryptor(&wire, ARN, policy);
    let doc = document(d.keyring(), 1);
    wire.inject([Fault::Throttle; 5]);
    let err = d
        .decrypt(&doc, Mode::Json, OnError::Fail)
        .await
        .unwrap_err();
    let DocumentError::Envelope(problem) = err else {
        panic!("{err}")
    };
    let ProblemKind::Provider(e) = &problem.kind else {
        panic!("{problem}")
    };
    assert_eq!(e.code(), Some("ThrottlingException"));
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_not_retried() {
    let wire = KmsWire::start(vec![(ARN.into(), private_key())], Duration::from_millis(1));
    // The keyring names a KMS key the server does not have.
    let d = decryptor(
        &wire,
        "arn:aws:kms:us-east-1:111122223333:key/other",
        fast_retries(),
    );
    let doc = document(d.keyring(), 2);
    let out = d.decrypt(&doc, Mode::Json, OnError::Leave).await.unwrap();
    assert_eq!(*out.text, doc);
    assert_eq!(out.report.problems.len(), 2);
    for p in &out.report.problems {
        let ProblemKind::Provider(ProviderError::Failed { code, class, .. }) = &p.kind else {
            panic!("{p}")
        };
        assert_eq!(
            (code.as_str(), *class),
            ("NotFoundException", ErrorClass::Permanent)
        );
    }
    assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_of_a_kms_key() {
    let wire = KmsWire::start(vec![(ARN.into(), private_key())], Duration::from_millis(1));
    let client = kms_client_for(&wire.endpoint);
    let public = KmsKeyProvider::public_key(&client, ARN).await.unwrap();
    assert_eq!(&public, private_key().public_key());
    let err = KmsKeyProvider::public_key(&client, "alias/missing")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NotFoundException"), "{err}");
}
