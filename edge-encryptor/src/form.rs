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

use crate::body::{encrypt_field, BodyError, Rules};

/// Rewrites `body`, appending the result to `out`; returns how many values were encrypted.
pub(crate) fn rewrite(body: &str, rules: &Rules<'_>, out: &mut String) -> Result<usize, BodyError> {
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
