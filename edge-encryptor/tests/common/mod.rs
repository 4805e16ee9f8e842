//! Both handlers on one event: `handle_event` (a parsed `Value`) and `handle_event_json` (the
//! event's text, compact and pretty) must decide alike. Tests call [`handle`] where they would
//! call `handle_event`, so every event of the suite is a differential test of the text path.

use fle_edge_encryptor::{EdgeEncryptor, Outcome};
use fle_shared::ScanItem;
use serde_json::Value;

/// `edge.handle_event(event)`, after checking that `handle_event_json` on the event's text
/// (compact and pretty-printed) gives the same outcome: the same rejection and response, or
/// the same forwarded request up to the envelopes' random bytes and the same count.
pub fn handle(edge: &EdgeEncryptor, event: &Value) -> Outcome {
    let by_value = edge.handle_event(event);
    for text in [
        event.to_string(),
        serde_json::to_string_pretty(event).unwrap(),
    ] {
        let by_text = edge.handle_event_json(&text);
        match (&by_value, &by_text) {
            (
                Outcome::Forward { request, encrypted },
                Outcome::Forward {
                    request: text_request,
                    encrypted: text_encrypted,
                },
            ) => {
                assert_eq!(encrypted, text_encrypted, "{text}");
                let parsed: Value = serde_json::from_str(text_request).unwrap_or_else(|e| {
                    panic!("text path wrote invalid JSON ({e}): {text_request}")
                });
                assert_eq!(
                    without_envelopes(edge, request),
                    without_envelopes(edge, &parsed),
                    "{text}"
                );
            }
            (
                Outcome::Respond {
                    response,
                    rejection,
                    message,
                },
                Outcome::Respond {
                    response: text_response,
                    rejection: text_rejection,
                    message: text_message,
                },
            ) => {
                assert_eq!(rejection, text_rejection, "{text}");
                assert_eq!(message, text_message, "{text}");
                assert_eq!(
                    response,
                    &serde_json::from_str::<Value>(text_response).unwrap()
                );
            }
            _ => panic!("the two handlers disagree on {text}: {by_value:?} / {by_text:?}"),
        }
    }
    by_value
}

/// The request's text with every envelope replaced by `<envelope KEY>` (percent-decoded
/// first, so that envelopes in query strings and form bodies are found): what is left must be
/// equal.
fn without_envelopes(edge: &EdgeEncryptor, request: &Value) -> String {
    let text = percent_decode(&request.to_string());
    let mut out = String::new();
    let mut at = 0;
    for item in edge.keyring().scanner().scan_str(&text) {
        if let ScanItem::Envelope(found) = item {
            out.push_str(&text[at..found.span.start]);
            out.push_str(&format!("<envelope {}>", found.key));
            at = found.span.end;
        }
    }
    out.push_str(&text[at..]);
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
