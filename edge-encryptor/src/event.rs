//! CloudFront origin-request events in, forwarded requests or generated responses out.
//!
//! Event shape (Lambda@Edge): `Records[0].cf.request` with `method`, `uri`, `headers`
//! (lowercase name → `[{key, value}]`) and, when the association includes the body,
//! `body: {inputTruncated, action, encoding: "base64" | "text", data}`. [`OriginRequest`] is a
//! typed view of that object borrowing from the event; the handler forwards the event's own
//! object, so members the view does not model (`clientIp`, `origin`, …) pass through unchanged.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::body::BodyError;
use crate::config::ContentTypeError;
use crate::uri::UriError;
use crate::EdgeEncryptor;

mod text;

pub use text::EventChange;

/// What to do with one request. `T` is how the request or response is held: a
/// [`serde_json::Value`] from [`EdgeEncryptor::handle_event`], its JSON text from
/// [`EdgeEncryptor::handle_event_json`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T = Value> {
    /// Forward this request object to the origin (returned from the handler as is).
    Forward {
        /// The request, body rewritten when fields were encrypted.
        request: T,
        /// How many values were encrypted.
        encrypted: usize,
    },
    /// Answer the viewer with this generated response instead.
    Respond {
        /// The Lambda@Edge response object.
        response: T,
        /// Why: the status and the stable code of the response.
        rejection: Rejection,
        /// The human-readable reason in the response body. Names fields, never values.
        message: String,
    },
}

impl<T> Outcome<T> {
    /// What the Lambda@Edge handler returns: the request or the response.
    pub fn into_inner(self) -> T {
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

impl Outcome {
    /// The object a Lambda@Edge handler returns: the request or the response.
    pub fn into_value(self) -> Value {
        self.into_inner()
    }
}

/// Why a request was answered by the edge instead of forwarded: each has an HTTP status and a
/// stable machine-readable code, the `error` member of the response body. More reasons may be
/// added; existing codes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// 500 `invalid_event`: not a CloudFront origin-request event, or one without a method, a
    /// URI, a body encoding, with a body that is not valid base64 or with a malformed member
    /// ([`EventError`]).
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

impl From<&EventError> for Rejection {
    fn from(_: &EventError) -> Self {
        Rejection::InvalidEvent
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

impl From<EventError> for Refusal {
    fn from(e: EventError) -> Self {
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

/// Why an event is not a usable origin-request event: answered with 500
/// [`Rejection::InvalidEvent`]. Messages name members of the event, never their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Not `{"Records": [{"cf": {"request": {...}}}]}` with an object as the request.
    #[error("not a CloudFront origin-request event")]
    NotOriginRequest,
    /// `method` missing, null or not a string.
    #[error("origin-request event without a method")]
    NoMethod,
    /// `uri` missing, null or not a string.
    #[error("origin-request event without a uri")]
    NoUri,
    /// A body without `encoding` (missing or null).
    #[error("origin-request event without a body encoding")]
    NoBodyEncoding,
    /// A body whose `encoding` is neither `"base64"` nor `"text"`.
    #[error("origin-request event with a body encoding other than base64 or text")]
    UnknownBodyEncoding,
    /// A body with `encoding: "base64"` whose `data` is not valid (padded, standard) base64.
    #[error("origin-request event without a valid base64 body")]
    InvalidBase64,
    /// A member of the wrong JSON type (`querystring` not a string, a header not
    /// `[{key, value}]`, …); names the member.
    #[error("origin-request event with a malformed {0}")]
    Malformed(&'static str),
}

/// A typed, borrowed view of the `request` object of a CloudFront origin-request event: every
/// string borrows from the event, nothing is copied. Members the view does not model
/// (`clientIp`, `origin`, …) stay in the event object, which is what the handler forwards.
///
/// ```
/// use fle_edge_encryptor::{BodyEncoding, OriginRequest};
///
/// let event = serde_json::json!({"Records": [{"cf": {"request": {
///     "method": "POST", "uri": "/signup", "querystring": "a=1", "clientIp": "203.0.113.1",
///     "headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]},
///     "body": {"inputTruncated": false, "action": "read-only", "encoding": "text",
///              "data": "{}"}}}}]});
/// let request = OriginRequest::from_event(&event)?;
/// assert_eq!((request.method(), request.uri(), request.querystring()), ("POST", "/signup", "a=1"));
/// assert_eq!(request.headers().get("content-type").unwrap().value, "application/json");
/// let body = request.body().unwrap();
/// assert_eq!(body.encoding()?, BodyEncoding::Text);
/// assert_eq!(&*body.decode()?, b"{}");
/// # Ok::<(), fle_edge_encryptor::EventError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OriginRequest<'a> {
    method: &'a str,
    uri: &'a str,
    querystring: &'a str,
    headers: Headers<'a>,
    body: Option<RequestBody<'a>>,
}

impl<'a> OriginRequest<'a> {
    /// Reads the request of an event (`{"Records": [{"cf": {"request": ...}}]}`).
    pub fn from_event(event: &'a Value) -> Result<Self, EventError> {
        let request = event
            .pointer("/Records/0/cf/request")
            .ok_or(EventError::NotOriginRequest)?;
        Self::from_value(request)
    }

    /// Reads a `request` object. `method` and `uri` are required; `querystring`, `headers` and
    /// `body` may be missing or null; every member present must have its documented type.
    pub fn from_value(request: &'a Value) -> Result<Self, EventError> {
        RequestLine::from_value(request)?.complete()
    }

    /// The HTTP method, as CloudFront spells it (`"POST"`).
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The URI path (`"/api/people"`), as received: not decoded, not normalised.
    pub fn uri(&self) -> &'a str {
        self.uri
    }

    /// The query string without the `?`; empty when there is none.
    pub fn querystring(&self) -> &'a str {
        self.querystring
    }

    /// The headers.
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }

    /// The body, when the event includes one (the function is associated with "include
    /// body"; without it a request body is invisible to the edge).
    pub fn body(&self) -> Option<RequestBody<'a>> {
        self.body
    }
}

/// `method` and `uri`, which decide whether the rules cover a request, read before anything
/// else of it (see [`EdgeEncryptor::handle_request`]).
struct RequestLine<'a> {
    object: &'a Map<String, Value>,
    method: &'a str,
    uri: &'a str,
}

impl<'a> RequestLine<'a> {
    fn from_value(request: &'a Value) -> Result<Self, EventError> {
        let object = request.as_object().ok_or(EventError::NotOriginRequest)?;
        let string = |name| object.get(name).and_then(Value::as_str);
        Ok(RequestLine {
            object,
            method: string("method").ok_or(EventError::NoMethod)?,
            uri: string("uri").ok_or(EventError::NoUri)?,
        })
    }

    /// The whole view: the other members, checked.
    fn complete(self) -> Result<OriginRequest<'a>, EventError> {
        let member = |name| self.object.get(name).filter(|v| !v.is_null());
        let querystring = match member("querystring") {
            None => "",
            Some(v) => v.as_str().ok_or(EventError::Malformed("querystring"))?,
        };
        let headers = Headers::from_value(member("headers"))?;
        let body = member("body").map(RequestBody::from_value).transpose()?;
        Ok(OriginRequest {
            method: self.method,
            uri: self.uri,
            querystring,
            headers,
            body,
        })
    }
}

/// The `headers` of a request: lowercase name → `[{key, value}]`, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Headers<'a> {
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Headers<'a> {
    fn from_value(value: Option<&'a Value>) -> Result<Self, EventError> {
        let Some(value) = value else {
            return Ok(Headers::default());
        };
        let malformed = EventError::Malformed("headers");
        let map = value.as_object().ok_or(malformed)?;
        for entries in map.values() {
            let entries = entries.as_array().ok_or(malformed)?;
            if !entries.iter().all(|e| Header::from_value(e).is_some()) {
                return Err(malformed);
            }
        }
        Ok(Headers { map: Some(map) })
    }

    /// The entries of a header; `name` in lowercase, as CloudFront writes the names.
    fn entries(&self, name: &str) -> &'a [Value] {
        self.map
            .and_then(|m| m.get(name))
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The first entry of a header (`name` in lowercase), if it has one.
    pub fn get(&self, name: &str) -> Option<Header<'a>> {
        self.entries(name).first().and_then(Header::from_value)
    }

    /// Every entry of a header (`name` in lowercase), in order.
    pub fn get_all(&self, name: &str) -> impl Iterator<Item = Header<'a>> + 'a {
        self.entries(name).iter().filter_map(Header::from_value)
    }

    /// Every entry of every header: `(lowercase name, entry)`, in the event's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Header<'a>)> + 'a {
        self.map.into_iter().flatten().flat_map(|(name, entries)| {
            entries
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(move |e| Some((name.as_str(), Header::from_value(e)?)))
        })
    }

    /// How many header names there are.
    pub fn len(&self) -> usize {
        self.map.map_or(0, Map::len)
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One header entry: `{"key": "Content-Type", "value": "application/json"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header<'a> {
    /// The name as the viewer spelled it; optional in the event format.
    pub key: Option<&'a str>,
    /// The value.
    pub value: &'a str,
}

impl<'a> Header<'a> {
    fn from_value(entry: &'a Value) -> Option<Self> {
        let entry = entry.as_object()?;
        let key = match entry.get("key") {
            None | Some(Value::Null) => None,
            Some(key) => Some(key.as_str()?),
        };
        Some(Header {
            key,
            value: entry.get("value")?.as_str()?,
        })
    }
}

/// How the `data` of a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyEncoding {
    /// `"base64"`: standard alphabet, padded.
    Base64,
    /// `"text"`: the body itself.
    Text,
}

/// The `body` of a request: `{inputTruncated, action, encoding, data}`, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestBody<'a> {
    input_truncated: bool,
    action: Option<&'a str>,
    encoding: Option<&'a str>,
    data: &'a str,
}

impl<'a> RequestBody<'a> {
    fn from_value(body: &'a Value) -> Result<Self, EventError> {
        let object = body.as_object().ok_or(EventError::Malformed("body"))?;
        let member = |name| object.get(name).filter(|v| !v.is_null());
        let string = |name, what| {
            member(name)
                .map(|v| v.as_str().ok_or(EventError::Malformed(what)))
                .transpose()
        };
        Ok(RequestBody {
            input_truncated: member("inputTruncated")
                .map(|v| {
                    v.as_bool()
                        .ok_or(EventError::Malformed("body.inputTruncated"))
                })
                .transpose()?
                .unwrap_or(false),
            action: string("action", "body.action")?,
            encoding: string("encoding", "body.encoding")?,
            data: string("data", "body.data")?.unwrap_or(""),
        })
    }

    /// `inputTruncated`: CloudFront cut the body (over 1 MB). False when missing.
    pub fn input_truncated(&self) -> bool {
        self.input_truncated
    }

    /// `action` (`"read-only"` or `"replace"`), if present.
    pub fn action(&self) -> Option<&'a str> {
        self.action
    }

    /// `encoding`: an error when missing or not one of the two CloudFront uses.
    pub fn encoding(&self) -> Result<BodyEncoding, EventError> {
        match self.encoding {
            Some("base64") => Ok(BodyEncoding::Base64),
            Some("text") => Ok(BodyEncoding::Text),
            Some(_) => Err(EventError::UnknownBodyEncoding),
            None => Err(EventError::NoBodyEncoding),
        }
    }

    /// `data` as in the event (base64 or text); empty when missing.
    pub fn data(&self) -> &'a str {
        self.data
    }

    /// The body's bytes: borrowed from the event for a text body, decoded for base64.
    pub fn decode(&self) -> Result<Cow<'a, [u8]>, EventError> {
        match self.encoding()? {
            BodyEncoding::Text => Ok(Cow::Borrowed(self.data.as_bytes())),
            BodyEncoding::Base64 => STANDARD
                .decode(self.data)
                .map(Cow::Owned)
                .map_err(|_| EventError::InvalidBase64),
        }
    }
}

impl EdgeEncryptor {
    /// Handles one origin-request event (`{"Records": [{"cf": {"request": ...}}]}`).
    pub fn handle_event(&self, event: &Value) -> Outcome {
        match event.pointer("/Records/0/cf/request") {
            Some(request) => self.handle_request(request),
            None => respond(EventError::NotOriginRequest.into()),
        }
    }

    /// Handles the `request` object of an origin-request event.
    ///
    /// Whether the rules cover the request is decided from `method` and `uri` alone, before the
    /// rest is read: a request they do not cover is forwarded as it came, whatever the rest
    /// holds. For a covered request the other members are read as an [`OriginRequest`] and must
    /// be well formed ([`EventError`]).
    pub fn handle_request(&self, request: &Value) -> Outcome {
        match self.try_handle(request) {
            Ok(outcome) => outcome,
            Err(refusal) => respond(refusal),
        }
    }

    fn try_handle(&self, request: &Value) -> Result<Outcome, Refusal> {
        let line = RequestLine::from_value(request)?;
        if !self.config.applies_to(line.method, line.uri)? {
            return Ok(Outcome::Forward {
                request: request.clone(),
                encrypted: 0,
            });
        }
        let change = self.rewrite(line.complete()?)?;
        Ok(Outcome::Forward {
            request: rewritten(request, change.query, change.body.map(body_object)),
            encrypted: change.encrypted,
        })
    }

    /// What changes in a request the rules cover (the caller has decided that from `method`
    /// and `uri` alone, before reading the rest into `view`), whatever the request's
    /// representation: the new query string and body, each `None` when unchanged.
    fn rewrite(&self, view: OriginRequest<'_>) -> Result<Change, Refusal> {
        // One set of rules for the query string and the body: one version-2 encapsulation per
        // key for the whole request.
        let rules = self.rules();
        let new_query = crate::query::rewrite(view.querystring(), &rules, self.config.query)?;
        let forward_unchanged = |new_query: Option<(String, usize)>| {
            let (query, encrypted) = new_query.map_or((None, 0), |(q, n)| (Some(q), n));
            Ok(Change {
                query,
                body: None,
                encrypted,
            })
        };

        let Some(body) = view.body() else {
            let headers = view.headers();
            let has_body = headers
                .get("content-length")
                .is_some_and(|l| l.value.trim() != "0")
                || headers.get("transfer-encoding").is_some();
            if has_body {
                return Err(Refusal::new(
                    Rejection::BodyNotVisible,
                    "the request has a body but the event does not: associate the function with 'include body'",
                ));
            }
            return forward_unchanged(new_query);
        };
        if body.input_truncated() {
            return Err(Refusal::new(
                Rejection::InputTruncated,
                "the body is larger than CloudFront passes to the edge (1 MB) and cannot be encrypted",
            ));
        }
        // Borrowed from the event for a text body; decoded once for base64.
        let bytes = body.decode()?;
        if bytes.is_empty() {
            return forward_unchanged(new_query);
        }

        let kind =
            match view
                .headers()
                .get("content-type")
                .map(|ct| self.config.body_kind(ct.value))
            {
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
        let (new_body, mut encrypted) = self.encrypt_body_with(&rules, kind, text)?;
        drop(bytes);
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
        let query = new_query.map(|(query, count)| {
            encrypted += count;
            query
        });
        Ok(Change {
            query,
            body: Some(new_body),
            encrypted,
        })
    }
}

/// What the edge changes in a covered request.
struct Change {
    /// The new query string, when a value in it was encrypted.
    query: Option<String>,
    /// The new body text (forwarded with `encoding: "text"`), when the body was read.
    body: Option<String>,
    /// How many values were encrypted.
    encrypted: usize,
}

/// The `body` member of a forwarded request whose body was rewritten.
fn body_object(data: String) -> Value {
    let mut new = Map::new();
    new.insert("inputTruncated".into(), Value::Bool(false));
    new.insert("action".into(), Value::from("replace"));
    new.insert("encoding".into(), Value::from("text"));
    new.insert("data".into(), Value::String(data));
    Value::Object(new)
}

/// `request` with `querystring` and `body` replaced when given (in place, or appended when the
/// member is missing) and every other member copied as it is. The replaced members are never
/// copied: the old body is not duplicated only to be dropped.
fn rewritten(request: &Value, query: Option<String>, body: Option<Value>) -> Value {
    let Some(object) = request.as_object() else {
        // `RequestLine::from_value` accepted only objects.
        return request.clone();
    };
    let mut query = query.map(Value::String);
    let mut body = body;
    let mut out = Map::with_capacity(object.len() + 1);
    for (name, value) in object {
        let replacement = match name.as_str() {
            "querystring" => query.take(),
            "body" => body.take(),
            _ => None,
        };
        out.insert(name.clone(), replacement.unwrap_or_else(|| value.clone()));
    }
    if let Some(query) = query {
        out.insert("querystring".into(), query);
    }
    if let Some(body) = body {
        out.insert("body".into(), body);
    }
    Value::Object(out)
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

    /// Replaced members keep their place; missing ones are appended; the rest is copied.
    #[test]
    fn rewritten_replaces_in_place() {
        let request = json!({"clientIp": "203.0.113.1", "body": {"data": "old"}, "uri": "/"});
        let out = rewritten(&request, Some("q=1".into()), Some(json!({"data": "new"})));
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"clientIp":"203.0.113.1","body":{"data":"new"},"uri":"/","querystring":"q=1"}"#
        );
        assert_eq!(rewritten(&request, None, None), request);
        assert_eq!(
            Rejection::from(&EventError::Malformed("body")),
            Rejection::InvalidEvent
        );
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
                    fle_shared::backend::BackendError::PlaintextTooLong { len: 1, limit: 0 },
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
