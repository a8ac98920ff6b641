//! What a room hands the workers — live events for the incident rules and
//! candidate log lines — through the node's outbox (never waiting for it),
//! and the incidents the rules raise back.

use ractor::ActorRef;
use serde_json::json;

use super::candidate::NewIncident;
use super::messages::{RaiseIncident, RoomMsg};
use super::state::RoomState;
use crate::domain::{IncidentSource, IncidentStatus, Presence};
use crate::ports::{LogEntry, LogKind};
use crate::workers::events::{LiveEvent, LiveEventKind, LogPayload, new_id, topics};

impl RoomState {
    fn publish_event(&self, seat: usize, kind: LiveEventKind) {
        let event = LiveEvent {
            id: new_id(),
            plan_id: self.plan_id.clone(),
            room_id: self.room_id.clone(),
            candidate_id: self.seats[seat].spec.id.clone(),
            at: self.now().as_millis(),
            kind,
        };
        self.deps.outbox.publish_json(topics::EVENTS, &event);
    }

    fn publish_candidate_log(&self, seat: usize, message: &str, detail: serde_json::Value) {
        let log = LogEntry {
            plan_id: self.plan_id.clone(),
            kind: LogKind::Candidate,
            subject: Some(self.seats[seat].spec.id.to_string()),
            room_id: Some(self.room_id.clone()),
            message: message.to_string(),
            detail,
            at: self.now(),
        };
        self.deps
            .outbox
            .publish_json(topics::LOGS, &LogPayload::new(log));
    }

    /// A socket of the candidate said hello.
    pub(super) fn report_connected(&self, seat: usize, ip: Option<String>, resumed: bool) {
        let sitting = self.seats[seat].runtime.state.is_sitting();
        self.publish_candidate_log(
            seat,
            "connected",
            json!({ "ip": ip, "resumed": resumed, "state": self.seats[seat].runtime.state.as_str() }),
        );
        self.publish_event(seat, LiveEventKind::Connected { ip, sitting });
    }

    /// A client event was accepted.
    pub(super) fn report_client_event(&self, seat: usize, kind: &str) {
        self.publish_candidate_log(seat, "client_event", json!({ "kind": kind }));
        self.publish_event(
            seat,
            LiveEventKind::Client {
                kind: kind.to_string(),
            },
        );
    }

    /// Reports presence changes; going offline while sitting is a rule input.
    pub(super) fn report_presence(&mut self, seat: usize) {
        let presence = self.seats[seat].connection.presence();
        let before = self.seats[seat].reported_presence;
        if presence == before {
            return;
        }
        self.seats[seat].reported_presence = presence;
        if presence == Presence::Offline || before == Presence::Offline {
            self.publish_candidate_log(
                seat,
                if presence == Presence::Offline {
                    "went_offline"
                } else {
                    "came_online"
                },
                json!({ "from": before.as_str(), "to": presence.as_str() }),
            );
        }
        if presence == Presence::Offline && self.seats[seat].runtime.state.is_sitting() {
            let sitting = self
                .seats
                .iter()
                .filter(|candidate| candidate.runtime.state.is_sitting())
                .count();
            self.publish_event(
                seat,
                LiveEventKind::WentOffline {
                    sitting: u32::try_from(sitting).unwrap_or(u32::MAX),
                },
            );
        }
    }

    /// A rule fired: one open incident of a kind per candidate (per room
    /// for a room-level one), so a rule firing again adds nothing.
    pub(super) async fn on_raise_incident(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        raise: RaiseIncident,
    ) -> Option<&'static str> {
        let seat = match &raise.candidate_id {
            Some(candidate_id) => match self.seat_index(candidate_id) {
                Ok(seat) => Some(seat),
                Err(error) => {
                    let _ = raise.reply.send(Err(error));
                    return None;
                }
            },
            None => None,
        };
        let candidate_id = seat.map(|seat| &self.seats[seat].spec.id);
        let open = self.incidents.iter().any(|incident| {
            incident.kind == raise.kind
                && incident.status == IncidentStatus::Open
                && incident.candidate_id.as_ref() == candidate_id
        });
        if open {
            let _ = raise.reply.send(Ok(false));
            return None;
        }
        // Raised before from the same input, and resolved since: a
        // redelivered entry must not open it again.
        match self.deps.plans.incident(&self.plan_id, &raise.id).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                let _ = raise.reply.send(Ok(false));
                return None;
            }
            Err(error) => {
                let _ = raise.reply.send(Err(error.into()));
                return None;
            }
        }
        // The reply waits for the commit: the worker acknowledges its entry
        // only once the incident is durable.
        let (sender, receiver) = ractor::concurrency::oneshot();
        let retire = self
            .record_incident_at(
                myself,
                NewIncident {
                    id: Some(raise.id),
                    seat,
                    kind: raise.kind.to_string(),
                    source: IncidentSource::Rule,
                    note: Some(raise.note),
                },
                Some(sender.into()),
            )
            .await;
        let reply = raise.reply;
        tokio::spawn(async move {
            let outcome = match receiver.await {
                Ok(Ok(_)) => Ok(true),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(crate::error::ExamError::Stopped),
            };
            let _ = reply.send(outcome);
        });
        retire
    }
}
