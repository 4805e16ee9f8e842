//! The hot paths of fle-shared, each next to its physical limit measured in the same run.
//!
//! - `rsa2048_encrypt`: one RSA-2048 OAEP-SHA256 encryption per backend, next to OpenSSL's raw
//!   RSA public operation (no padding: what `openssl speed rsa2048` times as "verify") and
//!   OpenSSL's own OAEP encryption; plus the whole per-field path (encrypt + base64 + markers).
//! - `scan_*`: scanner throughput on 100 MB of marker-free text, on text with a stray `#` every
//!   64 bytes, and on envelope-dense text (decoding every envelope), next to `memchr` finding
//!   the first `#` (marker-free) or visiting every `#` (the others) in the same bytes.
//!
//! Run: `cargo bench --bench envelope`. Compare ratios within one run, not absolute times.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey, ScanItem};
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::{Padding, Rsa};

const PUBLIC_PEM: &str = include_str!("../keys/demo-01.pub.pem");
const SSN: &[u8] = b"123-45-6789";

fn rsa2048_encrypt(c: &mut Criterion) {
    let mut group = c.benchmark_group("rsa2048_encrypt");

    let rsa = Rsa::public_key_from_pem(PUBLIC_PEM.as_bytes()).unwrap();
    // A valid input for the raw operation: any value below the modulus.
    let mut raw_in = vec![0u8; 256];
    raw_in[1..12].copy_from_slice(SSN);
    let mut out = vec![0u8; 256];
    group.bench_function("openssl_raw_public_op", |b| {
        b.iter(|| {
            rsa.public_encrypt(black_box(&raw_in), &mut out, Padding::NONE)
                .unwrap()
        })
    });

    let pkey = PKey::from_rsa(rsa.clone()).unwrap();
    group.bench_function("openssl_oaep_sha256", |b| {
        b.iter(|| {
            let mut enc = Encrypter::new(&pkey).unwrap();
            enc.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
            enc.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
            enc.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
            enc.encrypt(black_box(SSN), &mut out).unwrap()
        })
    });

    let public = RsaPublicKey::from_pem(PUBLIC_PEM).unwrap();
    for backend in backend::all_backends() {
        let key = backend.encryption_key(&public).unwrap();
        group.bench_function(backend.name(), |b| {
            b.iter(|| key.encrypt(black_box(SSN), &mut out).unwrap())
        });
    }

    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str("01").unwrap();
    let mut text = String::with_capacity(512);
    group.bench_function("field_envelope_aws-lc-rs", |b| {
        b.iter(|| {
            text.clear();
            key.encrypt_into("ssn", black_box(SSN), &mut text).unwrap();
        })
    });
    group.finish();

    // Envelope version 2: one more value under a request's encapsulation (the per-value cost
    // after the request's one asymmetric operation).
    let mut group = c.benchmark_group("v2_seal_one_more_value");
    let p256 =
        fle_shared::P256PublicKey::from_pem(include_str!("../keys/demo-02.pub.pem")).unwrap();
    let id: fle_shared::KeyId = "01".parse().unwrap();
    let markers = fle_shared::MarkerPair::default_for(&id);
    let recipient = backend::default_backend().p256_recipient(&p256).unwrap();
    let mut hpke = fle_shared::V2Sealer::p256(&id, &p256, &*recipient).unwrap();
    let rsa_key = backend::default_backend()
        .encryption_key(&RsaPublicKey::from_pem(PUBLIC_PEM).unwrap())
        .unwrap();
    let mut rsa = fle_shared::V2Sealer::rsa(&id, &*rsa_key, backend::default_backend()).unwrap();
    for (name, sealer) in [("hpke-p256", &mut hpke), ("rsa-oaep", &mut rsa)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                text.clear();
                sealer
                    .seal_into(&markers, black_box(SSN), None, &mut text)
                    .unwrap();
            })
        });
    }
    group.finish();
}

/// JSON-like text without a single `#`.
fn marker_free(len: usize) -> Vec<u8> {
    let record = br#"{"id":1234567,"name":"Jo O'Neil","email":"jo@example.com","tags":["a","b"],"note":"lorem ipsum dolor sit amet, consectetur adipiscing elit"},"#;
    record.iter().copied().cycle().take(len).collect()
}

fn scan(c: &mut Criterion) {
    const LEN: usize = 100 * 1024 * 1024;
    let public = RsaPublicKey::from_pem(PUBLIC_PEM).unwrap();
    let keyring = Keyring::new(vec![KeyEntry::new("01".parse().unwrap(), public)]).unwrap();
    let scanner = keyring.scanner();

    let clean = marker_free(LEN);
    let mut stray = clean.clone();
    for i in (0..stray.len()).step_by(64) {
        stray[i] = b'#';
    }
    // Envelopes (352 bytes) every ~500 bytes.
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let mut env = String::new();
    encryptor
        .key_str("01")
        .unwrap()
        .encrypt_into("ssn", SSN, &mut env)
        .unwrap();
    let mut dense = Vec::with_capacity(LEN + 1024);
    let filler = marker_free(150);
    while dense.len() < LEN {
        dense.extend_from_slice(&filler);
        dense.extend_from_slice(env.as_bytes());
    }

    for (name, text) in [
        ("marker_free", &clean),
        ("stray_hash_every_64b", &stray),
        ("envelope_dense", &dense),
    ] {
        let mut group = c.benchmark_group(format!("scan_{name}_100MB"));
        group.sample_size(10);
        group.throughput(Throughput::Bytes(text.len() as u64));
        // Baselines in the same run: for marker-free text, one memchr call for '#' (what any
        // scanner must at least do); for text with '#' in it, visiting every '#' one by one.
        if name == "marker_free" {
            group.bench_function("memchr_find_hash_baseline", |b| {
                b.iter(|| memchr::memchr(b'#', black_box(text)))
            });
        } else {
            group.bench_function("memchr_visit_every_hash_baseline", |b| {
                b.iter(|| {
                    memchr::memchr_iter(b'#', black_box(text))
                        .fold(0usize, |acc, i| acc ^ black_box(i))
                })
            });
        }
        group.bench_function("scanner", |b| {
            b.iter(|| {
                scanner
                    .scan(black_box(text))
                    .filter(|i| matches!(i, ScanItem::Envelope(_)))
                    .count()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, rsa2048_encrypt, scan);
criterion_main!(benches);
