#!/usr/bin/env bash
# Builds the Lambda@Edge deployment package of fle's edge encryptor.
#
#   edge-encryptor/build-lambda-edge.sh CONFIG OUT.zip
#
# CONFIG is a fle configuration file ([[keys]] and [edge]). The zip holds:
#   index.mjs      the Node.js loader (handler: index.handler; runtime nodejs20.x or nodejs22.x)
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

rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown \
    || rustup target add wasm32-unknown-unknown
(cd "$root" && cargo build --release --locked -q -p fle-edge-wasm --target wasm32-unknown-unknown)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
(cd "$root" && cargo run --release --locked -q -p fle -- bundle-config --config "$(cd "$(dirname "$config")" && pwd)/$(basename "$config")") > "$stage/fle.toml"
cp "$root/edge-encryptor/lambda-edge/index.mjs" "$stage/index.mjs"
cp "$root/target/wasm32-unknown-unknown/release/fle_edge_wasm.wasm" "$stage/fle_edge.wasm"

python3 - "$stage" "$out" <<'PY'
import os, sys, zipfile
stage, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for name in ("index.mjs", "fle_edge.wasm", "fle.toml"):
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(stage, name), "rb") as f:
            z.writestr(info, f.read())
PY
size=$(wc -c < "$out")
echo "$out: $size bytes (index.mjs, fle_edge.wasm $(wc -c < "$stage/fle_edge.wasm") bytes, fle.toml)"
