//! Step 2 of the flow, decrypting: the envelopes a call wants (collected by the walks over its
//! sites, in document order), decrypted together through the engine ([`decrypt_all_cached`]: each
//! distinct envelope once, each version-2 encapsulation once, within the decryptor's [`KmsBudget`](crate::KmsBudget)), and their
//! results handed back to the rendering pass in the same order.

use fle_shared::ScanItem;
use fle_shared::{Envelope, KeyEntry, KeyId, Keyring, Plaintext, RequestState};

use super::report::{DocumentError, Report};
use super::sites::Rule;
use super::{Action, Decryptor, Mode, OnError};
use crate::engine::{decrypt_all_cached, distinct_encapsulations};
use crate::provider::ProviderError;

impl Decryptor {
    /// The canonical names of the field rules (empty without a field restriction): what
    /// path-bound version-2 envelopes are bound to.
    pub(super) fn field_names(&self) -> Vec<String> {
        self.fields
            .as_deref()
            .map(|fields| fields.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    /// Decrypts every envelope `work` wants together, and hands their results to it; refuses
    /// (before any provider call) more distinct version-2 encapsulations than the limit of a
    /// document in `mode` ([`Decryptor::max_encapsulations_per_document`]).
    pub(super) async fn decrypt_wanted(
        &self,
        work: &mut Work<'_>,
        mode: Mode,
    ) -> Result<(), DocumentError> {
        if let Some(limit) = self.max_encapsulations_per_document(mode) {
            let count = distinct_encapsulations(work.wanted.iter().map(|(k, e, _)| (*k, e)));
            if count > limit {
                tracing::debug!(
                    count,
                    limit,
                    "document refused: too many version-2 encapsulations"
                );
                work.wanted = Vec::new();
                return Err(DocumentError::TooManyEncapsulations { count, limit });
            }
        }
        let wanted = std::mem::take(&mut work.wanted);
        // The name a path-bound envelope was sealed with: its field's, as configured.
        let names = &work.field_names;
        let refs: Vec<(&KeyEntry, &Envelope, Option<&[u8]>)> = wanted
            .iter()
            .map(|(k, e, field)| {
                let path = field.and_then(|n| names.get(n)).map(String::as_bytes);
                (*k, e, path)
            })
            .collect();
        let in_flight = self.in_flight.unwrap_or(self.budget.concurrency());
        let results = decrypt_all_cached(
            &*self.provider,
            &self.budget,
            in_flight,
            &self.secrets,
            &refs,
        )
        .await;
        drop(refs);
        drop(wanted);
        work.results = results.into_iter().map(Some).collect();
        Ok(())
    }
}

/// The state of one call across its passes. The passes see the same sites and candidates in
/// the same order, so results are matched to envelopes by counting, and nothing is kept per
/// site or per candidate: memory stays a small multiple of the document whatever it holds.
pub(super) struct Work<'a> {
    pub(super) keyring: &'a Keyring,
    pub(super) scanner: &'a fle_shared::Scanner,
    /// The re-encryption target and the envelope version it writes: its envelopes of that
    /// version are kept as they are (version-1 envelopes of a key that now writes version 2
    /// are re-encrypted).
    pub(super) target: Option<(&'a KeyId, u8)>,
    pub(super) on_error: OnError,
    pub(super) action: Action<'a>,
    /// Envelopes to decrypt, in document order, with the number of the field that selected
    /// them (under a field restriction).
    pub(super) wanted: Vec<(&'a KeyEntry, Envelope, Option<usize>)>,
    /// Under [`OnError::Fail`], a candidate that fails the call was found: nothing after it is
    /// needed.
    pub(super) stopped: bool,
    /// A member name holds an envelope to decrypt.
    pub(super) names_wanted: bool,
    /// Their results, taken as rendering reaches them.
    pub(super) results: Vec<Option<Result<Plaintext, ProviderError>>>,
    /// The next result.
    pub(super) cursor: usize,
    pub(super) report: Report,
    /// Re-encryption's version-2 encapsulations: one per document and target key.
    pub(super) sealing: RequestState,
    /// The field rules' names (under a field restriction), as path-bound envelopes carry them.
    pub(super) field_names: Vec<String>,
}

impl<'a> Work<'a> {
    /// The state of a call doing `action` under `on_error` with `keyring`'s keys.
    pub(super) fn new(keyring: &'a Keyring, action: Action<'a>, on_error: OnError) -> Self {
        Work {
            keyring,
            scanner: keyring.scanner(),
            target: match action {
                Action::Reencrypt(to) => Some((to.id(), to.version().number())),
                Action::Decrypt | Action::Verify => None,
            },
            on_error,
            action,
            wanted: Vec::new(),
            stopped: false,
            names_wanted: false,
            results: Vec::new(),
            cursor: 0,
            report: Report::default(),
            sealing: RequestState::new(),
            field_names: Vec::new(),
        }
    }

    /// Whether `item` (of a site `len` bytes long under `rule`) is an envelope to decrypt:
    /// every pass asks this of the same candidates.
    pub(super) fn wants(
        &self,
        rule: Rule,
        len: usize,
        item: &ScanItem<'_>,
    ) -> Option<&'a KeyEntry> {
        let ScanItem::Envelope(found) = item else {
            return None;
        };
        if rule.refusal(&found.span, len).is_some() {
            return None;
        }
        let keyring: &'a Keyring = self.keyring;
        keyring
            .get(found.key)
            .filter(|key| !self.is_target(key.id(), &found.envelope))
    }

    /// Whether an envelope of `key` is already what the re-encryption target writes.
    pub(super) fn is_target(&self, key: &KeyId, envelope: &Envelope) -> bool {
        self.target == Some((key, envelope.version()))
    }

    /// The collecting pass: notes `item` if it is to be decrypted. `len` is that of its site
    /// (unused for text items, which are sites of their own).
    pub(super) fn collect(&mut self, rule: Rule, len: usize, item: &ScanItem<'_>) -> bool {
        if self.stopped {
            return false;
        }
        if let ScanItem::Malformed(bad) = item {
            // The first problem fails the call: later envelopes need no provider call.
            if self.on_error == OnError::Fail && rule.refusal(&bad.span, len).is_none() {
                self.stopped = true;
            }
            return false;
        }
        match (self.wants(rule, len, item), item) {
            (Some(key), ScanItem::Envelope(found)) => {
                let field = match rule {
                    Rule::Whole(n) => Some(n),
                    _ => None,
                };
                self.wanted.push((key, found.envelope.clone(), field));
                true
            }
            _ => false,
        }
    }

    /// The result for the next wanted envelope: taken, or (`peek`) a copy.
    pub(super) fn next_result(&mut self, peek: bool) -> Option<Result<Plaintext, ProviderError>> {
        let slot = self.results.get_mut(self.cursor);
        self.cursor += 1;
        let slot = slot?;
        if peek {
            slot.clone()
        } else {
            slot.take()
        }
    }
}
