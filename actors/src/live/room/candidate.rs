//! What candidates do besides connecting and answering: client events,
//! submit, check-in, and the incidents the room records.

use ractor::ActorRef;

use super::messages::{CheckIn, ClientEvent, RoomMsg, Submit};
use super::state::{AfterCommit, RoomState, Waiting};
use crate::domain::incident::{MAX_NOTE_CHARS, is_valid_kind};
use crate::domain::{
    CandidateCommand, CandidateEvent, DomainError, Incident, IncidentSource, IncidentStatus,
    Severity,
};
use crate::error::ExamError;
use crate::live::wire;
use crate::ports::{FencedEntry, JournalEntry};

/// A room write that could not even be queued: the room retires.
const WRITE_FAILED: &str = "the journal is unavailable";

/// An incident about to be recorded.
pub(super) struct NewIncident {
    /// `None`: a fresh id.
    pub id: Option<String>,
    /// The candidate's seat; `None` for a room-level incident.
    pub seat: Option<usize>,
    pub kind: String,
    pub source: IncidentSource,
    pub note: Option<String>,
}

impl RoomState {
    pub(super) async fn on_client_event(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        event: ClientEvent,
    ) -> Option<&'static str> {
        let Ok(seat) = self.seat_index(&event.candidate_id) else {
            return None;
        };
        let now = self.now();
        let refusal = if !is_valid_kind(&event.kind) {
            Some(DomainError::InvalidIncident(format!(
                "{:?} is not a snake_case event kind",
                event.kind
            )))
        } else {
            let (started, count) = &mut self.seats[seat].events;
            if now.millis_since(*started) >= 60_000 {
                (*started, *count) = (now, 0);
            }
            *count += 1;
            (*count > self.deps.config.events_per_minute).then_some(DomainError::TooManyEvents)
        };
        if let Some(refusal) = refusal {
            let text = wire::error(
                self.seats[seat].last_seq,
                refusal.code(),
                &refusal.to_string(),
                None,
            );
            self.send_connection_frame(seat, Some(event.connection_id), text);
            return None;
        }
        self.report_client_event(seat, &event.kind);
        let note = event
            .detail
            .map(|detail| truncate(&detail.to_string(), MAX_NOTE_CHARS));
        self.record_incident(myself, seat, event.kind, IncidentSource::Client, note, None)
            .await
    }

    /// Whether the candidate has an open incident of this kind.
    pub(super) fn has_open_incident(&self, seat: usize, kind: &str) -> bool {
        let candidate_id = &self.seats[seat].spec.id;
        self.incidents.iter().any(|incident| {
            incident.kind == kind
                && incident.status == IncidentStatus::Open
                && incident.candidate_id.as_ref() == Some(candidate_id)
        })
    }

    /// Records an incident the server itself detected.
    pub(super) async fn record_rule_incident(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        seat: usize,
        kind: &str,
        note: &str,
    ) -> Option<&'static str> {
        self.record_incident(
            myself,
            seat,
            kind.to_string(),
            IncidentSource::Rule,
            Some(note.to_string()),
            None,
        )
        .await
    }

    /// Records a new open incident of a candidate; proctors see it once durable.
    pub(super) async fn record_incident(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        seat: usize,
        kind: String,
        source: IncidentSource,
        note: Option<String>,
        reply: Option<super::messages::Reply<crate::live::wire::IncidentView>>,
    ) -> Option<&'static str> {
        let new = NewIncident {
            id: None,
            seat: Some(seat),
            kind,
            source,
            note,
        };
        self.record_incident_at(myself, new, reply).await
    }

    /// Records a new open incident of a candidate (`seat`) or of the room
    /// (`None`); proctors see it once durable.
    pub(super) async fn record_incident_at(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        new: NewIncident,
        reply: Option<super::messages::Reply<crate::live::wire::IncidentView>>,
    ) -> Option<&'static str> {
        let NewIncident {
            id,
            seat,
            kind,
            source,
            note,
        } = new;
        let fence = match self.fence() {
            Ok(fence) => fence,
            Err(error) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
                return Some("the shard lease is lost");
            }
        };
        self.deps.metrics.incident_opened(&kind, source.as_str());
        let incident = Incident {
            id: id.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()),
            plan_id: self.plan_id.clone(),
            room_id: self.room_id.clone(),
            candidate_id: seat.map(|seat| self.seats[seat].spec.id.clone()),
            severity: Severity::of_kind(&kind),
            kind,
            source,
            status: IncidentStatus::Open,
            note,
            action: None,
            created_at: self.now(),
            resolved_at: None,
            resolved_by: None,
        };
        let view = crate::live::wire::IncidentView::from(&incident);
        self.incidents.push(incident.clone());
        let mut after = AfterCommit::new(match reply {
            Some(reply) => Waiting::Incident {
                reply,
                view: Box::new(view.clone()),
            },
            None => Waiting::Nobody,
        });
        after.proctor_frames.push(wire::proctor::incident(&view));
        after.seats.extend(seat);
        match self
            .write(
                myself,
                vec![FencedEntry {
                    fence,
                    entry: JournalEntry::Incident(incident),
                }],
                after,
            )
            .await
        {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    pub(super) async fn on_submit(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        submit: Submit,
    ) -> Option<&'static str> {
        let Ok(seat) = self.seat_index(&submit.candidate_id) else {
            if let Some(reply) = submit.reply {
                let _ = reply.send(Err(ExamError::NotFound("candidate")));
            }
            return None;
        };
        let now = self.now();
        let decision = {
            let context = self.context(seat);
            self.seats[seat]
                .runtime
                .decide(&CandidateCommand::Submit, &context, now)
        };
        let events = match decision {
            Ok(events) => events,
            Err(refusal) => {
                match submit.reply {
                    Some(reply) => {
                        let _ = reply.send(Err(refusal.into()));
                    }
                    None => {
                        let text = wire::error(
                            self.seats[seat].last_seq,
                            refusal.code(),
                            &refusal.to_string(),
                            None,
                        );
                        self.send_connection_frame(seat, submit.connection_id, text);
                    }
                }
                return None;
            }
        };
        let waiting = |state| match submit.reply {
            Some(reply) => Waiting::State { reply, state },
            None => Waiting::Nobody,
        };
        self.write_candidate_events(myself, seat, events, "submitted", waiting)
            .await
    }

    pub(super) async fn on_check_in(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        check_in: CheckIn,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&check_in.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                let _ = check_in.reply.send(Err(error));
                return None;
            }
        };
        let now = self.now();
        let decision = {
            let context = self.context(seat);
            self.seats[seat]
                .runtime
                .decide(&CandidateCommand::CheckIn, &context, now)
        };
        match decision {
            Ok(events) if events.is_empty() => {
                let _ = check_in.reply.send(Ok(self.seats[seat].runtime.state));
                None
            }
            Ok(events) => {
                let event_name = if events
                    .iter()
                    .any(|event| matches!(event, CandidateEvent::Began { .. }))
                {
                    "started"
                } else {
                    "checked_in"
                };
                let reply = check_in.reply;
                self.write_candidate_events(myself, seat, events, event_name, |state| {
                    Waiting::State { reply, state }
                })
                .await
            }
            Err(refusal) => {
                let _ = check_in.reply.send(Err(refusal.into()));
                None
            }
        }
    }

    /// Writes a candidate's events; once durable the candidate gets a state
    /// frame, the dashboards the new seat, and `waiting` its answer.
    pub(super) async fn write_candidate_events(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        seat: usize,
        events: Vec<CandidateEvent>,
        event_name: &'static str,
        waiting: impl FnOnce(crate::domain::CandidateState) -> Waiting,
    ) -> Option<&'static str> {
        let fence = match self.fence() {
            Ok(fence) => fence,
            Err(error) => {
                let waiting = waiting(self.seats[seat].runtime.state);
                self.fail_waiting(waiting, &error);
                return Some("the shard lease is lost");
            }
        };
        let entries: Vec<FencedEntry> = events
            .into_iter()
            .map(|event| self.candidate_entry(fence, seat, event))
            .collect();
        let mut after = AfterCommit::new(waiting(self.seats[seat].runtime.state));
        after
            .frames
            .push((seat, self.state_frame(seat, event_name)));
        after.seats.push(seat);
        match self.write(myself, entries, after).await {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    /// Answers a waiter that will never get its commit.
    pub(super) fn fail_waiting(&mut self, waiting: Waiting, error: &ExamError) {
        match waiting {
            Waiting::State { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Receipt { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Incident { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Done(reply) => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Nobody | Waiting::Answer { .. } => {}
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
