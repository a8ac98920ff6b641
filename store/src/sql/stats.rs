//! [`StatisticsStore`] on sqlx: a plan's monitoring aggregates in four
//! grouped queries, whatever its size — candidates by room and state,
//! current answers by room, answer values by question (choice questions;
//! values of text questions are counted, not grouped) and open incidents by
//! room.

use std::collections::BTreeMap;

use async_trait::async_trait;
use invigil_actors::domain::{PlanId, Timestamp};
use invigil_actors::error::StoreError;
use invigil_actors::ports::{
    PlanStatistics, PlanStore, QuestionStatistics, RoomStatistics, StatisticsStore,
};
use serde_json::Value;
use sqlx::Row;

use super::{SqlStore, on_backend};
use crate::error::from_sqlx;

#[async_trait]
impl StatisticsStore for SqlStore {
    async fn plan_statistics(
        &self,
        plan_id: &PlanId,
        now: Timestamp,
    ) -> Result<Option<PlanStatistics>, StoreError> {
        let Some(context) = self.plan_context(plan_id).await? else {
            return Ok(None);
        };
        let plan = plan_id.as_str();
        let (by_state, answers_by_room, values, incidents) = on_backend!(self, pool => {
            let by_state: Vec<(String, String, i64)> = sqlx::query(
                "SELECT room_id, state, COUNT(*) FROM candidates WHERE plan_id = $1 GROUP BY room_id, state",
            )
            .bind(plan)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
            let answers_by_room: Vec<(String, i64)> = sqlx::query(
                "SELECT c.room_id, COUNT(*) FROM answers a \
                 JOIN candidates c ON c.plan_id = a.plan_id AND c.id = a.candidate_id \
                 WHERE a.plan_id = $1 GROUP BY c.room_id",
            )
            .bind(plan)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
            // Choice answers group into few distinct values; text answers
            // are only counted.
            let values: Vec<(String, Option<String>, i64)> = sqlx::query(
                "SELECT a.question_id, CASE WHEN q.kind = 'text' THEN NULL ELSE a.value END AS value, COUNT(*) \
                 FROM answers a JOIN questions q ON q.plan_id = a.plan_id AND q.id = a.question_id \
                 WHERE a.plan_id = $1 GROUP BY a.question_id, 2",
            )
            .bind(plan)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
            let incidents: Vec<(String, i64)> = sqlx::query(
                "SELECT room_id, COUNT(*) FROM incidents WHERE plan_id = $1 AND status = 'open' GROUP BY room_id",
            )
            .bind(plan)
            .fetch_all(pool)
            .await
            .map_err(from_sqlx)?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
            (by_state, answers_by_room, values, incidents)
        });

        let mut rooms: Vec<RoomStatistics> = context
            .rooms
            .iter()
            .map(|room| RoomStatistics {
                room_id: room.id.clone(),
                candidates: 0,
                by_state: BTreeMap::new(),
                answers: 0,
                incidents_open: 0,
            })
            .collect();
        let position: BTreeMap<String, usize> = rooms
            .iter()
            .enumerate()
            .map(|(index, room)| (room.room_id.to_string(), index))
            .collect();
        let mut plan_by_state = BTreeMap::new();
        let mut candidates = 0;
        for (room_id, state, count) in by_state {
            candidates += count;
            *plan_by_state.entry(state.clone()).or_insert(0) += count;
            if let Some(&index) = position.get(&room_id) {
                rooms[index].candidates += count;
                *rooms[index].by_state.entry(state).or_insert(0) += count;
            }
        }
        let mut answers = 0;
        for (room_id, count) in answers_by_room {
            answers += count;
            if let Some(&index) = position.get(&room_id) {
                rooms[index].answers = count;
            }
        }
        for (room_id, count) in incidents {
            if let Some(&index) = position.get(&room_id) {
                rooms[index].incidents_open = count;
            }
        }

        let mut questions: Vec<QuestionStatistics> = context
            .questions
            .iter()
            .map(|question| QuestionStatistics {
                question_id: question.id.clone(),
                kind: question.kind.as_str().to_string(),
                answered: 0,
                choices: question
                    .choices
                    .iter()
                    .map(|choice| (choice.clone(), 0))
                    .collect(),
            })
            .collect();
        let question_index: BTreeMap<String, usize> = questions
            .iter()
            .enumerate()
            .map(|(index, question)| (question.question_id.to_string(), index))
            .collect();
        for (question_id, value, count) in values {
            let Some(&index) = question_index.get(&question_id) else {
                continue;
            };
            let question = &mut questions[index];
            question.answered += count;
            let Some(value) = value else { continue };
            let chosen: Vec<String> = match serde_json::from_str::<Value>(&value) {
                Ok(Value::String(choice)) => vec![choice],
                Ok(Value::Array(choices)) => choices
                    .into_iter()
                    .filter_map(|choice| choice.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            for choice in chosen {
                if let Some(tally) = question.choices.get_mut(&choice) {
                    *tally += count;
                }
            }
        }
        Ok(Some(PlanStatistics {
            plan_id: plan_id.clone(),
            computed_at: now.as_millis(),
            candidates,
            by_state: plan_by_state,
            answers,
            questions,
            rooms,
        }))
    }
}
