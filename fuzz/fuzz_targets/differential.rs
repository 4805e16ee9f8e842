//! The native core with the aws-lc backend against the same core with the pure-Rust
//! `rustcrypto` backend (the one the wasm32 Lambda@Edge module uses): for any event and
//! configuration both give the same verdict: the same status and rejection code, or both
//! forward the same request once every envelope is masked (OAEP is randomised, so ciphertexts
//! differ) with the same number of values encrypted. Input as for `edge_event`.
#![no_main]

use std::sync::OnceLock;

use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::backend::{self, rustcrypto::RustCryptoBackend};
use libfuzzer_sys::fuzz_target;

fn edges() -> &'static Vec<(EdgeEncryptor, EdgeEncryptor)> {
    static F: OnceLock<Vec<(EdgeEncryptor, EdgeEncryptor)>> = OnceLock::new();
    F.get_or_init(|| {
        (0..fle_fuzz::EDGE_TABLES.len())
            .map(|i| {
                (
                    fle_fuzz::edge(i, backend::default_backend()),
                    fle_fuzz::edge(i, &RustCryptoBackend),
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, shape, rest @ ..] = data else {
        return;
    };
    let Some(event) = fle_fuzz::event_of(*shape, rest) else {
        return;
    };
    let edges = edges();
    let (native, pure) = &edges[usize::from(*which) % edges.len()];
    let a = fle_fuzz::verdict(native, &native.handle_event(&event));
    let b = fle_fuzz::verdict(pure, &pure.handle_event(&event));
    assert_eq!(a, b, "aws-lc and rustcrypto backends disagree");
});
