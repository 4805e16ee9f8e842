//! What every reader and writer of request bodies shares: field selectors and paths, the JSON
//! walker ([`json`]), form-data percent coding ([`form`]) and the body-level parts of the
//! envelope format ([`JSON_VALUE_TAG`]).
//!
//! The edge encrypts the values a [`FieldSelector`] selects; the decryptor can restrict
//! decryption to the same selectors, so both sides read paths the same way.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

pub mod form;
pub mod json;

/// Deepest nesting of JSON arrays and objects accepted (hostile bodies must not exhaust the stack).
pub const MAX_DEPTH: usize = 128;

/// First byte of the plaintext of a non-string JSON value (number, boolean, null, object or
/// array): the plaintext is this byte followed by the value's compact JSON text, and the
/// decryptor restores it as that JSON value instead of a string. Part of the envelope format;
/// the edge refuses incoming strings that start with it, so the two can never be confused.
pub const JSON_VALUE_TAG: u8 = 0x00;

/// What part of a body a field rule selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSelector {
    /// An object member (or form field) of this name, at any depth.
    Name(String),
    /// A path from the root of a JSON document.
    Path(Vec<PathStep>),
}

/// One step of a [`FieldSelector::Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    /// `.name` or `['name']`: the member of that name.
    Member(String),
    /// `.*`: any member of an object.
    AnyMember,
    /// `[N]`: the array element at index N.
    Index(usize),
    /// `[*]`: any element of an array.
    AnyIndex,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field selector {selector:?}: {reason}")]
pub struct SelectorError {
    /// The selector text.
    pub selector: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FieldSelector {
    /// Parses a selector: a path if it starts with `$` (`$.a.b`, `.*`, `[N]`, `[*]`,
    /// `['name']`), otherwise a member name matched at any depth.
    ///
    /// ```
    /// use fle_shared::body::{FieldSelector, PathStep};
    /// assert_eq!(FieldSelector::parse("ssn")?, FieldSelector::Name("ssn".into()));
    /// assert_eq!(
    ///     FieldSelector::parse("$.cards[*].number")?,
    ///     FieldSelector::Path(vec![
    ///         PathStep::Member("cards".into()),
    ///         PathStep::AnyIndex,
    ///         PathStep::Member("number".into()),
    ///     ])
    /// );
    /// # Ok::<(), fle_shared::body::SelectorError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let err = |reason| SelectorError {
            selector: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if !text.starts_with('$') {
            return Ok(FieldSelector::Name(text.to_owned()));
        }
        let mut steps = Vec::new();
        let mut rest = &text[1..];
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                steps.push(match name {
                    "" => return Err(err("empty member name after '.'")),
                    "*" => PathStep::AnyMember,
                    _ => PathStep::Member(name.to_owned()),
                });
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| err("'[' without ']'"))?;
                let inner = &after[..end];
                steps.push(if inner == "*" {
                    PathStep::AnyIndex
                } else if let Some(q) = inner.chars().next().filter(|c| *c == '\'' || *c == '"') {
                    let name = inner[1..]
                        .strip_suffix(q)
                        .filter(|n| !n.is_empty())
                        .ok_or_else(|| err("quoted member name not closed"))?;
                    PathStep::Member(name.to_owned())
                } else {
                    PathStep::Index(
                        inner
                            .parse()
                            .map_err(|_| err("index must be a number, '*' or a quoted name"))?,
                    )
                });
                rest = &after[end + 1..];
            } else {
                return Err(err("expected '.' or '[' after a step"));
            }
        }
        if steps.is_empty() {
            return Err(err("'$' alone selects the whole body; name a field"));
        }
        Ok(FieldSelector::Path(steps))
    }

    /// Whether this selector selects the value at `path`.
    pub fn matches(&self, path: &[Seg<'_>]) -> bool {
        match self {
            FieldSelector::Name(name) => matches!(path.last(), Some(Seg::Key(k)) if k == name),
            FieldSelector::Path(steps) => {
                steps.len() == path.len()
                    && steps.iter().zip(path).all(|(step, seg)| match (step, seg) {
                        (PathStep::Member(m), Seg::Key(k)) => m == k,
                        (PathStep::AnyMember, Seg::Key(_)) => true,
                        (PathStep::Index(i), Seg::Index(j)) => i == j,
                        (PathStep::AnyIndex, Seg::Index(_)) => true,
                        _ => false,
                    })
            }
        }
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldSelector::Name(n) => f.write_str(n),
            FieldSelector::Path(steps) => {
                f.write_str("$")?;
                for step in steps {
                    match step {
                        PathStep::Member(m) => write!(f, "['{m}']")?,
                        PathStep::AnyMember => f.write_str(".*")?,
                        PathStep::Index(i) => write!(f, "[{i}]")?,
                        PathStep::AnyIndex => f.write_str("[*]")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// One step of the path to a value in a document being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg<'a> {
    /// An object member (or form field) name.
    Key(Cow<'a, str>),
    /// An array index.
    Index(usize),
}

/// Longest member name shown in a rendered path.
const MAX_NAME_IN_PATH: usize = 64;

/// `$.a[0].b` for messages: member names JSON-escaped and shortened to 64 characters, never
/// values.
///
/// ```
/// use fle_shared::body::{render_path, Seg};
/// let path = [Seg::Key("people".into()), Seg::Index(2), Seg::Key("e mail".into())];
/// assert_eq!(render_path(&path), r#"$.people[2]["e mail"]"#);
/// ```
pub fn render_path(path: &[Seg<'_>]) -> String {
    let mut out = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Seg::Key(k) => {
                let short: String = k.chars().take(MAX_NAME_IN_PATH).collect();
                if !short.is_empty()
                    && short
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    out.push('.');
                    out.push_str(&short);
                } else {
                    out.push('[');
                    json::push_string(&short, &mut out);
                    out.push(']');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        use PathStep::*;
        assert_eq!(
            FieldSelector::parse("$['a.b'][2].*").unwrap(),
            FieldSelector::Path(vec![Member("a.b".into()), Index(2), AnyMember])
        );
        for bad in ["", "$", "$.", "$[", "$[x]", "$['a]", "$a", "$..a", "$.a[1"] {
            assert!(FieldSelector::parse(bad).is_err(), "{bad}");
        }
        let path = [Seg::Key("a".into()), Seg::Index(3), Seg::Key("ssn".into())];
        assert!(FieldSelector::parse("ssn").unwrap().matches(&path));
        assert!(FieldSelector::parse("$.a[*].ssn").unwrap().matches(&path));
        assert!(FieldSelector::parse("$.*[3].ssn").unwrap().matches(&path));
        assert!(!FieldSelector::parse("$.a[2].ssn").unwrap().matches(&path));
        assert!(!FieldSelector::parse("$.ssn").unwrap().matches(&path));
        assert!(!FieldSelector::parse("a").unwrap().matches(&path));
    }
}
