//! Scanning text that arrives in chunks (files of any size, pipes) with bounded memory.
//!
//! A [`StreamScanner`] takes chunks and hands back *settled* regions: runs of the stream that
//! no later byte can change, with the scanner's items inside them. An envelope that straddles
//! two chunks is held back until it is complete, so the items of every region are exactly what
//! [`Scanner::scan`] reports for the whole stream at once. Memory stays bounded by the chunk
//! size plus the longest possible envelope (a version-2 envelope of a 1 MiB value, about 1.4 MB
//! of base64): a candidate that grows longer than any envelope of the keyring could be (an
//! endless base64 run after a prefix) is settled early as
//! [`MalformedReason::MissingSuffix`], the only place where the result differs from one whole scan.

use crate::scan::{MalformedEnvelope, MalformedReason, ScanItem, Scanner};

/// Feeds a [`Scanner`] chunk by chunk.
///
/// ```
/// use fle_shared::StreamScanner;
/// # use fle_shared::{backend, FieldEncryptor, KeyEntry, Keyring, RsaPublicKey};
/// # let keyring = Keyring::new(vec![KeyEntry::new("01".parse()?, RsaPublicKey::from_pem(fle_shared::demo::DEMO_PUBLIC_KEY_PEM)?)])?;
/// # let mut text = String::from("ssn=");
/// # FieldEncryptor::new(&keyring, backend::default_backend())?.key_str("01").unwrap().encrypt_into("ssn", b"1", &mut text)?;
/// let mut stream = StreamScanner::new(keyring.scanner());
/// let (mut settled, mut envelopes) = (0, 0);
/// for chunk in text.as_bytes().chunks(100) {
///     let region = stream.push(chunk);
///     settled += region.text.len();
///     envelopes += region.items.len();
/// }
/// let last = stream.finish();
/// assert_eq!(settled + last.text.len(), text.len());
/// assert_eq!(envelopes + last.items.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct StreamScanner<'s> {
    scanner: &'s Scanner,
    /// Bytes received: `carry[..handed]` was settled and handed out by the last call.
    carry: Vec<u8>,
    handed: usize,
    /// Stream offset of `carry[handed]`.
    offset: u64,
    /// Longest prefix, minus one: a prefix may be cut at the end of what arrived.
    hold: usize,
    /// Longest envelope of any key.
    longest: usize,
}

/// A settled region of the stream.
#[derive(Debug)]
pub struct StreamRegion<'a, 's> {
    /// Stream offset of `text[0]`.
    pub offset: u64,
    /// The region's bytes.
    pub text: &'a [u8],
    /// The scanner's items in it, spans relative to `text`, in order.
    pub items: Vec<ScanItem<'s>>,
}

impl<'s> StreamScanner<'s> {
    /// A stream scanner over `scanner`'s keys.
    pub fn new(scanner: &'s Scanner) -> Self {
        let keys = scanner.keys();
        StreamScanner {
            scanner,
            carry: Vec::new(),
            handed: 0,
            offset: 0,
            hold: keys
                .iter()
                .map(|k| k.markers.prefix.as_bytes().len())
                .max()
                .unwrap_or(1)
                - 1,
            longest: keys
                .iter()
                .map(|k| {
                    k.markers.prefix.as_str().len()
                        + k.kind.v2_max_payload_len()
                        + k.markers.suffix.as_str().len()
                })
                .max()
                .unwrap_or(0),
        }
    }

    /// Bytes received but not settled yet (at most one chunk plus the longest envelope and the
    /// longest prefix).
    pub fn pending(&self) -> usize {
        self.carry.len() - self.handed
    }

    /// Adds `chunk` and returns the region it settled (possibly empty). The region borrows the
    /// scanner until the next call.
    pub fn push(&mut self, chunk: &[u8]) -> StreamRegion<'_, 's> {
        // What the previous call settled is dropped only now, so its region could borrow it.
        self.carry.drain(..self.handed);
        self.handed = 0;
        self.carry.extend_from_slice(chunk);
        let len = self.carry.len();
        let limit = len.saturating_sub(self.hold);
        let mut items = Vec::new();
        let mut cut = None;
        for item in self.scanner.scan(&self.carry) {
            let span = item.span();
            // A prefix starting before `limit` is complete in what arrived; one starting after
            // it may not be, and the scanner may have let the item run over it.
            let open = span.end > limit && !matches!(item, ScanItem::Envelope(_));
            if span.start >= limit {
                break;
            }
            if open {
                if span.len() > self.longest {
                    // Longer than any envelope: it can never become one.
                    let key = match &item {
                        ScanItem::Malformed(m) => m.key,
                        ScanItem::Envelope(f) => f.key,
                    };
                    // Only up to the end of its base64 run: the bytes after it may start a
                    // prefix.
                    let prefix_len = self
                        .scanner
                        .keys()
                        .iter()
                        .find(|k| &k.id == key)
                        .map_or(0, |k| k.markers.prefix.as_bytes().len());
                    let from = (span.start + prefix_len).min(len);
                    let run_end = from
                        + self.carry[from..]
                            .iter()
                            .position(|&b| !crate::alphabet::is_payload_byte(b))
                            .unwrap_or(len - from);
                    items.push(ScanItem::Malformed(MalformedEnvelope {
                        span: span.start..run_end,
                        key,
                        problem: MalformedReason::MissingSuffix,
                    }));
                    cut = Some(run_end);
                } else {
                    cut = Some(span.start);
                }
                break;
            }
            items.push(item);
        }
        let settled_items_end = items.last().map_or(0, |i| i.span().end);
        let cut = cut.unwrap_or(limit.max(settled_items_end));
        self.settle(cut, items)
    }

    /// Ends the stream: everything left is settled.
    pub fn finish(&mut self) -> StreamRegion<'_, 's> {
        self.carry.drain(..self.handed);
        self.handed = 0;
        let items: Vec<_> = self.scanner.scan(&self.carry).collect();
        let len = self.carry.len();
        self.settle(len, items)
    }

    fn settle(&mut self, cut: usize, items: Vec<ScanItem<'s>>) -> StreamRegion<'_, 's> {
        let offset = self.offset;
        self.offset += cut as u64;
        self.handed = cut;
        StreamRegion {
            offset,
            text: &self.carry[..cut],
            items,
        }
    }
}
