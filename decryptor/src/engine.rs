//! Decrypting many envelopes: duplicates once, every distinct envelope through the shared
//! [`KmsBudget`] (concurrency permit, rate token, retries of transient failures).
//!
//! KMS RSA `Decrypt` calls share a quota per account and region (500/s by default) and there is
//! no batch call, so every front end (library, Lambda, CLI, batch jobs) goes through this one
//! engine and one budget shared by `Arc`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fle_shared::{Envelope, KeyEntry, Plaintext};
use futures_util::stream::{self, StreamExt};

#[cfg(doc)]
use crate::budget::DEFAULT_RATE_PER_SECOND;
use crate::budget::{KmsBudget, RetryPolicy, TokenBucket, DEFAULT_MAX_BURST};
use crate::provider::{ErrorClass, KeyProvider, ProviderError};

/// How a [`Decryptor`](crate::Decryptor) drives the engine.
///
/// Superseded by [`KmsBudget`] (the process-wide concurrency, rate and retries) and
/// [`Decryptor::with_budget`](crate::Decryptor::with_budget); kept for
/// [`Decryptor::with_policy`](crate::Decryptor::with_policy).
#[derive(Debug, Clone)]
pub struct DecryptPolicy {
    /// How many envelopes of one document are driven at once. The calls actually in flight
    /// are bounded by the budget's permits, shared by every document.
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
        let retry = RetryPolicy::default();
        DecryptPolicy {
            concurrency: 16,
            max_attempts: retry.max_attempts,
            base_backoff: retry.base_backoff,
            max_backoff: retry.max_backoff,
        }
    }
}

impl DecryptPolicy {
    /// The retry half of the policy (0 attempts read as 1, as before).
    pub(crate) fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.max(1),
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

/// A token bucket: at most `per_second` calls per second on average, bursts of `burst`.
///
/// Superseded by [`KmsBudget`], which takes its rate token after a concurrency permit (so a
/// slow spell cannot be followed by a burst above the rate) and retries under the same budget.
/// Kept for [`Decryptor::with_limiter`](crate::Decryptor::with_limiter) and callers that pace
/// something else; it is the same bucket as a budget's.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bucket: Arc<TokenBucket>,
    burst: u32,
}

impl RateLimiter {
    /// A limiter of `per_second` calls per second with bursts of `burst` (a rate below 1 or not
    /// finite is read as 1, a burst of 0 as 1; [`KmsBudget::new`] refuses such values instead).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() && per_second >= 1.0 {
            per_second
        } else {
            1.0
        };
        let burst = burst.max(1);
        RateLimiter {
            bucket: Arc::new(TokenBucket::new(per_second, f64::from(burst))),
            burst,
        }
    }

    /// The process-wide limiter: the bucket of [`KmsBudget::global`] ([`DEFAULT_RATE_PER_SECOND`],
    /// burst 50).
    pub fn global() -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            bucket: KmsBudget::global().bucket().clone(),
            burst: DEFAULT_MAX_BURST,
        })
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        self.bucket.take().await;
    }

    /// The bucket and its burst, for a budget sharing them.
    pub(crate) fn shared_bucket(&self) -> (Arc<TokenBucket>, u32) {
        (self.bucket.clone(), self.burst)
    }
}

/// Decrypts `items` (each an envelope with the keyring entry its markers name) through
/// `budget`, driving at most `in_flight` distinct envelopes at once (the budget's permits bound
/// the calls actually in flight, across every caller sharing it). Identical envelopes of the
/// same key are decrypted once; results come back in input order.
pub async fn decrypt_all(
    provider: &dyn KeyProvider,
    budget: &KmsBudget,
    in_flight: usize,
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
        async move { (slot, budget.decrypt(provider, key, envelope).await) }
    }))
    .buffer_unordered(in_flight.max(1));
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
