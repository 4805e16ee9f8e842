#!/usr/bin/env bash
# Builds the Lambda@Edge deployment package of fle's edge encryptor.
#
#   edge-encryptor/build-lambda-edge.sh CONFIG OUT.zip
#
# CONFIG is a fle configuration file ([[keys]] and [edge]). The zip holds:
#   index.mjs      the Node.js loader (handler: index.handler; runtime nodejs22.x)
#   fle_edge.wasm  the Rust core, built for wasm32-unknown-unknown
#   fle.toml       CONFIG validated, with its public keys inline (Lambda@Edge has no environment variables)
# Deploy it as an origin-request function with "include body" enabled.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 CONFIG OUT.zip" >&2
    exit 2
fi
config=$1
out=$2
root=$(cd "$(dirname "$0")/.." && pwd)

# Every artifact is taken from the paths cargo reports (it honours CARGO_TARGET_DIR and
# build.target-dir), never guessed: a stale module must not ship silently.
# artifact NAME SUFFIX: the one file of target NAME that ends in SUFFIX (the executable for a
# bin), from cargo's JSON messages on stdin.
artifact() { python3 "$root/scripts/cargo-artifact.py" "$1" "$2"; }

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
wasm=$(cd "$root" && cargo build --release --locked -q -p fle-edge-wasm --target wasm32-unknown-unknown \
    --message-format=json-render-diagnostics | artifact fle_edge_wasm .wasm)
# Only the edge-encryptor crate with the RustCrypto backend and its bundling binary: not the fle
# CLI (AWS SDK, tokio), not aws-lc.
bundler=$(cd "$root" && cargo build --release --locked -q -p fle-edge-encryptor --no-default-features \
    --features rustcrypto --bin fle-bundle-config --message-format=json-render-diagnostics \
    | artifact fle-bundle-config "")

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$bundler" --config "$(cd "$(dirname "$config")" && pwd)/$(basename "$config")" > "$stage/fle.toml"
cp "$root/edge-encryptor/lambda-edge/index.mjs" "$stage/index.mjs"
cp "$wasm" "$stage/fle_edge.wasm"

python3 "$root/scripts/reproducible-zip.py" "$stage" "$out" index.mjs fle_edge.wasm fle.toml
size=$(wc -c < "$out")
echo "$out: $size bytes (index.mjs, fle_edge.wasm $(wc -c < "$stage/fle_edge.wasm") bytes, fle.toml)"
