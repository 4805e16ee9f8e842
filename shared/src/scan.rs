//! Finding envelopes in arbitrary text, in one pass.
//!
//! [`Scanner`] looks for the keyring's prefixes, then reads the base64 payload that follows and
//! expects the key's suffix right after it. It yields, left to right and without overlap:
//!
//! - [`ScanItem::Envelope`] for each well-formed envelope, already decoded;
//! - [`ScanItem::Malformed`] where a prefix starts something that is not a valid envelope: no
//!   suffix after the payload, text ending inside the envelope, or a payload of the wrong length
//!   or not canonical base64. A stray prefix never hides an envelope that follows or overlaps it.
//!
//! Text that contains no configured prefix yields nothing: stray `#`, unknown markers such as
//! `#99#` and arbitrary binary data are skipped.
//!
//! # Guarantees
//!
//! - Linear time, never panics, allocates only for each envelope found (its decoded ciphertext).
//! - Jumps between candidate bytes with `memchr` when the keyring's prefixes start with at most
//!   three distinct bytes (the default markers all start with `#`), so marker-free text is
//!   scanned at memchr speed.
//! - Spans are byte ranges. On `&str` input they always fall on character boundaries, since
//!   markers and payloads are ASCII.
//!
//! ```
//! use fle_shared::{KeyKind, ScanItem, ScanKey, Scanner};
//! use fle_shared::MarkerPair;
//!
//! let id = "01".parse().unwrap();
//! let scanner = Scanner::new(vec![ScanKey { markers: MarkerPair::default_for(&id), id, kind: KeyKind::Rsa { modulus_len: 3 } }]).unwrap();
//! let items: Vec<_> = scanner.scan_str("a #01#AAEC#10# b #01#oops").collect();
//! assert!(matches!(&items[0], ScanItem::Envelope(f) if f.span == (2..14)));
//! assert!(matches!(&items[1], ScanItem::Malformed(m) if m.span == (17..25)));
//! ```

use std::ops::Range;

use crate::alphabet::is_payload_byte;
use crate::envelope::{Envelope, EnvelopeError};
use crate::key::{check_marker_overlap, KeyId, MarkerOverlap, MarkerPair};
use crate::v2::KeyKind;

/// What the scanner needs to know about one key.
#[derive(Debug, Clone)]
pub struct ScanKey {
    /// The key's id, reported with each envelope.
    pub id: KeyId,
    /// The key's markers.
    pub markers: MarkerPair,
    /// The kind of key (RSA and its modulus length, or P-256), which fixes how payloads are
    /// read.
    pub kind: KeyKind,
}

/// Finds a set of keys' envelopes in text. Build once, scan many texts; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Scanner {
    keys: Vec<ScanKey>,
    first_bytes: FirstBytes,
}

#[derive(Debug, Clone)]
enum FirstBytes {
    One(u8),
    Two(u8, u8),
    Three(u8, u8, u8),
    Many(Box<[bool; 256]>),
}

impl FirstBytes {
    fn new(bytes: &[u8]) -> Self {
        let mut distinct: Vec<u8> = bytes.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        match *distinct.as_slice() {
            [a] => FirstBytes::One(a),
            [a, b] => FirstBytes::Two(a, b),
            [a, b, c] => FirstBytes::Three(a, b, c),
            _ => {
                let mut table = Box::new([false; 256]);
                for &b in &distinct {
                    table[usize::from(b)] = true;
                }
                FirstBytes::Many(table)
            }
        }
    }
}

/// Why a [`Scanner`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// No key.
    #[error("a scanner needs at least one key")]
    NoKeys,
    /// Two keys' markers overlap.
    #[error(transparent)]
    Overlap(#[from] MarkerOverlap),
}

impl Scanner {
    /// A scanner for these keys. Fails if there are none, or if a marker of one key equals or is
    /// a prefix of a marker of another (the same rule as [`Keyring`](crate::Keyring)); a keyring
    /// builds its own, see [`Keyring::scanner`](crate::Keyring::scanner).
    pub fn new(keys: Vec<ScanKey>) -> Result<Self, ScanError> {
        if keys.is_empty() {
            return Err(ScanError::NoKeys);
        }
        let markers: Vec<(&KeyId, &MarkerPair)> =
            keys.iter().map(|k| (&k.id, &k.markers)).collect();
        check_marker_overlap(&markers)?;
        let firsts: Vec<u8> = keys
            .iter()
            .map(|k| k.markers.prefix.as_bytes()[0])
            .collect();
        Ok(Scanner {
            first_bytes: FirstBytes::new(&firsts),
            keys,
        })
    }

    /// A scanner for keys whose markers [`Keyring::new`](crate::Keyring::new) has already checked.
    pub(crate) fn for_checked_keys(keys: Vec<ScanKey>) -> Self {
        let firsts: Vec<u8> = keys
            .iter()
            .map(|k| k.markers.prefix.as_bytes()[0])
            .collect();
        // A keyring is non-empty and its markers are already checked.
        Scanner {
            first_bytes: FirstBytes::new(&firsts),
            keys,
        }
    }

    /// Iterates over the envelopes (and malformed envelopes) in `text`.
    pub fn scan<'s, 't>(&'s self, text: &'t [u8]) -> ScanIter<'s, 't> {
        ScanIter {
            scanner: self,
            text,
            pos: 0,
        }
    }

    /// Same as [`scan`](Self::scan), for text; spans fall on character boundaries.
    pub fn scan_str<'s, 't>(&'s self, text: &'t str) -> ScanIter<'s, 't> {
        self.scan(text.as_bytes())
    }

    /// The first position at or after `from` where a configured prefix starts, with its key
    /// (for callers that rewrite or neutralise prefixes in untrusted text).
    pub fn find_prefix(&self, text: &[u8], from: usize) -> Option<(usize, &ScanKey)> {
        self.next_prefix(text, from, text.len())
    }

    /// Whether `text` contains any configured prefix at all (the cheap test for marker
    /// injection: a plaintext value that contains a prefix must not be encrypted or forwarded).
    pub fn contains_prefix(&self, text: &[u8]) -> bool {
        self.next_prefix(text, 0, text.len()).is_some()
    }

    /// The first position in `pos..limit` where a configured prefix starts, with its key.
    ///
    /// memchr's iterators keep their state between candidates, which matters on text with many
    /// candidate bytes that start no prefix (a stray `#` every few bytes).
    #[inline(always)]
    fn next_prefix(&self, text: &[u8], pos: usize, limit: usize) -> Option<(usize, &ScanKey)> {
        let hay = text.get(pos..limit)?;
        let at = |offset: usize| {
            let rest = &text[pos + offset..];
            self.keys
                .iter()
                .find(|k| rest.starts_with(k.markers.prefix.as_bytes()))
                .map(|k| (pos + offset, k))
        };
        match self.first_bytes {
            FirstBytes::One(a) => memchr::memchr_iter(a, hay).find_map(at),
            FirstBytes::Two(a, b) => memchr::memchr2_iter(a, b, hay).find_map(at),
            FirstBytes::Three(a, b, c) => memchr::memchr3_iter(a, b, c, hay).find_map(at),
            FirstBytes::Many(ref table) => hay
                .iter()
                .enumerate()
                .filter(|&(_, &b)| table[usize::from(b)])
                .find_map(|(offset, _)| at(offset)),
        }
    }

    /// The keys this scanner knows.
    pub fn keys(&self) -> &[ScanKey] {
        &self.keys
    }
}

/// One thing the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem<'s> {
    /// A well-formed envelope.
    Envelope(FoundEnvelope<'s>),
    /// A configured prefix that does not start a well-formed envelope.
    Malformed(MalformedEnvelope<'s>),
}

impl ScanItem<'_> {
    /// The byte range of the item in the scanned text.
    pub fn span(&self) -> Range<usize> {
        match self {
            ScanItem::Envelope(f) => f.span.clone(),
            ScanItem::Malformed(m) => m.span.clone(),
        }
    }
}

/// A well-formed envelope found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundEnvelope<'s> {
    /// Byte range of the whole envelope, markers included.
    pub span: Range<usize>,
    /// The key its markers name.
    pub key: &'s KeyId,
    /// The decoded envelope.
    pub envelope: Envelope,
}

/// A configured prefix that does not start a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedEnvelope<'s> {
    /// Byte range from the prefix to where the envelope stops making sense.
    pub span: Range<usize>,
    /// The key the prefix names.
    pub key: &'s KeyId,
    /// What is wrong.
    pub problem: MalformedReason,
}

/// What is wrong with a malformed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// The text ends before the envelope does.
    #[error("truncated envelope: the text ends before its suffix")]
    Truncated,
    /// The payload is followed by something other than the key's suffix.
    #[error("envelope without its suffix")]
    MissingSuffix,
    /// Markers are right but the payload is not a valid envelope.
    #[error(transparent)]
    InvalidPayload(#[from] EnvelopeError),
}

/// Iterator returned by [`Scanner::scan`].
#[derive(Debug, Clone)]
pub struct ScanIter<'s, 't> {
    scanner: &'s Scanner,
    text: &'t [u8],
    pos: usize,
}

impl<'s> Iterator for ScanIter<'s, '_> {
    type Item = ScanItem<'s>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let Some((start, key)) = self.scanner.next_prefix(text, self.pos, text.len()) else {
            self.pos = text.len();
            return None;
        };
        let payload_start = start + key.markers.prefix.as_bytes().len();
        let payload_end = text[payload_start..]
            .iter()
            .position(|&b| !is_payload_byte(b))
            .map_or(text.len(), |n| payload_start + n);
        let rest = &text[payload_end..];
        let suffix = key.markers.suffix.as_bytes();
        let malformed = |span, problem| {
            ScanItem::Malformed(MalformedEnvelope {
                span,
                key: &key.id,
                problem,
            })
        };
        if rest.starts_with(suffix) {
            let end = payload_end + suffix.len();
            let payload = &text[payload_start..payload_end];
            Some(match Envelope::decode_payload(payload, key.kind) {
                Ok(envelope) => {
                    self.pos = end;
                    ScanItem::Envelope(FoundEnvelope {
                        span: start..end,
                        key: &key.id,
                        envelope,
                    })
                }
                Err(e) => {
                    // The suffix just matched may borrow the start of a real envelope
                    // (`#01#10#10` + `#01#...`), and with prefix == suffix it may be one: stop
                    // the malformed span where a prefix starts, so the envelope is still found.
                    let stop = self
                        .scanner
                        .next_prefix(text, start + 1, end)
                        .map_or(end, |(next, _)| next);
                    self.pos = stop;
                    malformed(start..stop, MalformedReason::InvalidPayload(e))
                }
            })
        } else if rest.len() < suffix.len() && suffix.starts_with(rest) {
            self.pos = text.len();
            Some(malformed(start..text.len(), MalformedReason::Truncated))
        } else {
            // Another prefix may overlap this one (`#01` + `#01#...`): stop the malformed span
            // where it starts, so items never overlap. A payload holds no prefix's first byte,
            // so such a prefix starts inside this prefix, and the search stays linear.
            let end = self
                .scanner
                .next_prefix(text, start + 1, payload_end)
                .map_or(payload_end, |(next, _)| next);
            self.pos = end;
            Some(malformed(start..end, MalformedReason::MissingSuffix))
        }
    }
}

impl std::iter::FusedIterator for ScanIter<'_, '_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::write_v1;
    use crate::key::Marker;

    fn key(id: &str, modulus_len: usize) -> ScanKey {
        let id: KeyId = id.parse().unwrap();
        ScanKey {
            markers: MarkerPair::default_for(&id),
            id,
            kind: KeyKind::Rsa { modulus_len },
        }
    }

    fn env(id: &str, ct: &[u8]) -> String {
        let mut s = String::new();
        write_v1(&MarkerPair::default_for(&id.parse().unwrap()), ct, &mut s);
        s
    }

    fn kinds(scanner: &Scanner, text: &str) -> Vec<(Range<usize>, String)> {
        scanner
            .scan_str(text)
            .map(|i| match i {
                ScanItem::Envelope(f) => (f.span, format!("ok {}", f.key)),
                ScanItem::Malformed(m) => (m.span, format!("{:?} {}", m.problem, m.key)),
            })
            .collect()
    }

    #[test]
    fn adjacent_stray_unknown_truncated() {
        let s = Scanner::new(vec![key("01", 6), key("02", 6)]).unwrap();
        let a = env("01", b"abcdef");
        let b = env("02", b"ghijkl");
        assert_eq!(a, "#01#YWJjZGVm#10#");
        // Adjacent envelopes.
        let text = format!("{a}{b}{a}");
        assert_eq!(
            kinds(&s, &text),
            vec![
                (0..16, "ok 01".into()),
                (16..32, "ok 02".into()),
                (32..48, "ok 01".into())
            ]
        );
        // Stray '#', unknown markers and a half marker are ignored.
        let text = format!("## #0 #99#YWJjZGVm#99# {a}#");
        assert_eq!(kinds(&s, &text), vec![(23..39, "ok 01".into())]);
        // A prefix overlapping the envelope's own: reported up to where the real one starts.
        let text = format!("#01{a}");
        assert_eq!(
            kinds(&s, &text),
            vec![(0..3, "MissingSuffix 01".into()), (3..19, "ok 01".into())]
        );
        // A stray prefix right before an envelope does not hide it.
        let text = format!("#01#{a}");
        assert_eq!(
            kinds(&s, &text),
            vec![(0..4, "MissingSuffix 01".into()), (4..20, "ok 01".into())]
        );
        // Truncated inside the payload and inside the suffix.
        assert_eq!(kinds(&s, "x#01#YWJj"), vec![(1..9, "Truncated 01".into())]);
        assert_eq!(
            kinds(&s, "#01#YWJjZGVm#1"),
            vec![(0..14, "Truncated 01".into())]
        );
        assert_eq!(kinds(&s, "#01#"), vec![(0..4, "Truncated 01".into())]);
        // Wrong suffix (another key's), wrong length, bad base64.
        assert_eq!(
            kinds(&s, "#01#YWJjZGVm#20#"),
            vec![(0..12, "MissingSuffix 01".into())]
        );
        assert!(kinds(&s, "#01#YWJj#10#")[0]
            .1
            .starts_with("InvalidPayload(UnsupportedLength"));
        assert_eq!(
            kinds(&s, "#01#YWJjZGV=#10#")[0].1,
            "InvalidPayload(InvalidBase64) 01"
        );
        assert_eq!(
            kinds(&s, "#01#YW=jZGVm#10#")[0].1,
            "InvalidPayload(InvalidBase64) 01"
        );
    }

    #[test]
    fn a_bad_candidate_never_swallows_the_start_of_an_envelope() {
        // Found by the property test: the candidate's suffix "#10#" ends with the '#' that
        // starts the real envelope.
        let s = Scanner::new(vec![key("01", 6)]).unwrap();
        let a = env("01", b"abcdef");
        let text = format!("#01#10#10{a}");
        assert_eq!(
            kinds(&s, &text),
            vec![
                (
                    0..9,
                    "InvalidPayload(UnsupportedLength { len: 2, expected: 8 }) 01".into()
                ),
                (9..25, "ok 01".into())
            ]
        );
        // With prefix == suffix, a bad envelope's suffix can be the next envelope's prefix.
        let s = Scanner::new(vec![key("11", 3)]).unwrap();
        let items = kinds(&s, "#11#bad#11#AAAA#11#");
        assert_eq!(items[1], (7..19, "ok 11".into()), "{items:?}");
    }

    #[test]
    fn palindromic_id_and_custom_markers() {
        let s = Scanner::new(vec![key("11", 3)]).unwrap();
        let text = "#11#AAAA#11##11#AAAA#11#";
        assert_eq!(
            kinds(&s, text),
            vec![(0..12, "ok 11".into()), (12..24, "ok 11".into())]
        );

        let id: KeyId = "k".parse().unwrap();
        let markers = MarkerPair {
            prefix: Marker::new("<enc>").unwrap(),
            suffix: Marker::new("</enc>").unwrap(),
        };
        let mut many = vec![ScanKey {
            id,
            markers,
            kind: KeyKind::Rsa { modulus_len: 3 },
        }];
        for (i, c) in ["!", "~", "%", "&"].iter().enumerate() {
            let id: KeyId = format!("k{i}").parse().unwrap();
            let markers = MarkerPair {
                prefix: Marker::new(&format!("{c}{i}{c}")).unwrap(),
                suffix: Marker::new(&format!("{c}{c}")).unwrap(),
            };
            many.push(ScanKey {
                id,
                markers,
                kind: KeyKind::Rsa { modulus_len: 3 },
            });
        }
        let s = Scanner::new(many).unwrap();
        assert!(matches!(s.first_bytes, FirstBytes::Many(_)));
        let text = "a<enc>AAAA</enc>b~1~AAAA~~c&3&AAAA&&";
        assert_eq!(
            kinds(&s, text),
            vec![
                (1..16, "ok k".into()),
                (17..26, "ok k1".into()),
                (27..36, "ok k3".into())
            ]
        );
    }

    #[test]
    fn overlapping_markers_are_rejected() {
        let a = key("01", 3);
        let mut b = key("02", 3);
        b.markers.prefix = Marker::new("#01#x").unwrap();
        assert!(matches!(
            Scanner::new(vec![a, b]),
            Err(ScanError::Overlap(_))
        ));
        // Key 10's prefix is key 01's suffix.
        assert!(Scanner::new(vec![key("01", 3), key("10", 3)]).is_err());
        assert!(Scanner::new(vec![]).is_err());
    }

    #[test]
    fn binary_and_non_utf8_input() {
        let s = Scanner::new(vec![key("01", 3)]).unwrap();
        let mut text = vec![0xff, b'#', 0x80, b'#', b'0', b'1', b'#'];
        text.extend_from_slice(b"AAAA#10#\xc3");
        let items: Vec<_> = s.scan(&text).collect();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].span(), 3..15);
        assert!(s.contains_prefix(&text));
        assert!(!s.contains_prefix(b"#0#1#10#"));
    }
}
