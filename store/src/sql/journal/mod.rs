//! [`Journal`] on sqlx: one transaction per batch. The fences of every shard
//! in the batch are read with it (Postgres: `FOR SHARE`, so a lease takeover
//! waits until this batch is in; SQLite: under the write lock), entries under
//! a stale epoch are left out and reported, the rest is written with
//! multi-row statements. On Postgres the whole batch, whatever it carries, is
//! one statement and one round trip: see `COMMIT_BATCH` in [`postgres`]. On
//! SQLite, in process, it is a transaction of several statements.
//!
//! # Layout
//! - `mod.rs`: the [`Journal`] port: a batch sent to its backend's path, logs, journal reads
//! - `rows`: a batch sorted into rows per table, chains of transitions, shared statement parts
//! - `sqlite`: a batch as one `BEGIN IMMEDIATE` transaction of a statement per table
//! - `postgres`: a batch as one statement, `COMMIT_BATCH` or `COMMIT_ANSWERS`

mod postgres;
mod rows;
mod sqlite;

use async_trait::async_trait;
use invigil_actors::domain::answer::text_digest;
use invigil_actors::domain::{CandidateId, PlanId};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{EntryOutcome, FencedEntry, Journal, JournaledAnswer, QueuedLog};
use sqlx::{QueryBuilder, Row};

use self::rows::ROWS_PER_STATEMENT;
use super::{SqlStore, on_backend};
use crate::error::from_sqlx;
use crate::sql::rows::id;

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
            super::Backend::Postgres(pool) => postgres::commit_postgres(pool, batch, &shards).await,
            super::Backend::Sqlite(pool) => sqlite::commit_sqlite(pool, batch, &shards).await,
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
