//! Envelope version 2 (`docs/ENVELOPE.md` section 5) with the demo keys (`01` RSA-2048 writing
//! version 2, `02` P-256), on every input:
//!
//! 1. Opening: the input as text is scanned with both keys; every version-2 envelope found is
//!    opened with the local private key (`PrivateKey::decrypt_envelope`, and `v2_secret` +
//!    `V2Secret::open` with and without a path): never panics, opening twice gives the same
//!    result, and what opens has the token's message length and fails once a byte is flipped.
//!    The raw input also goes to the token parser (`EnvelopeV2::from_bytes`) under both kinds:
//!    the accessors agree with the bytes, its base64 decodes (`EnvelopeV2::decode_payload`,
//!    `Envelope::decode_payload`) to the same token, and opening it never panics.
//! 2. Round trip: from the input, a key, a backend and one to four values (up to 4 KiB each,
//!    optionally bound to a path) sealed in one `RequestState` through
//!    `KeyEncryptor::encrypt_in` / `encrypt_bound_in`; the output scans to exactly those
//!    envelopes (one encapsulation, indexes 0, 1, …), each opens to its value (bound: only with
//!    its path; another path, no path or another key id fails), and the token with one
//!    input-chosen byte flipped, re-encoded between the key's markers and scanned again, fails.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use fle_shared::backend;
use fle_shared::{
    DecryptError, Envelope, EnvelopeV2, EnvelopeVersion, FieldEncryptor, KeyEntry, KeyId, KeyKind,
    Keyring, OpenError, P256PublicKey, PrivateKey, RequestState, RsaPublicKey, ScanItem,
    V2_FLAG_PATH,
};
use libfuzzer_sys::fuzz_target;

const RSA_PUBLIC_PEM: &str = include_str!("../../keys/demo-01.pub.pem");
const RSA_PRIVATE_PEM: &str = include_str!("../../keys/demo-01.key.pem");
const P256_PUBLIC_PEM: &str = include_str!("../../keys/demo-02.pub.pem");
const P256_PRIVATE_PEM: &str = include_str!("../../keys/demo-02.key.pem");

const RSA_KIND: KeyKind = KeyKind::Rsa { modulus_len: 256 };
/// Largest value the round trip seals.
const MAX_VALUE_LEN: usize = 4096;

struct Fixtures {
    keyring: Keyring,
    rsa: PrivateKey,
    p256: PrivateKey,
    /// One encryptor per backend (aws-lc, rustcrypto).
    encryptors: Vec<FieldEncryptor>,
    ids: [KeyId; 2],
    /// `FLE_FUZZ_STATS=1`: print how many found envelopes each input opened.
    stats: bool,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let ids: [KeyId; 2] = ["01".parse().unwrap(), "02".parse().unwrap()];
        let keyring = Keyring::new(vec![
            KeyEntry::new(
                ids[0].clone(),
                RsaPublicKey::from_pem(RSA_PUBLIC_PEM).unwrap(),
            )
            .with_envelope(EnvelopeVersion::V2),
            KeyEntry::new(
                ids[1].clone(),
                P256PublicKey::from_pem(P256_PUBLIC_PEM).unwrap(),
            ),
        ])
        .expect("keyring");
        let encryptors = backend::all_backends()
            .into_iter()
            .map(|b| FieldEncryptor::new(&keyring, b).expect("encryptor"))
            .collect();
        Fixtures {
            keyring,
            rsa: PrivateKey::from_pem(RSA_PRIVATE_PEM).expect("RSA private key"),
            p256: PrivateKey::from_pem(P256_PRIVATE_PEM).expect("P-256 private key"),
            encryptors,
            ids,
            stats: std::env::var_os("FLE_FUZZ_STATS").is_some(),
        }
    })
}

impl Fixtures {
    fn private(&self, id: &KeyId) -> &PrivateKey {
        if id == &self.ids[0] {
            &self.rsa
        } else {
            &self.p256
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    open_found(f, data);
    parse_raw(f, data);
    round_trip(f, data);
});

/// Opens `token` (found under key `id`) with the private key: `decrypt_envelope` (no path), and
/// through its secret with `path`.
fn open(
    f: &Fixtures,
    id: &KeyId,
    token: &EnvelopeV2,
    path: Option<&[u8]>,
) -> (
    Result<fle_shared::Plaintext, DecryptError>,
    Result<fle_shared::Plaintext, DecryptError>,
) {
    let private = f.private(id);
    let whole = private.decrypt_envelope(id, &Envelope::V2(token.clone()));
    let with_path = private
        .v2_secret(token)
        .and_then(|s| s.open(id, token, path).map_err(DecryptError::from));
    (whole, with_path)
}

/// Part 1: every version-2 envelope in the input opens deterministically, or not at all.
fn open_found(f: &Fixtures, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path: &[u8] = b"ssn";
    let mut opened_count = 0;
    for item in f.keyring.scanner().scan_str(&text) {
        let ScanItem::Envelope(found) = item else {
            continue;
        };
        let Envelope::V2(token) = &found.envelope else {
            continue;
        };
        let kind = if found.key == &f.ids[0] {
            RSA_KIND
        } else {
            KeyKind::P256
        };
        assert_eq!(token.kind(), kind);
        let first = open(f, found.key, token, Some(path));
        let second = open(f, found.key, token, Some(path));
        assert_eq!(first, second, "opening is deterministic");
        let (whole, with_path) = first;
        if token.path_bound() {
            assert!(whole.is_err(), "a bound token opened without its path");
            if with_path.is_ok() {
                assert_eq!(whole, Err(DecryptError::V2(OpenError::PathRequired)));
            }
        } else {
            assert_eq!(whole, with_path, "the path is ignored without the flag");
        }
        for opened in [&whole, &with_path] {
            let Ok(plaintext) = opened else { continue };
            opened_count += 1;
            assert_eq!(plaintext.len(), token.message_len());
            // A token that opens stops opening when any byte changes: flip one chosen by the
            // input (rare: the input holds a validly sealed token).
            let bytes = token.as_bytes();
            let at = data.len() % bytes.len();
            let mask = data.first().copied().unwrap_or(1).max(1);
            let mut flipped = bytes.to_vec();
            flipped[at] ^= mask;
            if let Ok(t) = EnvelopeV2::from_bytes(flipped, kind) {
                let (w, p) = open(f, found.key, &t, Some(path));
                assert!(
                    w.is_err() && p.is_err(),
                    "flipped byte {at} ^ {mask:#04x} opened"
                );
            }
        }
    }
    if f.stats {
        eprintln!("envelope_v2: {opened_count} opening(s) of found envelopes succeeded");
    }
}

/// Part 1: the raw input as a token under both kinds.
fn parse_raw(f: &Fixtures, data: &[u8]) {
    for (kind, id) in [(KeyKind::P256, &f.ids[1]), (RSA_KIND, &f.ids[0])] {
        let parsed = EnvelopeV2::from_bytes(data.to_vec(), kind);
        let payload = STANDARD.encode(data);
        let decoded = EnvelopeV2::decode_payload(payload.as_bytes(), kind);
        assert_eq!(parsed.is_ok(), decoded.is_ok(), "{parsed:?} vs {decoded:?}");
        let Ok(token) = parsed else { continue };
        assert_eq!(decoded.as_ref().ok(), Some(&token));
        assert_eq!(
            Envelope::decode_payload(payload.as_bytes(), kind),
            Ok(Envelope::V2(token.clone()))
        );
        assert_eq!(token.as_bytes(), data);
        assert_eq!(token.kind(), kind);
        assert_eq!(data[0], 0x02);
        assert_eq!(data[1] & !V2_FLAG_PATH, 0);
        assert_eq!(token.path_bound(), data[1] & V2_FLAG_PATH != 0);
        let encap_len = kind.encap_len();
        assert_eq!(token.encapsulation(), &data[2..2 + encap_len]);
        let mut index = [0u8; 4];
        index.copy_from_slice(&data[2 + encap_len..6 + encap_len]);
        assert_eq!(token.index(), u32::from_be_bytes(index));
        assert_eq!(kind.v2_header_len() + token.message_len() + 16, data.len());
        assert!(payload.len() >= kind.v2_min_payload_len());
        assert!(payload.len() <= kind.v2_max_payload_len());
        if kind == KeyKind::P256 {
            if let Some(enc) = token.p256_enc() {
                assert_eq!(enc[0], 0x04);
                assert_eq!(&enc[1..33], &data[3..35]);
            }
        } else {
            assert!(token.p256_enc().is_none());
        }
        let first = open(f, id, &token, Some(b"ssn"));
        assert_eq!(first, open(f, id, &token, Some(b"ssn")), "deterministic");
    }
}

/// Part 2: seal values derived from the input, scan, open, tamper.
fn round_trip(f: &Fixtures, data: &[u8]) {
    let _ = round_trip_inner(f, &mut Unstructured::new(data));
}

struct Value<'a> {
    plaintext: &'a [u8],
    path: Option<&'a [u8]>,
    span: std::ops::Range<usize>,
}

fn round_trip_inner(f: &Fixtures, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let choice: u8 = u.arbitrary()?;
    let rsa = choice & 1 == 0;
    let encryptors = &f.encryptors[(choice as usize >> 1) % f.encryptors.len()];
    let id = if rsa { &f.ids[0] } else { &f.ids[1] };
    let other_id = if rsa { &f.ids[1] } else { &f.ids[0] };
    let kind = if rsa { RSA_KIND } else { KeyKind::P256 };
    let encryptor = encryptors.key(id).expect("key");
    let count = 1 + (choice as usize >> 4) % 4;
    let separator: u8 = u.arbitrary()?;
    // Filler between envelopes: one printable non-payload byte (or none).
    let separator = match separator % 4 {
        0 => "",
        1 => " ",
        2 => "\"",
        _ => ",",
    };

    let mut state = RequestState::new();
    let mut out = String::new();
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u.arbitrary::<u16>()? as usize % (MAX_VALUE_LEN + 1);
        let plaintext = u.bytes(len.min(u.len()))?;
        let path = if u.arbitrary::<bool>()? {
            let len = u.arbitrary::<u8>()? as usize % 65;
            Some(u.bytes(len.min(u.len()))?)
        } else {
            None
        };
        out.push_str(separator);
        let start = out.len();
        match path {
            Some(p) => encryptor.encrypt_bound_in(&mut state, "f", plaintext, Some(p), &mut out),
            None => encryptor.encrypt_in(&mut state, "f", plaintext, &mut out),
        }
        .expect("sealing within the limits");
        assert_eq!(out.len() - start, encryptor.envelope_len(plaintext.len()));
        values.push(Value {
            plaintext,
            path,
            span: start..out.len(),
        });
    }
    out.push_str(separator);
    assert_eq!(state.encapsulations(), 1, "one encapsulation per request");

    let found: Vec<_> = f.keyring.scanner().scan_str(&out).collect();
    assert_eq!(found.len(), count, "{found:?}");
    let private = f.private(id);
    let mut secret = None;
    let mut encapsulation: Option<Vec<u8>> = None;
    for (i, (item, value)) in found.iter().zip(&values).enumerate() {
        let ScanItem::Envelope(found) = item else {
            panic!("value {i} scanned as {item:?}")
        };
        assert_eq!(found.span, value.span);
        assert_eq!(found.key, id);
        let Envelope::V2(token) = &found.envelope else {
            panic!("value {i} is not version 2")
        };
        assert_eq!(token.kind(), kind);
        assert_eq!(token.index() as usize, i);
        assert_eq!(token.path_bound(), value.path.is_some());
        assert_eq!(token.message_len(), value.plaintext.len());
        match &encapsulation {
            Some(e) => assert_eq!(e.as_slice(), token.encapsulation()),
            None => encapsulation = Some(token.encapsulation().to_vec()),
        }
        let secret = secret.get_or_insert_with(|| private.v2_secret(token).expect("secret"));
        let opened = secret.open(id, token, value.path).expect("opens");
        assert_eq!(opened.as_bytes(), value.plaintext);
        let whole = private.decrypt_envelope(id, &found.envelope);
        assert_eq!(
            secret.open(other_id, token, value.path),
            Err(OpenError::Rejected),
            "opened under another key id"
        );
        match value.path {
            None => {
                assert_eq!(whole.expect("opens").as_bytes(), value.plaintext);
                // A path given for an unbound token is ignored.
                let opened = secret.open(id, token, Some(b"ssn")).expect("opens");
                assert_eq!(opened.as_bytes(), value.plaintext);
            }
            Some(path) => {
                assert_eq!(whole, Err(DecryptError::V2(OpenError::PathRequired)));
                assert_eq!(secret.open(id, token, None), Err(OpenError::PathRequired));
                // Another path: one byte changed, or one appended.
                let mut other = path.to_vec();
                let b: u8 = u.arbitrary().unwrap_or(0);
                match other.get_mut(b as usize % (path.len() + 1)) {
                    Some(c) => *c ^= b | 1,
                    None => other.push(b),
                }
                assert_eq!(
                    secret.open(id, token, Some(&other)),
                    Err(OpenError::Rejected),
                    "opened with another path"
                );
            }
        }

        // Flip one byte of the decoded token, re-encode it between the key's markers and scan.
        let bytes = token.as_bytes();
        let at = u.arbitrary::<u32>().unwrap_or(i as u32) as usize % bytes.len();
        let mask = u.arbitrary::<u8>().unwrap_or(0x80).max(1);
        let mut flipped = bytes.to_vec();
        flipped[at] ^= mask;
        let markers = f.keyring.get(id).expect("entry").markers();
        let text = format!(
            "{}{}{}",
            markers.prefix.as_str(),
            STANDARD.encode(&flipped),
            markers.suffix.as_str()
        );
        let rescanned: Vec<_> = f.keyring.scanner().scan_str(&text).collect();
        assert_eq!(rescanned.len(), 1, "{rescanned:?}");
        match &rescanned[0] {
            ScanItem::Envelope(again) => {
                assert_eq!(again.span, 0..text.len());
                let Envelope::V2(t) = &again.envelope else {
                    panic!("flipped token read as version 1")
                };
                assert_eq!(t.as_bytes(), flipped.as_slice());
                // Only a flip in the encapsulation needs a new secret.
                let result = if t.encapsulation() == token.encapsulation() {
                    secret.open(id, t, value.path).map_err(DecryptError::from)
                } else {
                    private
                        .v2_secret(t)
                        .and_then(|s| s.open(id, t, value.path).map_err(DecryptError::from))
                };
                assert!(
                    result.is_err(),
                    "token with byte {at} ^ {mask:#04x} opened (value {i})"
                );
            }
            // Version byte or unknown flag bits: refused by the parser.
            ScanItem::Malformed(_) => {
                assert!(at < 2, "flip at {at} made the envelope malformed");
                assert!(EnvelopeV2::from_bytes(flipped, kind).is_err());
            }
        }
    }
    Ok(())
}
