//! Reads of a stored plan for the admin side: the whole plan as imported,
//! its counts per room, and one candidate's record.

use std::collections::{BTreeMap, HashMap};

use invigil_actors::domain::answer::text_digest;
use invigil_actors::domain::{
    CandidateId, CandidateRuntime, CandidateSpec, CandidateState, PlanId, PlanSettings, PlanSpec,
    ProctorSpec, QuestionId, RoomId, RoomSpec, Timestamp,
};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{CandidateRecord, PlanCounts, Redacted, RoomCounts, StoredPlan};
use sqlx::Row;

use crate::error::{corrupt, from_sqlx};
use crate::sql::rows::{QUESTIONS_SQL, QuestionRow, from_json, id, question};
use crate::sql::{SqlStore, on_backend};

impl SqlStore {
    /// `PlanStore::load_plan`: the plan as imported, with its runtime.
    pub(super) async fn read_plan(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<StoredPlan>, StoreError> {
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

    /// `PlanStore::plan_counts`: candidates by state and open incidents per room.
    pub(super) async fn read_plan_counts(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<PlanCounts>, StoreError> {
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

    /// `PlanStore::candidate_record`: a candidate with its sheet, room and plan.
    pub(super) async fn read_candidate_record(
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
}
