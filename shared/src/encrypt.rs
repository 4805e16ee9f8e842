//! Encrypting field values into envelopes: the edge's hot path.

use std::fmt;
use std::sync::Mutex;

use crate::backend::{Backend, BackendError, EncryptionKey, P256Recipient};
use crate::envelope;
use crate::key::{KeyId, MarkerPair, P256PublicKey, PublicKey};
use crate::keyring::{EnvelopeVersion, Keyring};
use crate::v2::{self, KeyKind, SealError, V2Sealer, V2_MAX_MESSAGE_LEN};

/// Longest field name kept in an error message.
const MAX_FIELD_NAME_IN_ERROR: usize = 128;

/// Encrypts values with the keys of a keyring, each prepared once by a [`Backend`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey};
/// let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?;
/// let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, public)])?;
/// let encryptor = FieldEncryptor::new(&keyring, backend::default_backend())?;
/// let mut out = String::new();
/// encryptor.key_str("01").unwrap().encrypt_into("ssn", b"123-45-6789", &mut out)?;
/// assert!(out.starts_with("#01#") && out.ends_with("#10#") && out.len() == 352);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FieldEncryptor {
    keys: Vec<KeyEncryptor>,
}

impl FieldEncryptor {
    /// Prepares every key of `keyring` with `backend`.
    pub fn new(keyring: &Keyring, backend: &'static dyn Backend) -> Result<Self, BackendError> {
        let keys = keyring
            .keys()
            .iter()
            .map(|entry| {
                let prepared = match entry.public_key() {
                    PublicKey::Rsa(public) => Prepared::Rsa {
                        max_plaintext_len: public.max_plaintext_len(),
                        modulus_len: public.modulus_len(),
                        key: backend.encryption_key(public)?,
                    },
                    PublicKey::P256(public) => Prepared::P256 {
                        public: public.clone(),
                        recipient: backend.p256_recipient(public)?,
                    },
                };
                Ok(KeyEncryptor {
                    id: entry.id().clone(),
                    markers: entry.markers().clone(),
                    version: entry.envelope(),
                    prepared,
                    backend,
                })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(FieldEncryptor { keys })
    }

    /// The encryptor for one key.
    pub fn key(&self, id: &KeyId) -> Option<&KeyEncryptor> {
        self.keys.iter().find(|k| &k.id == id)
    }

    /// The encryptor for one key, by id text.
    pub fn key_str(&self, id: &str) -> Option<&KeyEncryptor> {
        self.keys.iter().find(|k| k.id.as_str() == id)
    }
}

enum Prepared {
    Rsa {
        max_plaintext_len: usize,
        modulus_len: usize,
        key: Box<dyn EncryptionKey>,
    },
    P256 {
        public: P256PublicKey,
        recipient: Box<dyn P256Recipient>,
    },
}

/// One key, ready to encrypt.
pub struct KeyEncryptor {
    id: KeyId,
    markers: MarkerPair,
    version: EnvelopeVersion,
    prepared: Prepared,
    backend: &'static dyn Backend,
}

/// The encryption state of one request: the version-2 encapsulations made so far, one per key,
/// each made when the key's first value is sealed. Drop it when the request is done, so the
/// next request gets fresh encapsulations; or, to reuse them within limits, start it with
/// [`EncapsulationCache::begin`] and end it with [`EncapsulationCache::finish`].
#[derive(Debug, Default)]
pub struct RequestState {
    /// The encapsulations this request seals under, one per key.
    sealers: Vec<Kept>,
    /// Encapsulations taken from an [`EncapsulationCache`] that no value has used yet.
    carried: Vec<Kept>,
    /// When the request started (milliseconds of the cache's clock); `None`: not reused.
    now_ms: Option<u64>,
    /// Encapsulations made by this request.
    made: usize,
    /// Encapsulations this request took over from earlier requests.
    reused: usize,
}

impl RequestState {
    /// A request with no encapsulation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many encapsulations (asymmetric operations) this request has made; encapsulations
    /// reused from earlier requests ([`reused`](Self::reused)) are not counted.
    pub fn encapsulations(&self) -> usize {
        self.made
    }

    /// How many encapsulations of earlier requests this request has sealed under.
    pub fn reused(&self) -> usize {
        self.reused
    }
}

/// One encapsulation with its age and use: when it was made and how many requests sealed
/// under it (counting the current one while a request holds it).
#[derive(Debug)]
struct Kept {
    sealer: V2Sealer,
    born_ms: Option<u64>,
    requests: u32,
}

/// Limits on reusing one version-2 encapsulation across requests: it serves requests younger
/// than `max_age_ms` milliseconds and at most `max_requests` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseLimits {
    /// Age limit in milliseconds: a request starting this long after the encapsulation was
    /// made gets a new one.
    pub max_age_ms: u64,
    /// Most requests that seal under one encapsulation.
    pub max_requests: u32,
}

/// Version-2 encapsulations kept between requests, one per key, to reuse within
/// [`ReuseLimits`] (off unless configured: requests sharing an encapsulation are linkable by
/// its bytes, and its secret opens all of their values).
///
/// A request takes each key's kept encapsulation when it starts ([`begin`](Self::begin)) and
/// gives it back when it ends ([`finish`](Self::finish)); while a request holds it no other
/// request can use it (a concurrent request makes its own), so two values are never sealed
/// under the same encapsulation and index. Time is the caller's, in milliseconds of any
/// clock that does not go backwards; a time before an encapsulation's birth expires it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fle_shared::{backend, EncapsulationCache, EnvelopeVersion, FieldEncryptor, KeyEntry};
/// use fle_shared::{Keyring, ReuseLimits, RsaPublicKey};
/// let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?;
/// let entry = KeyEntry::new("01".parse()?, public).with_envelope(EnvelopeVersion::V2);
/// let keyring = Keyring::new(vec![entry])?;
/// let encryptor = FieldEncryptor::new(&keyring, backend::default_backend())?;
/// let key = encryptor.key_str("01").unwrap();
/// let cache = EncapsulationCache::new(ReuseLimits { max_age_ms: 60_000, max_requests: 2 });
/// let mut made = Vec::new();
/// for now_ms in [0, 1_000, 2_000] {
///     let mut state = cache.begin(Some(now_ms));
///     key.encrypt_in(&mut state, "ssn", b"123-45-6789", &mut String::new())?;
///     made.push(state.encapsulations());
///     cache.finish(state);
/// }
/// assert_eq!(made, [1, 0, 1]); // the third request is past max_requests
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EncapsulationCache {
    limits: ReuseLimits,
    kept: Mutex<Vec<Kept>>,
}

impl EncapsulationCache {
    /// An empty cache with these limits.
    pub fn new(limits: ReuseLimits) -> Self {
        EncapsulationCache {
            limits,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// The limits.
    pub fn limits(&self) -> ReuseLimits {
        self.limits
    }

    fn usable(&self, kept: &Kept, now_ms: u64) -> bool {
        kept.requests < self.limits.max_requests
            && kept
                .born_ms
                .and_then(|born| now_ms.checked_sub(born))
                .is_some_and(|age| age < self.limits.max_age_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        // A panic while the lock was held left at worst a list of whole entries.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a request at `now_ms`: it takes every kept encapsulation that is younger than
    /// the age limit and has served fewer requests than the limit (the rest are dropped).
    /// Without a time (`None`: no clock) nothing is reused and nothing will be kept.
    pub fn begin(&self, now_ms: Option<u64>) -> RequestState {
        let Some(now) = now_ms else {
            return RequestState::new();
        };
        let carried = std::mem::take(&mut *self.lock())
            .into_iter()
            .filter(|kept| self.usable(kept, now))
            .collect();
        RequestState {
            carried,
            now_ms: Some(now),
            ..RequestState::default()
        }
    }

    /// Ends a request started with [`begin`](Self::begin): keeps its encapsulations that may
    /// serve another request, one per key (the younger when a concurrent request kept one).
    pub fn finish(&self, state: RequestState) {
        let Some(now) = state.now_ms else {
            return;
        };
        let mut kept = self.lock();
        for entry in state.sealers.into_iter().chain(state.carried) {
            if !self.usable(&entry, now) {
                continue;
            }
            match kept
                .iter_mut()
                .find(|k| k.sealer.key_id() == entry.sealer.key_id())
            {
                Some(slot) if slot.born_ms > entry.born_ms => {}
                Some(slot) => *slot = entry,
                None => kept.push(entry),
            }
        }
    }
}

impl KeyEncryptor {
    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The envelope version this key writes.
    pub fn version(&self) -> EnvelopeVersion {
        self.version
    }

    /// Largest plaintext in bytes: modulus bytes − 66 for version 1, 1 MiB for version 2.
    pub fn max_plaintext_len(&self) -> usize {
        match (&self.prepared, self.version) {
            (
                Prepared::Rsa {
                    max_plaintext_len, ..
                },
                EnvelopeVersion::V1,
            ) => *max_plaintext_len,
            _ => V2_MAX_MESSAGE_LEN,
        }
    }

    fn kind(&self) -> KeyKind {
        match &self.prepared {
            Prepared::Rsa { modulus_len, .. } => KeyKind::Rsa {
                modulus_len: *modulus_len,
            },
            Prepared::P256 { .. } => KeyKind::P256,
        }
    }

    /// Length of the envelope (markers included) this key writes for a `message_len`-byte value.
    pub fn envelope_len(&self, message_len: usize) -> usize {
        match (&self.prepared, self.version) {
            (Prepared::Rsa { modulus_len, .. }, EnvelopeVersion::V1) => {
                envelope::v1_envelope_len(&self.markers, *modulus_len)
            }
            _ => v2::v2_envelope_len(&self.markers, self.kind(), message_len),
        }
    }

    /// Encrypts `plaintext` (the value of field `field`) on its own and appends its envelope to
    /// `out`. For a version-2 key this makes an encapsulation for this one value: use
    /// [`encrypt_in`](Self::encrypt_in) to share one across a request.
    ///
    /// On error `out` is unchanged, and the error names the field and the limit, never the value.
    pub fn encrypt_into(
        &self,
        field: &str,
        plaintext: &[u8],
        out: &mut String,
    ) -> Result<(), EncryptError> {
        self.encrypt_in(&mut RequestState::new(), field, plaintext, out)
    }

    /// Encrypts `plaintext` (the value of field `field`) as part of the request `state` and
    /// appends its envelope to `out`: version 1 costs one RSA operation per value; version 2
    /// one encapsulation for the key's first value in the request and AES-256-GCM for each.
    ///
    /// Allocation-free for version 1 apart from growing `out`. On error `out` is unchanged, and
    /// the error names the field and the limit, never the value.
    pub fn encrypt_in(
        &self,
        state: &mut RequestState,
        field: &str,
        plaintext: &[u8],
        out: &mut String,
    ) -> Result<(), EncryptError> {
        self.encrypt_bound_in(state, field, plaintext, None, out)
    }

    /// [`encrypt_in`](Self::encrypt_in), binding the value to `path` when given
    /// (`docs/ENVELOPE.md` section 5.3): the envelope then opens only with the same path.
    /// Version 1 cannot bind: a path with a version-1 key is refused
    /// ([`EncryptError::CannotBind`]).
    pub fn encrypt_bound_in(
        &self,
        state: &mut RequestState,
        field: &str,
        plaintext: &[u8],
        path: Option<&[u8]>,
        out: &mut String,
    ) -> Result<(), EncryptError> {
        let limit = self.max_plaintext_len();
        if plaintext.len() > limit {
            return Err(EncryptError::PlaintextTooLong {
                field: field.chars().take(MAX_FIELD_NAME_IN_ERROR).collect(),
                len: plaintext.len(),
                limit,
                key: self.id.clone(),
            });
        }
        match (&self.prepared, self.version) {
            (
                Prepared::Rsa {
                    modulus_len, key, ..
                },
                EnvelopeVersion::V1,
            ) => {
                if path.is_some() {
                    return Err(EncryptError::CannotBind {
                        key: self.id.clone(),
                    });
                }
                let mut buf = [0u8; 512];
                let ciphertext = &mut buf[..*modulus_len];
                key.encrypt(plaintext, ciphertext)?;
                envelope::write_v1(&self.markers, ciphertext, out);
                Ok(())
            }
            _ => self.seal(state, plaintext, path, out),
        }
    }

    fn seal(
        &self,
        state: &mut RequestState,
        plaintext: &[u8],
        path: Option<&[u8]>,
        out: &mut String,
    ) -> Result<(), EncryptError> {
        let at = match state
            .sealers
            .iter()
            .position(|k| k.sealer.key_id() == &self.id)
        {
            Some(at) => at,
            None => {
                let kept = match state
                    .carried
                    .iter()
                    .position(|k| k.sealer.key_id() == &self.id)
                {
                    // An earlier request's encapsulation: its index counter goes on.
                    Some(at) => {
                        let mut kept = state.carried.swap_remove(at);
                        kept.requests = kept.requests.saturating_add(1);
                        state.reused += 1;
                        kept
                    }
                    None => self.new_kept(state)?,
                };
                state.sealers.push(kept);
                state.sealers.len() - 1
            }
        };
        match state.sealers[at]
            .sealer
            .seal_into(&self.markers, plaintext, path, out)
        {
            // 2^32 values under one encapsulation: the next ones get a new one.
            Err(SealError::Exhausted) => {
                state.sealers[at] = self.new_kept(state)?;
                state.sealers[at]
                    .sealer
                    .seal_into(&self.markers, plaintext, path, out)
                    .map_err(EncryptError::from)
            }
            other => other.map_err(EncryptError::from),
        }
    }

    /// A new encapsulation for `state`'s request, counted as its first request.
    fn new_kept(&self, state: &mut RequestState) -> Result<Kept, EncryptError> {
        let sealer = self.new_sealer()?;
        state.made += 1;
        Ok(Kept {
            sealer,
            born_ms: state.now_ms,
            requests: 1,
        })
    }

    fn new_sealer(&self) -> Result<V2Sealer, EncryptError> {
        Ok(match &self.prepared {
            Prepared::Rsa { key, .. } => V2Sealer::rsa(&self.id, &**key, self.backend)?,
            Prepared::P256 { public, recipient } => V2Sealer::p256(&self.id, public, &**recipient)?,
        })
    }
}

impl fmt::Debug for KeyEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: &dyn fmt::Debug = match &self.prepared {
            Prepared::Rsa { key, .. } => key,
            Prepared::P256 { recipient, .. } => recipient,
        };
        f.debug_struct("KeyEncryptor")
            .field("id", &self.id)
            .field("markers", &self.markers)
            .field("version", &self.version)
            .field("key", key)
            .finish()
    }
}

/// Why a value could not be encrypted. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The value is longer than the key's envelope can carry (RSA-OAEP-SHA256 for version 1,
    /// 1 MiB for version 2).
    #[error("field {field:?} is {len} bytes; key {key} encrypts at most {limit} bytes per value")]
    PlaintextTooLong {
        /// The field's name (not its value).
        field: String,
        /// The value's length in bytes.
        len: usize,
        /// The limit: modulus bytes − 66 (190 for RSA-2048) for version 1, 1 MiB for version 2.
        limit: usize,
        /// The key.
        key: KeyId,
    },
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Version-2 sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A path to bind with a key that writes version 1, which cannot bind one.
    #[error("key {key} writes envelope version 1, which cannot bind a value to its field")]
    CannotBind {
        /// The key.
        key: KeyId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backend, Envelope, KeyEntry, PrivateKey, ScanItem};

    const PUBLIC: &str = include_str!("../../keys/demo-02.pub.pem");
    const PRIVATE: &str = include_str!("../../keys/demo-02.key.pem");

    fn setup() -> (Keyring, FieldEncryptor, PrivateKey) {
        let private = PrivateKey::from_pem(PRIVATE).unwrap();
        let public = crate::PublicKey::from_pem(PUBLIC).unwrap();
        let keyring = Keyring::new(vec![KeyEntry::new("02".parse().unwrap(), public)]).unwrap();
        let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
        (keyring, encryptor, private)
    }

    /// Seals `n` values in `state`; returns each token's (encapsulation, index), after opening
    /// it with the private key.
    fn seal(
        keyring: &Keyring,
        encryptor: &FieldEncryptor,
        private: &PrivateKey,
        state: &mut RequestState,
        n: usize,
    ) -> Vec<(Vec<u8>, u32)> {
        let key = encryptor.key_str("02").unwrap();
        let mut out = String::new();
        for i in 0..n {
            key.encrypt_in(state, "f", format!("value {i}").as_bytes(), &mut out)
                .unwrap();
            out.push(' ');
        }
        keyring
            .scanner()
            .scan_str(&out)
            .enumerate()
            .map(|(i, item)| {
                let ScanItem::Envelope(f) = item else {
                    panic!("{item:?}")
                };
                let plain = private.decrypt_envelope(f.key, &f.envelope).unwrap();
                assert_eq!(plain.as_bytes(), format!("value {i}").as_bytes());
                let Envelope::V2(token) = &f.envelope else {
                    panic!("not version 2")
                };
                (token.encapsulation().to_vec(), token.index())
            })
            .collect()
    }

    #[test]
    fn a_cache_lends_each_encapsulation_to_one_request_at_a_time() {
        let (keyring, encryptor, private) = setup();
        let cache = EncapsulationCache::new(ReuseLimits {
            max_age_ms: 10_000,
            max_requests: 10,
        });
        let mut a = cache.begin(Some(0));
        let first = seal(&keyring, &encryptor, &private, &mut a, 2);
        assert_eq!((a.encapsulations(), a.reused()), (1, 0));
        cache.finish(a);

        // Two requests at once: the first takes the kept encapsulation, the second makes its own.
        let mut b = cache.begin(Some(1));
        let mut c = cache.begin(Some(2));
        let in_b = seal(&keyring, &encryptor, &private, &mut b, 2);
        let in_c = seal(&keyring, &encryptor, &private, &mut c, 2);
        assert_eq!((b.encapsulations(), b.reused()), (0, 1));
        assert_eq!((c.encapsulations(), c.reused()), (1, 0));
        assert_eq!(in_b[0].0, first[0].0);
        assert_eq!(
            in_b.iter().map(|t| t.1).collect::<Vec<_>>(),
            [2, 3],
            "the index goes on"
        );
        assert_ne!(in_c[0].0, first[0].0);
        cache.finish(b);
        cache.finish(c);

        // The younger one (c's, made at 2 ms) is kept.
        let mut d = cache.begin(Some(3));
        let in_d = seal(&keyring, &encryptor, &private, &mut d, 1);
        assert_eq!(in_d, [(in_c[0].0.clone(), 2)]);
        cache.finish(d);
    }

    #[test]
    fn only_requests_that_seal_count() {
        let (keyring, encryptor, private) = setup();
        let cache = EncapsulationCache::new(ReuseLimits {
            max_age_ms: 10_000,
            max_requests: 2,
        });
        let mut encaps = Vec::new();
        for (now, values) in [(0, 1), (1, 0), (2, 1), (3, 1)] {
            let mut state = cache.begin(Some(now));
            encaps.extend(seal(&keyring, &encryptor, &private, &mut state, values));
            cache.finish(state);
        }
        // The request without a value did not use up the second request.
        assert_eq!(encaps[0].0, encaps[1].0);
        assert_ne!(encaps[1].0, encaps[2].0);
        assert_eq!(encaps.iter().map(|t| t.1).collect::<Vec<_>>(), [0, 1, 0]);
    }

    #[test]
    fn without_a_time_nothing_is_kept() {
        let (keyring, encryptor, private) = setup();
        let cache = EncapsulationCache::new(ReuseLimits {
            max_age_ms: u64::MAX,
            max_requests: u32::MAX,
        });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let mut state = cache.begin(None);
            let tokens = seal(&keyring, &encryptor, &private, &mut state, 2);
            assert_eq!(state.encapsulations(), 1);
            assert!(seen.insert(tokens[0].0.clone()));
            cache.finish(state);
        }
        // A plain RequestState given to a cache is not kept either.
        let mut state = RequestState::new();
        seal(&keyring, &encryptor, &private, &mut state, 1);
        cache.finish(state);
        assert!(cache.lock().is_empty());
    }

    #[test]
    fn the_cache_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EncapsulationCache>();
    }
}
