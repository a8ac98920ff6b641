#!/usr/bin/env bash
# Makes Postgres and Redis reachable on 127.0.0.1 for the tests (and, as
# root, nftables for the partition drill).
#   already listening -> nothing to do
#   installed         -> start it
#   absent            -> apt-get install -y postgresql redis-server, then start
# Then makes sure the test role can log in over TCP and the test database
# exists. Idempotent: run it as often as you like.
#
# Environment: INVIGIL_TEST_PG_URL (default below) names the database the
# tests use; its user, password and database are created when missing.
set -euo pipefail

PG_URL="${INVIGIL_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/invigil_test}"
PG_PORT=5432
REDIS_PORT=6379

log() { echo "ensure-services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else log "need root for: $*"; return 1
    fi
}

wait_for_port() {
    local port=$1 name=$2
    for _ in $(seq 1 60); do
        port_open "$port" && return 0
        sleep 0.5
    done
    log "$name did not start listening on 127.0.0.1:$port"; return 1
}

apt_install() {
    log "installing $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

as_postgres() {
    # psql as the postgres OS user over the local socket (peer auth).
    if [ "$(id -u)" = 0 ]; then su postgres -c "$1"
    else sudo -n -u postgres sh -c "$1"
    fi
}

ensure_postgres() {
    if ! port_open "$PG_PORT"; then
        if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
            apt_install postgresql postgresql-client
        fi
        local version
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        if command -v pg_lsclusters >/dev/null 2>&1 && ! pg_lsclusters -h | grep -q .; then
            log "creating cluster $version/main"
            as_root pg_createcluster "$version" main >/dev/null
        fi
        log "starting postgres $version"
        if command -v pg_ctlcluster >/dev/null 2>&1; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        else
            as_root service postgresql start || true
        fi
        wait_for_port "$PG_PORT" postgres
    fi
    command -v psql >/dev/null 2>&1 || apt_install postgresql-client

    # Split the URL: postgres://user:password@host:port/database
    local rest user password database
    rest=${PG_URL#*://}
    user=${rest%%:*}
    password=${rest#*:}; password=${password%%@*}
    database=${rest##*/}; database=${database%%\?*}
    local server_url="postgres://$user:$password@127.0.0.1:$PG_PORT/postgres"

    if ! psql "$server_url" -tAc 'SELECT 1' >/dev/null 2>&1; then
        log "giving role $user a password for TCP logins"
        as_postgres "psql -v ON_ERROR_STOP=1 -qc \"DO \\\$\\\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN CREATE ROLE \\\"$user\\\" LOGIN SUPERUSER; END IF;
            END \\\$\\\$; ALTER ROLE \\\"$user\\\" PASSWORD '$password';\""
    fi
    if ! psql "$server_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
        log "creating database $database"
        psql "$server_url" -qc "CREATE DATABASE \"$database\"" >/dev/null
    fi
    psql "$PG_URL" -tAc 'SELECT 1' >/dev/null
    log "postgres ready ($user@127.0.0.1:$PG_PORT/$database)"
}

ensure_redis() {
    if ! port_open "$REDIS_PORT"; then
        command -v redis-server >/dev/null 2>&1 || apt_install redis-server
        log "starting redis"
        mkdir -p /tmp/invigil-redis
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
            --dir /tmp/invigil-redis --logfile /tmp/invigil-redis/redis.log
        wait_for_port "$REDIS_PORT" redis
    fi
    log "redis ready (127.0.0.1:$REDIS_PORT)"
}

ensure_postgres
ensure_redis

# nftables for the partition drill (invigil-chaos drill partition): only as
# root, and never fatal — `drill all` skips the partition, saying why, when
# nft is missing or the drill is not root.
ensure_nft() {
    command -v nft >/dev/null 2>&1 && { log "nft ready"; return 0; }
    if [ "$(id -u)" = 0 ]; then
        apt_install nftables || log "nftables could not be installed: the partition drill will be skipped"
    else
        log "not root: the partition drill will be skipped"
    fi
}

ensure_nft
