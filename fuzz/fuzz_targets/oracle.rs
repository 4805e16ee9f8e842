//! The security oracle, on structured input (`arbitrary`): a configuration (fields from
//! `ssn`, `first_name`, `email`, `$.a.b`; `names` exact, case-insensitive or origin; `query`
//! reject or encrypt) and an event (method, URI, content type JSON, `+json`, form or a wrong
//! one, text or base64 encoding, a body of generated members or pairs, a query string).
//!
//! Every value that some reading of the request (any name matching mode, case folding, form
//! bracket/dot/PHP readings, a JSON string read as form data) takes for a configured field is a
//! unique secret token `S3CR3T<nnn>Z`; everything else is noise that never holds the pattern.
//! Running the edge, either the answer is a generated 4xx/5xx, or the forwarded request holds no
//! token in clear anywhere (raw, body decoded per `body.encoding`, percent-decoded, JSON
//! unescaped, query string) and decrypting the forwarded body (and a rewritten query string)
//! with the demo private key through `fle_decryptor` gives the original back (JSON: the same
//! `serde_json::Value`; form: the same decoded pairs).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use fle_decryptor::{Decryptor, Mode, OnError};
use fle_edge_encryptor::{EdgeEncryptor, Outcome};
use fle_shared::backend;
use fle_shared::body::form::encode_into;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FIELDS: [&str; 4] = ["ssn", "first_name", "email", "$.a.b"];
const MODES: [&str; 3] = ["exact", "case-insensitive", "origin"];
const METHODS: [&str; 4] = ["POST", "PUT", "GET", "delete"];
const URIS: [&str; 5] = ["/api/people", "/", "/a/%2e%2e/b", "/caf%C3%A9", "/x\u{1}y"];
/// JSON spellings every JSON reading (case folding) takes for a name field.
const JSON_VARIANTS: [&[&str]; 3] = [
    &["ssn", "SSN", "Ssn", "ſsn", "sſn"],
    &["first_name", "FIRST_NAME", "First_Name", "firſt_name"],
    &["email", "EMAIL", "eMail"],
];
/// Form spellings some form reading takes for a name field.
const FORM_VARIANTS: [&[&str]; 3] = [
    &[
        "ssn",
        "SSN",
        "ſsn",
        "user[ssn]",
        "ssn[]",
        "ssn[0]",
        "user.ssn",
        " ssn",
        "ssn ",
        "a[ssn][x]",
    ],
    &[
        "first_name",
        "First_name",
        "first.name",
        "first name",
        " first_name",
        "first[name",
        "user[first_name]",
    ],
    &["email", "Email", "email[]", "x.email", "user[EMAIL]"],
];
/// Form spellings of `$.a.b`.
const FORM_PATH_VARIANTS: [&str; 6] = ["a[b]", "a.b", "A[b]", "a[B][]", "a[b][x]", "a.b[c]"];
/// Names no reading takes for a configured field.
const UNRELATED: [&str; 12] = [
    "name",
    "plan",
    "x",
    "a",
    "b",
    "ssnx",
    "emails",
    "first",
    "user",
    "number",
    "c",
    "user[name]",
];

#[derive(Arbitrary, Debug)]
struct Input {
    fields: u8,
    names: u8,
    query_encrypt: bool,
    method: u8,
    uri: u8,
    content: u8,
    base64: bool,
    json_root_array: bool,
    json: Vec<Member>,
    pairs: Vec<Pair>,
    query: Vec<Pair>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Variant(u8, u8),
    PathA(u8),
    PathB(u8),
    Unrelated(u8),
    Free(String),
}

#[derive(Arbitrary, Debug)]
struct Member {
    name: Name,
    escape: bool,
    value: Val,
}

#[derive(Arbitrary, Debug)]
enum Val {
    Secret,
    Noise(String),
    Number(i32),
    Bool(bool),
    Null,
    Object(Vec<Member>),
    Array(Vec<Val>),
    /// A JSON string a form parser reads as `NAME=SECRET`.
    Smuggle(u8, u8, String),
}

#[derive(Arbitrary, Debug)]
struct Pair {
    name: Name,
    noise: String,
    no_value: bool,
}

/// Names and paths configured in this run.
struct Config {
    names: Vec<usize>,
    path: bool,
}

struct Gen<'c> {
    config: &'c Config,
    secrets: Vec<String>,
    nodes: usize,
}

fn clean(noise: &str) -> String {
    noise.replace("S3CR3T", "s3cr3t")
}

/// Folding that is never wider than the edge's: ASCII case, `ſ` and the Kelvin sign.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ſ' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl Gen<'_> {
    fn secret(&mut self) -> String {
        let token = format!("S3CR3T{:03}Z", self.secrets.len());
        self.secrets.push(token.clone());
        token
    }

    fn json_name(&self, name: &Name) -> String {
        match name {
            Name::Variant(f, v) => {
                let list = JSON_VARIANTS[usize::from(*f) % 3];
                list[usize::from(*v) % list.len()].to_owned()
            }
            Name::PathA(v) => ["a", "A"][usize::from(*v) % 2].to_owned(),
            Name::PathB(v) => ["b", "B"][usize::from(*v) % 2].to_owned(),
            Name::Unrelated(v) => UNRELATED[usize::from(*v) % UNRELATED.len()].to_owned(),
            Name::Free(s) => clean(s),
        }
    }

    /// Whether a JSON reading takes the member at `path` for a configured field.
    fn json_configured(&self, path: &[String]) -> bool {
        let last = fold(path.last().map(String::as_str).unwrap_or(""));
        self.config.names.iter().any(|&f| fold(FIELDS[f]) == last)
            || (self.config.path
                && path.len() == 2
                && fold(&path[0]) == "a"
                && fold(&path[1]) == "b")
    }

    fn string(&self, text: &str, escape: bool, out: &mut String) {
        if escape {
            out.push('"');
            for u in text.encode_utf16() {
                out.push_str(&format!("\\u{u:04x}"));
            }
            out.push('"');
        } else {
            out.push_str(&serde_json::to_string(text).unwrap());
        }
    }

    fn value(
        &mut self,
        v: &Val,
        path: &mut Vec<String>,
        secret: bool,
        escape: bool,
        out: &mut String,
    ) {
        self.nodes += 1;
        if self.nodes > 64 {
            out.push_str("null");
            return;
        }
        match v {
            Val::Secret => {
                let s = if secret {
                    self.secret()
                } else {
                    format!("plain{}", self.nodes)
                };
                self.string(&s, escape, out);
            }
            Val::Noise(n) => {
                let s = if secret { self.secret() } else { clean(n) };
                self.string(&s, escape, out);
            }
            Val::Number(n) => out.push_str(&n.to_string()),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::Null => out.push_str("null"),
            Val::Object(members) => self.object(members, path, secret, out),
            Val::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    // Array elements are not members: `$.a.b` and names do not reach them.
                    path.push(String::new());
                    self.value(item, path, secret, escape, out);
                    path.pop();
                }
                out.push(']');
            }
            Val::Smuggle(f, v, noise) => {
                // Written raw: a form parser must see the `&` and `=`.
                let name = self.form_name(&Name::Variant(*f, *v));
                let s = if self.form_configured(&Name::Variant(*f, *v)) || secret {
                    format!(
                        "{}&{name}={}",
                        clean(noise).replace(['\\', '"'], ""),
                        self.secret()
                    )
                } else {
                    format!("{}&{name}=plain", clean(noise))
                };
                out.push_str(&serde_json::to_string(&s).unwrap());
            }
        }
    }

    fn object(
        &mut self,
        members: &[Member],
        path: &mut Vec<String>,
        secret: bool,
        out: &mut String,
    ) {
        out.push('{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let name = self.json_name(&m.name);
            self.string(&name, m.escape, out);
            out.push_str(": ");
            path.push(name);
            let inner = secret || self.json_configured(path);
            self.value(&m.value, path, inner, m.escape, out);
            path.pop();
        }
        out.push('}');
    }

    fn form_name(&self, name: &Name) -> String {
        match name {
            Name::Variant(f, v) => {
                let list = FORM_VARIANTS[usize::from(*f) % 3];
                list[usize::from(*v) % list.len()].to_owned()
            }
            Name::PathA(v) | Name::PathB(v) => {
                FORM_PATH_VARIANTS[usize::from(*v) % FORM_PATH_VARIANTS.len()].to_owned()
            }
            Name::Unrelated(v) => UNRELATED[usize::from(*v) % UNRELATED.len()].to_owned(),
            Name::Free(s) => clean(s),
        }
    }

    /// Whether a form reading takes `name` for a configured field (free names never carry
    /// secrets, so they count as not configured).
    fn form_configured(&self, name: &Name) -> bool {
        match name {
            Name::Variant(f, _) => self.config.names.contains(&(usize::from(*f) % 3)),
            Name::PathA(_) | Name::PathB(_) => self.config.path,
            Name::Unrelated(_) | Name::Free(_) => false,
        }
    }

    fn pairs(&mut self, pairs: &[Pair], out: &mut String) {
        for (i, p) in pairs.iter().take(24).enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_into(self.form_name(&p.name).as_bytes(), out);
            if self.form_configured(&p.name) {
                out.push('=');
                let s = self.secret();
                encode_into(s.as_bytes(), out);
            } else if !p.no_value {
                out.push('=');
                encode_into(clean(&p.noise).as_bytes(), out);
            }
        }
    }
}

struct Fixtures {
    edges: Vec<EdgeEncryptor>,
    decryptor: Decryptor,
    rt: tokio::runtime::Runtime,
}

/// The edges for every configuration: fields bitmask (1..=15) × names mode × query policy.
fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let mut edges = Vec::new();
        for fields in 1..16usize {
            for mode in MODES {
                for query in ["reject", "encrypt"] {
                    let list: Vec<String> = (0..4)
                        .filter(|b| fields & (1 << b) != 0)
                        .map(|b| format!("{:?}", FIELDS[b]))
                        .collect();
                    let text = format!(
                        "{}fields = [{}]\nnames = \"{mode}\"\nquery = \"{query}\"\n",
                        fle_fuzz::edge_toml_header(),
                        list.join(", ")
                    );
                    edges.push(fle_fuzz::edge_from(&text, backend::default_backend()));
                }
            }
        }
        Fixtures {
            edges,
            decryptor: fle_fuzz::demo_decryptor(),
            rt: fle_fuzz::runtime(),
        }
    })
}

/// Every text of the forwarded request a reader could take a value from.
fn readings(request: &Value) -> Vec<String> {
    let mut texts = vec![request.to_string()];
    let push_text = |t: &str, texts: &mut Vec<String>| {
        texts.push(t.to_owned());
        texts.push(fle_fuzz::lenient_decode(t));
        for piece in t.split(['&', ';']) {
            for part in piece.split('=') {
                texts.push(fle_fuzz::lenient_decode(part));
            }
        }
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            collect_strings(&v, texts);
        }
    };
    if let Some(body) = fle_fuzz::body_bytes(request) {
        push_text(&String::from_utf8_lossy(&body), &mut texts);
    }
    if let Some(q) = request.get("querystring").and_then(Value::as_str) {
        push_text(q, &mut texts);
    }
    if let Some(u) = request.get("uri").and_then(Value::as_str) {
        push_text(u, &mut texts);
    }
    texts
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            out.push(s.clone());
            out.push(fle_fuzz::lenient_decode(s));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                collect_strings(x, out);
            }
        }
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let f = fixtures();
    let fields = usize::from(input.fields % 15) + 1;
    let mode = usize::from(input.names % 3);
    let query_policy = usize::from(input.query_encrypt);
    let edge = &f.edges[((fields - 1) * 3 + mode) * 2 + query_policy];
    let config = Config {
        names: (0..3).filter(|b| fields & (1 << b) != 0).collect(),
        path: fields & 8 != 0,
    };
    let mut gen = Gen {
        config: &config,
        secrets: Vec::new(),
        nodes: 0,
    };

    // content: 0 JSON, 1 +json, 2 form, 3 JSON sent as form, 4 form sent as JSON, 5 text/plain
    // with a JSON body, 6 no content type.
    let content = input.content % 7;
    let json_body = matches!(content, 0 | 1 | 3 | 5 | 6);
    let mut body = String::new();
    if json_body {
        if input.json_root_array {
            body.push('[');
            gen.object(&input.json, &mut vec![String::new()], false, &mut body);
            body.push(']');
        } else {
            gen.object(&input.json, &mut Vec::new(), false, &mut body);
        }
    } else {
        gen.pairs(&input.pairs, &mut body);
    }
    let mut query = String::new();
    gen.pairs(&input.query, &mut query);
    let content_type = match content {
        0 => Some("application/json"),
        1 => Some("application/problem+json; charset=utf-8"),
        2 | 3 => Some("application/x-www-form-urlencoded"),
        4 => Some("application/json"),
        5 => Some("text/plain"),
        _ => None,
    };
    let event = fle_fuzz::event(
        METHODS[usize::from(input.method % 4)],
        URIS[usize::from(input.uri) % URIS.len()],
        &query,
        content_type,
        body.as_bytes(),
        input.base64,
    );
    let outcome = edge.handle_event(&event);
    let verdict = fle_fuzz::verdict(edge, &outcome);
    if std::env::var_os("FLE_FUZZ_STATS").is_some() {
        let v = match &verdict {
            fle_fuzz::Verdict::Forward(_, n) => format!("forward encrypted={n}"),
            fle_fuzz::Verdict::Respond(s, c) => format!("respond {s} {c}"),
        };
        eprintln!("oracle-stats secrets={} {v}", gen.secrets.len());
    }
    let Outcome::Forward { request, .. } = &outcome else {
        return;
    };
    let texts = readings(request);
    for token in &gen.secrets {
        for t in &texts {
            assert!(
                !t.contains(token.as_str()),
                "secret {token} forwarded in clear\nbody: {body}\nquery: {query}\nforwarded: {request}"
            );
        }
    }
    let original = event.pointer("/Records/0/cf/request").unwrap();
    fle_fuzz::check_decrypts_back(edge, &f.decryptor, &f.rt, original, request);
    let forwarded_query = request["querystring"].as_str().unwrap_or("");
    if forwarded_query != query {
        let out =
            f.rt.block_on(
                f.decryptor
                    .decrypt(forwarded_query, Mode::Form, OnError::Fail),
            )
            .expect("the forwarded query string decrypts");
        assert_eq!(
            fle_fuzz::form_pairs(&out.text),
            fle_fuzz::form_pairs(&query),
            "decrypted query string differs"
        );
    }
});
