//! fle's shared test support, a dev-only crate (`publish = false`, only ever a
//! `[dev-dependency]`): what the integration tests, the Lambda tests and the benchmarks share.
//!
//! - [`fixtures`]: the repository root, fixture paths, the test and demo keys, hex helpers;
//! - [`tools`]: the external helpers some tests need (`FLE_PYTHON`, `FLE_LOCALSTACK_PYTHON`,
//!   `node`, `openssl`) and [`require!`], which skips a test when one is missing (or fails it
//!   under `FLE_REQUIRE_ALL=1`, as `scripts/test-all.sh` runs);
//! - [`process`]: running the `fle` binary (its path passed in: `CARGO_BIN_EXE_fle` only exists
//!   for the `fle` package's own targets), `openssl pkeyutl`, the Lambda@Edge package build and
//!   its Node.js driver;
//! - [`kms_wire`]: a KMS JSON-protocol server on 127.0.0.1 with real private keys;
//! - [`localstack`]: a real LocalStack (KMS, STS) on a free loopback port;
//! - [`runtime_api`]: a Lambda Runtime API on loopback.

pub mod fixtures;
pub mod kms_wire;
pub mod localstack;
pub mod process;
pub mod runtime_api;
pub mod tools;

pub use fixtures::*;
pub use tools::{require, require_that, Tool};

/// Returns from the enclosing test (or function returning `()`) unless every tool given is
/// available: `require!(Tool::Node, Tool::OpenSsl);`. See [`tools::require`].
#[macro_export]
macro_rules! require {
    ($($tool:expr),+ $(,)?) => {
        if !$crate::tools::require_all(&[$($tool),+]) {
            return;
        }
    };
}
