//! The cache of version-2 encapsulation secrets: one KMS call per distinct encapsulation, then
//! every value sealed under it opens locally.
//!
//! A version-2 request has one encapsulation for all its values (`docs/ENVELOPE.md` section 5),
//! so a document, or several records of one request (CSV columns, queue messages), needs the
//! private key once. The cache holds the secrets that open them ([`V2Secret`]: an HPKE key
//! schedule secret or the HKDF key of a data key, zeroized when the last holder drops it).
//!
//! Bounded two ways, both fail-safe (a miss costs one more KMS call, never a wrong answer):
//! - **capacity**: at most this many secrets; the oldest inserted goes first;
//! - **age**: a secret older than `max_age` is not used (and is dropped when met).
//!
//! A cache belongs to one [`Decryptor`](crate::Decryptor) (and its clones), hence to one key
//! provider: a hit skips the provider, so a secret fetched under one identity's KMS
//! permissions is never handed to a decryptor holding another's. Entries are keyed by the
//! key's public key and the encapsulation's bytes (the secret depends on nothing else).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fle_shared::{KeyEntry, V2Secret};

/// Default capacity of a decryptor's cache.
pub const DEFAULT_SECRET_CACHE_CAPACITY: usize = 1024;

/// Default longest time a secret is used after it was fetched.
pub const DEFAULT_SECRET_MAX_AGE: Duration = Duration::from_secs(300);

type CacheKey = (Vec<u8>, Vec<u8>);

/// A bounded, shared cache of version-2 secrets (see the module documentation).
pub struct SecretCache {
    capacity: usize,
    max_age: Duration,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<CacheKey, (Arc<V2Secret>, Instant)>,
    /// Insertion order, oldest first (each key once).
    order: VecDeque<CacheKey>,
}

impl SecretCache {
    /// A cache of at most `capacity` secrets (0 disables it), each used for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        SecretCache {
            capacity,
            max_age,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn key(entry: &KeyEntry, encapsulation: &[u8]) -> CacheKey {
        (
            entry.public_key().spki_der().to_vec(),
            encapsulation.to_vec(),
        )
    }

    /// The secret of `encapsulation` under `entry`'s key, if cached and young enough.
    pub fn get(&self, entry: &KeyEntry, encapsulation: &[u8]) -> Option<Arc<V2Secret>> {
        let key = Self::key(entry, encapsulation);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let found = match inner.map.get(&key) {
            Some((secret, at)) if at.elapsed() <= self.max_age => Some(secret.clone()),
            Some(_) => {
                inner.map.remove(&key);
                inner.order.retain(|k| k != &key);
                None
            }
            None => None,
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `secret` for `encapsulation` under `entry`'s key, dropping the oldest entries
    /// beyond the capacity.
    pub fn insert(&self, entry: &KeyEntry, encapsulation: &[u8], secret: Arc<V2Secret>) {
        if self.capacity == 0 {
            return;
        }
        let key = Self::key(entry, encapsulation);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner
            .map
            .insert(key.clone(), (secret, Instant::now()))
            .is_none()
        {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&oldest);
        }
    }

    /// Secrets held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    /// Whether it holds no secret.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every secret.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.clear();
        inner.order.clear();
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that needed the key provider.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

impl Default for SecretCache {
    fn default() -> Self {
        SecretCache::new(DEFAULT_SECRET_CACHE_CAPACITY, DEFAULT_SECRET_MAX_AGE)
    }
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("capacity", &self.capacity)
            .field("max_age", &self.max_age)
            .field("len", &self.len())
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fle_shared::{KeyEntry, RsaPublicKey};

    fn entry() -> KeyEntry {
        let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM).unwrap();
        KeyEntry::new("01".parse().unwrap(), public)
    }

    fn secret() -> Arc<V2Secret> {
        Arc::new(V2Secret::from_data_key(&[7; 32]).unwrap())
    }

    #[test]
    fn bounded_by_capacity_oldest_first() {
        let cache = SecretCache::new(2, Duration::from_secs(60));
        let e = entry();
        for encap in [&b"a"[..], b"b", b"c"] {
            cache.insert(&e, encap, secret());
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&e, b"a").is_none());
        assert!(cache.get(&e, b"b").is_some());
        assert!(cache.get(&e, b"c").is_some());
        assert_eq!((cache.hits(), cache.misses()), (2, 1));
        // Inserting a key again does not grow the order: capacity still holds.
        cache.insert(&e, b"c", secret());
        cache.insert(&e, b"d", secret());
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&e, b"b").is_none());
    }

    #[test]
    fn too_old_is_a_miss_and_zero_capacity_keeps_nothing() {
        let cache = SecretCache::new(4, Duration::ZERO);
        let e = entry();
        cache.insert(&e, b"a", secret());
        std::thread::sleep(Duration::from_millis(2));
        assert!(cache.get(&e, b"a").is_none());
        assert!(cache.is_empty());
        let off = SecretCache::new(0, Duration::from_secs(60));
        off.insert(&e, b"a", secret());
        assert!(off.is_empty());
    }

    #[test]
    fn debug_shows_no_secret() {
        let cache = SecretCache::default();
        cache.insert(&entry(), b"a", secret());
        let text = format!("{cache:?}");
        assert!(text.contains("len: 1") && !text.contains('7'), "{text}");
    }
}
