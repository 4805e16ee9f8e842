//! The `application/x-www-form-urlencoded` body rewriter, like CloudFront's own field-level
//! encryption: `name=value` pairs joined by `&`, percent-encoded, `+` for space.
//!
//! A field is selected by its decoded name (a name rule, or a one-step path `$.name`). Its
//! decoded value (UTF-8) is encrypted and the envelope written percent-encoded (`#` → `%23`,
//! `+` → `%2B`, `/` → `%2F`, `=` → `%3D`). Other pairs are copied byte for byte after their
//! names and values are checked for markers.

use std::borrow::Cow;

use zeroize::Zeroizing;

use fle_shared::body::form::{decode, encode_into, pairs};
use fle_shared::body::Seg;

use crate::body::{BodyError, Rules};

/// Rewrites `body`, appending the result to `out`; returns how many values were encrypted.
pub(crate) fn rewrite(body: &str, rules: &Rules<'_>, out: &mut String) -> Result<usize, BodyError> {
    check_shape(body)?;
    let mut encrypted = 0;
    let mut envelope = String::new();
    for (i, pair) in pairs(body).enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (raw_name, raw_value, offset) = (pair.name, pair.value, pair.offset);
        let name = decode(raw_name, offset)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| syntax("field name is not UTF-8", offset))?;
        let path = [Seg::Key(Cow::Borrowed(name.as_str()))];
        let value_offset = pair.value_offset();
        let value = raw_value.map(|v| decode(v, value_offset)).transpose()?;

        let checked_name = rules.check_markers(&name, &path)?;
        match checked_name {
            Cow::Borrowed(_) => out.push_str(raw_name),
            Cow::Owned(neutral) => encode_into(neutral.as_bytes(), out),
        }
        // A name selected or refused even without a value: `ssn` alone still names the field.
        let selected = rules.select_form(&name, &path)?;
        if let (Some(raw_value), Some(value)) = (raw_value, value) {
            out.push('=');
            let text = std::str::from_utf8(&value);
            match (selected, text) {
                (Some(key), Ok(text)) => {
                    let text = Zeroizing::new(rules.check_markers(text, &path)?.into_owned());
                    envelope.clear();
                    rules.encrypt(
                        key,
                        text.as_bytes(),
                        &path,
                        &mut envelope,
                        out.len(),
                        encrypted,
                    )?;
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
                    rules.check_marker_bytes(&value, &path)?;
                    out.push_str(raw_value);
                }
            }
        }
    }
    Ok(encrypted)
}

/// Whether `b` may appear raw in form data as serialisers write it. Browsers and
/// `URLSearchParams` leave only `A-Z a-z 0-9 * - . _` raw; other clients also leave some
/// URL sub-delimiters raw. Never raw: JSON's structure (`{ } " :`), spaces, `;` (a pair
/// separator to some parsers), `#`, `\`, `<`, `>`, `` ` ``, `^`, `|`, control characters and
/// non-ASCII bytes.
fn raw_form_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'*' | b'-'
                | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'+'
                | b'='
                | b'&'
                | b'!'
                | b'\''
                | b'('
                | b')'
                | b','
                | b'/'
                | b'@'
                | b'?'
                | b'$'
                | b'['
                | b']'
        )
}

/// Refuses a body declared as form data that does not look like form encoding: many origins
/// parse the raw body as JSON whatever its content type, and a JSON document sent as form data
/// would otherwise reach them with every value in clear.
pub(crate) fn check_shape(body: &str) -> Result<(), BodyError> {
    match body.bytes().position(|b| !raw_form_byte(b)) {
        None => Ok(()),
        Some(offset) => Err(BodyError::Mismatch {
            declared: "form data",
            what: "a character form serialisers always percent-encode",
            offset,
        }),
    }
}

/// Percent-decodes as lenient parsers do: a malformed escape stays as written (`+` still reads
/// as a space), invalid UTF-8 is replaced.
pub(crate) fn lenient_decode(raw: &str) -> String {
    match decode(raw, 0) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => raw.replace('+', " "),
    }
}

/// Refuses a JSON body that, read as form data (pairs split at `&` or `;`, as lenient
/// parsers do), carries a field an origin would take for a configured one: the JSON string
/// `"x&ssn=123-45-6789"` is one value to the edge but the field `ssn` to such an origin. A
/// body without `&` or `;` is one pair to them (`{"x":"y[ssn]=123-45-6789"}`), so it is checked
/// too.
pub(crate) fn check_json_as_form(body: &str, rules: &Rules<'_>) -> Result<(), BodyError> {
    if memchr::memchr(b'=', body.as_bytes()).is_none() {
        return Ok(());
    }
    let mut offset = 0;
    for piece in body.split(['&', ';']) {
        let start = offset;
        offset += piece.len() + 1;
        let Some((raw_name, _)) = piece.split_once('=') else {
            continue;
        };
        let decoded = lenient_decode(raw_name);
        let path = [Seg::Key(Cow::Borrowed(decoded.as_str()))];
        if !matches!(rules.select_form(&decoded, &path), Ok(None)) {
            return Err(BodyError::Mismatch {
                declared: "JSON",
                what: "text that form parsers read as a configured field",
                offset: start,
            });
        }
    }
    Ok(())
}

fn syntax(what: &'static str, offset: usize) -> BodyError {
    BodyError::Syntax {
        format: "form data",
        what,
        offset,
    }
}
