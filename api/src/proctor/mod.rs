//! A proctor's rooms (Bearer, role proctor; only assigned rooms). Commands
//! and incidents go to the room actor — the same path as the dashboard socket.

pub mod dto;

use invigil_actors::domain::{CandidateId, IncidentStatus, RoomId};
use invigil_actors::live::room::{ProctorAction, RoomAction};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use self::dto::{
    CandidateActionName, CandidateCommandBody, CommandResult, IncidentBody, IncidentDto,
    IncidentReview, ReviewStatus, RoomActionName, RoomCommandBody, RoomDetail,
};
use crate::admin::dto::RoomStatusView;
use crate::auth::{Claims, ProctorToken};
use crate::body::Body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;
use crate::views::room_statuses;

pub struct ProctorApi {
    pub state: AppState,
}

#[derive(Debug, Object)]
pub struct ProctorRooms {
    pub plan_id: String,
    pub rooms: Vec<RoomStatusView>,
}

/// Checks that the room is one of the proctor's.
pub fn assigned_room(claims: &Claims, room_id: &str) -> Result<RoomId, ApiError> {
    let room_id = RoomId::parse(room_id).map_err(|error| {
        ApiError::bad_request("invalid_id", error.to_string()).with_field("room_id")
    })?;
    if claims.reaches_room(&room_id) {
        Ok(room_id)
    } else {
        Err(ApiError::forbidden(
            "room_not_assigned",
            format!("room {room_id} is not one of your rooms"),
        ))
    }
}

/// Finds a candidate's room and checks that it is one of the proctor's.
pub async fn candidate_room(
    state: &AppState,
    claims: &Claims,
    candidate_id: &str,
) -> Result<(CandidateId, RoomId), ApiError> {
    let candidate_id = CandidateId::parse(candidate_id).map_err(|error| {
        ApiError::bad_request("invalid_id", error.to_string()).with_field("candidate_id")
    })?;
    let room_id = state
        .plans
        .candidate_room(&claims.plan, &candidate_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(
                "candidate_not_found",
                format!("candidate {candidate_id} is not in this plan"),
            )
        })?;
    if !claims.reaches_room(&room_id) {
        return Err(ApiError::forbidden(
            "candidate_not_in_your_rooms",
            format!("candidate {candidate_id} sits in a room that is not yours"),
        ));
    }
    Ok((candidate_id, room_id))
}

fn extension(extend_s: Option<i64>) -> Result<i64, ApiError> {
    extend_s.ok_or_else(|| {
        ApiError::unprocessable("missing_field", "extend needs extend_s").with_field("extend_s")
    })
}

#[OpenApi(prefix_path = "/api/v1")]
impl ProctorApi {
    /// The rooms assigned to this proctor, with counts by candidate state and connection.
    #[oai(path = "/proctor/rooms", method = "get", tag = "ApiTags::Proctor")]
    async fn rooms(&self, token: ProctorToken) -> Result<Json<ProctorRooms>, ApiError> {
        let claims = token.0;
        let counts = self
            .state
            .plans
            .plan_counts(&claims.plan)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the plan no longer exists"))?;
        let mine: Vec<_> = counts
            .rooms
            .into_iter()
            .filter(|room| claims.reaches_room(&room.room_id))
            .collect();
        Ok(Json(ProctorRooms {
            plan_id: claims.plan.to_string(),
            rooms: room_statuses(&self.state, &claims.plan, &mine).await,
        }))
    }

    /// One room live: seats with state, connection and progress, open incidents.
    #[oai(
        path = "/proctor/rooms/:room_id",
        method = "get",
        tag = "ApiTags::Proctor"
    )]
    async fn room(
        &self,
        token: ProctorToken,
        room_id: Path<String>,
    ) -> Result<Json<RoomDetail>, ApiError> {
        let claims = token.0;
        let room_id = assigned_room(&claims, &room_id)?;
        Ok(Json(
            self.state
                .exam
                .room_view(&claims.plan, &room_id)
                .await?
                .into(),
        ))
    }

    /// A command to a whole room: pause, resume, notice, extend.
    #[oai(
        path = "/proctor/rooms/:room_id/commands",
        method = "post",
        tag = "ApiTags::Proctor"
    )]
    async fn room_command(
        &self,
        token: ProctorToken,
        room_id: Path<String>,
        body: Body<RoomCommandBody>,
    ) -> Result<Json<CommandResult>, ApiError> {
        let claims = token.0;
        let room_id = assigned_room(&claims, &room_id)?;
        let body = body.0;
        let action = match body.action {
            RoomActionName::Pause => RoomAction::Pause,
            RoomActionName::Resume => RoomAction::Resume,
            RoomActionName::Extend => RoomAction::Extend {
                seconds: extension(body.extend_s)?,
            },
            RoomActionName::Notice => RoomAction::Notice {
                text: body.text.ok_or_else(|| {
                    ApiError::unprocessable("missing_field", "notice needs text").with_field("text")
                })?,
            },
        };
        let receipt = self
            .state
            .exam
            .room_command(&claims.plan, &room_id, &action, &claims.proctor_id()?)
            .await?;
        Ok(Json(CommandResult {
            delivered: receipt.delivered,
            reached: receipt.reached as u64,
        }))
    }

    /// A command to one candidate: warn, pause, resume, extend, force_submit, expel.
    #[oai(
        path = "/proctor/candidates/:candidate_id/commands",
        method = "post",
        tag = "ApiTags::Proctor"
    )]
    async fn candidate_command(
        &self,
        token: ProctorToken,
        candidate_id: Path<String>,
        body: Body<CandidateCommandBody>,
    ) -> Result<Json<CommandResult>, ApiError> {
        let claims = token.0;
        let (candidate_id, room_id) = candidate_room(&self.state, &claims, &candidate_id).await?;
        let body = body.0;
        let action = proctor_action(body.action, body.reason, body.extend_s)?;
        let receipt = self
            .state
            .exam
            .candidate_command(
                &claims.plan,
                &room_id,
                &candidate_id,
                &action,
                &claims.proctor_id()?,
            )
            .await?;
        Ok(Json(CommandResult {
            delivered: receipt.delivered,
            reached: receipt.reached as u64,
        }))
    }

    /// Report an incident about a candidate.
    #[oai(path = "/proctor/incidents", method = "post", tag = "ApiTags::Proctor")]
    async fn report_incident(
        &self,
        token: ProctorToken,
        body: Body<IncidentBody>,
    ) -> Result<Json<IncidentDto>, ApiError> {
        let claims = token.0;
        let body = body.0;
        let (candidate_id, room_id) =
            candidate_room(&self.state, &claims, &body.candidate_id).await?;
        let incident = self
            .state
            .exam
            .report_incident(
                &claims.plan,
                &room_id,
                &candidate_id,
                &body.kind,
                body.note.as_deref(),
                &claims.proctor_id()?,
            )
            .await?;
        Ok(Json(incident.into()))
    }

    /// Confirm or dismiss an open incident.
    #[oai(
        path = "/proctor/incidents/:incident_id",
        method = "patch",
        tag = "ApiTags::Proctor"
    )]
    async fn review_incident(
        &self,
        token: ProctorToken,
        incident_id: Path<String>,
        body: Body<IncidentReview>,
    ) -> Result<Json<IncidentDto>, ApiError> {
        let claims = token.0;
        if incident_id.0.len() > 64 {
            return Err(ApiError::not_found(
                "incident_not_found",
                "no such incident",
            ));
        }
        // The room shows an incident as soon as it is raised, and stores it
        // with its next group commit (milliseconds; longer under load): one
        // just seen may not be readable yet, so a miss is looked up again
        // for a short while before it is a 404 (a flaky test found a
        // proctor dismissing a fresh incident told `incident_not_found`).
        let deadline = tokio::time::Instant::now() + INCIDENT_COMMIT_WAIT;
        let incident = loop {
            if let Some(incident) = self
                .state
                .plans
                .incident(&claims.plan, &incident_id.0)
                .await?
            {
                break incident;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::not_found(
                    "incident_not_found",
                    "no such incident",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        if !claims.reaches_room(&incident.room_id) {
            return Err(ApiError::forbidden(
                "room_not_assigned",
                "the incident is in a room that is not yours",
            ));
        }
        let status = match body.0.status {
            ReviewStatus::Confirmed => IncidentStatus::Confirmed,
            ReviewStatus::Dismissed => IncidentStatus::Dismissed,
        };
        let resolved = self
            .state
            .exam
            .resolve_incident(
                &claims.plan,
                &incident.room_id,
                &incident.id,
                status,
                body.0.action.as_deref(),
                &claims.proctor_id()?,
            )
            .await?;
        Ok(Json(resolved.into()))
    }
}

/// How long a review looks again for an incident the store does not have
/// yet (raised, not yet committed).
const INCIDENT_COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Builds a candidate command from its wire form.
pub fn proctor_action(
    action: CandidateActionName,
    reason: Option<String>,
    extend_s: Option<i64>,
) -> Result<ProctorAction, ApiError> {
    if reason.as_ref().is_some_and(|reason| {
        reason.chars().count() > 2_000 || reason.chars().any(char::is_control)
    }) {
        return Err(ApiError::unprocessable(
            "invalid_text",
            "reason is at most 2000 characters without control characters",
        )
        .with_field("reason"));
    }
    Ok(match action {
        CandidateActionName::Warn => ProctorAction::Warn { reason },
        CandidateActionName::Pause => ProctorAction::Pause { reason },
        CandidateActionName::Resume => ProctorAction::Resume { reason },
        CandidateActionName::Extend => ProctorAction::Extend {
            seconds: extension(extend_s)?,
            reason,
        },
        CandidateActionName::ForceSubmit => ProctorAction::ForceSubmit { reason },
        CandidateActionName::Expel => ProctorAction::Expel { reason },
    })
}
