#!/usr/bin/env bash
# Reproduces the service table of BENCHMARKS.md in one command:
#
#   loadtest/measure.sh            # RUNS=3 DURATION=10s WARMUP=2s by default
#
# Builds jwtd and jwtd-load in release, writes each scenario's corpus, then
# for each scenario RUNS times: a fresh jwtd with the corpus's config under
# load (its CPU and peak RSS read from /proc), and the echo server (the
# transport ceiling) under the same load. single-cold is then run again at
# half its measured maximum rate for its latency target, jwtd with /metrics
# on (its own time per call, from jwtd_rpc_duration_seconds), then again
# with [cache] pool_nice = 0, and the echo server at the same rate (the
# driver's floor there). Prints the markdown
# rows (medians over runs) of BENCHMARKS.md. Reports stay in target/loadtest.
#
# OUT (default target/loadtest) holds corpora, logs and JSON reports; JWTD
# names the jwtd binary (default: the release build).
#
# The crypto floor is measured in the same run: after each run of a cold
# scenario, `jwtd-load raw` verifies that scenario's RS256 tokens with
# aws-lc-rs and pre-parsed keys on 2 threads for DURATION, and the table
# shows each cold row against the median of those (issue 14, target 4).
#
# GHZ (default ../shared/tools/ghz/ghz; GHZ= skips it): each scenario also
# runs under ghz (loadtest/ghz/SCENARIO.json, the same concurrency and
# connections) against a fresh jwtd, RUNS times, for the table's ghz column
# with ghz's own CPU per call (loadtest/ghz_measure.py). Not for overload.
#
# overload (only when listed in SCENARIOS, e.g. SCENARIOS=overload): RUNS
# closed-loop runs give jwtd's capacity on that corpus (admitted calls/s; a
# row of the main table), then RUNS runs at OVERLOAD_FACTOR (3) times that
# rate, open loop, with --allow-shed, each call's deadline OVERLOAD_TIMEOUT_MS
# (1000) and room for twice rate × deadline calls in flight, so the driver
# never holds a call back; their corpus is made again with a cold cycle long
# enough for that rate (about 150k tokens at 5k calls/s: 30 s of signing). With JWTD_BASELINE=path/to/an/older/jwtd, the same
# offered load runs on it too, interleaved run by run (the corpus's config
# sets no max_pending_tokens, so either binary reads it). The overload table
# follows the main one.
#
# VIEWS (e.g. VIEWS="full registered status-only"; issue 14): after the
# scenarios, VIEW_SCENARIO (batch64-hot) is run per view against jwtd
# (`run --view V`, every result's shape checked) and against the echo
# server answering the same shapes (`echo-server --view V`), RUNS times,
# the views interleaved within each run so drift touches them alike. Their
# table (tokens/s per view, each against FULL) follows the main one.
# SCENARIOS="" runs only the views:
#
#   SCENARIOS= VIEWS="full registered status-only" loadtest/measure.sh
#
# NO_BUILD=1 skips the release build (binaries already built).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-16}
CONNECTIONS=${CONNECTIONS:-4}
GHZ=${GHZ-../shared/tools/ghz/ghz}
[ -z "$GHZ" ] || [ -x "$GHZ" ] || { echo "ghz not found at $GHZ (GHZ= to skip it)" >&2; exit 1; }
SCENARIOS=${SCENARIOS-single-cold batch64-cold batch64-hot mixed flood}
VIEWS=${VIEWS:-}                                # e.g. "full registered status-only"
VIEW_SCENARIO=${VIEW_SCENARIO:-batch64-hot}
OUT=${OUT:-target/loadtest}
BIN=target/release
JWTD=${JWTD:-$BIN/jwtd}     # another jwtd build to measure, e.g. a patched one
JWTD_BASELINE=${JWTD_BASELINE:-}                # overload: an older jwtd beside it
OVERLOAD_FACTOR=${OVERLOAD_FACTOR:-3}           # overload: offered load / capacity
OVERLOAD_TIMEOUT_MS=${OVERLOAD_TIMEOUT_MS:-1000} # overload: each call's deadline
OVERLOAD_CONNECTIONS=${OVERLOAD_CONNECTIONS:-8}
SERVER_PID=
# shellcheck source=loadtest/common.sh
. loadtest/common.sh
trap 'stop_server' EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release --locked -p jwtd -p jwtd-load --bins
mkdir -p "$OUT/json" "$OUT/log"
rm -f "$OUT"/json/*.json

one_run() { # SCENARIO LABEL SERVER... -- RUN-ARGS...
    local scenario=$1 label=$2 i=$3
    shift 3
    local server=()
    while [ "$1" != "--" ]; do server+=("$1"); shift; done
    shift
    local log="$OUT/log/$scenario-$label-$i.log" metrics
    start_server "$log" "${server[@]}"
    metrics=$(metrics_url "$log")   # jwtd with /metrics on (overload's config)
    "$BIN/jwtd-load" run --corpus "$OUT/$scenario" --addr "$SERVER_ADDR" \
        --duration "$DURATION" --warmup "$WARMUP" \
        --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
        --server-pid "$SERVER_PID" --no-progress --label "$label" \
        ${metrics:+--metrics-url "$metrics"} \
        --format json --output "$OUT/json/$scenario-$label-$i.json" "$@"
    stop_server
    echo "$scenario $label run $i: $("$BIN/jwtd-load" table --summary "$OUT/json/$scenario-$label-$i.json")" >&2
}

measure_overload() {
    local config="$OUT/overload/jwtd.toml" i rate slots
    for i in $(seq "$RUNS"); do
        one_run overload jwtd "$i" "$JWTD" --config "$config" -- \
            --allow-shed --timeout "${OVERLOAD_TIMEOUT_MS}ms" --max-error-rate 0
    done
    rate=$("$BIN/jwtd-load" table --rate-of "$OVERLOAD_FACTOR" "$OUT"/json/overload-jwtd-*.json)
    # A call lives at most its deadline, so rate × deadline slots never hold
    # one back; twice that, since a driver that falls behind frees a slot a
    # little late. The report counts any call that waited.
    slots=$(( 2 * rate * OVERLOAD_TIMEOUT_MS / 1000 + 64 ))
    # A cold token must not come round again while its last copy may still
    # be queued or memoized: at 20k calls/s the standard 1,365-call stream
    # repeats every 70 ms, and a run at 3x capacity then saw 49% memo hits
    # instead of 25%. So the open-loop corpus has a cold cycle of
    # rate × (deadline + 250 ms) calls, 24 cold tokens per call (3/4 of 32).
    local cold=$(( rate * (OVERLOAD_TIMEOUT_MS + 250) / 1000 * 24 ))
    [ "$cold" -ge 8192 ] || cold=8192
    "$BIN/jwtd-load" corpus --scenario overload --out "$OUT/overload" --distinct "$cold"
    echo "overload: capacity × $OVERLOAD_FACTOR = $rate calls/s offered, $slots calls in flight allowed, cold cycle of $cold tokens" >&2
    for i in $(seq "$RUNS"); do
        for side in jwtd baseline; do
            local server=$JWTD
            if [ "$side" = baseline ]; then
                [ -n "$JWTD_BASELINE" ] || continue
                server=$JWTD_BASELINE
            fi
            CONCURRENCY=$slots CONNECTIONS=$OVERLOAD_CONNECTIONS \
                one_run overload "$side-overload" "$i" "$server" --config "$config" -- \
                --rate "$rate" --allow-shed --timeout "${OVERLOAD_TIMEOUT_MS}ms"
        done
    done
}

ghz_run() { # SCENARIO RUN
    local scenario=$1 i=$2 log="$OUT/log/$1-ghz-$2.log"
    start_server "$log" "$JWTD" --config "$OUT/$scenario/jwtd.toml"
    python3 loadtest/ghz_measure.py "$GHZ" "loadtest/ghz/$scenario.json" "$SERVER_ADDR" \
        "$OUT/$scenario" "${DURATION%s}" "$OUT/json/$scenario-ghz-$i.json"
    stop_server
}

for scenario in $SCENARIOS; do
    "$BIN/jwtd-load" corpus --scenario "$scenario" --out "$OUT/$scenario" \
        ${GHZ:+--ghz-data "$OUT/$scenario/ghz-data.json"}
    if [ "$scenario" = overload ]; then
        measure_overload
        continue
    fi
    for i in $(seq "$RUNS"); do
        one_run "$scenario" jwtd "$i" "$JWTD" --config "$OUT/$scenario/jwtd.toml" -- --max-error-rate 0
        one_run "$scenario" echo "$i" "$BIN/jwtd-load" echo-server --
        if [[ "$scenario" == *cold* ]]; then
            "$BIN/jwtd-load" raw --corpus "$OUT/$scenario" --threads 2 \
                --duration "$DURATION" --output "$OUT/json/raw-$scenario-$i.json"
        fi
        [ -z "$GHZ" ] || ghz_run "$scenario" "$i"
    done
    if [ "$scenario" = single-cold ]; then
        # Target 6's runs: jwtd with /metrics on (a free loopback port), so
        # the report has jwtd's own time per call beside the driver's, and
        # the echo server at the same rate: the driver's own floor there.
        half=$("$BIN/jwtd-load" table --half-rate "$OUT"/json/single-cold-jwtd-*.json)
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        sed "s/^metrics_listen = .*/metrics_listen = \"127.0.0.1:$port\"/" \
            "$OUT/single-cold/jwtd.toml" >"$OUT/single-cold/jwtd-metrics.toml"
        # The same with the verification pool at the network threads'
        # priority ([cache] pool_nice = 0; the default is 10).
        sed '/^\[cache\]/a pool_nice = 0' \
            "$OUT/single-cold/jwtd-metrics.toml" >"$OUT/single-cold/jwtd-nice0.toml"
        for i in $(seq "$RUNS"); do
            one_run single-cold jwtd-half-rate "$i" "$JWTD" --config "$OUT/single-cold/jwtd-metrics.toml" -- \
                --rate "$half" --max-error-rate 0
            one_run single-cold jwtd-half-rate-nice0 "$i" "$JWTD" --config "$OUT/single-cold/jwtd-nice0.toml" -- \
                --rate "$half" --max-error-rate 0
            one_run single-cold echo-half-rate "$i" "$BIN/jwtd-load" echo-server -- --rate "$half"
        done
    fi
done

if [ -n "$VIEWS" ]; then
    "$BIN/jwtd-load" corpus --scenario "$VIEW_SCENARIO" --out "$OUT/$VIEW_SCENARIO"
    for i in $(seq "$RUNS"); do
        for view in $VIEWS; do
            one_run "$VIEW_SCENARIO" "jwtd-view-$view" "$i" "$JWTD" --config "$OUT/$VIEW_SCENARIO/jwtd.toml" -- \
                --view "$view" --max-error-rate 0
            one_run "$VIEW_SCENARIO" "echo-view-$view" "$i" "$BIN/jwtd-load" echo-server --view "$view" -- \
                --view "$view"
        done
    done
fi

nproc_=$(nproc)
echo
echo "jwtd-load measure.sh: $RUNS runs of $DURATION (+$WARMUP warm-up) per row, concurrency $CONCURRENCY over $CONNECTIONS connections, $nproc_ cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
"$BIN/jwtd-load" table "$OUT"/json/*.json
