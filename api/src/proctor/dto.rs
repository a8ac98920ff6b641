//! Proctor request and response types.

use invigil_actors::live::wire::{IncidentView, RoomView, SeatView};
use poem_openapi::{Enum, Object};
use serde::Deserialize;

use crate::body::RequestBodyType;

#[derive(Debug, Object)]
#[oai(rename = "Seat")]
pub struct SeatDto {
    pub candidate_id: String,
    pub reg_no: String,
    pub name: String,
    pub seat: Option<String>,
    pub state: String,
    pub exam_state: String,
    /// `online`, `stale` or `offline`.
    pub connection: String,
    /// Questions answered so far.
    pub answered: u64,
    pub remaining_s: i64,
    pub extra_time_s: i64,
    pub warnings: i64,
    pub incidents_open: u64,
}

impl From<SeatView> for SeatDto {
    fn from(seat: SeatView) -> Self {
        Self {
            candidate_id: seat.candidate_id,
            reg_no: seat.reg_no,
            name: seat.name,
            seat: seat.seat,
            state: seat.state.into(),
            exam_state: seat.exam_state.into(),
            connection: seat.connection.into(),
            answered: seat.answered as u64,
            remaining_s: seat.remaining_s,
            extra_time_s: seat.extra_time_s,
            warnings: seat.warnings,
            incidents_open: seat.incidents_open as u64,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "Incident")]
pub struct IncidentDto {
    pub id: String,
    pub room_id: String,
    pub candidate_id: Option<String>,
    pub kind: String,
    /// `client`, `proctor` or `rule`.
    pub source: String,
    pub severity: String,
    /// `open`, `confirmed` or `dismissed`.
    pub status: String,
    pub note: Option<String>,
    pub action: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

impl From<IncidentView> for IncidentDto {
    fn from(incident: IncidentView) -> Self {
        Self {
            id: incident.id,
            room_id: incident.room_id,
            candidate_id: incident.candidate_id,
            kind: incident.kind,
            source: incident.source.into(),
            severity: incident.severity.into(),
            status: incident.status.into(),
            note: incident.note,
            action: incident.action,
            created_at: incident.created_at,
            resolved_at: incident.resolved_at,
            resolved_by: incident.resolved_by,
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "RoomDetail")]
pub struct RoomDetail {
    pub room_id: String,
    pub name: String,
    pub state: String,
    pub paused: bool,
    pub plan_state: String,
    pub extension_s: i64,
    pub capacity: i64,
    pub seats: Vec<SeatDto>,
    /// Open incidents.
    pub incidents: Vec<IncidentDto>,
}

impl From<RoomView> for RoomDetail {
    fn from(room: RoomView) -> Self {
        Self {
            room_id: room.room_id,
            name: room.name,
            state: room.state.into(),
            paused: room.paused,
            plan_state: room.plan_state.into(),
            extension_s: room.extension_s,
            capacity: room.capacity,
            seats: room.seats.into_iter().map(Into::into).collect(),
            incidents: room.incidents.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum RoomActionName {
    Pause,
    Resume,
    Notice,
    Extend,
}

/// `POST /api/v1/proctor/rooms/{room_id}/commands`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct RoomCommandBody {
    pub action: RoomActionName,
    /// The notice's text (`notice`).
    pub text: Option<String>,
    /// Seconds to add (`extend`).
    pub extend_s: Option<i64>,
}

impl RequestBodyType for RoomCommandBody {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum CandidateActionName {
    Warn,
    Pause,
    Resume,
    Extend,
    ForceSubmit,
    Expel,
}

/// `POST /api/v1/proctor/candidates/{candidate_id}/commands`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct CandidateCommandBody {
    pub action: CandidateActionName,
    pub reason: Option<String>,
    /// Seconds to add (`extend`).
    pub extend_s: Option<i64>,
}

impl RequestBodyType for CandidateCommandBody {}

/// What a command reached.
#[derive(Debug, Object)]
pub struct CommandResult {
    /// The control reached at least one live candidate socket (the others
    /// get it when they reconnect and resume).
    pub delivered: bool,
    /// Live candidate sockets reached.
    pub reached: u64,
}

/// `POST /api/v1/proctor/incidents`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct IncidentBody {
    pub candidate_id: String,
    /// A snake_case kind, e.g. `cheat_sheet`.
    pub kind: String,
    pub note: Option<String>,
}

impl RequestBodyType for IncidentBody {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReviewStatus {
    Confirmed,
    Dismissed,
}

/// `PATCH /api/v1/proctor/incidents/{id}`.
#[derive(Debug, Deserialize, Object)]
#[serde(deny_unknown_fields)]
#[oai(deny_unknown_fields)]
pub struct IncidentReview {
    pub status: ReviewStatus,
    /// What was done about it, e.g. `warn`.
    pub action: Option<String>,
}

impl RequestBodyType for IncidentReview {}
