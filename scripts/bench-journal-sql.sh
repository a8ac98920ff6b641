#!/usr/bin/env bash
# The journal's hot path on Postgres, the database alone: one batch of 30
# answers written as the five round trips of a transaction (BEGIN, fence read
# FOR SHARE, append, upsert, COMMIT) against the one statement the node sends
# for a batch of nothing but answers (COMMIT_ANSWERS in
# store/src/sql/journal.rs), and that statement against a journal that still
# has its foreign key to candidates (dropped by the migration
# journal_without_candidate_fk). pgbench, 2 clients, the three alternating,
# TRIALS runs of SECONDS each. The tables mirror the migrations'
# answer_journal, answers and shard_lease. Prints the numbers and updates its
# section of docs/benchmarks.md.
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
CREATE TABLE candidates (plan_id TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (plan_id, id));
INSERT INTO candidates SELECT 'open', 'c' || g FROM generate_series(1, 2000) g;
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
\set block random(0, 66)'
cat > "$WORK/five.sql" <<SQL
$HEAD
BEGIN;
SELECT shard, epoch FROM shard_lease WHERE shard IN (0,1,2,3,4,5,6,7,8,9,10,11,12,13,14) FOR SHARE;
INSERT INTO answer_journal $ROWS ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq;
INSERT INTO answers SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM ($ROWS) r ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms WHERE answers.version < excluded.version;
COMMIT;
SQL
cat > "$WORK/one.sql" <<SQL
$HEAD
WITH fence AS MATERIALIZED (SELECT shard, epoch FROM shard_lease WHERE shard = ANY('{0,1,2,3,4,5,6,7,8,9,10,11,12,13,14}'::bigint[]) FOR SHARE), incoming AS ($ROWS), appended AS (INSERT INTO answer_journal SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq, question_id, value, version, at_ms), latest AS (SELECT DISTINCT ON (plan_id, candidate_id, question_id) * FROM appended ORDER BY plan_id, candidate_id, question_id, version DESC), current AS (INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM latest ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms WHERE answers.version < excluded.version) SELECT NULL::text, NULL::text, shard, epoch FROM fence UNION ALL SELECT plan_id, candidate_id, cseq, NULL::bigint FROM appended;
SQL
sed 's/INSERT INTO answer_journal /INSERT INTO answer_journal_fk /' "$WORK/one.sql" > "$WORK/fk.sql"
grep -q answer_journal_fk "$WORK/fk.sql"

declare -A M T   # M: metric → values, one per trial; T: this trial's batches/s per variant
add() { M[$1]="${M[$1]:-} $2"; }
med() { echo "${M[$1]}" | tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for trial in $(seq 1 "$TRIALS"); do
    for variant in five one fk; do
        # Every run starts from empty tables and a fresh checkpoint, so a
        # later run is not slowed by the rows of the runs before it.
        psql "$PG_SERVER/$DB" -qc "TRUNCATE answer_journal, answer_journal_fk, answers" -qc CHECKPOINT >/dev/null
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
done
RATIO=$(med one_five); FK_RATIO=$(med one_fk)
echo "one statement ÷ five round trips: ${RATIO}× batches/s"
echo "journal without ÷ with its foreign key: ${FK_RATIO}× batches/s"

SECTION="$WORK/section.md"
cat > "$SECTION" <<MD
## Journal hot path on Postgres, the database alone ($(date -u +%Y-%m-%d), $(nproc) cores)

Reproduce: \`scripts/bench-journal-sql.sh\` (pgbench, 2 clients, ${SECONDS_RUN} s per
run, the three variants alternating, each run on emptied tables after a
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

The node sends the one statement for every batch of nothing but answers; a
batch carrying other entries (a transition, an incident, a proctor's log)
keeps the transaction. A foreign key costs Postgres a \`FOR KEY SHARE\` lock
on the candidate's row per inserted journal row (a heap and WAL write each),
which is why the journal no longer has one.
MD
scripts/splice-bench.sh journal-sql "$SECTION"
