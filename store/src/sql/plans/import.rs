//! A plan's import: the digest that answers a repeated import, and the
//! transaction that creates a plan or replaces it while it is scheduled.

use invigil_actors::domain::{
    CandidateState, CredentialHash, PlanId, PlanRuntime, PlanSpec, PlanState, RoomRuntime,
    Timestamp,
};
use invigil_actors::error::StoreError;
use invigil_actors::ports::ImportOutcome;
use sqlx::{QueryBuilder, Row};

use super::parse_plan_state;
use crate::error::from_sqlx;
use crate::sql::rows::{candidate_runtime_json, to_json};
use crate::sql::{SqlStore, on_backend};

/// Rows per multi-row INSERT: below SQLite's 32766 and Postgres' 65535
/// bind parameters for the widest table (candidates, 12 columns).
const ROWS_PER_INSERT: usize = 2_000;

impl SqlStore {
    /// `PlanStore::plan_digest`: the import digest and state of a plan.
    pub(super) async fn read_plan_digest(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<(String, PlanState)>, StoreError> {
        let row = on_backend!(self, pool => {
            sqlx::query("SELECT import_digest, state FROM plans WHERE id = $1")
                .bind(plan_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
                .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
        });
        row.map(|(digest, state)| Ok((digest, parse_plan_state(&state)?)))
            .transpose()
    }

    /// `PlanStore::import_plan`: creates or replaces a plan in one transaction.
    pub(super) async fn write_plan_import(
        &self,
        plan: &PlanSpec<CredentialHash>,
        digest: &str,
        now: Timestamp,
    ) -> Result<ImportOutcome, StoreError> {
        let runtime = PlanRuntime::default();
        let settings = to_json(&plan.settings)?;
        let runtime_json = to_json(&runtime)?;
        let room_runtime = to_json(&RoomRuntime::default())?;
        let candidate_runtime = candidate_runtime_json(&Default::default())?;
        on_backend!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(from_sqlx)?;
            let existing = sqlx::query(self.dialect(
                "SELECT import_digest, state FROM plans WHERE id = $1 FOR UPDATE",
                "SELECT import_digest, state FROM plans WHERE id = $1",
            ))
            .bind(plan.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            let outcome = match existing {
                Some(row) => {
                    let (existing_digest, state): (String, String) = (row.get(0), row.get(1));
                    let state = parse_plan_state(&state)?;
                    if existing_digest == digest {
                        return Ok(ImportOutcome::Unchanged);
                    }
                    if state != PlanState::Scheduled {
                        return Ok(ImportOutcome::Refused(state));
                    }
                    // The journal has no foreign key (see the migration
                    // journal_without_candidate_fk); the other children go
                    // with the plan (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM answer_journal WHERE plan_id = $1")
                        .bind(plan.id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(from_sqlx)?;
                    sqlx::query("DELETE FROM plans WHERE id = $1")
                        .bind(plan.id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(from_sqlx)?;
                    ImportOutcome::Replaced
                }
                None => ImportOutcome::Created,
            };

            sqlx::query(
                "INSERT INTO plans (id, title, starts_at_ms, duration_s, settings, state, runtime, revision, \
                 import_digest, created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9)",
            )
            .bind(plan.id.as_str())
            .bind(plan.title.as_str())
            .bind(plan.starts_at.as_millis())
            .bind(plan.duration_s)
            .bind(settings.as_str())
            .bind(runtime.state.as_str())
            .bind(runtime_json.as_str())
            .bind(digest)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;

            let plan_id = plan.id.as_str();
            for (offset, chunk) in chunks(&plan.questions) {
                let mut insert = QueryBuilder::new("INSERT INTO questions (plan_id, id, position, kind, choices, answer, points) ");
                insert.push_values(chunk.iter().enumerate(), |mut row, (index, question)| {
                    row.push_bind(plan_id.to_owned())
                        .push_bind(question.id.as_str().to_owned())
                        .push_bind(position(offset + index))
                        .push_bind(question.kind.as_str())
                        .push_bind(serde_json::to_string(&question.choices).unwrap_or_default())
                        .push_bind(question.answer.to_string())
                        .push_bind(question.points);
                });
                insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            }
            for (offset, chunk) in chunks(&plan.rooms) {
                let mut insert = QueryBuilder::new("INSERT INTO rooms (plan_id, id, position, name, capacity, state, runtime) ");
                insert.push_values(chunk.iter().enumerate(), |mut row, (index, room)| {
                    row.push_bind(plan_id.to_owned())
                        .push_bind(room.id.as_str().to_owned())
                        .push_bind(position(offset + index))
                        .push_bind(room.name.clone())
                        .push_bind(room.capacity)
                        .push_bind(RoomRuntime::default().state.as_str())
                        .push_bind(room_runtime.clone());
                });
                insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            }
            for (offset, chunk) in chunks(&plan.proctors) {
                let mut insert = QueryBuilder::new("INSERT INTO proctors (plan_id, id, position, name, login, password_hash) ");
                insert.push_values(chunk.iter().enumerate(), |mut row, (index, proctor)| {
                    row.push_bind(plan_id.to_owned())
                        .push_bind(proctor.id.as_str().to_owned())
                        .push_bind(position(offset + index))
                        .push_bind(proctor.name.clone())
                        .push_bind(proctor.login.clone())
                        .push_bind(proctor.password.0.clone());
                });
                insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            }
            let assignments: Vec<(&str, &str)> = plan
                .proctors
                .iter()
                .flat_map(|proctor| proctor.room_ids.iter().map(move |room| (proctor.id.as_str(), room.as_str())))
                .collect();
            for (_, chunk) in chunks(&assignments) {
                let mut insert = QueryBuilder::new("INSERT INTO proctor_rooms (plan_id, proctor_id, room_id) ");
                insert.push_values(chunk, |mut row, (proctor_id, room_id)| {
                    row.push_bind(plan_id.to_owned())
                        .push_bind((*proctor_id).to_owned())
                        .push_bind((*room_id).to_owned());
                });
                insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            }
            for (offset, chunk) in chunks(&plan.candidates) {
                let mut insert = QueryBuilder::new(
                    "INSERT INTO candidates (plan_id, id, position, reg_no, name, room_id, seat, access_code_hash, \
                     extra_time_s, state, runtime, updated_at_ms) ",
                );
                insert.push_values(chunk.iter().enumerate(), |mut row, (index, candidate)| {
                    row.push_bind(plan_id.to_owned())
                        .push_bind(candidate.id.as_str().to_owned())
                        .push_bind(position(offset + index))
                        .push_bind(candidate.reg_no.clone())
                        .push_bind(candidate.name.clone())
                        .push_bind(candidate.room_id.as_str().to_owned())
                        .push_bind(candidate.seat.clone())
                        .push_bind(candidate.access_code.0.clone())
                        .push_bind(candidate.extra_time_s)
                        .push_bind(CandidateState::Registered.as_str())
                        .push_bind(candidate_runtime.clone())
                        .push_bind(now.as_millis());
                });
                insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            }
            tx.commit().await.map_err(from_sqlx)?;
            Ok(outcome)
        })
    }
}

/// Splits rows into INSERT-sized chunks with the offset of each chunk.
fn chunks<T>(rows: &[T]) -> impl Iterator<Item = (usize, &[T])> {
    rows.chunks(ROWS_PER_INSERT)
        .enumerate()
        .map(|(index, chunk)| (index * ROWS_PER_INSERT, chunk))
}

/// A position column value; plans are far below `i64::MAX` rows.
fn position(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}
