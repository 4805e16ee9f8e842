#!/usr/bin/env bash
# Runs every fuzz target of fle for a short, fixed time (the long run is described in
# fuzz/README.md). Fails if any target finds a crash.
#
#   scripts/fuzz-short.sh [SECONDS_PER_TARGET]     (default 20)
#
# Installs cargo-fuzz when missing (pinned), builds all targets once with the nightly
# toolchain (optimised, without AddressSanitizer: the code under test forbids `unsafe`, and
# the build and the runs are about twice as fast), then runs each target with the committed
# corpus fuzz/corpus/<target> as a read-only seed directory: new inputs go to a temporary
# directory, never into the committed corpus. Crash inputs are kept in fuzz/artifacts/<target>/.
# FUZZ_TARGET_DIR overrides the build directory (default fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-20}
jobs=${FUZZ_JOBS:-2}

step() { printf '\n==> %s\n' "$*"; }
now() { date +%s; }
t0=$(now)

step "cargo-fuzz and the nightly toolchain"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo +nightly fuzz --version
t1=$(now)

step "Build every fuzz target (one optimised build)"
target_dir=${FUZZ_TARGET_DIR:-$root/fuzz/target}
(cd fuzz && cargo +nightly fuzz build -O --sanitizer none --target-dir "$target_dir")
t2=$(now)
bin=$target_dir/$(rustc +nightly -vV | sed -n 's/^host: //p')/release
targets=$(cd fuzz && cargo +nightly fuzz list)

step "Run each target for ${seconds}s (${jobs} at a time)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_one() {
    local t=$1
    mkdir -p "$work/$t" "$root/fuzz/artifacts/$t"
    if "$bin/$t" "$work/$t" "$root/fuzz/corpus/$t" \
        -max_total_time="$seconds" -max_len=4096 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/" \
        >"$work/$t.log" 2>&1; then
        local runs
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
        echo "$t: ok, ${runs:-?} executions in ${seconds}s"
    else
        echo "$t: FAILED (crash input in fuzz/artifacts/$t/); last lines of its log:"
        tail -n 40 "$work/$t.log"
        return 1
    fi
}
export -f run_one
export work root bin seconds
failed=0
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}' || failed=1
t3=$(now)

step "Times"
echo "cargo-fuzz check/install: $((t1 - t0))s, build: $((t2 - t1))s, runs: $((t3 - t2))s, total: $((t3 - t0))s"
if [ "$failed" -ne 0 ]; then
    echo "fuzzing found a crash: see the logs above and fuzz/README.md (reproduce, minimise)" >&2
    exit 1
fi
echo "every fuzz target ran without a crash"
