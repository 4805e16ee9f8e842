//! One invocation: the event in, the decrypted body and its report (or a structured error) out.
//!
//! Event: `{"body": "<text>", "mode": "json" | "form" | "text", "on_error": "fail" | "leave" |
//! "redact"}`; `mode` and `on_error` are optional (absent or `null`: the configuration's) and
//! other members are ignored.
//!
//! Response: `{"body": "<decrypted text>", "envelopes": N, "decrypted": M, "problems":
//! [{"offset": .., "field": .. | null, "key": .. | null, "kind": ".."}]}`.
//!
//! Errors ([`Failure`], sent as a Lambda error `{"errorType", "errorMessage"}`): see
//! [`ErrorType`]. No error and no log line holds the body or any plaintext.

use std::fmt;

use fle_decryptor::{DocumentError, Mode, OnError, Problem, Report};
use lambda_runtime::Diagnostic;
use serde_json::{json, Map, Value};

use crate::setup::Setup;

/// The `errorType` of a failed invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// The event is not an object, has no string `body`, or names an unknown `mode` or
    /// `on_error`.
    InvalidEvent,
    /// The body is not valid JSON (JSON mode) or form data (form mode).
    InvalidDocument,
    /// An envelope could not be decrypted under `on_error = "fail"` (the message gives its byte
    /// offset, field and key id), or, whatever `on_error`, the body holds more distinct
    /// version-2 encapsulations than `max_encapsulations_per_document` allows in its mode
    /// (unset: 256 for JSON and form bodies, no limit for text; refused before any KMS call).
    DecryptionFailed,
}

impl ErrorType {
    /// The name sent as `errorType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidEvent => "InvalidEvent",
            ErrorType::InvalidDocument => "InvalidDocument",
            ErrorType::DecryptionFailed => "DecryptionFailed",
        }
    }
}

/// A failed invocation. The message never holds the body or plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub error_type: ErrorType,
    /// What went wrong, for the caller.
    pub message: String,
}

impl Failure {
    fn event(message: impl Into<String>) -> Self {
        Failure {
            error_type: ErrorType::InvalidEvent,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type.as_str(), self.message)
    }
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        Diagnostic {
            error_type: failure.error_type.as_str().to_owned(),
            error_message: failure.message,
        }
    }
}

impl From<DocumentError> for Failure {
    fn from(error: DocumentError) -> Self {
        match error {
            DocumentError::Json(_) | DocumentError::Form(_) => Failure {
                error_type: ErrorType::InvalidDocument,
                message: error.to_string(),
            },
            DocumentError::Envelope(problem) => Failure {
                error_type: ErrorType::DecryptionFailed,
                message: problem.to_string(),
            },
            // `DocumentError` is non-exhaustive; its messages never hold plaintext.
            other => Failure {
                error_type: ErrorType::DecryptionFailed,
                message: other.to_string(),
            },
        }
    }
}

/// A successful invocation: the response, and the report again for the log.
#[derive(Debug)]
pub struct Answer {
    /// The response sent to the caller (holds the plaintext).
    pub response: Value,
    /// What was found and done.
    pub report: Report,
}

/// A parsed event.
struct Request {
    body: String,
    mode: Mode,
    on_error: OnError,
}

/// Reads the event; `mode` and `on_error` default to the configuration's.
fn parse(payload: Value, setup: &Setup) -> Result<Request, Failure> {
    const SHAPE: &str = r#"{"body": "<text>", "mode": "json" | "form" | "text", "on_error": "fail" | "leave" | "redact"}"#;
    let Value::Object(mut event) = payload else {
        return Err(Failure::event(format!(
            "the event must be a JSON object {SHAPE}, not {}",
            kind(&payload)
        )));
    };
    let body = match event.remove("body") {
        Some(Value::String(body)) => body,
        None => {
            return Err(Failure::event(format!(
                "the event has no \"body\": expected {SHAPE}"
            )))
        }
        Some(other) => {
            return Err(Failure::event(format!(
                "\"body\" must be a string (the document's text), not {}",
                kind(&other)
            )))
        }
    };
    let mode = match name(&event, "mode")? {
        Some(m) => m
            .parse::<Mode>()
            .map_err(|e| Failure::event(format!("\"mode\": {e}")))?,
        None => setup.mode,
    };
    let on_error = match name(&event, "on_error")? {
        Some(e) => e
            .parse::<OnError>()
            .map_err(|e| Failure::event(format!("\"on_error\": {e}")))?,
        None => setup.on_error,
    };
    Ok(Request {
        body,
        mode,
        on_error,
    })
}

/// An optional string member (`null` is absent).
fn name<'e>(event: &'e Map<String, Value>, member: &str) -> Result<Option<&'e str>, Failure> {
    match event.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Failure::event(format!(
            "\"{member}\" must be a string, not {}",
            kind(other)
        ))),
    }
}

/// The JSON type of a value, for messages (never the value itself).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One problem as the response lists it.
fn problem_json(problem: &Problem) -> Value {
    json!({
        "offset": problem.offset,
        "field": problem.field,
        "key": problem.key.as_ref().map(|k| k.as_str()),
        "kind": problem.kind.to_string(),
    })
}

/// Decrypts the event's body.
pub async fn handle(setup: &Setup, payload: Value) -> Result<Answer, Failure> {
    let request = parse(payload, setup)?;
    let decrypted = setup
        .decryptor
        .decrypt(&request.body, request.mode, request.on_error)
        .await?;
    let report = decrypted.report;
    let response = json!({
        // The only copy of the plaintext outside the zeroized `Decrypted::text`.
        "body": decrypted.text.as_str(),
        "envelopes": report.envelopes,
        "decrypted": report.decrypted,
        "problems": report.problems.iter().map(problem_json).collect::<Vec<_>>(),
    });
    Ok(Answer { response, report })
}

/// Most problems logged per invocation (the response lists them all).
const MAX_LOGGED_PROBLEMS: usize = 10;

/// Logs an invocation through `tracing` (JSON lines in CloudWatch): counts, problems (offset,
/// field, key, reason) and failures, never a value.
pub fn log(request_id: &str, result: &Result<Answer, Failure>) {
    match result {
        Err(failure) => tracing::warn!(request_id, error = %failure, "request failed"),
        Ok(answer) => {
            let report = &answer.report;
            for p in report.problems.iter().take(MAX_LOGGED_PROBLEMS) {
                tracing::warn!(request_id, problem = %p, "envelope problem");
            }
            if report.problems.len() > MAX_LOGGED_PROBLEMS {
                tracing::warn!(
                    request_id,
                    more = report.problems.len() - MAX_LOGGED_PROBLEMS,
                    "more envelope problems"
                );
            }
            tracing::info!(
                request_id,
                envelopes = report.envelopes,
                decrypted = report.decrypted,
                problems = report.problems.len(),
                "request done"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use fle_decryptor::{Decryptor, LocalKeyProvider};
    use fle_edge_encryptor::config::BodyKind;
    use fle_edge_encryptor::EdgeEncryptor;
    use fle_shared::{backend, OaepPrivateKey};

    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn edge() -> EdgeEncryptor {
        let toml = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
                    [edge]\nkey = \"01\"\nfields = [\"ssn\", \"n\"]\n";
        EdgeEncryptor::from_toml_str(toml, &root(), backend::default_backend()).unwrap()
    }

    fn setup(mode: Mode, on_error: OnError) -> Setup {
        let pem = std::fs::read_to_string(root().join("keys/demo-01.key.pem")).unwrap();
        let key = OaepPrivateKey::from_pem(&pem).unwrap();
        let provider = LocalKeyProvider::new(vec![("01".parse().unwrap(), key)]);
        Setup {
            decryptor: Decryptor::new(edge().keyring().clone(), Arc::new(provider)),
            mode,
            on_error,
        }
    }

    fn run(setup: &Setup, event: Value) -> Result<Answer, Failure> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(handle(setup, event))
    }

    fn invalid_event(setup: &Setup, event: Value) -> String {
        let failure = run(setup, event).unwrap_err();
        assert_eq!(failure.error_type, ErrorType::InvalidEvent, "{failure}");
        failure.message
    }

    #[test]
    fn event_shapes_are_checked_without_echoing_values() {
        let s = setup(Mode::Json, OnError::Fail);
        assert!(invalid_event(&s, json!("secret")).contains("not a string"));
        assert!(invalid_event(&s, json!({"mode": "text"})).contains("no \"body\""));
        let m = invalid_event(&s, json!({"body": ["secret"]}));
        assert!(m.contains("not an array") && !m.contains("secret"), "{m}");
        let m = invalid_event(&s, json!({"body": "{}", "mode": "secret-xml"}));
        assert!(
            m.contains("json, form or text") && !m.contains("secret"),
            "{m}"
        );
        let m = invalid_event(&s, json!({"body": "{}", "on_error": "ignore"}));
        assert!(m.contains("fail, leave or redact"), "{m}");
        assert!(invalid_event(&s, json!({"body": "{}", "mode": 1})).contains("not a number"));
    }

    #[test]
    fn defaults_come_from_the_configuration() {
        let edge = edge();
        let (doc, _) = edge
            .encrypt_body(BodyKind::Json, r#"{"ssn": "123-45-6789", "n": 7}"#)
            .unwrap();
        let envelope = &doc[9..doc.find("\",").unwrap()];
        let text = format!("ssn={envelope}");

        // Configured text mode: a non-JSON body decrypts without naming the mode.
        let s = setup(Mode::Text, OnError::Fail);
        let answer = run(&s, json!({ "body": text })).unwrap();
        assert_eq!(answer.response["body"], "ssn=123-45-6789");
        // The event's mode and null members.
        let s = setup(Mode::Json, OnError::Fail);
        let answer = run(&s, json!({"body": text, "mode": "text", "on_error": null})).unwrap();
        assert_eq!(answer.response["body"], "ssn=123-45-6789");
        let failure = run(&s, json!({ "body": text })).unwrap_err();
        assert_eq!(failure.error_type, ErrorType::InvalidDocument);

        // Configured redaction of a truncated envelope.
        let broken = format!(r#"{{"ssn": "{}"}}"#, &envelope[..60]);
        let s = setup(Mode::Json, OnError::Redact);
        let answer = run(&s, json!({ "body": broken })).unwrap();
        let body: Value = serde_json::from_str(answer.response["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"ssn": fle_decryptor::REDACTED}));
        assert_eq!(answer.response["problems"][0]["field"], "$.ssn");
        assert_eq!(answer.response["problems"][0]["key"], "01");
        assert_eq!(answer.response["problems"][0]["offset"], 9);
    }

    /// The keyring of the demo P-256 key "02", and a provider holding its private key.
    fn p256() -> (fle_shared::Keyring, Arc<dyn fle_decryptor::KeyProvider>) {
        use fle_shared::{KeyEntry, Keyring, P256PrivateKey};
        let pem = std::fs::read_to_string(root().join("keys/demo-02.key.pem")).unwrap();
        let key = P256PrivateKey::from_pem(&pem).unwrap();
        let keyring = Keyring::new(vec![KeyEntry::new(
            "02".parse().unwrap(),
            key.public_key().clone(),
        )])
        .unwrap();
        let provider = Arc::new(LocalKeyProvider::new(vec![("02".parse().unwrap(), key)]));
        (keyring, provider)
    }

    /// `secret` sealed to key "02" as the only value of a request of its own: an
    /// encapsulation of its own.
    fn sealed(keyring: &fle_shared::Keyring, secret: &str) -> String {
        use fle_shared::{FieldEncryptor, RequestState};
        let encryptor = FieldEncryptor::new(keyring, backend::default_backend()).unwrap();
        let mut out = String::new();
        encryptor
            .key_str("02")
            .unwrap()
            .encrypt_in(&mut RequestState::new(), "v", secret.as_bytes(), &mut out)
            .unwrap();
        out
    }

    #[test]
    fn too_many_encapsulations_fail_whatever_the_policy() {
        let (keyring, provider) = p256();
        // Two values of two requests: two encapsulations, in a text body (a limit set
        // explicitly holds in text mode too).
        let body = format!(
            "a {} {} ",
            sealed(&keyring, "secret-one"),
            sealed(&keyring, "secret-two")
        );
        let setup = |limit: usize| Setup {
            decryptor: Decryptor::new(keyring.clone(), provider.clone())
                .with_max_encapsulations_per_document(limit),
            mode: Mode::Text,
            on_error: OnError::Redact,
        };
        let failure = run(&setup(1), json!({ "body": body, "on_error": "leave" })).unwrap_err();
        assert_eq!(failure.error_type, ErrorType::DecryptionFailed, "{failure}");
        assert!(
            failure
                .message
                .contains("holds 2 distinct version-2 encapsulations")
                && failure.message.contains("limit of 1")
                && failure.message.contains("max_encapsulations_per_document")
                && !failure.message.contains("secret-"),
            "{failure}"
        );
        let answer = run(&setup(2), json!({ "body": body })).unwrap();
        assert_eq!(answer.response["body"], "a secret-one secret-two ");
    }

    #[test]
    fn by_default_json_bodies_are_limited_and_text_bodies_are_not() {
        let (keyring, provider) = p256();
        let setup = Setup {
            decryptor: Decryptor::new(keyring.clone(), provider),
            mode: Mode::Text,
            on_error: OnError::Fail,
        };
        // 257 values of 257 requests: one over the default limit.
        let envelopes: Vec<String> = (0..257)
            .map(|i| sealed(&keyring, &format!("secret-{i}")))
            .collect();
        // A log of 257 requests' lines opens.
        let log: String = envelopes
            .iter()
            .enumerate()
            .map(|(i, e)| format!("request {i}: ssn={e}\n"))
            .collect();
        let answer = run(&setup, json!({ "body": log })).unwrap();
        let clear = answer.response["body"].as_str().unwrap();
        assert!(
            clear.starts_with("request 0: ssn=secret-0\n")
                && clear.ends_with("request 256: ssn=secret-256\n"),
            "{clear}"
        );
        assert_eq!(answer.response["decrypted"], 257, "{}", answer.response);
        // The same values in one JSON body are refused, whatever the policy.
        let doc = serde_json::to_string(&envelopes).unwrap();
        let failure = run(
            &setup,
            json!({ "body": doc, "mode": "json", "on_error": "leave" }),
        )
        .unwrap_err();
        assert_eq!(failure.error_type, ErrorType::DecryptionFailed, "{failure}");
        assert!(
            failure
                .message
                .contains("holds 257 distinct version-2 encapsulations")
                && failure.message.contains("limit of 256")
                && !failure.message.contains("secret-"),
            "{failure}"
        );
    }

    #[test]
    fn failures_become_diagnostics() {
        let d = Diagnostic::from(Failure {
            error_type: ErrorType::DecryptionFailed,
            message: "envelope at byte 3".into(),
        });
        assert_eq!(d.error_type, "DecryptionFailed");
        assert_eq!(d.error_message, "envelope at byte 3");
        let s = setup(Mode::Form, OnError::Fail);
        let failure = run(&s, json!({"body": "a=%zz"})).unwrap_err();
        assert_eq!(failure.error_type, ErrorType::InvalidDocument);
        assert!(failure.message.contains("byte"), "{failure}");
        assert!(
            failure.to_string().starts_with("InvalidDocument: "),
            "{failure}"
        );
    }
}
