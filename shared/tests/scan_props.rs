//! Property tests for the scanner: random text with envelopes inserted yields exactly those
//! envelopes; arbitrary bytes never panic and yield ordered, in-bounds, non-overlapping items.

use fle_shared::write_v1;
use fle_shared::{Envelope, KeyId, KeyKind, Marker, MarkerPair};
use fle_shared::{ScanItem, ScanKey, Scanner};
use proptest::prelude::*;

fn scanner() -> Scanner {
    let k1: KeyId = "01".parse().unwrap();
    let k2: KeyId = "k2".parse().unwrap();
    Scanner::new(vec![
        ScanKey {
            markers: MarkerPair::default_for(&k1),
            id: k1,
            kind: KeyKind::Rsa { modulus_len: 256 },
        },
        ScanKey {
            markers: MarkerPair {
                prefix: Marker::new("<k2>").unwrap(),
                suffix: Marker::new("</k2>").unwrap(),
            },
            id: k2,
            kind: KeyKind::Rsa { modulus_len: 384 },
        },
    ])
    .unwrap()
}

/// Filler made of pieces that look like parts of envelopes: markers, half markers, base64.
fn filler() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "#", "0", "1", "#01", "#10#", "#01#", "01#", "<k2", "<k2>", "</k2>", "k2>", "AAAA", "QUJD",
        "=", "==", "/", "+", " ", "\"", "é", "✓", "\n", "\\", "{", "}", "#99#", "##",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn envelope() -> impl Strategy<Value = (bool, Vec<u8>)> {
    any::<bool>().prop_flat_map(|first| {
        let len = if first { 256 } else { 384 };
        (Just(first), prop::collection::vec(any::<u8>(), len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn finds_exactly_the_inserted_envelopes(
        parts in prop::collection::vec((filler(), envelope()), 0..6),
        tail in filler(),
    ) {
        let scanner = scanner();
        let keys = scanner.keys();
        let mut text = String::new();
        let mut expected = Vec::new();
        for (fill, (first, ct)) in &parts {
            text.push_str(fill);
            let key = if *first { &keys[0] } else { &keys[1] };
            let start = text.len();
            write_v1(&key.markers, ct, &mut text);
            expected.push((start..text.len(), key.id.clone(), ct.clone()));
        }
        text.push_str(&tail);

        let mut found = Vec::new();
        for item in scanner.scan_str(&text) {
            let span = item.span();
            prop_assert!(text.is_char_boundary(span.start) && text.is_char_boundary(span.end));
            match item {
                ScanItem::Envelope(f) => {
                    let Envelope::V1 { rsa_ciphertext } = f.envelope else { unreachable!() };
                    found.push((f.span, f.key.clone(), rsa_ciphertext));
                }
                ScanItem::Malformed(m) => {
                    for (span, _, _) in &expected {
                        prop_assert!(m.span.end <= span.start || m.span.start >= span.end,
                            "malformed {:?} overlaps envelope {:?}", m.span, span);
                    }
                }
            }
        }
        prop_assert_eq!(found, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'#'), Just(b'0'), Just(b'1'), Just(b'A'), Just(b'<')], 0..600),
    ) {
        let scanner = scanner();
        let mut last_end = 0;
        for item in scanner.scan(&bytes) {
            let span = item.span();
            prop_assert!(span.start >= last_end && span.start < span.end && span.end <= bytes.len());
            last_end = span.end;
            if let ScanItem::Envelope(f) = item {
                let key = scanner.keys().iter().find(|k| &k.id == f.key).unwrap();
                prop_assert!(bytes[f.span.clone()].starts_with(key.markers.prefix.as_bytes()));
                prop_assert!(bytes[f.span.clone()].ends_with(key.markers.suffix.as_bytes()));
            }
        }
    }
}

/// Items with stream offsets, comparable across whole and chunked scans.
fn owned(items: Vec<ScanItem<'_>>, offset: usize) -> Vec<(std::ops::Range<usize>, String)> {
    items
        .into_iter()
        .map(|item| {
            let span = item.span();
            let what = match item {
                ScanItem::Envelope(f) => format!("ok {} {:?}", f.key, f.envelope),
                ScanItem::Malformed(m) => format!("bad {} {:?}", m.key, m.problem),
            };
            (span.start + offset..span.end + offset, what)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Chunk boundaries anywhere (inside markers, payloads, suffixes): the settled regions
    /// rebuild the text and their items are exactly those of one whole scan.
    #[test]
    fn streaming_matches_one_scan(
        parts in prop::collection::vec((filler(), envelope()), 0..5),
        tail in filler(),
        chunks in prop::collection::vec(1usize..700, 1..40),
    ) {
        let scanner = scanner();
        let keys = scanner.keys();
        let mut text = String::new();
        for (fill, (first, ct)) in &parts {
            text.push_str(fill);
            write_v1(&(if *first { &keys[0] } else { &keys[1] }).markers, ct, &mut text);
        }
        text.push_str(&tail);
        let whole = owned(scanner.scan_str(&text).collect(), 0);

        let mut stream = fle_shared::StreamScanner::new(&scanner);
        let (mut rebuilt, mut items) = (Vec::new(), Vec::new());
        let mut rest = text.as_bytes();
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            let region = stream.push(&rest[..n]);
            prop_assert_eq!(region.offset as usize, rebuilt.len());
            rebuilt.extend_from_slice(region.text);
            items.extend(owned(region.items, region.offset as usize));
            rest = &rest[n..];
            prop_assert!(stream.pending() <= 700 + 4 + 512 + 5, "pending {}", stream.pending());
        }
        let region = stream.finish();
        prop_assert_eq!(region.offset as usize, rebuilt.len());
        rebuilt.extend_from_slice(region.text);
        items.extend(owned(region.items, region.offset as usize));
        prop_assert_eq!(rebuilt, text.as_bytes());
        prop_assert_eq!(items, whole);
    }
}

#[test]
fn an_endless_candidate_is_settled_with_bounded_memory() {
    let scanner = scanner();
    let mut stream = fle_shared::StreamScanner::new(&scanner);
    let mut malformed = 0;
    let region = stream.push(b"x #01#");
    assert!(region.items.is_empty());
    // The longest envelope is a version-2 envelope of a 1 MiB value (about 1.4 MB): an endless
    // base64 run is settled once it is longer, and memory stays below that plus a chunk.
    let longest = 8 + KeyKind::Rsa { modulus_len: 384 }.v2_max_payload_len();
    for _ in 0..2000 {
        let region = stream.push(&[b'A'; 1000]);
        malformed += region.items.len();
        assert!(stream.pending() < longest + 2000, "{}", stream.pending());
    }
    assert_eq!(malformed, 1);
    assert!(stream.finish().items.is_empty());
}
