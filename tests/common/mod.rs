//! What the `fle` package's integration tests share: everything of `fle-test-support`, and
//! [`run_fle`] / [`run_fle_with`] on this package's own `fle` binary (`CARGO_BIN_EXE_fle`
//! exists only for this package's targets).
#![allow(dead_code, unused_imports)]

use std::path::Path;

pub use fle_test_support::fixtures::*;
pub use fle_test_support::process::{
    build_lambda_edge_package, code, openssl_oaep, run_build_lambda_edge, run_lambda_edge, stderr,
    unzip,
};
pub use fle_test_support::{kms_wire, localstack, require, Tool};

/// The `fle` binary under test.
pub fn fle_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fle"))
}

/// A command for the `fle` binary in `dir`, with the test AWS settings
/// ([`fle_test_support::process::fle_command`]).
pub fn fle_command(dir: &Path) -> std::process::Command {
    fle_test_support::process::fle_command(fle_bin(), dir)
}

/// Runs the `fle` binary in `dir` with `stdin`. AWS settings come from here only (test
/// credentials, no region, no profile, no instance metadata), so nothing can leave loopback.
pub fn run_fle(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    run_fle_with(dir, args, stdin, &[])
}

/// [`run_fle`] with extra environment variables (set after the AWS ones are cleared).
pub fn run_fle_with(
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    fle_test_support::process::run_fle(fle_bin(), dir, args, stdin, env)
}

/// Runs the Python script `tests/support/<script>` with `args`, one stdin line per item of
/// `lines`, and returns its stdout lines; panics if it fails.
pub fn python_lines(script: &str, args: &[&std::ffi::OsStr], lines: &[String]) -> Vec<String> {
    use std::io::Write;
    let mut child = Tool::Python
        .command()
        .arg(root().join("tests/support").join(script))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script} {args:?} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
