//! The `application/x-www-form-urlencoded` body rewriter, like CloudFront's own field-level
//! encryption: `name=value` pairs joined by `&`, percent-encoded, `+` for space.
//!
//! A field is selected by its decoded name (a name rule, or a one-step path `$.name`). Its
//! decoded value (UTF-8) is encrypted and the envelope written percent-encoded (`#` → `%23`,
//! `+` → `%2B`, `/` → `%2F`, `=` → `%3D`). Other pairs are copied byte for byte after their
//! names and values are checked for markers.

use std::borrow::Cow;

use zeroize::Zeroizing;

use crate::body::{encrypt_field, BodyError, Rules, Seg};

/// Rewrites `body`, appending the result to `out`; returns how many values were encrypted.
pub(crate) fn rewrite(body: &str, rules: &Rules<'_>, out: &mut String) -> Result<usize, BodyError> {
    let mut encrypted = 0;
    let mut offset = 0;
    let mut envelope = String::new();
    for (i, pair) in body.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (raw_name, raw_value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let name = decode(raw_name, offset)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| syntax("field name is not UTF-8", offset))?;
        let path = [Seg::Key(Cow::Borrowed(name.as_str()))];
        let value_offset = offset + raw_name.len() + 1;
        let value = raw_value.map(|v| decode(v, value_offset)).transpose()?;

        let checked_name = rules.check_markers(&name, &path)?;
        match checked_name {
            Cow::Borrowed(_) => out.push_str(raw_name),
            Cow::Owned(neutral) => encode_into(neutral.as_bytes(), out),
        }
        if let (Some(raw_value), Some(value)) = (raw_value, value) {
            out.push('=');
            let text = std::str::from_utf8(&value);
            match (rules.select(&path), text) {
                (Some(key), Ok(text)) => {
                    let text = Zeroizing::new(rules.check_markers(text, &path)?.into_owned());
                    envelope.clear();
                    encrypt_field(key, text.as_bytes(), &path, &mut envelope)?;
                    encode_into(envelope.as_bytes(), out);
                    encrypted += 1;
                }
                (Some(_), Err(_)) => {
                    return Err(syntax("value to encrypt is not UTF-8", value_offset))
                }
                (None, Ok(text)) => match rules.check_markers(text, &path)? {
                    Cow::Borrowed(_) => out.push_str(raw_value),
                    Cow::Owned(neutral) => encode_into(neutral.as_bytes(), out),
                },
                (None, Err(_)) => {
                    if rules.scanner.contains_prefix(&value) {
                        return Err(BodyError::Marker {
                            field: crate::body::render_path(&path),
                        });
                    }
                    out.push_str(raw_value);
                }
            }
        }
        offset += pair.len() + 1;
    }
    Ok(encrypted)
}

fn syntax(what: &'static str, offset: usize) -> BodyError {
    BodyError::Syntax {
        format: "form data",
        what,
        offset,
    }
}

/// Percent-decodes one name or value (`+` is a space). Borrowed when nothing is encoded.
fn decode(raw: &str, offset: usize) -> Result<Cow<'_, [u8]>, BodyError> {
    let b = raw.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Ok(Cow::Borrowed(b));
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .ok_or_else(|| syntax("truncated percent escape", offset + i))?;
                let hi = char::from(hex[0]).to_digit(16);
                let lo = char::from(hex[1]).to_digit(16);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(syntax("invalid percent escape", offset + i)),
                }
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(Cow::Owned(out))
}

/// Percent-encodes `bytes` the way browsers encode form data: `A-Z a-z 0-9 * - . _` as is,
/// space as `+`, everything else `%XX`.
fn encode_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in bytes {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(c))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 15)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_coding() {
        assert_eq!(&*decode("a+b%2B%2f", 0).unwrap(), b"a b+/");
        assert!(decode("%2", 0).is_err());
        assert!(decode("%zz", 0).is_err());
        let mut s = String::new();
        encode_into(b"#01#a+/=b #10# \xe2\x81\xa0", &mut s);
        assert_eq!(s, "%2301%23a%2B%2F%3Db+%2310%23+%E2%81%A0");
        assert_eq!(&*decode(&s, 0).unwrap(), b"#01#a+/=b #10# \xe2\x81\xa0");
    }
}
