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
        /// Why.
        rejection: Rejection,
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
}

/// Why a request was answered by the edge: an HTTP status, a stable machine-readable code and a
/// message. Never contains values from the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status (400, 413, 415 or 500).
    pub status: u16,
    /// Stable code for clients and logs (`marker_injection`, `field_too_long`, ...).
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            message: message.into(),
        }
    }

    fn from_body_error(e: &BodyError) -> Self {
        let (status, code) = match e {
            BodyError::Syntax { .. } => (400, "invalid_body"),
            BodyError::TooDeep => (400, "body_too_deep"),
            BodyError::Marker { .. } => (400, "marker_injection"),
            BodyError::ReservedTag { .. } => (400, "reserved_value"),
            BodyError::AmbiguousName { .. } => (400, "ambiguous_field_name"),
            BodyError::FieldInQuery { .. } => (400, "field_in_query"),
            BodyError::Mismatch { .. } => (400, "content_type_mismatch"),
            BodyError::TooLong { .. } => (413, "field_too_long"),
            BodyError::TooManyValues { .. } => (413, "too_many_values"),
            BodyError::TooLarge { .. } => (413, "body_too_large"),
            _ => (500, "encryption_failed"),
        };
        Rejection::new(status, code, e.to_string())
    }

    fn from_uri_error(e: &UriError) -> Self {
        Rejection::new(400, "invalid_uri", e.to_string())
    }

    /// The Lambda@Edge generated-response object: status, headers and a small JSON body.
    pub fn to_response(&self) -> Value {
        let body = json!({"error": self.code, "message": self.message}).to_string();
        json!({
            "status": self.status.to_string(),
            "statusDescription": status_text(self.status),
            "headers": {
                "content-type": [{"key": "Content-Type", "value": "application/json"}],
                "cache-control": [{"key": "Cache-Control", "value": "no-store"}],
            },
            "bodyEncoding": "text",
            "body": body,
        })
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
            None => respond(Rejection::new(
                500,
                "invalid_event",
                "not a CloudFront origin-request event",
            )),
        }
    }

    /// Handles the `request` object of an origin-request event.
    pub fn handle_request(&self, request: &Value) -> Outcome {
        match self.try_handle(request) {
            Ok(outcome) => outcome,
            Err(rejection) => respond(rejection),
        }
    }

    fn try_handle(&self, request: &Value) -> Result<Outcome, Rejection> {
        let invalid_body = |e: BodyError| Rejection::from_body_error(&e);
        let invalid = |what: &str| {
            Rejection::new(
                500,
                "invalid_event",
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
        let applies = self
            .config
            .applies_to(method, uri)
            .map_err(|e| Rejection::from_uri_error(&e))?;
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
        let new_query =
            crate::query::rewrite(query, &self.rules(), self.config.query).map_err(invalid_body)?;
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
                return Err(Rejection::new(
                    500,
                    "body_not_visible",
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
            return Err(Rejection::new(
                413,
                "input_truncated",
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
                Some(Err(ContentTypeError::Charset)) => {
                    return Err(Rejection::new(
                        415,
                        "unsupported_content_type",
                        "only UTF-8 bodies can be encrypted",
                    ))
                }
                Some(Ok(None)) | None => return Err(Rejection::new(
                    415,
                    "unsupported_content_type",
                    "the content type is missing or not one whose fields this endpoint encrypts",
                )),
            };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            return Err(Rejection::new(400, "invalid_body", "body is not UTF-8"));
        };
        let (new_body, mut encrypted) = self.encrypt_body(kind, text).map_err(invalid_body)?;
        if new_body.len() > self.config.max_body_bytes {
            return Err(Rejection::new(
                413,
                "body_too_large",
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

fn respond(rejection: Rejection) -> Outcome {
    Outcome::Respond {
        response: rejection.to_response(),
        rejection,
    }
}
