//! The strict JSON walker (`fle_shared::body::json::walk`):
//! - a visitor that rewrites nothing gives the input back byte for byte;
//! - what the walker accepts, serde_json accepts (the walker is strict RFC 8259);
//! - what serde_json parses into a `Value` within the depth limit, the walker accepts (serde_json
//!   refuses lone surrogates into a `Value` too; numbers out of range it refuses, the walker
//!   copies, so that direction is only asserted from serde_json's side);
//! - a visitor that selects members by name gets compact JSON for non-string values, and the
//!   rewritten document is the same JSON value.
#![no_main]

use fle_shared::body::json::{walk, JsonError, Selected, StringToken, Visitor};
use fle_shared::body::{Seg, MAX_DEPTH};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Copy;
impl Visitor for Copy {
    type Error = JsonError;
}

/// Selects members whose name starts with `s`; writes string values as they were and other
/// values as their compact text.
struct Select {
    strings: usize,
}
impl Visitor for Select {
    type Error = JsonError;
    fn selects(&mut self, path: &[Seg<'_>]) -> bool {
        matches!(path.last(), Some(Seg::Key(k)) if k.starts_with('s'))
    }
    fn selected(
        &mut self,
        _: &[Seg<'_>],
        value: Selected<'_>,
        out: &mut String,
    ) -> Result<(), JsonError> {
        match value {
            Selected::String(t) => {
                assert!(t.raw.starts_with('"') && t.raw.ends_with('"') && t.raw.len() >= 2);
                out.push_str(t.raw)
            }
            Selected::Json(text) => {
                assert!(
                    !text
                        .bytes()
                        .any(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
                        || text.contains('"'),
                    "captured value is not compact: {text:?}"
                );
                out.push_str(text)
            }
        }
        Ok(())
    }
    fn string(
        &mut self,
        _: &[Seg<'_>],
        token: StringToken<'_>,
        out: &mut String,
    ) -> Result<(), JsonError> {
        self.strings += 1;
        // The unescaped value is what serde_json reads from the literal.
        let v: String = serde_json::from_str(token.raw).expect("a walker string is a JSON string");
        assert_eq!(v, token.value, "unescaped value differs from serde_json's");
        out.push_str(token.raw);
        Ok(())
    }
}

/// Deepest nesting of arrays and objects (ignoring brackets inside strings).
fn depth(text: &str) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0, false, false);
    for b in text.bytes() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                d += 1;
                max = max.max(d);
            }
            b']' | b'}' => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = std::str::from_utf8(data) else {
        return;
    };
    let mut out = String::new();
    let walked = walk(doc, &mut Copy, &mut out);
    let ignored = serde_json::from_str::<serde::de::IgnoredAny>(doc);
    let value = serde_json::from_str::<Value>(doc);
    let shallow = depth(doc) < MAX_DEPTH - 2;
    match &walked {
        Ok(()) => {
            assert_eq!(
                out, doc,
                "walking with a copying visitor changed the document"
            );
            if shallow {
                assert!(
                    ignored.is_ok(),
                    "walker accepts, serde_json refuses: {ignored:?}"
                );
            }
        }
        Err(e) => {
            if shallow {
                assert!(value.is_err(), "serde_json parses, walker refuses: {e}");
            }
            if let JsonError::Syntax { offset, .. } = e {
                assert!(*offset <= doc.len());
            }
        }
    }
    let mut sel = Select { strings: 0 };
    let mut out2 = String::new();
    let walked2 = walk(doc, &mut sel, &mut out2);
    assert_eq!(
        walked.is_ok(),
        walked2.is_ok(),
        "selection changed validity"
    );
    if walked2.is_ok() {
        if let (Ok(a), Ok(b)) = (&value, serde_json::from_str::<Value>(&out2)) {
            assert_eq!(*a, b, "selected values change the document");
        }
    }
});
