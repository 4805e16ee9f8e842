#!/usr/bin/env bash
# Runs every check and test of fle, installing what they need first. Safe to re-run.
#
#   scripts/test-all.sh
#
# Installs (when missing): rustfmt, clippy, the wasm32-unknown-unknown target, the openssl
# command line and libssl-dev (Debian packages, for OpenSSL interop and the benchmark baseline),
# Node.js (runs the Lambda@Edge package in the tests), LocalStack in a virtualenv (the tests
# start it on a free loopback port themselves),
# a Python virtualenv with pyca/cryptography and pyhpke (Python interop), Java 17 and @hpke/core
# (npm, into target/test-env/node) for the recipes of docs/RECIPES.md, the deployment tools
# (cfn-lint, parliament, moto, the AWS CLI, in target/test-env/deploy), and cargo-deny. Then: format,
# clippy (native and wasm32), docs, cargo-deny, the wasm32 build, doc tests, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# The suite builds everything once: incremental-compilation state would only cost disk.
export CARGO_INCREMENTAL=0

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

step "Disk space (the whole run needs about 5 GB: target/, fuzz/target/, the Python environments)"
df -h "$root" | tail -1

step "Rust toolchain: rustfmt, clippy, wasm32-unknown-unknown"
rustup component add rustfmt clippy
rustup target add wasm32-unknown-unknown

step "System packages: openssl, libssl-dev, pkg-config, node, java (the recipes of docs/RECIPES.md)"
missing=()
command -v openssl >/dev/null || missing+=(openssl)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v java >/dev/null || missing+=(openjdk-17-jdk-headless)
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    echo "all present"
fi

step "Python test environment (pyca/cryptography and pyhpke for interop; pycryptodome and boto3 for the reference-design benchmark peers)"
venv="$root/target/test-env/venv"
if ! "$venv/bin/python" -c 'import cryptography, pyhpke, Crypto, boto3' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check 'cryptography==50.0.2' 'pyhpke==0.6.5' 'pycryptodome==4.4.0' 'boto3==1.44.5'
fi
export FLE_PYTHON="$venv/bin/python"
"$FLE_PYTHON" -c 'import cryptography; print("cryptography", cryptography.__version__)'

step "Node test environment (@hpke/core for the Node.js recipe of docs/RECIPES.md)"
hpke_dir="$root/target/test-env/node"
if ! grep -qs '"version": "1.9.0"' "$hpke_dir/node_modules/@hpke/core/package.json"; then
    npm install --prefix "$hpke_dir" --no-audit --no-fund '@hpke/core@1.9.0'
fi
export FLE_HPKE_CORE_DIR="$hpke_dir"

step "LocalStack (a real KMS on loopback for the decryptor's tests; no Docker)"
ls_venv="$root/target/test-env/localstack"
if ! "$ls_venv/bin/python" -c 'import localstack.runtime.main' 2>/dev/null; then
    python3 -m venv "$ls_venv"
    "$ls_venv/bin/pip" install -q --disable-pip-version-check \
        'localstack-core[runtime]==4.7.0' 'cbor2<5.7' 'pyopenssl==24.2.1' service_identity
fi
export FLE_LOCALSTACK_PYTHON="$ls_venv/bin/python"
"$FLE_LOCALSTACK_PYTHON" -c 'import localstack; print("localstack-core installed")'

step "Deployment tools (cfn-lint, parliament, moto's server, the AWS CLI: tests/deploy.rs)"
deploy_venv="$root/target/test-env/deploy"
if ! "$deploy_venv/bin/python" -c 'import cfnlint, parliament, moto, awscli, boto3' 2>/dev/null; then
    python3 -m venv "$deploy_venv"
    "$deploy_venv/bin/pip" install -q --disable-pip-version-check \
        'cfn-lint==1.58.0' 'parliament==1.6.4' 'moto[server]==5.2.5' 'awscli==1.46.2'
fi
export FLE_DEPLOY_PYTHON="$deploy_venv/bin/python"
"$deploy_venv/bin/cfn-lint" --version

# Every test below must run: a test whose external helper (FLE_PYTHON, FLE_LOCALSTACK_PYTHON,
# FLE_DEPLOY_PYTHON, node, openssl) is missing fails instead of skipping itself (fle_test_support::require).
export FLE_REQUIRE_ALL=1

step "cargo-deny"
if ! cargo deny --version >/dev/null 2>&1; then
    cargo install cargo-deny --locked --version '^0.20'
fi
cargo deny --version

step "Format"
cargo fmt --all -- --check

step "Clippy (native, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Clippy and build (wasm32-unknown-unknown: fle-shared pure Rust, the Lambda@Edge module)"
wasm_args=(-p fle-shared --target wasm32-unknown-unknown --no-default-features --features rustcrypto --locked)
cargo clippy "${wasm_args[@]}" -- -D warnings
cargo build "${wasm_args[@]}" --release
cargo clippy -p fle-edge-wasm --target wasm32-unknown-unknown --locked -- -D warnings
cargo build -p fle-edge-wasm --target wasm32-unknown-unknown --locked --release

step "Docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "cargo deny: bans, licenses, sources"
cargo deny --locked check bans licenses sources
if cargo deny fetch db >/dev/null 2>&1; then
    step "cargo deny: advisories"
    cargo deny --locked check advisories
else
    echo "cargo deny advisories: SKIPPED, the advisory database cannot be fetched from this machine"
fi

step "Benchmarks compile and run once (criterion's test mode, in the test profile)"
# The test profile shares the build of everything else; `cargo bench -- --test` would build
# the whole dependency graph a second time in the release profile (about 1 GB of disk).
cargo test --workspace --locked --benches

step "Doc tests"
cargo test --workspace --doc --locked

step "Tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    cargo test --workspace --locked --no-fail-fast
fi

step "Fuzz (short run of every target)"
scripts/fuzz-short.sh
