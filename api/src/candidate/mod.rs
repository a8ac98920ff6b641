//! A candidate's own exam (Bearer, role candidate).

use chrono::{DateTime, Utc};
use invigil_actors::domain::{CandidateState, ExamContext, ExamRules};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::auth::CandidateToken;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;
use crate::time::to_datetime;

pub struct CandidateApi {
    pub state: AppState,
}

/// The latest saved version of one answer.
#[derive(Debug, Object)]
pub struct AnswerVersion {
    pub question_id: String,
    pub version: i64,
}

/// The candidate's view of their exam.
#[derive(Debug, Object)]
pub struct CandidateMe {
    pub candidate_id: String,
    pub plan_id: String,
    pub room_id: String,
    pub name: String,
    pub seat: Option<String>,
    /// The candidate's state (registered … submitted).
    pub state: String,
    /// What the candidate experiences now: `paused` while the plan, the room
    /// or the candidate is paused, otherwise `state`.
    pub exam_state: String,
    pub remaining_s: i64,
    /// When time runs out if nothing changes; absent while paused or not started.
    pub ends_at: Option<DateTime<Utc>>,
    pub extra_time_s: i64,
    /// The highest client sequence number accepted so far.
    pub last_cseq: i64,
    pub answers: Vec<AnswerVersion>,
    pub server_time: DateTime<Utc>,
}

#[OpenApi(prefix_path = "/api/v1")]
impl CandidateApi {
    /// Exam state, remaining time and the answered questions with their versions.
    #[oai(path = "/candidate/me", method = "get", tag = "ApiTags::Candidate")]
    async fn me(&self, token: CandidateToken) -> Result<Json<CandidateMe>, ApiError> {
        let claims = token.0;
        let candidate_id = claims.candidate_id()?;
        let record = self
            .state
            .plans
            .candidate_record(&claims.plan, &candidate_id)
            .await?
            .ok_or_else(|| {
                ApiError::unauthorized("invalid_token", "the candidate no longer exists")
            })?;
        let now = self.state.clock.now();
        let rules = ExamRules::without_questions(record.duration_s, record.settings.late_entry_s);
        let context = ExamContext {
            rules: &rules,
            plan: &record.plan_runtime,
            room: &record.room_runtime,
            extra_time_s: record.extra_time_s,
        };
        let clock = record.runtime.clock(&context);
        let exam_state = if record.runtime.state == CandidateState::Testing && clock.is_frozen() {
            CandidateState::Paused
        } else {
            record.runtime.state
        };
        Ok(Json(CandidateMe {
            candidate_id: candidate_id.to_string(),
            plan_id: claims.plan.to_string(),
            room_id: record.room_id.to_string(),
            name: record.name,
            seat: record.seat,
            state: record.runtime.state.as_str().to_string(),
            exam_state: exam_state.as_str().to_string(),
            remaining_s: clock.remaining_s(now),
            ends_at: clock.ends_at(now).map(to_datetime),
            extra_time_s: record.extra_time_s,
            last_cseq: record.runtime.sheet.last_cseq(),
            answers: record
                .runtime
                .sheet
                .answered()
                .map(|(question_id, saved)| AnswerVersion {
                    question_id: question_id.to_string(),
                    version: saved.version,
                })
                .collect(),
            server_time: to_datetime(now),
        }))
    }
}
