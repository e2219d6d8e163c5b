#!/usr/bin/env bash
# CI smoke run of every load scenario: a small corpus, a freshly started jwtd
# (the debug build `cargo test` just made), about 2 s of load each, and
# --max-error-rate 0: any failed call, or any token whose Status differs from
# the corpus's expectation, fails the run. Takes about a minute.
#
# overload runs with --allow-shed: a call jwtd sheds (RESOURCE_EXHAUSTED with
# a valid grpc-retry-pushback-ms trailer) is not a failure, whether or not any
# is shed in 2 s; one without the trailer, or a shed call of memo hits only,
# still is. It also reads jwtd's /metrics before and after (--metrics-url),
# which fails the run if the histogram cannot be read.
#
# Then ghz (GHZ, default ../shared/tools/ghz/ghz, 0.115.0) runs the same
# scenario's loadtest/ghz/SCENARIO.json against the same jwtd for 1000
# calls (loadtest/ghz_smoke.py): every call must succeed (overload: or be
# shed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/debug}
GHZ=${GHZ:-../shared/tools/ghz/ghz}
if [ ! -x "$GHZ" ]; then
    echo "ghz not found at $GHZ (set GHZ)" >&2
    exit 1
fi
WORK=$(mktemp -d)
trap 'stop_server; rm -rf "$WORK"' EXIT
SERVER_PID=
# shellcheck source=loadtest/common.sh
. loadtest/common.sh

cargo build --locked -q -p jwtd -p jwtd-load --bins

passed=0
for scenario in single-cold batch64-cold batch64-hot mixed flood overload; do
    dir="$WORK/$scenario"
    # 256 distinct tokens keep corpus signing short in a debug build.
    "$BIN/jwtd-load" corpus --scenario "$scenario" --out "$dir" --distinct 256 --seed 6 \
        --ghz-data "$dir/ghz-data.json"
    start_server "$dir/jwtd.log" "$BIN/jwtd" --config "$dir/jwtd.toml"
    extra=()
    if [ "$scenario" = overload ]; then
        extra=(--allow-shed --metrics-url "$(metrics_url "$dir/jwtd.log")")
    fi
    "$BIN/jwtd-load" run --corpus "$dir" --addr "$SERVER_ADDR" \
        --duration 2s --warmup 500ms --concurrency 8 --connections 2 \
        --server-pid "$SERVER_PID" --no-progress --max-error-rate 0 \
        --format json --output "$dir/report.json" "${extra[@]}" || {
        echo "== $scenario FAILED; jwtd log:" >&2
        tail -n 20 "$dir/jwtd.log" >&2
        exit 1
    }
    python3 loadtest/ghz_smoke.py "$GHZ" "loadtest/ghz/$scenario.json" "$SERVER_ADDR" \
        "$dir/ghz-data.json" || {
        echo "== ghz $scenario FAILED; jwtd log:" >&2
        tail -n 20 "$dir/jwtd.log" >&2
        exit 1
    }
    stop_server
    # One line per scenario: calls, tokens and the Status distribution.
    "$BIN/jwtd-load" table --summary "$dir/report.json"
    passed=$((passed + 1))
done
echo "smoke: $passed passed (jwtd-load and ghz), 0 failed"
