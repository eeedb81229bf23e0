#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need, checks formatting and lints,
# builds once, then runs unit, integration and acceptance tests (real kubectl, helm, kube-rs)
# and a bounded fuzzing pass.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies"
scripts/test-deps.sh

step "format"
cargo fmt --check

step "lint"
cargo clippy --locked --all-targets -- -D warnings

step "build"
cargo build --locked --all-targets

step "tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi

if [ -x scripts/fuzz.sh ]; then
  step "fuzz (bounded)"
  scripts/fuzz.sh "${SKIFF_FUZZ_SECONDS:-30}"
fi
