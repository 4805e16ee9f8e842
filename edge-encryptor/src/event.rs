//! CloudFront origin-request events in, forwarded requests or generated responses out.
//!
//! Event shape (Lambda@Edge): `Records[0].cf.request` with `method`, `uri`, `headers`
//! (lowercase name → `[{key, value}]`) and, when the association includes the body,
//! `body: {inputTruncated, action, encoding: "base64" | "text", data}`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::body::BodyError;
use crate::config::ContentTypeError;
use crate::uri::UriError;
use crate::EdgeEncryptor;

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Forward this request object to the origin (returned from the handler as is).
    Forward {
        /// The request, body rewritten when fields were encrypted.
        request: Value,
        /// How many values were encrypted.
        encrypted: usize,
    },
    /// Answer the viewer with this generated response instead.
    Respond {
        /// The Lambda@Edge response object.
        response: Value,
        /// Why: the status and the stable code of the response.
        rejection: Rejection,
        /// The human-readable reason in the response body. Names fields, never values.
        message: String,
    },
}

impl Outcome {
    /// The object a Lambda@Edge handler returns: the request or the response.
    pub fn into_value(self) -> Value {
        match self {
            Outcome::Forward { request, .. } => request,
            Outcome::Respond { response, .. } => response,
        }
    }

    /// Why the request was answered by the edge, if it was.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Outcome::Forward { .. } => None,
            Outcome::Respond { rejection, .. } => Some(*rejection),
        }
    }
}

/// Why a request was answered by the edge instead of forwarded: each has an HTTP status and a
/// stable machine-readable code, the `error` member of the response body. More reasons may be
/// added; existing codes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// 500 `invalid_event`: not a CloudFront origin-request event, or one without a method, a
    /// URI, a body encoding or with a body that is not valid base64.
    InvalidEvent,
    /// 400 `invalid_uri`: a covered request whose path holds a NUL, a control character or a
    /// malformed escape ([`UriError`]).
    InvalidUri,
    /// 500 `body_not_visible`: the request has a body but the event does not (the function is
    /// associated without "include body").
    BodyNotVisible,
    /// 413 `input_truncated`: CloudFront cut the body (over 1 MB).
    InputTruncated,
    /// 415 `unsupported_content_type`: a content type missing, not listed, or with a charset
    /// other than UTF-8.
    UnsupportedContentType,
    /// 400 `invalid_body`: the body does not parse as its content type, or is not UTF-8
    /// ([`BodyError::Syntax`]).
    InvalidBody,
    /// 400 `body_too_deep`: valid JSON nested deeper than [`crate::MAX_DEPTH`].
    BodyTooDeep,
    /// 400 `marker_injection`: text containing an encryption marker or envelope-shaped text.
    MarkerInjection,
    /// 400 `reserved_value`: a value to encrypt that starts with the reserved tag byte.
    ReservedValue,
    /// 400 `ambiguous_field_name`: a name lenient parsers read as a configured field.
    AmbiguousFieldName,
    /// 400 `field_in_query`: a configured field in the query string.
    FieldInQuery,
    /// 400 `content_type_mismatch`: a body that another common parser reads as another format.
    ContentTypeMismatch,
    /// 413 `field_too_long`: a value over the key's size limit.
    FieldTooLong,
    /// 413 `too_many_values`: more values to encrypt than `max_encrypted_values`.
    TooManyValues,
    /// 413 `body_too_large`: a body over `max_body_bytes`, before or after encryption.
    BodyTooLarge,
    /// 500 `encryption_failed`: the crypto backend failed.
    EncryptionFailed,
}

impl Rejection {
    /// Every rejection, in declaration order.
    pub const ALL: &'static [Rejection] = &[
        Rejection::InvalidEvent,
        Rejection::InvalidUri,
        Rejection::BodyNotVisible,
        Rejection::InputTruncated,
        Rejection::UnsupportedContentType,
        Rejection::InvalidBody,
        Rejection::BodyTooDeep,
        Rejection::MarkerInjection,
        Rejection::ReservedValue,
        Rejection::AmbiguousFieldName,
        Rejection::FieldInQuery,
        Rejection::ContentTypeMismatch,
        Rejection::FieldTooLong,
        Rejection::TooManyValues,
        Rejection::BodyTooLarge,
        Rejection::EncryptionFailed,
    ];

    /// The stable code: the `error` member of the response body.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::InvalidEvent => "invalid_event",
            Rejection::InvalidUri => "invalid_uri",
            Rejection::BodyNotVisible => "body_not_visible",
            Rejection::InputTruncated => "input_truncated",
            Rejection::UnsupportedContentType => "unsupported_content_type",
            Rejection::InvalidBody => "invalid_body",
            Rejection::BodyTooDeep => "body_too_deep",
            Rejection::MarkerInjection => "marker_injection",
            Rejection::ReservedValue => "reserved_value",
            Rejection::AmbiguousFieldName => "ambiguous_field_name",
            Rejection::FieldInQuery => "field_in_query",
            Rejection::ContentTypeMismatch => "content_type_mismatch",
            Rejection::FieldTooLong => "field_too_long",
            Rejection::TooManyValues => "too_many_values",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::EncryptionFailed => "encryption_failed",
        }
    }

    /// The HTTP status of the response: 400, 413, 415 or 500.
    pub fn status(self) -> u16 {
        match self {
            Rejection::InvalidUri
            | Rejection::InvalidBody
            | Rejection::BodyTooDeep
            | Rejection::MarkerInjection
            | Rejection::ReservedValue
            | Rejection::AmbiguousFieldName
            | Rejection::FieldInQuery
            | Rejection::ContentTypeMismatch => 400,
            Rejection::InputTruncated
            | Rejection::FieldTooLong
            | Rejection::TooManyValues
            | Rejection::BodyTooLarge => 413,
            Rejection::UnsupportedContentType => 415,
            Rejection::InvalidEvent | Rejection::BodyNotVisible | Rejection::EncryptionFailed => {
                500
            }
        }
    }

    /// The Lambda@Edge generated-response object: status, headers and a small JSON body
    /// `{"error": code, "message": message}`. `message` must not carry values from the request.
    pub fn to_response(self, message: &str) -> Value {
        let body = json!({"error": self.code(), "message": message}).to_string();
        json!({
            "status": self.status().to_string(),
            "statusDescription": status_text(self.status()),
            "headers": {
                "content-type": [{"key": "Content-Type", "value": "application/json"}],
                "cache-control": [{"key": "Cache-Control", "value": "no-store"}],
            },
            "bodyEncoding": "text",
            "body": body,
        })
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl From<&BodyError> for Rejection {
    fn from(e: &BodyError) -> Self {
        match e {
            BodyError::Syntax { .. } => Rejection::InvalidBody,
            BodyError::TooDeep => Rejection::BodyTooDeep,
            BodyError::Marker { .. } => Rejection::MarkerInjection,
            BodyError::ReservedTag { .. } => Rejection::ReservedValue,
            BodyError::AmbiguousName { .. } => Rejection::AmbiguousFieldName,
            BodyError::FieldInQuery { .. } => Rejection::FieldInQuery,
            BodyError::Mismatch { .. } => Rejection::ContentTypeMismatch,
            BodyError::TooLong { .. } => Rejection::FieldTooLong,
            BodyError::TooManyValues { .. } => Rejection::TooManyValues,
            BodyError::TooLarge { .. } => Rejection::BodyTooLarge,
            BodyError::Encrypt(_) | BodyError::Internal(_) => Rejection::EncryptionFailed,
        }
    }
}

impl From<&UriError> for Rejection {
    fn from(_: &UriError) -> Self {
        Rejection::InvalidUri
    }
}

impl From<&ContentTypeError> for Rejection {
    fn from(e: &ContentTypeError) -> Self {
        match e {
            ContentTypeError::Charset => Rejection::UnsupportedContentType,
        }
    }
}

/// A rejection with its message, while the request is handled.
struct Refusal {
    rejection: Rejection,
    message: String,
}

impl Refusal {
    fn new(rejection: Rejection, message: impl Into<String>) -> Self {
        Refusal {
            rejection,
            message: message.into(),
        }
    }
}

impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Self {
        Refusal::new(Rejection::from(&e), e.to_string())
    }
}

impl From<UriError> for Refusal {
    fn from(e: UriError) -> Self {
        Refusal::new(Rejection::from(&e), e.to_string())
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        _ => "Internal Server Error",
    }
}

fn header<'v>(request: &'v Value, name: &str) -> Option<&'v str> {
    request
        .get("headers")?
        .get(name)?
        .get(0)?
        .get("value")?
        .as_str()
}

impl EdgeEncryptor {
    /// Handles one origin-request event (`{"Records": [{"cf": {"request": ...}}]}`).
    pub fn handle_event(&self, event: &Value) -> Outcome {
        match event.pointer("/Records/0/cf/request") {
            Some(request) => self.handle_request(request),
            None => respond(Refusal::new(
                Rejection::InvalidEvent,
                "not a CloudFront origin-request event",
            )),
        }
    }

    /// Handles the `request` object of an origin-request event.
    pub fn handle_request(&self, request: &Value) -> Outcome {
        match self.try_handle(request) {
            Ok(outcome) => outcome,
            Err(refusal) => respond(refusal),
        }
    }

    fn try_handle(&self, request: &Value) -> Result<Outcome, Refusal> {
        let invalid = |what: &str| {
            Refusal::new(
                Rejection::InvalidEvent,
                format!("origin-request event without {what}"),
            )
        };
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a method"))?;
        let uri = request
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a uri"))?;
        let applies = self.config.applies_to(method, uri)?;
        if !applies {
            return Ok(Outcome::Forward {
                request: request.clone(),
                encrypted: 0,
            });
        }
        let query = request
            .get("querystring")
            .and_then(Value::as_str)
            .unwrap_or("");
        let new_query = crate::query::rewrite(query, &self.rules(), self.config.query)?;
        let forward_unchanged = || {
            let mut request = request.clone();
            let mut encrypted = 0;
            if let Some((query, count)) = &new_query {
                request["querystring"] = Value::from(query.as_str());
                encrypted = *count;
            }
            Ok(Outcome::Forward { request, encrypted })
        };

        let Some(body) = request.get("body").filter(|b| !b.is_null()) else {
            let has_body = header(request, "content-length").is_some_and(|l| l.trim() != "0")
                || header(request, "transfer-encoding").is_some();
            if has_body {
                return Err(Refusal::new(
                    Rejection::BodyNotVisible,
                    "the request has a body but the event does not: associate the function with 'include body'",
                ));
            }
            return forward_unchanged();
        };
        if body
            .get("inputTruncated")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Err(Refusal::new(
                Rejection::InputTruncated,
                "the body is larger than CloudFront passes to the edge (1 MB) and cannot be encrypted",
            ));
        }
        let data = body.get("data").and_then(Value::as_str).unwrap_or("");
        let bytes = match body.get("encoding").and_then(Value::as_str) {
            Some("base64") => STANDARD
                .decode(data)
                .map_err(|_| invalid("a valid base64 body"))?,
            Some("text") => data.as_bytes().to_vec(),
            _ => return Err(invalid("a body encoding")),
        };
        if bytes.is_empty() {
            return forward_unchanged();
        }

        let kind =
            match header(request, "content-type").map(|ct| self.config.body_kind(ct)) {
                Some(Ok(Some(kind))) => kind,
                Some(Err(e)) => return Err(Refusal::new(Rejection::from(&e), e.to_string())),
                Some(Ok(None)) | None => return Err(Refusal::new(
                    Rejection::UnsupportedContentType,
                    "the content type is missing or not one whose fields this endpoint encrypts",
                )),
            };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(Refusal::new(Rejection::InvalidBody, "body is not UTF-8"));
        };
        let (new_body, mut encrypted) = self.encrypt_body(kind, text)?;
        if new_body.len() > self.config.max_body_bytes {
            return Err(Refusal::new(
                Rejection::BodyTooLarge,
                format!(
                    "the encrypted body is {} bytes; at most {} can be forwarded",
                    new_body.len(),
                    self.config.max_body_bytes
                ),
            ));
        }
        let mut request = request.clone();
        if let Some((query, count)) = new_query {
            request["querystring"] = Value::from(query);
            encrypted += count;
        }
        let mut new = Map::new();
        new.insert("inputTruncated".into(), Value::Bool(false));
        new.insert("action".into(), Value::from("replace"));
        new.insert("encoding".into(), Value::from("text"));
        new.insert("data".into(), Value::String(new_body));
        request["body"] = Value::Object(new);
        Ok(Outcome::Forward { request, encrypted })
    }
}

fn respond(Refusal { rejection, message }: Refusal) -> Outcome {
    Outcome::Respond {
        response: rejection.to_response(&message),
        rejection,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code and status, spelled out: renaming a code or changing a status breaks this
    /// test (clients and dashboards match on the codes).
    #[test]
    fn codes_and_statuses() {
        let table = [
            (Rejection::InvalidEvent, "invalid_event", 500),
            (Rejection::InvalidUri, "invalid_uri", 400),
            (Rejection::BodyNotVisible, "body_not_visible", 500),
            (Rejection::InputTruncated, "input_truncated", 413),
            (
                Rejection::UnsupportedContentType,
                "unsupported_content_type",
                415,
            ),
            (Rejection::InvalidBody, "invalid_body", 400),
            (Rejection::BodyTooDeep, "body_too_deep", 400),
            (Rejection::MarkerInjection, "marker_injection", 400),
            (Rejection::ReservedValue, "reserved_value", 400),
            (Rejection::AmbiguousFieldName, "ambiguous_field_name", 400),
            (Rejection::FieldInQuery, "field_in_query", 400),
            (Rejection::ContentTypeMismatch, "content_type_mismatch", 400),
            (Rejection::FieldTooLong, "field_too_long", 413),
            (Rejection::TooManyValues, "too_many_values", 413),
            (Rejection::BodyTooLarge, "body_too_large", 413),
            (Rejection::EncryptionFailed, "encryption_failed", 500),
        ];
        assert_eq!(
            table.iter().map(|(r, _, _)| *r).collect::<Vec<_>>(),
            Rejection::ALL,
            "every variant, in declaration order"
        );
        for (rejection, code, status) in table {
            assert_eq!(
                (rejection.code(), rejection.status()),
                (code, status),
                "{rejection:?}"
            );
            assert_eq!(rejection.to_string(), code);
        }
    }

    /// The generated response, byte for byte as the edge has always written it.
    #[test]
    fn response_shape() {
        let cases = [
            (
                Rejection::MarkerInjection,
                "field ssn contains an encryption marker; ciphertext cannot be submitted",
                "400",
                "Bad Request",
            ),
            (
                Rejection::BodyTooLarge,
                "too big",
                "413",
                "Payload Too Large",
            ),
            (
                Rejection::UnsupportedContentType,
                "only UTF-8 bodies can be encrypted",
                "415",
                "Unsupported Media Type",
            ),
            (
                Rejection::BodyNotVisible,
                "no body",
                "500",
                "Internal Server Error",
            ),
        ];
        for (rejection, message, status, description) in cases {
            let expected = format!(
                r#"{{"status":"{status}","statusDescription":"{description}","headers":{{"content-type":[{{"key":"Content-Type","value":"application/json"}}],"cache-control":[{{"key":"Cache-Control","value":"no-store"}}]}},"bodyEncoding":"text","body":{}}}"#,
                serde_json::to_string(&format!(
                    r#"{{"error":"{}","message":"{message}"}}"#,
                    rejection.code()
                ))
                .unwrap()
            );
            assert_eq!(
                serde_json::to_string(&rejection.to_response(message)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn body_errors_map_to_codes() {
        let field = || "ssn".to_owned();
        for (error, code) in [
            (
                BodyError::Syntax {
                    format: "JSON",
                    what: "x",
                    offset: 0,
                },
                "invalid_body",
            ),
            (BodyError::TooDeep, "body_too_deep"),
            (BodyError::Marker { field: field() }, "marker_injection"),
            (BodyError::ReservedTag { field: field() }, "reserved_value"),
            (
                BodyError::AmbiguousName { field: field() },
                "ambiguous_field_name",
            ),
            (BodyError::FieldInQuery { field: field() }, "field_in_query"),
            (
                BodyError::Mismatch {
                    declared: "form data",
                    what: "x",
                    offset: 0,
                },
                "content_type_mismatch",
            ),
            (
                BodyError::TooLong {
                    field: field(),
                    len: 200,
                    limit: 190,
                },
                "field_too_long",
            ),
            (BodyError::TooManyValues { limit: 1 }, "too_many_values"),
            (BodyError::TooLarge { limit: 1 }, "body_too_large"),
            (BodyError::Internal("bug"), "encryption_failed"),
            (
                BodyError::Encrypt(fle_shared::EncryptError::Backend(
                    fle_shared::BackendError::PlaintextTooLong { len: 1, limit: 0 },
                )),
                "encryption_failed",
            ),
        ] {
            assert_eq!(Rejection::from(&error).code(), code, "{error}");
        }
        assert_eq!(
            Rejection::from(&UriError::Nul(1)),
            Rejection::InvalidUri,
            "uri"
        );
    }
}
