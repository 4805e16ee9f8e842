//! fle's edge encryptor: turns one CloudFront origin-request event into either the same request
//! with selected body fields encrypted, or a generated error response. No private key and no
//! KMS call at the edge: only the public keys of the [`Keyring`].
//!
//! The core is pure and synchronous ([`EdgeEncryptor::handle_event`]: event in, [`Outcome`]
//! out); the Lambda binary, the Lambda@Edge (wasm) package and the `fle encrypt-event` command
//! are thin shells around it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use fle_edge_encryptor::{EdgeConfig, EdgeEncryptor, Outcome};
//! use fle_shared::{backend, KeyEntry, Keyring, RsaPublicKey};
//!
//! let public = RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?;
//! let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, public)])?;
//! let config = EdgeConfig::from_toml_str("[edge]\nkey = \"01\"\nfields = [\"ssn\"]\n")?;
//! let edge = EdgeEncryptor::new(keyring, config, backend::default_backend())?;
//!
//! let event = serde_json::json!({"Records": [{"cf": {"request": {
//!     "method": "POST", "uri": "/signup", "querystring": "", "clientIp": "203.0.113.1",
//!     "headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]},
//!     "body": {"inputTruncated": false, "action": "read-only", "encoding": "text",
//!              "data": "{\"name\": \"Jo\", \"ssn\": \"123-45-6789\"}"}}}}]});
//! let Outcome::Forward { request, encrypted } = edge.handle_event(&event) else { panic!() };
//! assert_eq!(encrypted, 1);
//! let body = request["body"]["data"].as_str().unwrap();
//! assert!(body.starts_with("{\"name\": \"Jo\", \"ssn\": \"#01#") && !body.contains("6789"));
//! assert_eq!(request["body"]["action"], "replace");
//! # Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - Requests whose method and URI the rules do not cover are forwarded untouched. URIs are
//!   matched fail closed against every reading an origin may route on ([`uri`]: normalised,
//!   fully decoded, case-folded by default); exclusions apply only to plainly spelled paths.
//! - A covered method with a URI holding a NUL, a control character or a malformed percent
//!   escape → 400 `invalid_uri`.
//! - `inputTruncated: true` → 413: a body CloudFront cut cannot have been fully encrypted.
//! - A body that does not parse as its content type, or a content type missing or not listed →
//!   400 / 415, always (`on_unparseable = "pass"` was removed: it forwarded fields in clear).
//! - A value over the key's size limit → 413 naming the field.
//! - Any string, in any field or member name, that contains a configured prefix → 400 (or
//!   neutralised with `on_marker = "neutralise"`): a captured envelope is never forwarded where a
//!   schema-blind decryptor would open it.
//! - A result over `max_body_bytes` (CloudFront accepts at most 1 MB) → 413, found before the
//!   encryption that would pass it; more selected values than `max_encrypted_values` → 413.
//! - A name some origin reads as a configured field that the [`NameMatching`] mode does not
//!   select → 400 `ambiguous_field_name`; a configured field in the query string → 400
//!   `field_in_query` (or encrypted with [`QueryPolicy::Encrypt`]).
//! - A body declared as form data that is not form-shaped, or a JSON body that lenient form
//!   parsers read as carrying a configured field → 400 `content_type_mismatch`.
//! - Envelope-shaped text of any key (retired markers, the [`guard`] shape, after NFKC) → 400
//!   `marker_injection`; valid JSON deeper than [`MAX_DEPTH`] → 400 `body_too_deep`.
//! - Rules apply but the event carries no body while the request has one (the function was
//!   associated without "include body") → 500: never forward what could not be seen.
//! - The event is read through [`OriginRequest`], a typed view borrowing from it. Whether the
//!   rules cover a request is decided from its method and URI before anything else is read;
//!   a covered request whose members are missing or of the wrong type → 500 `invalid_event`
//!   ([`EventError`]).
//! - Forwarded requests get `body.action = "replace"`, `body.encoding = "text"`; every other
//!   field of the request is untouched, and the body is byte for byte the same apart from the
//!   encrypted values.
//! - Non-string JSON values (numbers, booleans, null, objects, arrays) are encrypted as
//!   [`JSON_VALUE_TAG`] followed by their compact JSON text; the decryptor restores the type.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
#[cfg(feature = "rustcrypto")]
pub mod bundle;
pub mod config;
mod event;
mod form;
pub mod guard;
mod json;
mod names;
mod query;
pub mod uri;

use std::path::Path;

pub use body::{BodyError, JSON_VALUE_TAG, MAX_DEPTH, NEUTRALISER};
pub use config::{
    BodyKind, ConfigError, EdgeConfig, EdgeConfigBuilder, EncapsulationReuse, FieldRule,
    FieldSelector, MarkerPolicy, NameMatching, QueryPolicy, UnparseablePolicy, UriCase,
};
pub use event::{
    BodyEncoding, EventChange, EventError, Header, Headers, OriginRequest, Outcome, Rejection,
    RequestBody,
};
use fle_shared::backend::Backend;
use fle_shared::{EncapsulationCache, EnvelopeVersion, FieldEncryptor, Keyring, ReuseLimits};
pub use uri::UriError;

/// The edge encryptor: keyring, configuration and prepared keys. Build once (at module load),
/// use for every request; `Send + Sync`.
#[derive(Debug)]
pub struct EdgeEncryptor {
    keyring: Keyring,
    config: EdgeConfig,
    encryptor: FieldEncryptor,
    /// With `bind_paths`: each field rule's name, bound into its values' envelopes.
    bound_names: Option<Vec<String>>,
    /// With `reuse_encapsulation`: the version-2 encapsulations kept between requests.
    reuse: Option<EncapsulationCache>,
    /// The time for `reuse_encapsulation`'s age limit.
    clock: Box<dyn Clock>,
}

/// Where the edge reads the time for `reuse_encapsulation`'s age limit
/// ([`EdgeEncryptor::with_clock`]).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since a fixed point, not going backwards; `None` when there is no clock,
    /// and then no encapsulation is reused (each request makes its own).
    fn now_ms(&self) -> Option<u64>;
}

/// The default [`Clock`]: the process's monotonic clock (`std::time::Instant`). On
/// `wasm32-unknown-unknown`, which has no clock, it has no time (so nothing is reused) unless
/// the host gives one (the Lambda@Edge module does, from `Date.now()`).
#[derive(Debug)]
pub struct MonotonicClock {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    start: std::time::Instant,
}

impl MonotonicClock {
    /// A clock counting from now.
    pub fn new() -> Self {
        MonotonicClock {
            #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
            start: std::time::Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    fn now_ms(&self) -> Option<u64> {
        u64::try_from(self.start.elapsed().as_millis()).ok()
    }

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    fn now_ms(&self) -> Option<u64> {
        None
    }
}

impl EdgeEncryptor {
    /// Checks that every field rule's key is in `keyring` and prepares the keys with `backend`.
    /// URI patterns are checked and normalised again (a configuration may be built in code).
    pub fn new(
        keyring: Keyring,
        mut config: EdgeConfig,
        backend: &'static dyn Backend,
    ) -> Result<Self, ConfigError> {
        (config.uris, config.exclude_uris) =
            config::check_uri_patterns(&config.uris, &config.exclude_uris, config.uri_case)?;
        for rule in &config.fields {
            config::check_selector(&rule.selector)?;
            match keyring.get(&rule.key) {
                None => {
                    return Err(ConfigError::UnknownKey {
                        field: rule.selector.to_string(),
                        key: rule.key.clone(),
                    })
                }
                Some(key) if config.bind_paths && key.envelope() == EnvelopeVersion::V1 => {
                    return Err(ConfigError::BindNeedsV2 {
                        field: rule.selector.to_string(),
                        key: rule.key.clone(),
                    })
                }
                Some(key)
                    if config.reuse_encapsulation.is_some()
                        && key.envelope() == EnvelopeVersion::V1 =>
                {
                    return Err(ConfigError::ReuseNeedsV2 {
                        field: rule.selector.to_string(),
                        key: rule.key.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        let reuse = match &config.reuse_encapsulation {
            None => None,
            Some(reuse) => {
                config::check_reuse(reuse)?;
                Some(EncapsulationCache::new(ReuseLimits {
                    max_age_ms: reuse.seconds * 1000,
                    // At most 1,000,000 (checked).
                    max_requests: u32::try_from(reuse.requests).unwrap_or(u32::MAX),
                }))
            }
        };
        // The names values are bound to (docs/ENVELOPE.md section 5.3), one per rule.
        let bound_names = config.bind_paths.then(|| {
            config
                .fields
                .iter()
                .map(|r| r.selector.to_string())
                .collect()
        });
        for marker in &config.retired_markers {
            if keyring.scanner().contains_prefix(marker.as_bytes()) {
                return Err(ConfigError::RetiredActive(marker.clone()));
            }
        }
        let encryptor = FieldEncryptor::new(&keyring, backend)?;
        Ok(EdgeEncryptor {
            keyring,
            config,
            encryptor,
            bound_names,
            reuse,
            clock: Box::new(MonotonicClock::new()),
        })
    }

    /// Reads the time for `reuse_encapsulation` from `clock` instead of [`MonotonicClock`]
    /// (tests drive it; the Lambda@Edge module gives the host's).
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Reads the keyring (`[[keys]]`) and the `[edge]` table from one TOML text; relative key
    /// paths are resolved against `base_dir`.
    pub fn from_toml_str(
        text: &str,
        base_dir: &Path,
        backend: &'static dyn Backend,
    ) -> Result<Self, ConfigError> {
        let keyring = Keyring::from_toml_str(text, base_dir)?;
        let config = EdgeConfig::from_toml_str(text)?;
        Self::new(keyring, config, backend)
    }

    /// Reads the keyring and the `[edge]` table from one TOML file.
    pub fn from_toml_file(path: &Path, backend: &'static dyn Backend) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let keyring = Keyring::from_file_text(path, &text)?;
        let config = EdgeConfig::from_toml_str(&text)?;
        Self::new(keyring, config, backend)
    }

    /// The configuration.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub(crate) fn rules(&self) -> body::Rules<'_> {
        body::Rules {
            fields: self
                .config
                .fields
                .iter()
                // Every rule's key was checked in `new`.
                .filter_map(|rule| Some((&rule.selector, self.encryptor.key(&rule.key)?)))
                .collect(),
            scanner: self.keyring.scanner(),
            on_marker: self.config.on_marker,
            names: self.config.names,
            retired: &self.config.retired_markers,
            max_values: self.config.max_encrypted_values,
            max_body: self.config.max_body_bytes,
            bound_names: self.bound_names.as_deref(),
            state: std::cell::RefCell::new(match &self.reuse {
                Some(cache) => cache.begin(self.clock.now_ms()),
                None => fle_shared::RequestState::new(),
            }),
            reuse: self.reuse.as_ref(),
        }
    }

    /// Encrypts the selected fields of one body of the given kind. Returns the new body and the
    /// number of values encrypted.
    pub fn encrypt_body(&self, kind: BodyKind, body: &str) -> Result<(String, usize), BodyError> {
        self.encrypt_body_with(&self.rules(), kind, body)
    }

    /// [`encrypt_body`](Self::encrypt_body) under `rules`, whose request state (version-2
    /// encapsulations) the query string of the same request shares.
    pub(crate) fn encrypt_body_with(
        &self,
        rules: &body::Rules<'_>,
        kind: BodyKind,
        body: &str,
    ) -> Result<(String, usize), BodyError> {
        if body.len() > self.config.max_body_bytes {
            // Encryption makes every value longer (only a value written with many JSON escapes
            // can come out shorter): refuse before any work rather than after it.
            return Err(BodyError::TooLarge {
                limit: self.config.max_body_bytes,
            });
        }
        let mut out = String::with_capacity(body.len() + 512);
        let count = match kind {
            BodyKind::Json => {
                form::check_json_as_form(body, rules)?;
                json::rewrite(body, rules, &mut out)?
            }
            BodyKind::Form => form::rewrite(body, rules, &mut out)?,
        };
        Ok((out, count))
    }
}
