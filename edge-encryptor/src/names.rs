//! Field names as origins read them.
//!
//! Origins are more lenient than an exact string comparison: Go's `encoding/json` and ASP.NET
//! Core match JSON member names case-insensitively (Go with Unicode simple case folding, so `ſ`
//! reads as `s` and the Kelvin sign `K` as `k`); PHP, Rails and Express `qs` read the form field
//! `user[ssn]` as `ssn` inside `user`, and `ssn[]` as an array named `ssn`; PHP turns `.` and
//! spaces in names into `_` and drops leading spaces; `qs` with `allowDots` reads `user.ssn` as a
//! path. This module knows those readings.
//!
//! The edge uses the *widest* reading to find every name an origin could take for a configured
//! field, and the configured [`NameMatching`] mode to decide which of them it encrypts; a name
//! in the first set but not the second is refused, so no reading of the request carries a
//! configured field in clear.

use std::borrow::Cow;

use serde::Deserialize;

use fle_shared::body::{FieldSelector, PathStep, Seg};

/// Which names in a body (and query string) count as a configured field and are encrypted.
///
/// Whatever the mode, a name that some origin would read as a configured field but that the
/// mode does not select is refused with 400 `ambiguous_field_name`: nothing an origin reads as
/// a configured field is forwarded in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NameMatching {
    /// Only the exact configured name is encrypted; `SSN`, `ſsn`, `user[ssn]` are refused. The
    /// default: clients that send the documented names are unaffected, everything else is
    /// refused rather than guessed at.
    #[default]
    Exact,
    /// Names equal under Unicode simple case folding (`SSN`, `Ssn`, `ſsn`) are encrypted as the
    /// configured field; form names with brackets or PHP mangling are still refused.
    CaseInsensitive,
    /// Every name an origin could read as the configured field is encrypted: case folding, plus
    /// for form data and query strings the bracket notation (`user[ssn]`, `ssn[]`, `ssn[0]`),
    /// dotted paths (`user.ssn`) and PHP's name mangling (`first.name`, `first name`,
    /// ` first_name` → `first_name`).
    Origin,
}

/// Unicode simple case folding of one character, widened: a character whose uppercase is a
/// single character folds to that character's lowercase (so `ſ` → `s`, `K` (U+212A) → `k`,
/// `ı` → `i`); otherwise to its lowercase when that is a single character.
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut upper = c.to_uppercase();
    let base = match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    };
    let mut lower = base.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Whether `a` and `b` are equal under [`fold_char`], without allocating.
pub(crate) fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    let mut x = a.chars().map(fold_char);
    let mut y = b.chars().map(fold_char);
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => {}
            _ => return false,
        }
    }
}

/// How a selector compares one path against its steps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Exact,
    Folded,
}

impl Compare {
    fn eq(self, a: &str, b: &str) -> bool {
        match self {
            Compare::Exact => a == b,
            Compare::Folded => fold_eq(a, b),
        }
    }
}

/// Whether `selector` selects the JSON value at `path` under `compare` (a name at the last
/// step, a path step for step).
fn json_matches(selector: &FieldSelector, path: &[Seg<'_>], compare: Compare) -> bool {
    match selector {
        FieldSelector::Name(name) => {
            matches!(path.last(), Some(Seg::Key(k)) if compare.eq(k, name))
        }
        FieldSelector::Path(steps) => {
            steps.len() == path.len()
                && steps
                    .iter()
                    .zip(path)
                    .all(|(step, seg)| step_matches(step, seg, compare))
        }
    }
}

fn step_matches(step: &PathStep, seg: &Seg<'_>, compare: Compare) -> bool {
    match (step, seg) {
        (PathStep::Member(m), Seg::Key(k)) => compare.eq(k, m),
        (PathStep::AnyMember, Seg::Key(_)) => true,
        (PathStep::Index(i), Seg::Index(j)) => i == j,
        (PathStep::AnyIndex, Seg::Index(_)) => true,
        _ => false,
    }
}

/// What a JSON value's path means to the configured fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Rule `n` selects it: encrypt.
    Select(usize),
    /// Some origin reads it as a configured field, but the mode does not select it: refuse.
    Ambiguous,
    /// Not a configured field under any reading.
    None,
}

/// Classifies the JSON value at `path` against the selectors.
pub(crate) fn classify_json<'s>(
    selectors: impl Iterator<Item = &'s FieldSelector> + Clone,
    mode: NameMatching,
    path: &[Seg<'_>],
) -> Verdict {
    // JSON origins fold case; none of them reads brackets or dots in member names.
    let compare = match mode {
        NameMatching::Exact => Compare::Exact,
        NameMatching::CaseInsensitive | NameMatching::Origin => Compare::Folded,
    };
    if let Some(n) = selectors
        .clone()
        .position(|s| json_matches(s, path, compare))
    {
        return Verdict::Select(n);
    }
    if compare == Compare::Exact
        && selectors
            .into_iter()
            .any(|s| json_matches(s, path, Compare::Folded))
    {
        return Verdict::Ambiguous;
    }
    Verdict::None
}

/// Characters that split a form name into steps for one parser or another: `.` (`qs` with
/// `allowDots`), brackets (PHP, Rack, `qs`; Rack 2 also drops leading brackets and trailing `]`,
/// so `]ssn`, `[ssn` and `ssn]]` are `ssn`), `'` (Spring map keys `user['ssn']`), `!` (Spring's
/// field-default prefix `!ssn`), and NUL (PHP cuts names at it: `ssn\0x` is `ssn`).
const NAME_SEPARATORS: [char; 6] = ['.', '[', ']', '\'', '!', '\0'];

/// The paths origins read a form field (or query parameter) name as: the name itself; PHP's
/// reading (leading spaces dropped, `.`, space and an unclosed `[` in the base turned into `_`,
/// then one step per `[...]`, an empty `[]` being an array index); and the split reading: the
/// name cut at every [`NAME_SEPARATORS`] character, each piece trimmed of spaces and quotes
/// (`a.b[c]`, `]ssn`, `.ssn`, `!ssn`, `user["ssn"]`, `ssn\0x`), which covers `qs`'s dotted
/// reading, Rack 2's and Spring's, and PHP's NUL cut. A name selector matches a reading if any
/// of its steps is the name, so the split reading errs on the side of refusing.
pub(crate) fn form_readings(name: &str) -> Vec<Vec<Seg<'_>>> {
    let mut readings: Vec<Vec<Seg<'_>>> = vec![vec![Seg::Key(Cow::Borrowed(name))]];
    let trimmed = name.trim();
    if trimmed != name {
        readings.push(vec![Seg::Key(Cow::Borrowed(trimmed))]);
    }
    readings.push(php_reading(name));
    let split: Vec<Seg<'_>> = name
        .split(NAME_SEPARATORS)
        .map(|p| p.trim().trim_matches(['"', '\'']).trim())
        .filter(|p| !p.is_empty())
        .map(|p| Seg::Key(Cow::Borrowed(p)))
        .collect();
    if !matches!(split.as_slice(), [Seg::Key(k)] if k == name) {
        readings.push(split);
    }
    readings
}

/// PHP's `php_register_variable` reading of a form name.
fn php_reading(name: &str) -> Vec<Seg<'_>> {
    let name = name.trim_start_matches(' ');
    // The base ends at the first '[' that has a matching ']' after it.
    let open = name.find('[').filter(|&i| name[i..].contains(']'));
    let (base, mut rest) = match open {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    let mangled: String = base
        .chars()
        .map(|c| if matches!(c, '.' | ' ' | '[') { '_' } else { c })
        .collect();
    let mut path = vec![Seg::Key(Cow::Owned(mangled))];
    while let Some(after) = rest.strip_prefix('[') {
        let Some(end) = after.find(']') else { break };
        let inner = &after[..end];
        path.push(if inner.is_empty() {
            Seg::Index(0)
        } else {
            Seg::Key(Cow::Borrowed(inner))
        });
        rest = &after[end + 1..];
    }
    path
}

/// Whether `selector` selects a form field read as `path` (one of [`form_readings`]): a name
/// selector if any step of the path is the name (the value is the field, or inside it), a path
/// selector if its steps start the path.
fn form_reading_matches(selector: &FieldSelector, path: &[Seg<'_>], compare: Compare) -> bool {
    match selector {
        FieldSelector::Name(name) => path
            .iter()
            .any(|seg| matches!(seg, Seg::Key(k) if compare.eq(k, name))),
        FieldSelector::Path(steps) => {
            steps.len() <= path.len()
                && steps
                    .iter()
                    .zip(path)
                    .all(|(step, seg)| step_matches(step, seg, compare))
        }
    }
}

/// Classifies a form field (or query parameter) by its decoded name.
pub(crate) fn classify_form<'s>(
    selectors: impl Iterator<Item = &'s FieldSelector> + Clone,
    mode: NameMatching,
    name: &str,
) -> Verdict {
    let exact = [Seg::Key(Cow::Borrowed(name))];
    let direct = |compare| {
        selectors
            .clone()
            .position(|s| json_matches(s, &exact, compare))
    };
    let readings = form_readings(name);
    let widest = |selectors: &mut dyn Iterator<Item = &'s FieldSelector>| {
        selectors
            .enumerate()
            .find(|(_, s)| {
                readings
                    .iter()
                    .any(|r| form_reading_matches(s, r, Compare::Folded))
            })
            .map(|(n, _)| n)
    };
    let selected = match mode {
        NameMatching::Exact => direct(Compare::Exact),
        NameMatching::CaseInsensitive => direct(Compare::Folded),
        NameMatching::Origin => direct(Compare::Folded).or_else(|| widest(&mut selectors.clone())),
    };
    match selected {
        Some(n) => Verdict::Select(n),
        None if widest(&mut selectors.clone()).is_some() => Verdict::Ambiguous,
        None => Verdict::None,
    }
}

/// A bare name selector that no body can select as meant: it looks like a path or a form
/// reading (`card.number`, `user[ssn]`) or has surrounding whitespace.
pub(crate) fn suspicious_name(name: &str) -> Option<&'static str> {
    if name.contains(['.', '[', ']']) {
        Some("a name cannot contain '.', '[' or ']': write a path such as $.card.number, or $['a.b'] for a member whose name holds a dot")
    } else if name.trim() != name {
        Some("a name cannot start or end with whitespace")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap()
    }

    #[test]
    fn folding() {
        assert!(fold_eq("SSN", "ssn"));
        assert!(fold_eq("ſsn", "ssn"));
        assert!(fold_eq("\u{212A}ey", "key"));
        assert!(fold_eq("ÉCOLE", "école"));
        assert!(!fold_eq("ssn", "ssn "));
        assert!(!fold_eq("ss", "ß"));
    }

    #[test]
    fn json_verdicts() {
        let sels = [sel("ssn"), sel("$.card.number")];
        let key = |k: &'static str| Seg::Key(Cow::Borrowed(k));
        let classify = |mode, path: &[Seg<'_>]| classify_json(sels.iter(), mode, path);
        use NameMatching::*;
        assert_eq!(classify(Exact, &[key("ssn")]), Verdict::Select(0));
        assert_eq!(classify(Exact, &[key("SSN")]), Verdict::Ambiguous);
        assert_eq!(classify(Exact, &[key("x"), key("ſsn")]), Verdict::Ambiguous);
        assert_eq!(classify(CaseInsensitive, &[key("Ssn")]), Verdict::Select(0));
        assert_eq!(
            classify(Origin, &[key("CARD"), key("Number")]),
            Verdict::Select(1)
        );
        assert_eq!(
            classify(Exact, &[key("Card"), key("number")]),
            Verdict::Ambiguous
        );
        assert_eq!(classify(Exact, &[key("card")]), Verdict::None);
        assert_eq!(classify(Exact, &[key("number")]), Verdict::None);
    }

    #[test]
    fn form_verdicts() {
        let sels = [sel("ssn"), sel("first_name"), sel("$.card.number")];
        let classify = |mode, name| classify_form(sels.iter(), mode, name);
        use NameMatching::*;
        assert_eq!(classify(Exact, "ssn"), Verdict::Select(0));
        for lookalike in [
            "SSN",
            "user[ssn]",
            "ssn[]",
            "ssn[0]",
            "user.ssn",
            " ssn",
            "ssn ",
            "first.name",
            "first name",
            " first_name",
            "first[name",
            "card[number]",
            "card.number",
            // Rack 2, qs allowDots, PHP's NUL cut, Spring's '!' prefix and quoted map keys.
            "]ssn",
            "[ssn",
            "ssn]",
            "[]ssn",
            "[[ssn]]",
            "ssn]]",
            ".ssn",
            "..ssn",
            "ssn\0",
            "ssn\0x",
            "!ssn",
            "!card.number",
            "user['ssn']",
            "user[\"ssn\"]",
        ] {
            assert_eq!(
                classify(Exact, lookalike),
                Verdict::Ambiguous,
                "{lookalike}"
            );
            assert_ne!(
                classify(Origin, lookalike),
                Verdict::Ambiguous,
                "{lookalike}"
            );
            assert_ne!(classify(Origin, lookalike), Verdict::None, "{lookalike}");
        }
        assert_eq!(classify(CaseInsensitive, "SSN"), Verdict::Select(0));
        assert_eq!(classify(CaseInsensitive, "user[ssn]"), Verdict::Ambiguous);
        for other in [
            "ssnx",
            "ssn_x",
            "x-ssn",
            "comment",
            "card",
            "number",
            "first",
            "user[name]",
            "{\"ssn\":\"1\",\"n\":\"a",
        ] {
            assert_eq!(classify(Exact, other), Verdict::None, "{other}");
            assert_eq!(classify(Origin, other), Verdict::None, "{other}");
        }
    }

    #[test]
    fn suspicious_names() {
        assert!(suspicious_name("card.number").is_some());
        assert!(suspicious_name("ssn[]").is_some());
        assert!(suspicious_name(" ssn").is_some());
        assert!(suspicious_name("ssn").is_none());
    }
}
