//! [`Journal`] on sqlx: one transaction per batch. The fences of every shard
//! in the batch are read with it (Postgres: `FOR SHARE`, so a lease takeover
//! waits until this batch is in; SQLite: under the write lock), entries under
//! a stale epoch are left out and reported, the rest is written with
//! multi-row statements. On Postgres the whole batch, whatever it carries, is
//! one statement and one round trip: see [`COMMIT_BATCH`]. On SQLite, in
//! process, it is a transaction of several statements.

use std::collections::HashMap;

use async_trait::async_trait;
use invigil_actors::domain::answer::text_digest;
use invigil_actors::domain::{CandidateId, PlanId};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{
    EntryOutcome, FencedEntry, Journal, JournalEntry, JournaledAnswer, QueuedLog,
};
use sqlx::{QueryBuilder, Row};

use super::rows::{candidate_runtime_json, id, to_json};
use super::{SqlStore, on_backend};
use crate::error::from_sqlx;

/// Rows per multi-row statement (answer_journal has 9 columns).
const ROWS_PER_STATEMENT: usize = 2_000;

struct AnswerRow<'a> {
    index: usize,
    plan_id: &'a str,
    candidate_id: &'a str,
    question_id: &'a str,
    value: String,
    cseq: i64,
    version: i64,
    shard: i64,
    epoch: i64,
    at_ms: i64,
}

impl<'a> AnswerRow<'a> {
    /// The journal row of an answer entry (`None` for other entries).
    fn of(index: usize, fenced: &'a FencedEntry) -> Option<Self> {
        let JournalEntry::Answer {
            plan_id,
            candidate_id,
            question_id,
            value,
            cseq,
            version,
            at,
        } = &fenced.entry
        else {
            return None;
        };
        Some(Self {
            index,
            plan_id: plan_id.as_str(),
            candidate_id: candidate_id.as_str(),
            question_id: question_id.as_str(),
            value: value.to_string(),
            cseq: *cseq,
            version: *version,
            shard: i64::from(fenced.fence.shard.get()),
            epoch: fenced.fence.epoch,
            at_ms: at.as_millis(),
        })
    }

    /// What identifies the row in the journal.
    fn key(&self) -> (&'a str, &'a str, i64) {
        (self.plan_id, self.candidate_id, self.cseq)
    }
}

struct TransitionRow {
    index: usize,
    /// The row revision the entry was decided on.
    revision: i64,
    plan_id: String,
    entity: &'static str,
    entity_id: String,
    event: &'static str,
    to_state: &'static str,
    detail: String,
    shard: i64,
    epoch: i64,
    at_ms: i64,
    runtime: String,
}

/// The entries of a batch sorted by table, with their positions in the batch.
#[derive(Default)]
struct Sorted<'a> {
    answers: Vec<AnswerRow<'a>>,
    candidates: Vec<TransitionRow>,
    rooms: Vec<TransitionRow>,
    incidents: Vec<(&'a FencedEntry, &'a invigil_actors::domain::Incident)>,
    logs: Vec<(&'a FencedEntry, &'a invigil_actors::ports::LogEntry)>,
}

/// Sorts a batch's entries by table. With `current` (the fences read), an
/// entry under a stale epoch is reported and left out; without, every entry
/// is kept and the statement that writes them checks the fences itself.
fn sort<'a>(
    batch: &'a [FencedEntry],
    current: Option<&HashMap<i64, i64>>,
    outcomes: &mut [EntryOutcome],
) -> Result<Sorted<'a>, StoreError> {
    let mut sorted = Sorted::default();
    for (index, fenced) in batch.iter().enumerate() {
        let shard = i64::from(fenced.fence.shard.get());
        if let Some(current) = current
            && current.get(&shard) != Some(&fenced.fence.epoch)
        {
            outcomes[index] = EntryOutcome::StaleFence;
            continue;
        }
        let epoch = fenced.fence.epoch;
        match &fenced.entry {
            JournalEntry::Answer { .. } => sorted.answers.extend(AnswerRow::of(index, fenced)),
            JournalEntry::Candidate {
                plan_id,
                candidate_id,
                revision,
                event,
                runtime,
            } => {
                sorted.candidates.push(TransitionRow {
                    index,
                    revision: *revision,
                    plan_id: plan_id.to_string(),
                    entity: "candidate",
                    entity_id: candidate_id.to_string(),
                    event: event.name(),
                    to_state: runtime.state.as_str(),
                    detail: to_json(event)?,
                    shard,
                    epoch,
                    at_ms: event.at().as_millis(),
                    runtime: candidate_runtime_json(runtime)?,
                });
            }
            JournalEntry::Room {
                plan_id,
                room_id,
                revision,
                event,
                runtime,
            } => {
                sorted.rooms.push(TransitionRow {
                    index,
                    revision: *revision,
                    plan_id: plan_id.to_string(),
                    entity: "room",
                    entity_id: room_id.to_string(),
                    event: event.name(),
                    to_state: runtime.state.as_str(),
                    detail: to_json(event)?,
                    shard,
                    epoch,
                    at_ms: event.at().as_millis(),
                    runtime: to_json(runtime)?,
                });
            }
            JournalEntry::Incident(incident) => sorted.incidents.push((fenced, incident)),
            JournalEntry::Log(log) => sorted.logs.push((fenced, log)),
        }
    }
    Ok(sorted)
}

/// Keeps the last row per key, in first-seen order, so one multi-row
/// statement never touches a row twice (Postgres refuses that in upserts).
fn last_per_key<T, K: std::hash::Hash + Eq>(
    rows: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut positions: HashMap<K, usize> = HashMap::new();
    let mut kept: Vec<T> = Vec::new();
    for row in rows {
        match positions.get(&key(&row)) {
            Some(&position) => kept[position] = row,
            None => {
                positions.insert(key(&row), kept.len());
                kept.push(row);
            }
        }
    }
    kept
}

/// The chain of entries for one row: consecutive revisions from `first`.
/// Entries that do not continue the chain were decided on a stale view.
struct Chain<'r> {
    first: &'r TransitionRow,
    last: &'r TransitionRow,
    entries: Vec<&'r TransitionRow>,
}

/// Groups a table's entries by row and checks that each row's entries
/// continue one another (revision r, r+1, …); breaks are conflicts. Entries
/// of one row under two epochs (a takeover between them) make two chains, of
/// which the fence lets at most one through.
fn chains<'r>(rows: &'r [TransitionRow], outcomes: &mut [EntryOutcome]) -> Vec<Chain<'r>> {
    let mut by_row: HashMap<(&str, &str, i64), usize> = HashMap::new();
    let mut chains: Vec<Chain<'r>> = Vec::new();
    for row in rows {
        match by_row.get(&(row.plan_id.as_str(), row.entity_id.as_str(), row.epoch)) {
            Some(&position) => {
                let chain = &mut chains[position];
                if row.revision == chain.last.revision + 1 {
                    chain.last = row;
                    chain.entries.push(row);
                } else {
                    outcomes[row.index] = EntryOutcome::Conflict;
                }
            }
            None => {
                by_row.insert(
                    (row.plan_id.as_str(), row.entity_id.as_str(), row.epoch),
                    chains.len(),
                );
                chains.push(Chain {
                    first: row,
                    last: row,
                    entries: vec![row],
                });
            }
        }
    }
    chains
}

/// The keys of answer rows: (plan, candidate, cseq).
type AnswerKeys = std::collections::HashSet<(String, String, i64)>;

const UPSERT_CURRENT_TAIL: &str = " ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, \
     version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms \
     WHERE answers.version < excluded.version";

/// SQLite: appends to the journal (a multi-row `VALUES`; parsing is cheap in
/// process) and returns the keys that were new.
async fn sqlite_insert_journal(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[AnswerRow<'_>],
) -> Result<AnswerKeys, StoreError> {
    let mut insert = QueryBuilder::new(
        "INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) ",
    );
    insert.push_values(rows, |mut row, answer| {
        row.push_bind(answer.plan_id.to_owned())
            .push_bind(answer.candidate_id.to_owned())
            .push_bind(answer.cseq)
            .push_bind(answer.question_id.to_owned())
            .push_bind(answer.value.clone())
            .push_bind(answer.version)
            .push_bind(answer.shard)
            .push_bind(answer.epoch)
            .push_bind(answer.at_ms);
    });
    insert.push(" ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq");
    Ok(insert
        .build()
        .fetch_all(&mut **tx)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// SQLite: raises the current answers to these versions where they are newer.
async fn sqlite_upsert_current(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[&AnswerRow<'_>],
) -> Result<(), StoreError> {
    let mut upsert = QueryBuilder::new(
        "INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) ",
    );
    upsert.push_values(rows, |mut row, answer| {
        row.push_bind(answer.plan_id.to_owned())
            .push_bind(answer.candidate_id.to_owned())
            .push_bind(answer.question_id.to_owned())
            .push_bind(answer.value.clone())
            .push_bind(answer.version)
            .push_bind(answer.cseq)
            .push_bind(answer.at_ms);
    });
    upsert.push(UPSERT_CURRENT_TAIL);
    upsert.build().execute(&mut **tx).await.map_err(from_sqlx)?;
    Ok(())
}

#[async_trait]
impl Journal for SqlStore {
    async fn commit(&self, batch: &[FencedEntry]) -> Result<Vec<EntryOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut shards: Vec<i64> = batch
            .iter()
            .map(|fenced| i64::from(fenced.fence.shard.get()))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        match &self.backend {
            super::Backend::Postgres(pool) => commit_postgres(pool, batch, &shards).await,
            super::Backend::Sqlite(pool) => commit_sqlite(pool, batch, &shards).await,
        }
    }

    async fn append_logs(&self, logs: &[QueuedLog]) -> Result<u64, StoreError> {
        if logs.is_empty() {
            return Ok(0);
        }
        on_backend!(self, pool => {
            let mut tx = pool.begin().await.map_err(from_sqlx)?;
            let mut inserted = 0;
            // 8 columns: well under both backends' bind limits.
            for chunk in logs.chunks(ROWS_PER_STATEMENT) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO logs (entry_id, plan_id, kind, subject, room_id, message, detail, at_ms) ",
                );
                insert.push_values(chunk, |mut row, queued| {
                    let log = &queued.log;
                    row.push_bind(queued.entry_id.as_str())
                        .push_bind(log.plan_id.as_str())
                        .push_bind(log.kind.as_str())
                        .push_bind(log.subject.as_deref())
                        .push_bind(log.room_id.as_ref().map(|room| room.as_str()))
                        .push_bind(log.message.as_str())
                        .push_bind(log.detail.to_string())
                        .push_bind(log.at.as_millis());
                });
                insert.push(" ON CONFLICT (entry_id) DO NOTHING");
                inserted += insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(from_sqlx)?
                    .rows_affected();
            }
            tx.commit().await.map_err(from_sqlx)?;
            Ok(inserted)
        })
    }

    async fn journaled_answer(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
        cseq: i64,
    ) -> Result<Option<JournaledAnswer>, StoreError> {
        let row = on_backend!(self, pool => {
            sqlx::query(
                "SELECT question_id, version, value FROM answer_journal WHERE plan_id = $1 AND candidate_id = $2 AND cseq = $3",
            )
            .bind(plan_id.as_str())
            .bind(candidate_id.as_str())
            .bind(cseq)
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1), text_digest(row.get::<&str, _>(2))))
        });
        row.map(|(question_id, version, digest)| {
            Ok(JournaledAnswer {
                question_id: id("question id", question_id)?,
                version,
                digest,
            })
        })
        .transpose()
    }
}

/// A batch on SQLite: one `BEGIN IMMEDIATE` transaction (the write lock
/// first, so the fences read cannot change under it), a statement per table.
async fn commit_sqlite(
    pool: &sqlx::SqlitePool,
    batch: &[FencedEntry],
    shards: &[i64],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let mut outcomes = vec![EntryOutcome::Written; batch.len()];
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(from_sqlx)?;

    let mut read_fences =
        QueryBuilder::new("SELECT shard, epoch FROM shard_lease WHERE shard IN (");
    let mut list = read_fences.separated(", ");
    for shard in shards {
        list.push_bind(*shard);
    }
    read_fences.push(")");
    let current: HashMap<i64, i64> = read_fences
        .build()
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
        .collect();
    let sorted = sort(batch, Some(&current), &mut outcomes)?;

    let mut fresh_answers = Vec::new();
    for chunk in sorted.answers.chunks(ROWS_PER_STATEMENT) {
        let mut inserted = sqlite_insert_journal(&mut tx, chunk).await?;
        for answer in chunk {
            let key = (
                answer.plan_id.to_owned(),
                answer.candidate_id.to_owned(),
                answer.cseq,
            );
            // `remove`: a cseq repeated within the batch is written
            // once; its later copies are repeats like any other.
            if inserted.remove(&key) {
                fresh_answers.push(answer);
            } else {
                outcomes[answer.index] = EntryOutcome::AlreadyStored;
            }
        }
    }
    let latest = last_per_key(
        {
            let mut by_version: Vec<&AnswerRow> = fresh_answers;
            by_version.sort_by_key(|answer| answer.version);
            by_version
        },
        |answer| (answer.plan_id, answer.candidate_id, answer.question_id),
    );
    for chunk in latest.chunks(ROWS_PER_STATEMENT) {
        sqlite_upsert_current(&mut tx, chunk).await?;
    }

    for (rows, table) in [(&sorted.candidates, "candidates"), (&sorted.rooms, "rooms")] {
        // Compare-and-set per row: a row moves only from the revision
        // its entries were decided on; otherwise they are conflicts.
        let chains = chains(rows, &mut outcomes);
        let mut written: Vec<&TransitionRow> = Vec::new();
        for chunk in chains.chunks(ROWS_PER_STATEMENT) {
            // VALUES columns are column1.. in both dialects.
            let mut update = QueryBuilder::new(format!(
                "UPDATE {table} SET state = v.column3, runtime = v.column4, revision = v.column6"
            ));
            if table == "candidates" {
                update.push(", updated_at_ms = v.column7");
            }
            update.push(" FROM (");
            update.push_values(chunk, |mut row, chain| {
                row.push_bind(chain.last.plan_id.clone())
                    .push_bind(chain.last.entity_id.clone())
                    .push_bind(chain.last.to_state)
                    .push_bind(chain.last.runtime.clone())
                    .push_bind(chain.first.revision)
                    .push_bind(chain.last.revision + 1)
                    .push_bind(chain.last.at_ms);
            });
            update.push(format!(
                ") AS v WHERE {table}.plan_id = v.column1 AND {table}.id = v.column2 \
                     AND {table}.revision = v.column5 RETURNING {table}.plan_id, {table}.id"
            ));
            let updated: std::collections::HashSet<(String, String)> = update
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            for chain in chunk {
                if updated.contains(&(chain.first.plan_id.clone(), chain.first.entity_id.clone())) {
                    written.extend(chain.entries.iter().copied());
                } else {
                    for entry in &chain.entries {
                        outcomes[entry.index] = EntryOutcome::Conflict;
                    }
                }
            }
        }
        for chunk in written.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::new(
                "INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) ",
            );
            insert.push_values(chunk, |mut row, transition| {
                row.push_bind(transition.plan_id.clone())
                    .push_bind(transition.entity)
                    .push_bind(transition.entity_id.clone())
                    .push_bind(transition.event)
                    .push_bind(transition.to_state)
                    .push_bind(transition.detail.clone())
                    .push_bind(transition.shard)
                    .push_bind(transition.epoch)
                    .push_bind(transition.at_ms);
            });
            insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
        }
    }

    let incidents = last_per_key(sorted.incidents.iter(), |(_, incident)| {
        incident.id.as_str()
    });
    for chunk in incidents.chunks(ROWS_PER_STATEMENT) {
        let mut upsert = QueryBuilder::new(
            "INSERT INTO incidents (id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
                 action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) ",
        );
        upsert.push_values(chunk, |mut row, (fenced, incident)| {
            row.push_bind(incident.id.clone())
                .push_bind(incident.plan_id.to_string())
                .push_bind(incident.room_id.to_string())
                .push_bind(incident.candidate_id.as_ref().map(ToString::to_string))
                .push_bind(incident.kind.clone())
                .push_bind(incident.source.as_str())
                .push_bind(incident.severity.as_str())
                .push_bind(incident.status.as_str())
                .push_bind(incident.note.clone())
                .push_bind(incident.action.clone())
                .push_bind(incident.created_at.as_millis())
                .push_bind(incident.resolved_at.map(|at| at.as_millis()))
                .push_bind(incident.resolved_by.as_ref().map(ToString::to_string))
                .push_bind(i64::from(fenced.fence.shard.get()))
                .push_bind(fenced.fence.epoch);
        });
        upsert.push(
                " ON CONFLICT (id) DO UPDATE SET status = excluded.status, note = excluded.note, \
                 action = excluded.action, resolved_at_ms = excluded.resolved_at_ms, \
                 resolved_by = excluded.resolved_by, shard = excluded.shard, epoch = excluded.epoch",
            );
        upsert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
    }

    for chunk in sorted.logs.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms) ",
        );
        insert.push_values(chunk, |mut row, (_, log)| {
            row.push_bind(log.plan_id.to_string())
                .push_bind(log.kind.as_str())
                .push_bind(log.subject.clone())
                .push_bind(log.room_id.as_ref().map(ToString::to_string))
                .push_bind(log.message.clone())
                .push_bind(log.detail.to_string())
                .push_bind(log.at.as_millis());
        });
        insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
    }

    tx.commit().await.map_err(from_sqlx)?;
    Ok(outcomes)
}

/// A batch on Postgres, whatever it carries, as one statement: one round
/// trip and an implicit transaction, instead of a transaction of a statement
/// per table that each wait for the server to be scheduled (a proctor's
/// `warn` among the answers used to cost a batch eight round trips). Its
/// parts, as CTEs, keep the multi-statement transaction's semantics:
///
/// - `fence`: the lease rows of the batch's shards, read `FOR SHARE` (a
///   takeover waits for this commit, and a takeover that committed first is
///   seen). Every other part joins it, so entries under another epoch are not
///   written; they are reported from the fences the statement returns.
/// - answers: a cseq already in the journal is written once, and the current
///   answer only moves to a higher version (one row per key: `latest`).
/// - `chains`: compare-and-set per candidate or room row, from the revision
///   the entries were decided on; a chain's transitions are recorded only if
///   its row moved, in the batch's order.
/// - incidents are upserted, logs appended.
///
/// The arrays are bound per column; empty ones make empty parts. A batch of
/// nothing but answers (the hot path) is sent as [`COMMIT_ANSWERS`], the
/// first parts alone (see [`statement`] for the two forms of each): Postgres plans, locks and opens every table a
/// statement writes to on each execution, even the ones it writes no row to.
static COMMIT_BATCH: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [false, true].map(|fresh| statement(fresh, true)));

/// A batch of nothing but answers: [`COMMIT_BATCH`]'s fence and answer parts.
static COMMIT_ANSWERS: std::sync::LazyLock<[String; 2]> =
    std::sync::LazyLock::new(|| [false, true].map(|fresh| statement(fresh, false)));

/// The statement for a batch; each comes in two forms, `[careful, fresh]`.
///
/// The careful form appends answers `ON CONFLICT DO NOTHING` and returns
/// the ones it appended: a cseq already in the journal is not written again
/// and is reported `AlreadyStored`. The fresh form is a plain `INSERT`,
/// which spares Postgres a second descent of the journal's primary key per
/// answer and the answers' trip back: the room actor only sends a cseq above
/// the highest it knows of, so a cseq is nearly always new. When one is not,
/// the fresh form fails on the primary key as a whole, writing nothing, and
/// the batch is sent again in the careful form.
fn statement(fresh: bool, everything: bool) -> String {
    let (append_tail, latest_from) = if fresh {
        (
            "",
            "(SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch) a",
        )
    } else {
        (
            " ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING \
             RETURNING plan_id, candidate_id, cseq, question_id, value, version, at_ms",
            "appended",
        )
    };
    // Parameters $1 (the shards) to $10 (the answers' columns).
    let answer_parts = format!(
        "\
WITH fence AS MATERIALIZED ( \
    SELECT shard, epoch FROM shard_lease WHERE shard = ANY($1::bigint[]) FOR SHARE \
), incoming AS ( \
    SELECT * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::bigint[], \
                         $8::bigint[], $9::bigint[], $10::bigint[]) \
        AS a(plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
), appended AS ( \
    INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
    SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch{append_tail} \
), latest AS ( \
    SELECT DISTINCT ON (plan_id, candidate_id, question_id) \
        plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM {latest_from} \
    ORDER BY plan_id, candidate_id, question_id, version DESC \
), current AS ( \
    INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) \
    SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM latest{UPSERT_CURRENT_TAIL} \
)"
    );
    let mut statement = answer_parts;
    if everything {
        statement.push_str(", ");
        statement.push_str(OTHER_PARTS);
    }
    statement.push_str(" SELECT 0, NULL::text, NULL::text, shard, epoch FROM fence");
    if !fresh {
        statement.push_str(
            " UNION ALL SELECT 1, plan_id, candidate_id, cseq, NULL::bigint FROM appended",
        );
    }
    if everything {
        statement.push_str(
            " UNION ALL SELECT 2, NULL::text, NULL::text, chain, NULL::bigint FROM moved",
        );
    }
    statement
}

/// Parameters $11 to $55: transitions, incidents, logs.
const OTHER_PARTS: &str = "\
chains AS ( \
    SELECT c.* FROM UNNEST($11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], \
                           $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[]) \
        AS c(chain, entity, plan_id, entity_id, state, runtime, revision, next_revision, at_ms, shard, epoch) \
    JOIN fence f ON f.shard = c.shard AND f.epoch = c.epoch \
), moved_candidates AS ( \
    UPDATE candidates t SET state = c.state, runtime = c.runtime, revision = c.next_revision, \
        updated_at_ms = c.at_ms \
    FROM chains c \
    WHERE c.entity = 'candidate' AND t.plan_id = c.plan_id AND t.id = c.entity_id AND t.revision = c.revision \
    RETURNING c.chain \
), moved_rooms AS ( \
    UPDATE rooms t SET state = c.state, runtime = c.runtime, revision = c.next_revision \
    FROM chains c \
    WHERE c.entity = 'room' AND t.plan_id = c.plan_id AND t.id = c.entity_id AND t.revision = c.revision \
    RETURNING c.chain \
), moved AS ( \
    SELECT chain FROM moved_candidates UNION ALL SELECT chain FROM moved_rooms \
), recorded AS ( \
    INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) \
    SELECT t.plan_id, t.entity, t.entity_id, t.event, t.to_state, t.detail, t.shard, t.epoch, t.at_ms \
    FROM UNNEST($22::bigint[], $23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], \
                $29::bigint[], $30::bigint[], $31::bigint[]) WITH ORDINALITY \
        AS t(chain, plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms, position) \
    WHERE t.chain IN (SELECT chain FROM moved) \
    ORDER BY t.position \
), noted AS ( \
    INSERT INTO incidents (id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
                           action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) \
    SELECT i.* FROM UNNEST($32::text[], $33::text[], $34::text[], $35::text[], $36::text[], $37::text[], \
                           $38::text[], $39::text[], $40::text[], $41::text[], $42::bigint[], $43::bigint[], \
                           $44::text[], $45::bigint[], $46::bigint[]) \
        AS i(id, plan_id, room_id, candidate_id, kind, source, severity, status, note, \
             action, created_at_ms, resolved_at_ms, resolved_by, shard, epoch) \
    JOIN fence f ON f.shard = i.shard AND f.epoch = i.epoch \
    ON CONFLICT (id) DO UPDATE SET status = excluded.status, note = excluded.note, \
        action = excluded.action, resolved_at_ms = excluded.resolved_at_ms, \
        resolved_by = excluded.resolved_by, shard = excluded.shard, epoch = excluded.epoch \
), logged AS ( \
    INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms) \
    SELECT l.plan_id, l.kind, l.subject, l.room_id, l.message, l.detail, l.at_ms \
    FROM UNNEST($47::text[], $48::text[], $49::text[], $50::text[], $51::text[], $52::text[], $53::bigint[], \
                $54::bigint[], $55::bigint[]) WITH ORDINALITY \
        AS l(plan_id, kind, subject, room_id, message, detail, at_ms, shard, epoch, position) \
    JOIN fence f ON f.shard = l.shard AND f.epoch = l.epoch \
    ORDER BY l.position \
)";

/// Whether the fresh form of a statement failed on a cseq already in the
/// journal.
fn repeats_a_cseq(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database)
        if database.code().as_deref() == Some("23505")
            && database.constraint() == Some("answer_journal_pkey"))
}

/// One column of `rows`: the array a statement's parameter binds.
fn column<'r, T, U>(rows: &'r [T], field: impl Fn(&'r T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// What a row of [`COMMIT_BATCH`]'s result is.
const RETURNED_FENCE: i32 = 0;
const RETURNED_APPENDED: i32 = 1;
const RETURNED_MOVED: i32 = 2;

async fn commit_postgres(
    pool: &sqlx::PgPool,
    batch: &[FencedEntry],
    shards: &[i64],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let mut outcomes = vec![EntryOutcome::Written; batch.len()];
    // Every entry is sent; the statement checks the fences.
    let sorted = sort(batch, None, &mut outcomes)?;

    // A cseq repeated within the batch is sent once (its first copy): which
    // copy an INSERT keeps is up to the plan, which copy is written is not.
    // Its later copies are repeats like any other.
    let mut seen = std::collections::HashSet::with_capacity(sorted.answers.len());
    let mut answers: Vec<&AnswerRow<'_>> = Vec::with_capacity(sorted.answers.len());
    for row in &sorted.answers {
        if seen.insert((row.key(), row.epoch)) {
            answers.push(row);
        } else {
            outcomes[row.index] = EntryOutcome::AlreadyStored;
        }
    }

    // Chains are numbered across both tables; a transition names its chain.
    let candidate_chains = chains(&sorted.candidates, &mut outcomes);
    let room_chains = chains(&sorted.rooms, &mut outcomes);
    let all_chains: Vec<&Chain<'_>> = candidate_chains.iter().chain(&room_chains).collect();
    let transitions: Vec<(i64, &TransitionRow)> = all_chains
        .iter()
        .enumerate()
        .flat_map(|(number, chain)| {
            chain
                .entries
                .iter()
                .map(move |entry| (number as i64, *entry))
        })
        .collect();

    // An incident written twice in the batch: its last state (per epoch, so
    // that a stale copy cannot hide a current one).
    let incidents = last_per_key(sorted.incidents.iter(), |(fenced, incident)| {
        (incident.id.as_str(), fenced.fence.epoch)
    });

    let only_answers = sorted.candidates.is_empty()
        && sorted.rooms.is_empty()
        && sorted.incidents.is_empty()
        && sorted.logs.is_empty();
    let query = |statement: &'static str| {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(shards)
            // Answers.
            .bind(column(&answers, |row| row.plan_id))
            .bind(column(&answers, |row| row.candidate_id))
            .bind(column(&answers, |row| row.cseq))
            .bind(column(&answers, |row| row.question_id))
            .bind(column(&answers, |row| row.value.as_str()))
            .bind(column(&answers, |row| row.version))
            .bind(column(&answers, |row| row.shard))
            .bind(column(&answers, |row| row.epoch))
            .bind(column(&answers, |row| row.at_ms));
        if !only_answers {
            let chain_numbers: Vec<i64> = (0..all_chains.len() as i64).collect();
            query = query
                // Chains: the row moves from the first entry's revision to the
                // last entry's state.
                .bind(chain_numbers)
                .bind(column(&all_chains, |chain| chain.first.entity))
                .bind(column(&all_chains, |chain| chain.first.plan_id.as_str()))
                .bind(column(&all_chains, |chain| chain.first.entity_id.as_str()))
                .bind(column(&all_chains, |chain| chain.last.to_state))
                .bind(column(&all_chains, |chain| chain.last.runtime.as_str()))
                .bind(column(&all_chains, |chain| chain.first.revision))
                .bind(column(&all_chains, |chain| chain.last.revision + 1))
                .bind(column(&all_chains, |chain| chain.last.at_ms))
                .bind(column(&all_chains, |chain| chain.first.shard))
                .bind(column(&all_chains, |chain| chain.first.epoch))
                // Transitions, in the order they are recorded.
                .bind(column(&transitions, |(chain, _)| *chain))
                .bind(column(&transitions, |(_, row)| row.plan_id.as_str()))
                .bind(column(&transitions, |(_, row)| row.entity))
                .bind(column(&transitions, |(_, row)| row.entity_id.as_str()))
                .bind(column(&transitions, |(_, row)| row.event))
                .bind(column(&transitions, |(_, row)| row.to_state))
                .bind(column(&transitions, |(_, row)| row.detail.as_str()))
                .bind(column(&transitions, |(_, row)| row.shard))
                .bind(column(&transitions, |(_, row)| row.epoch))
                .bind(column(&transitions, |(_, row)| row.at_ms))
                // Incidents.
                .bind(column(&incidents, |(_, incident)| incident.id.as_str()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.plan_id.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.room_id.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.candidate_id.as_ref().map(|id| id.as_str())
                }))
                .bind(column(&incidents, |(_, incident)| incident.kind.as_str()))
                .bind(column(&incidents, |(_, incident)| incident.source.as_str()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.severity.as_str()
                }))
                .bind(column(&incidents, |(_, incident)| incident.status.as_str()))
                .bind(column(&incidents, |(_, incident)| incident.note.as_deref()))
                .bind(column(&incidents, |(_, incident)| {
                    incident.action.as_deref()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.created_at.as_millis()
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.resolved_at.map(|at| at.as_millis())
                }))
                .bind(column(&incidents, |(_, incident)| {
                    incident.resolved_by.as_ref().map(|by| by.as_str())
                }))
                .bind(column(&incidents, |(fenced, _)| {
                    i64::from(fenced.fence.shard.get())
                }))
                .bind(column(&incidents, |(fenced, _)| fenced.fence.epoch))
                // Logs.
                .bind(column(&sorted.logs, |(_, log)| log.plan_id.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.kind.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.subject.as_deref()))
                .bind(column(&sorted.logs, |(_, log)| {
                    log.room_id.as_ref().map(|room| room.as_str())
                }))
                .bind(column(&sorted.logs, |(_, log)| log.message.as_str()))
                .bind(column(&sorted.logs, |(_, log)| log.detail.to_string()))
                .bind(column(&sorted.logs, |(_, log)| log.at.as_millis()))
                .bind(column(&sorted.logs, |(fenced, _)| {
                    i64::from(fenced.fence.shard.get())
                }))
                .bind(column(&sorted.logs, |(fenced, _)| fenced.fence.epoch));
        }
        query
    };
    let [careful, fresh] = if only_answers {
        &*COMMIT_ANSWERS
    } else {
        &*COMMIT_BATCH
    };
    let (returned, sent_fresh) = match query(fresh.as_str()).fetch_all(pool).await {
        Ok(rows) => (rows, true),
        Err(error) if repeats_a_cseq(&error) => (
            query(careful.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?,
            false,
        ),
        Err(error) => return Err(from_sqlx(error)),
    };

    let mut current: HashMap<i64, i64> = HashMap::new();
    let mut appended: AnswerKeys = Default::default();
    let mut moved: std::collections::HashSet<i64> = Default::default();
    for row in returned {
        match row.get::<i32, _>(0) {
            RETURNED_FENCE => {
                current.insert(row.get(3), row.get::<Option<i64>, _>(4).unwrap_or_default());
            }
            RETURNED_APPENDED => {
                appended.insert((row.get(1), row.get(2), row.get(3)));
            }
            RETURNED_MOVED => {
                moved.insert(row.get(3));
            }
            kind => {
                return Err(StoreError::Internal(format!(
                    "unexpected result row of kind {kind}"
                )));
            }
        }
    }
    // The fresh form appended every answer it was sent (those under a stale
    // fence are reported below); the careful form says which it appended.
    if !sent_fresh {
        for answer in &answers {
            let key = (
                answer.plan_id.to_owned(),
                answer.candidate_id.to_owned(),
                answer.cseq,
            );
            if !appended.contains(&key) {
                outcomes[answer.index] = EntryOutcome::AlreadyStored;
            }
        }
    }
    for (number, chain) in all_chains.iter().enumerate() {
        if !moved.contains(&(number as i64)) {
            for entry in &chain.entries {
                outcomes[entry.index] = EntryOutcome::Conflict;
            }
        }
    }
    // Last, so that it wins over anything decided above: an entry under a
    // stale epoch was not written.
    for (index, fenced) in batch.iter().enumerate() {
        if current.get(&i64::from(fenced.fence.shard.get())) != Some(&fenced.fence.epoch) {
            outcomes[index] = EntryOutcome::StaleFence;
        }
    }
    Ok(outcomes)
}
