//! [`PlanStore`] on sqlx: the import transaction and the reads built on plans.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use invigil_actors::domain::answer::text_digest;
use invigil_actors::domain::{
    CandidateId, CandidateRuntime, CandidateSpec, CandidateState, CredentialHash, PlanEvent,
    PlanId, PlanRuntime, PlanSettings, PlanSpec, PlanState, ProctorSpec, QuestionId, RoomId,
    RoomRuntime, RoomSpec, Timestamp,
};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{
    CandidateLogin, CandidateRecord, CandidateRuntimeRow, ImportOutcome, PlanCounts, PlanStore,
    ProctorLogin, Redacted, RoomCounts, RoomRuntimeRow, StoredPlan, VersionedPlanRuntime,
};
use invigil_actors::shard::Fence;
use sqlx::{QueryBuilder, Row};

use super::rows::{
    QUESTIONS_SQL, QuestionRow, candidate_runtime_json, from_json, id, question, to_json,
};
use super::{SqlStore, on_backend};
use crate::error::{corrupt, from_sqlx};
use invigil_actors::ports::FencedError;

/// Rows per multi-row INSERT: below SQLite's 32766 and Postgres' 65535
/// bind parameters for the widest table (candidates, 12 columns).
const ROWS_PER_INSERT: usize = 2_000;

#[async_trait]
impl PlanStore for SqlStore {
    async fn plan_digest(
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

    async fn import_plan(
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

    async fn load_plan(&self, plan_id: &PlanId) -> Result<Option<StoredPlan>, StoreError> {
        on_backend!(self, pool => {
            let Some(plan) = sqlx::query(
                "SELECT title, starts_at_ms, duration_s, settings, runtime, revision, created_at_ms, updated_at_ms \
                 FROM plans WHERE id = $1",
            )
            .bind(plan_id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let questions = sqlx::query_as::<_, QuestionRow>(QUESTIONS_SQL)
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(question)
                .collect::<Result<Vec<_>, StoreError>>()?;
            let rooms = sqlx::query("SELECT id, name, capacity FROM rooms WHERE plan_id = $1 ORDER BY position")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| Ok(RoomSpec { id: id("room id", row.get(0))?, name: row.get(1), capacity: row.get(2) }))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let mut assignments: HashMap<String, Vec<RoomId>> = HashMap::new();
            for row in sqlx::query("SELECT proctor_id, room_id FROM proctor_rooms WHERE plan_id = $1 ORDER BY room_id")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
            {
                assignments.entry(row.get(0)).or_default().push(id("room id", row.get(1))?);
            }
            let proctors = sqlx::query("SELECT id, name, login FROM proctors WHERE plan_id = $1 ORDER BY position")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| {
                    let proctor_id: String = row.get(0);
                    Ok(ProctorSpec {
                        room_ids: assignments.remove(&proctor_id).unwrap_or_default(),
                        id: id("proctor id", proctor_id)?,
                        name: row.get(1),
                        login: row.get(2),
                        password: Redacted,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let candidates = sqlx::query(
                "SELECT id, reg_no, name, room_id, seat, extra_time_s FROM candidates WHERE plan_id = $1 ORDER BY position",
            )
            .bind(plan_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| {
                Ok(CandidateSpec {
                    id: id("candidate id", row.get(0))?,
                    reg_no: row.get(1),
                    name: row.get(2),
                    room_id: id("room id", row.get(3))?,
                    seat: row.get(4),
                    access_code: Redacted,
                    extra_time_s: row.get(5),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            let settings: PlanSettings = from_json("plan settings", plan.get::<&str, _>(3))?;
            Ok(Some(StoredPlan {
                spec: PlanSpec {
                    id: plan_id.clone(),
                    title: plan.get(0),
                    starts_at: Timestamp::from_millis(plan.get(1)),
                    duration_s: plan.get(2),
                    settings,
                    questions,
                    rooms,
                    proctors,
                    candidates,
                },
                runtime: from_json("plan runtime", plan.get::<&str, _>(4))?,
                revision: plan.get(5),
                created_at: Timestamp::from_millis(plan.get(6)),
                updated_at: Timestamp::from_millis(plan.get(7)),
            }))
        })
    }

    async fn plan_runtime(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<VersionedPlanRuntime>, StoreError> {
        let row = on_backend!(self, pool => {
            sqlx::query("SELECT runtime, revision, duration_s FROM plans WHERE id = $1")
                .bind(plan_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
                .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1), row.get::<i64, _>(2)))
        });
        row.map(|(runtime, revision, duration_s)| {
            Ok(VersionedPlanRuntime {
                runtime: from_json("plan runtime", &runtime)?,
                revision,
                duration_s,
            })
        })
        .transpose()
    }

    async fn save_plan_runtime(
        &self,
        fence: Fence,
        plan_id: &PlanId,
        expected_revision: i64,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<i64, FencedError> {
        let runtime_json = to_json(runtime)?;
        let at = events.last().map_or(Timestamp::default(), PlanEvent::at);
        let details = events.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
        on_backend!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write_sql()).await.map_err(from_sqlx)?;
            let epoch: Option<i64> = sqlx::query_scalar(self.dialect(
                "SELECT epoch FROM shard_lease WHERE shard = $1 FOR SHARE",
                "SELECT epoch FROM shard_lease WHERE shard = $1",
            ))
            .bind(i64::from(fence.shard.get()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if epoch != Some(fence.epoch) {
                return Err(FencedError::StaleFence(fence));
            }
            let updated = sqlx::query(
                "UPDATE plans SET state = $1, runtime = $2, revision = revision + 1, updated_at_ms = $3 \
                 WHERE id = $4 AND revision = $5",
            )
            .bind(runtime.state.as_str())
            .bind(runtime_json.as_str())
            .bind(at.as_millis())
            .bind(plan_id.as_str())
            .bind(expected_revision)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlx)?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!("plan {plan_id} changed since revision {expected_revision}")).into());
            }
            let mut insert = QueryBuilder::new(
                "INSERT INTO transitions (plan_id, entity, entity_id, event, to_state, detail, shard, epoch, at_ms) ",
            );
            insert.push_values(events.iter().zip(&details), |mut row, (event, detail)| {
                row.push_bind(plan_id.as_str().to_owned())
                    .push_bind("plan")
                    .push_bind(plan_id.as_str().to_owned())
                    .push_bind(event.name())
                    .push_bind(runtime.state.as_str())
                    .push_bind(detail.clone())
                    .push_bind(i64::from(fence.shard.get()))
                    .push_bind(fence.epoch)
                    .push_bind(event.at().as_millis());
            });
            insert.build().execute(&mut *tx).await.map_err(from_sqlx)?;
            tx.commit().await.map_err(from_sqlx)?;
            Ok(expected_revision + 1)
        })
    }

    async fn plan_counts(&self, plan_id: &PlanId) -> Result<Option<PlanCounts>, StoreError> {
        on_backend!(self, pool => {
            let Some(plan) = sqlx::query("SELECT title, duration_s, runtime FROM plans WHERE id = $1")
                .bind(plan_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let mut by_room: HashMap<String, BTreeMap<CandidateState, i64>> = HashMap::new();
            for row in sqlx::query(
                "SELECT room_id, state, COUNT(*) FROM candidates WHERE plan_id = $1 GROUP BY room_id, state",
            )
            .bind(plan_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            {
                let state: String = row.get(1);
                let state = CandidateState::parse(&state).ok_or_else(|| corrupt("candidate state", &state))?;
                by_room.entry(row.get(0)).or_default().insert(state, row.get(2));
            }
            let mut open_by_room: HashMap<String, i64> = HashMap::new();
            for row in sqlx::query(
                "SELECT room_id, COUNT(*) FROM incidents WHERE plan_id = $1 AND status = 'open' GROUP BY room_id",
            )
            .bind(plan_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            {
                open_by_room.insert(row.get(0), row.get(1));
            }
            let answers_saved: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM answer_journal WHERE plan_id = $1")
                .bind(plan_id.as_str())
                .fetch_one(pool)
                .await
                .map_err(from_sqlx)?;
            let rooms = sqlx::query("SELECT id, name, capacity, runtime FROM rooms WHERE plan_id = $1 ORDER BY position")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| {
                    let room_id: String = row.get(0);
                    Ok(RoomCounts {
                        candidates_by_state: by_room.remove(&room_id).unwrap_or_default(),
                        incidents_open: open_by_room.get(&room_id).copied().unwrap_or(0),
                        room_id: id("room id", room_id)?,
                        name: row.get(1),
                        capacity: row.get(2),
                        runtime: from_json("room runtime", row.get::<&str, _>(3))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some(PlanCounts {
                plan_id: plan_id.clone(),
                title: plan.get(0),
                duration_s: plan.get(1),
                runtime: from_json("plan runtime", plan.get::<&str, _>(2))?,
                incidents_open: open_by_room.values().sum(),
                rooms,
                answers_saved,
            }))
        })
    }

    async fn plan_results(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<invigil_actors::ports::PlanResults>, StoreError> {
        self.read_plan_results(plan_id).await
    }

    async fn room_runtimes(&self, plan_id: &PlanId) -> Result<Vec<RoomRuntimeRow>, StoreError> {
        on_backend!(self, pool => {
            sqlx::query("SELECT id, runtime, revision FROM rooms WHERE plan_id = $1 ORDER BY position")
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| {
                    Ok(RoomRuntimeRow {
                        room_id: id("room id", row.get(0))?,
                        runtime: from_json("room runtime", row.get::<&str, _>(1))?,
                        revision: row.get(2),
                    })
                })
                .collect()
        })
    }

    async fn candidate_runtimes(
        &self,
        plan_id: &PlanId,
    ) -> Result<Vec<CandidateRuntimeRow>, StoreError> {
        on_backend!(self, pool => {
            sqlx::query(
                "SELECT id, room_id, extra_time_s, runtime, revision FROM candidates WHERE plan_id = $1 ORDER BY position",
            )
            .bind(plan_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| {
                Ok(CandidateRuntimeRow {
                    candidate_id: id("candidate id", row.get(0))?,
                    room_id: id("room id", row.get(1))?,
                    extra_time_s: row.get(2),
                    runtime: from_json("candidate runtime", row.get::<&str, _>(3))?,
                    revision: row.get(4),
                })
            })
            .collect()
        })
    }

    async fn candidate_login(
        &self,
        plan_id: &PlanId,
        reg_no: &str,
    ) -> Result<Option<CandidateLogin>, StoreError> {
        on_backend!(self, pool => {
            let Some(row) = sqlx::query(
                "SELECT c.id, c.room_id, c.name, c.access_code_hash, c.extra_time_s, c.runtime, c.revision, \
                        p.runtime, p.duration_s, p.settings \
                 FROM candidates c JOIN plans p ON p.id = c.plan_id \
                 WHERE c.plan_id = $1 AND c.reg_no = $2",
            )
            .bind(plan_id.as_str())
            .bind(reg_no)
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let settings: PlanSettings = from_json("plan settings", row.get::<&str, _>(9))?;
            Ok(Some(CandidateLogin {
                plan_id: plan_id.clone(),
                candidate_id: id("candidate id", row.get(0))?,
                room_id: id("room id", row.get(1))?,
                name: row.get(2),
                access_code_hash: CredentialHash(row.get(3)),
                extra_time_s: row.get(4),
                runtime: from_json("candidate runtime", row.get::<&str, _>(5))?,
                revision: row.get(6),
                plan_runtime: from_json("plan runtime", row.get::<&str, _>(7))?,
                duration_s: row.get(8),
                late_entry_s: settings.late_entry_s,
            }))
        })
    }

    async fn candidate_record(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<CandidateRecord>, StoreError> {
        on_backend!(self, pool => {
            let Some(row) = sqlx::query(
                "SELECT c.reg_no, c.name, c.room_id, c.seat, c.extra_time_s, c.runtime, r.runtime, p.runtime, \
                        p.duration_s, p.settings, c.revision \
                 FROM candidates c \
                 JOIN rooms r ON r.plan_id = c.plan_id AND r.id = c.room_id \
                 JOIN plans p ON p.id = c.plan_id \
                 WHERE c.plan_id = $1 AND c.id = $2",
            )
            .bind(plan_id.as_str())
            .bind(candidate_id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let mut runtime: CandidateRuntime = from_json("candidate runtime", row.get::<&str, _>(5))?;
            for answer in sqlx::query(
                "SELECT question_id, version, cseq, value FROM answers WHERE plan_id = $1 AND candidate_id = $2",
            )
            .bind(plan_id.as_str())
            .bind(candidate_id.as_str())
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            {
                let question_id: QuestionId = id("question id", answer.get(0))?;
                let digest = text_digest(answer.get::<&str, _>(3));
                runtime.sheet.record(&question_id, answer.get(1), answer.get(2), digest);
            }
            let last_cseq: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(cseq) FROM answer_journal WHERE plan_id = $1 AND candidate_id = $2",
            )
            .bind(plan_id.as_str())
            .bind(candidate_id.as_str())
            .fetch_one(pool)
            .await
            .map_err(from_sqlx)?;
            runtime.sheet.raise_last_cseq(last_cseq.unwrap_or(0));
            Ok(Some(CandidateRecord {
                candidate_id: candidate_id.clone(),
                reg_no: row.get(0),
                name: row.get(1),
                room_id: id("room id", row.get(2))?,
                seat: row.get(3),
                extra_time_s: row.get(4),
                runtime,
                revision: row.get(10),
                room_runtime: from_json("room runtime", row.get::<&str, _>(6))?,
                plan_runtime: from_json("plan runtime", row.get::<&str, _>(7))?,
                duration_s: row.get(8),
                settings: from_json("plan settings", row.get::<&str, _>(9))?,
            }))
        })
    }

    async fn plan_context(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<invigil_actors::ports::PlanContext>, StoreError> {
        self.read_plan_context(plan_id).await
    }

    async fn load_room(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<Option<invigil_actors::ports::RoomSnapshot>, StoreError> {
        self.read_room(plan_id, room_id).await
    }

    async fn active_plans(&self) -> Result<Vec<PlanId>, StoreError> {
        self.read_active_plans().await
    }

    async fn candidate_room(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<RoomId>, StoreError> {
        self.read_candidate_room(plan_id, candidate_id).await
    }

    async fn incident(
        &self,
        plan_id: &PlanId,
        incident_id: &str,
    ) -> Result<Option<invigil_actors::domain::Incident>, StoreError> {
        self.read_incident(plan_id, incident_id).await
    }

    async fn proctor_logins(&self, login: &str) -> Result<Vec<ProctorLogin>, StoreError> {
        on_backend!(self, pool => {
            let rows = sqlx::query(
                "SELECT pr.plan_id, pr.id, pr.name, pr.password_hash, p.state, p.starts_at_ms, p.import_digest \
                 FROM proctors pr JOIN plans p ON p.id = pr.plan_id \
                 WHERE pr.login = $1 AND p.state <> 'finalized'",
            )
            .bind(login)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?;
            let mut logins = Vec::with_capacity(rows.len());
            for row in rows {
                let plan_id: String = row.get(0);
                let proctor_id: String = row.get(1);
                let room_ids = sqlx::query_scalar::<_, String>(
                    "SELECT room_id FROM proctor_rooms WHERE plan_id = $1 AND proctor_id = $2 ORDER BY room_id",
                )
                .bind(plan_id.as_str())
                .bind(proctor_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|room| id("room id", room))
                .collect::<Result<Vec<_>, _>>()?;
                let state: String = row.get(4);
                logins.push(ProctorLogin {
                    plan_id: id("plan id", plan_id)?,
                    proctor_id: id("proctor id", proctor_id)?,
                    name: row.get(2),
                    password_hash: CredentialHash(row.get(3)),
                    room_ids,
                    plan_state: parse_plan_state(&state)?,
                    starts_at: Timestamp::from_millis(row.get(5)),
                    plan_digest: row.get(6),
                });
            }
            Ok(logins)
        })
    }
}

fn parse_plan_state(state: &str) -> Result<PlanState, StoreError> {
    PlanState::parse(state).ok_or_else(|| corrupt("plan state", state))
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

/// Reads of the live exam: what a coordinator or a room actor restores.
mod live {
    use std::collections::HashMap;

    use invigil_actors::domain::{
        CandidateId, CandidateRuntime, CandidateSpec, Incident, IncidentSource, IncidentStatus,
        PlanId, PlanSettings, QuestionId, RoomId, RoomSpec, Severity, Timestamp,
    };
    use invigil_actors::error::StoreError;
    use invigil_actors::ports::{PlanContext, Redacted, RoomSnapshot, StoredCandidate};
    use sqlx::Row;

    use super::super::rows::{QUESTIONS_SQL, QuestionRow, from_json, id, question};
    use super::super::{SqlStore, on_backend};
    use crate::error::{corrupt, from_sqlx};

    const INCIDENT_COLUMNS: &str = "id, plan_id, room_id, candidate_id, kind, source, severity, status, note, action, \
                                    created_at_ms, resolved_at_ms, resolved_by";

    macro_rules! incident_row {
        ($row:expr) => {{
            let row = $row;
            let kind: String = row.get(4);
            let source: String = row.get(5);
            let severity: String = row.get(6);
            let status: String = row.get(7);
            let candidate: Option<String> = row.get(3);
            let resolved_by: Option<String> = row.get(12);
            Ok::<_, StoreError>(Incident {
                id: row.get(0),
                plan_id: id("plan id", row.get(1))?,
                room_id: id("room id", row.get(2))?,
                candidate_id: candidate
                    .map(|candidate| id("candidate id", candidate))
                    .transpose()?,
                kind,
                source: IncidentSource::parse(&source)
                    .ok_or_else(|| corrupt("incident source", &source))?,
                severity: Severity::parse(&severity)
                    .ok_or_else(|| corrupt("incident severity", &severity))?,
                status: IncidentStatus::parse(&status)
                    .ok_or_else(|| corrupt("incident status", &status))?,
                note: row.get(8),
                action: row.get(9),
                created_at: Timestamp::from_millis(row.get(10)),
                resolved_at: row.get::<Option<i64>, _>(11).map(Timestamp::from_millis),
                resolved_by: resolved_by
                    .map(|proctor| id("proctor id", proctor))
                    .transpose()?,
            })
        }};
    }

    impl SqlStore {
        pub(crate) async fn read_plan_context(
            &self,
            plan_id: &PlanId,
        ) -> Result<Option<PlanContext>, StoreError> {
            on_backend!(self, pool => {
                let Some(plan) = sqlx::query(
                    "SELECT title, duration_s, settings, runtime, revision, import_digest FROM plans WHERE id = $1",
                )
                .bind(plan_id.as_str())
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
                else {
                    return Ok(None);
                };
                let questions = sqlx::query_as::<_, QuestionRow>(QUESTIONS_SQL)
                .bind(plan_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(question)
                .collect::<Result<Vec<_>, StoreError>>()?;
                let rooms = sqlx::query("SELECT id, name, capacity FROM rooms WHERE plan_id = $1 ORDER BY position")
                    .bind(plan_id.as_str())
                    .fetch_all(pool)
                    .await
                    .map_err(from_sqlx)?
                    .into_iter()
                    .map(|row| Ok(RoomSpec { id: id("room id", row.get(0))?, name: row.get(1), capacity: row.get(2) }))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let settings: PlanSettings = from_json("plan settings", plan.get::<&str, _>(2))?;
                Ok(Some(PlanContext {
                    plan_id: plan_id.clone(),
                    title: plan.get(0),
                    duration_s: plan.get(1),
                    settings,
                    questions,
                    rooms,
                    runtime: from_json("plan runtime", plan.get::<&str, _>(3))?,
                    revision: plan.get(4),
                    digest: plan.get(5),
                }))
            })
        }

        pub(crate) async fn read_room(
            &self,
            plan_id: &PlanId,
            room_id: &RoomId,
        ) -> Result<Option<RoomSnapshot>, StoreError> {
            on_backend!(self, pool => {
                let Some(room) = sqlx::query("SELECT name, capacity, runtime, revision FROM rooms WHERE plan_id = $1 AND id = $2")
                    .bind(plan_id.as_str())
                    .bind(room_id.as_str())
                    .fetch_optional(pool)
                    .await
                    .map_err(from_sqlx)?
                else {
                    return Ok(None);
                };
                let mut sheets: HashMap<String, CandidateRuntime> = HashMap::new();
                for row in sqlx::query(
                    "SELECT a.candidate_id, a.question_id, a.version, a.cseq, a.value FROM answers a \
                     JOIN candidates c ON c.plan_id = a.plan_id AND c.id = a.candidate_id \
                     WHERE c.plan_id = $1 AND c.room_id = $2",
                )
                .bind(plan_id.as_str())
                .bind(room_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                {
                    let question_id: QuestionId = id("question id", row.get(1))?;
                    let digest = invigil_actors::domain::answer::text_digest(row.get::<&str, _>(4));
                    sheets.entry(row.get(0)).or_default().sheet.record(&question_id, row.get(2), row.get(3), digest);
                }
                for row in sqlx::query(
                    "SELECT j.candidate_id, MAX(j.cseq) FROM answer_journal j \
                     JOIN candidates c ON c.plan_id = j.plan_id AND c.id = j.candidate_id \
                     WHERE c.plan_id = $1 AND c.room_id = $2 GROUP BY j.candidate_id",
                )
                .bind(plan_id.as_str())
                .bind(room_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                {
                    sheets.entry(row.get(0)).or_default().sheet.raise_last_cseq(row.get(1));
                }
                let candidates = sqlx::query(
                    "SELECT id, reg_no, name, seat, extra_time_s, runtime, revision FROM candidates \
                     WHERE plan_id = $1 AND room_id = $2 ORDER BY position",
                )
                .bind(plan_id.as_str())
                .bind(room_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| {
                    let candidate_id: String = row.get(0);
                    let mut runtime: CandidateRuntime = from_json("candidate runtime", row.get::<&str, _>(5))?;
                    if let Some(stored) = sheets.remove(&candidate_id) {
                        runtime.sheet = stored.sheet;
                    }
                    Ok(StoredCandidate {
                        spec: CandidateSpec {
                            id: id::<CandidateId>("candidate id", candidate_id)?,
                            reg_no: row.get(1),
                            name: row.get(2),
                            room_id: room_id.clone(),
                            seat: row.get(3),
                            access_code: Redacted,
                            extra_time_s: row.get(4),
                        },
                        runtime,
                        revision: row.get(6),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
                let open_incidents = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE plan_id = $1 AND room_id = $2 AND status = 'open' \
                     ORDER BY created_at_ms"
                )))
                .bind(plan_id.as_str())
                .bind(room_id.as_str())
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .iter()
                .map(|row| incident_row!(row))
                .collect::<Result<Vec<_>, StoreError>>()?;
                Ok(Some(RoomSnapshot {
                    spec: RoomSpec { id: room_id.clone(), name: room.get(0), capacity: room.get(1) },
                    runtime: from_json("room runtime", room.get::<&str, _>(2))?,
                    revision: room.get(3),
                    candidates,
                    open_incidents,
                }))
            })
        }

        pub(crate) async fn read_active_plans(&self) -> Result<Vec<PlanId>, StoreError> {
            on_backend!(self, pool => {
                sqlx::query_scalar::<_, String>(
                    // Also ended plans with candidates still sitting: a room
                    // missed the end (index candidates_not_done keeps this
                    // cheap once everyone is done).
                    "SELECT id FROM plans WHERE state IN ('open', 'in_progress', 'paused') \
                        OR (state IN ('ended', 'finalized') AND EXISTS (SELECT 1 FROM candidates c \
                            WHERE c.plan_id = plans.id AND c.state IN ('registered', 'checked_in', 'testing', 'paused'))) \
                     ORDER BY id",
                )
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|plan| id("plan id", plan))
                .collect()
            })
        }

        pub(crate) async fn read_candidate_room(
            &self,
            plan_id: &PlanId,
            candidate_id: &CandidateId,
        ) -> Result<Option<RoomId>, StoreError> {
            let room: Option<String> = on_backend!(self, pool => {
                sqlx::query_scalar("SELECT room_id FROM candidates WHERE plan_id = $1 AND id = $2")
                    .bind(plan_id.as_str())
                    .bind(candidate_id.as_str())
                    .fetch_optional(pool)
                    .await
                    .map_err(from_sqlx)?
            });
            room.map(|room| id("room id", room)).transpose()
        }

        pub(crate) async fn read_incident(
            &self,
            plan_id: &PlanId,
            incident_id: &str,
        ) -> Result<Option<Incident>, StoreError> {
            on_backend!(self, pool => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE plan_id = $1 AND id = $2"
                )))
                .bind(plan_id.as_str())
                .bind(incident_id)
                .fetch_optional(pool)
                .await
                .map_err(from_sqlx)?
                .as_ref()
                .map(|row| incident_row!(row))
                .transpose()
            })
        }
    }
}
