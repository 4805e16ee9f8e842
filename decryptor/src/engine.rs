//! Decrypting many envelopes: duplicates once, every distinct envelope through the shared
//! [`KmsBudget`] (concurrency permit, rate token, retries of transient failures).
//!
//! KMS RSA `Decrypt` calls share a quota per account and region (500/s by default) and there is
//! no batch call, so every front end (library, Lambda, CLI, batch jobs) goes through this one
//! engine and one budget shared by `Arc`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fle_shared::{Envelope, KeyEntry, Plaintext};
use futures_util::stream::{self, StreamExt};

#[cfg(doc)]
use crate::budget::DEFAULT_RATE_PER_SECOND;
use crate::budget::{KmsBudget, RetryPolicy, TokenBucket, DEFAULT_MAX_BURST};
use crate::cache::SecretCache;
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
/// same key are decrypted once; version-2 envelopes sharing an encapsulation cost one provider
/// call together; results come back in input order. Secrets of version-2 encapsulations live
/// for this call only: [`decrypt_all_cached`] keeps them across calls.
pub async fn decrypt_all(
    provider: &dyn KeyProvider,
    budget: &KmsBudget,
    in_flight: usize,
    items: &[(&KeyEntry, &Envelope)],
) -> Vec<Result<Plaintext, ProviderError>> {
    let cache = SecretCache::new(items.len(), Duration::MAX);
    let items: Vec<(&KeyEntry, &Envelope, Option<&[u8]>)> =
        items.iter().map(|&(k, e)| (k, e, None)).collect();
    decrypt_all_cached(provider, budget, in_flight, &cache, &items).await
}

/// How many distinct (key id, encapsulation) pairs the version-2 envelopes among `items` have:
/// the provider calls [`decrypt_all_cached`] would make for them with an empty cache (grouped
/// the same way). Version-1 envelopes are not counted.
pub(crate) fn distinct_encapsulations<'a>(
    items: impl IntoIterator<Item = (&'a KeyEntry, &'a Envelope)>,
) -> usize {
    let mut seen: HashSet<(&str, &[u8])> = HashSet::new();
    for (key, envelope) in items {
        if let Envelope::V2(token) = envelope {
            seen.insert((key.id().as_str(), token.encapsulation()));
        }
    }
    seen.len()
}

/// What one unit of the engine's work is: a version-1 envelope, or the version-2 envelopes of
/// one encapsulation (indexes into the distinct envelopes).
enum Job {
    One(usize),
    Encapsulation(Vec<usize>),
}

/// [`decrypt_all`] with the secrets of version-2 encapsulations taken from, and kept in,
/// `cache`: a document whose request's encapsulation was opened before costs no provider call.
/// Each item carries the path a path-bound version-2 envelope needs (`docs/ENVELOPE.md`
/// section 5.3; ignored for others): without one, such an envelope fails with `PathRequired`.
///
/// This function does not bound the number of encapsulations (provider calls) it is given:
/// [`Decryptor`](crate::Decryptor) refuses a document over its
/// [`max_encapsulations_per_document`](crate::Decryptor::max_encapsulations_per_document)
/// before calling it; a direct caller bounds its own input.
pub async fn decrypt_all_cached(
    provider: &dyn KeyProvider,
    budget: &KmsBudget,
    in_flight: usize,
    cache: &SecretCache,
    items: &[(&KeyEntry, &Envelope, Option<&[u8]>)],
) -> Vec<Result<Plaintext, ProviderError>> {
    // Deduplicate by key, envelope and path.
    let mut unique: Vec<usize> = Vec::new();
    let mut slot_of: Vec<usize> = Vec::with_capacity(items.len());
    let mut seen: HashMap<(&str, &Envelope, Option<&[u8]>), usize> = HashMap::new();
    for (i, (key, envelope, path)) in items.iter().enumerate() {
        let slot = *seen
            .entry((key.id().as_str(), *envelope, *path))
            .or_insert_with(|| {
                unique.push(i);
                unique.len() - 1
            });
        slot_of.push(slot);
    }
    // Group version-2 envelopes by key and encapsulation.
    let mut jobs: Vec<Job> = Vec::new();
    let mut groups: HashMap<(&str, &[u8]), usize> = HashMap::new();
    for (slot, &i) in unique.iter().enumerate() {
        let (key, envelope, _) = items[i];
        match envelope {
            Envelope::V2(token) => {
                let job = *groups
                    .entry((key.id().as_str(), token.encapsulation()))
                    .or_insert_with(|| {
                        jobs.push(Job::Encapsulation(Vec::new()));
                        jobs.len() - 1
                    });
                if let Job::Encapsulation(slots) = &mut jobs[job] {
                    slots.push(slot);
                }
            }
            _ => jobs.push(Job::One(slot)),
        }
    }
    let mut results: Vec<Option<Result<Plaintext, ProviderError>>> = vec![None; unique.len()];
    let unique = &unique;
    let mut done = stream::iter(jobs.into_iter().map(|job| async move {
        match job {
            Job::One(slot) => {
                let (key, envelope, _) = items[unique[slot]];
                let result = match budget.decrypt(provider, key, envelope).await {
                    // Whatever the provider: a version-2 data key is never released as a value.
                    Ok(plaintext) if fle_shared::is_v2_data_key(plaintext.as_bytes()) => {
                        Err(crate::kms::data_key_as_value(key.id()))
                    }
                    other => other,
                };
                vec![(slot, result)]
            }
            Job::Encapsulation(slots) => {
                open_encapsulation(provider, budget, cache, items, unique, slots).await
            }
        }
    }))
    .buffer_unordered(in_flight.max(1));
    while let Some(answers) = done.next().await {
        for (slot, result) in answers {
            results[slot] = Some(result);
        }
    }
    slot_of
        .into_iter()
        .zip(items)
        .map(|(slot, (key, _, _))| {
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

/// The version-2 envelopes `slots` of one key and encapsulation: one secret (from `cache`, or
/// one provider call under the budget), then each opened locally.
async fn open_encapsulation(
    provider: &dyn KeyProvider,
    budget: &KmsBudget,
    cache: &SecretCache,
    items: &[(&KeyEntry, &Envelope, Option<&[u8]>)],
    unique: &[usize],
    slots: Vec<usize>,
) -> Vec<(usize, Result<Plaintext, ProviderError>)> {
    let token = |slot: usize| match items[unique[slot]].1 {
        Envelope::V2(token) => Some(token),
        _ => None,
    };
    let (key, _, _) = items[unique[slots[0]]];
    let Some(first) = token(slots[0]) else {
        return Vec::new();
    };
    let secret = match cache.get(key, first.encapsulation()) {
        Some(secret) => Ok(secret),
        None => match budget.decapsulate(provider, key, first).await {
            Ok(secret) => {
                let secret = Arc::new(secret);
                cache.insert(key, first.encapsulation(), secret.clone());
                Ok(secret)
            }
            Err(e) => Err(e),
        },
    };
    slots
        .into_iter()
        .map(|slot| {
            let result = match (&secret, token(slot)) {
                (Ok(secret), Some(token)) => secret
                    .open(key.id(), token, items[unique[slot]].2)
                    .map_err(|e| ProviderError::Failed {
                        key: key.id().clone(),
                        class: ErrorClass::Permanent,
                        code: match e {
                            fle_shared::OpenError::PathRequired => "PathRequired",
                            _ => "DecryptionFailed",
                        }
                        .into(),
                        message: e.to_string(),
                    }),
                (Err(e), _) => Err(e.clone()),
                (Ok(_), None) => Err(ProviderError::Failed {
                    key: key.id().clone(),
                    class: ErrorClass::Permanent,
                    code: "Internal".into(),
                    message: "not a version-2 envelope".into(),
                }),
            };
            (slot, result)
        })
        .collect()
}
