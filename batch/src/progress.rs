//! Job counters: what a progress display reads while the job runs (input bytes, envelopes,
//! KMS calls). Drawing them is the front end's business.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fle_decryptor::KmsBudget;

/// Counters a job updates and the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    bytes: AtomicU64,
    envelopes: AtomicU64,
    /// The KMS budget whose calls are counted, and its count when the job started.
    budget: Option<(Arc<KmsBudget>, u64)>,
}

impl Progress {
    /// Sets the input bytes of the whole job (0: unknown).
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    /// Input bytes consumed.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Envelopes found.
    pub fn add_envelopes(&self, n: u64) {
        self.envelopes.fetch_add(n, Ordering::Relaxed);
    }

    /// Input bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counters for a job whose KMS calls go through `budget` (counted from now on).
    pub fn for_budget(budget: Arc<KmsBudget>) -> Self {
        let start = budget.calls();
        Progress {
            budget: Some((budget, start)),
            ..Progress::default()
        }
    }

    /// Provider (KMS) calls so far, through the budget given to [`Progress::for_budget`]
    /// (0 without one).
    pub fn calls(&self) -> u64 {
        self.budget
            .as_ref()
            .map_or(0, |(b, start)| b.calls().saturating_sub(*start))
    }

    /// Retries of transient provider errors so far.
    pub fn retries(&self) -> u64 {
        self.budget.as_ref().map_or(0, |(b, _)| b.retries())
    }

    /// Input bytes of the whole job (0: unknown).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Envelopes found so far.
    pub fn envelopes(&self) -> u64 {
        self.envelopes.load(Ordering::Relaxed)
    }
}
