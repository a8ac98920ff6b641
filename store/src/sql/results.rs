//! The read behind a plan's results: questions with their keys, every
//! candidate and every current answer — four queries whatever the size of
//! the plan, inside one read-only transaction so they see one snapshot.

use std::collections::HashMap;

use invigil_actors::domain::{CandidateRuntime, PlanId};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{CandidateResult, PlanResults, ResultAnswer};
use sqlx::Row;

use super::rows::{QUESTIONS_SQL, QuestionRow, from_json, id, question};
use super::{SqlStore, on_backend};
use crate::error::from_sqlx;

impl SqlStore {
    pub(crate) async fn read_plan_results(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<PlanResults>, StoreError> {
        on_backend!(self, pool => {
            // Postgres reads each statement at its own snapshot unless told
            // otherwise; SQLite (WAL) keeps the first read's snapshot until
            // the transaction ends.
            let mut tx = pool
                .begin_with(self.dialect("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", "BEGIN"))
                .await
                .map_err(from_sqlx)?;
            let Some(plan) = sqlx::query("SELECT title, runtime FROM plans WHERE id = $1")
                .bind(plan_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(from_sqlx)?
            else {
                return Ok(None);
            };
            let questions = sqlx::query_as::<_, QuestionRow>(QUESTIONS_SQL)
                .bind(plan_id.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(question)
                .collect::<Result<Vec<_>, StoreError>>()?;
            // Current answers, grouped by candidate, each group in question order.
            let mut answers: HashMap<String, Vec<ResultAnswer>> = HashMap::new();
            for row in sqlx::query(
                "SELECT a.candidate_id, a.question_id, a.value, a.version FROM answers a \
                 JOIN questions q ON q.plan_id = a.plan_id AND q.id = a.question_id \
                 WHERE a.plan_id = $1 ORDER BY q.position",
            )
            .bind(plan_id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?
            {
                answers.entry(row.get(0)).or_default().push(ResultAnswer {
                    question_id: id("question id", row.get(1))?,
                    value: from_json("answer value", row.get::<&str, _>(2))?,
                    version: row.get(3),
                });
            }
            let candidates = sqlx::query(
                "SELECT id, reg_no, name, room_id, seat, runtime FROM candidates WHERE plan_id = $1 ORDER BY position",
            )
            .bind(plan_id.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| {
                let candidate_id: String = row.get(0);
                let runtime: CandidateRuntime = from_json("candidate runtime", row.get::<&str, _>(5))?;
                Ok(CandidateResult {
                    answers: answers.remove(&candidate_id).unwrap_or_default(),
                    candidate_id: id("candidate id", candidate_id)?,
                    reg_no: row.get(1),
                    name: row.get(2),
                    room_id: id("room id", row.get(3))?,
                    seat: row.get(4),
                    state: runtime.state,
                    submitted_at: runtime.submitted_at,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
            tx.commit().await.map_err(from_sqlx)?;
            Ok(Some(PlanResults {
                plan_id: plan_id.clone(),
                title: plan.get(0),
                runtime: from_json("plan runtime", plan.get::<&str, _>(1))?,
                questions,
                candidates,
            }))
        })
    }
}
