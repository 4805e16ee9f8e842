//! The decryptor's document path (`Decryptor::process` with the demo key through
//! `LocalKeyProvider`, on a current-thread runtime) in every mode (JSON, form, text), every
//! error policy (fail, leave, redact) and every action (decrypt, verify, re-encrypt), with and
//! without a field restriction and member-name decryption. Never panics; a document that cannot
//! hold an envelope comes back unchanged; under `leave` a document in which nothing was
//! decrypted comes back unchanged; no error, problem or report shows a secret's plaintext.
//!
//! Input: byte 0 picks mode, policy, action and options; the rest is the document, in which
//! `@0`..`@7` stand for prepared envelopes (raw), `@a`..`@h` for the same percent-encoded and
//! `@A`..`@H` for the same with JSON escapes (`\u0023` for `#`, `\/` for `/`).
#![no_main]

use std::sync::OnceLock;

use fle_decryptor::{Action, Decryptor, Mode, OnError};
use fle_shared::body::{form, FieldSelector};
use fle_shared::write_v1;
use fle_shared::{backend, FieldEncryptor, KeyEncryptor};
use libfuzzer_sys::fuzz_target;

/// Plaintexts behind the prepared envelopes: every one holds `S3CR3T`.
const SECRETS: [&[u8]; 7] = [
    b"S3CR3T-alpha",
    b"\x00{\"S3CR3T-beta\":1",
    b"\x00\"S3CR3T-gamma\"",
    b"S3CR3T\"\n\x01delta\\",
    b"S3CR3T-\xff\xfe-epsilon",
    b"#01#S3CR3T#10#",
    b"\x00[1,\"S3CR3T-eta\",{\"k\":null}]",
];

struct Fixtures {
    decryptor: Decryptor,
    restricted: Decryptor,
    names: Decryptor,
    encryptor: FieldEncryptor,
    raw: Vec<String>,
    rt: tokio::runtime::Runtime,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let keyring = fle_fuzz::demo_keyring();
        let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
        let key = encryptor.key_str("01").unwrap();
        let mut raw: Vec<String> = SECRETS
            .iter()
            .map(|s| {
                let mut out = String::new();
                key.encrypt_into("x", s, &mut out).unwrap();
                out
            })
            .collect();
        // A well-formed envelope that does not decrypt.
        let mut bad = String::new();
        let markers = keyring.keys()[0].markers().clone();
        write_v1(&markers, &[0x5a; 256], &mut bad);
        raw.push(bad);
        Fixtures {
            decryptor: fle_fuzz::demo_decryptor(),
            restricted: fle_fuzz::demo_decryptor().only_fields(vec![
                FieldSelector::parse("ssn").unwrap(),
                FieldSelector::parse("$.a[*].b").unwrap(),
            ]),
            names: fle_fuzz::demo_decryptor().decrypt_member_names(true),
            encryptor,
            raw,
            rt: fle_fuzz::runtime(),
        }
    })
}

fn expand(f: &Fixtures, doc: &[u8]) -> Option<String> {
    let doc = std::str::from_utf8(doc).ok()?;
    let mut out = String::with_capacity(doc.len());
    let mut chars = doc.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '@' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(d @ '0'..='7') => {
                chars.next();
                out.push_str(&f.raw[d as usize - '0' as usize]);
            }
            Some(d @ 'a'..='h') => {
                chars.next();
                form::encode_into(f.raw[d as usize - 'a' as usize].as_bytes(), &mut out);
            }
            Some(d @ 'A'..='H') => {
                chars.next();
                let e = &f.raw[d as usize - 'A' as usize];
                out.push_str(&e.replace('#', "\\u0023").replace('/', "\\/"));
            }
            _ => out.push('@'),
        }
    }
    Some(out)
}

fn no_secret(what: &str, text: &str) {
    assert!(!text.contains("S3CR3T"), "{what} shows a plaintext: {text}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, doc)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    let Some(doc) = expand(f, doc) else {
        return;
    };
    let mode = [Mode::Json, Mode::Form, Mode::Text][usize::from(opts % 3)];
    let on_error = [OnError::Fail, OnError::Leave, OnError::Redact][usize::from(opts / 3 % 3)];
    let reencrypt: &KeyEncryptor = f.encryptor.key_str("01").unwrap();
    let action = match opts / 9 % 4 {
        0 | 1 => Action::Decrypt,
        2 => Action::Verify,
        _ => Action::Reencrypt(reencrypt),
    };
    let decryptor = match opts / 36 % 4 {
        0 | 1 => &f.decryptor,
        2 => &f.restricted,
        _ => &f.names,
    };
    let result =
        f.rt.block_on(decryptor.process(&doc, mode, on_error, action));
    let may_hold = decryptor.may_hold_envelopes(doc.as_bytes(), mode);
    match result {
        Ok(out) => {
            for p in &out.report.problems {
                no_secret("a problem", &p.to_string());
                no_secret("a problem", &format!("{p:?}"));
            }
            no_secret("a report", &format!("{:?}", out.report));
            no_secret("a result", &format!("{out:?}"));
            assert!(out.report.problems.len() <= out.report.problem_count);
            assert!(out.report.decrypted + out.report.kept <= out.report.envelopes);
            let writes = !matches!(action, Action::Verify);
            if writes && !may_hold {
                assert_eq!(*out.text, doc, "a document without envelopes changed");
            }
            if writes && on_error == OnError::Leave && out.report.decrypted == 0 {
                assert_eq!(
                    *out.text, doc,
                    "leave with nothing decrypted changed the document"
                );
            }
            if matches!(action, Action::Verify) {
                assert!(out.text.is_empty());
            }
        }
        Err(e) => {
            no_secret("an error", &e.to_string());
            no_secret("an error", &format!("{e:?}"));
            assert!(
                may_hold || mode != Mode::Text,
                "text without envelopes failed: {e}"
            );
        }
    }
});
