//! The scanner and envelope decoder on arbitrary bytes: items in bounds, ordered and
//! non-overlapping; every envelope re-encodes to its span; every malformed item starts with its
//! key's prefix; no well-formed envelope is hidden by a bad candidate; `find_prefix` and
//! `contains_prefix` agree with the scan. The first byte picks the keyring: the demo key
//! (RSA-2048, 344-character payloads) or tiny keys (3 to 5 byte "moduli") with default,
//! palindromic and custom markers, so the fuzzer can write real envelopes.
#![no_main]

use std::sync::OnceLock;

use fle_fuzz::scan_key as key;
use fle_shared::{is_payload_byte, write_v1, Envelope};
use fle_shared::{Keyring, ScanItem};
use fle_shared::{ScanKey, Scanner};
use libfuzzer_sys::fuzz_target;

struct Fixtures {
    demo: Keyring,
    tiny: Vec<Scanner>,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        demo: fle_fuzz::demo_keyring(),
        tiny: vec![
            Scanner::new(vec![key("01", None, 3), key("02", None, 4)]).unwrap(),
            Scanner::new(vec![key("11", None, 3)]).unwrap(),
            Scanner::new(vec![
                key("k", Some(("<enc>", "</enc>")), 3),
                key("k0", Some(("!0!", "!!")), 5),
                key("k1", Some(("~1~", "~~")), 3),
                key("k2", Some(("%2%", "%%")), 4),
                key("k3", Some(("&3&", "&&")), 3),
            ])
            .unwrap(),
            Scanner::new(vec![
                key("a", Some(("#a#", "#a#")), 3),
                key("b", Some(("@", "@@")), 3),
            ])
            .unwrap(),
        ],
    })
}

/// The well-formed envelope of `key` starting at `at`, if there is one: its end.
fn envelope_at(text: &[u8], at: usize, key: &ScanKey) -> Option<usize> {
    let rest = text.get(at..)?;
    let p = key.markers.prefix.as_bytes();
    if !rest.starts_with(p) {
        return None;
    }
    let payload_end = p.len()
        + rest[p.len()..]
            .iter()
            .position(|&b| !is_payload_byte(b))
            .unwrap_or(rest.len() - p.len());
    let payload = &rest[p.len()..payload_end];
    let s = key.markers.suffix.as_bytes();
    if rest[payload_end..].starts_with(s) && Envelope::decode_payload(payload, key.kind).is_ok() {
        Some(at + payload_end + s.len())
    } else {
        None
    }
}

fn check(scanner: &Scanner, text: &[u8]) {
    let items: Vec<ScanItem<'_>> = scanner.scan(text).collect();
    let mut last_end = 0;
    for item in &items {
        let span = item.span();
        assert!(
            span.start >= last_end,
            "items overlap or are out of order: {items:?}"
        );
        assert!(
            span.start < span.end && span.end <= text.len(),
            "span {span:?} out of bounds"
        );
        last_end = span.end;
        match item {
            ScanItem::Envelope(found) => {
                let key = scanner.keys().iter().find(|k| &k.id == found.key).unwrap();
                let mut again = String::new();
                match &found.envelope {
                    Envelope::V1 { rsa_ciphertext } => {
                        let fle_shared::KeyKind::Rsa { modulus_len } = key.kind else {
                            panic!("a version-1 envelope under a key that is not RSA")
                        };
                        assert_eq!(rsa_ciphertext.len(), modulus_len);
                        write_v1(&key.markers, rsa_ciphertext, &mut again);
                    }
                    Envelope::V2(token) => {
                        use base64::Engine;
                        again.push_str(key.markers.prefix.as_str());
                        base64::engine::general_purpose::STANDARD
                            .encode_string(token.as_bytes(), &mut again);
                        again.push_str(key.markers.suffix.as_str());
                    }
                    _ => panic!("unknown envelope version"),
                }
                assert_eq!(
                    again.as_bytes(),
                    &text[span],
                    "envelope does not re-encode to its span"
                );
            }
            ScanItem::Malformed(m) => {
                let key = scanner.keys().iter().find(|k| &k.id == m.key).unwrap();
                assert!(
                    text[span.start..].starts_with(key.markers.prefix.as_bytes()),
                    "malformed item does not start with its prefix"
                );
            }
        }
    }
    // The first item is at the first prefix; there are items iff there is a prefix.
    let first = scanner.find_prefix(text, 0).map(|(at, _)| at);
    assert_eq!(first, items.first().map(|i| i.span().start));
    assert_eq!(scanner.contains_prefix(text), !items.is_empty());
    // No well-formed envelope is hidden, unless it starts inside another envelope.
    for at in 0..text.len() {
        for key in scanner.keys() {
            let Some(end) = envelope_at(text, at, key) else {
                continue;
            };
            let inside_envelope = items.iter().any(|i| {
                matches!(i, ScanItem::Envelope(_)) && i.span().start < at && at < i.span().end
            });
            if inside_envelope {
                continue;
            }
            assert!(
                items
                    .iter()
                    .any(|i| matches!(i, ScanItem::Envelope(f) if f.span == (at..end))),
                "envelope at {at}..{end} not reported: {items:?}"
            );
        }
    }
    if let Ok(s) = std::str::from_utf8(text) {
        assert_eq!(scanner.scan_str(s).collect::<Vec<_>>(), items);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    match usize::from(which) % (f.tiny.len() + 1) {
        0 => check(f.demo.scanner(), text),
        n => check(&f.tiny[n - 1], text),
    }
});
