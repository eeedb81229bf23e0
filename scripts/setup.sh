#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine to run Skiff: installs the build dependencies (and Rust if
# missing) and the node's runtime (containerd, runc, CNI plugins), builds the release binary and installs it as /usr/local/bin/skiff.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"

need=()
# protoc builds containerd-client's gRPC bindings; containerd and runc run the node's pods.
for spec in gcc:build-essential pkg-config:pkg-config curl:curl git:git protoc:protobuf-compiler \
    containerd:containerd runc:runc; do
  command -v "${spec%%:*}" >/dev/null 2>&1 || need+=("${spec#*:}")
done
dpkg -s ca-certificates >/dev/null 2>&1 || need+=(ca-certificates)
dpkg -s containernetworking-plugins >/dev/null 2>&1 || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
  for i in $(seq 1 60); do
    if out=$($sudo apt-get update -qq 2>&1 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" 2>&1); then break; fi
    grep -q "Could not get lock\|is locked" <<<"$out" || { echo "$out" >&2; exit 1; }
    echo "apt is locked by another process, waiting ($i)" >&2; sleep 5
  done
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "installing Rust with rustup (stable)" >&2
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

cargo build --release --locked --bin skiff
$sudo install -m 0755 target/release/skiff /usr/local/bin/skiff
echo "installed /usr/local/bin/skiff ($(/usr/local/bin/skiff --version))"
