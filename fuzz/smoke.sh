#!/usr/bin/env bash
# Run every cargo-fuzz target (or $FUZZ_TARGETS) for $FUZZ_SECONDS on its seed corpus,
# $FUZZ_JOBS at a time, on the stable toolchain (--sanitizer none). Any crash, panic,
# timeout or out-of-memory fails; its input is left in fuzz/artifacts/<target>/.
# New inputs go to a scratch corpus (fuzz/target/scratch/), so the committed seeds stay.
# Used by `make fuzz-smoke` and `make fuzz` (docs/SECURITY.md, "Fuzzing").
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}
logs=fuzz/target/logs
mkdir -p "$logs"

run_one() {
    local t=$1 seconds=$2 logs=$3
    local scratch=fuzz/target/scratch/$t dict=()
    mkdir -p "$scratch" "fuzz/artifacts/$t"
    case $t in
        rir) dict=(-dict=fuzz/dict/rir.dict) ;;
        frame | definition | typed_results | ooni_report) dict=(-dict=fuzz/dict/json.dict) ;;
    esac
    local start=$SECONDS
    if cargo fuzz run --sanitizer none --fuzz-dir fuzz "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "${dict[@]}" >"$logs/$t.log" 2>&1; then
        echo "fuzz $t: ok in $((SECONDS - start)) s, $(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$') runs"
    else
        echo "fuzz $t: FAILED (log $logs/$t.log, input in fuzz/artifacts/$t/)"
        grep -aE 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$logs/$t.log" | head -8
        return 1
    fi
}
export -f run_one

printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one "$@"' _ {} "$seconds" "$logs"
