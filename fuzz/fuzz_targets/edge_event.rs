//! The whole origin-request handler (`EdgeEncryptor::handle_event`) on arbitrary input: it
//! never panics, and the outcome is a forwarded request object or a well-formed 4xx/5xx
//! generated response; `handle_event_json` on the event's text reaches the same verdict
//! (envelopes masked), and on the raw input text a well-formed outcome. A forwarded body that was rewritten decrypts (demo private key, through
//! `fle_decryptor`) back to the original body.
//!
//! Input: byte 0 picks one of `fle_fuzz::EDGE_TABLES`; byte 1 the shape:
//! - `0`: the rest is the event's JSON text;
//! - otherwise the rest is `URI[?QUERY]\nBODY` put into an event template, byte 1 choosing the
//!   method, the content type (JSON, form, `+json`, text, none, latin-1) and the body encoding.
#![no_main]

use std::sync::OnceLock;

use fle_decryptor::Decryptor;
use fle_edge_encryptor::EdgeEncryptor;
use fle_shared::backend;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Fixtures {
    edges: Vec<EdgeEncryptor>,
    decryptor: Decryptor,
    rt: tokio::runtime::Runtime,
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        edges: (0..fle_fuzz::EDGE_TABLES.len())
            .map(|i| fle_fuzz::edge(i, backend::default_backend()))
            .collect(),
        decryptor: fle_fuzz::demo_decryptor(),
        rt: fle_fuzz::runtime(),
    })
}

fuzz_target!(|data: &[u8]| {
    let [which, shape, rest @ ..] = data else {
        return;
    };
    let Some(event) = fle_fuzz::event_of(*shape, rest) else {
        return;
    };
    let f = fixtures();
    let edge = &f.edges[usize::from(*which) % f.edges.len()];
    let outcome = edge.handle_event(&event);
    let verdict = fle_fuzz::verdict(edge, &outcome);
    // The text path (what the Lambda functions run) decides alike on the same event.
    let by_text = fle_fuzz::parsed(edge.handle_event_json(&event.to_string()));
    assert_eq!(
        verdict,
        fle_fuzz::verdict(edge, &by_text),
        "handle_event_json decides otherwise"
    );
    if *shape == 0 {
        // The raw text too (duplicate members, odd spacing): a well-formed outcome.
        if let Ok(text) = std::str::from_utf8(rest) {
            fle_fuzz::verdict(edge, &fle_fuzz::parsed(edge.handle_event_json(text)));
        }
    }
    if let fle_edge_encryptor::Outcome::Forward { request, encrypted } = &outcome {
        let original = event.pointer("/Records/0/cf/request").unwrap();
        if *encrypted > 0 {
            fle_fuzz::check_decrypts_back(edge, &f.decryptor, &f.rt, original, request);
        } else if request.pointer("/body/action") == Some(&Value::from("replace")) {
            // Nothing encrypted: the body is forwarded byte for byte (as text), unless
            // neutralised.
            let before = fle_fuzz::body_bytes(original).unwrap_or_default();
            let after = request["body"]["data"].as_str().unwrap();
            if edge.config().on_marker != fle_edge_encryptor::MarkerPolicy::Neutralise {
                assert_eq!(
                    after.as_bytes(),
                    &before[..],
                    "body changed with nothing encrypted"
                );
            }
        }
    }
});
