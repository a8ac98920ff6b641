//! The frames the live exam sends: to candidates (docs/wire-contract.md, every one with
//! a `seq`) and to proctor dashboards, with the views they carry.
//!
//! Candidate frames come in two kinds:
//! - *stream* frames (`ack`, `state`, `control`, `notice`) take the next
//!   `seq`, are kept in the resume buffer and replayed after a reconnect;
//! - *connection* frames (`welcome`, `hb`, `error`) carry the current
//!   high-water `seq` (the last stream frame's) and are not replayed: a
//!   heartbeat or an error about a frame from a dead connection means nothing
//!   later. The `welcome` thus tells how far the replay that follows goes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{
    CandidateClock, CandidateRuntime, CandidateState, Incident, Presence, ProctorId, RoomRuntime,
    SubmitReason, Timestamp,
};

/// What a socket task receives to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketOut {
    /// A text frame; `seq` is the frame's (candidate sockets) or 0.
    Frame { seq: u64, text: Arc<str> },
    /// Close the socket with this code and reason.
    Close { code: u16, reason: &'static str },
}

/// Why the room let a socket go, readable by the socket task even when the
/// frame queue was too full to carry the close frame: the room sets the code
/// before it drops its end of the queue.
#[derive(Clone, Debug, Default)]
pub struct CloseSignal(Arc<std::sync::atomic::AtomicU16>);

impl CloseSignal {
    pub fn set(&self, code: u16) {
        self.0.store(code, std::sync::atomic::Ordering::Release);
    }

    /// The code the room closed with, if it did.
    pub fn get(&self) -> Option<u16> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }
}

/// Close codes used by the gateway (4000–4999 are the application's).
pub mod close {
    /// The reason sent with a code.
    pub fn reason(code: u16) -> &'static str {
        match code {
            RECONNECT => "reconnect",
            UNAUTHORIZED => "bad token",
            REPLACED => "replaced by a newer connection",
            HELLO_TIMEOUT => "no valid hello in time",
            SLOW_CONSUMER => "too slow",
            DEAD => "no heartbeat",
            TRY_AGAIN => "try again",
            TOO_BIG => "frame too large",
            _ => "closed",
        }
    }

    pub const RECONNECT: u16 = 4000;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const REPLACED: u16 = 4409;
    pub const HELLO_TIMEOUT: u16 = 4408;
    pub const SLOW_CONSUMER: u16 = 4429;
    pub const DEAD: u16 = 4410;
    pub const TRY_AGAIN: u16 = 1013;
    pub const TOO_BIG: u16 = 1009;
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(timestamp: Timestamp) -> String {
    DateTime::<Utc>::from_timestamp_millis(timestamp.as_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the candidate experiences: `paused` while any holder pauses the clock.
pub fn exam_state(runtime: &CandidateRuntime, clock: &CandidateClock<'_>) -> CandidateState {
    if runtime.state == CandidateState::Testing && clock.is_frozen() {
        CandidateState::Paused
    } else {
        runtime.state
    }
}

/// Who holds a pause, for the candidate's screen.
pub fn paused_by(
    plan_paused: bool,
    room: &RoomRuntime,
    runtime: &CandidateRuntime,
) -> Option<&'static str> {
    if plan_paused {
        Some("plan")
    } else if room.pauses.is_paused() {
        Some("room")
    } else if runtime.pauses.is_paused() {
        Some("proctor")
    } else {
        None
    }
}

/// The full candidate view: in `welcome`, in `state` frames and `/candidate/me`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidateView {
    pub candidate_id: String,
    pub plan_id: String,
    pub room_id: String,
    pub name: String,
    pub seat: Option<String>,
    pub state: &'static str,
    pub exam_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit_reason: Option<&'static str>,
    pub remaining_s: i64,
    pub ends_at: Option<String>,
    pub extra_time_s: i64,
    pub warnings: i64,
    pub last_cseq: i64,
    /// Question id → latest durable version.
    pub answers: BTreeMap<String, i64>,
    pub server_time: String,
}

/// A proctor's view of one seat.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeatView {
    pub candidate_id: String,
    pub reg_no: String,
    pub name: String,
    pub seat: Option<String>,
    pub state: &'static str,
    pub exam_state: &'static str,
    pub connection: &'static str,
    pub answered: usize,
    pub remaining_s: i64,
    pub extra_time_s: i64,
    pub warnings: i64,
    pub incidents_open: usize,
}

/// An incident as dashboards show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentView {
    pub id: String,
    pub room_id: String,
    pub candidate_id: Option<String>,
    pub kind: String,
    pub source: &'static str,
    pub severity: &'static str,
    pub status: &'static str,
    pub note: Option<String>,
    pub action: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
}

impl From<&Incident> for IncidentView {
    fn from(incident: &Incident) -> Self {
        Self {
            id: incident.id.clone(),
            room_id: incident.room_id.to_string(),
            candidate_id: incident.candidate_id.as_ref().map(ToString::to_string),
            kind: incident.kind.clone(),
            source: incident.source.as_str(),
            severity: incident.severity.as_str(),
            status: incident.status.as_str(),
            note: incident.note.clone(),
            action: incident.action.clone(),
            created_at: rfc3339(incident.created_at),
            resolved_at: incident.resolved_at.map(rfc3339),
            resolved_by: incident.resolved_by.as_ref().map(ProctorId::to_string),
        }
    }
}

/// A room as a proctor's dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoomView {
    pub room_id: String,
    pub name: String,
    pub state: &'static str,
    pub paused: bool,
    pub plan_state: &'static str,
    pub extension_s: i64,
    pub capacity: i64,
    pub seats: Vec<SeatView>,
    pub incidents: Vec<IncidentView>,
}

/// Connection counts of a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceCounts {
    pub online: i64,
    pub stale: i64,
    pub offline: i64,
}

impl PresenceCounts {
    pub fn add(&mut self, presence: Presence) {
        match presence {
            Presence::Online => self.online += 1,
            Presence::Stale => self.stale += 1,
            Presence::Offline => self.offline += 1,
        }
    }
}

/// A candidate stream frame before it gets its `seq`.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamFrame {
    Ack {
        cseq: i64,
        version: i64,
    },
    State {
        event: &'static str,
        view: Box<CandidateView>,
    },
    Control {
        action: &'static str,
        reason: Option<String>,
        extend_s: Option<i64>,
    },
    Notice {
        text: String,
    },
}

impl StreamFrame {
    /// The frame's JSON text with `seq`.
    pub fn render(&self, seq: u64) -> String {
        let value = match self {
            // The most frequent frame: written directly, "t" first.
            Self::Ack { cseq, version } => {
                return format!(r#"{{"t":"ack","seq":{seq},"cseq":{cseq},"version":{version}}}"#);
            }
            Self::State { event, view } => {
                let mut value = json!({"t": "state", "seq": seq, "event": event});
                if let (Value::Object(map), Ok(Value::Object(view))) =
                    (&mut value, serde_json::to_value(view))
                {
                    map.extend(view);
                }
                value
            }
            Self::Control {
                action,
                reason,
                extend_s,
            } => {
                let mut value = json!({"t": "control", "seq": seq, "action": action});
                if let Value::Object(map) = &mut value {
                    if let Some(reason) = reason {
                        map.insert("reason".into(), json!(reason));
                    }
                    if let Some(extend_s) = extend_s {
                        map.insert("extend_s".into(), json!(extend_s));
                    }
                }
                value
            }
            Self::Notice { text } => json!({"t": "notice", "seq": seq, "text": text}),
        };
        value.to_string()
    }
}

pub fn welcome(session: &str, seq: u64, resumed: bool, view: &CandidateView) -> String {
    json!({"t": "welcome", "session": session, "seq": seq, "resumed": resumed, "state": view})
        .to_string()
}

pub fn heartbeat(seq: u64, client_ts: Option<i64>, server_ts: Timestamp) -> String {
    json!({"t": "hb", "seq": seq, "ts": client_ts, "server_ts": server_ts.as_millis()}).to_string()
}

pub fn error(seq: u64, code: &str, message: &str, cseq: Option<i64>) -> String {
    let mut value = json!({"t": "error", "seq": seq, "code": code, "message": message});
    if let (Value::Object(map), Some(cseq)) = (&mut value, cseq) {
        map.insert("cseq".into(), json!(cseq));
    }
    value.to_string()
}

/// An error frame for a refused request: the code and detail every
/// surface shares (REST sends the same as problem+json).
pub fn exam_error(seq: u64, error: &crate::error::ExamError, cseq: Option<i64>) -> String {
    self::error(seq, error.code(), &error.detail(), cseq)
}

pub fn submit_reason(runtime: &CandidateRuntime) -> Option<&'static str> {
    runtime.submit_reason.map(SubmitReason::as_str)
}

/// Frames for proctor dashboards.
pub mod proctor {
    use serde_json::json;

    use super::{IncidentView, RoomView, SeatView};

    pub fn room(view: &RoomView) -> String {
        let mut value = json!({"t": "room"});
        if let (serde_json::Value::Object(map), Ok(serde_json::Value::Object(room))) =
            (&mut value, serde_json::to_value(view))
        {
            map.extend(room);
        }
        value.to_string()
    }

    pub fn seat(room_id: &str, seat: &SeatView) -> String {
        let mut value = json!({"t": "seat", "room_id": room_id});
        if let (serde_json::Value::Object(map), Ok(serde_json::Value::Object(seat))) =
            (&mut value, serde_json::to_value(seat))
        {
            map.extend(seat);
        }
        value.to_string()
    }

    pub fn incident(incident: &IncidentView) -> String {
        let mut value = json!({"t": "incident"});
        if let (serde_json::Value::Object(map), Ok(serde_json::Value::Object(incident))) =
            (&mut value, serde_json::to_value(incident))
        {
            map.extend(incident);
        }
        value.to_string()
    }

    /// Answer progress of the seats that changed since the last one.
    pub fn progress(room_id: &str, answered: &[(String, usize)], total_answered: usize) -> String {
        let seats: Vec<_> = answered
            .iter()
            .map(|(candidate, count)| json!({"candidate_id": candidate, "answered": count}))
            .collect();
        json!({"t": "progress", "room_id": room_id, "seats": seats, "answered_total": total_answered}).to_string()
    }

    /// The room's own state changed (pause, resume, extension, start, end).
    pub fn room_state(
        room_id: &str,
        state: &str,
        paused: bool,
        extension_s: i64,
        plan_state: &str,
    ) -> String {
        json!({"t": "room_state", "room_id": room_id, "state": state, "paused": paused,
               "extension_s": extension_s, "plan_state": plan_state})
        .to_string()
    }

    pub fn command_ack(id: &str, delivered: bool) -> String {
        json!({"t": "command_ack", "id": id, "delivered": delivered}).to_string()
    }

    pub fn command_failed(id: &str, code: &str, message: &str) -> String {
        json!({"t": "command_ack", "id": id, "delivered": false, "error": {"code": code, "message": message}})
            .to_string()
    }

    pub fn notice_sent(room_id: &str, text: &str) -> String {
        json!({"t": "notice", "room_id": room_id, "text": text}).to_string()
    }

    /// A refusal on the proctor socket (not numbered: the dashboard does
    /// not resume); `room_id` names the room it concerns, if one.
    pub fn error(code: &str, message: &str, room_id: Option<&str>) -> String {
        json!({"t": "error", "code": code, "message": message, "room_id": room_id}).to_string()
    }

    /// [`error`] for an exam error, with the code and detail REST sends.
    pub fn exam_error(error: &crate::error::ExamError, room_id: Option<&str>) -> String {
        self::error(error.code(), &error.detail(), room_id)
    }
}
