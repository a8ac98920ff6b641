#!/usr/bin/env bash
# Runs every check and test: services, formatting, lints, the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build, no incremental caches: they double the target directory
# and a one-shot run gains nothing from them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/ensure-services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== structure: file sizes, import circles, the api's dependencies"
python3 scripts/check-structure.py
# The api reaches the live exam only through the Exam facade (docs/architecture.md).
if cargo tree -p invigil-api -e normal --depth 1 --locked --prefix none | grep -q '^ractor '; then
    echo "invigil-api must not depend on ractor: go through invigil_actors::exam::Exam" >&2
    exit 1
fi

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

echo "== observability: promtool config, rules and rule tests; dashboards against a real Prometheus"
scripts/check-observability.sh
INVIGIL_BIN=target/debug/invigil scripts/check-live-observability.sh

echo "== chaos drills (small): kill, stop, partition (root and nft), drain, reconnect-storm, postgres-stall, redis-restart, postgres-restart, rolling-restart, scale-out on a 3-node local cluster"
# The same workspace-wide target set as the tests, so nothing is built twice
# (a per-package build resolves other features and recompiles the world).
cargo build --locked --workspace --all-targets
target/debug/invigil-chaos drill all --nodes 3 --candidates 60 --seconds 3 \
    --lease-ttl-ms 4000 --bin target/debug/invigil --report target/chaos/ci

echo "== done; build output: $(du -sh target 2>/dev/null | cut -f1) in target/, $(df -h --output=avail . | tail -1 | tr -d ' ') free"
