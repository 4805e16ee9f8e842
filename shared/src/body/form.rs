//! `application/x-www-form-urlencoded` percent coding: `name=value` pairs joined by `&`, `+` for
//! space, `%XX` for everything else that is not `A-Z a-z 0-9 * - . _`.

use std::borrow::Cow;

/// A malformed percent escape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid form data: {what} at byte {offset}")]
pub struct FormError {
    /// What is wrong.
    pub what: &'static str,
    /// Byte offset in the body.
    pub offset: usize,
}

/// One `name=value` pair of a body, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPair<'a> {
    /// Byte offset of the pair in the body.
    pub offset: usize,
    /// The name, still percent-encoded.
    pub name: &'a str,
    /// The value, still percent-encoded; `None` for a pair without `=`.
    pub value: Option<&'a str>,
}

impl RawPair<'_> {
    /// Byte offset of the value in the body (just after the `=`).
    pub fn value_offset(&self) -> usize {
        self.offset + self.name.len() + 1
    }
}

/// The pairs of `body`, split at `&` (every piece is a pair, empty ones included, so that
/// joining them with `&` gives the body back).
pub fn pairs(body: &str) -> impl Iterator<Item = RawPair<'_>> {
    let mut offset = 0;
    body.split('&').map(move |pair| {
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        let raw = RawPair {
            offset,
            name,
            value,
        };
        offset += pair.len() + 1;
        raw
    })
}

/// Percent-decodes one name or value (`+` is a space); `offset` (of `raw` in the body) places
/// errors. Borrowed when nothing is encoded.
///
/// ```
/// use fle_shared::body::form::decode;
/// assert_eq!(&*decode("a+b%2B%2f", 0)?, b"a b+/");
/// assert!(decode("%2", 0).is_err());
/// # Ok::<(), fle_shared::body::form::FormError>(())
/// ```
pub fn decode(raw: &str, offset: usize) -> Result<Cow<'_, [u8]>, FormError> {
    let b = raw.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Ok(Cow::Borrowed(b));
    }
    let err = |what, at| FormError {
        what,
        offset: offset + at,
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .ok_or_else(|| err("truncated percent escape", i))?;
                let hi = char::from(hex[0]).to_digit(16);
                let lo = char::from(hex[1]).to_digit(16);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                    _ => return Err(err("invalid percent escape", i)),
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
///
/// ```
/// let mut s = String::new();
/// fle_shared::body::form::encode_into(b"#01#a+/= b", &mut s);
/// assert_eq!(s, "%2301%23a%2B%2F%3D+b");
/// ```
pub fn encode_into(bytes: &[u8], out: &mut String) {
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
    fn percent_coding_round_trips() {
        assert!(decode("%zz", 0).is_err());
        assert_eq!(decode("ab%2", 10).unwrap_err().offset, 12);
        let mut s = String::new();
        encode_into(b"#01#a+/=b #10# \xe2\x81\xa0", &mut s);
        assert_eq!(s, "%2301%23a%2B%2F%3Db+%2310%23+%E2%81%A0");
        assert_eq!(&*decode(&s, 0).unwrap(), b"#01#a+/=b #10# \xe2\x81\xa0");
    }

    #[test]
    fn pairs_keep_offsets() {
        let p: Vec<_> = pairs("a=1&&b&c=").collect();
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].name, p[0].value, p[0].offset), ("a", Some("1"), 0));
        assert_eq!((p[1].name, p[1].value, p[1].offset), ("", None, 4));
        assert_eq!((p[2].name, p[2].value, p[2].offset), ("b", None, 5));
        assert_eq!(
            (p[3].name, p[3].value, p[3].value_offset()),
            ("c", Some(""), 9)
        );
    }
}
