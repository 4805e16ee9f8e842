//! The JSON body rewriter: one validating pass that copies the body byte for byte (key order,
//! number formatting and whitespace included) except for the selected values, which it replaces
//! with envelopes.
//!
//! Strict RFC 8259: anything else (trailing commas, comments, NaN, lone surrogates, control
//! characters in strings, trailing data) is a syntax error, so a body the edge cannot fully
//! understand is never forwarded.

use std::borrow::Cow;

use fle_shared::KeyEncryptor;
use zeroize::Zeroizing;

use crate::body::{encrypt_field, render_path, BodyError, Rules, Seg, JSON_VALUE_TAG, MAX_DEPTH};

/// Rewrites `body`, appending the result to `out`; returns how many values were encrypted.
pub(crate) fn rewrite(body: &str, rules: &Rules<'_>, out: &mut String) -> Result<usize, BodyError> {
    let mut p = Parser {
        s: body,
        b: body.as_bytes(),
        pos: 0,
        out,
        rules,
        path: Vec::new(),
        capture: false,
        encrypted: 0,
    };
    p.ws();
    p.value(0)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(p.syntax("unexpected data after the JSON value"));
    }
    Ok(p.encrypted)
}

struct Parser<'a, 'o, 'r> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    out: &'o mut String,
    rules: &'r Rules<'r>,
    path: Vec<Seg<'a>>,
    /// Inside a selected non-string value: write compact JSON, select nothing further.
    capture: bool,
    encrypted: usize,
}

impl<'a> Parser<'a, '_, '_> {
    fn syntax(&self, what: &'static str) -> BodyError {
        BodyError::Syntax {
            format: "JSON",
            what,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        if !self.capture {
            self.out.push_str(&self.s[start..self.pos]);
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), BodyError> {
        if self.peek() != Some(byte) {
            return Err(self.syntax(what));
        }
        self.pos += 1;
        self.out.push(char::from(byte));
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<(), BodyError> {
        if depth > MAX_DEPTH {
            return Err(BodyError::TooDeep);
        }
        if !self.capture {
            if let Some(key) = self.rules.select(&self.path) {
                return self.encrypted_value(key, depth);
            }
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => {
                let (raw, text) = self.string()?;
                match self.rules.check_markers(&text, &self.path)? {
                    Cow::Borrowed(_) => self.out.push_str(raw),
                    Cow::Owned(neutralised) => self.out.push_str(&json_string(&neutralised)),
                }
                Ok(())
            }
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("expected a value")),
            None => Err(self.syntax("unexpected end of body")),
        }
    }

    fn encrypted_value(&mut self, key: &KeyEncryptor, depth: usize) -> Result<(), BodyError> {
        if self.peek() == Some(b'"') {
            let (_, text) = self.string()?;
            let text = Zeroizing::new(self.rules.check_markers(&text, &self.path)?.into_owned());
            if text.as_bytes().first() == Some(&JSON_VALUE_TAG) {
                return Err(BodyError::ReservedTag {
                    field: render_path(&self.path),
                });
            }
            self.out.push('"');
            encrypt_field(key, text.as_bytes(), &self.path, self.out)?;
            self.out.push('"');
        } else {
            // A number, boolean, null, object or array: encrypt its compact JSON text after the
            // tag byte, so the decryptor can restore the same JSON type.
            let mut captured = Zeroizing::new(String::from(char::from(JSON_VALUE_TAG)));
            std::mem::swap(self.out, &mut *captured);
            self.capture = true;
            let result = self.value(depth);
            self.capture = false;
            std::mem::swap(self.out, &mut *captured);
            result?;
            self.out.push('"');
            encrypt_field(key, captured.as_bytes(), &self.path, self.out)?;
            self.out.push('"');
        }
        self.encrypted += 1;
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), BodyError> {
        self.expect(b'{', "expected '{'")?;
        self.ws();
        if self.peek() == Some(b'}') {
            return self.expect(b'}', "expected '}'");
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.syntax("expected a member name"));
            }
            let (raw, name) = self.string()?;
            match self.rules.check_markers(&name, &self.path)? {
                Cow::Borrowed(_) => self.out.push_str(raw),
                Cow::Owned(neutralised) => self.out.push_str(&json_string(&neutralised)),
            }
            self.ws();
            self.expect(b':', "expected ':' after a member name")?;
            self.ws();
            self.path.push(Seg::Key(name));
            self.value(depth + 1)?;
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.expect(b',', "expected ','")?;
                    self.ws();
                }
                Some(b'}') => return self.expect(b'}', "expected '}'"),
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), BodyError> {
        self.expect(b'[', "expected '['")?;
        self.ws();
        if self.peek() == Some(b']') {
            return self.expect(b']', "expected ']'");
        }
        let mut index = 0;
        loop {
            self.path.push(Seg::Index(index));
            self.value(depth + 1)?;
            self.path.pop();
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.expect(b',', "expected ','")?;
                    self.ws();
                    index += 1;
                }
                Some(b']') => return self.expect(b']', "expected ']'"),
                _ => return Err(self.syntax("expected ',' or ']'")),
            }
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), BodyError> {
        if !self.b[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.syntax("invalid literal"));
        }
        self.pos += word.len();
        self.out.push_str(word);
        Ok(())
    }

    fn number(&mut self) -> Result<(), BodyError> {
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
        self.out.push_str(&self.s[start..self.pos]);
        Ok(())
    }

    /// Parses a string at `pos`: its raw text (quotes included) and its value.
    fn string(&mut self) -> Result<(&'a str, Cow<'a, str>), BodyError> {
        let start = self.pos;
        self.pos += 1;
        // Fast path: no escapes.
        loop {
            match self.peek() {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    let raw = &self.s[start..self.pos];
                    return Ok((raw, Cow::Borrowed(&raw[1..raw.len() - 1])));
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
                    return Ok((&self.s[start..self.pos], Cow::Owned(value)));
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
    fn unicode_escape(&mut self) -> Result<char, BodyError> {
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

    fn hex4(&mut self) -> Result<u32, BodyError> {
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

/// `text` as a JSON string literal (serde_json's escaping; serialising a `str` cannot fail).
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}
