#!/usr/bin/env bash
# Work-queue throughput on real Redis and Postgres (loopback): log lines
# published to the `logs` stream, consumed by the log worker (batched,
# idempotent inserts) — against the same consume loop with one insert
# transaction per entry, measured in the same run. Prints the numbers and
# updates the queue section of docs/benchmarks.md.
#
# Usage: scripts/bench-queue.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0

TRIALS=3; ENTRIES=200000; NAIVE=20000
if [ "${1:-}" = "--quick" ]; then TRIALS=1; ENTRIES=20000; NAIVE=2000; fi
REDIS="${INVIGIL_BENCH_REDIS:-redis://127.0.0.1:6379}"
PG_SERVER="${INVIGIL_BENCH_PG:-postgres://postgres:postgres@127.0.0.1:5432}"

scripts/ensure-services.sh >/dev/null
cargo build --release -q -p invigil-chaos --bin invigil-queue-bench
OUT=$(mktemp /tmp/invigil-bench-queue.XXXXXX)
for trial in $(seq 1 "$TRIALS"); do
    echo "== trial $trial of $TRIALS"
    target/release/invigil-queue-bench --redis "$REDIS" --postgres "$PG_SERVER" \
        --entries "$ENTRIES" --naive-entries "$NAIVE" | tee -a "$OUT"
done

median() { grep "^$1 " "$OUT" | awk '{print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
PUBLISH=$(median publish.entries_s); GROUP=$(median group.entries_s); NAIVE_S=$(median naive.entries_s)
RATIO=$(awk -v g="$GROUP" -v n="$NAIVE_S" 'BEGIN { printf "%.1f", g / n }')
CPU=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "publish $PUBLISH/s, log worker $GROUP/s, one insert per entry $NAIVE_S/s, ratio $RATIO"

SECTION=$(mktemp)
cat > "$SECTION" <<MD
## Work queue on Redis ($(date -u +%Y-%m-%d), $(nproc) cores, $CPU)

Reproduce: \`scripts/bench-queue.sh\` (release build; \`invigil-queue-bench\`
against the local Redis and Postgres, median of $TRIALS trial(s)). Log lines
go to the \`logs\` stream in batches of 500 (as the node's outbox publishes
them); the log worker — the node's own consume loop: \`XREADGROUP\` 500,
one multi-row \`INSERT … ON CONFLICT (entry_id) DO NOTHING\` per batch,
\`XACK\` — drains them into Postgres. The baseline is the same loop with
one insert transaction per entry. Every run checks that each acknowledged
entry is stored exactly once.

| | entries/s |
|---|---|
| publish (\`XADD\`, pipelined batches of 500) | $PUBLISH |
| log worker, batched insert ($ENTRIES entries) | **$GROUP** |
| same loop, one transaction per entry ($NAIVE entries) | $NAIVE_S |
| **batched ÷ per entry** | **${RATIO}×** |
MD
scripts/splice-bench.sh queue "$SECTION"
rm -f "$SECTION" "$OUT"
