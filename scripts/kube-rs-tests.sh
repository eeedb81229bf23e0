#!/usr/bin/env bash
# Runs kube-rs's own "needs cluster" tests (the #[ignore]d tests of the published kube-client
# crate) against the cluster in KUBECONFIG: a real third-party test suite for the API server.
#
#   scripts/kube-rs-tests.sh KUBECONFIG [extra libtest args, e.g. a name filter]
#
# The crate is fetched at test time, never vendored: a scratch crate in target/kube-rs-suite/
# depends on kube 5.0.0, `cargo fetch` brings kube-client-5.0.0 into the cargo registry, and a copy
# of it is patched so its tests build outside the kube workspace. Everything, including the build
# output (target/kube-rs-suite/target), stays under target/. The first run compiles for a few
# minutes; later runs reuse the build.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 KUBECONFIG [libtest args...]" >&2
  exit 2
fi
kubeconfig="$(realpath "$1")"
shift
[ -r "$kubeconfig" ] || { echo "cannot read kubeconfig $kubeconfig" >&2; exit 2; }

cd "$(dirname "$0")/.."
suite="$PWD/target/kube-rs-suite"
version="5.0.0"
crate="$suite/kube-client-$version"
export CARGO_TARGET_DIR="$suite/target"
mkdir -p "$suite/scratch/src"

# Tests that cannot pass against `skiff server --disable-agent` whatever the API server does:
# they need a kubelet running pods, CSR approval or TokenRequest. Name and reason, one a line.
skipped=(
  "test::pod_can_exec_and_write_to_stdin|execs into a running pod (needs a kubelet)"
  "test::can_get_pod_logs_and_evict|tails the logs of a running pod (needs a kubelet)"
  "test::csr_can_be_approved|needs CSR approval"
  "api::util::test::create_token_request|needs TokenRequest and TokenReview of the issued token"
)

# 1. Fetch kube-client through an ordinary dependency on kube.
cat >"$suite/scratch/Cargo.toml" <<EOF
[package]
name = "kube-rs-suite-fetch"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
kube = { version = "=$version", features = ["runtime", "derive", "ws"] }
k8s-openapi = { version = "0.29", features = ["v1_35"] }

[workspace]
EOF
echo "" >"$suite/scratch/src/lib.rs"
(cd "$suite/scratch" && cargo fetch --quiet)

# 2. Copy it out of the registry (its published tests use the `kube` facade, which publishing
#    strips, so re-add it as a dev-dependency patched back onto this very copy).
if [ ! -f "$crate/.skiff-patched" ]; then
  manifest="$(cd "$suite/scratch" && cargo metadata --format-version 1 --locked |
    grep -o "\"manifest_path\":\"[^\"]*/kube-client-$version/Cargo.toml\"" | head -n 1 | cut -d'"' -f4)"
  if [ -z "$manifest" ] || [ ! -f "$manifest" ]; then
    echo "kube-client $version not found after cargo fetch" >&2
    exit 1
  fi
  rm -rf "$crate"
  cp -r "$(dirname "$manifest")" "$crate"
  chmod -R u+w "$crate"
  rm -f "$crate/Cargo.lock"
  # Its dev-dependency on k8s-openapi stays at `latest` (1.37): the tests are written against
  # those types (TokenRequestSpec changed shape) and do not build at 1.35.
  cat >>"$crate/Cargo.toml" <<EOF

[dev-dependencies.kube]
version = "$version"
features = ["ws"]

[patch.crates-io]
kube-client = { path = "." }

[workspace]
EOF
  touch "$crate/.skiff-patched"
fi

# 3. Build the tests once; find the test binary cargo built. `unstable-client` compiles the
#    client_ext tests too (three more that need only the API).
features="client,rustls-tls,ring,ws,gzip,unstable-client"
bin="$(cd "$crate" && cargo test --lib --no-default-features --features "$features" --no-run \
  --message-format=json-render-diagnostics 2>"$suite/build.log" |
  grep -o '"executable":"[^"]*/kube_client-[^"]*"' | tail -n 1 | cut -d'"' -f4)" || { cat "$suite/build.log" >&2; exit 1; }
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  cat "$suite/build.log" >&2
  echo "no kube-client test binary" >&2
  exit 1
fi

# 4. Run the ignored tests against the cluster, one at a time (they share names in "default").
skip_args=()
for entry in "${skipped[@]}"; do
  name="${entry%%|*}"
  echo "skipping $name: ${entry#*|}"
  skip_args+=(--skip "$name")
done
cd "$crate"
KUBECONFIG="$kubeconfig" RUST_BACKTRACE=1 "$bin" --ignored --test-threads=1 "${skip_args[@]}" "$@"
