#!/usr/bin/env bash
# A/B of the marker-free batch benchmark (benches/batch.rs) for two `fle` binaries, run
# alternately (A B A B ...) because the machine's CPU is shared: each run prints the `fle`
# wall-time MB/s and the `cat` and `dd conv=fsync` baselines of the same run.
#
#   scripts/bench-batch-ab.sh /abs/path/fle-A /abs/path/fle-B [ROUNDS=2] [FILTER=marker]
#
# The bench executable is built once (`cargo bench --bench batch --no-run`) and then run
# directly, so that edits to the tree during the series do not rebuild it. Full logs go to
# $AB_LOG_DIR (default: a new temporary directory).
set -euo pipefail
a=${1:?binary A}; b=${2:?binary B}; rounds=${3:-2}; filter=${4:-marker}
cd "$(dirname "$0")/.."
exe=$(cargo bench --bench batch --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | grep '/batch-' | tail -1)
[ -x "$exe" ] || { echo "cannot find the batch bench executable" >&2; exit 1; }
logs=${AB_LOG_DIR:-$(mktemp -d)}
echo "bench: $exe; logs: $logs" >&2
for round in $(seq 1 "$rounds"); do
    for side in A B; do
        bin=$a; [ "$side" = B ] && bin=$b
        log="$logs/$round-$side.log"
        FLE_BENCH_BIN=$bin "$exe" --bench "$filter" >"$log" 2>&1
        echo "== round $round $side ($bin)"
        grep -E '^fle decrypt|time: |thrpt: |^marker-free, |binary under test' "$log"
    done
done
