//! Monitoring and worker operations for the admin server and operators
//! (X-Api-Key): a plan's statistics (refreshed every few seconds by the
//! statistics worker), and the work queue's dead letters — inspect, replay.

use std::collections::BTreeMap;

use invigil_actors::ports::{PlanStatistics, WorkItem};
use invigil_actors::workers::stats;
use invigil_actors::workers::topics;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::admin::path_plan_id;
use crate::auth::AdminKey;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct MonitoringApi {
    pub state: AppState,
}

/// Answer counts of one question.
#[derive(Debug, Object)]
pub struct QuestionStatisticsView {
    pub question_id: String,
    pub kind: String,
    /// Candidates with a current answer.
    pub answered: i64,
    /// Choice id → candidates whose current answer includes it (choice questions).
    pub choices: BTreeMap<String, i64>,
}

/// Progress of one room.
#[derive(Debug, Object)]
pub struct RoomStatisticsView {
    pub room_id: String,
    pub candidates: i64,
    /// Candidate state → count.
    pub by_state: BTreeMap<String, i64>,
    /// Current answers of the room's candidates.
    pub answers: i64,
    /// Answers per candidate, on average.
    pub answers_per_candidate: f64,
    pub incidents_open: i64,
}

/// A plan's aggregates.
#[derive(Debug, Object)]
pub struct PlanStatisticsView {
    pub plan_id: String,
    /// When they were computed (server time).
    pub computed_at: chrono::DateTime<chrono::Utc>,
    pub candidates: i64,
    pub by_state: BTreeMap<String, i64>,
    pub answers: i64,
    pub questions: Vec<QuestionStatisticsView>,
    pub rooms: Vec<RoomStatisticsView>,
}

impl From<PlanStatistics> for PlanStatisticsView {
    fn from(statistics: PlanStatistics) -> Self {
        Self {
            plan_id: statistics.plan_id.to_string(),
            computed_at: crate::time::to_datetime(invigil_actors::domain::Timestamp::from_millis(
                statistics.computed_at,
            )),
            candidates: statistics.candidates,
            by_state: statistics.by_state,
            answers: statistics.answers,
            questions: statistics
                .questions
                .into_iter()
                .map(|question| QuestionStatisticsView {
                    question_id: question.question_id.to_string(),
                    kind: question.kind,
                    answered: question.answered,
                    choices: question.choices,
                })
                .collect(),
            rooms: statistics
                .rooms
                .into_iter()
                .map(|room| RoomStatisticsView {
                    room_id: room.room_id.to_string(),
                    candidates: room.candidates,
                    by_state: room.by_state,
                    answers: room.answers,
                    answers_per_candidate: if room.candidates > 0 {
                        room.answers as f64 / room.candidates as f64
                    } else {
                        0.0
                    },
                    incidents_open: room.incidents_open,
                })
                .collect(),
        }
    }
}

/// A parked queue entry.
#[derive(Debug, Object)]
pub struct DeadLetterView {
    /// The id to replay it by.
    pub id: String,
    pub deliveries: u32,
    /// The payload as text (JSON for invigil's own payloads), lossily decoded.
    pub payload: String,
}

impl From<WorkItem> for DeadLetterView {
    fn from(item: WorkItem) -> Self {
        Self {
            id: item.id,
            deliveries: item.deliveries,
            payload: String::from_utf8_lossy(&item.payload).into_owned(),
        }
    }
}

#[derive(Debug, Object)]
pub struct ReplayView {
    pub replayed: bool,
}

fn topic(name: &str) -> Result<&'static str, ApiError> {
    [topics::LOGS, topics::EVENTS, topics::WEBHOOKS]
        .into_iter()
        .find(|topic| *topic == name)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_topic",
                format!("no topic {name:?}; topics: logs, events, webhooks"),
            )
        })
}

#[OpenApi(prefix_path = "/api/v1")]
impl MonitoringApi {
    /// A plan's statistics: answer distribution per question, progress per
    /// room, candidates by state. Refreshed every few seconds while the plan
    /// is live; computed on demand otherwise.
    #[oai(
        path = "/admin/plans/:plan_id/statistics",
        method = "get",
        tag = "ApiTags::Admin"
    )]
    async fn plan_statistics(
        &self,
        _key: AdminKey,
        plan_id: Path<String>,
    ) -> Result<Json<PlanStatisticsView>, ApiError> {
        let plan_id = path_plan_id(&plan_id)?;
        if let Some(cached) = stats::cached(self.state.hot.as_ref(), &plan_id).await {
            return Ok(Json(cached.into()));
        }
        let computed = stats::refresh(
            self.state.statistics.as_ref(),
            self.state.hot.as_ref(),
            self.state.clock.as_ref(),
            &plan_id,
            std::time::Duration::from_secs(5),
        )
        .await
        .map_err(|error| ApiError::unavailable("store_unavailable", error))?
        .ok_or_else(|| ApiError::plan_not_found(&plan_id))?;
        Ok(Json(computed.into()))
    }

    /// Entries of a topic that kept failing and were parked (oldest first).
    #[oai(
        path = "/admin/queue/:topic/dead-letters",
        method = "get",
        tag = "ApiTags::Operations"
    )]
    async fn dead_letters(
        &self,
        _key: AdminKey,
        topic: Path<String>,
        /// At most this many (1–1000, default 100).
        limit: Query<Option<u32>>,
    ) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
        let topic = self::topic(&topic)?;
        let limit = limit.0.unwrap_or(100);
        if !(1..=1_000).contains(&limit) {
            return Err(
                ApiError::bad_request("invalid_limit", "limit must be between 1 and 1000")
                    .with_field("limit"),
            );
        }
        let items = self
            .state
            .queue
            .dead_letters(topic, limit as usize)
            .await
            .map_err(|error| ApiError::unavailable("queue_unavailable", error.to_string()))?;
        Ok(Json(items.into_iter().map(Into::into).collect()))
    }

    /// Publishes a dead letter again (after the cause was fixed).
    #[oai(
        path = "/admin/queue/:topic/dead-letters/:id/replay",
        method = "post",
        tag = "ApiTags::Operations"
    )]
    async fn replay_dead_letter(
        &self,
        _key: AdminKey,
        topic: Path<String>,
        id: Path<String>,
    ) -> Result<Json<ReplayView>, ApiError> {
        let topic = self::topic(&topic)?;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(
                ApiError::bad_request("invalid_id", "not a dead-letter id").with_field("id")
            );
        }
        let replayed = self
            .state
            .queue
            .replay_dead_letter(topic, &id)
            .await
            .map_err(|error| ApiError::unavailable("queue_unavailable", error.to_string()))?;
        if !replayed {
            return Err(ApiError::not_found(
                "dead_letter_not_found",
                format!("no dead letter {} in {topic}", id.0),
            ));
        }
        Ok(Json(ReplayView { replayed }))
    }
}
