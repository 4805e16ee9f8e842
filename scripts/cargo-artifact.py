#!/usr/bin/env python3
"""Prints the one artifact of cargo target NAME ending in SUFFIX, read from cargo's JSON messages
on stdin (`cargo build --message-format=json-render-diagnostics`): its executable for a binary
(SUFFIX ""), else the one file of its outputs that ends in SUFFIX. Fails unless there is exactly
one, so a build script never ships a stale file it guessed the path of (cargo honours
CARGO_TARGET_DIR and build.target-dir; a guess would not).

    cargo build ... --message-format=json-render-diagnostics | scripts/cargo-artifact.py NAME [SUFFIX]

Used by edge-encryptor/build-lambda-edge.sh and deploy/build-decrypt-lambda.sh.
"""
import json
import sys

name = sys.argv[1]
suffix = sys.argv[2] if len(sys.argv) > 2 else ""
found = []
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"):
        continue
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or msg["target"]["name"] != name:
        continue
    files = [msg["executable"]] if msg.get("executable") else msg["filenames"]
    found += [f for f in files if f.endswith(suffix)]
found = sorted(set(found))
if len(found) != 1:
    kind = suffix or "executable"
    sys.exit(f"cargo-artifact.py: cargo reported {len(found)} {kind} artifacts of {name}, "
             f"expected exactly one: {found}")
print(found[0])
