#!/usr/bin/env bash
# Builds the decrypt Lambda's `bootstrap` (fle-decrypt-lambda, release) for provided.al2023 and
# prints its path.
#
#   deploy/build-decrypt-lambda.sh [x86_64|arm64]      (default: x86_64)
#
# FLE_CARGO_PROFILE picks the cargo profile (default release; the tests use dev, already built).
# The same architecture as this machine: a plain cargo build. Amazon Linux 2023 has glibc 2.34:
# the script refuses a binary that needs a newer glibc (built on a newer distribution than
# Debian 12 or Ubuntu 22.04), rather than ship one that cannot start.
# The other architecture: with the rustup target and a cross compiler installed (Debian:
# `rustup target add aarch64-unknown-linux-gnu; apt-get install gcc-aarch64-linux-gnu`), else
# with cargo-lambda (`cargo lambda build`, Zig as linker), else it says what is missing.
set -euo pipefail

arch=${1:-x86_64}
root=$(cd "$(dirname "$0")/.." && pwd)
case $arch in
    x86_64) triple=x86_64-unknown-linux-gnu; gcc=x86_64-linux-gnu-gcc ;;
    arm64) triple=aarch64-unknown-linux-gnu; gcc=aarch64-linux-gnu-gcc ;;
    *) echo "build-decrypt-lambda.sh: architecture must be x86_64 or arm64, not $arch" >&2; exit 2 ;;
esac
host=$(uname -m)
[ "$host" = aarch64 ] && host=arm64

# artifact: the one executable of fle-decrypt-lambda in cargo's JSON messages on stdin.
artifact() { python3 "$root/scripts/cargo-artifact.py" fle-decrypt-lambda; }

build() {
    (cd "$root" && cargo build --profile "${FLE_CARGO_PROFILE:-release}" --locked -q \
        -p fle-decrypt-lambda --bin fle-decrypt-lambda \
        --message-format=json-render-diagnostics "$@") | artifact
}

if [ "$arch" = "$host" ]; then
    bin=$(build)
elif command -v "$gcc" >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    # Measured on Debian 12 (x86_64 host, arm64 target): 3.5 min, the binary runs under
    # qemu-aarch64 and needs glibc 2.34 at most.
    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    bin=$(export "CARGO_TARGET_${upper}_LINKER=$gcc" "CC_${triple//-/_}=$gcc"; build --target "$triple")
elif cargo lambda --version >/dev/null 2>&1; then
    (cd "$root" && cargo lambda build --profile "${FLE_CARGO_PROFILE:-release}" --locked \
        -p fle-decrypt-lambda --bin fle-decrypt-lambda "--$arch" >&2)
    bin=${CARGO_TARGET_DIR:-$root/target}/lambda/fle-decrypt-lambda/bootstrap
else
    echo "build-decrypt-lambda.sh: cannot build for $arch on $host: rustup target add $triple" \
        "and install the cross compiler $gcc (Debian: apt-get install gcc-${gcc%-gcc}), or" \
        "install cargo-lambda, or build on an $arch machine and set FLE_DECRYPT_BOOTSTRAP" >&2
    exit 1
fi

# glibc: provided.al2023 has 2.34. Refuse a binary that needs more (objdump from binutils).
objdump=objdump
[ "$arch" != "$host" ] && command -v "${gcc%-gcc}-objdump" >/dev/null && objdump=${gcc%-gcc}-objdump
if command -v "$objdump" >/dev/null; then
    need=$("$objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
    if [ -n "$need" ] && [ "$(printf '%s\n2.34\n' "$need" | sort -V | tail -1)" != 2.34 ]; then
        echo "build-decrypt-lambda.sh: $bin needs glibc $need; provided.al2023 has 2.34." \
            "Build on an older distribution, or with cargo-lambda (cargo lambda build --$arch)." >&2
        exit 1
    fi
fi
echo "$bin"
