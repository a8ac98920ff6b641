//! A candidate's own exam (Bearer, role candidate). Every route is a
//! message to the candidate's room actor — the same path as the WebSocket.

use invigil_actors::domain::{QuestionId, RoomId};
use invigil_actors::live::wire::CandidateView;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{CandidateToken, Claims};
use crate::body::{Body, RequestBodyType};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct CandidateApi {
    pub state: AppState,
}

/// The latest durable version of one answer.
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
    /// Who holds the pause: `plan`, `room` or `proctor`.
    pub paused_by: Option<String>,
    /// Why the sheet was submitted: `candidate`, `time_up`, `plan_ended`, `proctor`.
    pub submit_reason: Option<String>,
    pub remaining_s: i64,
    /// When time runs out if nothing changes; absent while paused or not started.
    pub ends_at: Option<String>,
    pub extra_time_s: i64,
    pub warnings: i64,
    /// The highest client sequence number accepted so far.
    pub last_cseq: i64,
    pub answers: Vec<AnswerVersion>,
    pub server_time: String,
}

impl From<CandidateView> for CandidateMe {
    fn from(view: CandidateView) -> Self {
        Self {
            candidate_id: view.candidate_id,
            plan_id: view.plan_id,
            room_id: view.room_id,
            name: view.name,
            seat: view.seat,
            state: view.state.to_string(),
            exam_state: view.exam_state.to_string(),
            paused_by: view.paused_by.map(str::to_string),
            submit_reason: view.submit_reason.map(str::to_string),
            remaining_s: view.remaining_s,
            ends_at: view.ends_at,
            extra_time_s: view.extra_time_s,
            warnings: view.warnings,
            last_cseq: view.last_cseq,
            answers: view
                .answers
                .into_iter()
                .map(|(question_id, version)| AnswerVersion {
                    question_id,
                    version,
                })
                .collect(),
            server_time: view.server_time,
        }
    }
}

/// `PUT /api/v1/candidate/answers/{question_id}`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct AnswerBody {
    /// The answer: a choice id (single), choice ids (multi), a text (text), or null to clear.
    pub value: Value,
    /// Strictly increasing per candidate; a repeat is acknowledged again with the same version.
    pub cseq: i64,
}

impl RequestBodyType for AnswerBody {}

/// Sent once the answer is durable.
#[derive(Debug, Object)]
pub struct AnswerAck {
    pub cseq: i64,
    pub version: i64,
}

#[derive(Debug, Object)]
pub struct SubmitResult {
    pub state: String,
}

/// The candidate's room, from their token.
pub fn candidate_room(claims: &Claims) -> Result<&RoomId, ApiError> {
    claims
        .rooms
        .first()
        .ok_or_else(|| ApiError::unauthorized("invalid_token", "the token names no room"))
}

#[OpenApi(prefix_path = "/api/v1")]
impl CandidateApi {
    /// Exam state, remaining time and the answered questions with their versions.
    #[oai(path = "/candidate/me", method = "get", tag = "ApiTags::Candidate")]
    async fn me(&self, token: CandidateToken) -> Result<Json<CandidateMe>, ApiError> {
        let claims = token.0;
        let view = self
            .state
            .exam
            .candidate_view(
                &claims.plan,
                candidate_room(&claims)?,
                &claims.candidate_id()?,
            )
            .await?;
        Ok(Json(view.into()))
    }

    /// Save an answer; answered only once it is durable.
    #[oai(
        path = "/candidate/answers/:question_id",
        method = "put",
        tag = "ApiTags::Candidate"
    )]
    async fn answer(
        &self,
        token: CandidateToken,
        question_id: Path<String>,
        body: Body<AnswerBody>,
    ) -> Result<Json<AnswerAck>, ApiError> {
        let claims = token.0;
        let question_id = QuestionId::parse(question_id.0.as_str()).map_err(|error| {
            ApiError::bad_request("invalid_id", error.to_string()).with_field("question_id")
        })?;
        let receipt = self
            .state
            .exam
            .answer(
                &claims.plan,
                candidate_room(&claims)?,
                &claims.candidate_id()?,
                &question_id,
                &body.0.value,
                body.0.cseq,
            )
            .await?;
        Ok(Json(AnswerAck {
            cseq: receipt.cseq,
            version: receipt.version,
        }))
    }

    /// Submit the exam.
    #[oai(
        path = "/candidate/submit",
        method = "post",
        tag = "ApiTags::Candidate"
    )]
    async fn submit(&self, token: CandidateToken) -> Result<Json<SubmitResult>, ApiError> {
        let claims = token.0;
        let state = self
            .state
            .exam
            .submit(
                &claims.plan,
                candidate_room(&claims)?,
                &claims.candidate_id()?,
            )
            .await?;
        Ok(Json(SubmitResult {
            state: state.as_str().to_string(),
        }))
    }
}
