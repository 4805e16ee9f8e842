//! Envelope version 2 through KMS, with the real aws-sdk-kms client against the test suite's
//! KMS-wire server: `DeriveSharedSecret` (raw ECDH, as AWS KMS answers it) for P-256
//! `KEY_AGREEMENT` keys and `Decrypt` of the data key for RSA keys. One KMS call per distinct
//! encapsulation, whatever the number of values; none for an encapsulation already in the
//! decryptor's cache; nothing partially decrypted when a value does not open.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fle_decryptor::{
    Decryptor, DocumentError, KmsKeyProvider, Mode, OnError, ProblemKind, RateLimiter, SecretCache,
};
use fle_shared::{
    backend, EnvelopeVersion, FieldEncryptor, KeyEntry, Keyring, P256PrivateKey, PrivateKey,
    PublicKey, RequestState,
};
use fle_test_support::kms_wire::KmsWire;
use fle_test_support::localstack::kms_client_for;

const P256_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/p256-agreement";
const RSA_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/rsa-v2";

fn p256_private() -> P256PrivateKey {
    let pem =
        std::fs::read_to_string(fle_test_support::root().join("keys/demo-02.key.pem")).unwrap();
    P256PrivateKey::from_pem(&pem).unwrap()
}

/// The keyring entry of `private` (key id `02`) with `arn`, writing version 2.
fn keyring(private: &PrivateKey, arn: &str) -> Keyring {
    let entry = KeyEntry::new("02".parse().unwrap(), private.public_key())
        .with_kms_key_id(arn)
        .with_envelope(EnvelopeVersion::V2);
    Keyring::new(vec![entry]).unwrap()
}

/// A JSON array of `n` values ("value-0", ...) sealed as `requests` requests, round robin.
fn document(keyring: &Keyring, n: usize, requests: usize) -> String {
    let encryptor = FieldEncryptor::new(keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("02").unwrap();
    let mut states: Vec<RequestState> = (0..requests).map(|_| RequestState::new()).collect();
    let mut doc = String::from("[");
    for i in 0..n {
        if i > 0 {
            doc.push(',');
        }
        doc.push('"');
        key.encrypt_in(
            &mut states[i % requests],
            "v",
            format!("value-{i}").as_bytes(),
            &mut doc,
        )
        .unwrap();
        doc.push('"');
    }
    doc.push(']');
    doc
}

fn decryptor(wire: &KmsWire, keyring: Keyring) -> Decryptor {
    let provider = KmsKeyProvider::new(kms_client_for(&wire.endpoint));
    Decryptor::new(keyring, Arc::new(provider))
        .with_limiter(Arc::new(RateLimiter::new(10_000.0, 10_000)))
}

fn keys() -> Vec<(&'static str, PrivateKey)> {
    vec![
        (P256_ARN, PrivateKey::P256(p256_private())),
        (
            RSA_ARN,
            PrivateKey::Rsa(fle_test_support::demo_private_key()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_values_of_one_request_cost_one_kms_call() {
    for (arn, private) in keys() {
        let ring = keyring(&private, arn);
        let wire = KmsWire::start(vec![(arn.to_owned(), private)], Duration::from_millis(20));
        let d = decryptor(&wire, ring.clone());
        let doc = document(&ring, 60, 1);
        let out = d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(v[0], "value-0");
        assert_eq!(v[59], "value-59");
        assert_eq!(out.report.decrypted, 60);
        let stats = wire.stats();
        assert_eq!(stats.requests.load(Ordering::SeqCst), 1, "{arn}");
        let (derived, decrypted) = (
            stats.derived.load(Ordering::SeqCst),
            stats.decrypted.load(Ordering::SeqCst),
        );
        if arn == P256_ARN {
            assert_eq!((derived, decrypted), (1, 0));
        } else {
            assert_eq!((derived, decrypted), (0, 1));
        }
        // The same document again: its encapsulation is cached, no KMS call.
        let again = d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
        assert_eq!(again.text, out.text);
        assert_eq!(stats.requests.load(Ordering::SeqCst), 1);
        assert_eq!(d.secret_cache().hits(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_per_encapsulation_and_none_with_a_warm_shared_cache() {
    let private = PrivateKey::P256(p256_private());
    let ring = keyring(&private, P256_ARN);
    let wire = KmsWire::start(
        vec![(P256_ARN.to_owned(), private)],
        Duration::from_millis(5),
    );
    let doc = document(&ring, 30, 3);
    let cache = Arc::new(SecretCache::new(16, Duration::from_secs(60)));
    let d = decryptor(&wire, ring.clone()).with_secret_cache(cache.clone());
    d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 3);
    assert_eq!(cache.len(), 3);
    // Another decryptor sharing the cache (same provider settings) needs no call.
    let other = decryptor(&wire, ring).with_secret_cache(cache);
    other
        .decrypt(&doc, Mode::Json, OnError::Fail)
        .await
        .unwrap();
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_value_fails_alone_and_releases_nothing() {
    let private = PrivateKey::P256(p256_private());
    let ring = keyring(&private, P256_ARN);
    let wire = KmsWire::start(
        vec![(P256_ARN.to_owned(), private)],
        Duration::from_millis(1),
    );
    let d = decryptor(&wire, ring.clone());
    let doc = document(&ring, 3, 1);
    // Flip one base64 character inside the second value's ciphertext (near its end).
    let second_end = doc.match_indices("#20#").nth(1).unwrap().0;
    let mut bytes = doc.into_bytes();
    let at = second_end - 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let doc = String::from_utf8(bytes).unwrap();
    let err = d
        .decrypt(&doc, Mode::Json, OnError::Fail)
        .await
        .unwrap_err();
    let DocumentError::Envelope(problem) = err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&problem.kind, ProblemKind::Provider(e) if e.to_string().contains("does not authenticate")),
        "{problem:?}"
    );
    assert_eq!(problem.field.as_deref(), Some("$[1]"));
    let out = d.decrypt(&doc, Mode::Json, OnError::Redact).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v[0], "value-0");
    assert_eq!(v[1], "[redacted]");
    assert_eq!(v[2], "value-2");
    assert!(!out.text.contains("value-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_public_key_takes_p256_key_agreement_keys() {
    let wire = KmsWire::start(
        vec![(P256_ARN.to_owned(), PrivateKey::P256(p256_private()))],
        Duration::ZERO,
    );
    let client = kms_client_for(&wire.endpoint);
    let public = KmsKeyProvider::public_key(&client, P256_ARN).await.unwrap();
    assert!(matches!(public, PublicKey::P256(_)));
    assert_eq!(public, p256_private().public_key().clone());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_encapsulation_relabelled_as_version_1_releases_no_data_key() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let private = PrivateKey::Rsa(fle_test_support::demo_private_key());
    let ring = keyring(&private, RSA_ARN);
    let doc = document(&ring, 2, 1);
    // The first token's encapsulation is k bytes of RSA-OAEP: exactly a version-1 payload.
    let start = doc.find("#02#").unwrap() + 4;
    let end = start + doc[start..].find("#20#").unwrap();
    let token = b64.decode(&doc[start..end]).unwrap();
    let encap = &token[2..2 + 256];
    let attack = format!("{{\"note\": \"#02#{}#20#\"}}", b64.encode(encap));
    let local = Decryptor::new(
        ring.clone(),
        Arc::new(fle_decryptor::LocalKeyProvider::new(vec![(
            "02".parse().unwrap(),
            fle_test_support::demo_private_key(),
        )])),
    );
    let wire = KmsWire::start(vec![(RSA_ARN.to_owned(), private)], Duration::ZERO);
    for d in [local, decryptor(&wire, ring)] {
        let out = d
            .decrypt(&attack, Mode::Json, OnError::Leave)
            .await
            .unwrap();
        assert_eq!(out.text.as_str(), attack, "left as it is");
        assert_eq!(out.report.problems.len(), 1);
        assert!(
            matches!(&out.report.problems[0].kind, ProblemKind::Provider(e) if e.to_string().contains("version-2 data key")),
            "{:?}",
            out.report.problems
        );
        let text = d
            .decrypt(&attack, Mode::Text, OnError::Redact)
            .await
            .unwrap();
        assert!(text.text.contains("[redacted]"));
    }
}

// The bound on distinct encapsulations per document (`max_encapsulations_per_document`).

/// A JSON array of one value ("value-0", ...) per entry of `requests`, each sealed as part of
/// the request `states[requests[i]]`: values of one state share its encapsulation.
fn document_of(keyring: &Keyring, states: &mut [RequestState], requests: &[usize]) -> String {
    let encryptor = FieldEncryptor::new(keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("02").unwrap();
    let values: Vec<String> = requests
        .iter()
        .enumerate()
        .map(|(i, &r)| {
            let mut out = String::from("\"");
            key.encrypt_in(
                &mut states[r],
                "v",
                format!("value-{i}").as_bytes(),
                &mut out,
            )
            .unwrap();
            out.push('"');
            out
        })
        .collect();
    format!("[{}]", values.join(","))
}

/// `doc` as one region of a text stream (as batch jobs decrypt text), under `on_error`.
async fn as_region(
    d: &Decryptor,
    ring: &Keyring,
    doc: &str,
    on_error: OnError,
) -> Result<fle_decryptor::ProcessedBytes, DocumentError> {
    d.process_region(
        doc.as_bytes(),
        ring.scanner().scan(doc.as_bytes()).collect(),
        on_error,
        fle_decryptor::Action::Decrypt,
    )
    .await
}

/// The refusal of a document of `count` encapsulations under `limit`, checked: typed, naming
/// both numbers and the setting, and holding no plaintext.
fn assert_refused(
    result: Result<fle_decryptor::Decrypted, DocumentError>,
    count: usize,
    limit: usize,
) {
    let err = result.unwrap_err();
    assert_eq!(
        err,
        DocumentError::TooManyEncapsulations { count, limit },
        "{err}"
    );
    let message = err.to_string();
    assert_eq!(
        message,
        format!(
            "document refused: it holds {count} distinct version-2 encapsulations (one KMS call \
             each), more than the limit of {limit} per document; nothing was decrypted (raise \
             max_encapsulations_per_document in [decrypt], or \
             --max-encapsulations-per-document on the command line, to allow more)"
        )
    );
    assert!(!message.contains("value-"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_the_encapsulation_limit_is_refused_whole_with_no_kms_call() {
    for (arn, private) in keys() {
        let ring = keyring(&private, arn);
        let wire = KmsWire::start(vec![(arn.to_owned(), private)], Duration::ZERO);
        let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(4);
        // Set explicitly, the limit holds in every mode, text included.
        for mode in [Mode::Json, Mode::Form, Mode::Text] {
            assert_eq!(d.max_encapsulations_per_document(mode), Some(4));
        }
        // Ten values over five requests: five encapsulations, one over the limit.
        let doc = document(&ring, 10, 5);
        for on_error in [OnError::Fail, OnError::Leave, OnError::Redact] {
            for mode in [Mode::Json, Mode::Text] {
                assert_refused(d.decrypt(&doc, mode, on_error).await, 5, 4);
            }
        }
        // Checking and re-encrypting are refused alike.
        assert_refused(
            d.process(
                &doc,
                Mode::Json,
                OnError::Leave,
                fle_decryptor::Action::Verify,
            )
            .await,
            5,
            4,
        );
        let region = as_region(&d, &ring, &doc, OnError::Redact)
            .await
            .unwrap_err();
        assert_eq!(
            region,
            DocumentError::TooManyEncapsulations { count: 5, limit: 4 }
        );
        assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 0, "{arn}");
        assert_eq!(d.budget().calls(), 0);
        assert_eq!(d.secret_cache().len(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_encapsulation_limit_opens_with_one_call_each() {
    for (arn, private) in keys() {
        let ring = keyring(&private, arn);
        let wire = KmsWire::start(vec![(arn.to_owned(), private)], Duration::ZERO);
        let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(4);
        // Eight values over four requests; duplicates of a value count once.
        let doc = document(&ring, 8, 4);
        let doubled = format!("[{0},{0}]", doc);
        let out = d
            .decrypt(&doubled, Mode::Json, OnError::Fail)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
        assert_eq!(v[1][7], "value-7");
        assert_eq!(out.report.decrypted, 16);
        assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 4, "{arn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_encapsulations_count_toward_the_limit() {
    let private = PrivateKey::P256(p256_private());
    let ring = keyring(&private, P256_ARN);
    let wire = KmsWire::start(vec![(P256_ARN.to_owned(), private)], Duration::ZERO);
    let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(3);
    let mut states: Vec<RequestState> = (0..4).map(|_| RequestState::new()).collect();
    let first = document_of(&ring, &mut states, &[0, 1, 2]);
    d.decrypt(&first, Mode::Json, OnError::Fail).await.unwrap();
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 3);
    assert_eq!(d.secret_cache().len(), 3);
    // Three cached encapsulations and a new one: four, refused, though one call would do.
    let second = document_of(&ring, &mut states, &[0, 1, 2, 3]);
    assert_refused(d.decrypt(&second, Mode::Json, OnError::Leave).await, 4, 3);
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 3);
    assert_eq!(d.secret_cache().hits(), 0, "the cache is not even asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_envelopes_do_not_count_toward_the_limit() {
    let rsa = fle_test_support::demo_private_key();
    let p256 = p256_private();
    let ring = Keyring::new(vec![
        KeyEntry::new("01".parse().unwrap(), rsa.public_key().clone()).with_kms_key_id(RSA_ARN),
        KeyEntry::new("02".parse().unwrap(), p256.public_key().clone()).with_kms_key_id(P256_ARN),
    ])
    .unwrap();
    let wire = KmsWire::start(
        vec![
            (RSA_ARN.to_owned(), PrivateKey::Rsa(rsa)),
            (P256_ARN.to_owned(), PrivateKey::P256(p256)),
        ],
        Duration::ZERO,
    );
    let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(1);
    let encryptor = FieldEncryptor::new(&ring, backend::default_backend()).unwrap();
    let mut state = RequestState::new();
    let mut values = Vec::new();
    for i in 0..5 {
        let mut out = String::new();
        let key = encryptor.key_str(if i < 3 { "01" } else { "02" }).unwrap();
        key.encrypt_in(&mut state, "v", format!("value-{i}").as_bytes(), &mut out)
            .unwrap();
        values.push(serde_json::Value::String(out));
    }
    let doc = serde_json::Value::Array(values).to_string();
    let out = d.decrypt(&doc, Mode::Json, OnError::Fail).await.unwrap();
    assert_eq!(out.report.decrypted, 5);
    let stats = wire.stats();
    // Three version-1 envelopes (three calls) and one encapsulation.
    assert_eq!(stats.decrypted.load(Ordering::SeqCst), 3);
    assert_eq!(stats.derived.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_opens_256_encapsulations_and_refuses_257() {
    let private = PrivateKey::P256(p256_private());
    let ring = keyring(&private, P256_ARN);
    let wire = KmsWire::start(vec![(P256_ARN.to_owned(), private)], Duration::ZERO);
    let d = decryptor(&wire, ring.clone());
    assert_eq!(fle_decryptor::DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT, 256);
    for mode in [Mode::Json, Mode::Form] {
        assert_eq!(d.max_encapsulations_per_document(mode), Some(256));
    }
    let mut states: Vec<RequestState> = (0..257).map(|_| RequestState::new()).collect();
    let over = document_of(&ring, &mut states, &(0..257).collect::<Vec<_>>());
    assert_refused(
        d.decrypt(&over, Mode::Json, OnError::Redact).await,
        257,
        256,
    );
    assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 0);
    let at = document_of(&ring, &mut states, &(0..256).collect::<Vec<_>>());
    let out = d.decrypt(&at, Mode::Json, OnError::Fail).await.unwrap();
    assert_eq!(out.report.decrypted, 256);
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_documents_have_no_default_limit_but_an_explicit_one_holds() {
    let private = PrivateKey::P256(p256_private());
    let ring = keyring(&private, P256_ARN);
    let wire = KmsWire::start(vec![(P256_ARN.to_owned(), private)], Duration::ZERO);
    let d = decryptor(&wire, ring.clone());
    assert_eq!(d.max_encapsulations_per_document(Mode::Text), None);
    // The values of 257 requests, one over the JSON default: a log of many requests' lines.
    let mut states: Vec<RequestState> = (0..257).map(|_| RequestState::new()).collect();
    let log = document_of(&ring, &mut states, &(0..257).collect::<Vec<_>>());
    assert_refused(d.decrypt(&log, Mode::Json, OnError::Fail).await, 257, 256);
    assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 0);
    // As text, whole or as a region of a stream, it opens: one call per encapsulation.
    let out = d.decrypt(&log, Mode::Text, OnError::Fail).await.unwrap();
    assert_eq!(out.report.decrypted, 257);
    let v: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(v[256], "value-256");
    assert_eq!(wire.stats().derived.load(Ordering::SeqCst), 257);
    let region = as_region(&d, &ring, &log, OnError::Fail).await.unwrap();
    assert_eq!(region.report.decrypted, 257);
    assert_eq!(&region.bytes[..], out.text.as_bytes());

    // Set explicitly, even to the default's value, the limit holds in text mode too.
    let wire = KmsWire::start(
        vec![(P256_ARN.to_owned(), PrivateKey::P256(p256_private()))],
        Duration::ZERO,
    );
    let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(256);
    assert_refused(d.decrypt(&log, Mode::Text, OnError::Leave).await, 257, 256);
    let d = decryptor(&wire, ring.clone()).with_max_encapsulations_per_document(4);
    assert_eq!(d.max_encapsulations_per_document(Mode::Text), Some(4));
    // Ten values over five requests: five encapsulations.
    let five = document(&ring, 10, 5);
    for on_error in [OnError::Fail, OnError::Leave, OnError::Redact] {
        assert_refused(d.decrypt(&five, Mode::Text, on_error).await, 5, 4);
    }
    let region = as_region(&d, &ring, &five, OnError::Redact)
        .await
        .unwrap_err();
    assert_eq!(
        region,
        DocumentError::TooManyEncapsulations { count: 5, limit: 4 }
    );
    assert_eq!(wire.stats().requests.load(Ordering::SeqCst), 0);
}
