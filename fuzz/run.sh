#!/usr/bin/env bash
# CI's fuzzing step: builds every cargo-fuzz target, runs each for
# FUZZ_SECONDS (default 30) on a scratch copy of its seed corpus, and fails
# on any crash, leak, timeout or OOM, printing the target and the input.
# Ends with one line per target: executions, executions per second, corpus.
#
# Needs the Rust toolchain only (nightly preferred, see below); installs the
# pinned cargo-fuzz from crates.io when it is missing.
# The repository is not modified: corpora and logs go to a temporary folder;
# a failing input is also copied to fuzz/artifacts/<target>/ (ignored by git)
# and printed in base64, since CI's checkout does not outlive the run.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(verify json jwks discovery config ext_authz_request)
# libFuzzer: a single input running longer than this is a hang.
INPUT_TIMEOUT=10
export CARGO_TERM_COLOR=never

# cargo-fuzz passes nightly-only flags (-Zsanitizer=address). A machine with
# the stable toolchain alone gets it to accept them through RUSTC_BOOTSTRAP=1
# (stable ships the ASan runtime; checked with rustc 1.95: builds and fuzzes
# the same). Prefer a real nightly where there is one.
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz/run.sh: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "== cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# --dev: the release build takes twice as long on 2 cores; fuzz/Cargo.toml
# optimises the crates the targets run in even so (see the comment there).
echo "== cargo ${toolchain[*]:+${toolchain[*]} }fuzz build --dev (${#TARGETS[@]} targets, ASan)"
start=$SECONDS
cargo "${toolchain[@]}" fuzz build --dev
echo "built in $((SECONDS - start)) s"

triple="$(rustc "${toolchain[@]}" -vV | sed -n 's/^host: //p')"
bin_dir="target/$triple/debug"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

summary=()
failed=()
for target in "${TARGETS[@]}"; do
    echo "== fuzz $target for ${FUZZ_SECONDS} s"
    corpus="$scratch/corpus/$target"
    artifacts="$scratch/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    cp -R "corpus/$target/." "$corpus/"
    log="$scratch/$target.log"
    status=0
    "$bin_dir/$target" "$corpus" \
        -max_total_time="$FUZZ_SECONDS" \
        -rss_limit_mb=2048 \
        -timeout="$INPUT_TIMEOUT" \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/" \
        >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "FAILED: target $target (libFuzzer exit $status); the end of its log:" >&2
        tail -n 60 "$log" >&2
        mkdir -p "artifacts/$target"
        for input in "$artifacts"/*; do
            [ -e "$input" ] || continue
            cp "$input" "artifacts/$target/"
            name="artifacts/$target/$(basename "$input")"
            echo "FAILING INPUT of target $target: fuzz/$name" >&2
            echo "  reproduce: cd fuzz && cargo +nightly fuzz run $target $name" >&2
            echo "  base64: $(head -c 65536 "$input" | base64 -w0)" >&2
        done
        continue
    fi
    # The final stats (-print_final_stats=1) and libFuzzer's last status line.
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    inputs="$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")"
    echo "$last"
    summary+=("$(printf '%-18s %10s execs %7s exec/s %6s inputs in corpus' \
        "$target" "${execs:-?}" "${rate:-?}" "${inputs:-?}")")
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "== fuzzing FAILED: ${failed[*]} (inputs above, and in fuzz/artifacts/)" >&2
    exit 1
fi
echo "== fuzzing: ${#TARGETS[@]} targets, ${FUZZ_SECONDS} s each: no crash, leak, timeout or OOM"
printf '%s\n' "${summary[@]}"
