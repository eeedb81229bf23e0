#!/usr/bin/env bash
# Skiff's benchmark, in one command:
#
#   scripts/bench.sh
#
# Builds the release binary once, installs etcd 3.4 from Debian if it is missing (waiting for the
# dpkg lock), then runs `cargo bench --bench api`, which measures side by side on loopback:
#   1. ConfigMap creates/s over HTTPS (1 and 8 kube-rs clients) vs etcd puts/s (1 and 8 connections)
#   2. (the etcd half of 1, through etcd's v3 HTTP/JSON gateway)
#   3. watch delivery latency: raw store and API in-process, API over HTTPS
#   4. listing 5,000 Secrets over HTTPS: full JSON and limit=500 pages
#   5. idle RSS of `skiff server --disable-agent` 5 s after start
#   6. time from process start to /readyz OK (median of 5 fresh starts)
#   7. authentication + authorization overhead per request with 500 RoleBindings
# It prints a table with targets and writes target/bench-results.json (or $SKIFF_BENCH_OUT).
#
# Knobs (environment): SKIFF_BENCH_CREATES (2000), SKIFF_BENCH_WATCH_EVENTS (1000),
# SKIFF_BENCH_SECRETS (5000), SKIFF_BENCH_STARTS (5), SKIFF_BENCH_IDLE_SECS (5),
# SKIFF_BENCH_AUTH_ITERATIONS (20000), ETCD_BIN,
# SKIFF_BENCH_SKIP_BUILD=1 (reuse an existing target/release/skiff),
# SKIFF_BENCH_ONLY=etcd,https,inproc,auth,startup (run only these parts; all by default).
# A fresh checkout needs the release build (~5-10 min on 2 cores); the harness itself compiles in
# ~3.5 min and runs in ~30 s.
# Every process the benchmark starts runs on 127.0.0.1 with a temporary data dir and is stopped by
# its pid at the end. Note: on a host with systemd, Debian's etcd-server package also enables and
# starts a system etcd service; the benchmark does not use it (it starts its own on random ports).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "bench: need root to run: $*" >&2
        return 1
    fi
}

install_etcd() {
    echo "bench: installing etcd-server and etcd-client" >&2
    local tries=0
    # DPkg::Lock::Timeout waits for another apt/dpkg to finish; the loop covers older apt and a
    # package list that needs refreshing.
    until as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -q etcd-server etcd-client >/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 3 ]; then
            echo "bench: could not install etcd; the etcd rows will show an error" >&2
            return 0
        fi
        as_root apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null || sleep 10
    done
}

if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null; then
    install_etcd
fi

if [ "${SKIFF_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "bench: cargo build --release --bin skiff" >&2
    cargo build --release --bin skiff
fi

export SKIFF_BIN="${SKIFF_BIN:-$target/release/skiff}"
export SKIFF_BENCH_OUT="${SKIFF_BENCH_OUT:-$target/bench-results.json}"
# `--profile release` makes cargo reuse the release build above (the default bench profile would
# compile every dependency a second time); only the harness itself is compiled here.
exec cargo bench --profile release --bench api
