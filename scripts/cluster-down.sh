#!/usr/bin/env bash
# Stops the local cluster started by scripts/cluster-up.sh: SIGTERM (each
# node drains: hands its shards off, tells its sockets to reconnect), then
# SIGKILL for a node still running after 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
pids=()
for pidfile in .cluster/node-*.pid; do
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" && pids+=("$pid")
    fi
    rm -f "$pidfile"
done
for _ in $(seq 1 60); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
done
for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
        echo "cluster-down: pid $pid did not stop in 30 s; killing" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
echo "cluster-down: stopped ${#pids[@]} node(s)" >&2
