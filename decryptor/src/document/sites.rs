//! Step 1 of the flow, finding the sites: the parts of a document whose decoded content holds
//! a configured prefix (the strings of a JSON document, the names and values of a form, or the
//! whole text), and which envelopes in each may be decrypted ([`Rule`]: the field restriction
//! and member names).
//!
//! The walks over a document live here: every step walks the same sites in the same order
//! (the collecting pass here, the member-name checks and the rendering pass in
//! [`render`](super::render)), so results are matched to envelopes by counting.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use fle_shared::body::json::{self, StringToken, Visitor};
use fle_shared::body::{form, render_path, Seg};
use fle_shared::ScanItem;
use zeroize::{Zeroize, Zeroizing};

use super::decrypt::Work;
use super::render::Sink;
use super::report::{DocumentError, ProblemKind};
use super::{Decryptor, Mode};

impl Decryptor {
    /// Collects the envelopes to decrypt, scanning the sites (JSON strings, form names and
    /// values, or the text itself) as they come: nothing is kept per site or per candidate.
    pub(super) fn find_sites(
        &self,
        work: &mut Work<'_>,
        mode: Mode,
        doc: &[u8],
        text: &str,
        items: Option<&[ScanItem<'_>]>,
    ) -> Result<(), DocumentError> {
        let text_rule = self.text_rule();
        match mode {
            Mode::Json => {
                let mut pass = JsonPass::new(self, work, Phase::Collect);
                json::walk(text, &mut pass, &mut String::new())?;
            }
            Mode::Form => self.form_pass(text, work, None)?,
            Mode::Text => match items {
                Some(items) => items.iter().for_each(|i| {
                    work.collect(text_rule, 0, i);
                }),
                None => work.scanner.scan(doc).for_each(|i| {
                    work.collect(text_rule, 0, &i);
                }),
            },
        }
        Ok(())
    }

    /// The rule of text mode, which has no fields.
    pub(super) fn text_rule(&self) -> Rule {
        match self.fields {
            None => Rule::Open,
            Some(_) => Rule::Closed(Refusal::Injection),
        }
    }

    /// Both passes over a form: collecting envelopes (`out` is `None`), or rendering into `out`.
    pub(super) fn form_pass(
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
                Some(fields) => match fields.iter().position(|f| f.matches(&path)) {
                    Some(n) => Rule::Whole(n),
                    None => Rule::Closed(Refusal::Injection),
                },
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

/// Which envelopes of a site may be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// Every one.
    Open,
    /// Only one that is the whole decoded value (the field restriction); any other is marker
    /// injection. Carries the first selected field's number (its name opens path-bound
    /// version-2 envelopes).
    Whole(usize),
    /// None: each is left as it is and reported this way, whatever the error policy.
    Closed(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    Injection,
    MemberName,
}

impl Rule {
    /// Why the candidate at `span` of a site `len` bytes long may not be decrypted, if so.
    pub(super) fn refusal(self, span: &Range<usize>, len: usize) -> Option<Refusal> {
        match self {
            Rule::Open => None,
            Rule::Whole(_) if span.start == 0 && span.end == len => None,
            Rule::Whole(_) => Some(Refusal::Injection),
            Rule::Closed(refusal) => Some(refusal),
        }
    }
}

impl Refusal {
    pub(super) fn kind(self) -> ProblemKind {
        match self {
            Refusal::Injection => ProblemKind::MarkerInjection,
            Refusal::MemberName => ProblemKind::MemberName,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SiteKind {
    /// A JSON string value (`name: false`) or member name.
    Json {
        name: bool,
    },
    Form,
    Text,
}

/// A part of the document whose decoded content holds at least one prefix, while it is
/// rendered. Borrowed from the pass that found it; never stored.
pub(super) struct SiteInfo<'s> {
    /// Its decoded content.
    pub(super) value: &'s [u8],
    /// Its text in the document (a JSON string with its quotes, a form part, a text item).
    pub(super) raw: &'s [u8],
    /// Where `raw` starts in the document.
    pub(super) at: usize,
    /// Where `value` stands in the document byte for byte, if it does (not escaped or
    /// percent-encoded).
    pub(super) value_at: Option<usize>,
    pub(super) kind: SiteKind,
    pub(super) rule: Rule,
    /// A member name whose decryption would duplicate a member of its object: what would be
    /// decrypted is reported instead.
    pub(super) collision: bool,
}

/// What a walk over a JSON document does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct JsonPass<'p, 'a> {
    pub(super) decryptor: &'p Decryptor,
    pub(super) work: &'p mut Work<'a>,
    pub(super) phase: Phase,
    /// Per depth, the ordinal of the value being walked there (objects are told apart by it).
    pub(super) values: Vec<u64>,
    pub(super) next_value: u64,
    /// Offsets of the member names decryption changes, in document order.
    pub(super) renamed: Vec<usize>,
    /// Per object with renamed members: each new name, and how many members have it.
    pub(super) new_names: HashMap<u64, HashMap<Vec<u8>, u32>>,
    /// Objects in which decrypting names would duplicate a member.
    pub(super) colliding: HashSet<u64>,
}

impl<'p, 'a> JsonPass<'p, 'a> {
    pub(super) fn new(decryptor: &'p Decryptor, work: &'p mut Work<'a>, phase: Phase) -> Self {
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
    pub(super) fn restart(&mut self, phase: Phase) {
        self.phase = phase;
        self.values.clear();
        self.next_value = 0;
        self.work.cursor = 0;
    }

    /// Whether member names are decrypted in this document, so that collisions need checking.
    pub(super) fn names_checked(&self) -> bool {
        self.decryptor.member_names && self.decryptor.fields.is_none() && self.work.names_wanted
    }

    pub(super) fn flag_collisions(&mut self) {
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
            (Some(fields), false) => match fields.iter().position(|f| f.matches(path)) {
                Some(n) => Rule::Whole(n),
                None => Rule::Closed(Refusal::Injection),
            },
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

/// Whether a JSON document may hold a configured prefix: written out, or with some of its bytes
/// escaped (`\u00XX`, or `\/`), which only the full walk decodes. Prefixes are ASCII without
/// `"` or `\`, so these are the only ways to write them.
pub(super) fn might_hold_prefix(scanner: &fle_shared::Scanner, doc: &[u8]) -> bool {
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
