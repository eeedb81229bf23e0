#!/usr/bin/env bash
# Builds Skiff's fuzz targets (fuzz/) with libFuzzer on stable Rust and runs each for a bounded
# time. Exits non-zero when any target crashes, times out or runs out of memory, and prints the
# reproducer path and the command that replays it.
#
# Usage: scripts/fuzz.sh [seconds-per-target]      (default 60)
# Environment:
#   FUZZ_TARGETS     space-separated targets to run (default: all of them)
#   FUZZ_SANITIZER   "address" to build with AddressSanitizer (unstable flag, enabled on stable
#                    through RUSTC_BOOTSTRAP=1; separate target dir, slower); default none
#   FUZZ_JOBS        cargo build jobs (default: cargo's own)
#   FUZZ_ARGS        extra libFuzzer flags for every run
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [seconds-per-target]  (a positive whole number, got '$seconds')" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
read -r -a targets <<<"${FUZZ_TARGETS:-protobuf_decode patch body_decode}"
host="$(rustc -vV | sed -n 's/^host: //p')"

# The instrumentation cargo-fuzz adds, minus its nightly-only sanitizer default: coverage counters
# and comparison tracing for libFuzzer, and `cfg(fuzzing)`. Every flag here is stable.
rustflags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    --cfg fuzzing
)
target_dir="$fuzz_dir/target"
case "${FUZZ_SANITIZER:-none}" in
    none) ;;
    address)
        rustflags+=(-Zsanitizer=address)
        export RUSTC_BOOTSTRAP=1
        export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0"
        target_dir="$fuzz_dir/target/asan"
        ;;
    *)
        echo "FUZZ_SANITIZER must be none or address, got '$FUZZ_SANITIZER'" >&2
        exit 2
        ;;
esac

build_args=(build --release --target "$host" --target-dir "$target_dir")
if [[ -n "${FUZZ_JOBS:-}" ]]; then
    build_args+=(--jobs "$FUZZ_JOBS")
fi
for target in "${targets[@]}"; do
    build_args+=(--bin "$target")
done

echo "fuzz: building ${targets[*]} (sanitizer ${FUZZ_SANITIZER:-none})"
build_start=$SECONDS
# --target keeps the instrumentation away from build scripts and proc macros, which are not
# linked against libFuzzer.
(cd "$fuzz_dir" && RUSTFLAGS="${rustflags[*]}" cargo "${build_args[@]}")
echo "fuzz: build took $((SECONDS - build_start)) s"

log_dir="$target_dir/fuzz-logs"
mkdir -p "$log_dir"
failed=()
for target in "${targets[@]}"; do
    bin="$target_dir/$host/release/$target"
    corpus="$fuzz_dir/corpus/$target"
    artifacts="$fuzz_dir/artifacts/$target"
    seeds="$fuzz_dir/seeds/$target"
    log="$log_dir/$target.log"
    mkdir -p "$corpus" "$artifacts"
    args=(
        -max_total_time="$seconds"
        -timeout=10
        -rss_limit_mb=2048
        -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    if [[ -f "$fuzz_dir/dicts/$target.dict" ]]; then
        args+=(-dict="$fuzz_dir/dicts/$target.dict")
    fi
    # FUZZ_ARGS is split on whitespace on purpose: it holds several flags.
    # shellcheck disable=SC2206
    args+=(${FUZZ_ARGS:-})
    dirs=("$corpus")
    if [[ -d "$seeds" ]]; then
        dirs+=("$seeds")
    fi

    echo "fuzz: running $target for $seconds s (log $log)"
    status=0
    "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1 || status=$?

    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1 || true)"
    if [[ "$status" -eq 0 ]]; then
        echo "fuzz: $target ok: ${runs:-?} runs, ${speed:-?} exec/s, ${cov:-no coverage line}"
        continue
    fi

    failed+=("$target")
    echo "fuzz: $target FAILED (exit $status) after ${runs:-?} runs; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    reproducers="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")"
    if [[ -n "$reproducers" ]]; then
        while read -r reproducer; do
            echo "fuzz: $target reproducer: $reproducer" >&2
            echo "fuzz: replay with: $bin $reproducer" >&2
        done <<<"$reproducers"
    else
        echo "fuzz: $target wrote no reproducer; see $log" >&2
    fi
done

if [[ "${#failed[@]}" -gt 0 ]]; then
    echo "fuzz: failures in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all targets ran $seconds s without a crash"
