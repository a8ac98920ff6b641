//! Grouped counts of a plan for the statistics worker.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::domain::{PlanId, QuestionId, RoomId, Timestamp};
use crate::error::StoreError;

/// Answer counts of one question: per choice (single, multi), and how many
/// candidates answered at all.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuestionStatistics {
    pub question_id: QuestionId,
    pub kind: String,
    pub answered: i64,
    /// Choice id → candidates whose current answer includes it.
    pub choices: BTreeMap<String, i64>,
}

/// Progress of one room.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoomStatistics {
    pub room_id: RoomId,
    pub candidates: i64,
    pub by_state: BTreeMap<String, i64>,
    /// Current answers of the room's candidates, all questions.
    pub answers: i64,
    pub incidents_open: i64,
}

/// A plan's aggregates for the monitoring views.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanStatistics {
    pub plan_id: PlanId,
    /// Server time (ms) they were computed at.
    pub computed_at: i64,
    pub candidates: i64,
    pub by_state: BTreeMap<String, i64>,
    pub answers: i64,
    pub questions: Vec<QuestionStatistics>,
    pub rooms: Vec<RoomStatistics>,
}

/// Aggregates over the durable store.
#[async_trait]
pub trait StatisticsStore: Send + Sync + 'static {
    /// `None` for an unknown plan. A handful of grouped queries, whatever
    /// the plan's size.
    async fn plan_statistics(
        &self,
        plan_id: &PlanId,
        now: Timestamp,
    ) -> Result<Option<PlanStatistics>, StoreError>;
}
