//! Cutting an input into records with bounded memory, by format.
//!
//! JSON Lines: lines; CSV: rows (RFC 4180: quoted cells may hold commas, quotes and line
//! breaks); text: the settled regions of a [`StreamScanner`] (envelopes straddling reads are
//! held back until whole); JSON and form data: the whole document, up to `--max-record`
//! bytes. Runs of records that cannot hold an envelope are handed on as one block to copy.
//!
//! The CSV scanner is hand-written, and checked against `csv-core` (the `csv` crate's parser)
//! as an oracle in `batch/tests/csv_oracle.rs`. The reason: cells that are not decrypted are
//! copied byte for byte, quoting as written, which needs each cell's raw byte range; the `csv`
//! crate's records give decoded fields, and `csv_core`'s `read_field` gives ranges only while
//! decoding every byte. Measured on 64 MB of ten-cell rows: 1,200 MB/s here, 430 MB/s with a
//! reused `csv_core` reader, on the path every byte of marker-free CSV input takes.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::Range;

use fle_decryptor::{Decryptor, Mode};
use fle_shared::ScanItem;
use fle_shared::StreamScanner;

use crate::error::BatchError;

/// How an input is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Format {
    /// One JSON document (read whole, up to --max-record).
    Json,
    /// JSON Lines / NDJSON: one JSON document per line.
    Jsonl,
    /// CSV (RFC 4180); envelopes are found in each cell.
    Csv,
    /// Any text, streamed.
    Text,
    /// application/x-www-form-urlencoded (read whole, up to --max-record).
    Form,
}

impl Format {
    /// The format a file's extension names: .json, .jsonl/.ndjson, .csv; anything else is text.
    pub fn from_extension(path: &std::path::Path) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            _ => Format::Text,
        }
    }

    /// Its name, as `--format` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Text => "text",
            Format::Form => "form",
        }
    }
}

/// One record, owned, with where it was in the input.
pub struct Record<'s> {
    /// Input offset of its first byte.
    pub at: u64,
    /// Input offset just past it.
    pub end: u64,
    /// What it is.
    pub piece: Piece<'s>,
}

/// What to do with a record.
pub enum Piece<'s> {
    /// Bytes that hold no envelope: copied as they are (may be many records).
    Pass(Vec<u8>),
    /// A JSON or form document (whole input, or one JSON line without its line break).
    Doc {
        /// Its bytes.
        bytes: Vec<u8>,
        /// How to read it.
        mode: Mode,
        /// Line break after it, copied as it is.
        tail: Vec<u8>,
    },
    /// One CSV row (line break included).
    Csv(Vec<u8>),
    /// A settled text region and what the scanner found in it.
    Text(Vec<u8>, Vec<ScanItem<'s>>),
}

/// Why the next record could not be had.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading the input failed.
    Read(io::Error),
    /// A record or document is longer than the limit.
    TooLong(BatchError),
}

/// Read size.
const CHUNK: usize = 1 << 20;
/// Largest run of pass-through records handed on as one piece (inside a read that holds
/// envelopes).
const PASS_PIECE: usize = 64 << 10;

/// Cuts one input into records.
pub struct Splitter<'s, R> {
    input: R,
    format: Format,
    decryptor: &'s Decryptor,
    max_record: usize,
    /// Unconsumed input.
    buf: Vec<u8>,
    /// Input offset of `buf[0]`.
    offset: u64,
    eof: bool,
    /// Records cut from `buf` but not handed out yet.
    queue: std::collections::VecDeque<Record<'s>>,
    stream: Option<StreamScanner<'s>>,
    /// Read buffer of the text format.
    chunk: Vec<u8>,
    /// Input bytes read so far (for progress).
    pub bytes_read: u64,
}

impl<'s, R: Read> Splitter<'s, R> {
    /// A splitter reading `input` from input offset `offset`.
    pub fn new(
        input: R,
        format: Format,
        decryptor: &'s Decryptor,
        max_record: usize,
        offset: u64,
    ) -> Self {
        Splitter {
            input,
            format,
            decryptor,
            max_record,
            buf: Vec::new(),
            offset,
            eof: false,
            queue: Default::default(),
            stream: (format == Format::Text)
                .then(|| StreamScanner::new(decryptor.keyring().scanner())),
            chunk: Vec::new(),
            bytes_read: 0,
        }
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> Result<Option<Record<'s>>, Error> {
        loop {
            if let Some(r) = self.queue.pop_front() {
                return Ok(Some(r));
            }
            if self.eof && self.buf.is_empty() {
                return Ok(None);
            }
            match self.format {
                Format::Text => self.text()?,
                Format::Json | Format::Form => self.whole()?,
                Format::Jsonl => self.delimited(line_end)?,
                Format::Csv => self.delimited(csv_record_end)?,
            }
        }
    }

    /// Reads up to one chunk more into `buf`; sets `eof` at the end.
    fn fill(&mut self) -> io::Result<()> {
        let start = self.buf.len();
        self.buf.resize(start + CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(start);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(start + n);
        self.bytes_read += n as u64;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> (u64, Vec<u8>) {
        let rest = self.buf.split_off(n);
        let at = self.offset;
        self.offset += n as u64;
        (at, std::mem::replace(&mut self.buf, rest))
    }

    fn text(&mut self) -> Result<(), Error> {
        let chunk = &mut self.chunk;
        chunk.resize(CHUNK, 0);
        let n = loop {
            match self.input.read(chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Read(e)),
            }
        };
        self.bytes_read += n as u64;
        let stream = self.stream.as_mut().expect("text splitter has a stream");
        let region = if n == 0 {
            self.eof = true;
            stream.finish()
        } else {
            stream.push(&chunk[..n])
        };
        let at = self.offset;
        let text = region.text.to_vec();
        self.offset += text.len() as u64;
        let end = self.offset;
        if !text.is_empty() {
            let piece = if region.items.is_empty() {
                Piece::Pass(text)
            } else {
                Piece::Text(text, region.items)
            };
            self.queue.push_back(Record { at, end, piece });
        }
        Ok(())
    }

    fn whole(&mut self) -> Result<(), Error> {
        while !self.eof {
            if self.buf.len() > self.max_record {
                return Err(Error::TooLong(BatchError::RecordTooLong {
                    format: self.format.name(),
                    what: "document",
                    limit: self.max_record,
                    at: None,
                }));
            }
            self.fill().map_err(Error::Read)?;
        }
        let len = self.buf.len();
        let (at, bytes) = self.take(len);
        let mode = if self.format == Format::Form {
            Mode::Form
        } else {
            Mode::Json
        };
        let piece = if self.decryptor.may_hold_envelopes(&bytes, mode) {
            Piece::Doc {
                bytes,
                mode,
                tail: Vec::new(),
            }
        } else {
            Piece::Pass(bytes)
        };
        self.queue.push_back(Record {
            at,
            end: at + len as u64,
            piece,
        });
        Ok(())
    }

    /// Line- or row-delimited formats: complete records from `buf`, a block of them at once
    /// when none can hold an envelope.
    fn delimited(&mut self, record_end: fn(&[u8]) -> Option<usize>) -> Result<(), Error> {
        if !self.eof {
            self.fill().map_err(Error::Read)?;
        }
        // Complete records in buf.
        let mut ends = Vec::new();
        let mut pos = 0;
        while let Some(n) = record_end(&self.buf[pos..]) {
            pos += n;
            ends.push(pos);
        }
        if self.eof && pos < self.buf.len() {
            ends.push(self.buf.len());
            pos = self.buf.len();
        }
        if ends.is_empty() {
            if self.buf.len() > self.max_record {
                return Err(Error::TooLong(BatchError::RecordTooLong {
                    format: self.format.name(),
                    what: "record",
                    limit: self.max_record,
                    at: Some(self.offset),
                }));
            }
            return Ok(());
        }
        let mode = if self.format == Format::Jsonl {
            Mode::Json
        } else {
            Mode::Text
        };
        if !self.decryptor.may_hold_envelopes(&self.buf[..pos], mode) {
            let (at, bytes) = self.take(pos);
            self.queue.push_back(Record {
                at,
                end: at + pos as u64,
                piece: Piece::Pass(bytes),
            });
            return Ok(());
        }
        // Records are copied out of the read buffer, which is then reused: a fresh megabyte
        // buffer per read, freed while small pieces of it were still in flight, made the
        // allocator hold on to hundreds of MiB (the 2 GiB test: 265 MiB peak instead of 47).
        let block_at = self.offset;
        let block = &self.buf[..pos];
        let decryptor = self.decryptor;
        let mut start = 0;
        // Consecutive records without envelopes go on as one block, so the queue holds at most
        // one chunk's worth of records that need work, and their pass-through neighbours.
        let mut pass_from = None;
        for end in ends {
            let record = &block[start..end];
            if end - start > self.max_record {
                return Err(Error::TooLong(BatchError::RecordTooLong {
                    format: self.format.name(),
                    what: "record",
                    limit: self.max_record,
                    at: Some(block_at + start as u64),
                }));
            }
            if !decryptor.may_hold_envelopes(record, mode) {
                let from = *pass_from.get_or_insert(start);
                start = end;
                if start - from >= PASS_PIECE {
                    pass_from = None;
                    self.queue.push_back(Record {
                        at: block_at + from as u64,
                        end: block_at + start as u64,
                        piece: Piece::Pass(block[from..start].to_vec()),
                    });
                }
                continue;
            }
            if let Some(from) = pass_from.take() {
                self.queue.push_back(Record {
                    at: block_at + from as u64,
                    end: block_at + start as u64,
                    piece: Piece::Pass(block[from..start].to_vec()),
                });
            }
            let bytes = record.to_vec();
            let at = block_at + start as u64;
            start = end;
            let piece = if self.format == Format::Csv {
                Piece::Csv(bytes)
            } else {
                let mut bytes = bytes;
                let body = bytes.len() - line_break_len(&bytes);
                let tail = bytes.split_off(body);
                Piece::Doc {
                    bytes,
                    mode: Mode::Json,
                    tail,
                }
            };
            self.queue.push_back(Record {
                at,
                end: block_at + end as u64,
                piece,
            });
        }
        if let Some(from) = pass_from {
            self.queue.push_back(Record {
                at: block_at + from as u64,
                end: block_at + start as u64,
                piece: Piece::Pass(block[from..start].to_vec()),
            });
        }
        self.buf.drain(..pos);
        self.offset += pos as u64;
        Ok(())
    }
}

/// Length of the first line of `buf`, its `\n` included, if it is complete.
fn line_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf).map(|i| i + 1)
}

/// Length of the line break ending `line`: `\r\n`, `\n` or none.
fn line_break_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") {
        2
    } else if line.ends_with(b"\n") {
        1
    } else {
        0
    }
}

/// Length of the first CSV record of `buf`, its line break included, if it is complete
/// (a line break outside quotes ends it).
pub fn csv_record_end(buf: &[u8]) -> Option<usize> {
    csv_scan(buf, &mut |_| {})
}

/// The cells of a CSV row (its line break excluded): raw byte ranges, quotes included.
pub fn csv_cells(row: &[u8]) -> Vec<Range<usize>> {
    let body = &row[..row.len() - line_break_len(row)];
    let mut cells = Vec::new();
    let mut start = 0;
    csv_scan(body, &mut |comma| {
        cells.push(start..comma);
        start = comma + 1;
    });
    cells.push(start..body.len());
    cells
}

/// Walks one CSV record: calls `comma` with the offset of each cell separator and returns the
/// record's length if a line break ends it. A quote opens a quoted cell only at the cell's
/// start (RFC 4180; elsewhere, as in `5'11"`, it is an ordinary byte); inside, `""` is a quote
/// and a lone `"` closes it.
fn csv_scan(buf: &[u8], comma: &mut dyn FnMut(usize)) -> Option<usize> {
    let mut quoted = false;
    let mut cell_start = true;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if quoted {
            if b == b'"' {
                if buf.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else {
            match b {
                b'"' if cell_start => quoted = true,
                b',' => {
                    comma(i);
                    cell_start = true;
                    i += 1;
                    continue;
                }
                b'\n' => return Some(i + 1),
                _ => {}
            }
        }
        cell_start = false;
        i += 1;
    }
    None
}

/// A raw cell's value: surrounding quotes removed, doubled quotes undoubled.
pub fn csv_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    match raw {
        [b'"', inner @ .., b'"'] if raw.len() >= 2 => {
            if memchr::memchr(b'"', inner).is_none() {
                Cow::Borrowed(inner)
            } else {
                let mut out = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    out.push(inner[i]);
                    i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
                        2
                    } else {
                        1
                    };
                }
                Cow::Owned(out)
            }
        }
        _ => Cow::Borrowed(raw),
    }
}

/// Whether a cell starting with `value` is read as a formula by spreadsheets (`=`, `+`, `-`,
/// `@`, and tab or carriage return, which some strip first): OWASP's list for CSV injection.
pub fn is_formula(value: &[u8]) -> bool {
    matches!(
        value.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// Appends `value` as a CSV cell: quoted (quotes doubled) when it holds a comma, quote or line
/// break, or starts or ends with a space. With `neutralize`, a value a spreadsheet would read
/// as a formula ([`is_formula`]) gets a leading `'` and is quoted, so it is shown as text.
pub fn csv_encode_into(value: &[u8], neutralize: bool, out: &mut Vec<u8>) {
    if neutralize && is_formula(value) {
        out.extend_from_slice(b"\"'");
        for &b in value {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
        return;
    }
    let needs = value
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        || value.first() == Some(&b' ')
        || value.last() == Some(&b' ');
    if !needs {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_cells_and_quoting() {
        let text = b"a,\"b,\n\"\"c\"\"\",d\r\nx,y\nlast";
        let first = csv_record_end(text).unwrap();
        assert_eq!(&text[..first], b"a,\"b,\n\"\"c\"\"\",d\r\n");
        let row = &text[..first];
        let cells: Vec<_> = csv_cells(row).into_iter().map(|r| &row[r]).collect();
        assert_eq!(cells, [&b"a"[..], b"\"b,\n\"\"c\"\"\"", b"d"]);
        assert_eq!(&*csv_decode(cells[1]), b"b,\n\"c\"");
        let mut out = Vec::new();
        csv_encode_into(b"b,\n\"c\"", false, &mut out);
        assert_eq!(out, cells[1]);
        out.clear();
        csv_encode_into(b"plain", true, &mut out);
        assert_eq!(out, b"plain");
        for (value, neutral) in [
            (&b"=1+2"[..], &b"\"'=1+2\""[..]),
            (b"+1", b"\"'+1\""),
            (b"-5", b"\"'-5\""),
            (b"@SUM(A1)", b"\"'@SUM(A1)\""),
            (b"\t=x", b"\"'\t=x\""),
            (b"=\"a\"", b"\"'=\"\"a\"\"\""),
        ] {
            out.clear();
            csv_encode_into(value, true, &mut out);
            assert_eq!(out, neutral, "{}", String::from_utf8_lossy(value));
            out.clear();
            csv_encode_into(value, false, &mut out);
            assert_eq!(&*csv_decode(&out), value);
        }
        assert_eq!(csv_record_end(&text[first..]), Some(4));
        assert_eq!(csv_record_end(b"last"), None);
        assert_eq!(csv_record_end(b"\"open\nstill"), None);
        // A quote inside an unquoted cell is an ordinary byte.
        let loose = b"1,5'11\",x\n2,y,z\n";
        assert_eq!(csv_record_end(loose), Some(10));
        assert_eq!(csv_cells(&loose[..10]), [0..1, 2..7, 8..9]);
        assert_eq!(csv_cells(b"\n").len(), 1);
        assert!(csv_cells(b"\n")[0].is_empty());
    }

    #[test]
    fn extensions() {
        let f = |p: &str| Format::from_extension(std::path::Path::new(p));
        assert_eq!(f("a/b.JSON"), Format::Json);
        assert_eq!(f("b.ndjson"), Format::Jsonl);
        assert_eq!(f("b.jsonl"), Format::Jsonl);
        assert_eq!(f("b.csv"), Format::Csv);
        assert_eq!(f("b.log"), Format::Text);
        assert_eq!(f("noext"), Format::Text);
    }
}
