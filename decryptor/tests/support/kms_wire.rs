//! The KMS-wire server moved to the dev-only crate `fle-test-support`
//! (`fle_test_support::kms_wire`). This shim stays only for `benches/batch.rs`, which still
//! includes this file with `#[path]`; remove it once that bench uses the crate.

pub use fle_test_support::kms_wire::*;
