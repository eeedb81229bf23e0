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
#   8. (controlplane) a 1,000-replica Deployment on 100 simulated nodes: create -> all Ready, and
#      delete -> pods gone (server process + a separate `skiff agent --simulate` process)
#   9. (controlplane) 10,000 pods (10 Deployments) on 1,000 simulated nodes: time to all Ready,
#      then the server's RSS after 10 s (target < 300 MiB)
#  10-12. (node, as root) a server WITH its kubelet: start -> node Ready, pod create -> Running
#      p50/p99 over 30 pods, RSS of skiff + containerd idle and with 20 pods
# and then `cargo bench --bench scheduler`:
#   S. scheduling throughput, 1,000 nodes and 10,000 pending pods (target >= 1,000 pods/s)
# Each prints a table with targets; results go to target/bench-results.json (or $SKIFF_BENCH_OUT)
# and target/bench-scheduler.json (or $SKIFF_BENCH_SCHEDULER_OUT).
#
# Knobs (environment): SKIFF_BENCH_CREATES (2000), SKIFF_BENCH_WATCH_EVENTS (1000),
# SKIFF_BENCH_SECRETS (5000), SKIFF_BENCH_STARTS (5), SKIFF_BENCH_IDLE_SECS (5),
# SKIFF_BENCH_AUTH_ITERATIONS (20000), ETCD_BIN,
# controlplane: SKIFF_BENCH_DEPLOY_NODES (100), SKIFF_BENCH_DEPLOY_REPLICAS (1000),
#   SKIFF_BENCH_SIM_NODES (1000), SKIFF_BENCH_SIM_PODS (10000), SKIFF_BENCH_SETTLE_SECS (10),
#   SKIFF_BENCH_SIM_READY_DELAY (1s, the simulated kubelet's bound -> Running delay),
#   SKIFF_BENCH_CP_TIMEOUT_SECS (900, limit of every wait),
#   SKIFF_BENCH_LOG_DIR (keep the server's and agent's logs there; SKIFF_LOG/RUST_LOG pass through),
# scheduler: SKIFF_BENCH_NODES (1000), SKIFF_BENCH_PODS (10000),
# SKIFF_BENCH_SKIP_BUILD=1 (reuse an existing target/release/skiff),
# SKIFF_BENCH_ONLY=etcd,https,inproc,auth,startup,controlplane,node,scheduler (run only these parts;
# all by default).
# A fresh checkout needs the release build (~5-10 min on 2 cores); the harness itself compiles in
# ~3.5 min; parts 1-7 run in ~30 s, controlplane in a few minutes.
#
# Small and quick, in debug (no release build; `cargo test --bench` runs the harness once with the
# dev profile and CARGO_BIN_EXE_skiff = target/debug/skiff):
#   SKIFF_BENCH_ONLY=controlplane SKIFF_BENCH_DEPLOY_NODES=10 SKIFF_BENCH_DEPLOY_REPLICAS=100 \
#   SKIFF_BENCH_SIM_NODES=50 SKIFF_BENCH_SIM_PODS=500 SKIFF_BENCH_SETTLE_SECS=2 \
#   SKIFF_BENCH_OUT=target/bench-small.json cargo test --bench api
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

only=",${SKIFF_BENCH_ONLY:-},"
wants() { [ "$only" = ",," ] || [[ "$only" == *",$1,"* ]]; }

if wants etcd && [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null; then
    install_etcd
fi

if [ "${SKIFF_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    echo "bench: cargo build --release --bin skiff" >&2
    cargo build --release --bin skiff
fi

export SKIFF_BIN="${SKIFF_BIN:-$target/release/skiff}"
export SKIFF_BENCH_OUT="${SKIFF_BENCH_OUT:-$target/bench-results.json}"
export SKIFF_BENCH_SCHEDULER_OUT="${SKIFF_BENCH_SCHEDULER_OUT:-$target/bench-scheduler.json}"

api_parts=0
for part in etcd https inproc auth startup controlplane node; do
    if wants "$part"; then api_parts=1; fi
done

status=0
# `--profile release` makes cargo reuse the release build above (the default bench profile would
# compile every dependency a second time); only the harnesses themselves are compiled here.
if [ "$api_parts" = 1 ]; then
    cargo bench --profile release --bench api || status=$?
fi
if wants scheduler; then
    cargo bench --profile release --bench scheduler || status=$?
fi
exit "$status"
