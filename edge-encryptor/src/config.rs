//! The `[edge]` table of the configuration file: which fields to encrypt, with which key, for
//! which requests, and what to do with bodies that do not fit the rules.
//!
//! The minimal form:
//!
//! ```toml
//! [edge]
//! key = "01"
//! fields = ["fname", "lname", "email", "ssn", "dob", "phone"]
//! ```
//!
//! A bare name matches an object member of that name at any depth of a JSON body (and a form
//! field of that name). Everything else is optional:
//!
//! ```toml
//! [edge]
//! key = "01"                                   # default key for fields that name none
//! fields = [
//!     "ssn",                                   # a name, at any depth
//!     "$.customers[*].card.number",            # a path: $ .name .* [N] [*] ['name']
//!     { path = "$.card.cvv", key = "02" },     # a path or name with its own key
//!     { name = "iban", key = "02" },
//! ]
//! content_types = ["application/json", "application/x-www-form-urlencoded"]  # default; also "+json" types
//! methods = ["POST", "PUT", "PATCH"]           # default: every method
//! uris = ["/api/*", "/signup"]                 # default: every URI; '*' matches any run of characters
//! uri_case = "insensitive"                     # default; or "sensitive": how `uris` compare
//! exclude_uris = ["/api/health"]               # paths the rules never cover (plain spellings only)
//! names = "exact"                              # or "case-insensitive", "origin": which spellings of a field are encrypted
//! query = "reject"                             # or "encrypt": a configured field in the query string
//! on_marker = "reject"                         # or "neutralise": incoming text that contains a key's prefix
//! retired_markers = ["#00#"]                   # prefixes of keys no longer held: always refused
//! max_body_bytes = 1000000                     # largest body forwarded after encryption (CloudFront: 1 MB)
//! max_encrypted_values = 1000                  # most values encrypted in one request
//! bind_paths = false                           # true: bind each value to its field (envelope v2 keys only)
//! reuse_encapsulation = { seconds = 60, requests = 1000 }  # default: off; envelope v2 keys only
//! ```
//!
//! With `bind_paths = true` every value is sealed with its field's name in the associated data
//! (`docs/ENVELOPE.md` section 5.3: the configured field as written in `fields`, e.g. `ssn` or
//! `$['card']['number']`), so an envelope copied into another field does not open there. Every
//! field's key must write envelope version 2 (a P-256 key, or `envelope = "v2"`); decryptors
//! open such values only with the same `fields` (`[decrypt] fields`, `--fields`).
//!
//! With `reuse_encapsulation` (off by default) a version-2 encapsulation is reused by later
//! requests while it is younger than `seconds` (1 to 86,400) and has served fewer than
//! `requests` requests (1 to 1,000,000); both are required. Fewer asymmetric operations at the
//! edge and fewer KMS calls when decrypting, at a cost: the requests that share one are linkable
//! by its bytes, and its secret opens every value of all of them. Every field's key must write
//! envelope version 2.
//!
//! Requests whose method or URI is not listed pass through untouched: no field rule applies.
//!
//! # URI matching (fail closed)
//!
//! Origins route on a normalised path, not on the bytes CloudFront forwards, so patterns are
//! matched against every reading an origin may give the path (see [`crate::uri`]):
//!
//! - the raw path, its [`normalise`](crate::uri::normalise)d form (`\` → `/`, unreserved escapes
//!   decoded, `;params` stripped, `//` collapsed, dot segments resolved, no trailing slash) and
//!   its [fully decoded](crate::uri::normalise_decoded) form (`%2F`, `%5C` → `/`). The request
//!   is covered if **any** reading matches **any** `uris` pattern (empty `uris`: every path).
//! - `uri_case = "insensitive"` (the default) compares `uris` patterns with Unicode-widened case
//!   folding (`/SIGNUP`, `/ſignup` match `/signup`); `"sensitive"` compares exactly.
//! - A covered request is excluded by `exclude_uris` only when its raw path is spelled plainly
//!   ([`is_plain`](crate::uri::is_plain): no `\`, `%2F`, `%5C`, `%2E`, `%00`, `;params`, `//`,
//!   dot segments or encoded unreserved characters; a trailing slash is fine) **and every**
//!   reading (normalised, fully decoded and, under `"insensitive"`, case-folded) matches an
//!   exclusion, compared case-sensitively. So `/api/health/` is excluded by `"/api/health"` but
//!   `/API/health`, `/api/%68ealth`, `/api%2Fhealth` and `/api/health;x` stay covered: an
//!   exclusion is never reachable by a spelling another origin may route elsewhere.
//! - A path with a NUL, a control character or a malformed escape is refused: 400
//!   `invalid_uri` (when the method is covered).
//!
//! Patterns are normalised when loaded (`/signup/` is `/signup`, `//api` is `/api`); patterns
//! that could never match a normalised path (`;`, `%`, `\`, `.` or `..` segments) are refused,
//! as are `exclude_uris` patterns not starting with `/` and, under `"insensitive"`, exclusions
//! not in lower case (the folded reading could never match them).

use std::path::PathBuf;

use fle_shared::KeyId;
use serde::Deserialize;

pub use crate::names::NameMatching;

pub use fle_shared::body::{FieldSelector, PathStep};

use crate::uri::{self, UriError};

/// One field rule: what to encrypt and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    /// What it selects.
    pub selector: FieldSelector,
    /// The key it encrypts with.
    pub key: KeyId,
}

/// What to do with a body that must be encrypted but cannot be: it does not parse as its
/// content type, or the content type is missing or not listed. Always refused: the former
/// `"pass"` forwarded bodies that common parsers accept (lone surrogates, deep nesting, JSON
/// sent as `text/plain`) with configured fields in clear, so it was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnparseablePolicy {
    /// Answer 400 (unparseable) or 415 (content type). The only policy.
    #[default]
    Reject,
}

/// What to do with a configured field in the query string (many frameworks merge query and
/// body parameters, and query strings land in access logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueryPolicy {
    /// Answer 400 `field_in_query`. The default.
    #[default]
    Reject,
    /// Encrypt its value in place (percent-encoded envelope), like a form field.
    Encrypt,
}

/// What to do with incoming text (a value or a member name, in any field) that contains a
/// configured key's prefix: a captured envelope smuggled in to be decrypted by the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MarkerPolicy {
    /// Answer 400. The default.
    #[default]
    Reject,
    /// Break the marker by inserting U+2060 WORD JOINER after its first character, so the text
    /// reads the same but is no longer an envelope.
    #[serde(alias = "neutralize")]
    Neutralise,
}

/// How `uris` patterns compare with request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UriCase {
    /// Case-insensitively (Unicode-widened case folding: `/SIGNUP` and `/ſignup` match
    /// `/signup`), as case-insensitive origins route. The default: covering too much only
    /// encrypts more.
    #[default]
    Insensitive,
    /// Exactly.
    Sensitive,
}

/// The body formats the edge can rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// JSON (`application/json`, `application/*+json`).
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// The validated `[edge]` table.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Field rules, in configuration order.
    pub fields: Vec<FieldRule>,
    /// Media types (lowercase, without parameters) and how each is parsed.
    pub content_types: Vec<(String, BodyKind)>,
    /// Methods the rules apply to (uppercase); empty means every method.
    pub methods: Vec<String>,
    /// URI patterns the rules apply to, normalised; empty means every URI.
    pub uris: Vec<String>,
    /// How `uris` compare with request paths.
    pub uri_case: UriCase,
    /// URI patterns the rules never apply to, normalised; matched case-sensitively, and only
    /// against plainly spelled paths (see the module documentation).
    pub exclude_uris: Vec<String>,
    /// Policy for bodies that cannot be parsed.
    pub on_unparseable: UnparseablePolicy,
    /// Policy for incoming marker prefixes.
    pub on_marker: MarkerPolicy,
    /// Which spellings of a configured name are encrypted (the rest are refused).
    pub names: NameMatching,
    /// Policy for configured fields in the query string.
    pub query: QueryPolicy,
    /// Prefixes of keys the edge no longer holds: text containing one is always refused.
    pub retired_markers: Vec<String>,
    /// Largest body forwarded, in bytes, after encryption.
    pub max_body_bytes: usize,
    /// Most values encrypted in one request.
    pub max_encrypted_values: usize,
    /// Whether each value is bound to its field's name (envelope version 2 only).
    pub bind_paths: bool,
    /// Reuse of one version-2 encapsulation across requests, within limits; `None` (the
    /// default): one per request.
    pub reuse_encapsulation: Option<EncapsulationReuse>,
}

/// `reuse_encapsulation`: how long and for how many requests one version-2 encapsulation
/// serves (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapsulationReuse {
    /// Age limit in seconds (1 to 86,400): a request starting later gets a new encapsulation.
    pub seconds: u64,
    /// Most requests under one encapsulation (1 to 1,000,000).
    pub requests: u64,
}

/// Largest `reuse_encapsulation.seconds`: one day.
pub const MAX_REUSE_SECONDS: u64 = 86_400;

/// Largest `reuse_encapsulation.requests`.
pub const MAX_REUSE_REQUESTS: u64 = 1_000_000;

/// Refuses reuse limits outside their ranges.
pub fn check_reuse(reuse: &EncapsulationReuse) -> Result<(), ConfigError> {
    if !(1..=MAX_REUSE_SECONDS).contains(&reuse.seconds) {
        return Err(ConfigError::ReuseSeconds(reuse.seconds));
    }
    if !(1..=MAX_REUSE_REQUESTS).contains(&reuse.requests) {
        return Err(ConfigError::ReuseRequests(reuse.requests));
    }
    Ok(())
}

/// Default cap on values encrypted per request: more than a 1 MB body of RSA-2048 envelopes
/// would need anyway would be refused by the size limit, but only after the RSA work.
pub const DEFAULT_MAX_ENCRYPTED_VALUES: usize = 1000;

/// CloudFront's limit on a replaced origin-request body is 1 MB; stay under it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_000_000;

impl EdgeConfig {
    /// A builder: the typed alternative to the `[edge]` table, checked by the same rules.
    pub fn builder() -> EdgeConfigBuilder {
        EdgeConfigBuilder::default()
    }

    /// Reads the `[edge]` table from the TOML text of a configuration file (other tables, such
    /// as `[[keys]]`, are ignored here).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text)?;
        let edge = file.edge.ok_or(ConfigError::MissingEdge)?;
        edge.validate()
    }

    /// Whether the rules apply to a request with this method and URI (the path, without the
    /// query string). Fails closed: covered if any reading of the path an origin may route on
    /// matches `uris`, excluded only if a plain spelling matches `exclude_uris` in every reading
    /// (see the module documentation). A path with a NUL, a control character or a malformed
    /// escape is an error when the method is covered (the edge answers 400 `invalid_uri`).
    pub fn applies_to(&self, method: &str, uri: &str) -> Result<bool, UriError> {
        if !(self.methods.is_empty() || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
        {
            return Ok(false);
        }
        let normal = uri::normalise(uri)?;
        let decoded = uri::normalise_decoded(uri)?;
        let included = self.uris.is_empty()
            || [uri, &normal, &decoded]
                .into_iter()
                .any(|reading| self.included(reading))
            || [&normal, &decoded]
                .into_iter()
                .filter_map(|reading| uri::without_suffix(reading))
                .any(|reading| self.included(&reading));
        Ok(included && !self.excluded(uri, &normal, &decoded))
    }

    fn included(&self, reading: &str) -> bool {
        match self.uri_case {
            UriCase::Sensitive => self
                .uris
                .iter()
                .any(|p| glob_match(p.as_bytes(), reading.as_bytes())),
            UriCase::Insensitive => {
                let reading = fold(reading);
                self.uris
                    .iter()
                    .any(|p| glob_match(fold(p).as_bytes(), reading.as_bytes()))
            }
        }
    }

    fn excluded(&self, raw: &str, normal: &str, decoded: &str) -> bool {
        if self.exclude_uris.is_empty() || !uri::is_plain(raw) {
            return false;
        }
        let matches = |reading: &str| {
            self.exclude_uris
                .iter()
                .any(|p| glob_match(p.as_bytes(), reading.as_bytes()))
        };
        matches(normal)
            && matches(decoded)
            && (self.uri_case == UriCase::Sensitive || matches(&fold(normal)))
    }

    /// How a `Content-Type` header value is parsed, if it is listed. A `charset` parameter
    /// other than UTF-8 is refused (`Err`), since the values are encrypted as UTF-8.
    pub fn body_kind(&self, content_type: &str) -> Result<Option<BodyKind>, ContentTypeError> {
        let mut parts = content_type.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("charset") {
                let value = value.trim().trim_matches('"');
                if !value.eq_ignore_ascii_case("utf-8") && !value.eq_ignore_ascii_case("utf8") {
                    return Err(ContentTypeError::Charset);
                }
            }
        }
        Ok(self
            .content_types
            .iter()
            .find(|(m, _)| *m == media)
            .map(|(_, k)| *k))
    }
}

/// A content type the edge refuses outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentTypeError {
    /// A charset other than UTF-8.
    #[error("only UTF-8 bodies can be encrypted")]
    Charset,
}

/// The case-folded reading of a path or pattern (see [`crate::names`]).
fn fold(s: &str) -> String {
    s.chars().map(crate::names::fold_char).collect()
}

/// Checks and normalises the URI patterns of a configuration: `uris` must start with `/` or `*`,
/// `exclude_uris` with `/`; none may hold `;`, `%`, `\`, control characters or dot segments;
/// exclusions must be in lower case under [`UriCase::Insensitive`]. Returns the normalised
/// `(uris, exclude_uris)`.
pub fn check_uri_patterns(
    uris: &[String],
    exclude_uris: &[String],
    uri_case: UriCase,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let bad = |pattern: &str, reason: &'static str| ConfigError::UriPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    let uris = uris
        .iter()
        .map(|p| {
            if !p.starts_with('/') && !p.starts_with('*') {
                return Err(ConfigError::Uri(p.clone()));
            }
            uri::normalise_pattern(p).map_err(|reason| bad(p, reason))
        })
        .collect::<Result<_, _>>()?;
    let exclude_uris = exclude_uris
        .iter()
        .map(|p| {
            if !p.starts_with('/') {
                return Err(bad(p, "in exclude_uris must start with '/'"));
            }
            let normal = uri::normalise_pattern(p).map_err(|reason| bad(p, reason))?;
            if uri_case == UriCase::Insensitive && fold(&normal) != normal {
                return Err(bad(
                    p,
                    "in exclude_uris is not in lower case: with uri_case = \"insensitive\" an exclusion must also match the lower-case reading of a path, so it could never apply (write it in lower case, or set uri_case = \"sensitive\")",
                ));
            }
            Ok(normal)
        })
        .collect::<Result<_, _>>()?;
    Ok((uris, exclude_uris))
}

/// `*` matches any run of bytes (including none); everything else matches itself.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[derive(Deserialize)]
struct File {
    edge: Option<EdgeSpec>,
}

/// The `[edge]` table as written (TOML) or as built ([`EdgeConfigBuilder`]), before
/// [`EdgeSpec::validate`], the one place either becomes an [`EdgeConfig`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeSpec {
    key: Option<String>,
    fields: Vec<FieldSpec>,
    content_types: Option<Vec<String>>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    uris: Vec<String>,
    #[serde(default)]
    uri_case: UriCase,
    #[serde(default)]
    exclude_uris: Vec<String>,
    on_unparseable: Option<String>,
    #[serde(default)]
    on_marker: MarkerPolicy,
    #[serde(default)]
    names: NameMatching,
    #[serde(default)]
    query: QueryPolicy,
    #[serde(default)]
    retired_markers: Vec<String>,
    max_body_bytes: Option<usize>,
    max_encrypted_values: Option<usize>,
    #[serde(default)]
    bind_paths: bool,
    reuse_encapsulation: Option<ReuseSpec>,
}

/// `reuse_encapsulation = { seconds = N, requests = M }`: both required.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "reuse_encapsulation = { seconds = N, requests = M }"
)]
struct ReuseSpec {
    seconds: u64,
    requests: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FieldSpec {
    Plain(String),
    Table(FieldTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    name: Option<String>,
    path: Option<String>,
    key: Option<String>,
}

/// Builds an [`EdgeConfig`] in code: each method sets what the `[edge]` key of the same name
/// sets, and [`build`](EdgeConfigBuilder::build) checks the result with exactly the rules that
/// check a TOML `[edge]` table (so it fails, with the same [`ConfigError`], where the table
/// would). Unset options take the TOML defaults.
///
/// ```
/// # fn main() -> Result<(), fle_edge_encryptor::ConfigError> {
/// use fle_edge_encryptor::{EdgeConfig, MarkerPolicy, QueryPolicy};
///
/// let config = EdgeConfig::builder()
///     .key("01")
///     .fields(["ssn", "$.card.number"])
///     .field_with_key("iban", "02")
///     .methods(["POST", "PUT"])
///     .uris(["/api/*"])
///     .exclude_uris(["/api/health"])
///     .on_marker(MarkerPolicy::Neutralise)
///     .query(QueryPolicy::Encrypt)
///     .max_encrypted_values(100)
///     .build()?;
/// assert_eq!(config.fields.len(), 3);
/// assert_eq!(config.fields[2].key.as_str(), "02");
/// assert_eq!(config.applies_to("POST", "/api/users"), Ok(true));
/// assert_eq!(config.applies_to("GET", "/api/users"), Ok(false));
///
/// // The same refusals as the TOML path.
/// assert!(EdgeConfig::builder().key("01").build().is_err()); // no fields
/// assert!(EdgeConfig::builder().fields(["ssn"]).build().is_err()); // no key
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EdgeConfigBuilder {
    spec: EdgeSpec,
}

impl EdgeConfigBuilder {
    /// The default key (`key`) for fields that name none.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.spec.key = Some(key.into());
        self
    }

    /// Adds fields encrypted with the default key: names, or paths starting with `$` (as the
    /// strings of `fields`).
    pub fn fields<S: Into<String>>(mut self, fields: impl IntoIterator<Item = S>) -> Self {
        self.spec
            .fields
            .extend(fields.into_iter().map(|f| FieldSpec::Plain(f.into())));
        self
    }

    /// Adds one field (a name, or a path starting with `$`) with its own key (as
    /// `{ name = ..., key = ... }` or `{ path = ..., key = ... }`).
    pub fn field_with_key(mut self, selector: impl Into<String>, key: impl Into<String>) -> Self {
        let selector = selector.into();
        let (name, path) = if selector.starts_with('$') {
            (None, Some(selector))
        } else {
            (Some(selector), None)
        };
        self.spec.fields.push(FieldSpec::Table(FieldTable {
            name,
            path,
            key: Some(key.into()),
        }));
        self
    }

    /// The media types whose bodies are rewritten (`content_types`; default JSON and form).
    pub fn content_types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.spec.content_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// The methods the rules apply to (`methods`; default every method).
    pub fn methods<S: Into<String>>(mut self, methods: impl IntoIterator<Item = S>) -> Self {
        self.spec.methods = methods.into_iter().map(Into::into).collect();
        self
    }

    /// The URI patterns the rules apply to (`uris`; default every URI).
    pub fn uris<S: Into<String>>(mut self, uris: impl IntoIterator<Item = S>) -> Self {
        self.spec.uris = uris.into_iter().map(Into::into).collect();
        self
    }

    /// How `uris` compare with request paths (`uri_case`).
    pub fn uri_case(mut self, uri_case: UriCase) -> Self {
        self.spec.uri_case = uri_case;
        self
    }

    /// The URI patterns the rules never apply to (`exclude_uris`).
    pub fn exclude_uris<S: Into<String>>(mut self, uris: impl IntoIterator<Item = S>) -> Self {
        self.spec.exclude_uris = uris.into_iter().map(Into::into).collect();
        self
    }

    /// Which spellings of a configured name are encrypted (`names`).
    pub fn names(mut self, names: NameMatching) -> Self {
        self.spec.names = names;
        self
    }

    /// What to do with a configured field in the query string (`query`).
    pub fn query(mut self, query: QueryPolicy) -> Self {
        self.spec.query = query;
        self
    }

    /// What to do with incoming text containing a key's prefix (`on_marker`).
    pub fn on_marker(mut self, on_marker: MarkerPolicy) -> Self {
        self.spec.on_marker = on_marker;
        self
    }

    /// Prefixes of keys no longer held, always refused (`retired_markers`).
    pub fn retired_markers<S: Into<String>>(
        mut self,
        markers: impl IntoIterator<Item = S>,
    ) -> Self {
        self.spec.retired_markers = markers.into_iter().map(Into::into).collect();
        self
    }

    /// The largest body forwarded after encryption (`max_body_bytes`).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.spec.max_body_bytes = Some(limit);
        self
    }

    /// The most values encrypted in one request (`max_encrypted_values`).
    pub fn max_encrypted_values(mut self, limit: usize) -> Self {
        self.spec.max_encrypted_values = Some(limit);
        self
    }

    /// Binds each value to its field's name (`bind_paths`; envelope version 2 keys only).
    pub fn bind_paths(mut self, on: bool) -> Self {
        self.spec.bind_paths = on;
        self
    }

    /// Reuses one version-2 encapsulation per key for at most `seconds` and `requests`
    /// requests (`reuse_encapsulation`; envelope version 2 keys only).
    pub fn reuse_encapsulation(mut self, seconds: u64, requests: u64) -> Self {
        self.spec.reuse_encapsulation = Some(ReuseSpec { seconds, requests });
        self
    }

    /// Checks the configuration as a TOML `[edge]` table is checked.
    pub fn build(self) -> Result<EdgeConfig, ConfigError> {
        self.spec.validate()
    }
}

impl EdgeSpec {
    fn validate(self) -> Result<EdgeConfig, ConfigError> {
        let default_key: Option<KeyId> = self.key.map(|k| k.parse()).transpose()?;
        let mut fields = Vec::new();
        for spec in self.fields {
            let (selector, key) = match spec {
                FieldSpec::Plain(s) => (FieldSelector::parse(&s)?, None),
                FieldSpec::Table(t) => {
                    let selector = match (t.name, t.path) {
                        (Some(n), None) if !n.starts_with('$') && !n.is_empty() => {
                            FieldSelector::Name(n)
                        }
                        (None, Some(p)) if p.starts_with('$') => FieldSelector::parse(&p)?,
                        _ => return Err(ConfigError::FieldTable),
                    };
                    (selector, t.key.map(|k| k.parse()).transpose()?)
                }
            };
            check_selector(&selector)?;
            let key = key
                .or_else(|| default_key.clone())
                .ok_or_else(|| ConfigError::NoKey(selector.to_string()))?;
            fields.push(FieldRule { selector, key });
        }
        if fields.is_empty() {
            return Err(ConfigError::NoFields);
        }
        let content_types = self
            .content_types
            .unwrap_or_else(|| {
                vec![
                    "application/json".into(),
                    "application/x-www-form-urlencoded".into(),
                ]
            })
            .into_iter()
            .map(|t| {
                let media = t.trim().to_ascii_lowercase();
                let kind = if media == "application/json"
                    || (media.starts_with("application/") && media.ends_with("+json"))
                {
                    BodyKind::Json
                } else if media == "application/x-www-form-urlencoded" {
                    BodyKind::Form
                } else {
                    return Err(ConfigError::ContentType(t));
                };
                Ok((media, kind))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if content_types.is_empty() {
            return Err(ConfigError::ContentType(String::new()));
        }
        let methods = self
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        let (uris, exclude_uris) =
            check_uri_patterns(&self.uris, &self.exclude_uris, self.uri_case)?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > 1_048_576 {
            return Err(ConfigError::MaxBody(max_body_bytes));
        }
        let max_encrypted_values = self
            .max_encrypted_values
            .unwrap_or(DEFAULT_MAX_ENCRYPTED_VALUES);
        if max_encrypted_values == 0 || max_encrypted_values > 100_000 {
            return Err(ConfigError::MaxValues(max_encrypted_values));
        }
        match self.on_unparseable.as_deref() {
            None | Some("reject") => {}
            Some(other) => return Err(ConfigError::Unparseable(other.to_owned())),
        }
        for marker in &self.retired_markers {
            if marker.len() < 2 || marker.len() > 64 || marker.trim() != marker {
                return Err(ConfigError::RetiredMarker(marker.clone()));
            }
        }
        let reuse_encapsulation = self.reuse_encapsulation.map(|r| EncapsulationReuse {
            seconds: r.seconds,
            requests: r.requests,
        });
        if let Some(reuse) = &reuse_encapsulation {
            check_reuse(reuse)?;
        }
        Ok(EdgeConfig {
            fields,
            content_types,
            methods,
            uris,
            uri_case: self.uri_case,
            exclude_uris,
            on_unparseable: UnparseablePolicy::Reject,
            on_marker: self.on_marker,
            names: self.names,
            query: self.query,
            retired_markers: self.retired_markers,
            max_body_bytes,
            max_encrypted_values,
            bind_paths: self.bind_paths,
            reuse_encapsulation,
        })
    }
}

/// Refuses a selector that can never select what its author meant: a bare name that looks like
/// a path or a form reading (`card.number` instead of `$.card.number`, `user[ssn]`), or that has
/// surrounding whitespace.
pub fn check_selector(selector: &FieldSelector) -> Result<(), ConfigError> {
    if let FieldSelector::Name(name) = selector {
        if let Some(reason) = crate::names::suspicious_name(name) {
            return Err(ConfigError::Selector(fle_shared::body::SelectorError {
                selector: name.clone(),
                reason,
            }));
        }
    }
    Ok(())
}

/// Why an edge configuration was refused. More reasons may be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read edge configuration {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has the wrong shape.
    #[error("invalid edge configuration: {}", .0.message())]
    Toml(toml::de::Error),
    /// No `[edge]` table.
    #[error("the configuration has no [edge] table")]
    MissingEdge,
    /// No fields to encrypt.
    #[error("[edge] fields is empty: name at least one field to encrypt")]
    NoFields,
    /// A field with no key and no default key.
    #[error("field {0} has no key: set [edge] key, or key = \"...\" on the field")]
    NoKey(String),
    /// `bind_paths` with a field whose key writes envelope version 1, which cannot bind.
    #[error(
        "bind_paths: field {field} uses key {key}, which writes envelope version 1; give the key \
         envelope = \"v2\" (or a P-256 key)"
    )]
    BindNeedsV2 {
        /// The field.
        field: String,
        /// The key.
        key: KeyId,
    },
    /// `reuse_encapsulation` with a field whose key writes envelope version 1, which has no
    /// encapsulation to reuse.
    #[error(
        "reuse_encapsulation: field {field} uses key {key}, which writes envelope version 1 (one \
         RSA operation per value, nothing to reuse); give the key envelope = \"v2\" (or a P-256 \
         key) or remove reuse_encapsulation"
    )]
    ReuseNeedsV2 {
        /// The field.
        field: String,
        /// The key.
        key: KeyId,
    },
    /// `reuse_encapsulation.seconds` outside 1..=86400.
    #[error("reuse_encapsulation.seconds = {0}: must be between 1 and 86400")]
    ReuseSeconds(u64),
    /// `reuse_encapsulation.requests` outside 1..=1000000.
    #[error("reuse_encapsulation.requests = {0}: must be between 1 and 1000000")]
    ReuseRequests(u64),
    /// A key the keyring does not have.
    #[error("field {field} uses key {key}, which is not in the keyring")]
    UnknownKey {
        /// The field.
        field: String,
        /// The key.
        key: KeyId,
    },
    /// A bad selector.
    #[error(transparent)]
    Selector(#[from] fle_shared::body::SelectorError),
    /// A field table without exactly one of `name` (no leading `$`) or `path` (leading `$`).
    #[error("a field table needs exactly one of name = \"...\" or path = \"$...\"")]
    FieldTable,
    /// A content type fle cannot parse.
    #[error("content type {0:?} is not supported: use application/json, application/*+json or application/x-www-form-urlencoded")]
    ContentType(String),
    /// A URI pattern that cannot match a CloudFront URI.
    #[error("URI pattern {0:?} must start with '/' or '*'")]
    Uri(String),
    /// A URI pattern that could never match a normalised path, or an exclusion that could
    /// never apply.
    #[error("URI pattern {pattern:?} {reason}")]
    UriPattern {
        /// The pattern as configured.
        pattern: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A body limit outside 1..=1 MiB.
    #[error("max_body_bytes = {0}: must be between 1 and 1048576 (CloudFront's limit)")]
    MaxBody(usize),
    /// A cap on encrypted values outside 1..=100000.
    #[error("max_encrypted_values = {0}: must be between 1 and 100000")]
    MaxValues(usize),
    /// `on_unparseable` other than `"reject"`.
    #[error("on_unparseable = {0:?} is not supported: bodies that do not parse are always refused (\"pass\" forwarded fields in clear to lenient origins and was removed)")]
    Unparseable(String),
    /// A retired marker that is empty, too long or padded with whitespace.
    #[error("retired marker {0:?} must be 2 to 64 characters without surrounding whitespace")]
    RetiredMarker(String),
    /// A retired marker that is also an active key's prefix.
    #[error("retired marker {0:?} is the prefix of a key in the keyring")]
    RetiredActive(String),
    /// A bad key id.
    #[error(transparent)]
    KeyId(#[from] fle_shared::KeyIdError),
    /// The keyring part of the file.
    #[error(transparent)]
    Keyring(#[from] fle_shared::KeyringError),
    /// The crypto backend refused a key of the keyring.
    #[error(transparent)]
    Backend(#[from] fle_shared::backend::BackendError),
}

impl From<toml::de::Error> for ConfigError {
    fn from(e: toml::de::Error) -> Self {
        ConfigError::Toml(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"/api/*", b"/api/users/1"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"/a*b*c", b"/aXXbYYc"));
        assert!(!glob_match(b"/a*b*c", b"/aXXbYY"));
        assert!(!glob_match(b"/signup", b"/signup/x"));
        assert!(glob_match(b"/signup", b"/signup"));
    }

    #[test]
    fn minimal_and_full_configs() {
        let c = EdgeConfig::from_toml_str(
            "[edge]\nkey = \"01\"\nfields = [\"fname\", \"lname\", \"email\", \"ssn\", \"dob\", \"phone\"]\n",
        )
        .unwrap();
        assert_eq!(c.fields.len(), 6);
        assert_eq!(c.applies_to("GET", "/anything"), Ok(true));
        assert_eq!(c.uri_case, UriCase::Insensitive);
        assert_eq!(
            c.body_kind("Application/JSON; charset=UTF-8"),
            Ok(Some(BodyKind::Json))
        );
        assert_eq!(
            c.body_kind("application/x-www-form-urlencoded"),
            Ok(Some(BodyKind::Form))
        );
        assert_eq!(c.body_kind("text/plain"), Ok(None));
        assert_eq!(
            c.body_kind("application/json; charset=latin1"),
            Err(ContentTypeError::Charset)
        );

        let c = EdgeConfig::from_toml_str(
            r#"
[[keys]]
id = "ignored here"
[edge]
key = "01"
fields = ["ssn", { path = "$.card.cvv", key = "02" }, { name = "iban", key = "02" }]
content_types = ["application/vnd.api+json"]
methods = ["post"]
uris = ["/api/*"]
on_unparseable = "reject"
on_marker = "neutralize"
names = "case-insensitive"
query = "encrypt"
retired_markers = ["OLD:"]
max_encrypted_values = 50
max_body_bytes = 500000
"#,
        )
        .unwrap();
        assert_eq!(c.fields[1].key.as_str(), "02");
        assert_eq!(c.applies_to("POST", "/api/x"), Ok(true));
        assert_eq!(c.applies_to("PUT", "/api/x"), Ok(false));
        assert_eq!(c.applies_to("POST", "/x"), Ok(false));
        // A method that is not covered never looks at the URI.
        assert_eq!(c.applies_to("PUT", "/api/%00"), Ok(false));
        assert_eq!(c.applies_to("POST", "/api/%00"), Err(UriError::Nul(5)));
        assert_eq!(
            c.body_kind("application/vnd.api+json"),
            Ok(Some(BodyKind::Json))
        );
        assert_eq!(c.body_kind("application/json"), Ok(None));
        assert_eq!(c.on_marker, MarkerPolicy::Neutralise);
        assert_eq!(c.names, NameMatching::CaseInsensitive);
        assert_eq!(c.query, QueryPolicy::Encrypt);
        assert_eq!(c.retired_markers, ["OLD:"]);
        assert_eq!(c.max_encrypted_values, 50);
    }

    fn uri_config(extra: &str) -> EdgeConfig {
        EdgeConfig::from_toml_str(&format!(
            "[edge]\nkey = \"01\"\nfields = [\"a\"]\nuris = [\"/signup/\", \"//api/*\"]\n{extra}\n"
        ))
        .unwrap()
    }

    #[test]
    fn uri_readings() {
        let c = uri_config("exclude_uris = [\"/api/health\", \"/public/*\"]");
        assert_eq!(c.uris, ["/signup", "/api/*"]);
        let covered = |uri: &str| c.applies_to("POST", uri).unwrap();
        for uri in [
            "/signup",
            "/Signup",
            "/SIGNUP",
            "/\u{17F}ignup",
            "/%C5%BFignup",
            "/signup/",
            "/signup;jsessionid=1",
            "/signup%3Bx",
            "//signup",
            "/./signup",
            "/x/../signup",
            "/x/..;/signup",
            "/%73ignup",
            "/%2fsignup",
            "/%5Csignup",
            "/api/x",
            "/api//x",
            "/%61pi/x",
            "/api\\x",
            "/API/x",
            "/api/",
            "/api%2Fx",
            "/api/../api/x",
            "/api/Health",
            "/API/health",
            "/api/%68ealth",
            "/api%2Fhealth",
            "/api%2fhealth",
            "/api/health;x",
            "/api//health",
            "/api/./health",
            "/api/health%3B",
            "/api/health%2e",
            "/public/../signup",
            "/public/..%2Fsignup",
            "/public%2F..%2Fsignup",
        ] {
            assert!(covered(uri), "{uri} should be covered");
        }
        for uri in [
            "/",
            "/signupx",
            "/other",
            "/api",
            "/ap",
            "/api/health",
            "/api/health/",
            "/public/x",
            "/public/caf%C3%A9",
        ] {
            assert!(!covered(uri), "{uri} should not be covered");
        }
        assert_eq!(
            c.applies_to("POST", "/signup%zz"),
            Err(UriError::BadEscape(7))
        );
        assert_eq!(c.applies_to("POST", "/x%0a"), Err(UriError::Control(2)));

        let c = uri_config("uri_case = \"sensitive\"\nexclude_uris = [\"/api/Health\"]");
        let covered = |uri: &str| c.applies_to("POST", uri).unwrap();
        for uri in ["/signup", "/signup/", "/%73ignup", "/api/x", "/api/health"] {
            assert!(covered(uri), "{uri} should be covered (sensitive)");
        }
        for uri in [
            "/Signup",
            "/SIGNUP",
            "/API/x",
            "/api/Health",
            "/api/Health/",
        ] {
            assert!(!covered(uri), "{uri} should not be covered (sensitive)");
        }

        // No includes: every path, minus the exclusions.
        let c = EdgeConfig::from_toml_str(
            "[edge]\nkey = \"01\"\nfields = [\"a\"]\nexclude_uris = [\"/health\"]\n",
        )
        .unwrap();
        assert_eq!(c.applies_to("POST", "/anything"), Ok(true));
        assert_eq!(c.applies_to("POST", "/health"), Ok(false));
        assert_eq!(c.applies_to("POST", "/HEALTH"), Ok(true));
        assert_eq!(c.applies_to("POST", "/x/../health"), Ok(true));
    }

    /// The builder and the TOML table go through one validation: equal configurations, equal
    /// refusals.
    #[test]
    fn builder_matches_toml() {
        let toml = EdgeConfig::from_toml_str(
            r#"
[edge]
key = "01"
fields = ["ssn", { path = "$.card.cvv", key = "02" }, { name = "iban", key = "02" }]
content_types = ["application/vnd.api+json"]
methods = ["post"]
uris = ["/api/*", "/signup/"]
uri_case = "sensitive"
exclude_uris = ["/api/Health"]
on_marker = "neutralise"
names = "case-insensitive"
query = "encrypt"
retired_markers = ["OLD:"]
max_encrypted_values = 50
max_body_bytes = 500000
reuse_encapsulation = { seconds = 60, requests = 1000 }
"#,
        )
        .unwrap();
        let built = EdgeConfig::builder()
            .key("01")
            .fields(["ssn"])
            .field_with_key("$.card.cvv", "02")
            .field_with_key("iban", "02")
            .content_types(["application/vnd.api+json"])
            .methods(["post"])
            .uris(["/api/*", "/signup/"])
            .uri_case(UriCase::Sensitive)
            .exclude_uris(["/api/Health"])
            .on_marker(MarkerPolicy::Neutralise)
            .names(NameMatching::CaseInsensitive)
            .query(QueryPolicy::Encrypt)
            .retired_markers(["OLD:"])
            .max_encrypted_values(50)
            .max_body_bytes(500_000)
            .reuse_encapsulation(60, 1000)
            .build()
            .unwrap();
        assert_eq!(format!("{built:?}"), format!("{toml:?}"));
        assert_eq!(
            built.reuse_encapsulation,
            Some(EncapsulationReuse {
                seconds: 60,
                requests: 1000
            })
        );
        assert_eq!(
            format!(
                "{:?}",
                EdgeConfig::builder()
                    .key("01")
                    .fields(["a"])
                    .build()
                    .unwrap()
            ),
            format!(
                "{:?}",
                EdgeConfig::from_toml_str("[edge]\nkey = \"01\"\nfields = [\"a\"]\n").unwrap()
            )
        );

        let base = || EdgeConfig::builder().key("01").fields(["a"]);
        let refused = |b: EdgeConfigBuilder| b.build().unwrap_err().to_string();
        assert!(refused(EdgeConfig::builder().fields(["a"])).contains("has no key"));
        assert!(refused(EdgeConfig::builder().key("01")).contains("fields is empty"));
        assert!(refused(base().content_types(["text/xml"])).contains("not supported"));
        assert!(refused(base().uris(["api"])).contains("must start with"));
        assert!(refused(base().max_body_bytes(2_000_000)).contains("max_body_bytes"));
        assert!(refused(base().max_encrypted_values(0)).contains("max_encrypted_values"));
        assert!(matches!(
            base().reuse_encapsulation(0, 10).build(),
            Err(ConfigError::ReuseSeconds(0))
        ));
        assert!(matches!(
            base().reuse_encapsulation(86_401, 10).build(),
            Err(ConfigError::ReuseSeconds(86_401))
        ));
        assert!(matches!(
            base().reuse_encapsulation(60, 0).build(),
            Err(ConfigError::ReuseRequests(0))
        ));
        assert!(matches!(
            base().reuse_encapsulation(60, 1_000_001).build(),
            Err(ConfigError::ReuseRequests(1_000_001))
        ));
        assert_eq!(base().build().unwrap().reuse_encapsulation, None);
        assert!(refused(base().retired_markers(["#"])).contains("retired marker"));
        assert!(refused(base().exclude_uris(["/Health"])).contains("not in lower case"));
        assert!(refused(base().fields(["user[ssn]"])).contains("invalid field selector"));
        assert!(refused(base().field_with_key("b", "not an id!")).contains("key"));
        assert!(matches!(
            base().fields(["$.a["]).build(),
            Err(ConfigError::Selector(_))
        ));
    }

    #[test]
    fn typed_errors() {
        let err = EdgeConfig::from_toml_str("[edge\n").unwrap_err();
        let ConfigError::Toml(inner) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            err.to_string(),
            format!("invalid edge configuration: {}", inner.message())
        );
    }

    #[test]
    fn refusals() {
        let bad = |t: &str| EdgeConfig::from_toml_str(t).unwrap_err().to_string();
        assert!(bad("").contains("no [edge]"));
        assert!(bad("[edge]\nfields = [\"a\"]\n").contains("has no key"));
        assert!(bad("[edge]\nkey = \"01\"\nfields = []\n").contains("fields is empty"));
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\ncontent_types = [\"text/xml\"]\n")
                .contains("not supported")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nuris = [\"api\"]\n")
                .contains("must start with")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nmax_body_bytes = 2000000\n")
                .contains("max_body_bytes")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nfeilds = 1\n").contains("unknown field")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [{ name = \"$.a\" }]\n").contains("exactly one")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"$.a[\"]\n").contains("invalid field selector")
        );
        for never in ["card.number", "user[ssn]", "ssn[]", " ssn"] {
            assert!(
                bad(&format!("[edge]\nkey = \"01\"\nfields = [{never:?}]\n"))
                    .contains("invalid field selector"),
                "{never}"
            );
        }
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\non_unparseable = \"pass\"\n")
                .contains("was removed")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nmax_encrypted_values = 0\n")
                .contains("max_encrypted_values")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nretired_markers = [\"#\"]\n")
                .contains("retired marker")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nnames = \"fuzzy\"\n")
                .contains("unknown variant")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nuri_case = \"fuzzy\"\n")
                .contains("unknown variant")
        );
        for (pattern, reason) in [
            ("/signup;x", "contains ';'"),
            ("/api/%2A", "contains '%'"),
            ("/api\\x", "contains '\\'"),
            ("/api/../x", "dot segments"),
            ("/./x", "dot segments"),
            ("/a\tb", "control character"),
        ] {
            for key in ["uris", "exclude_uris"] {
                let err = bad(&format!(
                    "[edge]\nkey = \"01\"\nfields = [\"a\"]\n{key} = [{pattern:?}]\n"
                ));
                assert!(err.contains(reason), "{key} {pattern}: {err}");
            }
        }
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nexclude_uris = [\"*/health\"]\n")
                .contains("must start with '/'")
        );
        assert!(
            bad("[edge]\nkey = \"01\"\nfields = [\"a\"]\nexclude_uris = [\"/Health\"]\n")
                .contains("not in lower case")
        );
    }
}
