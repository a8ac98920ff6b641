#!/usr/bin/env bash
# Starts a local cluster of N invigil nodes (default 3) on the local
# Postgres and Redis (scripts/ensure-services.sh makes them available).
#   node i: HTTP 127.0.0.1:808i, gossip (UDP) 127.0.0.1:790i,
#           transport (TCP) 127.0.0.1:710i, admin key `local-admin-key`
# Configs: cluster-config/local/node-i.toml (written when missing).
# Pids: .cluster/node-i.pid, logs: .cluster/node-i.log.
# Waits until every node is ready and all agree on members and owners.
#   scripts/cluster-up.sh [N]      start (or add nodes up to N)
#   scripts/cluster-down.sh        stop them all
# Environment: INVIGIL_LOCAL_PG_URL (default postgres://postgres:postgres@127.0.0.1:5432/invigil_local),
#              INVIGIL_BIN (default target/release/invigil, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-3}"
if ! [[ "$N" =~ ^[1-9]$ ]]; then
    echo "usage: scripts/cluster-up.sh [N], 1 <= N <= 9" >&2
    exit 2
fi
PG_URL="${INVIGIL_LOCAL_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/invigil_local}"
BIN="${INVIGIL_BIN:-target/release/invigil}"
KEY="local-admin-key"

log() { echo "cluster-up: $*" >&2; }

INVIGIL_TEST_PG_URL="$PG_URL" scripts/ensure-services.sh >/dev/null

if [ ! -x "$BIN" ]; then
    log "building $BIN"
    cargo build --release -p invigil-node --bin invigil
fi

mkdir -p .cluster cluster-config/local
seeds=""
for i in $(seq 1 "$N"); do
    seeds="${seeds:+$seeds, }\"127.0.0.1:790$i\""
done

for i in $(seq 1 "$N"); do
    config="cluster-config/local/node-$i.toml"
    if [ ! -f "$config" ]; then
        cat >"$config" <<TOML
# Node $i of the local cluster (scripts/cluster-up.sh). Local use only:
# the secrets below are not secret.
[node]
id = "node-$i"
listen = "127.0.0.1:808$i"
shutdown_grace_s = 10

[store]
url = "$PG_URL"
max_connections = 8
migrate_on_start = true

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "invigil-local:"

[auth]
api_keys = ["$KEY"]
jwt_secret = "local-jwt-secret-change-me-0123456789abcdef"
access_code_secret = "local-access-code-secret-change-me-012345"
argon2_memory_kib = 8192
argon2_iterations = 1

# Failover is bounded by the lease: a dead node's shards are free at most
# lease_ttl_ms after its last renewal.
[shards]
lease_ttl_ms = 4000

[cluster]
enabled = true
cluster_id = "invigil-local"
gossip_listen = "127.0.0.1:790$i"
actor_listen = "127.0.0.1:710$i"
seeds = [$seeds]
cookie = "local-cluster-cookie-0123456789"

[telemetry]
log_format = "json"
TOML
    fi
done

for i in $(seq 1 "$N"); do
    pidfile=".cluster/node-$i.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "node-$i already running (pid $(cat "$pidfile"))"
        continue
    fi
    INVIGIL_STORE__URL="$PG_URL" "$BIN" serve --config "cluster-config/local/node-$i.toml" >>".cluster/node-$i.log" 2>&1 &
    echo $! >"$pidfile"
    log "node-$i started (pid $!), http://127.0.0.1:808$i"
done

# Ready and in agreement: every node lists the N members as ready and
# computes the same owner for every shard.
deadline=$((SECONDS + 60))
while :; do
    agreed=1
    first=""
    for i in $(seq 1 "$N"); do
        view=$(curl -fsS -H "X-Api-Key: $KEY" "http://127.0.0.1:808$i/api/v1/cluster" 2>/dev/null) || { agreed=0; break; }
        summary=$(printf '%s' "$view" | python3 -c '
import hashlib, json, sys
v = json.load(sys.stdin)
ready = sorted(m["node_id"] for m in v["members"] if m["status"] == "ready")
owners = [s["owner"] for s in v["shards"]]
held = all(s["held_by"] == s["owner"] for s in v["shards"])
print(len(ready), hashlib.sha256(json.dumps([ready, owners]).encode()).hexdigest(), held)') || { agreed=0; break; }
        read -r count digest held <<<"$summary"
        if [ "$count" != "$N" ] || [ "$held" != "True" ]; then agreed=0; break; fi
        if [ -z "$first" ]; then first=$digest; elif [ "$first" != "$digest" ]; then agreed=0; break; fi
    done
    if [ "$agreed" = 1 ]; then break; fi
    if [ $SECONDS -ge $deadline ]; then
        log "the nodes did not agree within 60 s; see .cluster/node-*.log"
        exit 1
    fi
    sleep 0.5
done
log "$N nodes ready and in agreement: curl -H 'X-Api-Key: $KEY' http://127.0.0.1:8081/api/v1/cluster"
