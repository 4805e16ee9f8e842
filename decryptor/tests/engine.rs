//! The decryption engine with a fake provider, on tokio's paused clock: deduplication, order,
//! the concurrency bound, the rate limit, and retries of transient errors only (the budget's
//! own properties: `budget.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use fle_decryptor::{
    decrypt_all, DecryptFuture, ErrorClass, KeyProvider, KmsBudget, ProviderError, RetryPolicy,
};
use fle_shared::{Envelope, KeyEntry, Plaintext, RsaPublicKey};
use tokio::time::Instant;

/// "Decrypts" to the ciphertext itself after `latency`; fails as scripted.
#[derive(Default)]
struct Fake {
    latency: Duration,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// ciphertext → transient failures left
    transient: Mutex<HashMap<Vec<u8>, u32>>,
    permanent: Vec<Vec<u8>>,
}

impl KeyProvider for Fake {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let Envelope::V1 { rsa_ciphertext } = envelope else {
                unreachable!()
            };
            let fail = |class, code: &str| ProviderError::Failed {
                key: key.id().clone(),
                class,
                code: code.into(),
                message: String::new(),
            };
            if self.permanent.contains(rsa_ciphertext) {
                return Err(fail(ErrorClass::Permanent, "IncorrectKeyException"));
            }
            if let Some(left) = self.transient.lock().unwrap().get_mut(rsa_ciphertext) {
                if *left > 0 {
                    *left -= 1;
                    return Err(fail(ErrorClass::Transient, "ThrottlingException"));
                }
            }
            Ok(Plaintext::from(rsa_ciphertext.clone()))
        })
    }
}

fn key() -> KeyEntry {
    KeyEntry::new(
        "01".parse().unwrap(),
        RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap(),
    )
}

fn envelope(n: u32) -> Envelope {
    Envelope::V1 {
        rsa_ciphertext: n.to_be_bytes().to_vec(),
    }
}

/// A budget whose rate never binds.
fn fast(concurrency: usize) -> KmsBudget {
    KmsBudget::new(concurrency, 1_000_000.0)
        .unwrap()
        .with_burst(1_000_000)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn duplicates_once_results_in_order() {
    let fake = Fake::default();
    let key = key();
    let envs: Vec<Envelope> = [1, 2, 1, 3, 2, 1].into_iter().map(envelope).collect();
    let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
    let results = decrypt_all(&fake, &fast(16), 16, &items).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    let got: Vec<Vec<u8>> = results
        .into_iter()
        .map(|r| r.unwrap().as_bytes().to_vec())
        .collect();
    let want: Vec<Vec<u8>> = [1u32, 2, 1, 3, 2, 1]
        .iter()
        .map(|n| n.to_be_bytes().to_vec())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_used() {
    let fake = Fake {
        latency: Duration::from_millis(20),
        ..Fake::default()
    };
    let key = key();
    let envs: Vec<Envelope> = (0..40).map(envelope).collect();
    let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
    let start = Instant::now();
    // The document drives 40 at once; the budget lets 8 through.
    let results = decrypt_all(&fake, &fast(8), 40, &items).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 8);
    // 40 calls of 20 ms, 8 at a time: 5 rounds.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_millis(140),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds() {
    let fake = Fake::default();
    let key = key();
    let envs: Vec<Envelope> = (0..21).map(envelope).collect();
    let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
    let budget = KmsBudget::new(16, 10.0).unwrap().with_burst(1).unwrap();
    let start = Instant::now();
    decrypt_all(&fake, &budget, 16, &items).await;
    // One token at once, then 10 per second: 21 calls need 2 s.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2200),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_permanent_ones_never() {
    let fake = Fake {
        transient: Mutex::new(HashMap::from([
            (envelope(1).clone_ciphertext(), 2),
            (envelope(2).clone_ciphertext(), 100),
        ])),
        permanent: vec![envelope(3).clone_ciphertext()],
        ..Fake::default()
    };
    let key = key();
    let budget = fast(16)
        .with_retry(RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        })
        .unwrap();
    for (n, calls, ok) in [(1, 3, true), (2, 5, false), (3, 1, false)] {
        fake.calls.store(0, Ordering::SeqCst);
        let env = envelope(n);
        let result = decrypt_all(&fake, &budget, 16, &[(&key, &env)])
            .await
            .remove(0);
        assert_eq!(fake.calls.load(Ordering::SeqCst), calls, "envelope {n}");
        assert_eq!(result.is_ok(), ok, "envelope {n}");
        if n == 2 {
            assert_eq!(result.unwrap_err().class(), ErrorClass::Transient);
        }
    }
}

trait CloneCiphertext {
    fn clone_ciphertext(&self) -> Vec<u8>;
}

impl CloneCiphertext for Envelope {
    fn clone_ciphertext(&self) -> Vec<u8> {
        let Envelope::V1 { rsa_ciphertext } = self else {
            unreachable!()
        };
        rsa_ciphertext.clone()
    }
}
