//! The KMS budget: one process-wide allowance of KMS calls shared by every front end. See
//! [`KmsBudget`] for the order of a call and why.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use fle_shared::{Envelope, EnvelopeV2, KeyEntry, Plaintext, V2Secret};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::DecryptConfig;
use crate::provider::{ErrorClass, KeyProvider, ProviderError};

/// Default process-wide rate: safely under KMS's default RSA quota of 500 requests/s.
pub const DEFAULT_RATE_PER_SECOND: f64 = 400.0;

/// Default number of KMS calls in flight at once in the process ([`KmsBudget::global`], and a
/// `[decrypt]` table that sets a rate but no `concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Largest default burst: a budget's burst is, unless set with [`KmsBudget::with_burst`], one
/// second's worth of calls, at least 1 and at most this.
pub const DEFAULT_MAX_BURST: u32 = 50;

/// How transient errors are retried: full-jitter exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts per envelope, the first included (1 = no retry); at least 1.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt ("full jitter": a random wait up to it).
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, backoff ceilings from 50 ms doubling up to 2 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(max, base · 2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        // Jitter needs no cryptographic randomness: a randomly keyed hasher is enough.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ceiling.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Why a [`KmsBudget`] could not be built. Nothing is clamped silently: a front end turns
/// these into a refusal of its option or setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The rate is zero, negative, infinite or not a number.
    #[error("the KMS call rate must be a finite number of calls per second above 0, not {0}")]
    Rate(f64),
    /// The concurrency is 0 or more than a semaphore can hold.
    #[error("the number of KMS calls in flight must be between 1 and {max}, not {value}")]
    Concurrency {
        /// What was asked for.
        value: usize,
        /// The largest accepted.
        max: usize,
    },
    /// A burst of 0.
    #[error("the KMS burst must be at least 1 call")]
    Burst,
    /// A retry policy of 0 attempts.
    #[error("a KMS call needs at least 1 attempt")]
    Attempts,
}

/// A token bucket: `rate` tokens a second, never more than `burst` held. Takers reserve their
/// token in order (the bucket may go into debt) and sleep until it is theirs, so waiting takers
/// are served first come, first served, without polling.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<Level>,
}

#[derive(Debug)]
struct Level {
    /// Tokens at `at` (negative: reserved ahead).
    tokens: f64,
    /// When `tokens` was computed; `None` until first use (the bucket starts full).
    at: Option<Instant>,
}

impl TokenBucket {
    /// `rate` must be finite and above 0, `burst` at least 1 (checked by the callers).
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            state: Mutex::new(Level {
                tokens: burst,
                at: None,
            }),
        }
    }

    /// Reserves one token; returns how long to wait for it.
    fn reserve(&self) -> Duration {
        let mut level = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let tokens = match level.at {
            Some(at) => (level.tokens
                + now.saturating_duration_since(at).as_secs_f64() * self.rate)
                .min(self.burst),
            None => level.tokens,
        };
        *level = Level {
            tokens: tokens - 1.0,
            at: Some(now),
        };
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - tokens) / self.rate).unwrap_or(Duration::MAX)
        }
    }

    /// Waits for one token.
    pub(crate) async fn take(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The KMS budget: one process-wide allowance of KMS calls that every front end (library,
/// Lambda, CLI, batch jobs) shares through an `Arc`.
///
/// KMS RSA `Decrypt` calls share a quota per account and region (500/s by default), and there
/// is no batch call, so the budget, not each document, decides how many calls are made:
///
/// 1. a **concurrency permit** (a [`tokio::sync::Semaphore`]: calls in flight across every
///    document and record of the process, not per document);
/// 2. then a **rate token** (a token bucket of `rate_per_second` with bursts of at most `burst`);
/// 3. then the **provider call**;
/// 4. on a transient error, the permit is **released**, the call waits a full-jitter backoff,
///    and starts again at 1 (up to [`RetryPolicy::max_attempts`]). Permanent errors are never
///    retried.
///
/// Why this order. The token is taken *after* the permit, so only the (at most
/// `concurrency`) callers holding a permit ever wait on the bucket: when the provider is slow,
/// queued callers wait for a permit and take no tokens, and when it recovers the calls that
/// follow are paced by the bucket: in any one second, at most `burst + rate_per_second` calls
/// reach the provider. (Taken the other way round, a thousand callers queued behind a stalled
/// provider would each hold a token and fire together when it recovers.) The bucket never
/// holds more than `burst` tokens, however long it sits idle.
///
/// Why the permit is not held during backoff. A throttled or failing call that kept its permit
/// while sleeping would, during a throttling spell, leave every permit asleep: calls for other
/// keys and regions, and fresh calls that would succeed, would be blocked for as long as the
/// backoff lasts, and the process's concurrency would collapse exactly when KMS recovers.
/// Released, the permit goes to the next caller (which is still paced by the bucket, so the
/// rate is never exceeded); the retry queues again for a permit and a token like any call. The
/// price: a retry waits behind the callers that queued during its backoff (permits are handed
/// out first come, first served).
///
/// The counters ([`KmsBudget::calls`], [`KmsBudget::retries`], [`KmsBudget::throttles`]) are
/// plain atomics, cheap enough to read for every progress line.
///
/// Build one per process (or per KMS account and region) and share it by `Arc` between every
/// [`Decryptor`](crate::Decryptor) ([`Decryptor::with_budget`](crate::Decryptor::with_budget))
/// and every task that decrypts: the permits and the bucket are the process's, not a
/// document's. [`KmsBudget::global`] is the process-wide default.
///
/// ```
/// use std::sync::Arc;
/// use fle_decryptor::{BudgetError, KmsBudget, RetryPolicy};
///
/// let budget = Arc::new(KmsBudget::new(32, 250.0)?.with_burst(25)?.with_retry(RetryPolicy::default())?);
/// assert_eq!((budget.concurrency(), budget.burst(), budget.calls()), (32, 25, 0));
/// assert_eq!(KmsBudget::new(32, 0.0).unwrap_err(), BudgetError::Rate(0.0));
/// # Ok::<(), BudgetError>(())
/// ```
pub struct KmsBudget {
    permits: Arc<Semaphore>,
    concurrency: usize,
    bucket: Arc<TokenBucket>,
    burst: u32,
    retry: RetryPolicy,
    calls: AtomicU64,
    retries: AtomicU64,
    throttles: AtomicU64,
}

impl std::fmt::Debug for KmsBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsBudget")
            .field("concurrency", &self.concurrency)
            .field("rate_per_second", &self.bucket.rate)
            .field("burst", &self.burst)
            .field("retry", &self.retry)
            .field("calls", &self.calls())
            .field("retries", &self.retries())
            .field("throttles", &self.throttles())
            .finish()
    }
}

impl KmsBudget {
    /// A budget of `concurrency` calls in flight and `rate_per_second` calls a second, with the
    /// default burst (one second's worth, between 1 and [`DEFAULT_MAX_BURST`]) and the default
    /// [`RetryPolicy`]. Refused: a rate that is not finite or not above 0, a concurrency of 0
    /// or above [`Semaphore::MAX_PERMITS`].
    pub fn new(concurrency: usize, rate_per_second: f64) -> Result<Self, BudgetError> {
        if !(rate_per_second.is_finite() && rate_per_second > 0.0) {
            return Err(BudgetError::Rate(rate_per_second));
        }
        if concurrency == 0 || concurrency > Semaphore::MAX_PERMITS {
            return Err(BudgetError::Concurrency {
                value: concurrency,
                max: Semaphore::MAX_PERMITS,
            });
        }
        let burst = rate_per_second
            .ceil()
            .clamp(1.0, f64::from(DEFAULT_MAX_BURST)) as u32;
        Ok(Self::build(
            concurrency,
            rate_per_second,
            burst,
            RetryPolicy::default(),
        ))
    }

    /// Checked values only.
    fn build(concurrency: usize, rate: f64, burst: u32, retry: RetryPolicy) -> Self {
        KmsBudget {
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            bucket: Arc::new(TokenBucket::new(rate, f64::from(burst))),
            burst,
            retry,
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
        }
    }

    /// The same budget with bursts of at most `burst` calls (at least 1): the most calls made
    /// at once after the bucket sat idle. The bucket starts full.
    pub fn with_burst(mut self, burst: u32) -> Result<Self, BudgetError> {
        if burst == 0 {
            return Err(BudgetError::Burst);
        }
        self.bucket = Arc::new(TokenBucket::new(self.bucket.rate, f64::from(burst)));
        self.burst = burst;
        Ok(self)
    }

    /// The same budget retrying transient errors as `retry` says (at least 1 attempt).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Result<Self, BudgetError> {
        if retry.max_attempts == 0 {
            return Err(BudgetError::Attempts);
        }
        self.retry = retry;
        Ok(self)
    }

    /// The budget a `[decrypt]` table describes: its `concurrency` (default
    /// [`DEFAULT_CONCURRENCY`]) and `rate_per_second` (default [`DEFAULT_RATE_PER_SECOND`]),
    /// the default burst and retries.
    pub fn from_config(config: &DecryptConfig) -> Result<Self, BudgetError> {
        Self::new(
            config.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            config.rate_per_second.unwrap_or(DEFAULT_RATE_PER_SECOND),
        )
    }

    /// The process-wide budget ([`DEFAULT_CONCURRENCY`] calls in flight,
    /// [`DEFAULT_RATE_PER_SECOND`] a second, bursts of [`DEFAULT_MAX_BURST`], default retries),
    /// created on first use. [`Decryptor::new`](crate::Decryptor::new) uses it, and so does
    /// [`RateLimiter::global`](crate::RateLimiter::global) (its bucket).
    pub fn global() -> Arc<KmsBudget> {
        static GLOBAL: OnceLock<Arc<KmsBudget>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                Arc::new(Self::build(
                    DEFAULT_CONCURRENCY,
                    DEFAULT_RATE_PER_SECOND,
                    DEFAULT_MAX_BURST,
                    RetryPolicy::default(),
                ))
            })
            .clone()
    }

    /// A budget sharing this one's permits, with `bucket` and `retry` instead of its own
    /// where given, and counters of its own: what the superseded
    /// [`Decryptor::with_limiter`](crate::Decryptor::with_limiter) and
    /// [`Decryptor::with_policy`](crate::Decryptor::with_policy) build.
    pub(crate) fn derive(
        &self,
        permits: Option<usize>,
        bucket: Option<(Arc<TokenBucket>, u32)>,
        retry: Option<RetryPolicy>,
    ) -> KmsBudget {
        let (permits, concurrency) = match permits {
            Some(n) if n != self.concurrency => {
                let n = n.clamp(1, Semaphore::MAX_PERMITS);
                (Arc::new(Semaphore::new(n)), n)
            }
            _ => (self.permits.clone(), self.concurrency),
        };
        let (bucket, burst) = bucket.unwrap_or_else(|| (self.bucket.clone(), self.burst));
        KmsBudget {
            permits,
            concurrency,
            bucket,
            burst,
            retry: retry.unwrap_or(self.retry),
            calls: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
        }
    }

    /// The token bucket, for a [`RateLimiter`](crate::RateLimiter) sharing it.
    pub(crate) fn bucket(&self) -> &Arc<TokenBucket> {
        &self.bucket
    }

    /// Most calls in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Calls a second.
    pub fn rate_per_second(&self) -> f64 {
        self.bucket.rate
    }

    /// Most calls at once after an idle spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How transient errors are retried.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Provider calls made so far (every attempt counts).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Attempts that were retries of a transient error.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Calls the provider answered with throttling ([`ProviderError::is_throttling`]).
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Permits held right now: calls in flight or waiting for their rate token.
    pub fn in_flight(&self) -> usize {
        self.concurrency
            .saturating_sub(self.permits.available_permits())
    }

    /// Decrypts one envelope through `provider` under the budget: permit, token, call; transient
    /// errors retried after a backoff slept without the permit; permanent ones returned at once.
    pub async fn decrypt(
        &self,
        provider: &dyn KeyProvider,
        key: &KeyEntry,
        envelope: &Envelope,
    ) -> Result<Plaintext, ProviderError> {
        self.call(key, || provider.decrypt(key, envelope)).await
    }

    /// The secret of a version-2 envelope's encapsulation through `provider` under the budget,
    /// as [`decrypt`](Self::decrypt) does it.
    pub async fn decapsulate(
        &self,
        provider: &dyn KeyProvider,
        key: &KeyEntry,
        token: &EnvelopeV2,
    ) -> Result<V2Secret, ProviderError> {
        self.call(key, || provider.decapsulate(key, token)).await
    }

    /// One provider call under the budget, retried as documented on the type.
    async fn call<'a, T, F>(&self, key: &KeyEntry, start: F) -> Result<T, ProviderError>
    where
        F: Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, ProviderError>> + Send + 'a>,
        >,
    {
        let mut attempt = 1;
        loop {
            let result = {
                // The semaphore is never closed; were it, the call would go ahead unbounded
                // rather than fail.
                let _permit = self.permits.acquire().await.ok();
                self.bucket.take().await;
                self.calls.fetch_add(1, Ordering::Relaxed);
                let started = tokio::time::Instant::now();
                let result = start().await;
                tracing::debug!(
                    key = %key.id(),
                    attempt,
                    latency_ms = started.elapsed().as_secs_f64() * 1e3,
                    ok = result.is_ok(),
                    "provider call"
                );
                result
                // The permit is released here, before any backoff.
            };
            match result {
                Err(e) => {
                    let throttled = e.is_throttling();
                    if throttled {
                        self.throttles.fetch_add(1, Ordering::Relaxed);
                    }
                    if e.class() != ErrorClass::Transient || attempt >= self.retry.max_attempts {
                        tracing::debug!(key = %key.id(), attempt, error = %e, "provider call failed");
                        return Err(e);
                    }
                    let backoff = self.retry.backoff(attempt);
                    tracing::info!(
                        key = %key.id(),
                        attempt,
                        throttled,
                        backoff_ms = backoff.as_secs_f64() * 1e3,
                        error = %e,
                        "retrying a transient provider error"
                    );
                    tokio::time::sleep(backoff).await;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
                ok => return ok,
            }
        }
    }
}
