#!/usr/bin/env bash
# The journal's hot path on Postgres, the database alone: one batch of 30
# answers written as the five round trips of a transaction (BEGIN, fence read
# FOR SHARE, append, upsert, COMMIT) against the one statement the node sends
# for a batch of nothing but answers (COMMIT_ANSWERS in
# store/src/sql/journal.rs), and that statement against a journal that still
# has its foreign key to candidates (dropped by the migration
# journal_without_candidate_fk). Then a batch that also carries a proctor's
# `warn` (a candidate compare-and-set, a transition row, a log line): the
# transaction of a statement per table (eight round trips) against the one
# statement the node sends for it (COMMIT_BATCH). pgbench, 2 clients, the
# five alternating, TRIALS runs of SECONDS each. The tables mirror the
# migrations'. Prints the numbers and updates its section of
# docs/benchmarks.md.
#
# Usage: scripts/bench-journal-sql.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS=${TRIALS:-5}; SECONDS_RUN=10
if [ "${1:-}" = "--quick" ]; then TRIALS=1; SECONDS_RUN=3; fi
PG_SERVER="${INVIGIL_BENCH_PG:-postgres://postgres:postgres@127.0.0.1:5432}"
DB=invigil_bench_journal_sql
WORK=$(mktemp -d /tmp/invigil-bench-journal-sql.XXXXXX)
cleanup() { psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT

scripts/ensure-services.sh
command -v pgbench >/dev/null || { echo "pgbench is not installed (Debian: postgresql-client)"; exit 1; }
psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -qc "CREATE DATABASE $DB" >/dev/null
psql "$PG_SERVER/$DB" -q <<'SQL'
CREATE TABLE candidates (plan_id TEXT NOT NULL, id TEXT NOT NULL, room_id TEXT NOT NULL,
    state TEXT NOT NULL, runtime TEXT NOT NULL, revision BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (plan_id, id));
CREATE INDEX candidates_by_room_state ON candidates (plan_id, room_id, state);
INSERT INTO candidates SELECT 'open', 'c' || g, 'room-' || (g / 30), 'testing', '{"warnings":0}'
    FROM generate_series(1, 2000) g;
CREATE TABLE transitions (id BIGSERIAL PRIMARY KEY, plan_id TEXT NOT NULL, entity TEXT NOT NULL,
    entity_id TEXT NOT NULL, event TEXT NOT NULL, to_state TEXT NOT NULL, detail TEXT NOT NULL,
    shard BIGINT NOT NULL, epoch BIGINT NOT NULL, at_ms BIGINT NOT NULL);
CREATE INDEX transitions_by_entity ON transitions (plan_id, entity, entity_id, id);
CREATE TABLE logs (id BIGSERIAL PRIMARY KEY, plan_id TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT,
    room_id TEXT, message TEXT NOT NULL, detail TEXT NOT NULL, at_ms BIGINT NOT NULL, entry_id TEXT);
CREATE INDEX logs_by_plan_kind ON logs (plan_id, kind, id);
CREATE UNIQUE INDEX logs_entry_id ON logs (entry_id);
CREATE TABLE shard_lease (shard BIGINT PRIMARY KEY, owner TEXT NOT NULL DEFAULT '',
    epoch BIGINT NOT NULL DEFAULT 1, expires_at_ms BIGINT NOT NULL DEFAULT 0);
INSERT INTO shard_lease (shard) SELECT generate_series(0, 1023);
CREATE TABLE answer_journal (plan_id TEXT NOT NULL, candidate_id TEXT NOT NULL, cseq BIGINT NOT NULL,
    question_id TEXT NOT NULL, value TEXT NOT NULL, version BIGINT NOT NULL, shard BIGINT NOT NULL,
    epoch BIGINT NOT NULL, at_ms BIGINT NOT NULL, PRIMARY KEY (plan_id, candidate_id, cseq));
-- The journal as it was before the migration journal_without_candidate_fk.
CREATE TABLE answer_journal_fk (LIKE answer_journal INCLUDING ALL,
    FOREIGN KEY (plan_id, candidate_id) REFERENCES candidates (plan_id, id) ON DELETE CASCADE);
CREATE TABLE answers (plan_id TEXT NOT NULL, candidate_id TEXT NOT NULL, question_id TEXT NOT NULL,
    value TEXT NOT NULL, version BIGINT NOT NULL, cseq BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (plan_id, candidate_id, question_id),
    FOREIGN KEY (plan_id, candidate_id) REFERENCES candidates (plan_id, id) ON DELETE CASCADE);
SQL

# A batch: 30 answers of 30 candidates (a random block), 15 shards; the cseq
# is fresh (a random 40-bit base), the version grows with it.
ROWS="SELECT 'open'::text AS plan_id, 'c' || ((:block * 30 + g) % 2000 + 1) AS candidate_id,
      (:base::bigint * 64 + g) AS cseq, 'q' || (g % 12 + 1) AS question_id, '\"A\"'::text AS value,
      (:base::bigint * 64 + g) AS version, (g % 15)::bigint AS shard, 1::bigint AS epoch, 0::bigint AS at_ms
      FROM generate_series(1, 30) g"
HEAD='\set base random(1, 1099511627775)
\set block random(0, 66)
\set who random(1, 2000)'
cat > "$WORK/five.sql" <<SQL
$HEAD
BEGIN;
SELECT shard, epoch FROM shard_lease WHERE shard IN (0,1,2,3,4,5,6,7,8,9,10,11,12,13,14) FOR SHARE;
INSERT INTO answer_journal $ROWS ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq;
INSERT INTO answers SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM ($ROWS) r ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms WHERE answers.version < excluded.version;
COMMIT;
SQL
# The answer parts as CTEs (the node's ANSWER_PARTS), then what the statement returns.
ANSWER_CTES="WITH fence AS MATERIALIZED (SELECT shard, epoch FROM shard_lease WHERE shard = ANY('{0,1,2,3,4,5,6,7,8,9,10,11,12,13,14}'::bigint[]) FOR SHARE), incoming AS ($ROWS), appended AS (INSERT INTO answer_journal SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq, question_id, value, version, at_ms), latest AS (SELECT DISTINCT ON (plan_id, candidate_id, question_id) * FROM appended ORDER BY plan_id, candidate_id, question_id, version DESC), current AS (INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM latest ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms WHERE answers.version < excluded.version)"
cat > "$WORK/one.sql" <<SQL
$HEAD
$ANSWER_CTES SELECT NULL::text, NULL::text, shard, epoch FROM fence UNION ALL SELECT plan_id, candidate_id, cseq, NULL::bigint FROM appended;
SQL
sed 's/INSERT INTO answer_journal /INSERT INTO answer_journal_fk /' "$WORK/one.sql" > "$WORK/fk.sql"
grep -q answer_journal_fk "$WORK/fk.sql"
# The warn: a compare-and-set on the candidate's row, its transition, a log line.
WARN_UPDATE="UPDATE candidates SET state = 'testing', runtime = '{\"warnings\":1}', revision = revision + 1,
    updated_at_ms = 0 WHERE plan_id = 'open' AND id = 'c' || :who AND revision = revision RETURNING plan_id, id"
WARN_TRANSITION="INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms)"
WARN_LOG="INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms)"
{
    grep -v '^COMMIT;' "$WORK/five.sql"
    echo "$WARN_UPDATE;"
    echo "$WARN_TRANSITION VALUES ('open', 'candidate', 'c' || :who, 'warned', 'testing', '{}', 1, 1, 0);"
    echo "$WARN_LOG VALUES ('open', 'proctor', 'c' || :who, 'room-1', 'warn', '{}', 0);"
    echo "COMMIT;"
} > "$WORK/mixed_tx.sql"
cat > "$WORK/mixed_one.sql" <<SQL
$HEAD
$ANSWER_CTES, moved AS ($WARN_UPDATE), recorded AS ($WARN_TRANSITION SELECT plan_id, 'candidate', id, 'warned', 'testing', '{}', 1, 1, 0 FROM moved), logged AS ($WARN_LOG SELECT 'open', 'proctor', 'c' || :who, 'room-1', 'warn', '{}', 0 FROM fence LIMIT 1) SELECT NULL::text, NULL::text, shard, epoch FROM fence UNION ALL SELECT plan_id, candidate_id, cseq, NULL::bigint FROM appended UNION ALL SELECT plan_id, id, NULL, NULL FROM moved;
SQL
grep -q 'FROM moved' "$WORK/mixed_one.sql"

declare -A M T   # M: metric → values, one per trial; T: this trial's batches/s per variant
add() { M[$1]="${M[$1]:-} $2"; }
med() { echo "${M[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for trial in $(seq 1 "$TRIALS"); do
    for variant in five one fk mixed_tx mixed_one; do
        # Every run starts from empty tables and a fresh checkpoint, so a
        # later run is not slowed by the rows of the runs before it.
        psql "$PG_SERVER/$DB" -qc "TRUNCATE answer_journal, answer_journal_fk, answers, transitions, logs" -qc CHECKPOINT >/dev/null
        out=$(pgbench -n -M prepared -c 2 -j 1 -T "$SECONDS_RUN" -f "$WORK/$variant.sql" "$PG_SERVER/$DB" 2>&1) \
            || { echo "$out"; exit 1; }
        tps=$(echo "$out" | sed -nE 's/^tps = ([0-9.]+).*/\1/p' | cut -d. -f1)
        lat=$(echo "$out" | sed -nE 's/^latency average = ([0-9.]+) ms/\1/p')
        echo "trial $trial, $variant: $tps batches/s, $lat ms per batch"
        add "$variant.tps" "$tps"; add "$variant.lat" "$lat"
        T[$variant]=$tps
    done
    # Ratios within a trial: the machine's speed drifts between trials.
    add one_five "$(awk -v a="${T[one]}" -v b="${T[five]}" 'BEGIN { printf "%.2f", a / b }')"
    add one_fk "$(awk -v a="${T[one]}" -v b="${T[fk]}" 'BEGIN { printf "%.2f", a / b }')"
    add mixed "$(awk -v a="${T[mixed_one]}" -v b="${T[mixed_tx]}" 'BEGIN { printf "%.2f", a / b }')"
done
RATIO=$(med one_five); FK_RATIO=$(med one_fk); MIXED_RATIO=$(med mixed)
echo "one statement ÷ five round trips: ${RATIO}× batches/s"
echo "journal without ÷ with its foreign key: ${FK_RATIO}× batches/s"
echo "answers + a warn, one statement ÷ eight round trips: ${MIXED_RATIO}× batches/s"

SECTION="$WORK/section.md"
cat > "$SECTION" <<MD
## Journal hot path on Postgres, the database alone ($(date -u +%Y-%m-%d), $(nproc) cores)

Reproduce: \`scripts/bench-journal-sql.sh\` (pgbench, 2 clients, ${SECONDS_RUN} s per
run, the five variants alternating, each run on emptied tables after a
checkpoint; medians of $TRIALS run(s) each, ratios are the median of the
per-trial ratios). A batch is
30 answers of 30 candidates over 15 shards, fresh cseqs; tables as in the
migrations.

| batch written as | batches/s | ms per batch | per trial (batches/s) |
|---|---:|---:|---|
| BEGIN; fence \`FOR SHARE\`; append; upsert; COMMIT (five round trips) | $(med five.tps) | $(med five.lat) | $(echo "${M[five.tps]}" | xargs) |
| one statement (\`COMMIT_ANSWERS\`: the same steps as CTEs) | $(med one.tps) | $(med one.lat) | $(echo "${M[one.tps]}" | xargs) |
| one statement, journal with its foreign key to candidates (before the migration \`journal_without_candidate_fk\`) | $(med fk.tps) | $(med fk.lat) | $(echo "${M[fk.tps]}" | xargs) |
| **one ÷ five** | **${RATIO}×** | | $(echo "${M[one_five]}" | xargs) |
| **journal without ÷ with its foreign key** | **${FK_RATIO}×** | | $(echo "${M[one_fk]}" | xargs) |
| the 30 answers and a proctor's \`warn\` (candidate compare-and-set, transition, log line): BEGIN; fences; append; upsert; UPDATE; INSERT; INSERT; COMMIT (eight round trips) | $(med mixed_tx.tps) | $(med mixed_tx.lat) | $(echo "${M[mixed_tx.tps]}" | xargs) |
| the same as one statement (\`COMMIT_BATCH\`) | $(med mixed_one.tps) | $(med mixed_one.lat) | $(echo "${M[mixed_one.tps]}" | xargs) |
| **answers and a warn: one ÷ eight** | **${MIXED_RATIO}×** | | $(echo "${M[mixed]}" | xargs) |

The node sends every batch as one statement: \`COMMIT_ANSWERS\` for a batch
of nothing but answers, \`COMMIT_BATCH\` (the same parts plus transitions,
incidents and logs) for any other; SQLite, in process, keeps the
transaction. The warn's compare-and-set here compares a column of the row
with itself, so every run moves the row, as a warn on a current revision
does. A foreign key costs Postgres a \`FOR KEY SHARE\` lock
on the candidate's row per inserted journal row (a heap and WAL write each),
which is why the journal no longer has one.
MD
scripts/splice-bench.sh journal-sql "$SECTION"
