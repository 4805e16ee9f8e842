//! The query string. Many frameworks merge query and body parameters (Spring `@RequestParam`,
//! PHP `$_REQUEST`, Flask `request.values`), and query strings land in access logs, so a
//! configured field there is refused ([`QueryPolicy::Reject`], the default) or encrypted in
//! place ([`QueryPolicy::Encrypt`]). Names are read as leniently as origins read them (pairs
//! split at `&` and `;`, malformed escapes left as they are), and envelope-shaped text is
//! refused whatever the policy.

use std::borrow::Cow;

use zeroize::Zeroizing;

use fle_shared::body::form::{decode, encode_into, pairs};
use fle_shared::body::Seg;

use crate::body::{render_path, BodyError, Rules};
use crate::config::QueryPolicy;
use crate::form::lenient_decode;

/// Checks `query` (without the `?`); returns the query to forward when values were encrypted,
/// with their count, or `None` when it is forwarded as it is.
pub(crate) fn rewrite(
    query: &str,
    rules: &Rules<'_>,
    policy: QueryPolicy,
) -> Result<Option<(String, usize)>, BodyError> {
    if query.is_empty() {
        return Ok(None);
    }
    let mut selected = false;
    for piece in query.split(['&', ';']) {
        let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = lenient_decode(raw_name);
        let path = [Seg::Key(Cow::Borrowed(name.as_str()))];
        let value = Zeroizing::new(lenient_decode(raw_value));
        // Any marker in a query string is refused: there is no neutralising a URL.
        rules.check_marker_bytes(name.as_bytes(), &path)?;
        rules.check_marker_bytes(value.as_bytes(), &path)?;
        // Own prefixes are refused above, so this only adds the NFKC look-alikes.
        rules.check_markers(&name, &path)?;
        rules.check_markers(&value, &path)?;
        if rules.select_form(&name, &path)?.is_some() {
            if policy == QueryPolicy::Reject || query.contains(';') {
                return Err(BodyError::FieldInQuery {
                    field: render_path(&path),
                });
            }
            selected = true;
        }
    }
    if !selected {
        return Ok(None);
    }
    // Encrypt: pairs at '&' only (no ';' in the query, checked above), strict decoding.
    let mut out = String::with_capacity(query.len() + 512);
    let mut envelope = String::new();
    let mut encrypted = 0;
    for (i, pair) in pairs(query).enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(pair.name);
        let Some(raw_value) = pair.value else {
            continue;
        };
        out.push('=');
        let name = lenient_decode(pair.name);
        let path = [Seg::Key(Cow::Borrowed(name.as_str()))];
        match rules.select_form(&name, &path)? {
            Some(key) => {
                let value = Zeroizing::new(decode(raw_value, pair.value_offset())?.into_owned());
                if std::str::from_utf8(&value).is_err() {
                    return Err(BodyError::Syntax {
                        format: "query string",
                        what: "value to encrypt is not UTF-8",
                        offset: pair.value_offset(),
                    });
                }
                envelope.clear();
                rules.encrypt(key, &value, &path, &mut envelope, 0, encrypted)?;
                encode_into(envelope.as_bytes(), &mut out);
                encrypted += 1;
            }
            None => out.push_str(raw_value),
        }
    }
    Ok(Some((out, encrypted)))
}
