//! Request paths as origins route on them (issue 11).
//!
//! CloudFront hands the edge the path as the viewer sent it; origins route on a normalised
//! form of it, and not all the same one. `/Signup`, `/signup/`, `/signup;jsessionid=1`,
//! `//signup`, `/./signup`, `/x/../signup`, `/%73ignup` and `/signup\` all reach the handler of
//! `/signup` at some origin, so the `[edge]` URI rules are matched against these readings of a
//! path rather than its raw bytes:
//!
//! - [`normalise`]: the RFC 3986 normal form most routers use: `\` read as `/`, percent-encoded
//!   unreserved characters (ALPHA DIGIT `-._~`) decoded and every other escape written with
//!   upper-case hex, `;parameters` stripped from every segment, repeated slashes collapsed, `.`
//!   and `..` segments resolved (never above the root; `%2e` forms included), a trailing slash
//!   dropped (except for the root).
//! - [`normalise_decoded`]: the same after decoding every escape (`%2F` and `%5C` become `/`,
//!   `%3B` becomes `;` and is stripped as a parameter), for origins that decode before routing.
//! - [`without_suffix`] of either: the last segment without a format suffix or trailing dots and
//!   spaces (`/signup.json`, `/signup.`), for Rails, older Spring MVC and Windows hosts.
//!
//! A path with a NUL, a control character (raw or percent-encoded) or a malformed escape has no
//! reading the edge can vouch for: [`UriError`], answered with 400 `invalid_uri`.
//!
//! [`is_plain`] tells whether a path is spelled the way ordinary clients spell it; URI
//! exclusions only ever apply to such paths (see [`crate::config`]).

/// Why a request path was refused (400 `invalid_uri`). Never contains the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// A NUL byte, raw or as `%00`.
    #[error("the URI contains a NUL byte (raw or %00) at byte {0}")]
    Nul(usize),
    /// A control character (U+0001 to U+001F or U+007F), raw or percent-encoded.
    #[error("the URI contains a control character at byte {0}")]
    Control(usize),
    /// A `%` not followed by two hexadecimal digits.
    #[error("the URI contains an invalid percent escape at byte {0}")]
    BadEscape(usize),
}

/// The path an RFC 3986 router sees: `\` → `/`, unreserved escapes decoded and the others
/// upper-cased, `;params` stripped from each segment, `//` collapsed, dot segments resolved, no
/// trailing slash (except `/`). Always starts with `/`.
///
/// ```
/// use fle_edge_encryptor::uri::normalise;
/// assert_eq!(normalise("/A;x=1//b/./c/../%64%2f/").unwrap(), "/A/b/d%2F");
/// assert_eq!(normalise("/%2e%2E/signup").unwrap(), "/signup");
/// assert!(normalise("/a%00").is_err());
/// ```
pub fn normalise(raw: &str) -> Result<String, UriError> {
    Ok(resolve(&decode(raw, false)?))
}

/// [`normalise`] applied after decoding every percent escape (`%2F` and `%5C` read as `/`): the
/// path of an origin that decodes before it routes. Bytes that do not decode to UTF-8 are read as
/// U+FFFD.
///
/// ```
/// use fle_edge_encryptor::uri::normalise_decoded;
/// assert_eq!(normalise_decoded("/api%2Fx%5Cy%3Bz").unwrap(), "/api/x/y");
/// ```
pub fn normalise_decoded(raw: &str) -> Result<String, UriError> {
    Ok(resolve(&decode(raw, true)?))
}

/// `path` (a [`normalise`]d or [`normalise_decoded`] reading) with its last segment's format
/// suffix and trailing dots and spaces removed, if that changes it: Rails routes
/// `/signup.json` to `/signup` (the optional `(.:format)`), Spring MVC before 5.3 does the same
/// (suffix pattern matching), and Windows hosts (IIS) drop trailing dots and spaces
/// (`/signup.`, `/signup%20`). Includes are matched against this reading too.
///
/// ```
/// use fle_edge_encryptor::uri::without_suffix;
/// assert_eq!(without_suffix("/api/signup.json").as_deref(), Some("/api/signup"));
/// assert_eq!(without_suffix("/signup. .").as_deref(), Some("/signup"));
/// assert_eq!(without_suffix("/signup"), None);
/// assert_eq!(without_suffix("/.well-known"), None);
/// ```
pub fn without_suffix(path: &str) -> Option<String> {
    let start = path.rfind('/').map_or(0, |i| i + 1);
    let segment = path[start..].trim_end_matches(['.', ' ']);
    let segment = match segment.rfind('.') {
        Some(dot) if dot > 0 => &segment[..dot],
        _ => segment,
    };
    let segment = segment.trim_end_matches(['.', ' ']);
    (!segment.is_empty() && start + segment.len() < path.len())
        .then(|| format!("{}{segment}", &path[..start]))
}

/// Whether `raw` is spelled plainly: valid, without `\`, `%00`, `%2F`, `%5C` or `%2E` (any
/// case), and already in [`normalise`]d form apart from one trailing slash and the case of hex
/// digits (so no `;params`, `//`, dot segments or encoded unreserved characters such as `%68`).
/// Only such paths can be excluded from the rules: an exclusion reached through an encoding
/// trick could land on another handler at an origin that reads the path differently.
pub fn is_plain(raw: &str) -> bool {
    if raw.contains('\\') {
        return false;
    }
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        if let Some(escape) = bytes.get(i + 1..i + 3) {
            if [b"00", b"2F", b"5C", b"2E"]
                .iter()
                .any(|t| escape.eq_ignore_ascii_case(&t[..]))
            {
                return false;
            }
        }
    }
    let Ok(normal) = normalise(raw) else {
        return false;
    };
    let trimmed = match raw.strip_suffix('/') {
        Some(t) if !t.is_empty() => t,
        _ => raw,
    };
    // `normalise` keeps letters outside escapes as they are, so an ASCII case-insensitive
    // comparison only forgives the case of hex digits.
    trimmed.eq_ignore_ascii_case(&normal)
}

/// Checks and normalises a configured URI pattern (`*` matches any run of characters). Refuses
/// what could never match a normalised path: `;`, `%`, `\`, control characters, `.` and `..`
/// segments. The result has no repeated slashes and no trailing slash (except `/`).
pub(crate) fn normalise_pattern(pattern: &str) -> Result<String, &'static str> {
    if pattern.contains(';') {
        return Err("contains ';': path parameters are stripped from request paths before matching, so it could never match");
    }
    if pattern.contains('%') {
        return Err("contains '%': request paths are matched decoded, write the character itself");
    }
    if pattern.contains('\\') {
        return Err("contains '\\': request paths are matched with '\\' read as '/', write '/'");
    }
    if pattern.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if pattern.split('/').any(|s| s == "." || s == "..") {
        return Err(
            "has a '.' or '..' segment: request paths are matched with dot segments resolved",
        );
    }
    Ok(match pattern.strip_prefix('/') {
        Some(_) => resolve(pattern),
        // A pattern such as "*/x": normalise it as if rooted, then drop the root again.
        None => resolve(&format!("/{pattern}"))[1..].to_owned(),
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Validates `raw`, reads `\` as `/` and decodes escapes: every one when `full`, else the
/// unreserved ones (the others re-written with upper-case hex).
fn decode(raw: &str, full: bool) -> Result<String, UriError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            0 => return Err(UriError::Nul(i)),
            0x01..=0x1F | 0x7F => return Err(UriError::Control(i)),
            b'\\' => out.push(b'/'),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(UriError::BadEscape(i));
                };
                let value = hi << 4 | lo;
                match value {
                    0 => return Err(UriError::Nul(i)),
                    0x01..=0x1F | 0x7F => return Err(UriError::Control(i)),
                    b'\\' if full => out.push(b'/'),
                    _ if full || is_unreserved(value) => out.push(value),
                    _ => out.extend([b'%', HEX[hi as usize], HEX[lo as usize]]),
                }
                i += 3;
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Strips `;params` from every segment, collapses empty segments and resolves dot segments
/// (RFC 3986 remove_dot_segments, never above the root). Always starts with `/`; no trailing
/// slash except for the root.
fn resolve(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        // Parameters first, so `..;x` is `..` (as Tomcat reads it).
        match segment.split(';').next().unwrap_or("") {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        for (raw, normal) in [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/signup", "/signup"),
            ("/Signup", "/Signup"),
            ("/signup/", "/signup"),
            ("/signup;jsessionid=1", "/signup"),
            ("/a;x=1/b;y", "/a/b"),
            ("/;x/signup", "/signup"),
            ("//signup", "/signup"),
            ("/api//x", "/api/x"),
            ("/./signup", "/signup"),
            ("/x/../signup", "/signup"),
            ("/../../signup", "/signup"),
            ("/a/b/..", "/a"),
            ("/a/b/.", "/a/b"),
            ("/x/..;y/signup", "/signup"),
            ("/%2e/signup", "/signup"),
            ("/x/%2E%2e/signup", "/signup"),
            ("/x/.%2e/signup", "/signup"),
            ("/%73ignup", "/signup"),
            ("/%61pi/x", "/api/x"),
            ("/%7E%2D%5F%30", "/~-_0"),
            ("/api\\x", "/api/x"),
            ("\\api\\..\\x", "/x"),
            ("/%2fsignup", "/%2Fsignup"),
            ("/a%5cb", "/a%5Cb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/café", "/café"),
            ("/a%3bb", "/a%3Bb"),
            ("/a%20b", "/a%20b"),
            ("signup", "/signup"),
            ("/a/b?c", "/a/b?c"),
        ] {
            assert_eq!(normalise(raw).unwrap(), normal, "{raw:?}");
        }
    }

    #[test]
    fn decoded_forms() {
        for (raw, decoded) in [
            ("/%2fsignup", "/signup"),
            ("/api%2Fx", "/api/x"),
            ("/api%5cx", "/api/x"),
            ("/signup%3Bx=1", "/signup"),
            ("/a%2F..%2Fsignup", "/signup"),
            ("/caf%C3%A9", "/café"),
            ("/a%25b", "/a%b"),
            ("/a%FFb", "/a\u{FFFD}b"),
            ("/a%20b/", "/a b"),
        ] {
            assert_eq!(normalise_decoded(raw).unwrap(), decoded, "{raw:?}");
        }
    }

    #[test]
    fn refusals() {
        for (raw, err) in [
            ("/a%00", UriError::Nul(2)),
            ("/a\0", UriError::Nul(2)),
            ("/a%0a", UriError::Control(2)),
            ("/a%7F", UriError::Control(2)),
            ("/a\tb", UriError::Control(2)),
            ("/a\u{7f}", UriError::Control(2)),
            ("/a%", UriError::BadEscape(2)),
            ("/a%4", UriError::BadEscape(2)),
            ("/a%zz", UriError::BadEscape(2)),
            ("/a%%41", UriError::BadEscape(2)),
        ] {
            assert_eq!(normalise(raw), Err(err), "{raw:?}");
            assert_eq!(normalise_decoded(raw), Err(err), "{raw:?}");
            assert!(!is_plain(raw), "{raw:?}");
        }
    }

    #[test]
    fn plain_paths() {
        for raw in [
            "/",
            "/api/health",
            "/api/health/",
            "/caf%c3%a9",
            "/a%3Bb",
            "/A/b",
        ] {
            assert!(is_plain(raw), "{raw:?}");
        }
        for raw in [
            "",
            "/api/health//",
            "//api/health",
            "/api/health;x",
            "/api/./health",
            "/api/x/../health",
            "/api/%68ealth",
            "/api%2Fhealth",
            "/api%2fhealth",
            "/api%5Chealth",
            "/api\\health",
            "/api/health%2e",
            "/%2E",
        ] {
            assert!(!is_plain(raw), "{raw:?}");
        }
    }

    #[test]
    fn patterns() {
        for (pattern, normal) in [
            ("/signup/", "/signup"),
            ("//api//*", "/api/*"),
            ("/", "/"),
            ("*", "*"),
            ("*/x//", "*/x"),
            ("/api/*.json", "/api/*.json"),
        ] {
            assert_eq!(normalise_pattern(pattern).unwrap(), normal, "{pattern:?}");
        }
        for pattern in ["/a;b", "/a%2F", "/a\\b", "/a/../b", "/./a", "/a/.", "/a\nb"] {
            assert!(normalise_pattern(pattern).is_err(), "{pattern:?}");
        }
    }
}
