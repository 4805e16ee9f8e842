//! The recipes of `docs/RECIPES.md`, "Opening fle envelopes with your own key", run against what
//! fle writes: `tests/support/recipes/OpenEnvelope.java` (Java 17, JDK only),
//! `tests/support/recipes/open-envelope.mjs` (Node.js with `@hpke/core` 1.9.0) and the page's
//! Python program (on top of `tests/support/envelope_v2.py`). Each gets, per key, one run with
//! every line: envelopes of versions 1 and 2 written by fle's library (`FieldEncryptor`,
//! `KeyEncryptor::encrypt_in` with one `RequestState`, `V2Sealer` for path-bound tokens), the
//! specification's test vectors, and lines that must give `error:` (tampered, moved, wrong
//! path, malformed). The page's code blocks must be the files, byte for byte.
//!
//! Tools:
//! - Java: `$FLE_JAVA`, else `java` on `PATH` (17 or later);
//! - Node.js: `$FLE_NODE`, else `node` on `PATH`, and `@hpke/core` 1.9.0 installed under
//!   `$FLE_HPKE_CORE_DIR` (an `npm install --prefix` directory; default `target/test-env/node`,
//!   where `scripts/test-all.sh` installs it). The test copies `open-envelope.mjs` unchanged
//!   into that directory for the run, so its `import ... from "@hpke/core"` resolves there;
//! - Python: `$FLE_PYTHON` with `cryptography` and `pyhpke`.
//!
//! A missing tool skips its test with a message, or fails it under `FLE_REQUIRE_ALL=1`.

mod common;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use fle_shared::{
    backend, EnvelopeVersion, FieldEncryptor, KeyEntry, KeyId, Keyring, MarkerPair, PublicKey,
    RequestState, V2Sealer,
};

const JAVA_RECIPE: &str = "tests/support/recipes/OpenEnvelope.java";
const NODE_RECIPE: &str = "tests/support/recipes/open-envelope.mjs";
const RECIPES_DOC: &str = "docs/RECIPES.md";

// --- Tools ------------------------------------------------------------------------------------

fn env_or(var: &str, default: &str) -> OsString {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

/// `$FLE_JAVA`, else `java`.
fn java() -> OsString {
    env_or("FLE_JAVA", "java")
}

/// Whether `java -version` runs and reports version 17 or later.
fn java_17() -> bool {
    let Ok(out) = Command::new(java())
        .arg("-version")
        .stdin(Stdio::null())
        .output()
    else {
        return false;
    };
    // `openjdk version "17.0.15" 2025-04-15` (on stderr); Java 8 says "1.8.0_..."
    let text = String::from_utf8_lossy(&out.stderr);
    let major = text
        .split_once("version \"")
        .and_then(|(_, rest)| rest.split(['.', '"', '-', '+']).next())
        .and_then(|m| m.parse::<u32>().ok());
    out.status.success() && major.is_some_and(|m| m >= 17)
}

/// The `npm install --prefix` directory that holds `@hpke/core`.
fn hpke_core_dir() -> PathBuf {
    match std::env::var_os("FLE_HPKE_CORE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target/test-env/node"),
    }
}

/// Whether `@hpke/core` 1.9.0 is installed there.
fn hpke_core_installed() -> bool {
    let manifest = hpke_core_dir().join("node_modules/@hpke/core/package.json");
    std::fs::read_to_string(manifest).is_ok_and(|m| m.contains("\"version\": \"1.9.0\""))
}

/// Runs `command` with `lines` on stdin (written from another thread, so a large output cannot
/// block the input) and returns its stdout lines; panics unless it exits 0.
fn run_lines(mut command: Command, lines: &[String]) -> Vec<String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

// --- What the recipes are given ---------------------------------------------------------------

/// What one input line must give.
#[derive(Debug)]
enum Expect {
    /// The hex of this message (`-` if empty).
    Message(Vec<u8>),
    /// A line starting with `error: `.
    Error,
}

/// One input line of a recipe.
struct Case {
    /// What it is, for failure messages.
    what: String,
    line: String,
    expect: Expect,
}

/// One run of a recipe: a key id and its private key, and the lines.
struct Group {
    id: &'static str,
    private: PathBuf,
    cases: Vec<Case>,
}

impl Group {
    fn ok(&mut self, what: impl Into<String>, line: String, message: &[u8]) {
        self.cases.push(Case {
            what: what.into(),
            line,
            expect: Expect::Message(message.to_vec()),
        });
    }

    fn err(&mut self, what: impl Into<String>, line: String) {
        self.cases.push(Case {
            what: what.into(),
            line,
            expect: Expect::Error,
        });
    }

    fn lines(&self) -> Vec<String> {
        self.cases.iter().map(|c| c.line.clone()).collect()
    }
}

/// The values every key writes: empty, an SSN, UTF-8, a tagged non-string JSON value.
fn values() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("ssn", b"123-45-6789".to_vec()),
        (
            "utf-8",
            "Jos\u{e9} \u{d1}\u{fa}\u{f1}ez, \u{6771}\u{4eac} \u{1f980}"
                .as_bytes()
                .to_vec(),
        ),
        (
            "tagged json",
            b"\x00{\"a\":[1,true,null],\"b\":-2.5}".to_vec(),
        ),
    ]
}

/// The values of version 2: [`values`] and a 64 KiB value.
fn v2_values() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = values();
    v.push(("64 KiB", (0..=255u8).cycle().take(64 * 1024).collect()));
    v
}

fn public_key(path: &Path) -> PublicKey {
    PublicKey::from_pem(&read(path)).unwrap()
}

/// Envelopes written by `FieldEncryptor` under key `id`; version 2 through one `RequestState`
/// (one encapsulation for all values).
fn fle_envelopes(
    id: &str,
    public: &Path,
    version: EnvelopeVersion,
    values: &[(&'static str, Vec<u8>)],
) -> Vec<String> {
    let entry = KeyEntry::new(id.parse().unwrap(), public_key(public)).with_envelope(version);
    let keyring = Keyring::new(vec![entry]).unwrap();
    let encryptor = FieldEncryptor::new(&keyring, backend::default_backend()).unwrap();
    let key = encryptor.key_str(id).unwrap();
    let mut state = RequestState::new();
    let envelopes: Vec<String> = values
        .iter()
        .map(|(field, value)| {
            let mut out = String::new();
            match version {
                EnvelopeVersion::V1 => key.encrypt_into(field, value, &mut out).unwrap(),
                _ => key.encrypt_in(&mut state, field, value, &mut out).unwrap(),
            }
            out
        })
        .collect();
    if version == EnvelopeVersion::V2 {
        assert_eq!(state.encapsulations(), 1);
    }
    envelopes
}

/// A `V2Sealer` of one request under `id` (the id bound into the tokens, which may differ from
/// the markers the tokens are written with).
fn sealer(id: &str, public: &Path) -> V2Sealer {
    let id: KeyId = id.parse().unwrap();
    let backend = backend::default_backend();
    match public_key(public) {
        PublicKey::P256(key) => {
            let recipient = backend.p256_recipient(&key).unwrap();
            V2Sealer::p256(&id, &key, &*recipient).unwrap()
        }
        PublicKey::Rsa(key) => {
            let prepared = backend.encryption_key(&key).unwrap();
            V2Sealer::rsa(&id, &*prepared, backend).unwrap()
        }
        other => panic!("no V2Sealer for {other:?}"),
    }
}

/// `envelope` with one base64 character of its ciphertext changed: the one that encodes byte
/// `at` of the token.
fn flip_char(envelope: &str, markers: &MarkerPair, at: usize) -> String {
    let start = markers.prefix.as_str().len();
    let i = start + at * 4 / 3;
    let payload_end = envelope.len() - markers.suffix.as_str().len();
    assert!(i + 4 < payload_end, "byte {at} is too close to the end");
    let old = envelope.as_bytes()[i];
    let new = if old == b'A' { 'B' } else { 'A' };
    format!("{}{new}{}", &envelope[..i], &envelope[i + 1..])
}

/// The token bytes of an envelope.
fn token(envelope: &str, markers: &MarkerPair) -> Vec<u8> {
    use base64::Engine;
    let payload =
        &envelope[markers.prefix.as_str().len()..envelope.len() - markers.suffix.as_str().len()];
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap()
}

/// An envelope around token bytes.
fn envelope(token: &[u8], markers: &MarkerPair) -> String {
    use base64::Engine;
    format!(
        "{}{}{}",
        markers.prefix.as_str(),
        base64::engine::general_purpose::STANDARD.encode(token),
        markers.suffix.as_str()
    )
}

/// Lines that are not envelopes of the group's key, or not opened: every one gives `error:`.
fn add_malformed(group: &mut Group, sample: &str, markers: &MarkerPair) {
    group.err("empty line", String::new());
    group.err("garbage", "garbage".into());
    group.err("three fields", format!("{sample} 00 00"));
    group.err("path not hex", format!("{sample} zz"));
    group.err(
        "other markers",
        format!("#9x#{}", &sample[markers.prefix.as_str().len()..]),
    );
    group.err(
        "no payload",
        format!("{}{}", markers.prefix.as_str(), markers.suffix.as_str()),
    );
    let suffix_at = sample.len() - markers.suffix.as_str().len();
    group.err("missing suffix", sample[..suffix_at].to_owned());
    group.err(
        "payload cut by 4 characters",
        format!("{}{}", &sample[..suffix_at - 4], markers.suffix.as_str()),
    );
    let at = markers.prefix.as_str().len() + 10;
    group.err(
        "URL-safe character",
        format!("{}-{}", &sample[..at], &sample[at + 1..]),
    );
}

/// Version-2 tokens of `id` (key `public`) changed or moved: every one gives `error:`, and the
/// path-bound ones open with their path only.
fn add_v2_cases(group: &mut Group, public: &Path, header_len: usize) {
    let id = group.id;
    let markers = MarkerPair::default_for(&id.parse().unwrap());
    // One request of V2Sealer, values with and without path binding.
    let mut request = sealer(id, public);
    let mut seal = |message: &[u8], path: Option<&[u8]>| {
        let mut out = String::new();
        request
            .seal_into(&markers, message, path, &mut out)
            .unwrap();
        out
    };
    let bound = seal(b"123-45-6789", Some(b"ssn"));
    group.ok(
        "path-bound, right path",
        format!("{bound} {}", hex(b"ssn")),
        b"123-45-6789",
    );
    group.err("path-bound, wrong path", format!("{bound} {}", hex(b"ssm")));
    group.err(
        "path-bound, longer path",
        format!("{bound} {}", hex(b"ssn.x")),
    );
    group.err("path-bound, empty path", format!("{bound} -"));
    group.err("path-bound, no path", bound.clone());
    // An rsa-oaep encapsulation re-labelled as a version-1 envelope: the request's data key must
    // not come out as a value (docs/ENVELOPE.md 5.4).
    if header_len > 39 {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload =
            &bound[markers.prefix.as_str().len()..bound.len() - markers.suffix.as_str().len()];
        let token = b64.decode(payload).unwrap();
        let encap = &token[2..header_len - 4];
        let relabelled = format!(
            "{}{}{}",
            markers.prefix.as_str(),
            b64.encode(encap),
            markers.suffix.as_str()
        );
        group.err(
            "rsa-oaep encapsulation re-labelled as version 1",
            relabelled,
        );
    }
    let empty_path = seal(b"\x0042", Some(b""));
    group.ok(
        "bound to the empty path",
        format!("{empty_path} -"),
        b"\x0042",
    );
    group.err("bound to the empty path, no path", empty_path);
    let utf8_path = "champ/\u{e9}".as_bytes();
    let utf8 = seal("\u{e9}t\u{e9}".as_bytes(), Some(utf8_path));
    group.ok(
        "bound to a UTF-8 path",
        format!("{utf8} {}", hex(utf8_path)),
        "\u{e9}t\u{e9}".as_bytes(),
    );
    let unbound = seal(b"anywhere", None);
    group.ok(
        "unbound, given a path",
        format!("{unbound} {}", hex(b"x")),
        b"anywhere",
    );
    group.ok("unbound", unbound.clone(), b"anywhere");
    let big: Vec<u8> = (0..=255u8).rev().cycle().take(64 * 1024).collect();
    let big_bound = seal(&big, Some(b"doc"));
    group.ok(
        "64 KiB, path-bound",
        format!("{big_bound} {}", hex(b"doc")),
        &big,
    );
    group.err(
        "64 KiB, path-bound, wrong path",
        format!("{big_bound} {}", hex(b"dog")),
    );

    // Tampered: one base64 character of the ciphertext (AES-GCM part) changed.
    group.err(
        "tampered tag",
        flip_char(&unbound, &markers, header_len + 8 + 4),
    );
    group.err(
        "tampered ciphertext",
        flip_char(&big_bound, &markers, header_len + 1000),
    );
    group.err("tampered header", flip_char(&unbound, &markers, 4));
    // Changed fields, re-encoded canonically.
    let t = token(&unbound, &markers);
    let mut other_index = t.clone();
    other_index[header_len - 1] ^= 1;
    group.err("another index", envelope(&other_index, &markers));
    let mut flag_set = t.clone();
    flag_set[1] = 0x01;
    group.err(
        "path flag set",
        format!("{} -", envelope(&flag_set, &markers)),
    );
    let mut unknown_flag = t.clone();
    unknown_flag[1] = 0x02;
    group.err("unknown flag", envelope(&unknown_flag, &markers));
    let mut version_3 = t.clone();
    version_3[0] = 0x03;
    group.err("version 3", envelope(&version_3, &markers));
    group.err("truncated token", envelope(&t[..t.len() - 1], &markers));
    group.err(
        "token without tag",
        envelope(&t[..header_len + 15], &markers),
    );
    let mut extended = t.clone();
    extended.push(0);
    group.err("extended token", envelope(&extended, &markers));
    if header_len == 39 {
        // P-256: an encapsulation that is no point, or not compressed.
        let mut off_curve = t.clone();
        off_curve[2..35].fill(0);
        off_curve[2] = 0x02;
        off_curve[34] = 0x01; // x = 1: no point of P-256 has it
        group.err("encap not on the curve", envelope(&off_curve, &markers));
        let mut uncompressed_tag = t.clone();
        uncompressed_tag[2] = 0x04;
        group.err("encap tagged 0x04", envelope(&uncompressed_tag, &markers));
    } else {
        // RSA: a token cut to the version-1 length is read as version 1, and fails.
        let k = header_len - 6;
        group.err("cut to k bytes", envelope(&t[..k], &markers));
    }

    // Moved: sealed under key id "03" (bound into info and AAD), written with this key's markers.
    let mut moved = sealer("03", public);
    let mut out = String::new();
    moved
        .seal_into(&markers, b"123-45-6789", None, &mut out)
        .unwrap();
    group.err("sealed for key id 03", out);
}

/// Every run: per key, its lines and what each must give.
fn groups() -> Vec<Group> {
    let demo01 = (
        root().join("keys/demo-01.pub.pem"),
        root().join("keys/demo-01.key.pem"),
    );
    let demo02 = (
        root().join("keys/demo-02.pub.pem"),
        root().join("keys/demo-02.key.pem"),
    );
    let rsa3072 = (
        fixture("keys/rsa-3072.pub.pem"),
        fixture("keys/rsa-3072.key.pem"),
    );
    let rsa4096 = (
        fixture("keys/rsa-4096.pub.pem"),
        fixture("keys/rsa-4096.key.pem"),
    );
    // (id, keys, modulus bytes (0: P-256), writes version 1 too)
    let keys = [
        ("01", demo01, 256, true),
        ("rsa3072", rsa3072, 384, true),
        ("rsa_4096", rsa4096, 512, false),
        ("02", demo02, 0, false),
    ];
    let vectors = spec_vectors();
    assert!(
        vectors.len() >= 5,
        "the specification's test vectors were not all found"
    );
    let mut groups = Vec::new();
    for (id, (public, private), k, v1) in keys {
        let mut group = Group {
            id,
            private,
            cases: Vec::new(),
        };
        let markers = MarkerPair::default_for(&id.parse().unwrap());
        if v1 {
            let mut v1_values = values();
            v1_values.push(("largest v1", vec![0xA5; k - 66]));
            let envelopes = fle_envelopes(id, &public, EnvelopeVersion::V1, &v1_values);
            for ((what, value), envelope) in v1_values.iter().zip(&envelopes) {
                group.ok(format!("v1 {what}"), envelope.clone(), value);
            }
            group.err("v1 tampered", flip_char(&envelopes[1], &markers, k / 2));
            add_malformed(&mut group, &envelopes[1], &markers);
        }
        let v2 = v2_values();
        let envelopes = fle_envelopes(id, &public, EnvelopeVersion::V2, &v2);
        for ((what, value), envelope) in v2.iter().zip(&envelopes) {
            group.ok(format!("v2 {what}"), envelope.clone(), value);
        }
        let header_len = if k == 0 { 39 } else { k + 6 };
        group.err(
            "v2 tampered",
            flip_char(&envelopes[1], &markers, header_len + 2),
        );
        add_malformed(&mut group, &envelopes[1], &markers);
        add_v2_cases(&mut group, &public, header_len);
        for SpecVector {
            key,
            path,
            message,
            envelope,
        } in &vectors
        {
            if key == id {
                let line = match path {
                    Some(p) => format!("{envelope} {}", hex(p.as_bytes())),
                    None => envelope.clone(),
                };
                group.ok(format!("ENVELOPE.md vector {envelope:.20}"), line, message);
            }
        }
        groups.push(group);
    }
    groups
}

/// Runs `recipe` (a command line without the key arguments) on every group and checks each
/// output line.
fn check_recipe(name: &str, recipe: impl Fn() -> Command) {
    for group in groups() {
        let mut command = recipe();
        command.arg(group.id).arg(&group.private);
        let out = run_lines(command, &group.lines());
        assert_eq!(
            out.len(),
            group.cases.len(),
            "{name}, key {}: one output line per input line",
            group.id
        );
        for (case, got) in group.cases.iter().zip(&out) {
            let ok = match &case.expect {
                Expect::Message(m) if m.is_empty() => got == "-",
                Expect::Message(m) => *got == hex(m),
                Expect::Error => got.starts_with("error: "),
            };
            assert!(
                ok,
                "{name}, key {}, {}: expected {:?}, got {:.200}",
                group.id,
                case.what,
                match &case.expect {
                    Expect::Message(m) if m.is_empty() => "-".into(),
                    Expect::Message(m) => format!("{:.200}", hex(m)),
                    Expect::Error => "error: ...".into(),
                },
                got
            );
        }
    }
}

// --- The page and the files -------------------------------------------------------------------

/// The code blocks of docs/RECIPES.md marked `<!-- recipe: NAME -->` on the line before their
/// opening fence: (NAME, the block's text with a final newline).
fn doc_blocks() -> Vec<(String, String)> {
    let doc = read(&root().join(RECIPES_DOC));
    let mut lines = doc.lines();
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- recipe: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(
            fence.starts_with("```"),
            "{RECIPES_DOC}: `{line}` is not followed by a code block"
        );
        let mut text = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("{RECIPES_DOC}: block {name} is not closed"));
            if l == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        blocks.push((name.to_owned(), text));
    }
    blocks
}

/// The page's block named `name`.
fn doc_block(name: &str) -> String {
    let mut found = doc_blocks().into_iter().filter(|(n, _)| n == name);
    let (_, text) = found
        .next()
        .unwrap_or_else(|| panic!("{RECIPES_DOC} has no block <!-- recipe: {name} -->"));
    assert!(found.next().is_none(), "{RECIPES_DOC}: two blocks {name}");
    text
}

#[test]
fn the_page_shows_the_recipe_files_byte_for_byte() {
    let blocks = doc_blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [JAVA_RECIPE, NODE_RECIPE, "python"], "{RECIPES_DOC}");
    for file in [JAVA_RECIPE, NODE_RECIPE] {
        assert!(
            doc_block(file) == read(&root().join(file)),
            "the code block of {file} in {RECIPES_DOC} differs from the file: copy the file \
             into the page"
        );
    }
    // Every file of tests/support/recipes is on the page.
    for entry in std::fs::read_dir(root().join("tests/support/recipes")).unwrap() {
        let name = entry.unwrap().file_name();
        let rel = format!("tests/support/recipes/{}", name.to_string_lossy());
        assert!(
            names.contains(&rel.as_str()),
            "{rel} is not on {RECIPES_DOC}"
        );
    }
}

#[test]
fn java_recipe_opens_what_fle_writes() {
    let java_ok = java_17();
    if !fle_test_support::require_that(
        java_ok,
        "Java 17 or later not found (PATH, or FLE_JAVA); install a JDK (openjdk-17-jdk-headless)",
    ) {
        return;
    }
    check_recipe("OpenEnvelope.java", || {
        let mut c = Command::new(java());
        c.arg(root().join(JAVA_RECIPE));
        c
    });
}

#[test]
fn node_recipe_opens_what_fle_writes() {
    require!(Tool::Node);
    let dir = hpke_core_dir();
    if !fle_test_support::require_that(
        hpke_core_installed(),
        &format!(
            "@hpke/core 1.9.0 not installed under {} (FLE_HPKE_CORE_DIR); scripts/test-all.sh \
             installs it, or: npm install --prefix {} @hpke/core@1.9.0",
            dir.display(),
            dir.display()
        ),
    ) {
        return;
    }
    // The file as it is, next to the node_modules that holds @hpke/core.
    let mut script = tempfile::Builder::new()
        .prefix("open-envelope-")
        .suffix(".mjs")
        .tempfile_in(&dir)
        .unwrap();
    script
        .write_all(read(&root().join(NODE_RECIPE)).as_bytes())
        .unwrap();
    let path = script.path().to_owned();
    check_recipe("open-envelope.mjs", || {
        let mut c = Tool::Node.command();
        c.arg(&path);
        c
    });
}

#[test]
fn python_recipe_opens_what_fle_writes() {
    require!(Tool::Python);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("open_envelope.py");
    std::fs::write(&script, doc_block("python")).unwrap();
    check_recipe("open_envelope.py", || {
        let mut c = Tool::Python.command();
        c.arg(&script)
            .env("PYTHONPATH", root().join("tests/support"));
        c
    });
}
