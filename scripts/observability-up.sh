#!/usr/bin/env bash
# Starts Prometheus (and Grafana, when installed) for the local cluster of
# scripts/cluster-up.sh (docs/observability.md).
#   Prometheus: grafana/prometheus/prometheus.yml (nodes 127.0.0.1:8081-8083,
#     the alert rules), listening on 127.0.0.1:$PROM_PORT (default 9090),
#     data in .cluster/prometheus, pid .cluster/prometheus.pid, log
#     .cluster/prometheus.log. Debian's prometheus package is installed when
#     the binary is missing (the service it may start is stopped again).
#   Grafana: only when grafana-server is installed, on 127.0.0.1:$GRAFANA_PORT
#     (default 3000) with grafana/provisioning (datasource + the dashboards of
#     grafana/dashboards), data in .cluster/grafana, pid .cluster/grafana.pid.
#     Otherwise the command line to use is printed.
#   When no node answers on 127.0.0.1:8081, scripts/cluster-up.sh is run
#   first (--no-cluster: do not).
#   scripts/observability-up.sh [--no-cluster]
#   scripts/observability-down.sh           stops what this started
set -euo pipefail
cd "$(dirname "$0")/.."

PROM_PORT="${PROM_PORT:-9090}"
GRAFANA_PORT="${GRAFANA_PORT:-3000}"
START_CLUSTER=1
case "${1:-}" in
    --no-cluster) START_CLUSTER=0 ;;
    "") ;;
    *) echo "usage: scripts/observability-up.sh [--no-cluster]" >&2; exit 2 ;;
esac

log() { echo "observability-up: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {
    local url=$1 name=$2 pid=$3 logfile=$4
    for _ in $(seq 1 60); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited; the end of $logfile:"; tail -n 5 "$logfile" >&2; return 1
        fi
        sleep 0.5
    done
    log "$name did not answer on $url within 30 s; see $logfile"; return 1
}


if ! curl -fsS -o /dev/null http://127.0.0.1:8081/healthz 2>/dev/null; then
    if [ "$START_CLUSTER" = 1 ]; then
        log "no node answers on 127.0.0.1:8081: starting the local cluster"
        scripts/cluster-up.sh
    else
        log "no node answers on 127.0.0.1:8081 (--no-cluster): Prometheus will show them down"
    fi
fi
shopt -s nullglob
nodes=(.cluster/node-*.pid)
if [ "${#nodes[@]}" -gt 3 ]; then
    log "${#nodes[@]} nodes run but grafana/prometheus/prometheus.yml lists 3: add 127.0.0.1:808N for the others"
fi

mkdir -p .cluster/prometheus
if running .cluster/prometheus.pid; then
    log "prometheus already running (pid $(cat .cluster/prometheus.pid))"
else
    scripts/ensure-prometheus.sh
    if port_open "$PROM_PORT"; then
        log "127.0.0.1:$PROM_PORT is taken by another process; set PROM_PORT"
        exit 1
    fi
    promtool check config grafana/prometheus/prometheus.yml >/dev/null
    prometheus \
        --config.file=grafana/prometheus/prometheus.yml \
        --storage.tsdb.path=.cluster/prometheus \
        --storage.tsdb.retention.time=15d \
        --web.listen-address="127.0.0.1:$PROM_PORT" \
        --web.enable-lifecycle \
        >>.cluster/prometheus.log 2>&1 &
    echo $! >.cluster/prometheus.pid
    wait_for "http://127.0.0.1:$PROM_PORT/-/ready" prometheus "$(cat .cluster/prometheus.pid)" .cluster/prometheus.log
    log "prometheus started (pid $(cat .cluster/prometheus.pid)): http://127.0.0.1:$PROM_PORT (targets: /targets, alerts: /alerts)"
fi

PROM_URL="http://127.0.0.1:$PROM_PORT"
GRAFANA_ENV=(
    INVIGIL_PROMETHEUS_URL="$PROM_URL"
    INVIGIL_GRAFANA_DASHBOARDS="$PWD/grafana/dashboards"
    GF_PATHS_PROVISIONING="$PWD/grafana/provisioning"
    GF_PATHS_DATA="$PWD/.cluster/grafana"
    GF_PATHS_LOGS="$PWD/.cluster/grafana/log"
    GF_SERVER_HTTP_ADDR=127.0.0.1
    GF_SERVER_HTTP_PORT="$GRAFANA_PORT"
)
GRAFANA_HOME=/usr/share/grafana
if command -v grafana-server >/dev/null 2>&1; then
    if running .cluster/grafana.pid; then
        log "grafana already running (pid $(cat .cluster/grafana.pid))"
    else
        mkdir -p .cluster/grafana/log
        env "${GRAFANA_ENV[@]}" grafana-server --homepath "$GRAFANA_HOME" >>.cluster/grafana.log 2>&1 &
        echo $! >.cluster/grafana.pid
        wait_for "http://127.0.0.1:$GRAFANA_PORT/api/health" grafana "$(cat .cluster/grafana.pid)" .cluster/grafana.log
        log "grafana started (pid $(cat .cluster/grafana.pid)): http://127.0.0.1:$GRAFANA_PORT (admin/admin), folder invigil"
    fi
else
    log "grafana-server is not installed: Prometheus only. With Grafana installed"
    log "(https://grafana.com/docs/grafana/latest/setup-grafana/installation/), run it on the provisioning dir:"
    printf '    %s \\\n' "${GRAFANA_ENV[@]}" >&2
    printf '    grafana-server --homepath %s\n' "$GRAFANA_HOME" >&2
    log "or import grafana/dashboards/*.json by hand, with a Prometheus datasource whose uid is invigil-prometheus"
fi
log "check every panel's query against it: scripts/check-dashboards.py --prometheus $PROM_URL --rules grafana/prometheus/rules/invigil-alerts.yml grafana/dashboards/*.json"
