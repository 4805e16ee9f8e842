//! The JSON body rewriter: fle-shared's validating walker copies the body byte for byte (key
//! order, number formatting and whitespace included) and this visitor replaces the selected
//! values with envelopes and checks every other string for markers.
//!
//! Strict RFC 8259: anything else (trailing commas, comments, NaN, lone surrogates, control
//! characters in strings, trailing data) is a syntax error, so a body the edge cannot fully
//! understand is never forwarded.

use std::borrow::Cow;

use fle_shared::body::json::{self, Selected, StringToken, Visitor};
use fle_shared::body::Seg;
use zeroize::Zeroizing;

use crate::body::{BodyError, Field, Rules, JSON_VALUE_TAG};

/// Rewrites `body`, appending the result to `out`; returns how many values were encrypted.
pub(crate) fn rewrite(body: &str, rules: &Rules<'_>, out: &mut String) -> Result<usize, BodyError> {
    let mut visitor = Encrypting {
        rules,
        key: None,
        refused: None,
        encrypted: 0,
    };
    json::walk(body, &mut visitor, out)?;
    Ok(visitor.encrypted)
}

struct Encrypting<'a, 'e> {
    rules: &'a Rules<'e>,
    /// The field of the value `selects` last selected.
    key: Option<Field<'e>>,
    /// Why `selects` took a value it must refuse (the walker hands it to `selected`, which
    /// returns this error).
    refused: Option<BodyError>,
    encrypted: usize,
}

impl Visitor for Encrypting<'_, '_> {
    type Error = BodyError;

    fn selects(&mut self, path: &[Seg<'_>]) -> bool {
        match self.rules.select_json(path) {
            Ok(key) => {
                self.key = key;
                key.is_some()
            }
            Err(e) => {
                self.refused = Some(e);
                true
            }
        }
    }

    fn selected(
        &mut self,
        path: &[Seg<'_>],
        value: Selected<'_>,
        out: &mut String,
    ) -> Result<(), BodyError> {
        // The walker calls `selected` right after `selects` answered yes.
        if let Some(e) = self.refused.take() {
            return Err(e);
        }
        let Some(key) = self.key.take() else {
            return Err(BodyError::Internal("no key selected"));
        };
        let written = out.len();
        match value {
            Selected::String(token) => {
                let text = self.rules.check_markers(&token.value, path)?;
                let plaintext = Zeroizing::new(text.into_owned().into_bytes());
                out.push('"');
                self.rules
                    .encrypt(key, &plaintext, path, out, written, self.encrypted)?;
            }
            // A number, boolean, null, object or array: encrypt its compact JSON text after the
            // tag byte, so the decryptor can restore the same JSON type.
            Selected::Json(compact) => {
                let mut tagged = Zeroizing::new(Vec::with_capacity(compact.len() + 1));
                tagged.push(JSON_VALUE_TAG);
                tagged.extend_from_slice(compact.as_bytes());
                out.push('"');
                self.rules
                    .encrypt_tagged(key, &tagged, path, out, written, self.encrypted)?;
            }
        }
        out.push('"');
        self.encrypted += 1;
        Ok(())
    }

    fn string(
        &mut self,
        path: &[Seg<'_>],
        token: StringToken<'_>,
        out: &mut String,
    ) -> Result<(), BodyError> {
        match self.rules.check_markers(&token.value, path)? {
            Cow::Borrowed(_) => out.push_str(token.raw),
            Cow::Owned(neutralised) => json::push_string(&neutralised, out),
        }
        Ok(())
    }
}
