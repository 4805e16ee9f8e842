//! What a job tells its user: problems, inputs that failed, entries passed over, and the
//! summary. Text for people (every control, bidirectional or invisible character escaped, so a
//! file or field name cannot forge or hide report lines), or JSON Lines with `--json` (one
//! object per line, each with a `type`: `problem`, `error`, `skipped`, then `summary`).
//!
//! Where lines go: verify's problems are its output (stdout); other jobs' warnings go to
//! stderr, the first [`MAX_WARNINGS`] of them in text form. With `--json` every line goes to
//! one stream: stdout, or stderr when stdout carries data.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use fle_decryptor::Problem;
use serde::Serialize;

use crate::plan::Skipped;
use crate::Command;

/// Most warning lines a decrypt or reencrypt job prints in text form.
pub const MAX_WARNINGS: usize = 100;

/// `text` with every character that could forge or hide a line written as a Rust escape
/// (`\n`, `\u{202e}`): controls such as line breaks and escape sequences, bidirectional
/// overrides, zero-width and other default-ignorable code points, blank-looking characters
/// (U+3164 HANGUL FILLER, U+2800 BRAILLE PATTERN BLANK, every space but U+0020), and spaces at
/// the start or end (`\u{20}`, so that a name's edges are visible). A backslash is written
/// `\\`, so that the escaping is injective: `a\nb` (a backslash and an `n`) and `a` newline
/// `b` read differently.
pub fn escape(text: &str) -> Cow<'_, str> {
    let last = text.chars().count().saturating_sub(1);
    let risky = |i: usize, c: char| c == '\\' || (c == ' ' && (i == 0 || i == last)) || hidden(c);
    if !text.chars().enumerate().any(|(i, c)| risky(i, c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if !risky(i, c) {
            out.push(c);
        } else if !matches!(c, '"' | '\'') && c.escape_debug().next() == Some('\\') {
            // Rust's own escapes: `\n`, `\t`, `\r`, `\0`, `\u{...}`.
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// Whether `c` hides or fakes text when printed: what Rust's debug escape escapes (controls,
/// bidirectional formatting, unassigned and private-use code points, grapheme extenders),
/// Unicode's default-ignorable code points, and characters that print blank.
fn hidden(c: char) -> bool {
    if c == ' ' {
        return false;
    }
    if !matches!(c, '"' | '\'' | '\\') && c.escape_debug().next() == Some('\\') {
        return true;
    }
    c.is_whitespace()
        || matches!(
            c as u32,
            // Default_Ignorable_Code_Point (DerivedCoreProperties.txt).
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFE00..=0xFE0F
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFF8
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
                // Blank-looking: BRAILLE PATTERN BLANK, HANGUL (half-width) fillers, the
                // invisible operators, Khmer and Mongolian vowel separators, object
                // replacement.
                | 0x2800
                | 0x3000
                | 0xFFFC
        )
}

/// The end-of-job summary.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Summary {
    /// Always `"summary"` (JSON Lines readers switch on it).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The job's command.
    pub command: &'static str,
    /// Input files (or stdin) planned.
    pub inputs: usize,
    /// Inputs processed by this run.
    pub inputs_done: usize,
    /// Inputs that failed.
    pub inputs_failed: usize,
    /// Inputs an interrupted run had finished.
    pub inputs_skipped: usize,
    /// Directory entries passed over (links, other jobs' files, FIFOs...).
    pub entries_skipped: usize,
    /// Input bytes read.
    pub bytes_in: u64,
    /// Output bytes written.
    pub bytes_out: u64,
    /// Well-formed envelopes found.
    pub envelopes: u64,
    /// Envelopes decrypted (re-encrypted, found decryptable).
    pub decrypted: u64,
    /// Envelopes already under the re-encryption target.
    pub kept: u64,
    /// Problems reported.
    pub problems: u64,
    /// Envelopes per key.
    pub keys: BTreeMap<String, u64>,
    /// Provider (KMS) calls.
    pub kms_calls: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Input MB (10^6 bytes) per second.
    pub mb_per_second: f64,
    /// Provider calls per second.
    pub kms_calls_per_second: f64,
    /// Peak resident set size of the process (Linux).
    pub peak_rss_bytes: Option<u64>,
}

impl Summary {
    /// The two text lines of the summary.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(k, n)| format!("key {k}: {n}"))
            .collect();
        let verb = match self.command {
            "reencrypt" => "re-encrypted",
            "verify" => "decryptable",
            _ => "decrypted",
        };
        writeln!(
            out,
            "fle {}: {} inputs ({} done, {} failed, {} already done); {:.1} MB in {:.2} s ({:.1} MB/s)",
            self.command,
            self.inputs,
            self.inputs_done,
            self.inputs_failed,
            self.inputs_skipped,
            self.bytes_in as f64 / 1e6,
            self.seconds,
            self.mb_per_second,
        )?;
        writeln!(
            out,
            "  envelopes: {}{}; {} {verb}{}, {} problems; KMS calls: {} ({:.0}/s)",
            self.envelopes,
            if keys.is_empty() {
                String::new()
            } else {
                format!(" ({})", keys.join(", "))
            },
            self.decrypted,
            if self.command == "reencrypt" {
                format!(", {} already under the target key", self.kept)
            } else {
                String::new()
            },
            self.problems,
            self.kms_calls,
            self.kms_calls_per_second,
        )?;
        if self.entries_skipped > 0 {
            writeln!(
                out,
                "  {} directory entries skipped (listed above): exit status 3",
                self.entries_skipped
            )?;
        }
        Ok(())
    }
}

/// One JSON Lines object.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Problem {
        input: &'a str,
        offset: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<&'a str>,
        problem: String,
    },
    Note {
        input: &'a str,
        problem: &'a str,
    },
    Error {
        input: &'a str,
        error: &'a str,
    },
    Skipped {
        path: &'a str,
        reason: &'static str,
        why: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
}

/// Writes a job's report lines.
pub(crate) struct Reporter<'a, 'w> {
    command: Command,
    json: bool,
    /// Whether stdout carries data (then JSON lines go to stderr).
    data_on_stdout: bool,
    stdout: &'a RefCell<&'w mut dyn Write>,
    stderr: &'a RefCell<&'w mut dyn Write>,
    shown: usize,
    hidden: usize,
}

impl<'a, 'w> Reporter<'a, 'w> {
    pub(crate) fn new(
        command: Command,
        json: bool,
        data_on_stdout: bool,
        stdout: &'a RefCell<&'w mut dyn Write>,
        stderr: &'a RefCell<&'w mut dyn Write>,
    ) -> Self {
        Reporter {
            command,
            json,
            data_on_stdout,
            stdout,
            stderr,
            shown: 0,
            hidden: 0,
        }
    }

    /// Where JSON lines (and verify's findings) go.
    fn report_stream(&self) -> &'a RefCell<&'w mut dyn Write> {
        if self.command == Command::Verify || !self.data_on_stdout {
            self.stdout
        } else {
            self.stderr
        }
    }

    fn json_line(&self, line: &Line<'_>) {
        let text = serde_json::to_string(line).expect("report lines encode");
        let _ = writeln!(self.report_stream().borrow_mut(), "{text}");
    }

    /// A warning in text form: verify's on stdout, every one; others' on stderr, the first
    /// [`MAX_WARNINGS`].
    fn text_warning(&mut self, unit: &str, text: &str) {
        let at = if unit.is_empty() {
            String::new()
        } else {
            format!("{}: ", escape(unit))
        };
        let text = escape(text);
        if self.command == Command::Verify {
            let _ = writeln!(self.stdout.borrow_mut(), "{at}{text}");
        } else if self.shown < MAX_WARNINGS {
            self.shown += 1;
            let _ = writeln!(self.stderr.borrow_mut(), "fle: warning: {at}{text}");
        } else {
            self.hidden += 1;
        }
    }

    /// An envelope's problem; `record_at` is the record's input offset.
    pub(crate) fn problem(&mut self, unit: &str, record_at: u64, p: &Problem) {
        let p = crate::run::at_input(p, record_at);
        if self.json {
            let key = p.key.as_ref().map(|k| k.as_str());
            self.json_line(&Line::Problem {
                input: unit,
                offset: p.offset as u64,
                key,
                field: p.field.as_deref(),
                problem: p.kind.to_string(),
            });
        } else {
            self.text_warning(unit, &p.to_string());
        }
    }

    /// A problem that is not an envelope's (a record left as it is).
    pub(crate) fn note(&mut self, unit: &str, text: &str) {
        if self.json {
            self.json_line(&Line::Note {
                input: unit,
                problem: text,
            });
        } else {
            self.text_warning(unit, text);
        }
    }

    /// An input that failed.
    pub(crate) fn failed(&mut self, unit: &str, error: &str) {
        if self.json {
            self.json_line(&Line::Error { input: unit, error });
        }
        // Always on stderr too: a failed input is an error, whoever reads the JSON.
        let _ = writeln!(
            self.stderr.borrow_mut(),
            "fle: {}: {}",
            escape(unit),
            escape(error)
        );
    }

    /// A directory entry passed over.
    pub(crate) fn skipped(&mut self, s: &Skipped) {
        let path = s.path.to_string_lossy();
        if self.json {
            self.json_line(&Line::Skipped {
                path: &path,
                reason: s.why.name(),
                why: s.why.to_string(),
                error: s.error.as_deref(),
            });
        }
        let error = s
            .error
            .as_deref()
            .map(|e| format!(": {}", escape(e)))
            .unwrap_or_default();
        let _ = writeln!(
            self.stderr.borrow_mut(),
            "fle: warning: skipped {}: {}{error}",
            escape(&path),
            s.why
        );
    }

    /// Says how many text warnings were not shown.
    pub(crate) fn finish(&mut self) {
        if self.hidden > 0 {
            let _ = writeln!(
                self.stderr.borrow_mut(),
                "fle: warning: {} more problems not shown (see the summary's count)",
                self.hidden
            );
        }
    }

    /// The summary: JSON on the report stream, or text on stderr when `text`.
    pub(crate) fn summary(&mut self, summary: &Summary, text: bool) -> io::Result<()> {
        if self.json {
            let line = serde_json::to_string(summary).expect("the summary encodes");
            writeln!(self.report_stream().borrow_mut(), "{line}")
        } else if text {
            summary.write_text(*self.stderr.borrow_mut())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_line_breaks_escapes_and_bidi() {
        assert_eq!(escape("data/a.jsonl"), "data/a.jsonl");
        assert_eq!(escape("naïve €"), "naïve €");
        assert_eq!(
            escape("a\nfle verify: 0 problems"),
            "a\\nfle verify: 0 problems"
        );
        assert_eq!(escape("x\r\x1b[2Ky"), "x\\r\\u{1b}[2Ky");
        assert_eq!(escape("a\u{202e}lmx.exe"), "a\\u{202e}lmx.exe");
        assert_eq!(escape("zero\u{200b}width"), "zero\\u{200b}width");
        assert_eq!(escape(r#"q"uo'te"#), r#"q"uo'te"#);
    }

    #[test]
    fn escape_makes_backslashes_edges_and_blank_characters_visible() {
        // A literal backslash-n and a newline must not print the same.
        assert_eq!(escape("a\\nb"), "a\\\\nb");
        assert_ne!(escape("a\\nb"), escape("a\nb"));
        assert_eq!(escape(r"C:\dir"), r"C:\\dir");
        assert_eq!(escape(" a b "), "\\u{20}a b\\u{20}");
        assert_eq!(escape(" "), "\\u{20}");
        assert_eq!(escape("a  b"), "a  b");
        for (c, expected) in [
            ('\u{3164}', "\\u{3164}"),
            ('\u{2800}', "\\u{2800}"),
            ('\u{115f}', "\\u{115f}"),
            ('\u{1160}', "\\u{1160}"),
            ('\u{ffa0}', "\\u{ffa0}"),
            ('\u{200b}', "\\u{200b}"),
            ('\u{200d}', "\\u{200d}"),
            ('\u{2060}', "\\u{2060}"),
            ('\u{feff}', "\\u{feff}"),
            ('\u{ad}', "\\u{ad}"),
            ('\u{a0}', "\\u{a0}"),
            ('\u{3000}', "\\u{3000}"),
            ('\u{e0041}', "\\u{e0041}"),
            ('\u{2066}', "\\u{2066}"),
        ] {
            assert_eq!(escape(&format!("x{c}y")), format!("x{expected}y"), "{c:?}");
        }
        // Bidi and controls as before.
        assert_eq!(escape("a\u{202e}b\tc"), "a\\u{202e}b\\tc");
    }

    /// Reads [`escape`]'s output back: if this gives the input for every input, the escaping
    /// is injective.
    fn unescape(text: &str) -> Option<String> {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            }
        }
        Some(out)
    }

    proptest::proptest! {
        #[test]
        fn escaped_names_have_no_hidden_characters_and_read_back(
            text in "(\\PC|\\pC|[ \\\\\u{3164}\u{2800}\u{115f}\u{1160}\u{ffa0}\u{200b}\u{202e}\n])*"
        ) {
            let escaped = escape(&text);
            proptest::prop_assert!(!escaped.chars().any(|c| c.is_control() || hidden(c)), "{escaped:?}");
            proptest::prop_assert!(!escaped.starts_with(' ') && !escaped.ends_with(' '));
            let back = unescape(&escaped);
            proptest::prop_assert_eq!(back.as_deref(), Some(text.as_str()));
        }
    }
}
