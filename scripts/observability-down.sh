#!/usr/bin/env bash
# Stops the Prometheus and Grafana that scripts/observability-up.sh started
# (by their pid files in .cluster/; SIGTERM, then SIGKILL after 15 s). The
# data in .cluster/prometheus and .cluster/grafana stays; the cluster keeps
# running (scripts/cluster-down.sh stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

stop() {
    local name=$1 pidfile=".cluster/$1.pid" pid
    if [ ! -f "$pidfile" ]; then
        echo "observability-down: $name not started here" >&2
        return 0
    fi
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "observability-down: $name (pid $pid) did not stop in 15 s; killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "observability-down: $name stopped (pid $pid)" >&2
    else
        echo "observability-down: $name was not running" >&2
    fi
    rm -f "$pidfile"
}

stop grafana
stop prometheus
