//! The KMS budget on tokio's paused clock: no burst above the rate after a slow spell, the
//! permits bound calls across documents sharing one budget, transient errors retried with
//! jittered backoff without holding a permit, permanent ones not, the counters, and invalid
//! budgets refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fle_decryptor::{
    decrypt_all, BudgetError, DecryptConfig, DecryptFuture, Decryptor, ErrorClass, KeyProvider,
    KmsBudget, LocalKeyProvider, Mode, OnError, ProviderError, RetryPolicy,
};
use fle_shared::{backend, Envelope, FieldEncryptor, KeyEntry, Keyring, Plaintext};
use futures_util::future::join_all;
use tokio::time::Instant;

/// "Decrypts" to the ciphertext itself. Records when each call arrives and completes, counts
/// calls in flight, blocks every call until `stall_until`, and fails as scripted.
struct Fake {
    start: Instant,
    stall_until: Option<Instant>,
    latency: Duration,
    arrivals: Mutex<Vec<(Vec<u8>, Duration)>>,
    completions: Mutex<Vec<Duration>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// ciphertext → (failures left, error code); transient errors.
    transient: Mutex<HashMap<Vec<u8>, (u32, &'static str)>>,
    permanent: Vec<Vec<u8>>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            start: Instant::now(),
            stall_until: None,
            latency: Duration::ZERO,
            arrivals: Mutex::default(),
            completions: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            transient: Mutex::default(),
            permanent: Vec::new(),
        }
    }

    fn arrival_times(&self) -> Vec<Duration> {
        let mut times: Vec<Duration> = self.arrivals.lock().unwrap().iter().map(|a| a.1).collect();
        times.sort();
        times
    }
}

impl KeyProvider for Fake {
    fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
        Box::pin(async move {
            let Envelope::V1 { rsa_ciphertext } = envelope else {
                unreachable!()
            };
            self.arrivals
                .lock()
                .unwrap()
                .push((rsa_ciphertext.clone(), self.start.elapsed()));
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if let Some(until) = self.stall_until {
                tokio::time::sleep_until(until).await;
            }
            tokio::time::sleep(self.latency).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.completions.lock().unwrap().push(self.start.elapsed());
            let fail = |class, code: &str| ProviderError::Failed {
                key: key.id().clone(),
                class,
                code: code.into(),
                message: String::new(),
            };
            if self.permanent.contains(rsa_ciphertext) {
                return Err(fail(ErrorClass::Permanent, "IncorrectKeyException"));
            }
            if let Some((left, code)) = self.transient.lock().unwrap().get_mut(rsa_ciphertext) {
                if *left > 0 {
                    *left -= 1;
                    return Err(fail(ErrorClass::Transient, code));
                }
            }
            Ok(Plaintext::from(rsa_ciphertext.clone()))
        })
    }
}

fn key() -> KeyEntry {
    KeyEntry::new(
        "01".parse().unwrap(),
        fle_shared::RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap(),
    )
}

fn envelope(n: u32) -> Envelope {
    Envelope::V1 {
        rsa_ciphertext: n.to_be_bytes().to_vec(),
    }
}

/// The most of `times` (sorted) in any half-open window of one second.
fn most_in_a_second(times: &[Duration]) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t < times[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A budget whose rate never binds.
fn unpaced(concurrency: usize) -> KmsBudget {
    KmsBudget::new(concurrency, 1e9)
        .unwrap()
        .with_burst(1_000_000)
        .unwrap()
}

/// (a) A provider stalled for 10 s while 1,000 calls queue (four documents of 250 envelopes,
/// each driving all of them at once, one budget): when it recovers, the calls that reach it in
/// any second are at most rate + burst. Calls completed in any second are at most that plus
/// the calls that were in flight when it stalled.
#[tokio::test(start_paused = true)]
async fn no_burst_above_the_rate_after_a_slow_spell() {
    const RATE: f64 = 100.0;
    const BURST: u32 = 10;
    const PERMITS: usize = 8;
    let mut fake = Fake::new();
    fake.stall_until = Some(Instant::now() + Duration::from_secs(10));
    let budget = Arc::new(
        KmsBudget::new(PERMITS, RATE)
            .unwrap()
            .with_burst(BURST)
            .unwrap(),
    );
    let key = key();
    let docs: Vec<Vec<Envelope>> = (0..4)
        .map(|d| (0..250).map(|i| envelope(d * 1000 + i)).collect())
        .collect();
    let runs = docs.iter().map(|envs| {
        let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
        let (fake, budget) = (&fake, &budget);
        async move { decrypt_all(fake, budget, items.len(), &items).await }
    });
    let results = join_all(runs).await;
    assert!(results.iter().flatten().all(Result::is_ok));

    let arrivals = fake.arrival_times();
    assert_eq!(arrivals.len(), 1000);
    assert_eq!(budget.calls(), 1000);
    // The stall: only the permit holders reached the provider during it.
    let during = arrivals
        .iter()
        .filter(|t| **t < Duration::from_secs(10))
        .count();
    assert_eq!(during, PERMITS, "{arrivals:?}");
    let limit = RATE as usize + BURST as usize;
    let most = most_in_a_second(&arrivals);
    assert!(most <= limit, "{most} calls in one second, limit {limit}");
    // And the rate is used: the 992 calls after the stall take about 992 / 100 s.
    let last = *arrivals.last().unwrap();
    assert!(
        last > Duration::from_millis(19_700) && last < Duration::from_millis(20_000),
        "{last:?}"
    );
    let mut completions = fake.completions.lock().unwrap().clone();
    completions.sort();
    let most = most_in_a_second(&completions);
    assert!(most <= limit + PERMITS, "{most} completions in one second");
}

/// An idle bucket holds `burst` tokens, no more.
#[tokio::test(start_paused = true)]
async fn an_idle_bucket_holds_one_burst() {
    let fake = Fake::new();
    let budget = KmsBudget::new(50, 10.0).unwrap().with_burst(5).unwrap();
    let key = key();
    // Warm the bucket up, then leave it idle for a minute.
    let first = envelope(u32::MAX);
    decrypt_all(&fake, &budget, 1, &[(&key, &first)]).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let envs: Vec<Envelope> = (0..25).map(envelope).collect();
    let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
    decrypt_all(&fake, &budget, 25, &items).await;
    let arrivals = fake.arrival_times();
    let at_once = arrivals
        .iter()
        .filter(|t| **t == Duration::from_secs(60))
        .count();
    assert_eq!(at_once, 5, "{arrivals:?}");
    // Then 10 a second: the 20 others over 2 s.
    assert_eq!(*arrivals.last().unwrap(), Duration::from_secs(62));
}

/// (b) Several documents, decrypted concurrently by different decryptors sharing one budget:
/// the calls in flight never exceed its permits, and reach them.
#[tokio::test(start_paused = true)]
async fn permits_bound_calls_across_documents_sharing_a_budget() {
    struct Counting {
        inner: LocalKeyProvider,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }
    impl KeyProvider for Counting {
        fn decrypt<'a>(&'a self, key: &'a KeyEntry, envelope: &'a Envelope) -> DecryptFuture<'a> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.inner.decrypt(key, envelope).await
            })
        }
    }

    let private = fle_test_support::demo_private_key();
    let keyring = Arc::new(
        Keyring::new(vec![KeyEntry::new(
            "01".parse().unwrap(),
            private.public_key().clone(),
        )])
        .unwrap(),
    );
    let provider = Arc::new(Counting {
        inner: LocalKeyProvider::new(vec![("01".parse().unwrap(), private)]),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    });
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let docs: Vec<String> = (0..6)
        .map(|d| {
            let mut doc = String::from("[");
            for i in 0..20 {
                if i > 0 {
                    doc.push(',');
                }
                doc.push('"');
                key.encrypt_into("v", format!("{d}-{i}").as_bytes(), &mut doc)
                    .unwrap();
                doc.push('"');
            }
            doc + "]"
        })
        .collect();

    let budget = Arc::new(unpaced(4));
    let decryptors: Vec<Decryptor> = (0..3)
        .map(|_| {
            Decryptor::new(keyring.clone(), provider.clone() as Arc<dyn KeyProvider>)
                .with_budget(budget.clone())
        })
        .collect();
    let runs = docs
        .iter()
        .enumerate()
        .map(|(d, doc)| decryptors[d % 3].decrypt(doc, Mode::Json, OnError::Fail));
    let start = Instant::now();
    let outs = join_all(runs).await;
    for (d, out) in outs.into_iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(&out.unwrap().text).unwrap();
        assert_eq!(v[19], format!("{d}-19"));
    }
    assert_eq!(provider.max_in_flight.load(Ordering::SeqCst), 4);
    assert_eq!(budget.calls(), 120);
    assert_eq!(budget.in_flight(), 0);
    // 120 calls of 20 ms, 4 at a time.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_millis(640),
        "{elapsed:?}"
    );
}

/// (c) Transient errors are retried after a full-jitter backoff, permanent ones are not, and
/// the counters say so.
#[tokio::test(start_paused = true)]
async fn transient_errors_retried_with_jitter_permanent_ones_not() {
    let mut fake = Fake::new();
    // 100 envelopes throttled once each.
    *fake.transient.get_mut().unwrap() = (0..100)
        .map(|n: u32| (n.to_be_bytes().to_vec(), (1, "ThrottlingException")))
        .chain([(
            1000u32.to_be_bytes().to_vec(),
            (100, "KMSInternalException"),
        )])
        .collect();
    fake.permanent = vec![2000u32.to_be_bytes().to_vec()];
    let budget = unpaced(100)
        .with_retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
        })
        .unwrap();
    let key = key();
    let envs: Vec<Envelope> = (0..100).map(envelope).collect();
    let items: Vec<(&KeyEntry, &Envelope)> = envs.iter().map(|e| (&key, e)).collect();
    let results = decrypt_all(&fake, &budget, 100, &items).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        (budget.calls(), budget.retries(), budget.throttles()),
        (200, 100, 100)
    );
    // Each retry came after a wait uniform in [0, 1 s]: spread out, never beyond the ceiling
    // (the paused clock's timers fire on the millisecond).
    let retried: Vec<Duration> = fake.arrival_times()[100..].to_vec();
    assert!(retried.iter().all(|t| *t <= Duration::from_millis(1001)));
    assert!(retried[0] < Duration::from_millis(500) && retried[99] > Duration::from_millis(500));

    // Permanent: one call, no retry.
    let permanent = envelope(2000);
    let result = decrypt_all(&fake, &budget, 1, &[(&key, &permanent)]).await;
    assert_eq!(
        result[0].as_ref().unwrap_err().class(),
        ErrorClass::Permanent
    );
    assert_eq!((budget.calls(), budget.retries()), (201, 100));

    // Transient until the attempts run out; not a throttle.
    let failing = envelope(1000);
    let result = decrypt_all(&fake, &budget, 1, &[(&key, &failing)]).await;
    let err = result[0].as_ref().unwrap_err();
    assert_eq!(err.code(), Some("KMSInternalException"));
    assert_eq!(
        (budget.calls(), budget.retries(), budget.throttles()),
        (204, 102, 100)
    );
}

/// (c) A call backing off does not hold its permit: with one permit, a call queued behind a
/// failing one goes ahead at once instead of waiting out the backoff.
#[tokio::test(start_paused = true)]
async fn the_permit_is_released_during_backoff() {
    let mut fake = Fake::new();
    *fake.transient.get_mut().unwrap() =
        HashMap::from([(1u32.to_be_bytes().to_vec(), (2, "ThrottlingException"))]);
    let budget = unpaced(1)
        .with_retry(RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(10),
        })
        .unwrap();
    let key = key();
    let (a, b) = (envelope(1), envelope(2));
    let (ia, ib) = ([(&key, &a)], [(&key, &b)]);
    let (ra, rb) = tokio::join!(
        decrypt_all(&fake, &budget, 1, &ia),
        decrypt_all(&fake, &budget, 1, &ib)
    );
    assert!(ra[0].is_ok() && rb[0].is_ok());
    let arrivals = fake.arrivals.lock().unwrap().clone();
    let at = |n: u32| -> Vec<Duration> {
        arrivals
            .iter()
            .filter(|(c, _)| *c == n.to_be_bytes())
            .map(|(_, t)| *t)
            .collect()
    };
    assert_eq!(at(1).len(), 3);
    assert_eq!(at(2), [Duration::ZERO], "{arrivals:?}");
    assert_eq!((budget.retries(), budget.throttles()), (2, 2));
}

/// (d) Budgets that cannot work are refused with a typed error, never clamped.
#[test]
fn invalid_budgets_are_refused() {
    for rate in [0.0, -1.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = KmsBudget::new(4, rate).unwrap_err();
        assert!(matches!(err, BudgetError::Rate(_)), "{rate}: {err}");
        assert!(err.to_string().contains("above 0"), "{err}");
    }
    for concurrency in [0, usize::MAX] {
        assert!(matches!(
            KmsBudget::new(concurrency, 10.0).unwrap_err(),
            BudgetError::Concurrency { value, .. } if value == concurrency
        ));
    }
    let ok = || KmsBudget::new(1, 0.5).unwrap();
    assert_eq!((ok().burst(), ok().rate_per_second()), (1, 0.5));
    assert_eq!(KmsBudget::new(4, 1000.0).unwrap().burst(), 50);
    assert_eq!(ok().with_burst(0).unwrap_err(), BudgetError::Burst);
    let no_attempts = RetryPolicy {
        max_attempts: 0,
        ..RetryPolicy::default()
    };
    assert_eq!(
        ok().with_retry(no_attempts).unwrap_err(),
        BudgetError::Attempts
    );

    let mut config = DecryptConfig::default();
    let budget = KmsBudget::from_config(&config).unwrap();
    assert_eq!(
        (budget.concurrency(), budget.rate_per_second()),
        (
            fle_decryptor::DEFAULT_CONCURRENCY,
            fle_decryptor::DEFAULT_RATE_PER_SECOND
        )
    );
    config.concurrency = Some(0);
    assert!(KmsBudget::from_config(&config).is_err());
    config.concurrency = Some(2);
    config.rate_per_second = Some(f64::NAN);
    assert!(KmsBudget::from_config(&config).is_err());
}
