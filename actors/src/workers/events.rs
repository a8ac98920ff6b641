//! What the live exam hands the workers, as queue payloads (JSON). Every
//! payload carries a unique `id` chosen when it is published, so a consumer
//! can make its effect idempotent: a redelivered entry changes nothing twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{CandidateId, PlanId, RoomId, Timestamp};
use crate::ports::{LogEntry, LogKind, QueuedLog};

/// The queue topics.
pub mod topics {
    /// Log lines for the log worker.
    pub const LOGS: &str = "logs";
    /// Live events for the incident rules.
    pub const EVENTS: &str = "events";
    /// Plan notifications for the admin server's webhook.
    pub const WEBHOOKS: &str = "webhooks";
}

/// A new unique payload id (time-ordered).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Something that happened in a room that an incident rule may care about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    pub id: String,
    pub plan_id: PlanId,
    pub room_id: RoomId,
    pub candidate_id: CandidateId,
    /// Server time in ms.
    pub at: i64,
    #[serde(flatten)]
    pub kind: LiveEventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEventKind {
    /// A client-side event (`focus_lost`, `copy_paste`, …) that was accepted.
    Client { kind: String },
    /// A socket connected (`ip`: the peer address) while the candidate sits
    /// the exam (`sitting`) or not.
    Connected { ip: Option<String>, sitting: bool },
    /// The candidate's connection went offline while sitting; `sitting` is
    /// how many candidates of the room were sitting at that moment.
    WentOffline { sitting: u32 },
}

/// A plan notification for the admin server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanNotice {
    /// Unique per notice; sent as the delivery id so the receiver can deduplicate.
    pub id: String,
    /// `plan.ended` or `plan.finalized`.
    pub event: String,
    pub plan_id: PlanId,
    /// Server time in ms.
    pub at: i64,
}

/// A log line as the log topic carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogPayload {
    pub id: String,
    pub plan_id: PlanId,
    pub kind: LogKind,
    pub subject: Option<String>,
    pub room_id: Option<RoomId>,
    pub message: String,
    #[serde(default)]
    pub detail: Value,
    pub at: i64,
}

impl LogPayload {
    pub fn new(log: LogEntry) -> Self {
        Self {
            id: new_id(),
            plan_id: log.plan_id,
            kind: log.kind,
            subject: log.subject,
            room_id: log.room_id,
            message: log.message,
            detail: log.detail,
            at: log.at.as_millis(),
        }
    }

    pub fn into_queued(self) -> QueuedLog {
        QueuedLog {
            entry_id: self.id,
            log: LogEntry {
                plan_id: self.plan_id,
                kind: self.kind,
                subject: self.subject,
                room_id: self.room_id,
                message: self.message,
                detail: self.detail,
                at: Timestamp::from_millis(self.at),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_events_round_trip_flat() {
        let event = LiveEvent {
            id: new_id(),
            plan_id: "p".parse().unwrap(),
            room_id: "r".parse().unwrap(),
            candidate_id: "c".parse().unwrap(),
            at: 5,
            kind: LiveEventKind::Client {
                kind: "focus_lost".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "client");
        assert_eq!(json["kind"], "focus_lost");
        let back: LiveEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
