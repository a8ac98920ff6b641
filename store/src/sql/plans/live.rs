//! Reads of the live exam: what a coordinator or a room actor restores.

use std::collections::HashMap;

use invigil_actors::domain::{
    CandidateId, CandidateRuntime, CandidateSpec, Incident, IncidentSource, IncidentStatus, PlanId,
    PlanSettings, QuestionId, RoomId, RoomSpec, Severity, Timestamp,
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
