//! Envelope-shaped text that is not one of the edge's own markers: envelopes of retired keys,
//! of keys this edge never held, and envelopes written with look-alike characters that Unicode
//! compatibility normalisation (NFKC) turns back into markers (fullwidth `＃０１＃`).
//!
//! A captured envelope forwarded in a field the edge does not encrypt is opened by any
//! schema-blind decryptor that still holds its key, so all of these are refused.

use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// Shortest base64 run after a `#…#` marker that makes text envelope-shaped. The shortest
/// envelope of any fle format carries far more (RSA-2048: 344 characters; a v2 token of a
/// one-byte value: over 60); ordinary text rarely has 40 base64 characters glued to a `#id#`.
pub const GENERIC_MIN_BASE64: usize = 40;

/// Longest marker id the generic rule looks for (key ids are 1 to 32 characters).
const MAX_ID: usize = 32;

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'=')
}

/// Whether `text` holds `#`, 1 to 32 id characters (`A-Z a-z 0-9 - _`), `#`, then at least
/// [`GENERIC_MIN_BASE64`] base64 characters (standard or URL-safe alphabet, padding
/// included): the shape of an envelope under any key and marker id.
pub fn looks_like_envelope(text: &[u8]) -> bool {
    for start in memchr::memchr_iter(b'#', text) {
        let id = text[start + 1..]
            .iter()
            .take(MAX_ID + 1)
            .take_while(|&&b| is_id_byte(b))
            .count();
        if id == 0 || id > MAX_ID || text.get(start + 1 + id) != Some(&b'#') {
            continue;
        }
        let run_start = start + id + 2;
        let run = text[run_start..]
            .iter()
            .take(GENERIC_MIN_BASE64)
            .take_while(|&&b| is_base64_byte(b))
            .count();
        if run >= GENERIC_MIN_BASE64 {
            return true;
        }
    }
    false
}

/// `text` under NFKC when normalisation changes it, else `None`. ASCII text is always
/// normal, so the common case costs one pass over the bytes.
pub fn compatibility_form(text: &str) -> Option<String> {
    if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes {
        return None;
    }
    let normal: String = text.nfkc().collect();
    (normal != text).then_some(normal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_shape() {
        let b64 = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlq";
        assert!(looks_like_envelope(format!("#07#{b64}#70#").as_bytes()));
        assert!(looks_like_envelope(
            format!("x #old-key_1#{b64}").as_bytes()
        ));
        assert!(looks_like_envelope(format!("##a#{b64}").as_bytes()));
        assert!(!looks_like_envelope(format!("#07# {b64}").as_bytes()));
        assert!(!looks_like_envelope(b"#07#short"));
        assert!(!looks_like_envelope(b"see issue #12# for details"));
        let long_id = "a".repeat(33);
        assert!(!looks_like_envelope(format!("#{long_id}#{b64}").as_bytes()));
        assert!(!looks_like_envelope(b"####"));
    }

    #[test]
    fn compatibility() {
        assert_eq!(compatibility_form("plain"), None);
        assert_eq!(compatibility_form("café"), None);
        assert_eq!(
            compatibility_form("\u{FF03}\u{FF10}\u{FF11}\u{FF03}").as_deref(),
            Some("#01#")
        );
        assert_eq!(
            compatibility_form("\u{FE5F}01\u{FE5F}").as_deref(),
            Some("#01#")
        );
    }
}
