//! Whole documents: find every envelope in a JSON, form or text body, decrypt them together
//! through the engine, and put each plaintext back encoded for where it stands.
//!
//! The work is done in three steps so that the slow part (one provider call per distinct
//! envelope) runs concurrently: collect the *sites* (the strings of a JSON document, the names
//! and values of a form, or the whole text) whose decoded content contains a configured prefix;
//! decrypt every envelope found in them with [`decrypt_all`]; render each site again (JSON
//! strings re-escaped, form parts percent-encoded) and splice it into the document.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use fle_shared::body::json::{self, JsonError, StringToken, Visitor};
use fle_shared::body::{form, render_path, FieldSelector, Seg, JSON_VALUE_TAG};
use fle_shared::scan::{self, ScanItem};
use fle_shared::{EncryptError, Envelope, KeyEncryptor, KeyEntry, KeyId, Keyring, Plaintext};
use zeroize::Zeroizing;

use crate::engine::{decrypt_all, DecryptPolicy, RateLimiter};
use crate::provider::{KeyProvider, ProviderError};

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

/// Decrypts documents: a keyring (which markers name which keys), a [`KeyProvider`], the
/// engine's rate limiter and retry policy, and optionally the fields envelopes may stand in.
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
    limiter: Arc<RateLimiter>,
    policy: DecryptPolicy,
    fields: Option<Arc<[FieldSelector]>>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("keys", &self.keyring.keys().len())
            .field("policy", &self.policy)
            .field("fields", &self.fields)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor over `keyring` and `provider`, with the process-wide
    /// [`RateLimiter::global`], the default [`DecryptPolicy`], and no field restriction.
    pub fn new(keyring: impl Into<Arc<Keyring>>, provider: Arc<dyn KeyProvider>) -> Self {
        Decryptor {
            keyring: keyring.into(),
            provider,
            limiter: RateLimiter::global(),
            policy: DecryptPolicy::default(),
            fields: None,
        }
    }

    /// Uses `limiter` instead of the process-wide one.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Uses `policy` for concurrency and retries.
    pub fn with_policy(mut self, policy: DecryptPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Decrypts only envelopes that stand whole in a string value these selectors select
    /// (JSON: [`FieldSelector::matches`] on the value's path; form: the field name), as the edge
    /// wrote them. Envelopes anywhere else are left encrypted and reported as
    /// [`ProblemKind::MarkerInjection`]: a captured ciphertext pasted into a free-text field
    /// by a client is never decrypted into it. Text mode has no fields: every envelope is
    /// reported and left.
    ///
    /// Without this (the default, like the reference design) decryption is schema-blind:
    /// every envelope anywhere is decrypted, so a client that can submit a victim's envelope in
    /// any field that is later decrypted and shown to it can read the victim's value.
    pub fn only_fields(mut self, fields: Vec<FieldSelector>) -> Self {
        self.fields = Some(fields.into());
        self
    }

    /// Applies a `[decrypt]` table's settings that shape the decryptor: its field restriction,
    /// its rate (a limiter of its own, burst 50, instead of the process-wide one) and its
    /// concurrency. (Mode and error policy are per call.)
    pub fn with_config(mut self, config: &crate::DecryptConfig) -> Self {
        if let Some(fields) = &config.fields {
            self = self.only_fields(fields.clone());
        }
        if let Some(rate) = config.rate_per_second {
            self = self.with_limiter(Arc::new(RateLimiter::new(rate, 50)));
        }
        if let Some(concurrency) = config.concurrency {
            self.policy.concurrency = concurrency;
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
    /// stay encrypted.
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
        Ok(Decrypted {
            text: into_text(bytes),
            report,
        })
    }

    /// Processes a region of a text stream in [`Mode::Text`]: `items` are what the scanner
    /// found in `text` (a [`fle_shared::stream::StreamScanner`] region's items), so text of
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

    async fn run(
        &self,
        doc: &[u8],
        mode: Mode,
        on_error: OnError,
        action: Action<'_>,
        items: Option<Vec<ScanItem<'_>>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Report), DocumentError> {
        let scanner = self.keyring.scanner();
        // 1. Sites whose decoded content contains a prefix (in text mode, each item the scanner
        // finds is a site of its own; the text between is copied as is), and 2. the envelopes
        // in them.
        let mut sites = Vec::new();
        let mut hits = Vec::new();
        let hit = |site, span, item: ScanItem<'_>| {
            let (key, what) = match item {
                ScanItem::Envelope(found) => (found.key, Ok(found.envelope)),
                ScanItem::Malformed(bad) => (bad.key, Err(bad.problem)),
            };
            Hit {
                site,
                span,
                key: self.keyring.get(key),
                what,
            }
        };
        match mode {
            Mode::Text => {
                let items = items.unwrap_or_else(|| scanner.scan(doc).collect());
                for item in items {
                    let span = item.span();
                    hits.push(hit(sites.len(), 0..span.len(), item));
                    sites.push(Site {
                        value: Cow::Borrowed(&doc[span.clone()]),
                        value_at: Some(span.start),
                        range: span,
                        kind: SiteKind::Text,
                        field: None,
                        allowed: self.fields.is_none(),
                    });
                }
            }
            // Nothing to decrypt: the document is returned as it is, unparsed.
            Mode::Json if !might_hold_prefix(scanner, doc) => {}
            Mode::Json | Mode::Form => {
                // Only the `&str` entry points reach here.
                let text = std::str::from_utf8(doc).map_err(|e| JsonError::Syntax {
                    what: "text that is not UTF-8",
                    offset: e.valid_up_to(),
                })?;
                sites = match mode {
                    Mode::Json => self.json_sites(text)?,
                    _ => self.form_sites(text)?,
                };
                for (s, site) in sites.iter().enumerate() {
                    hits.extend(
                        scanner
                            .scan(&site.value)
                            .map(|item| hit(s, item.span(), item)),
                    );
                }
            }
        }
        let target = match action {
            Action::Reencrypt(to) => Some(to.id()),
            Action::Decrypt | Action::Verify => None,
        };
        let wanted: Vec<(usize, (&KeyEntry, &Envelope))> = hits
            .iter()
            .enumerate()
            .filter(|(_, h)| sites[h.site].allowed)
            .filter_map(|(i, h)| Some((i, (h.key?, h.what.as_ref().ok()?))))
            .filter(|(_, (key, _))| Some(key.id()) != target)
            .collect();
        let items: Vec<_> = wanted.iter().map(|(_, item)| *item).collect();
        let results = decrypt_all(&*self.provider, &self.limiter, &self.policy, &items).await;
        let mut plain: Vec<Option<Result<Plaintext, ProviderError>>> = vec![None; hits.len()];
        for ((i, _), result) in wanted.into_iter().zip(results) {
            plain[i] = Some(result);
        }

        // 3. Render the sites and splice them in.
        let mut report = Report::default();
        for h in &hits {
            if let (Ok(_), Some(key)) = (&h.what, h.key) {
                report.envelopes += 1;
                *report.keys.entry(key.id().clone()).or_insert(0) += 1;
            }
        }
        let on_error = match action {
            Action::Verify => OnError::Leave,
            Action::Decrypt | Action::Reencrypt(_) => on_error,
        };
        let mut out = Zeroizing::new(Vec::with_capacity(match action {
            Action::Verify => 0,
            Action::Decrypt | Action::Reencrypt(_) => doc.len(),
        }));
        let mut last = 0;
        let mut hit = 0;
        for (s, site) in sites.iter().enumerate() {
            let end = hits[hit..]
                .iter()
                .position(|h| h.site != s)
                .map_or(hits.len(), |n| hit + n);
            let rendered = render(
                site,
                &hits[hit..end],
                &mut plain[hit..end],
                (on_error, action),
                &mut report,
            )?;
            hit = end;
            if matches!(action, Action::Verify) {
                continue;
            }
            out.extend_from_slice(&doc[last..site.range.start]);
            match rendered {
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => out.extend_from_slice(&doc[site.range.clone()]),
            }
            last = site.range.end;
        }
        if !matches!(action, Action::Verify) {
            out.extend_from_slice(&doc[last..]);
        }
        Ok((out, report))
    }

    fn json_sites<'d>(&self, doc: &'d str) -> Result<Vec<Site<'d>>, DocumentError> {
        let mut collect = JsonSites {
            scanner: self.keyring.scanner(),
            fields: self.fields.as_deref(),
            sites: Vec::new(),
        };
        // The walker copies what it does not rewrite; the copy itself is not needed.
        let mut copy = String::with_capacity(doc.len());
        json::walk(doc, &mut collect, &mut copy)?;
        Ok(collect.sites)
    }

    fn form_sites<'d>(&self, doc: &'d str) -> Result<Vec<Site<'d>>, DocumentError> {
        let scanner = self.keyring.scanner();
        let mut sites = Vec::new();
        for pair in form::pairs(doc) {
            let name = form::decode(pair.name, pair.offset)?;
            let field = String::from_utf8_lossy(&name).into_owned();
            if scanner.contains_prefix(&name) {
                sites.push(Site {
                    range: pair.offset..pair.offset + pair.name.len(),
                    value_at: matches!(name, Cow::Borrowed(_)).then_some(pair.offset),
                    value: name,
                    kind: SiteKind::Form,
                    field: Some(field.clone()),
                    allowed: self.fields.is_none(),
                });
            }
            let Some(raw) = pair.value else { continue };
            let at = pair.value_offset();
            let value = form::decode(raw, at)?;
            if scanner.contains_prefix(&value) {
                let path = [Seg::Key(Cow::Borrowed(field.as_str()))];
                sites.push(Site {
                    range: at..at + raw.len(),
                    value_at: matches!(value, Cow::Borrowed(_)).then_some(at),
                    value,
                    kind: SiteKind::Form,
                    allowed: self.allowed(&path),
                    field: Some(field),
                });
            }
        }
        Ok(sites)
    }

    fn allowed(&self, path: &[Seg<'_>]) -> bool {
        self.fields
            .as_deref()
            .is_none_or(|fields| fields.iter().any(|f| f.matches(path)))
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

/// What a call found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Well-formed envelopes found.
    pub envelopes: usize,
    /// Well-formed envelopes found, per key.
    pub keys: BTreeMap<KeyId, usize>,
    /// Envelopes decrypted: replaced by their plaintext ([`Action::Decrypt`]), by a new
    /// envelope ([`Action::Reencrypt`]), or found decryptable ([`Action::Verify`]).
    pub decrypted: usize,
    /// Envelopes already under the [`Action::Reencrypt`] target key, left as they are.
    pub kept: usize,
    /// Envelopes left, redacted, or refused, in document order.
    pub problems: Vec<Problem>,
}

/// One envelope that was not decrypted, and why. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte offset in the document: of the envelope itself, or of the JSON string or form part
    /// holding it when that is escaped or percent-encoded.
    pub offset: usize,
    /// The field's path (JSON) or name (form); `None` in text mode.
    pub field: Option<String>,
    /// The key the envelope's markers name.
    pub key: Option<KeyId>,
    /// What went wrong.
    pub kind: ProblemKind,
}

/// What went wrong with one envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A configured prefix that does not start a well-formed envelope.
    #[error(transparent)]
    Malformed(#[from] scan::Problem),
    /// The provider could not decrypt it.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The plaintext is not UTF-8 text, which a JSON string or text cannot hold.
    #[error("the plaintext is not UTF-8 text")]
    NotUtf8,
    /// A JSON value the edge encrypted from a non-string whose plaintext is not valid JSON, or
    /// that does not stand as a whole JSON string value where it could be restored.
    #[error("{0}")]
    JsonValue(&'static str),
    /// An envelope outside the fields decryption is restricted to: left encrypted.
    #[error("envelope outside the configured fields (marker injection): left encrypted")]
    MarkerInjection,
    /// The plaintext could not be encrypted to the re-encryption target key (longer than
    /// that key can carry).
    #[error("cannot re-encrypt: {0}")]
    Reencrypt(EncryptError),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "envelope at byte {}", self.offset)?;
        // A provider error names the key itself.
        let key = match self.kind {
            ProblemKind::Provider(_) => &None,
            _ => &self.key,
        };
        match (&self.field, key) {
            (Some(field), Some(key)) => write!(f, " (field {field}, key {key})")?,
            (Some(field), None) => write!(f, " (field {field})")?,
            (None, Some(key)) => write!(f, " (key {key})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for Problem {}

/// Why a document could not be decrypted. Never contains plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// Not valid JSON (JSON mode).
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Not valid form data (form mode).
    #[error(transparent)]
    Form(#[from] form::FormError),
    /// An envelope failed under [`OnError::Fail`].
    #[error(transparent)]
    Envelope(Box<Problem>),
}

/// A part of the document whose decoded content holds at least one prefix.
struct Site<'d> {
    /// Where it is in the document (a JSON string with its quotes, a form part, or all text).
    range: Range<usize>,
    /// Its decoded content.
    value: Cow<'d, [u8]>,
    kind: SiteKind,
    /// Where `value` stands in the document byte for byte, if it does (not escaped or
    /// percent-encoded).
    value_at: Option<usize>,
    /// The field's rendered path or name.
    field: Option<String>,
    /// Whether envelopes here may be decrypted.
    allowed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SiteKind {
    /// A JSON string value (`name: false`) or member name.
    Json {
        name: bool,
    },
    Form,
    Text,
}

struct Hit<'k> {
    site: usize,
    span: Range<usize>,
    key: Option<&'k KeyEntry>,
    what: Result<Envelope, scan::Problem>,
}

struct JsonSites<'a, 'd> {
    scanner: &'a fle_shared::Scanner,
    fields: Option<&'a [FieldSelector]>,
    sites: Vec<Site<'d>>,
}

impl<'d> Visitor for JsonSites<'_, 'd> {
    type Error = JsonError;

    fn string(
        &mut self,
        path: &[Seg<'_>],
        token: StringToken<'_>,
        _out: &mut String,
    ) -> Result<(), JsonError> {
        if !self.scanner.contains_prefix(token.value.as_bytes()) {
            return Ok(());
        }
        let allowed = match self.fields {
            None => true,
            Some(fields) => !token.is_name && fields.iter().any(|f| f.matches(path)),
        };
        let value_at = matches!(token.value, Cow::Borrowed(_)).then_some(token.offset + 1);
        self.sites.push(Site {
            range: token.offset..token.offset + token.raw.len(),
            value: Cow::Owned(token.value.into_owned().into_bytes()),
            kind: SiteKind::Json {
                name: token.is_name,
            },
            value_at,
            field: Some(render_path(path)),
            allowed,
        });
        Ok(())
    }
}

/// Validates without rewriting.
struct CheckOnly;

impl Visitor for CheckOnly {
    type Error = JsonError;
}

/// Whether a JSON document may hold a configured prefix: written out, or with some of its bytes
/// escaped (`\u00XX`, or `\/`), which only the full walk decodes. Prefixes are ASCII without
/// `"` or `\`, so these are the only ways to write them.
fn might_hold_prefix(scanner: &fle_shared::Scanner, doc: &[u8]) -> bool {
    if scanner.contains_prefix(doc) {
        return true;
    }
    let prefix_bytes = |b: u8| {
        scanner
            .keys()
            .iter()
            .any(|k| k.markers.prefix.as_bytes().contains(&b))
    };
    let escaped = memchr::memmem::find_iter(doc, b"\\u00").any(|at| {
        doc.get(at + 4..at + 6)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .is_some_and(prefix_bytes)
    });
    escaped || (prefix_bytes(b'/') && memchr::memmem::find(doc, b"\\/").is_some())
}

/// The new text of `site`, or `None` to keep it as it is.
fn render(
    site: &Site<'_>,
    hits: &[Hit<'_>],
    plain: &mut [Option<Result<Plaintext, ProviderError>>],
    (on_error, action): (OnError, Action<'_>),
    report: &mut Report,
) -> Result<Option<Zeroizing<String>>, DocumentError> {
    let problem = |hit: &Hit<'_>, kind| Problem {
        offset: site
            .value_at
            .map_or(site.range.start, |at| at + hit.span.start),
        field: site.field.clone(),
        key: hit.key.map(|k| k.id().clone()),
        kind,
    };
    // Content of the site after substitution, as bytes; and whether it became a JSON value.
    let mut content = Zeroizing::new(Vec::with_capacity(site.value.len()));
    let mut json_value = false;
    let mut changed = false;
    let mut last = 0;
    for (hit, result) in hits.iter().zip(plain.iter_mut()) {
        content.extend_from_slice(&site.value[last..hit.span.start]);
        last = hit.span.end;
        let original = &site.value[hit.span.clone()];
        let outcome = match (&hit.what, result.take()) {
            // Outside the allowed fields nothing is touched, malformed or not.
            _ if !site.allowed => Err(ProblemKind::MarkerInjection),
            (Err(bad), _) => Err(ProblemKind::Malformed(bad.clone())),
            (Ok(_), None) => match (action, hit.key) {
                (Action::Reencrypt(to), Some(key)) if key.id() == to.id() => {
                    // Already under the target key.
                    content.extend_from_slice(original);
                    report.kept += 1;
                    continue;
                }
                _ => Err(ProblemKind::MarkerInjection),
            },
            (Ok(_), Some(Err(e))) => Err(ProblemKind::Provider(e)),
            (Ok(_), Some(Ok(pt))) => match action {
                Action::Decrypt | Action::Verify => {
                    let whole = hit.span == (0..site.value.len());
                    placed(site.kind, whole, &pt).map(|is_value| (pt, is_value))
                }
                // The plaintext's bytes travel as they are, a JSON value's tag included.
                Action::Reencrypt(to) => {
                    let mut envelope = String::with_capacity(to.envelope_len());
                    let field = site.field.as_deref().unwrap_or("text");
                    match to.encrypt_into(field, pt.as_bytes(), &mut envelope) {
                        Ok(()) => Ok((Plaintext::from(envelope.into_bytes()), false)),
                        Err(e) => Err(ProblemKind::Reencrypt(e)),
                    }
                }
            },
        };
        match outcome {
            Ok((pt, is_value)) => {
                let bytes = pt.as_bytes();
                content.extend_from_slice(if is_value { &bytes[1..] } else { bytes });
                json_value |= is_value && matches!(site.kind, SiteKind::Json { .. });
                changed = true;
                report.decrypted += 1;
            }
            Err(ProblemKind::MarkerInjection) => {
                content.extend_from_slice(original);
                report
                    .problems
                    .push(problem(hit, ProblemKind::MarkerInjection));
            }
            Err(kind) => {
                let p = problem(hit, kind);
                match on_error {
                    OnError::Fail => return Err(DocumentError::Envelope(Box::new(p))),
                    OnError::Leave => content.extend_from_slice(original),
                    OnError::Redact => {
                        content.extend_from_slice(REDACTED.as_bytes());
                        changed = true;
                    }
                }
                report.problems.push(p);
            }
        }
    }
    if !changed || matches!(action, Action::Verify) {
        return Ok(None);
    }
    content.extend_from_slice(&site.value[last..]);
    let mut text = Zeroizing::new(String::with_capacity(content.len() + 2));
    match site.kind {
        SiteKind::Form => form::encode_into(&content, &mut text),
        SiteKind::Json { .. } | SiteKind::Text => {
            // Every piece is UTF-8: the site's own text, UTF-8-checked plaintext, REDACTED.
            let content = std::str::from_utf8(&content).map_err(|_| {
                DocumentError::Envelope(Box::new(Problem {
                    offset: site.range.start,
                    field: site.field.clone(),
                    key: None,
                    kind: ProblemKind::NotUtf8,
                }))
            })?;
            if json_value || !matches!(site.kind, SiteKind::Json { .. }) {
                text.push_str(content);
            } else {
                json::push_string(content, &mut text);
            }
        }
    }
    Ok(Some(text))
}

/// Whether `pt` can stand where the envelope stood, and whether it is a tagged JSON value to
/// be restored as such (its first byte then dropped).
fn placed(kind: SiteKind, whole: bool, pt: &Plaintext) -> Result<bool, ProblemKind> {
    let bytes = pt.as_bytes();
    if bytes.first() == Some(&JSON_VALUE_TAG) {
        let restorable = match kind {
            SiteKind::Json { name } => whole && !name,
            SiteKind::Text => true,
            SiteKind::Form => false,
        };
        if !restorable {
            return Err(ProblemKind::JsonValue(
                "a JSON value's envelope does not stand alone as a string value",
            ));
        }
        // The strict walker: one value, valid UTF-8, no lone surrogates.
        let valid = std::str::from_utf8(&bytes[1..])
            .is_ok_and(|text| json::walk(text, &mut CheckOnly, &mut String::new()).is_ok());
        if !valid {
            return Err(ProblemKind::JsonValue(
                "the plaintext of a JSON value's envelope is not valid JSON",
            ));
        }
        return Ok(true);
    }
    if kind != SiteKind::Form && std::str::from_utf8(bytes).is_err() {
        return Err(ProblemKind::NotUtf8);
    }
    Ok(false)
}
