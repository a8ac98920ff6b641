#!/usr/bin/env bash
# Checks the Prometheus and Grafana artefacts under grafana/ (docs/observability.md):
#   1. promtool check config  grafana/prometheus/prometheus.yml (and the
#      Kubernetes example, when this promtool knows Kubernetes discovery)
#   2. promtool check rules   grafana/prometheus/rules/*.yml (not the tests)
#   3. promtool test rules    grafana/prometheus/rules/*.test.yml
#   4. the dashboards are valid JSON, well formed, and every metric they and
#      the rules name is in the catalogue (scripts/check-dashboards.py --offline)
#   5. a live rehearsal, unless --no-live: a throwaway Prometheus on a free
#      port scrapes a fake node (every catalogue metric, fake values) and
#      loads the rules; every dashboard and rule expression must evaluate
#      there (scripts/check-dashboards.py --prometheus), and the checker's
#      self-test must catch its planted faults. Both processes are stopped
#      at the end.
# scripts/ensure-prometheus.sh installs Debian's prometheus package when
# promtool is missing.
# Usage: scripts/check-observability.sh [--no-live]
set -euo pipefail
cd "$(dirname "$0")/.."

LIVE=1
case "${1:-}" in
    --no-live) LIVE=0 ;;
    "") ;;
    *) echo "usage: scripts/check-observability.sh [--no-live]" >&2; exit 2 ;;
esac

log() { echo "check-observability: $*" >&2; }

scripts/ensure-prometheus.sh
RULES=()
TESTS=()
for file in grafana/prometheus/rules/*.yml; do
    case "$file" in
        *.test.yml) TESTS+=("$file") ;;
        *) RULES+=("$file") ;;
    esac
done
DASHBOARDS=(grafana/dashboards/*.json)

log "1. promtool check config"
promtool check config grafana/prometheus/prometheus.yml
if ! out=$(promtool check config grafana/prometheus/kubernetes-scrape.yml 2>&1); then
    if grep -q "field kubernetes_sd_configs not found" <<<"$out"; then
        log "   kubernetes-scrape.yml: this promtool was built without Kubernetes discovery (Debian's is); checking it is YAML only"
        python3 - grafana/prometheus/kubernetes-scrape.yml <<'PY'
import sys
try:
    import yaml
except ImportError:
    print("   (PyYAML absent: not parsed)"); sys.exit(0)
doc = yaml.safe_load(open(sys.argv[1]))
job = doc["scrape_configs"][0]
assert job["job_name"] == "invigil" and job["kubernetes_sd_configs"][0]["role"] == "pod", job
print("   kubernetes-scrape.yml: YAML ok, job invigil, pod discovery")
PY
    else
        echo "$out" >&2
        exit 1
    fi
else
    echo "$out"
fi

log "2. promtool check rules"
promtool check rules "${RULES[@]}"

log "3. promtool test rules"
promtool test rules "${TESTS[@]}"

log "4. dashboards: JSON, structure, names against the catalogue"
for board in "${DASHBOARDS[@]}"; do
    python3 -m json.tool "$board" >/dev/null || { log "$board is not valid JSON"; exit 1; }
done
python3 scripts/check-dashboards.py --offline --rules "${RULES[@]}" "${DASHBOARDS[@]}"

if [ "$LIVE" = 0 ]; then
    log "5. live rehearsal skipped (--no-live)"
    log "all checks passed"
    exit 0
fi
if ! command -v prometheus >/dev/null 2>&1; then
    log "5. live rehearsal skipped: no prometheus binary"
    log "all checks passed"
    exit 0
fi

log "5. live rehearsal: a throwaway Prometheus scraping a fake node"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
FAKE_PID=""
PROM_PID=""
cleanup() {
    local pid
    for pid in $PROM_PID $FAKE_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
FAKE_PORT=$(free_port)
PROM_PORT=$(free_port)
python3 scripts/check-dashboards.py --serve-fake-node "127.0.0.1:$FAKE_PORT" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
$(for rule in "${RULES[@]}"; do echo "  - $PWD/$rule"; done)
scrape_configs:
  - job_name: invigil
    static_configs:
      - targets: ["127.0.0.1:$FAKE_PORT"]
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PROM_PORT"]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
URL="http://127.0.0.1:$PROM_PORT"
python3 scripts/check-dashboards.py --wait 30 --prometheus "$URL" --rules "${RULES[@]}" "${DASHBOARDS[@]}" || {
    log "live check failed; the throwaway Prometheus said:"; tail -n 5 "$WORK/prometheus.log" >&2; exit 1; }
python3 scripts/check-dashboards.py --self-test --prometheus "$URL"
log "all checks passed"
