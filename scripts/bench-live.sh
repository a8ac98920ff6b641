#!/usr/bin/env bash
# Live-exam benchmarks on Postgres, each against a baseline measured in the
# same run, on real node processes (release build) driven by invigil-load over
# loopback WebSockets:
#   1. durable answer acks at a fixed offered rate (open loop) with proctor
#      commands alongside: ack and command→candidate latency;
#   2. the same offered load through the naive writer (one transaction per
#      answer, `journal.mode = "per_entry"`);
#   3. the ceiling of each writer (closed loop: every candidate keeps one
#      answer in flight) and their ratio;
#   4. thousands of idle candidate sockets with heartbeats: node memory per
#      connection.
# Every measurement starts a fresh node on a fresh database. Prints the
# numbers and updates its section of docs/benchmarks.md ("live", or
# "live-redis" with --redis).
#
# Usage: scripts/bench-live.sh [--quick] [--redis] [--rate N] [--acks-only]
#   --quick: one short trial each
#   --rate N: offer N answers/s instead of 20,000
#   --acks-only: only the open-loop ack run (no baseline, ceiling or socket
#            runs); prints the medians and leaves docs/benchmarks.md alone
#   --redis: the hot state (resume buffers, sessions) and the work queue on
#            Redis (INVIGIL_BENCH_REDIS, default redis://127.0.0.1:6379), as
#            in a cluster; each node gets a key prefix of its own, deleted after
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0

TRIALS=3; SECONDS_RUN=20; WARMUP=5; CANDIDATES=2000; RATE=20000; SOCKETS=5000; HOLD=30
REDIS_URL=""; ACKS_ONLY=""; RATE_ARG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) TRIALS=1; SECONDS_RUN=8; WARMUP=3; RATE=10000; SOCKETS=2000; HOLD=12 ;;
        --redis) REDIS_URL="${INVIGIL_BENCH_REDIS:-redis://127.0.0.1:6379}" ;;
        --acks-only) ACKS_ONLY=1 ;;
        --rate) RATE_ARG="${2:?--rate needs answers per second}"; shift ;;
        *) echo "unknown argument: $1 (usage: $0 [--quick] [--redis] [--rate N] [--acks-only])" >&2; exit 2 ;;
    esac
    shift
done
[ -z "$RATE_ARG" ] || RATE=$RATE_ARG
PER_ROOM=30
ROOMS=$(( (CANDIDATES + PER_ROOM - 1) / PER_ROOM ))
COMMAND_RATE=200
PORT=18210
BASE="http://127.0.0.1:$PORT"
KEY="bench-admin-key-0123456789"
PG_SERVER="${INVIGIL_BENCH_PG:-postgres://postgres:postgres@127.0.0.1:5432}"
DB=invigil_bench_live
WORK=$(mktemp -d /tmp/invigil-bench-live.XXXXXX)
NODE_PID=""
REDIS_PREFIX=""

stop_node() {
    [ -n "$NODE_PID" ] || return 0
    kill "$NODE_PID" 2>/dev/null || true
    # A node with a deep backlog (the naive writer) may take long to drain.
    for _ in $(seq 1 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
    drop_redis_keys
}
# Deletes the keys of the last node's prefix (its buffers, sessions, queue).
drop_redis_keys() {
    [ -n "$REDIS_PREFIX" ] || return 0
    redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null
    REDIS_PREFIX=""
}
cleanup() { stop_node; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/ensure-services.sh
cargo build --release -q -p invigil-node -p invigil-chaos
NODE=target/release/invigil
LOAD=target/release/invigil-load

# The disk probe writes next to Postgres's data when it may (the same disk as
# the WAL), else in the scratch directory.
PROBE_DIR="$WORK"
pg_data=$(psql "$PG_SERVER/postgres" -Atc "SHOW data_directory" 2>/dev/null || true)
if [ -n "$pg_data" ] && [ -w "$(dirname "$pg_data")" ]; then PROBE_DIR=$(dirname "$pg_data"); fi

fresh_pg() {
    psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -qc "CREATE DATABASE $DB" >/dev/null 2>&1
    echo "$PG_SERVER/$DB"
}

# start_node [ENV=VALUE ...]: a fresh node on a fresh database.
start_node() {
    local url redis=()
    url=$(fresh_pg)
    if [ -n "$REDIS_URL" ]; then
        REDIS_PREFIX="invigil-bench-live-$$-$RANDOM:"
        redis=(INVIGIL_REDIS__URL="$REDIS_URL" INVIGIL_REDIS__KEY_PREFIX="$REDIS_PREFIX")
    fi
    env "${redis[@]}" INVIGIL_NODE__ID=bench INVIGIL_NODE__LISTEN="127.0.0.1:$PORT" INVIGIL_STORE__URL="$url" \
        INVIGIL_AUTH__API_KEYS="[\"$KEY\"]" \
        INVIGIL_AUTH__JWT_SECRET=bench-jwt-secret-0123456789-0123456789 \
        INVIGIL_AUTH__ACCESS_CODE_SECRET=bench-code-secret-0123456789-01234567 \
        INVIGIL_TELEMETRY__LOG_FILTER=warn "$@" \
        $NODE serve >"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "$BASE/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "node did not become ready:"; cat "$WORK/node.log"; exit 1
}

# exam NAME CANDIDATES [invigil-load exam args...]: set up a plan and drive it.
exam() {
    local name=$1 candidates=$2; shift 2
    $LOAD setup --url "$BASE" --api-key "$KEY" --plan-id "$name" \
        --candidates "$candidates" --per-room $PER_ROOM >/dev/null
    $LOAD exam --url "$BASE" --plan-id "$name" --candidates "$candidates" --per-room $PER_ROOM \
        --no-progress --watch-pid "$NODE_PID" --api-key "$KEY" "$@" | tee -a /dev/stderr
}

# Fields of invigil-load's report.
num() { echo "$1" | grep -oE "(^| )$2=[0-9.]+" | head -1 | cut -d= -f2; }
ack() { echo "$1" | grep '^ack_latency' | sed -E "s/.* $2 ([0-9.]+) ms.*/\1/"; }
ctl() { echo "$1" | grep 'control_latency' | sed -E 's/.*control_latency://' | sed -E "s/.* $2 ([0-9.]+) ms.*/\1/"; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

declare -A M   # metric → values, one per trial
add() { M[$1]="${M[$1]:-} $2"; }
med() { echo "${M[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }

for trial in $(seq 1 "$TRIALS"); do
    echo "== trial $trial of $TRIALS"

    echo "-- invigil, $RATE answers/s offered, $CANDIDATES candidates, $ROOMS proctors sending $COMMAND_RATE commands/s"
    start_node
    # The disk's own flush latency over the same seconds: the floor under every ack.
    $LOAD disk-probe --dir "$PROBE_DIR" --seconds $((WARMUP + SECONDS_RUN)) --interval-ms 10 >"$WORK/disk.txt" &
    probe=$!
    out=$(exam open $CANDIDATES --answer-rate $RATE --seconds $SECONDS_RUN --warmup-s $WARMUP \
        --proctors $ROOMS --command-rate $COMMAND_RATE)
    stop_node
    wait "$probe" || true
    disk=$(cat "$WORK/disk.txt"); echo "$disk"
    add disk.p99 "$(ack "$(echo "$disk" | sed 's/^disk_flush_latency/ack_latency/')" p99)"
    add disk.max "$(echo "$disk" | grep '^disk_flush_latency' | sed -E 's/.* max ([0-9.]+) ms.*/\1/')"
    add disk.over50 "$(num "$disk" flushes_over_50ms)"
    add group.acks_s "$(num "$out" acks_per_s)"; add group.p50 "$(ack "$out" p50)"
    add group.p99 "$(ack "$out" p99)"; add group.p999 "$(ack "$out" p999)"
    add group.errors "$(num "$out" errors)"; add group.disconnects "$(num "$out" disconnects)"
    add ctl.p50 "$(ctl "$out" p50)"; add ctl.p99 "$(ctl "$out" p99)"; add ctl.p999 "$(ctl "$out" p999)"
    add ctl.sent "$(num "$out" commands_sent)"; add ctl.received "$(num "$out" controls_received)"
    add group.rss_per "$(num "$out" rss_per_connection_bytes)"
    add group.cpu_busy "$(num "$out" machine_cpu_busy_pct)"

    [ -z "$ACKS_ONLY" ] || continue

    echo "-- naive writer, the same offered load"
    start_node INVIGIL_JOURNAL__MODE=per_entry
    out=$(exam open $CANDIDATES --answer-rate $RATE --seconds $SECONDS_RUN --warmup-s 0)
    stop_node
    sent=$(num "$out" answers_sent); acked=$(num "$out" acks)
    add naive.sent "$sent"; add naive.acked "$acked"
    add naive.acks_s "$(awk -v a="$acked" -v s="$SECONDS_RUN" 'BEGIN { printf "%.0f", a / s }')"
    add naive.p50 "$(ack "$out" p50)"; add naive.p99 "$(ack "$out" p99)"

    for mode in group per_entry; do
        echo "-- ceiling, $mode writer (closed loop, one answer in flight per candidate)"
        start_node INVIGIL_JOURNAL__MODE=$mode
        out=$(exam ceiling $CANDIDATES --window 1 --seconds $SECONDS_RUN --warmup-s $WARMUP)
        stop_node
        add "ceiling.$mode" "$(num "$out" acks_per_s)"; add "ceiling.$mode.p99" "$(ack "$out" p99)"
        if [ "$mode" = group ]; then
            add ceiling.share "$(awk -v r=$RATE -v c="$(num "$out" acks_per_s)" 'BEGIN { if (c > 0) printf "%.0f", 100 * r / c }')"
        fi
    done

    echo "-- $SOCKETS idle candidate sockets, 10 s heartbeats, held ${HOLD} s"
    start_node
    out=$(exam sockets $SOCKETS --answer-rate 0 --heartbeat-s 10 --seconds $HOLD --connect-concurrency 256)
    stop_node
    add sockets.connected "$(num "$out" connected)"; add sockets.online "$(num "$out" online_at_end)"
    add sockets.disconnects "$(num "$out" disconnects)"; add sockets.before "$(num "$out" node_rss_before_kib)"
    add sockets.held "$(num "$out" node_rss_held_kib)"; add sockets.per "$(num "$out" rss_per_connection_bytes)"
done

echo
echo "== medians of $TRIALS trial(s)"
for key in $(echo "${!M[@]}" | tr ' ' '\n' | sort); do
    printf '%-22s %-10s (%s )\n' "$key" "$(med "$key")" "${M[$key]}"
done

if [ -n "$ACKS_ONLY" ]; then
    echo "(--acks-only: docs/benchmarks.md not updated)"
    exit 0
fi

per_kib=$(awk -v b="$(med sockets.per)" 'BEGIN { printf "%.1f", b / 1024 }')
# The issue's targets, judged on this run's medians.
verdict() { awk -v v="$1" -v t="$2" -v op="$3" 'BEGIN { ok = (op == "le") ? (v <= t) : (v >= t); print ok ? "met" : "**not met**" }'; }
TRIAL_P99="$(echo "${M[group.p99]}" | xargs)"
TRIAL_DISK_MAX="$(echo "${M[disk.max]}" | xargs)"
TRIAL_DISK_OVER="$(echo "${M[disk.over50]}" | xargs)"
TRIAL_SHARE="$(echo "${M[ceiling.share]}" | xargs)"
TRIAL_BUSY="$(echo "${M[group.cpu_busy]}" | xargs)"
T_ACKS=$(verdict "$(med group.acks_s)" 20000 ge)
T_P99=$(verdict "$(med group.p99)" 50 le)
T_CTL=$(verdict "$(med ctl.p99)" 50 le)
T_RSS=$(verdict "$(med sockets.per)" 20480 le)
T_RATIO=$(verdict "$(ratio "$(med ceiling.group)" "$(med ceiling.per_entry)")" 5 ge)
SECTION="$WORK/section.md"
if [ -n "$REDIS_URL" ]; then
    SECTION_NAME=live-redis; STORES="Postgres and Redis"
    HOT_NOTE="The hot state (resume buffers, session claims) and the work queue are on
Redis (\`--redis\`), as in a cluster: every frame to a candidate is also
appended to its resume buffer there."
else
    SECTION_NAME=live; STORES="Postgres"
    HOT_NOTE="The hot state and the work queue are in process (embedded mode);
\`scripts/bench-live.sh --redis\` puts them on Redis."
fi
cat > "$SECTION" <<MD
## Live exam on one node, $STORES ($(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))

Reproduce: \`scripts/bench-live.sh${REDIS_URL:+ --redis}\` (release build; the node, \`invigil-load\`
and Postgres share this machine, so the load generator's own CPU is in every
number). Each row is the median of $TRIALS trial(s); every trial starts a fresh
node on a fresh database. $CANDIDATES candidates in $ROOMS rooms of $PER_ROOM,
answers over WebSockets, acks timed by the client from send to \`ack\`; the
first ${WARMUP} s of each timed run are warm-up, acked but not measured.
Default configuration (\`journal.lanes = 2\`, \`journal.linger_ms = 1\`).
$HOT_NOTE

Targets (issue 3), judged on this run's medians: ≥ 20,000 durable acks/s —
$T_ACKS; ack p99 ≤ 50 ms — $T_P99 (per trial: $TRIAL_P99 ms); proctor
command → candidate p99 ≤ 50 ms — $T_CTL; ≤ 20 KB per idle connection —
$T_RSS; group commit ≥ 5× the naive writer — $T_RATIO.

The floor under every ack is the disk: an answer is acked after Postgres has
flushed its WAL. \`invigil-load disk-probe\` timed an 8 KiB write + \`fdatasync\`
every 10 ms next to Postgres's data during each timed run: slowest flush per
trial $TRIAL_DISK_MAX ms, flushes over 50 ms per trial $TRIAL_DISK_OVER (flush
p99, median of trials: $(med disk.p99) ms). One stall of a few hundred
milliseconds holds every commit behind it, and at 20,000 answers/s that
alone is more than 1% of the acks: on a run where the disk stalls, no
fsync-before-ack design meets a 50 ms p99 on this machine.

The other floor is the CPU: the node, \`invigil-load\` and Postgres share
$(nproc) cores. During the timed runs the machine's CPUs were busy
$TRIAL_BUSY % (per trial), and the offered $RATE answers/s was
$TRIAL_SHARE % of the ceiling the group writer reached in the same trial
(per trial). Near a server's ceiling, waiting in queues (for a core, for the
commit in flight) sets the tail. The ratios below are stable across runs;
the tails are not.

### Durable answer acks: group commit against one transaction per answer

| | invigil (group commit) | naive writer (\`journal.mode = "per_entry"\`) |
|---|---:|---:|
| offered load (open loop) | $RATE answers/s | $RATE answers/s |
| acks delivered per second | $(med group.acks_s) | $(med naive.acks_s) ($(med naive.acked) of $(med naive.sent) sent were acked by the end) |
| ack latency p50 / p99 / p999 | $(med group.p50) / $(med group.p99) / $(med group.p999) ms | $(med naive.p50) / $(med naive.p99) ms (acked ones only; its backlog grows without bound) |
| errors / disconnects | $(med group.errors) / $(med group.disconnects) | |
| ceiling (closed loop, $CANDIDATES answers in flight), acks/s | $(med ceiling.group) (p99 $(med ceiling.group.p99) ms) | $(med ceiling.per_entry) (p99 $(med ceiling.per_entry.p99) ms) |
| **group commit ÷ naive** | **$(ratio "$(med ceiling.group)" "$(med ceiling.per_entry)")×** at the ceiling; **$(ratio "$(med group.acks_s)" "$(med naive.acks_s)")×** delivered at the offered load | |

Every ack follows the commit of its answer (\`ack\` is never sent before the
database said yes). The naive writer runs up to 64 transactions at once, so
the baseline is not starved of concurrency; it loses because every answer pays
a transaction and a WAL flush.

### Proctor command → candidate

$ROOMS proctors send \`warn\` commands to their rooms' candidates at $COMMAND_RATE
commands/s in total, during the answer load above; timed from the proctor's
\`command\` frame to the candidate's \`control\` frame (one client process, one
clock). Each command is journaled before it is delivered.

| commands sent | delivered | p50 | p99 | p999 |
|---:|---:|---:|---:|---:|
| $(med ctl.sent) | $(med ctl.received) | $(med ctl.p50) ms | $(med ctl.p99) ms | $(med ctl.p999) ms |

### Concurrent candidate sockets

$SOCKETS candidates log in, then connect and hold their sockets for ${HOLD} s with
10 s heartbeats. Memory per connection is the node's VmRSS while the sockets are
held (the highest of samples every 0.5 s, from 2 s after the last connect)
minus its resting VmRSS after the logins and before the first socket (the
lowest of samples over 2 s), divided by the sockets.

| sockets held | node counts online | disconnects | node RSS before → held | **per connection** |
|---:|---:|---:|---:|---:|
| $(med sockets.connected) | $(med sockets.online) | $(med sockets.disconnects) | $(med sockets.before) → $(med sockets.held) KiB | **$per_kib KiB** |

The per-connection cost is the socket task, its small read buffer (4 KiB), the
outbound queue and the presence entry. A candidate who is answering also
holds up to \`live.resume_buffer\` (256) numbered frames for resume in the
in-memory hot state: in the answer run above the node held
$(awk -v b="$(med group.rss_per)" 'BEGIN { printf "%.1f", b / 1024 }') KiB per connected candidate, buffers full. With Redis as hot state
those buffers leave the node.
MD
scripts/splice-bench.sh "$SECTION_NAME" "$SECTION"
