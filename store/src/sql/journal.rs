//! [`Journal`] on sqlx: one transaction per batch. The fences of every shard
//! in the batch are read first (Postgres: `FOR SHARE`, so a lease takeover
//! waits until this batch is in; SQLite: under the write lock), entries under
//! a stale epoch are left out and reported, the rest is written with
//! multi-row statements. On Postgres a batch of nothing but answers (the hot
//! path) is all of that in one statement: see [`COMMIT_ANSWERS`].

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

fn sort<'a>(
    batch: &'a [FencedEntry],
    current: &HashMap<i64, i64>,
    outcomes: &mut [EntryOutcome],
) -> Result<Sorted<'a>, StoreError> {
    let mut sorted = Sorted::default();
    for (index, fenced) in batch.iter().enumerate() {
        let shard = i64::from(fenced.fence.shard.get());
        if current.get(&shard) != Some(&fenced.fence.epoch) {
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
/// continue one another (revision r, r+1, …); breaks are conflicts.
fn chains<'r>(rows: &'r [TransitionRow], outcomes: &mut [EntryOutcome]) -> Vec<Chain<'r>> {
    let mut by_row: HashMap<(&str, &str), usize> = HashMap::new();
    let mut chains: Vec<Chain<'r>> = Vec::new();
    for row in rows {
        match by_row.get(&(row.plan_id.as_str(), row.entity_id.as_str())) {
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
                by_row.insert((row.plan_id.as_str(), row.entity_id.as_str()), chains.len());
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

/// The two statements of the answer hot path, written per dialect: Postgres
/// binds arrays to one fixed statement (`UNNEST`, planned once); SQLite takes
/// a multi-row `VALUES` (parsing is cheap in process).
trait AnswerStatements {
    /// Appends to the journal; returns the keys that were new.
    fn insert_journal(
        &mut self,
        rows: &[AnswerRow<'_>],
    ) -> impl std::future::Future<Output = Result<AnswerKeys, StoreError>> + Send;

    /// Raises the current answers to these versions where they are newer.
    fn upsert_current(
        &mut self,
        rows: &[&AnswerRow<'_>],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

const UPSERT_CURRENT_TAIL: &str = " ON CONFLICT (plan_id, candidate_id, question_id) DO UPDATE SET value = excluded.value, \
     version = excluded.version, cseq = excluded.cseq, updated_at_ms = excluded.updated_at_ms \
     WHERE answers.version < excluded.version";

impl AnswerStatements for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn insert_journal(&mut self, rows: &[AnswerRow<'_>]) -> Result<AnswerKeys, StoreError> {
        let column = |f: fn(&AnswerRow<'_>) -> String| rows.iter().map(f).collect::<Vec<String>>();
        let number = |f: fn(&AnswerRow<'_>) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        Ok(sqlx::query(
            "INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], \
                                  $7::bigint[], $8::bigint[], $9::bigint[]) \
             ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING RETURNING plan_id, candidate_id, cseq",
        )
        .bind(column(|row| row.plan_id.to_owned()))
        .bind(column(|row| row.candidate_id.to_owned()))
        .bind(number(|row| row.cseq))
        .bind(column(|row| row.question_id.to_owned()))
        .bind(column(|row| row.value.clone()))
        .bind(number(|row| row.version))
        .bind(number(|row| row.shard))
        .bind(number(|row| row.epoch))
        .bind(number(|row| row.at_ms))
        .fetch_all(&mut **self)
        .await
        .map_err(from_sqlx)?
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
    }

    async fn upsert_current(&mut self, rows: &[&AnswerRow<'_>]) -> Result<(), StoreError> {
        let column = |f: fn(&AnswerRow<'_>) -> String| {
            rows.iter().map(|row| f(row)).collect::<Vec<String>>()
        };
        let number =
            |f: fn(&AnswerRow<'_>) -> i64| rows.iter().map(|row| f(row)).collect::<Vec<i64>>();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[]){UPSERT_CURRENT_TAIL}"
        )))
        .bind(column(|row| row.plan_id.to_owned()))
        .bind(column(|row| row.candidate_id.to_owned()))
        .bind(column(|row| row.question_id.to_owned()))
        .bind(column(|row| row.value.clone()))
        .bind(number(|row| row.version))
        .bind(number(|row| row.cseq))
        .bind(number(|row| row.at_ms))
        .execute(&mut **self)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }
}

impl AnswerStatements for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn insert_journal(&mut self, rows: &[AnswerRow<'_>]) -> Result<AnswerKeys, StoreError> {
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
            .fetch_all(&mut **self)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }

    async fn upsert_current(&mut self, rows: &[&AnswerRow<'_>]) -> Result<(), StoreError> {
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
        upsert
            .build()
            .execute(&mut **self)
            .await
            .map_err(from_sqlx)?;
        Ok(())
    }
}

#[async_trait]
impl Journal for SqlStore {
    async fn commit(&self, batch: &[FencedEntry]) -> Result<Vec<EntryOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut outcomes = vec![EntryOutcome::Written; batch.len()];
        let mut shards: Vec<i64> = batch
            .iter()
            .map(|fenced| i64::from(fenced.fence.shard.get()))
            .collect();
        shards.sort_unstable();
        shards.dedup();
        if let super::Backend::Postgres(pool) = &self.backend
            && batch
                .iter()
                .all(|fenced| matches!(fenced.entry, JournalEntry::Answer { .. }))
        {
            return commit_answers_postgres(pool, batch, &shards).await;
        }
        on_backend!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(from_sqlx)?;

            let mut read_fences = QueryBuilder::new("SELECT shard, epoch FROM shard_lease WHERE shard IN (");
            let mut list = read_fences.separated(", ");
            for shard in &shards {
                list.push_bind(*shard);
            }
            read_fences.push(")");
            read_fences.push(self.dialect(" FOR SHARE", ""));
            let current: HashMap<i64, i64> = read_fences
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| (row.get::<i64, _>(0), row.get::<i64, _>(1)))
                .collect();
            let sorted = sort(batch, &current, &mut outcomes)?;

            let mut fresh_answers = Vec::new();
            for chunk in sorted.answers.chunks(ROWS_PER_STATEMENT) {
                let mut inserted = tx.insert_journal(chunk).await?;
                for answer in chunk {
                    let key = (answer.plan_id.to_owned(), answer.candidate_id.to_owned(), answer.cseq);
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
                tx.upsert_current(chunk).await?;
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
                        update.push(", updated_at_ms = ");
                        update.push_bind(chunk.iter().map(|chain| chain.last.at_ms).max().unwrap_or(0));
                    }
                    update.push(" FROM (");
                    update.push_values(chunk, |mut row, chain| {
                        row.push_bind(chain.last.plan_id.clone())
                            .push_bind(chain.last.entity_id.clone())
                            .push_bind(chain.last.to_state)
                            .push_bind(chain.last.runtime.clone())
                            .push_bind(chain.first.revision)
                            .push_bind(chain.last.revision + 1);
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

            let incidents = last_per_key(sorted.incidents.iter(), |(_, incident)| incident.id.as_str());
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
                let mut insert =
                    QueryBuilder::new("INSERT INTO logs (plan_id, kind, subject, room_id, message, detail, at_ms) ");
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
        })
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

/// The hot path on Postgres, a batch of nothing but answers, as one
/// statement: fence check, journal append and current-answer upsert in a
/// single round trip and an implicit transaction, instead of five round trips
/// (BEGIN, fence read, append, upsert, COMMIT) that each wait for the server
/// to be scheduled. The semantics are the multi-statement path's: the lease
/// rows are read `FOR SHARE` (a takeover waits for this commit, and a
/// takeover that committed first is seen), entries under another epoch are
/// not written, a cseq already in the journal (or repeated in the batch) is
/// written once, and the current answer only moves to a higher version.
static COMMIT_ANSWERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "\
WITH fence AS MATERIALIZED ( \
    SELECT shard, epoch FROM shard_lease WHERE shard = ANY($10::bigint[]) FOR SHARE \
), incoming AS ( \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[], \
                         $7::bigint[], $8::bigint[], $9::bigint[]) \
        AS a(plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
), appended AS ( \
    INSERT INTO answer_journal (plan_id, candidate_id, cseq, question_id, value, version, shard, epoch, at_ms) \
    SELECT a.* FROM incoming a JOIN fence f ON f.shard = a.shard AND f.epoch = a.epoch \
    ON CONFLICT (plan_id, candidate_id, cseq) DO NOTHING \
    RETURNING plan_id, candidate_id, cseq, question_id, value, version, at_ms \
), latest AS ( \
    SELECT DISTINCT ON (plan_id, candidate_id, question_id) * FROM appended \
    ORDER BY plan_id, candidate_id, question_id, version DESC \
), current AS ( \
    INSERT INTO answers (plan_id, candidate_id, question_id, value, version, cseq, updated_at_ms) \
    SELECT plan_id, candidate_id, question_id, value, version, cseq, at_ms FROM latest{UPSERT_CURRENT_TAIL} \
) \
SELECT NULL::text, NULL::text, shard, epoch FROM fence \
UNION ALL \
SELECT plan_id, candidate_id, cseq, NULL::bigint FROM appended"
    )
});

async fn commit_answers_postgres<'b>(
    pool: &sqlx::PgPool,
    batch: &'b [FencedEntry],
    shards: &[i64],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let rows: Vec<AnswerRow<'b>> = batch
        .iter()
        .enumerate()
        .map(|(index, fenced)| AnswerRow::of(index, fenced))
        .collect::<Option<_>>()
        .ok_or_else(|| StoreError::Internal("not an answer batch".into()))?;
    // A cseq repeated within the batch is sent once (its first copy): which
    // copy an INSERT keeps is up to the plan, which copy is written is not.
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let sent: Vec<&AnswerRow<'_>> = rows
        .iter()
        .filter(|row| seen.insert((row.key(), row.epoch)))
        .collect();
    let text =
        |f: fn(&AnswerRow<'b>) -> &'b str| sent.iter().map(|row| f(row)).collect::<Vec<&str>>();
    let number = |f: fn(&AnswerRow<'_>) -> i64| sent.iter().map(|row| f(row)).collect::<Vec<i64>>();
    let values: Vec<&str> = sent.iter().map(|row| row.value.as_str()).collect();
    let returned = sqlx::query(sqlx::AssertSqlSafe(COMMIT_ANSWERS.as_str()))
        .bind(text(|row| row.plan_id))
        .bind(text(|row| row.candidate_id))
        .bind(number(|row| row.cseq))
        .bind(text(|row| row.question_id))
        .bind(values)
        .bind(number(|row| row.version))
        .bind(number(|row| row.shard))
        .bind(number(|row| row.epoch))
        .bind(number(|row| row.at_ms))
        .bind(shards)
        .fetch_all(pool)
        .await
        .map_err(from_sqlx)?;
    let mut current: HashMap<i64, i64> = HashMap::new();
    let mut appended: std::collections::HashSet<(String, String, i64)> = Default::default();
    for row in returned {
        match row.get::<Option<String>, _>(0) {
            None => {
                current.insert(row.get(2), row.get::<Option<i64>, _>(3).unwrap_or_default());
            }
            Some(plan_id) => {
                appended.insert((plan_id, row.get(1), row.get(2)));
            }
        }
    }
    Ok(rows
        .iter()
        .map(|row| {
            if current.get(&row.shard) != Some(&row.epoch) {
                return EntryOutcome::StaleFence;
            }
            let key = (
                row.plan_id.to_owned(),
                row.candidate_id.to_owned(),
                row.cseq,
            );
            // `remove`: a cseq repeated within the batch is written once;
            // its later copies are repeats like any other.
            if appended.remove(&key) {
                EntryOutcome::Written
            } else {
                EntryOutcome::AlreadyStored
            }
        })
        .collect())
}
