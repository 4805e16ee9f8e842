//! The form codec (`fle_shared::body::form`): `decode(encode(x)) == x` for any bytes, encoded
//! text uses only the unreserved set, `+` and `%XX`; `pairs` covers the body exactly (joined
//! with `&` the raw pairs give the body back, offsets point at each name and value); decoding a
//! raw part never panics, and a decoded part re-encodes to text that decodes to it again.
#![no_main]

use fle_shared::body::form::{decode, encode_into, pairs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any bytes round-trip.
    let mut enc = String::new();
    encode_into(data, &mut enc);
    assert!(enc
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"*-._+%".contains(&b)));
    let back = decode(&enc, 0).expect("encoded text decodes");
    assert_eq!(&*back, data);

    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let mut joined = String::new();
    let mut expected_offset = 0;
    for (i, p) in pairs(body).enumerate() {
        if i > 0 {
            joined.push('&');
        }
        assert_eq!(p.offset, expected_offset);
        assert!(body[p.offset..].starts_with(p.name));
        assert!(!p.name.contains('&') && !p.name.contains('='));
        joined.push_str(p.name);
        let mut len = p.name.len();
        if let Some(v) = p.value {
            assert_eq!(&body[p.value_offset() - 1..p.value_offset()], "=");
            assert!(body[p.value_offset()..].starts_with(v));
            assert!(!v.contains('&'));
            joined.push('=');
            joined.push_str(v);
            len += 1 + v.len();
        }
        expected_offset += len + 1;
        for (raw, offset) in [
            (p.name, p.offset),
            (p.value.unwrap_or(""), p.value_offset()),
        ] {
            match decode(raw, offset) {
                Ok(bytes) => {
                    let mut again = String::new();
                    encode_into(&bytes, &mut again);
                    assert_eq!(decode(&again, 0).unwrap(), bytes);
                    if !raw.contains(['%', '+']) {
                        assert_eq!(&*bytes, raw.as_bytes());
                    }
                }
                Err(e) => {
                    assert!(raw.contains('%'));
                    assert!(e.offset >= offset && e.offset < offset + raw.len());
                    assert_eq!(body.as_bytes()[e.offset], b'%');
                }
            }
        }
    }
    assert_eq!(joined, body, "pairs do not cover the body");
});
