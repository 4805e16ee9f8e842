//! The JSON-text path: [`EdgeEncryptor::handle_event_json`] reads the event's text and writes
//! the forwarded request's text, without building a [`Value`] for the whole event.
//!
//! Only what the edge reads is parsed: the path to the request, the request's member names,
//! `method`, `uri`, `querystring`, `headers` and `body`. Every other member of the request
//! (`clientIp`, `origin`, …) is copied as the event spelled it, byte for byte, and so are
//! `querystring` and `body` when they do not change. `headers` is written back from what was
//! read, so the origin sees exactly the headers the edge judged. The new body is escaped by
//! [`push_json_string`], which jumps between quotes and backslashes (`memchr2`) instead of
//! looking up every byte.
//!
//! Measured on the 3×6 event natively (criterion): a version-2 `rsa-oaep` event whose RSA
//! operation is amortised (`reuse_encapsulation`) took 18.7 µs through `Value`s (parsing,
//! cloning, writing and dropping them, and serde_json's byte-by-byte `format_escaped_str` of the
//! new body, were about half of it) and takes 11.8 µs here.
//!
//! This path decides as [`EdgeEncryptor::handle_event`] does on the parsed event (the same
//! [`OriginRequest`] view and rules; every event of the edge tests goes through both, and the
//! `edge_event` fuzz target compares their verdicts), with these exceptions, each failing closed
//! or harmless:
//! - it refuses ([`EventError::Malformed`]) a request naming `method`, `uri`, `querystring`,
//!   `headers` or `body` twice, and a body naming one of its members twice: a parser of the
//!   returned object that took the other copy would not see what the edge judged (`Value`
//!   keeps the last copy silently);
//! - it refuses ([`EventError::NotOriginRequest`]) `Records`, `cf` or `request` named twice, and
//!   `Records` that is not an array (a JSON pointer reads `{"0": …}` as a record);
//! - members it does not read are checked for JSON syntax only (not for lone surrogate escapes,
//!   numbers beyond `f64` or nesting depth, which `Value` refuses), and copied as they are, a
//!   repeated one as often as it appears.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Change, EventError, Headers, OriginRequest, Outcome, Refusal, Rejection, RequestBody};
use crate::EdgeEncryptor;

impl EdgeEncryptor {
    /// Handles one origin-request event given as JSON text, and returns the JSON text of what
    /// the handler answers: the request to forward or a generated response. Decides as
    /// [`handle_event`](Self::handle_event) does on the parsed event, faster: members the edge
    /// does not change are copied from the event's text. Also refuses (500 `invalid_event`) a
    /// request naming `method`, `uri`, `querystring`, `headers` or `body` twice, a body naming
    /// one of its members twice, and arrays where the event's objects belong; the module
    /// documentation lists every difference.
    ///
    /// ```
    /// use fle_edge_encryptor::{EdgeEncryptor, Outcome};
    /// use fle_shared::backend;
    ///
    /// let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    /// let config = "[[keys]]\nid = \"01\"\npublic_key = \"keys/demo-01.pub.pem\"\n\
    ///               [edge]\nkey = \"01\"\nfields = [\"ssn\"]\n";
    /// let edge = EdgeEncryptor::from_toml_str(config, &root, backend::default_backend())?;
    /// let event = r#"{"Records": [{"cf": {"request": {"method": "POST", "uri": "/people",
    ///     "clientIp": "203.0.113.1",
    ///     "headers": {"content-type": [{"key": "Content-Type", "value": "application/json"}]},
    ///     "body": {"inputTruncated": false, "action": "read-only", "encoding": "text",
    ///              "data": "{\"ssn\": \"123-45-6789\"}"}}}}]}"#;
    /// let Outcome::Forward { request, encrypted } = edge.handle_event_json(event) else {
    ///     panic!("refused");
    /// };
    /// assert_eq!(encrypted, 1);
    /// assert!(request.starts_with(r#"{"method":"POST","uri":"/people","clientIp":"203.0.113.1","#));
    /// assert!(!request.contains("123-45-6789"));
    /// let forwarded: serde_json::Value = serde_json::from_str(&request)?;
    /// assert_eq!(forwarded["body"]["action"], "replace");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle_event_json(&self, event: &str) -> Outcome<String> {
        match self.decide_json(event) {
            Ok((members, headers, change)) => Outcome::Forward {
                encrypted: change.as_ref().map_or(0, |c| c.encrypted),
                request: match change {
                    None => members.write(None, None, None),
                    Some(change) => members.write(headers.as_ref(), change.query, change.body),
                },
            },
            Err(refusal) => respond_text(refusal),
        }
    }

    /// [`handle_event_json`](Self::handle_event_json) for a host that holds the event as an
    /// object (fle's Lambda@Edge loader): the same decision, as the members to replace in the
    /// event's `request` instead of the whole request's text.
    pub fn rewrite_event_json(&self, event: &str) -> EventChange {
        match self.decide_json(event) {
            Ok((_, _, None)) => EventChange::Unchanged,
            Ok((_, _, Some(change))) if change.query.is_none() && change.body.is_none() => {
                EventChange::Unchanged
            }
            Ok((_, _, Some(change))) => EventChange::Rewritten {
                querystring: change.query,
                body: change.body,
                encrypted: change.encrypted,
            },
            Err(Refusal { rejection, message }) => EventChange::Respond {
                response: rejection.to_response(&message).to_string(),
                rejection,
                message,
            },
        }
    }

    /// The request's members, its headers as read (when the request is covered and has
    /// them), and what changes (`None` when the rules do not cover the request).
    fn decide_json<'a>(
        &self,
        event: &'a str,
    ) -> Result<(Members<'a>, Option<Value>, Option<Change>), Refusal> {
        let Member(FirstRecord(Member(Member(members, _), _)), _) =
            serde_json::from_str::<Event<'_>>(event).map_err(|_| EventError::NotOriginRequest)?;
        if members.duplicate {
            return Err(EventError::Malformed("request").into());
        }
        let method = members.string("method").ok_or(EventError::NoMethod)?;
        let uri = members.string("uri").ok_or(EventError::NoUri)?;
        if !self.config.applies_to(&method, &uri)? {
            return Ok((members, None, None));
        }

        // The rest of the view, read only for a covered request (as `handle_event` does).
        let querystring = match members.get("querystring") {
            None => Cow::Borrowed(""),
            Some(raw) => string(raw).ok_or(EventError::Malformed("querystring"))?,
        };
        let headers_value = members
            .get("headers")
            .map(|raw| serde_json::from_str::<Value>(raw.get()))
            .transpose()
            .map_err(|_| EventError::Malformed("headers"))?;
        let headers = Headers::from_value(headers_value.as_ref())?;
        let body_parts = members.get("body").map(BodyParts::read).transpose()?;
        let view = OriginRequest {
            method: &method,
            uri: &uri,
            querystring: &querystring,
            headers,
            body: body_parts.as_ref().map(BodyParts::view),
        };
        let change = self.rewrite(view)?;
        Ok((members, headers_value, Some(change)))
    }
}

/// What changes in an event's `request`, from [`EdgeEncryptor::rewrite_event_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventChange {
    /// Forward the request as it is.
    Unchanged,
    /// Forward the request with these members replaced (each only when `Some`; added when the
    /// request has no such member): `querystring` by this string, `body` by
    /// `{"inputTruncated": false, "action": "replace", "encoding": "text", "data": body}`.
    Rewritten {
        /// The new query string.
        querystring: Option<String>,
        /// The new body text.
        body: Option<String>,
        /// How many values were encrypted.
        encrypted: usize,
    },
    /// Answer the viewer with this generated response (JSON text) instead.
    Respond {
        /// The Lambda@Edge response object, as JSON text.
        response: String,
        /// Why: the status and the stable code of the response.
        rejection: Rejection,
        /// The human-readable reason in the response body. Names fields, never values.
        message: String,
    },
}

fn respond_text(Refusal { rejection, message }: Refusal) -> Outcome<String> {
    Outcome::Respond {
        response: rejection.to_response(&message).to_string(),
        rejection,
        message,
    }
}

/// A member's name and colon, after a comma unless it is the object's first member.
fn push_name(out: &mut String, name: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    push_json_string(out, name);
    out.push(':');
}

/// The rewritten body member, as [`super::body_object`] writes it.
fn push_body(out: &mut String, data: &str) {
    out.push_str(r#"{"inputTruncated":false,"action":"replace","encoding":"text","data":"#);
    push_json_string(out, data);
    out.push('}');
}

/// A JSON string that is `null` reads as missing, as in the `Value` view.
fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// The string a raw JSON value holds, borrowed when it has no escapes; `None` when it is not a
/// string.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Str<'_>>(raw.get()).ok().map(|s| s.0)
}

/// `{"Records": [{"cf": {"request": …}}, …]}`: the first record's request. Other records and
/// other members are skipped (read for syntax only), as `handle_event` reads `/Records/0`.
type Event<'a> = Member<FirstRecord<'a>, RecordsName>;

struct FirstRecord<'a>(Record<'a>);

type Record<'a> = Member<Cf<'a>, CfName>;

type Cf<'a> = Member<Members<'a>, RequestName>;

/// The name of the one member a [`Member`] reads.
trait Name {
    const NAME: &'static str;
}

enum RecordsName {}
enum CfName {}
enum RequestName {}

impl Name for RecordsName {
    const NAME: &'static str = "Records";
}
impl Name for CfName {
    const NAME: &'static str = "cf";
}
impl Name for RequestName {
    const NAME: &'static str = "request";
}

/// An object of which one member, `N::NAME`, is read as `T`; the others are skipped (read for
/// syntax only). An array is refused (serde's derived structs would read one by position), and
/// so is the member named twice.
struct Member<T, N>(T, PhantomData<N>);

impl<'de, T: Deserialize<'de>, N: Name> Deserialize<'de> for Member<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T, N>(PhantomData<(T, N)>);
        impl<'de, T: Deserialize<'de>, N: Name> Visitor<'de> for Object<T, N> {
            type Value = Member<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object with a member {:?}", N::NAME)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
                    if name != N::NAME {
                        map.next_value::<IgnoredAny>()?;
                    } else if found.is_some() {
                        return Err(de::Error::duplicate_field(N::NAME));
                    } else {
                        found = Some(map.next_value::<T>()?);
                    }
                }
                found
                    .map(|value| Member(value, PhantomData))
                    .ok_or_else(|| de::Error::missing_field(N::NAME))
            }
        }
        deserializer.deserialize_map(Object(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for FirstRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct First<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for First<'a> {
            type Value = FirstRecord<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-empty array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq
                    .next_element::<Record<'a>>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstRecord(first))
            }
        }
        deserializer.deserialize_seq(First(PhantomData))
    }
}

/// A JSON string, borrowed from the text when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The members of the request object in their order, values as raw text. `duplicate` is set
/// when a member the edge reads is named twice.
struct Members<'a> {
    list: Vec<(Cow<'a, str>, &'a RawValue)>,
    duplicate: bool,
}

/// The members the edge reads: named twice, the request is refused.
const READ_MEMBERS: [&str; 5] = ["method", "uri", "querystring", "headers", "body"];

impl<'a> Members<'a> {
    /// A member that is present and not `null`.
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.list
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .filter(|v| !is_null(v))
    }

    /// A member that is a string.
    fn string(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get(name).and_then(string)
    }

    /// The request object again, members in their order and as they came, except `headers`
    /// written from what was read (when given) and the new query string and body (when
    /// given; appended if the request had none).
    fn write(
        &self,
        headers: Option<&Value>,
        mut query: Option<String>,
        mut body: Option<String>,
    ) -> String {
        let raw_len: usize = self
            .list
            .iter()
            .map(|(n, v)| n.len() + v.get().len() + 4)
            .sum();
        let new_len = body.as_ref().map_or(0, |b| b.len() + b.len() / 8 + 80)
            + query.as_ref().map_or(0, String::len);
        let mut out = String::with_capacity(raw_len + new_len + 2);
        out.push('{');
        for (name, value) in &self.list {
            push_name(&mut out, name);
            let replaced = match name.as_ref() {
                "querystring" => query.take().map(|q| push_json_string(&mut out, &q)),
                "body" => body.take().map(|b| push_body(&mut out, &b)),
                "headers" => headers.map(|h| out.push_str(&h.to_string())),
                _ => None,
            };
            if replaced.is_none() {
                out.push_str(value.get());
            }
        }
        if let Some(query) = query {
            push_name(&mut out, "querystring");
            push_json_string(&mut out, &query);
        }
        if let Some(body) = body {
            push_name(&mut out, "body");
            push_body(&mut out, &body);
        }
        out.push('}');
        out
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Object<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a request object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut list: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(8);
                let mut seen = [false; READ_MEMBERS.len()];
                let mut duplicate = false;
                while let Some((Str(name), value)) = map.next_entry::<Str<'a>, &'a RawValue>()? {
                    if let Some(i) = READ_MEMBERS.iter().position(|m| *m == name) {
                        duplicate |= std::mem::replace(&mut seen[i], true);
                    }
                    list.push((name, value));
                }
                Ok(Members { list, duplicate })
            }
        }
        deserializer.deserialize_map(Object(PhantomData))
    }
}

/// The members of `body`, as raw text; serde refuses a member named twice.
#[derive(Deserialize)]
struct RawBody<'a> {
    #[serde(rename = "inputTruncated", borrow, default)]
    input_truncated: Option<&'a RawValue>,
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    encoding: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The body's members, read and checked as [`RequestBody`] reads them from a `Value`.
struct BodyParts<'a> {
    input_truncated: bool,
    action: Option<Cow<'a, str>>,
    encoding: Option<Cow<'a, str>>,
    data: Cow<'a, str>,
}

impl<'a> BodyParts<'a> {
    fn read(raw: &'a RawValue) -> Result<Self, EventError> {
        // An object only: serde's derived `RawBody` would read an array by position.
        if !raw.get().starts_with('{') {
            return Err(EventError::Malformed("body"));
        }
        let body = serde_json::from_str::<RawBody<'a>>(raw.get())
            .map_err(|_| EventError::Malformed("body"))?;
        // serde reads a `null` member as `None`, as the `Value` view reads it as missing.
        let text = |v: Option<&'a RawValue>, what| {
            v.map(|v| string(v).ok_or(EventError::Malformed(what)))
                .transpose()
        };
        Ok(BodyParts {
            input_truncated: body
                .input_truncated
                .map(|v| match v.get() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(EventError::Malformed("body.inputTruncated")),
                })
                .transpose()?
                .unwrap_or(false),
            action: text(body.action, "body.action")?,
            encoding: text(body.encoding, "body.encoding")?,
            data: text(body.data, "body.data")?.unwrap_or(Cow::Borrowed("")),
        })
    }

    fn view(&self) -> RequestBody<'_> {
        RequestBody {
            input_truncated: self.input_truncated,
            action: self.action.as_deref(),
            encoding: self.encoding.as_deref(),
            data: &self.data,
        }
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (`\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t`, other control characters as `\u00xx`).
///
/// serde_json's own escaper looks up every byte. A forwarded body is mostly envelopes and values
/// with nothing to escape, and control characters are rare (whitespace of a pretty-printed
/// body), so this one checks the whole text for control characters in one pass the compiler
/// vectorises, and then jumps from quote to backslash with `memchr2` (SIMD), copying the runs
/// between them whole. Text with control characters takes the byte-wise path.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push('"');
    // `fold`, not `any`: no early exit, so the comparison runs on whole vectors.
    let control = bytes.iter().fold(false, |found, &b| found | (b < 0x20));
    let mut run = 0;
    if control {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(escape) = escape(b) {
                // `b` is ASCII, so `run..i` ends on a character boundary.
                out.push_str(&s[run..i]);
                escape.push_to(out);
                run = i + 1;
            }
        }
    } else {
        for i in memchr::memchr2_iter(b'"', b'\\', bytes) {
            out.push_str(&s[run..i]);
            out.push('\\');
            out.push(char::from(bytes[i]));
            run = i + 1;
        }
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// How a byte is escaped in a JSON string, if it is.
enum Escape {
    Short(&'static str),
    Unicode(u8),
}

impl Escape {
    fn push_to(self, out: &mut String) {
        match self {
            Escape::Short(text) => out.push_str(text),
            Escape::Unicode(b) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
    }
}

fn escape(b: u8) -> Option<Escape> {
    Some(match b {
        b'"' => Escape::Short("\\\""),
        b'\\' => Escape::Short("\\\\"),
        0x08 => Escape::Short("\\b"),
        0x0c => Escape::Short("\\f"),
        b'\n' => Escape::Short("\\n"),
        b'\r' => Escape::Short("\\r"),
        b'\t' => Escape::Short("\\t"),
        0x00..=0x1f => Escape::Unicode(b),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        push_json_string(&mut out, s);
        out
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "\"",
            "\\",
            "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{0}i\u{1f}j\u{7f}k",
            "é\"ü\u{2028}😀\u{1}",
            "0123456\"",
            "01234567\"",
            "012345678\"",
            "\"\"\"\"\"\"\"\"\"",
            "#01#AgA9/XCvviAG6XTMsyOma3ewFKMLy343wfFCQrJBVx1DpFAdmErnTybjRMqf#10#",
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        for b in 0u8..0x80 {
            let s = format!("abcdefgh{}ijklmnop", char::from(b));
            assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{b:#x}");
        }
    }

    proptest! {
        #[test]
        fn escapes_any_string_as_serde_json_does(s in "(\\PC|[\\x00-\\x1f\"\\\\]){0,64}") {
            prop_assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
