//! Decrypting many envelopes: duplicates once, a bounded number at a time, under a shared rate
//! limit, retrying transient failures with jittered exponential backoff.
//!
//! KMS RSA `Decrypt` calls share a quota per account and region (500/s by default) and there is
//! no batch call, so every front end (library, Lambda, batch jobs) goes through this one engine
//! and one process-wide [`RateLimiter`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fle_shared::{Envelope, KeyEntry, Plaintext};
use futures_util::stream::{self, StreamExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::provider::{ErrorClass, KeyProvider, ProviderError};

/// How the engine calls a provider.
#[derive(Debug, Clone)]
pub struct DecryptPolicy {
    /// Most calls in flight at once for one batch.
    pub concurrency: usize,
    /// Most attempts per envelope (1 = no retry). Permanent errors are never retried.
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt ("full jitter": a random wait up to it).
    pub base_backoff: Duration,
    /// Largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for DecryptPolicy {
    fn default() -> Self {
        DecryptPolicy {
            concurrency: 16,
            max_attempts: 5,
            base_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// A token bucket: at most `per_second` calls per second on average, bursts of `burst`.
/// Share one per process (and per KMS account and region): [`RateLimiter::global`].
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

/// Default process-wide rate: safely under KMS's default RSA quota of 500 requests/s.
pub const DEFAULT_RATE_PER_SECOND: f64 = 400.0;

impl RateLimiter {
    /// A limiter of `per_second` calls per second with bursts of `burst` (both at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() && per_second >= 1.0 {
            per_second
        } else {
            1.0
        };
        let burst = f64::from(burst.max(1));
        RateLimiter {
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// The process-wide limiter ([`DEFAULT_RATE_PER_SECOND`], burst 50), created on first use.
    pub fn global() -> Arc<RateLimiter> {
        static GLOBAL: OnceLock<Arc<RateLimiter>> = OnceLock::new();
        GLOBAL
            .get_or_init(|| Arc::new(RateLimiter::new(DEFAULT_RATE_PER_SECOND, 50)))
            .clone()
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second)
                    .min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Decrypts `items` (each an envelope with the keyring entry its markers name). Identical
/// envelopes of the same key are decrypted once; results come back in input order.
pub async fn decrypt_all(
    provider: &dyn KeyProvider,
    limiter: &RateLimiter,
    policy: &DecryptPolicy,
    items: &[(&KeyEntry, &Envelope)],
) -> Vec<Result<Plaintext, ProviderError>> {
    // Deduplicate by key and envelope.
    let mut unique: Vec<usize> = Vec::new();
    let mut slot_of: Vec<usize> = Vec::with_capacity(items.len());
    let mut seen: HashMap<(&str, &Envelope), usize> = HashMap::new();
    for (i, (key, envelope)) in items.iter().enumerate() {
        let slot = *seen
            .entry((key.id().as_str(), *envelope))
            .or_insert_with(|| {
                unique.push(i);
                unique.len() - 1
            });
        slot_of.push(slot);
    }
    let mut results: Vec<Option<Result<Plaintext, ProviderError>>> = vec![None; unique.len()];
    let mut done = stream::iter(unique.iter().enumerate().map(|(slot, &i)| {
        let (key, envelope) = items[i];
        async move {
            (
                slot,
                decrypt_one(provider, limiter, policy, key, envelope).await,
            )
        }
    }))
    .buffer_unordered(policy.concurrency.max(1));
    while let Some((slot, result)) = done.next().await {
        results[slot] = Some(result);
    }
    slot_of
        .into_iter()
        .zip(items)
        .map(|(slot, (key, _))| {
            // Every slot is filled before the stream ends; no panic path all the same.
            results[slot].clone().unwrap_or_else(|| {
                Err(ProviderError::Failed {
                    key: key.id().clone(),
                    class: ErrorClass::Permanent,
                    code: "Internal".into(),
                    message: "no result".into(),
                })
            })
        })
        .collect()
}

async fn decrypt_one(
    provider: &dyn KeyProvider,
    limiter: &RateLimiter,
    policy: &DecryptPolicy,
    key: &KeyEntry,
    envelope: &Envelope,
) -> Result<Plaintext, ProviderError> {
    let mut attempt = 1;
    loop {
        limiter.acquire().await;
        match provider.decrypt(key, envelope).await {
            Err(e) if e.class() == ErrorClass::Transient && attempt < policy.max_attempts => {
                tokio::time::sleep(backoff(policy, attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Full jitter: uniform in [0, min(max, base · 2^(attempt-1))].
fn backoff(policy: &DecryptPolicy, attempt: u32) -> Duration {
    let ceiling = policy
        .base_backoff
        .saturating_mul(1u32 << (attempt - 1).min(20))
        .min(policy.max_backoff);
    // Jitter needs no cryptographic randomness: a randomly keyed hasher is enough.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    ceiling.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)
}
