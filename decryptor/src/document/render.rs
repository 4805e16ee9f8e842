//! Step 3 of the flow, rendering: each site written again, in document order, straight into
//! the output: plaintext re-escaped as a JSON string (or restored as the JSON value the edge
//! encrypted), percent-encoded in a form, or as it is in text; re-encrypted to another key;
//! redacted or left under the error policy, with each problem reported.

use std::ops::Range;

use fle_shared::body::json::{self, JsonError, Visitor};
use fle_shared::body::{form, JSON_VALUE_TAG};
use fle_shared::ScanItem;
use fle_shared::{KeyEntry, Plaintext};
use zeroize::Zeroizing;

use super::decrypt::Work;
use super::report::{DocumentError, Problem, ProblemKind};
use super::sites::{JsonPass, Phase, Rule, SiteInfo, SiteKind};
use super::{Action, Decryptor, Mode, OnError, REDACTED};

impl Decryptor {
    /// Renders every site, in document order, straight into the output.
    pub(super) fn render_sites(
        &self,
        work: &mut Work<'_>,
        mode: Mode,
        doc: &[u8],
        text: &str,
        items: Option<Vec<ScanItem<'_>>>,
    ) -> Result<Zeroizing<Vec<u8>>, DocumentError> {
        let text_rule = self.text_rule();
        let scanner = work.scanner;
        let out = match mode {
            Mode::Json => {
                let mut pass = JsonPass::new(self, work, Phase::Names);
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
                self.form_pass(text, work, Some(&mut out))?;
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
        Ok(out)
    }
}

/// Where a site is rendered.
pub(super) enum Sink<'o> {
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

impl Work<'_> {
    /// Renders `site` into `sink`, its candidates being `items` (spans relative to its value).
    /// Writes its raw text when nothing in it changes. With `dry`, only computes the content
    /// (for member-name checks): reports nothing, takes no result, and returns `Ok(false)`
    /// where the call would fail.
    ///
    /// Returns whether the site changed.
    pub(super) fn render<'i>(
        &mut self,
        site: &SiteInfo<'_>,
        items: impl Iterator<Item = ScanItem<'i>>,
        sink: &mut Sink<'_>,
        field: &dyn Fn() -> Option<String>,
    ) -> Result<bool, DocumentError> {
        self.render_inner(site, items, sink, field, false)
    }

    pub(super) fn render_inner<'i>(
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
            // A path-bound version-2 value stays bound to the same field when re-encrypted.
            let bound_to = match (&item, site.rule) {
                (ScanItem::Envelope(found), Rule::Whole(n)) => match &found.envelope {
                    fle_shared::Envelope::V2(token) if token.path_bound() => {
                        self.field_names.get(n).map(String::as_bytes)
                    }
                    _ => None,
                },
                _ => None,
            };
            let mut outcome = match (site.rule.refusal(&span, len), item, result) {
                (Some(refusal), ..) => Err(refusal.kind()),
                (None, ScanItem::Malformed(bad), _) => Err(ProblemKind::Malformed(bad.problem)),
                (None, ScanItem::Envelope(found), None) => match key {
                    Some(key) if self.is_target(key.id(), &found.envelope) => {
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
                        let mut envelope = String::with_capacity(to.envelope_len(pt.len()));
                        let name = field();
                        let name = name.as_deref().unwrap_or("text");
                        match to.encrypt_bound_in(
                            &mut self.sealing,
                            name,
                            pt.as_bytes(),
                            bound_to,
                            &mut envelope,
                        ) {
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

/// Validates without rewriting.
struct CheckOnly;

impl Visitor for CheckOnly {
    type Error = JsonError;
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
