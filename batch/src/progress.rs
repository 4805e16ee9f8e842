//! Job counters: what a progress display reads while the job runs (input bytes, envelopes,
//! KMS calls). Drawing them is the front end's business.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a job updates and the progress line reads.
#[derive(Debug, Default)]
pub struct Progress {
    total: AtomicU64,
    bytes: AtomicU64,
    envelopes: AtomicU64,
    calls: AtomicU64,
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

    /// One provider (KMS) call started.
    pub fn add_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Input bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Provider calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
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
