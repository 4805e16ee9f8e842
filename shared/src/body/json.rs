//! A strict, validating JSON walker that copies a document byte for byte (key order, number
//! formatting and whitespace included) and lets a [`Visitor`] rewrite its strings and take over
//! selected values.
//!
//! Strict RFC 8259: anything else (trailing commas, comments, NaN, lone surrogates, control
//! characters in strings, trailing data) is a [`JsonError`], so a document that cannot be fully
//! understood is never half-processed. Nesting is limited to [`MAX_DEPTH`]. The edge encrypts
//! through it; the decryptor finds and restores envelopes through it.

use std::borrow::Cow;

use zeroize::Zeroizing;

use super::{Seg, MAX_DEPTH};

/// Why a document is not accepted as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not valid JSON.
    #[error("not valid JSON: {what} at byte {offset}")]
    Syntax {
        /// What was expected or found.
        what: &'static str,
        /// Byte offset in the document.
        offset: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// One string of the document: a member name or a string value.
#[derive(Debug)]
pub struct StringToken<'a> {
    /// The literal as written, quotes included.
    pub raw: &'a str,
    /// Its value, unescaped (borrowed from `raw` when it has no escapes).
    pub value: Cow<'a, str>,
    /// Byte offset of the opening quote in the document.
    pub offset: usize,
    /// Whether it is a member name (its path is then the object's).
    pub is_name: bool,
}

/// A value the visitor selected with [`Visitor::selects`].
#[derive(Debug)]
pub enum Selected<'a> {
    /// A string value.
    String(StringToken<'a>),
    /// Any other value: its compact JSON text (insignificant whitespace removed; strings inside
    /// it as the visitor wrote them). Held in a buffer that is zeroized afterwards.
    Json(&'a str),
}

/// What a [`walk`] calls back. Each method appends what the document should contain instead to
/// `out`; the walker writes everything else (punctuation, numbers, literals, whitespace).
pub trait Visitor {
    /// The error the visitor can raise; [`JsonError`]s convert into it.
    type Error: From<JsonError>;

    /// Whether the value at `path` is handed whole to [`Visitor::selected`]. Not asked for
    /// values inside a selected value.
    fn selects(&mut self, path: &[Seg<'_>]) -> bool {
        let _ = path;
        false
    }

    /// A selected value, at `path`.
    fn selected(
        &mut self,
        path: &[Seg<'_>],
        value: Selected<'_>,
        out: &mut String,
    ) -> Result<(), Self::Error> {
        let _ = (path, value, out);
        Ok(())
    }

    /// Every string that is not itself selected: member names and string values, including
    /// those inside a selected non-string value (then `out` is the capture buffer). The default
    /// copies it unchanged.
    fn string(
        &mut self,
        path: &[Seg<'_>],
        token: StringToken<'_>,
        out: &mut String,
    ) -> Result<(), Self::Error> {
        let _ = path;
        out.push_str(token.raw);
        Ok(())
    }
}

/// Walks `doc`, appending the rewritten document to `out`.
///
/// ```
/// use fle_shared::body::json::{walk, JsonError, StringToken, Visitor};
/// use fle_shared::body::Seg;
///
/// struct Upper;
/// impl Visitor for Upper {
///     type Error = JsonError;
///     fn string(&mut self, _: &[Seg<'_>], t: StringToken<'_>, out: &mut String) -> Result<(), JsonError> {
///         out.push_str(&if t.is_name { t.raw.to_owned() } else { t.raw.to_uppercase() });
///         Ok(())
///     }
/// }
/// let mut out = String::new();
/// walk(r#"{"a": ["x", 1.50]}"#, &mut Upper, &mut out)?;
/// assert_eq!(out, r#"{"a": ["X", 1.50]}"#);
/// assert!(walk("[1,]", &mut Upper, &mut String::new()).is_err());
/// # Ok::<(), JsonError>(())
/// ```
pub fn walk<V: Visitor>(doc: &str, visitor: &mut V, out: &mut String) -> Result<(), V::Error> {
    let mut w = Walker {
        s: doc,
        b: doc.as_bytes(),
        pos: 0,
        visitor,
        path: Vec::new(),
        capture: false,
    };
    w.ws(out);
    w.value(0, out)?;
    w.ws(out);
    if w.pos != w.b.len() {
        return Err(w.syntax("unexpected data after the JSON value").into());
    }
    Ok(())
}

/// Appends `text` as a JSON string literal, quotes included (`serde_json`'s escaping: `"`, `\`
/// and control characters; everything else as is).
pub fn push_string(text: &str, out: &mut String) {
    // Serialising a `str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

struct Walker<'a, 'v, V> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    visitor: &'v mut V,
    path: Vec<Seg<'a>>,
    /// Inside a selected non-string value: write compact JSON, select nothing further.
    capture: bool,
}

impl<'a, V: Visitor> Walker<'a, '_, V> {
    fn syntax(&self, what: &'static str) -> JsonError {
        JsonError::Syntax {
            what,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self, out: &mut String) {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        if !self.capture {
            out.push_str(&self.s[start..self.pos]);
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str, out: &mut String) -> Result<(), JsonError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax(what));
        }
        self.pos += 1;
        out.push(char::from(byte));
        Ok(())
    }

    fn value(&mut self, depth: usize, out: &mut String) -> Result<(), V::Error> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep.into());
        }
        if !self.capture && self.visitor.selects(&self.path) {
            return self.selected(depth, out);
        }
        match self.peek() {
            Some(b'{') => self.object(depth, out),
            Some(b'[') => self.array(depth, out),
            Some(b'"') => {
                let token = self.string(false)?;
                self.visitor.string(&self.path, token, out)
            }
            Some(b't') => Ok(self.literal("true", out)?),
            Some(b'f') => Ok(self.literal("false", out)?),
            Some(b'n') => Ok(self.literal("null", out)?),
            Some(b'-' | b'0'..=b'9') => Ok(self.number(out)?),
            Some(_) => Err(self.syntax("expected a value").into()),
            None => Err(self.syntax("unexpected end of document").into()),
        }
    }

    fn selected(&mut self, depth: usize, out: &mut String) -> Result<(), V::Error> {
        if self.peek() == Some(b'"') {
            let token = self.string(false)?;
            return self
                .visitor
                .selected(&self.path, Selected::String(token), out);
        }
        let mut captured = Zeroizing::new(String::new());
        self.capture = true;
        let result = self.value(depth, &mut captured);
        self.capture = false;
        result?;
        self.visitor
            .selected(&self.path, Selected::Json(&captured), out)
    }

    fn object(&mut self, depth: usize, out: &mut String) -> Result<(), V::Error> {
        self.expect(b'{', "expected '{'", out)?;
        self.ws(out);
        if self.peek() == Some(b'}') {
            return Ok(self.expect(b'}', "expected '}'", out)?);
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a member name").into());
            }
            let token = self.string(true)?;
            let name = token.value.clone();
            self.visitor.string(&self.path, token, out)?;
            self.ws(out);
            self.expect(b':', "expected ':' after a member name", out)?;
            self.ws(out);
            self.path.push(Seg::Key(name));
            self.value(depth + 1, out)?;
            self.path.pop();
            self.ws(out);
            match self.peek() {
                Some(b',') => {
                    self.expect(b',', "expected ','", out)?;
                    self.ws(out);
                }
                Some(b'}') => return Ok(self.expect(b'}', "expected '}'", out)?),
                _ => return Err(self.syntax("expected ',' or '}'").into()),
            }
        }
    }

    fn array(&mut self, depth: usize, out: &mut String) -> Result<(), V::Error> {
        self.expect(b'[', "expected '['", out)?;
        self.ws(out);
        if self.peek() == Some(b']') {
            return Ok(self.expect(b']', "expected ']'", out)?);
        }
        let mut index = 0;
        loop {
            self.path.push(Seg::Index(index));
            self.value(depth + 1, out)?;
            self.path.pop();
            self.ws(out);
            match self.peek() {
                Some(b',') => {
                    self.expect(b',', "expected ','", out)?;
                    self.ws(out);
                    index += 1;
                }
                Some(b']') => return Ok(self.expect(b']', "expected ']'", out)?),
                _ => return Err(self.syntax("expected ',' or ']'").into()),
            }
        }
    }

    fn literal(&mut self, word: &'static str, out: &mut String) -> Result<(), JsonError> {
        if !self.b[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.syntax("invalid literal"));
        }
        self.pos += word.len();
        out.push_str(word);
        Ok(())
    }

    fn number(&mut self, out: &mut String) -> Result<(), JsonError> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let s = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.syntax("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if digits(self) == 0 {
                return Err(self.syntax("invalid number: digits expected after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.syntax("invalid number: digits expected in the exponent"));
            }
        }
        out.push_str(&self.s[start..self.pos]);
        Ok(())
    }

    /// Parses the string at `pos`.
    fn string(&mut self, is_name: bool) -> Result<StringToken<'a>, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let token = |w: &Self, value| StringToken {
            raw: &w.s[start..w.pos],
            value,
            offset: start,
            is_name,
        };
        // Fast path: no escapes.
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(token(self, Cow::Borrowed(&self.s[start + 1..self.pos - 1])));
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err(self.syntax("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
        let mut value = String::from(&self.s[start + 1..self.pos]);
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(token(self, Cow::Owned(value)));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            value.push(c);
                            continue;
                        }
                        _ => return Err(self.syntax("invalid escape in a string")),
                    };
                    self.pos += 1;
                    value.push(c);
                }
                Some(0..=0x1f) => return Err(self.syntax("control character in a string")),
                Some(_) => {
                    let run = self.b[self.pos..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(self.b.len() - self.pos);
                    // The run ends at an ASCII byte (or the end), so it is a character boundary.
                    value.push_str(&self.s[self.pos..self.pos + run]);
                    self.pos += run;
                }
            }
        }
    }

    /// After `\u`: four hex digits, and for a high surrogate the `\uXXXX` low surrogate after it.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let hi = self.hex4()?;
        let code = match hi {
            0xD800..=0xDBFF => {
                if !self.b[self.pos..].starts_with(b"\\u") {
                    return Err(self.syntax("lone surrogate in a string"));
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.syntax("lone surrogate in a string"));
                }
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.syntax("lone surrogate in a string")),
            _ => hi,
        };
        char::from_u32(code).ok_or_else(|| self.syntax("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .b
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.syntax("invalid \\u escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = char::from(d)
                .to_digit(16)
                .ok_or_else(|| self.syntax("invalid \\u escape"))?;
            v = v * 16 + n;
        }
        self.pos += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_string_escapes_like_serde_json() {
        let mut out = String::new();
        push_string("a\"b\\c\n\u{1}\u{7f}é\u{2060}/", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\u{7f}é\u{2060}/\"");
    }
}
