//! Whole documents: find every envelope in a JSON, form or text body, decrypt them together
//! through the engine, and put each plaintext back encoded for where it stands.
//!
//! The work is done in three steps so that the slow part (one provider call per distinct
//! envelope) runs concurrently: collect the *sites* (the strings of a JSON document, the names
//! and values of a form, or the whole text) whose decoded content contains a configured prefix;
//! decrypt every envelope found in them with [`decrypt_all`]; render each site again (JSON
//! strings re-escaped, form parts percent-encoded) and splice it into the document.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use fle_shared::body::json::{self, JsonError, StringToken, Visitor};
use fle_shared::body::{form, render_path, FieldSelector, Seg, JSON_VALUE_TAG};
use fle_shared::scan::{self, ScanItem};
use fle_shared::{EncryptError, Envelope, KeyEncryptor, KeyEntry, KeyId, Keyring, Plaintext};
use zeroize::{Zeroize, Zeroizing};

use crate::budget::KmsBudget;
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
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("keys", &self.keyring.keys().len())
            .field("budget", &self.budget)
            .field("in_flight", &self.in_flight)
            .field("fields", &self.fields)
            .field("member_names", &self.member_names)
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
    /// whether member names are decrypted, and, when it sets `rate_per_second` or
    /// `concurrency`, a budget of its own ([`KmsBudget::from_config`]) instead of the current
    /// one. (Mode and error policy are per call.)
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

    /// The field restriction and member-name setting of a `[decrypt]` table.
    pub(crate) fn with_table(mut self, config: &crate::DecryptConfig) -> Self {
        if let Some(fields) = &config.fields {
            self = self.only_fields(fields.clone());
        }
        self.member_names = config.decrypt_member_names;
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
        trace_report(mode, doc.len(), &report);
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
        let mut work = Work {
            keyring: &self.keyring,
            scanner,
            target: match action {
                Action::Reencrypt(to) => Some(to.id()),
                Action::Decrypt | Action::Verify => None,
            },
            on_error,
            action,
            wanted: Vec::new(),
            stopped: false,
            names_wanted: false,
            results: Vec::new(),
            cursor: 0,
            report: Report::default(),
        };
        let text_rule = match self.fields {
            None => Rule::Open,
            Some(_) => Rule::Closed(Refusal::Injection),
        };

        // 1. Collect the envelopes to decrypt, scanning the sites (JSON strings, form names and
        // values, or the text itself) as they come: nothing is kept per site or per candidate.
        match mode {
            Mode::Json => {
                let mut pass = JsonPass::new(self, &mut work, Phase::Collect);
                json::walk(text, &mut pass, &mut String::new())?;
            }
            Mode::Form => self.form_pass(text, &mut work, None)?,
            Mode::Text => match &items {
                Some(items) => items.iter().for_each(|i| {
                    work.collect(text_rule, 0, i);
                }),
                None => scanner.scan(doc).for_each(|i| {
                    work.collect(text_rule, 0, &i);
                }),
            },
        }

        // 2. Decrypt them together.
        let wanted = std::mem::take(&mut work.wanted);
        let refs: Vec<(&KeyEntry, &Envelope)> = wanted.iter().map(|(k, e)| (*k, e)).collect();
        let in_flight = self.in_flight.unwrap_or(self.budget.concurrency());
        let results = decrypt_all(&*self.provider, &self.budget, in_flight, &refs).await;
        drop(refs);
        drop(wanted);
        work.results = results.into_iter().map(Some).collect();

        // 3. Render every site, in document order, straight into the output.
        let out = match mode {
            Mode::Json => {
                let mut pass = JsonPass::new(self, &mut work, Phase::Names);
                if pass.names_checked() {
                    json::walk(text, &mut pass, &mut String::new())?;
                    pass.restart(Phase::Collisions);
                    json::walk(text, &mut pass, &mut String::new())?;
                    pass.flag_collisions();
                }
                pass.restart(Phase::Render);
                let mut out = Zeroizing::new(String::with_capacity(doc.len()));
                json::walk(text, &mut pass, &mut out)?;
                into_bytes(out)
            }
            Mode::Form => {
                let mut out = Zeroizing::new(String::with_capacity(doc.len()));
                self.form_pass(text, &mut work, Some(&mut out))?;
                into_bytes(out)
            }
            Mode::Text => {
                let mut out = Zeroizing::new(Vec::with_capacity(doc.len()));
                let mut last = 0;
                let mut render = |item: ScanItem<'_>| {
                    let span = item.span();
                    out.extend_from_slice(&doc[last..span.start]);
                    last = span.end;
                    let site = SiteInfo {
                        value: &doc[span.clone()],
                        raw: &doc[span.clone()],
                        at: span.start,
                        value_at: Some(span.start),
                        kind: SiteKind::Text,
                        rule: text_rule,
                        collision: false,
                    };
                    work.render(
                        &site,
                        std::iter::once(rebase(item)),
                        &mut Sink::Plain(&mut out),
                        &|| None,
                    )
                    .map(drop)
                };
                match items {
                    Some(items) => items.into_iter().try_for_each(&mut render)?,
                    None => scanner.scan(doc).try_for_each(&mut render)?,
                }
                out.extend_from_slice(&doc[last..]);
                out
            }
        };
        let out = if verify {
            Zeroizing::new(Vec::new())
        } else {
            out
        };
        Ok((out, work.report))
    }

    /// Both passes over a form: collecting envelopes (`out` is `None`), or rendering into `out`.
    fn form_pass(
        &self,
        doc: &str,
        work: &mut Work<'_>,
        mut out: Option<&mut String>,
    ) -> Result<(), DocumentError> {
        let mut last = 0;
        for pair in form::pairs(doc) {
            let name = form::decode(pair.name, pair.offset)?;
            let field = String::from_utf8_lossy(&name);
            let name_rule = match self.fields {
                None => Rule::Open,
                Some(_) => Rule::Closed(Refusal::Injection),
            };
            let part = (pair.offset, pair.name, name_rule, &name);
            self.form_part(doc, part, &field, work, out.as_deref_mut(), &mut last)?;
            let Some(raw) = pair.value else { continue };
            let at = pair.value_offset();
            let value = form::decode(raw, at)?;
            let path = [Seg::Key(Cow::Borrowed(&*field))];
            let rule = match self.fields.as_deref() {
                None => Rule::Open,
                Some(fields) if fields.iter().any(|f| f.matches(&path)) => Rule::Whole,
                Some(_) => Rule::Closed(Refusal::Injection),
            };
            let part = (at, raw, rule, &value);
            self.form_part(doc, part, &field, work, out.as_deref_mut(), &mut last)?;
        }
        if let Some(out) = out {
            out.push_str(&doc[last..]);
        }
        Ok(())
    }

    /// One name or value of a form: at, raw text, rule, decoded.
    fn form_part(
        &self,
        doc: &str,
        (at, raw, rule, value): (usize, &str, Rule, &Cow<'_, [u8]>),
        field: &str,
        work: &mut Work<'_>,
        out: Option<&mut String>,
        last: &mut usize,
    ) -> Result<(), DocumentError> {
        let scanner = self.keyring.scanner();
        if !scanner.contains_prefix(value) {
            return Ok(());
        }
        let Some(out) = out else {
            let len = value.len();
            for item in scanner.scan(value) {
                work.collect(rule, len, &item);
            }
            return Ok(());
        };
        out.push_str(&doc[*last..at]);
        *last = at + raw.len();
        let site = SiteInfo {
            value,
            raw: raw.as_bytes(),
            at,
            value_at: matches!(value, Cow::Borrowed(_)).then_some(at),
            kind: SiteKind::Form,
            rule,
            collision: false,
        };
        let field = || Some(field.to_owned());
        work.render(&site, scanner.scan(value), &mut Sink::Form(out), &field)?;
        Ok(())
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
    /// Envelopes left, redacted, or refused, in document order: the first [`MAX_PROBLEMS`]
    /// of them ([`Report::problem_count`] counts them all).
    pub problems: Vec<Problem>,
    /// How many problems were found, including those beyond [`MAX_PROBLEMS`] that
    /// [`Report::problems`] does not keep.
    pub problem_count: usize,
}

/// Most problems a [`Report`] keeps: a document with a million bad candidates is reported by
/// its first problems and an exact count, so the report stays small whatever the document.
pub const MAX_PROBLEMS: usize = 100;

impl Report {
    /// Counts `problem`, and keeps it if fewer than [`MAX_PROBLEMS`] are kept.
    pub fn add_problem(&mut self, problem: Problem) {
        self.note(|| problem);
    }

    /// Adds `other`'s counts and problems to these, its problem offsets moved by `offset`
    /// (for front ends that process a document in parts).
    pub fn merge(&mut self, other: Report, offset: usize) {
        self.envelopes += other.envelopes;
        self.decrypted += other.decrypted;
        self.kept += other.kept;
        for (key, n) in other.keys {
            *self.keys.entry(key).or_insert(0) += n;
        }
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems
            .extend(other.problems.into_iter().take(room).map(|mut p| {
                p.offset += offset;
                p
            }));
        self.problem_count += other.problem_count;
    }

    /// Counts a problem, building it only if it is kept.
    fn note(&mut self, problem: impl FnOnce() -> Problem) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem());
        }
    }
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
    /// An envelope outside the fields decryption is restricted to, or (with a field
    /// restriction) not the whole value of an allowed field: left encrypted, whatever the error
    /// policy.
    #[error("envelope outside the configured fields or not a whole field value (marker injection): left encrypted")]
    MarkerInjection,
    /// An envelope in a JSON member name, which is decrypted only with
    /// [`Decryptor::decrypt_member_names`]: left encrypted, whatever the error policy.
    #[error("envelope in a JSON member name (member names are decrypted only when asked for): left encrypted")]
    MemberName,
    /// Decrypting member names would give one object two members of the same name: that
    /// object's member names are left encrypted.
    #[error(
        "decrypting member names would duplicate a member of the object: names left encrypted"
    )]
    DuplicateMember,
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

/// Which envelopes of a site may be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Every one.
    Open,
    /// Only one that is the whole decoded value (the field restriction); any other is marker
    /// injection.
    Whole,
    /// None: each is left as it is and reported this way, whatever the error policy.
    Closed(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Injection,
    MemberName,
}

impl Rule {
    /// Why the candidate at `span` of a site `len` bytes long may not be decrypted, if so.
    fn refusal(self, span: &Range<usize>, len: usize) -> Option<Refusal> {
        match self {
            Rule::Open => None,
            Rule::Whole if span.start == 0 && span.end == len => None,
            Rule::Whole => Some(Refusal::Injection),
            Rule::Closed(refusal) => Some(refusal),
        }
    }
}

impl Refusal {
    fn kind(self) -> ProblemKind {
        match self {
            Refusal::Injection => ProblemKind::MarkerInjection,
            Refusal::MemberName => ProblemKind::MemberName,
        }
    }
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

/// A part of the document whose decoded content holds at least one prefix, while it is
/// rendered. Borrowed from the pass that found it; never stored.
struct SiteInfo<'s> {
    /// Its decoded content.
    value: &'s [u8],
    /// Its text in the document (a JSON string with its quotes, a form part, a text item).
    raw: &'s [u8],
    /// Where `raw` starts in the document.
    at: usize,
    /// Where `value` stands in the document byte for byte, if it does (not escaped or
    /// percent-encoded).
    value_at: Option<usize>,
    kind: SiteKind,
    rule: Rule,
    /// A member name whose decryption would duplicate a member of its object: what would be
    /// decrypted is reported instead.
    collision: bool,
}

/// Where a site is rendered.
enum Sink<'o> {
    /// JSON text: content is escaped, a string is quoted.
    Json(&'o mut String),
    /// Form text: content is percent-encoded.
    Form(&'o mut String),
    /// Bytes as they are (text mode; a member name's decoded value while checking names).
    Plain(&'o mut Vec<u8>),
}

impl Sink<'_> {
    fn len(&self) -> usize {
        match self {
            Sink::Json(s) | Sink::Form(s) => s.len(),
            Sink::Plain(v) => v.len(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Sink::Json(s) | Sink::Form(s) => s.truncate(len),
            Sink::Plain(v) => v.truncate(len),
        }
    }

    /// Decoded content, encoded for where it goes.
    fn content(&mut self, bytes: &[u8], site: &SiteInfo<'_>) -> Result<(), DocumentError> {
        match self {
            Sink::Json(s) => push_json_escaped(utf8(bytes, site)?, s),
            Sink::Form(s) => form::encode_into(bytes, s),
            Sink::Plain(v) => v.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Text as it is (a site's raw text, a restored JSON value, a quote).
    fn verbatim(&mut self, bytes: &[u8], site: &SiteInfo<'_>) -> Result<(), DocumentError> {
        match self {
            Sink::Json(s) | Sink::Form(s) => s.push_str(utf8(bytes, site)?),
            Sink::Plain(v) => v.extend_from_slice(bytes),
        }
        Ok(())
    }
}

/// Every piece written to a text sink is UTF-8 (the document's own text, UTF-8-checked
/// plaintext, [`REDACTED`], envelopes). Never panic on it all the same.
fn utf8<'b>(bytes: &'b [u8], site: &SiteInfo<'_>) -> Result<&'b str, DocumentError> {
    std::str::from_utf8(bytes).map_err(|_| {
        DocumentError::Envelope(Box::new(Problem {
            offset: site.at,
            field: None,
            key: None,
            kind: ProblemKind::NotUtf8,
        }))
    })
}

/// Appends `text` escaped as the inside of a JSON string, as [`json::push_string`] (serde_json)
/// escapes it: `"`, `\` and control characters; everything else as is.
fn push_json_escaped(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        start = i + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&text[start..]);
}

/// A text item as a site of its own: its span made relative to itself.
fn rebase(mut item: ScanItem<'_>) -> ScanItem<'_> {
    let span = match &mut item {
        ScanItem::Envelope(found) => &mut found.span,
        ScanItem::Malformed(bad) => &mut bad.span,
    };
    *span = 0..span.len();
    item
}

/// Output built from UTF-8 text; moved, never copied.
fn into_bytes(mut text: Zeroizing<String>) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(std::mem::take(&mut *text).into_bytes())
}

/// The state of one call across its passes. The passes see the same sites and candidates in
/// the same order, so results are matched to envelopes by counting, and nothing is kept per
/// site or per candidate: memory stays a small multiple of the document whatever it holds.
struct Work<'a> {
    keyring: &'a Keyring,
    scanner: &'a fle_shared::Scanner,
    /// The re-encryption target, whose envelopes are kept as they are.
    target: Option<&'a KeyId>,
    on_error: OnError,
    action: Action<'a>,
    /// Envelopes to decrypt, in document order.
    wanted: Vec<(&'a KeyEntry, Envelope)>,
    /// Under [`OnError::Fail`], a candidate that fails the call was found: nothing after it is
    /// needed.
    stopped: bool,
    /// A member name holds an envelope to decrypt.
    names_wanted: bool,
    /// Their results, taken as rendering reaches them.
    results: Vec<Option<Result<Plaintext, ProviderError>>>,
    /// The next result.
    cursor: usize,
    report: Report,
}

impl<'a> Work<'a> {
    /// Whether `item` (of a site `len` bytes long under `rule`) is an envelope to decrypt:
    /// every pass asks this of the same candidates.
    fn wants(&self, rule: Rule, len: usize, item: &ScanItem<'_>) -> Option<&'a KeyEntry> {
        let ScanItem::Envelope(found) = item else {
            return None;
        };
        if rule.refusal(&found.span, len).is_some() {
            return None;
        }
        let keyring: &'a Keyring = self.keyring;
        keyring
            .get(found.key)
            .filter(|key| Some(key.id()) != self.target)
    }

    /// The collecting pass: notes `item` if it is to be decrypted. `len` is that of its site
    /// (unused for text items, which are sites of their own).
    fn collect(&mut self, rule: Rule, len: usize, item: &ScanItem<'_>) -> bool {
        if self.stopped {
            return false;
        }
        if let ScanItem::Malformed(bad) = item {
            // The first problem fails the call: later envelopes need no provider call.
            if self.on_error == OnError::Fail && rule.refusal(&bad.span, len).is_none() {
                self.stopped = true;
            }
            return false;
        }
        match (self.wants(rule, len, item), item) {
            (Some(key), ScanItem::Envelope(found)) => {
                self.wanted.push((key, found.envelope.clone()));
                true
            }
            _ => false,
        }
    }

    /// The result for the next wanted envelope: taken, or (`peek`) a copy.
    fn next_result(&mut self, peek: bool) -> Option<Result<Plaintext, ProviderError>> {
        let slot = self.results.get_mut(self.cursor);
        self.cursor += 1;
        let slot = slot?;
        if peek {
            slot.clone()
        } else {
            slot.take()
        }
    }

    /// Renders `site` into `sink`, its candidates being `items` (spans relative to its value).
    /// Writes its raw text when nothing in it changes. With `dry`, only computes the content
    /// (for member-name checks): reports nothing, takes no result, and returns `Ok(false)`
    /// where the call would fail.
    ///
    /// Returns whether the site changed.
    fn render<'i>(
        &mut self,
        site: &SiteInfo<'_>,
        items: impl Iterator<Item = ScanItem<'i>>,
        sink: &mut Sink<'_>,
        field: &dyn Fn() -> Option<String>,
    ) -> Result<bool, DocumentError> {
        self.render_inner(site, items, sink, field, false)
    }

    fn render_inner<'i>(
        &mut self,
        site: &SiteInfo<'_>,
        items: impl Iterator<Item = ScanItem<'i>>,
        sink: &mut Sink<'_>,
        field: &dyn Fn() -> Option<String>,
        dry: bool,
    ) -> Result<bool, DocumentError> {
        let problem = |span: &Range<usize>, key: Option<&KeyEntry>, kind| Problem {
            offset: site.value_at.map_or(site.at, |at| at + span.start),
            field: field(),
            key: key.map(|k| k.id().clone()),
            kind,
        };
        let is_json = matches!(site.kind, SiteKind::Json { .. });
        let is_name = site.kind == SiteKind::Json { name: true };
        let len = site.value.len();
        let mark = sink.len();
        if is_json && !dry {
            sink.verbatim(b"\"", site)?;
        }
        let mut changed = false;
        let mut json_value = false;
        let mut last = 0;
        for item in items {
            let span = item.span();
            sink.content(&site.value[last..span.start], site)?;
            last = span.end;
            let original = &site.value[span.clone()];
            let key = match &item {
                ScanItem::Envelope(found) => self.keyring.get(found.key),
                ScanItem::Malformed(bad) => self.keyring.get(bad.key),
            };
            if let (ScanItem::Envelope(_), Some(key), false) = (&item, key, dry) {
                self.report.envelopes += 1;
                *self.report.keys.entry(key.id().clone()).or_insert(0) += 1;
            }
            let result = match self.wants(site.rule, len, &item) {
                Some(_) => self.next_result(dry),
                None => None,
            };
            let mut outcome = match (site.rule.refusal(&span, len), item, result) {
                (Some(refusal), ..) => Err(refusal.kind()),
                (None, ScanItem::Malformed(bad), _) => Err(ProblemKind::Malformed(bad.problem)),
                (None, ScanItem::Envelope(_), None) => match (self.target, key) {
                    (Some(target), Some(key)) if key.id() == target => {
                        // Already under the target key.
                        sink.content(original, site)?;
                        if !dry {
                            self.report.kept += 1;
                        }
                        continue;
                    }
                    _ => Err(ProblemKind::MarkerInjection),
                },
                (None, ScanItem::Envelope(_), Some(Err(e))) => Err(ProblemKind::Provider(e)),
                (None, ScanItem::Envelope(_), Some(Ok(pt))) => match self.action {
                    Action::Decrypt | Action::Verify => {
                        placed(site.kind, span == (0..len), &pt).map(|is_value| (pt, is_value))
                    }
                    // The plaintext's bytes travel as they are, a JSON value's tag included.
                    Action::Reencrypt(to) => {
                        let mut envelope = String::with_capacity(to.envelope_len());
                        let name = field();
                        let name = name.as_deref().unwrap_or("text");
                        match to.encrypt_into(name, pt.as_bytes(), &mut envelope) {
                            Ok(()) => Ok((Plaintext::from(envelope.into_bytes()), false)),
                            Err(e) => Err(ProblemKind::Reencrypt(e)),
                        }
                    }
                },
            };
            if site.collision && outcome.is_ok() {
                outcome = Err(ProblemKind::DuplicateMember);
            }
            match outcome {
                Ok((pt, is_value)) => {
                    let bytes = pt.as_bytes();
                    if is_value && is_json {
                        // The whole string becomes the value.
                        sink.truncate(mark);
                        sink.verbatim(&bytes[1..], site)?;
                        json_value = true;
                    } else {
                        sink.content(if is_value { &bytes[1..] } else { bytes }, site)?;
                    }
                    changed = true;
                    if !dry {
                        self.report.decrypted += 1;
                    }
                }
                Err(kind) => {
                    // Refused envelopes are left as they are whatever the policy.
                    let refused =
                        matches!(kind, ProblemKind::MarkerInjection | ProblemKind::MemberName);
                    if !refused && self.on_error == OnError::Fail {
                        if dry {
                            return Ok(false);
                        }
                        return Err(DocumentError::Envelope(Box::new(problem(&span, key, kind))));
                    }
                    // A member name is never redacted: two redacted names could collide.
                    if !refused && self.on_error == OnError::Redact && !is_name {
                        sink.content(REDACTED.as_bytes(), site)?;
                        changed = true;
                    } else {
                        sink.content(original, site)?;
                    }
                    if !dry {
                        self.report.note(|| problem(&span, key, kind));
                    }
                }
            }
        }
        if json_value {
            return Ok(true);
        }
        if !changed {
            sink.truncate(mark);
            if !dry {
                sink.verbatim(site.raw, site)?;
            }
            return Ok(false);
        }
        sink.content(&site.value[last..], site)?;
        if is_json && !dry {
            sink.verbatim(b"\"", site)?;
        }
        Ok(true)
    }
}

/// What a walk over a JSON document does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collect the envelopes to decrypt.
    Collect,
    /// Compute the decrypted member names, per object.
    Names,
    /// Count, per object, the members whose name equals a decrypted one.
    Collisions,
    /// Write the document.
    Render,
}

/// The visitor of every walk over a JSON document.
struct JsonPass<'p, 'a> {
    decryptor: &'p Decryptor,
    work: &'p mut Work<'a>,
    phase: Phase,
    /// Per depth, the ordinal of the value being walked there (objects are told apart by it).
    values: Vec<u64>,
    next_value: u64,
    /// Offsets of the member names decryption changes, in document order.
    renamed: Vec<usize>,
    /// Per object with renamed members: each new name, and how many members have it.
    new_names: HashMap<u64, HashMap<Vec<u8>, u32>>,
    /// Objects in which decrypting names would duplicate a member.
    colliding: HashSet<u64>,
}

impl<'p, 'a> JsonPass<'p, 'a> {
    fn new(decryptor: &'p Decryptor, work: &'p mut Work<'a>, phase: Phase) -> Self {
        JsonPass {
            decryptor,
            work,
            phase,
            values: Vec::new(),
            next_value: 0,
            renamed: Vec::new(),
            new_names: HashMap::new(),
            colliding: HashSet::new(),
        }
    }

    /// Starts another walk: values are numbered and results taken from the start again, so
    /// that objects and envelopes are told apart the same way in every walk.
    fn restart(&mut self, phase: Phase) {
        self.phase = phase;
        self.values.clear();
        self.next_value = 0;
        self.work.cursor = 0;
    }

    /// Whether member names are decrypted in this document, so that collisions need checking.
    fn names_checked(&self) -> bool {
        self.decryptor.member_names && self.decryptor.fields.is_none() && self.work.names_wanted
    }

    fn flag_collisions(&mut self) {
        for (object, names) in self.new_names.drain() {
            for (mut name, n) in names {
                if n > 1 {
                    self.colliding.insert(object);
                }
                // Decrypted text.
                name.zeroize();
            }
        }
    }

    fn rule(&self, path: &[Seg<'_>], is_name: bool) -> Rule {
        match (self.decryptor.fields.as_deref(), is_name) {
            (None, false) => Rule::Open,
            (None, true) if self.decryptor.member_names => Rule::Open,
            (None, true) => Rule::Closed(Refusal::MemberName),
            // A member name is in no field.
            (Some(_), true) => Rule::Closed(Refusal::Injection),
            (Some(fields), false) if fields.iter().any(|f| f.matches(path)) => Rule::Whole,
            (Some(_), false) => Rule::Closed(Refusal::Injection),
        }
    }
}

impl Visitor for JsonPass<'_, '_> {
    type Error = DocumentError;

    fn selects(&mut self, path: &[Seg<'_>]) -> bool {
        // Called before every value: number them, so that an object's names can be grouped.
        self.values.truncate(path.len());
        self.values.push(self.next_value);
        self.next_value += 1;
        false
    }

    fn string(
        &mut self,
        path: &[Seg<'_>],
        token: StringToken<'_>,
        out: &mut String,
    ) -> Result<(), DocumentError> {
        let object = self.values.get(path.len()).copied().unwrap_or(0);
        if self.phase != Phase::Render {
            // The walker's copy is not needed.
            out.clear();
        }
        let value = token.value.as_bytes();
        if self.phase == Phase::Collisions {
            if token.is_name && self.renamed.binary_search(&token.offset).is_err() {
                if let Some(n) = self
                    .new_names
                    .get_mut(&object)
                    .and_then(|names| names.get_mut(value))
                {
                    *n += 1;
                }
            }
            return Ok(());
        }
        let scanner = self.work.scanner;
        if !scanner.contains_prefix(value) {
            if self.phase == Phase::Render {
                out.push_str(token.raw);
            }
            return Ok(());
        }
        let rule = self.rule(path, token.is_name);
        let len = value.len();
        if self.phase == Phase::Collect {
            for item in scanner.scan(value) {
                let wanted = self.work.collect(rule, len, &item);
                self.work.names_wanted |= wanted && token.is_name;
            }
            return Ok(());
        }
        let site = SiteInfo {
            value,
            raw: token.raw.as_bytes(),
            at: token.offset,
            value_at: matches!(token.value, Cow::Borrowed(_)).then_some(token.offset + 1),
            kind: SiteKind::Json {
                name: token.is_name,
            },
            rule,
            collision: token.is_name && self.colliding.contains(&object),
        };
        let field = || Some(render_path(path));
        if self.phase == Phase::Names {
            let mut name = Zeroizing::new(Vec::new());
            if !token.is_name {
                // Only to keep the count of results.
                for item in scanner.scan(value) {
                    if self.work.wants(rule, len, &item).is_some() {
                        self.work.cursor += 1;
                    }
                }
            } else if self.work.render_inner(
                &site,
                scanner.scan(value),
                &mut Sink::Plain(&mut name),
                &field,
                true,
            )? {
                self.renamed.push(token.offset);
                *self
                    .new_names
                    .entry(object)
                    .or_default()
                    .entry(std::mem::take(&mut *name))
                    .or_insert(0) += 1;
            }
            return Ok(());
        }
        self.work
            .render(&site, scanner.scan(value), &mut Sink::Json(out), &field)?;
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

/// One trace event per document or region: counts, never content.
fn trace_report(mode: Mode, bytes: usize, report: &Report) {
    tracing::trace!(
        ?mode,
        bytes,
        envelopes = report.envelopes,
        decrypted = report.decrypted,
        kept = report.kept,
        problems = report.problems.len(),
        "document processed"
    );
}
