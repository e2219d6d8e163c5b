#!/usr/bin/env bash
# Reproduces the service table of BENCHMARKS.md in one command:
#
#   loadtest/measure.sh            # RUNS=3 DURATION=10s WARMUP=2s by default
#
# Builds jwtd and jwtd-load in release, writes each scenario's corpus, then
# for each scenario RUNS times: a fresh jwtd with the corpus's config under
# load (its CPU and peak RSS read from /proc), and the echo server (the
# transport ceiling) under the same load. single-cold is then run again at
# half its measured maximum rate for its latency target. Prints the markdown
# rows (medians over runs) of BENCHMARKS.md. Reports stay in target/loadtest.
#
# OUT (default target/loadtest) holds corpora, logs and JSON reports; JWTD
# names the jwtd binary (default: the release build).
#
# RAW_RS256_US: criterion's `verify/raw/RS256` time in µs on this machine
# (`cargo bench --bench verify -- 'verify/raw/RS256'`); default: the value in
# BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-16}
CONNECTIONS=${CONNECTIONS:-4}
RAW_RS256_US=${RAW_RS256_US:-22.6}
SCENARIOS=${SCENARIOS:-single-cold batch64-cold batch64-hot mixed flood}
OUT=${OUT:-target/loadtest}
BIN=target/release
JWTD=${JWTD:-$BIN/jwtd}     # another jwtd build to measure, e.g. a patched one
SERVER_PID=
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
trap 'stop_server' EXIT

cargo build --release --locked -p jwtd -p jwtd-load --bins
mkdir -p "$OUT/json" "$OUT/log"
rm -f "$OUT"/json/*.json

one_run() { # SCENARIO LABEL SERVER... -- RUN-ARGS...
    local scenario=$1 label=$2 i=$3
    shift 3
    local server=()
    while [ "$1" != "--" ]; do server+=("$1"); shift; done
    shift
    start_server "$OUT/log/$scenario-$label-$i.log" "${server[@]}"
    "$BIN/jwtd-load" run --corpus "$OUT/$scenario" --addr "$SERVER_ADDR" \
        --duration "$DURATION" --warmup "$WARMUP" \
        --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
        --server-pid "$SERVER_PID" --no-progress --label "$label" \
        --format json --output "$OUT/json/$scenario-$label-$i.json" "$@"
    stop_server
    echo "$scenario $label run $i: $("$BIN/jwtd-load" table --summary "$OUT/json/$scenario-$label-$i.json")" >&2
}

for scenario in $SCENARIOS; do
    "$BIN/jwtd-load" corpus --scenario "$scenario" --out "$OUT/$scenario"
    for i in $(seq "$RUNS"); do
        one_run "$scenario" jwtd "$i" "$JWTD" --config "$OUT/$scenario/jwtd.toml" -- --max-error-rate 0
        one_run "$scenario" echo "$i" "$BIN/jwtd-load" echo-server --
    done
    if [ "$scenario" = single-cold ]; then
        half=$("$BIN/jwtd-load" table --half-rate "$OUT"/json/single-cold-jwtd-*.json)
        for i in $(seq "$RUNS"); do
            one_run single-cold jwtd-half-rate "$i" "$JWTD" --config "$OUT/single-cold/jwtd.toml" -- \
                --rate "$half" --max-error-rate 0
        done
    fi
done

nproc_=$(nproc)
echo
echo "jwtd-load measure.sh: $RUNS runs of $DURATION (+$WARMUP warm-up) per row, concurrency $CONCURRENCY over $CONNECTIONS connections, $nproc_ cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
"$BIN/jwtd-load" table --raw-rs256-us "$RAW_RS256_US" "$OUT"/json/*.json
