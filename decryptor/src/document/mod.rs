//! Whole documents: find every envelope in a JSON, form or text body, decrypt them together
//! through the engine, and put each plaintext back encoded for where it stands.
//!
//! The work is done in three steps so that the slow part (one provider call per distinct
//! envelope) runs concurrently: collect the *sites* (the strings of a JSON document, the names
//! and values of a form, or the whole text) whose decoded content contains a configured prefix;
//! decrypt every envelope found in them with [`decrypt_all`]; render each site again (JSON
//! strings re-escaped, form parts percent-encoded) and splice it into the document.
//!
//! The files follow that flow: [`sites`] finds the sites and the envelopes to decrypt in them,
//! [`decrypt`] makes the provider calls, [`render`] writes the output, and [`report`] holds
//! what a call reports. This file holds the [`Decryptor`] and its public API.

mod decrypt;
mod render;
mod report;
mod sites;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use fle_shared::body::json::JsonError;
use fle_shared::body::FieldSelector;
use fle_shared::ScanItem;
use fle_shared::{KeyEncryptor, Keyring};
use zeroize::Zeroizing;

use crate::budget::KmsBudget;
use crate::cache::SecretCache;
use crate::engine::{DecryptPolicy, RateLimiter};
use crate::provider::KeyProvider;

use decrypt::Work;
use report::trace_report;
pub use report::{DocumentError, Problem, ProblemKind, Report, MAX_PROBLEMS};
use sites::might_hold_prefix;

/// How a document is encoded, which decides how plaintext is put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A JSON document (strict RFC 8259). Plaintext is re-escaped as a JSON string; a value the
    /// edge encrypted from a number, boolean, null, object or array is restored as that JSON
    /// value. Envelopes are found in the *unescaped* strings, so `\/`-escaping serialisers are
    /// handled.
    Json,
    /// `application/x-www-form-urlencoded`: names and values are percent-decoded before the scan
    /// and plaintext is percent-encoded.
    Form,
    /// Any text: each envelope is replaced by its plaintext as is (JSON values the edge
    /// encrypted from non-strings by their JSON text).
    Text,
}

impl FromStr for Mode {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Mode::Json),
            "form" => Ok(Mode::Form),
            "text" => Ok(Mode::Text),
            _ => Err(UnknownName {
                what: "mode",
                expected: "json, form or text",
            }),
        }
    }
}

/// What to do with an envelope that cannot be decrypted (or whose plaintext cannot be put
/// back), for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Fail the whole document (the default): nothing partially decrypted is returned.
    #[default]
    Fail,
    /// Leave the envelope as it is and report it.
    Leave,
    /// Replace the envelope with [`REDACTED`] and report it.
    Redact,
}

impl FromStr for OnError {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(OnError::Fail),
            "leave" => Ok(OnError::Leave),
            "redact" => Ok(OnError::Redact),
            _ => Err(UnknownName {
                what: "error policy",
                expected: "fail, leave or redact",
            }),
        }
    }
}

/// A [`Mode`] or [`OnError`] name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: expected {expected}")]
pub struct UnknownName {
    what: &'static str,
    expected: &'static str,
}

/// What [`OnError::Redact`] writes in place of an envelope.
pub const REDACTED: &str = "[redacted]";

/// The limit on distinct version-2 encapsulations (so on KMS calls) of a [`Mode::Json`] or
/// [`Mode::Form`] document when none was set ([`Decryptor::max_encapsulations_per_document`]):
/// 256. Text documents have no default limit.
///
/// A JSON or form document the edge wrote for one request has one encapsulation per key; 256
/// leaves room for documents that gather the values of many requests (a page of stored
/// records), while a hostile 1 MB document of minimal P-256 envelopes (about 12,000
/// encapsulations) is refused before it costs a single call.
pub const DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT: usize = 256;

/// Decrypts documents: a keyring (which markers name which keys), a [`KeyProvider`], the
/// [`KmsBudget`] its calls go through (concurrency, rate, retries; shared by `Arc`), and
/// optionally the fields envelopes may stand in.
///
/// Cheap to share: hold one per process (it is `Send + Sync`) and call
/// [`Decryptor::decrypt`] from as many tasks as needed.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// # rt.block_on(async {
/// use std::sync::Arc;
/// use fle_decryptor::{Decryptor, LocalKeyProvider, Mode, OnError};
/// use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, OaepPrivateKey};
///
/// let pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../keys/demo-01.key.pem"))?;
/// let private = OaepPrivateKey::from_pem(&pem)?;
/// let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, private.public_key().clone())])?;
///
/// // What the edge writes for {"name": "Jo \"JJ\"", "age": 42}.
/// let key = FieldEncryptor::new(&keyring, backend::default_backend())?;
/// let (mut name, mut age) = (String::new(), String::new());
/// key.key_str("01").unwrap().encrypt_into("name", "Jo \"JJ\"".as_bytes(), &mut name)?;
/// key.key_str("01").unwrap().encrypt_into("age", b"\x0042", &mut age)?;
/// let body = format!(r#"{{"name": "{name}", "age": "{age}"}}"#);
///
/// let provider = LocalKeyProvider::new(vec![("01".parse()?, private)]);
/// let decryptor = Decryptor::new(keyring, Arc::new(provider));
/// let out = decryptor.decrypt(&body, Mode::Json, OnError::Fail).await?;
/// assert_eq!(*out.text, r#"{"name": "Jo \"JJ\"", "age": 42}"#);
/// assert_eq!(out.report.decrypted, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(()) })?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Decryptor {
    keyring: Arc<Keyring>,
    provider: Arc<dyn KeyProvider>,
    budget: Arc<KmsBudget>,
    /// Envelopes of one document driven at once (`None`: the budget's concurrency).
    in_flight: Option<usize>,
    fields: Option<Arc<[FieldSelector]>>,
    member_names: bool,
    /// Version-2 encapsulation secrets, shared by this decryptor's clones.
    secrets: Arc<SecretCache>,
    /// Most distinct version-2 encapsulations one document may hold in every mode (at least
    /// 1), if set; else the per-mode default ([`Decryptor::max_encapsulations_per_document`]).
    max_encapsulations: Option<usize>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("keys", &self.keyring.keys().len())
            .field("budget", &self.budget)
            .field("in_flight", &self.in_flight)
            .field("fields", &self.fields)
            .field("member_names", &self.member_names)
            .field("secrets", &self.secrets)
            .field("max_encapsulations", &self.max_encapsulations)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor over `keyring` and `provider`, with the process-wide
    /// [`KmsBudget::global`] and no field restriction.
    pub fn new(keyring: impl Into<Arc<Keyring>>, provider: Arc<dyn KeyProvider>) -> Self {
        Decryptor {
            keyring: keyring.into(),
            provider,
            budget: KmsBudget::global(),
            in_flight: None,
            fields: None,
            member_names: false,
            secrets: Arc::new(SecretCache::default()),
            max_encapsulations: None,
        }
    }

    /// Keeps the secrets of version-2 encapsulations in `cache` (the default: a cache of
    /// [`DEFAULT_SECRET_CACHE_CAPACITY`](crate::DEFAULT_SECRET_CACHE_CAPACITY) secrets, each
    /// used for [`DEFAULT_SECRET_MAX_AGE`](crate::DEFAULT_SECRET_MAX_AGE)). A cache answers
    /// without asking the key provider: share one only between decryptors of the same
    /// provider and credentials.
    pub fn with_secret_cache(mut self, cache: Arc<SecretCache>) -> Self {
        self.secrets = cache;
        self
    }

    /// The cache of version-2 encapsulation secrets (its counters included).
    pub fn secret_cache(&self) -> &Arc<SecretCache> {
        &self.secrets
    }

    /// Refuses a document (or region) holding more than `limit` distinct version-2
    /// encapsulations, in every mode, text included (0 is read as 1). Without it, JSON and form
    /// documents are limited to [`DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT`] and text documents
    /// are not limited ([`Decryptor::max_encapsulations_per_document`]).
    ///
    /// Each distinct (key, encapsulation) of a document's version-2 envelopes costs one
    /// provider call (KMS `Decrypt` of the data key, or `DeriveSharedSecret`), all through the
    /// shared [`KmsBudget`]: without a bound one hostile document could make thousands of
    /// calls, slow every other caller of the budget and flush the [`SecretCache`]. They are
    /// counted after the envelopes are found and before any call; over the limit, the call
    /// fails with [`DocumentError::TooManyEncapsulations`] and makes no provider call at all,
    /// whatever the [`OnError`] policy or [`Action`] (a resource refusal, not an envelope's
    /// problem: nothing is decrypted, left or redacted). Every encapsulation counts, those
    /// already in the secret cache too, so whether a document is refused does not depend on
    /// what was decrypted before. Version-1 envelopes (one call per distinct envelope, bounded
    /// by the document's size) are not counted, nor envelopes the call does not decrypt
    /// (outside the configured fields, in member names left closed, already under a
    /// re-encryption target).
    pub fn with_max_encapsulations_per_document(mut self, limit: usize) -> Self {
        self.max_encapsulations = Some(limit.max(1));
        self
    }

    /// The most distinct version-2 encapsulations one document in `mode` may hold, or `None`
    /// for no limit:
    ///
    /// - set ([`Decryptor::with_max_encapsulations_per_document`], the `[decrypt]` table's
    ///   `max_encapsulations_per_document`, [`DecryptorBuilder::max_encapsulations_per_document`](crate::DecryptorBuilder::max_encapsulations_per_document),
    ///   `fle --max-encapsulations-per-document`): that limit, in every mode;
    /// - unset, [`Mode::Json`] and [`Mode::Form`]: [`DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT`]
    ///   (such a document is one record, one request);
    /// - unset, [`Mode::Text`] (a whole text document, or a region of a text stream through
    ///   [`Decryptor::process_region`]): no limit. A text document (a log) holds lines written
    ///   by many requests, one encapsulation each, so any fixed default would refuse legitimate
    ///   logs; what it costs is bounded by the [`KmsBudget`] (concurrency and rate) instead.
    pub fn max_encapsulations_per_document(&self, mode: Mode) -> Option<usize> {
        match (self.max_encapsulations, mode) {
            (Some(limit), _) => Some(limit),
            (None, Mode::Json | Mode::Form) => Some(DEFAULT_MAX_ENCAPSULATIONS_PER_DOCUMENT),
            (None, Mode::Text) => None,
        }
    }

    /// Makes every provider call through `budget` (concurrency permit, rate token, retries),
    /// shared with whatever else holds it: give every decryptor of a process (or of a KMS
    /// account and region) the same one. A document drives up to the budget's concurrency of
    /// envelopes at once, unless [`Decryptor::with_policy`] said otherwise.
    pub fn with_budget(mut self, budget: Arc<KmsBudget>) -> Self {
        self.budget = budget;
        self
    }

    /// The budget provider calls go through (its counters included).
    pub fn budget(&self) -> &Arc<KmsBudget> {
        &self.budget
    }

    /// Paces calls with `limiter` instead of the budget's bucket: the decryptor gets a budget
    /// of its own that shares the current one's concurrency permits and retry policy.
    ///
    /// Superseded by [`Decryptor::with_budget`].
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.budget = Arc::new(
            self.budget
                .derive(None, Some(limiter.shared_bucket()), None),
        );
        self
    }

    /// Uses `policy`: `policy.concurrency` envelopes of a document driven at once, and its
    /// retries. The decryptor gets a budget of its own sharing the current one's rate bucket;
    /// its permits too, unless `policy.concurrency` differs from the budget's, in which case
    /// this decryptor (and its clones) get that many permits of their own.
    ///
    /// Superseded by [`Decryptor::with_budget`].
    pub fn with_policy(mut self, policy: DecryptPolicy) -> Self {
        let concurrency = policy.concurrency.max(1);
        self.budget = Arc::new(
            self.budget
                .derive(Some(concurrency), None, Some(policy.retry())),
        );
        self.in_flight = Some(concurrency);
        self
    }

    /// Decrypts only envelopes that are the whole value of a field these selectors select
    /// (JSON: a string value, exactly one envelope, at a path [`FieldSelector::matches`]; form:
    /// a whole decoded value of a selected name), as the edge wrote them. Envelopes anywhere
    /// else, including inside a longer string or value of a selected field, and in member
    /// names and form names, are left encrypted and reported as
    /// [`ProblemKind::MarkerInjection`], whatever the error policy: a captured ciphertext
    /// pasted into a free-text field by a client is never decrypted into it. Text mode has no
    /// fields: every envelope is reported and left.
    ///
    /// Without this (the default, like the reference design) decryption is schema-blind:
    /// every envelope anywhere is decrypted, so a client that can submit a victim's envelope in
    /// any field that is later decrypted and shown to it can read the victim's value.
    pub fn only_fields(mut self, fields: Vec<FieldSelector>) -> Self {
        self.fields = Some(fields.into());
        self
    }

    /// Whether envelopes in JSON member names are decrypted (default: no). The edge never
    /// encrypts member names, and decrypting them without a schema lets a client make two
    /// members of one name (`{"role": "user", "<envelope of 'role'>": "admin"}`), which
    /// readers resolve differently. Left off, an envelope in a member name is left as it is
    /// and reported as [`ProblemKind::MemberName`], whatever the error policy.
    ///
    /// Turned on (and without a field restriction, under which names are never decrypted),
    /// names are decrypted like string values, except that a problem in a name leaves it as
    /// it is under [`OnError::Redact`] too, and that an object in which decrypted names would
    /// duplicate a member (another decrypted name, or a name as written) keeps all its names
    /// encrypted: [`ProblemKind::DuplicateMember`], which fails the call under
    /// [`OnError::Fail`].
    pub fn decrypt_member_names(mut self, on: bool) -> Self {
        self.member_names = on;
        self
    }

    /// Applies a `[decrypt]` table's settings that shape the decryptor: its field restriction,
    /// whether member names are decrypted, the most version-2 encapsulations per document when
    /// it sets one ([`Decryptor::with_max_encapsulations_per_document`]), and, when it sets
    /// `rate_per_second` or `concurrency`, a budget of its own ([`KmsBudget::from_config`])
    /// instead of the current one. (Mode and error policy are per call.)
    ///
    /// A table read by [`DecryptConfig::from_toml_str`](crate::DecryptConfig::from_toml_str)
    /// always makes a valid budget; a hand-built one that does not leaves the budget as it was
    /// (call [`KmsBudget::from_config`] to see why, or use
    /// [`DecryptorParts::decryptor`](crate::DecryptorParts::decryptor), which refuses it).
    pub fn with_config(mut self, config: &crate::DecryptConfig) -> Self {
        self = self.with_table(config);
        if config.rate_per_second.is_some() || config.concurrency.is_some() {
            if let Ok(budget) = KmsBudget::from_config(config) {
                self.budget = Arc::new(budget);
            }
        }
        self
    }

    /// The field restriction, member-name setting and encapsulation limit of a `[decrypt]`
    /// table.
    pub(crate) fn with_table(mut self, config: &crate::DecryptConfig) -> Self {
        if let Some(fields) = &config.fields {
            self = self.only_fields(fields.clone());
        }
        self.member_names = config.decrypt_member_names;
        if let Some(limit) = config.max_encapsulations_per_document {
            self = self.with_max_encapsulations_per_document(limit);
        }
        self
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Decrypts every envelope in `doc`. Under [`OnError::Fail`] the first problem (in
    /// document order) fails the call; otherwise problems are applied and reported in
    /// [`Decrypted::report`]. Marker-injection findings never fail a call: those envelopes
    /// stay encrypted. A document with more distinct version-2 encapsulations than
    /// [`Decryptor::max_encapsulations_per_document`] allows in `mode` fails whatever the
    /// policy ([`DocumentError::TooManyEncapsulations`]), before any provider call.
    pub async fn decrypt(
        &self,
        doc: &str,
        mode: Mode,
        on_error: OnError,
    ) -> Result<Decrypted, DocumentError> {
        self.process(doc, mode, on_error, Action::Decrypt).await
    }

    /// Like [`Decryptor::decrypt`], with the plaintext of each envelope handled as `action`
    /// says: decrypted in place, re-encrypted to another key, or only checked.
    ///
    /// With [`Action::Verify`] the error policy does not matter (nothing is written: every
    /// problem is reported, none fails the call) and the returned text is empty.
    pub async fn process(
        &self,
        doc: &str,
        mode: Mode,
        on_error: OnError,
        action: Action<'_>,
    ) -> Result<Decrypted, DocumentError> {
        let (bytes, report) = self
            .run(doc.as_bytes(), mode, on_error, action, None)
            .await?;
        trace_report(mode, doc.len(), &report);
        Ok(Decrypted {
            text: into_text(bytes),
            report,
        })
    }

    /// Processes a region of a text stream in [`Mode::Text`]: `items` are what the scanner
    /// found in `text` (a [`fle_shared::StreamScanner`] region's items), so text of
    /// any encoding, cut anywhere between envelopes, can be handled region by region. Bytes
    /// between envelopes are copied as they are; problem offsets are relative to `text`.
    pub async fn process_region(
        &self,
        text: &[u8],
        items: Vec<ScanItem<'_>>,
        on_error: OnError,
        action: Action<'_>,
    ) -> Result<ProcessedBytes, DocumentError> {
        let (bytes, report) = self
            .run(text, Mode::Text, on_error, action, Some(items))
            .await?;
        trace_report(Mode::Text, text.len(), &report);
        Ok(ProcessedBytes { bytes, report })
    }

    /// Whether `doc` may hold an envelope (or, in JSON, the escaped start of one). When it
    /// cannot, every action returns it unchanged and makes no provider call: batch front ends
    /// use this to pass marker-free runs of records through untouched.
    pub fn may_hold_envelopes(&self, doc: &[u8], mode: Mode) -> bool {
        let scanner = self.keyring.scanner();
        match mode {
            Mode::Json => might_hold_prefix(scanner, doc),
            // A form may percent-encode a prefix's bytes.
            Mode::Form => scanner.contains_prefix(doc) || memchr::memchr(b'%', doc).is_some(),
            Mode::Text => scanner.contains_prefix(doc),
        }
    }

    #[tracing::instrument(level = "trace", skip_all, fields(?mode, bytes = doc.len()))]
    async fn run(
        &self,
        doc: &[u8],
        mode: Mode,
        on_error: OnError,
        action: Action<'_>,
        items: Option<Vec<ScanItem<'_>>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Report), DocumentError> {
        let scanner = self.keyring.scanner();
        let on_error = match action {
            Action::Verify => OnError::Leave,
            Action::Decrypt | Action::Reencrypt(_) => on_error,
        };
        let verify = matches!(action, Action::Verify);
        // Nothing to decrypt: the document is returned as it is, unparsed.
        if mode == Mode::Json && !might_hold_prefix(scanner, doc) {
            let out = if verify { Vec::new() } else { doc.to_vec() };
            return Ok((Zeroizing::new(out), Report::default()));
        }
        let text = match mode {
            Mode::Text => "",
            // Only the `&str` entry points reach here.
            Mode::Json | Mode::Form => std::str::from_utf8(doc).map_err(|e| JsonError::Syntax {
                what: "text that is not UTF-8",
                offset: e.valid_up_to(),
            })?,
        };
        let mut work = Work::new(&self.keyring, action, on_error);
        work.field_names = self.field_names();

        // 1. Find the sites, and in them the envelopes to decrypt.
        self.find_sites(&mut work, mode, doc, text, items.as_deref())?;
        // 2. Decrypt them together (refused whole, before any call, over the encapsulation
        //    limit).
        self.decrypt_wanted(&mut work, mode).await?;
        // 3. Render every site, in document order, straight into the output.
        let out = self.render_sites(&mut work, mode, doc, text, items)?;
        let out = if verify {
            Zeroizing::new(Vec::new())
        } else {
            out
        };
        Ok((out, work.report))
    }
}

/// What [`Decryptor::process`] does with each envelope's plaintext.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Put the plaintext in the envelope's place, encoded for where it stands.
    Decrypt,
    /// Encrypt the plaintext's bytes as they are (a JSON value's tag byte included) to this
    /// key and put the new envelope in the old one's place; envelopes already under this key
    /// are left as they are. Plaintext exists only in memory.
    Reencrypt(&'a KeyEncryptor),
    /// Decrypt to check that it can be done, then drop the plaintext; write nothing.
    Verify,
}

/// The result of [`Decryptor::process_region`]: bytes, as the input was.
pub struct ProcessedBytes {
    /// The region with its envelopes handled (zeroized on drop).
    pub bytes: Zeroizing<Vec<u8>>,
    /// What was found and done.
    pub report: Report,
}

impl fmt::Debug for ProcessedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessedBytes")
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("report", &self.report)
            .finish()
    }
}

/// Output built from UTF-8 input and UTF-8 pieces is UTF-8; moved, never copied.
fn into_text(mut bytes: Zeroizing<Vec<u8>>) -> Zeroizing<String> {
    let owned = std::mem::take(&mut *bytes);
    Zeroizing::new(String::from_utf8(owned).unwrap_or_else(|e| {
        // Unreachable: every piece is UTF-8. Never panic on it all the same.
        let mut lossy = e.into_bytes();
        let text = String::from_utf8_lossy(&lossy).into_owned();
        zeroize::Zeroize::zeroize(&mut lossy);
        text
    }))
}

/// The result of [`Decryptor::decrypt`].
pub struct Decrypted {
    /// The document with its envelopes replaced (zeroized on drop).
    pub text: Zeroizing<String>,
    /// What was found and done.
    pub report: Report,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("text", &format_args!("{} bytes", self.text.len()))
            .field("report", &self.report)
            .finish()
    }
}
