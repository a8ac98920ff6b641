#!/usr/bin/env bash
# The real-Prometheus check of issue 15 (docs/observability.md): a 3-node
# local cluster (scripts/cluster-up.sh, the debug binary unless INVIGIL_BIN
# says otherwise) under a little exam traffic (scripts/observability-load.py),
# scraped every second by a real Prometheus loading the alert rules; then
#   - `promtool check metrics` lints each node's exposition,
#   - every expression of every dashboard and rule must evaluate, and every
#     metric it names must exist in that Prometheus (scripts/check-dashboards.py),
#   - the rules must load without evaluation errors.
# Leaves nothing running: the Prometheus and the cluster are stopped at the
# end (a cluster that was already running is left as it was).
#   scripts/check-live-observability.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "check-live-observability: $*" >&2; }

scripts/ensure-prometheus.sh
PROMETHEUS=$(command -v prometheus)
export INVIGIL_BIN="${INVIGIL_BIN:-target/debug/invigil}"
if [ ! -x "$INVIGIL_BIN" ]; then
    log "building $INVIGIL_BIN"
    cargo build -p invigil-node --bin invigil
fi

started_cluster=0
if ! curl -fsS -o /dev/null http://127.0.0.1:8081/healthz 2>/dev/null; then
    scripts/cluster-up.sh 3
    started_cluster=1
fi

work=$(mktemp -d)
prom_pid=""
cleanup() {
    [ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null || true
    [ "$started_cluster" = 1 ] && scripts/cluster-down.sh || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rules=$(ls grafana/prometheus/rules/*.yml | grep -v '\.test\.yml$')
{
    echo "global: {scrape_interval: 1s, evaluation_interval: 1s}"
    echo "rule_files:"
    for rule in $rules; do echo "  - $PWD/$rule"; done
    echo "scrape_configs:"
    echo "  - job_name: invigil"
    echo "    static_configs: [{targets: ['127.0.0.1:8081', '127.0.0.1:8082', '127.0.0.1:8083']}]"
} >"$work/prometheus.yml"
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
    --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 60); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/-/ready" 2>/dev/null && break
    sleep 0.5
done

python3 scripts/observability-load.py --nodes 8081,8082,8083

for node in 8081 8082 8083; do
    log "promtool check metrics on :$node"
    curl -fsS "http://127.0.0.1:$node/metrics" | promtool check metrics
done

# Every node scraped since the traffic (a few scrapes, rules evaluated).
sleep 4
up=$(curl -fsS "http://127.0.0.1:$port/api/v1/query?query=sum(up%7Bjob%3D%22invigil%22%7D)" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
[ "$up" = 3 ] || { log "Prometheus sees $up of 3 nodes up"; exit 1; }

python3 scripts/check-dashboards.py --prometheus "http://127.0.0.1:$port" \
    grafana/dashboards/*.json $rules

# Rule groups loaded and evaluated without errors.
curl -fsS "http://127.0.0.1:$port/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
bad = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r.get("health") != "ok"]
assert groups, "no rule groups loaded"
if bad:
    sys.exit(f"rules not healthy: {bad}")
count = sum(len(g["rules"]) for g in groups)
print("check-live-observability:", count, "rules healthy")'
log "ok"
