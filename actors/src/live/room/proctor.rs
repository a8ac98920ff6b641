//! What proctors do: commands to a candidate or the whole room, incidents,
//! and dashboard subscriptions.

use ractor::ActorRef;
use serde_json::json;

use super::messages::{
    CandidateCommand, ProctorAction, ReportIncident, ResolveIncident, RoomAction, RoomCommand,
    RoomMsg, Subscribe,
};
use super::state::{AfterCommit, RoomState, Subscriber, Waiting};
use crate::domain::incident::{MAX_ACTION_CHARS, MAX_NOTE_CHARS, check_text, is_valid_kind};
use crate::domain::{
    CandidateCommand as DomainCommand, DomainError, IncidentSource,
    RoomCommand as DomainRoomCommand,
};
use crate::error::ExamError;
use crate::live::wire::{self, IncidentView, SocketOut, StreamFrame};
use crate::ports::{FencedEntry, JournalEntry, LogEntry, LogKind};

const WRITE_FAILED: &str = "the journal is unavailable";
const LEASE_LOST: &str = "the shard lease is lost";

impl RoomState {
    fn proctor_log(
        &self,
        by: &crate::domain::ProctorId,
        message: String,
        detail: serde_json::Value,
    ) -> LogEntry {
        LogEntry {
            plan_id: self.plan_id.clone(),
            kind: LogKind::Proctor,
            subject: Some(by.to_string()),
            room_id: Some(self.room_id.clone()),
            message,
            detail,
            at: self.now(),
        }
    }

    pub(super) async fn on_candidate_command(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        command: CandidateCommand,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&command.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                let _ = command.reply.send(Err(error));
                return None;
            }
        };
        let (domain_command, reason, extend_s) = match &command.action {
            ProctorAction::Warn { reason } => (
                DomainCommand::Warn {
                    reason: reason.clone(),
                },
                reason.clone(),
                None,
            ),
            ProctorAction::Pause { reason } => (DomainCommand::Pause, reason.clone(), None),
            ProctorAction::Resume { reason } => (DomainCommand::Resume, reason.clone(), None),
            ProctorAction::Extend { seconds, reason } => (
                DomainCommand::Extend { seconds: *seconds },
                reason.clone(),
                Some(*seconds),
            ),
            ProctorAction::ForceSubmit { reason } => (
                DomainCommand::ForceSubmit {
                    reason: reason.clone(),
                },
                reason.clone(),
                None,
            ),
            ProctorAction::Expel { reason } => (
                DomainCommand::Expel {
                    reason: reason.clone(),
                },
                reason.clone(),
                None,
            ),
        };
        let now = self.now();
        let decision = {
            let context = self.context(seat);
            self.seats[seat]
                .runtime
                .decide(&domain_command, &context, now)
        };
        let events = match decision {
            Ok(events) => events,
            Err(refusal) => {
                let _ = command.reply.send(Err(refusal.into()));
                return None;
            }
        };
        let fence = match self.fence() {
            Ok(fence) => fence,
            Err(error) => {
                let _ = command.reply.send(Err(error));
                return Some(LEASE_LOST);
            }
        };
        let action = command.action.name();
        let log = self.proctor_log(
            &command.by,
            format!("{action} {}", command.candidate_id),
            json!({"action": action, "candidate_id": command.candidate_id, "reason": reason, "extend_s": extend_s}),
        );
        let mut entries: Vec<FencedEntry> = events
            .into_iter()
            .map(|event| self.candidate_entry(fence, seat, event))
            .collect();
        entries.push(FencedEntry {
            fence,
            entry: JournalEntry::Log(log),
        });
        let mut after = AfterCommit::new(Waiting::Receipt {
            received: std::time::Instant::now(),
            reply: command.reply,
            targets: vec![seat],
        });
        after.frames.push((
            seat,
            StreamFrame::Control {
                action,
                reason,
                extend_s,
            },
        ));
        if !matches!(command.action, ProctorAction::Warn { .. }) {
            after
                .frames
                .push((seat, self.state_frame(seat, state_event(action))));
        }
        after.seats.push(seat);
        match self.write(myself, entries, after).await {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    pub(super) async fn on_room_command(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        command: RoomCommand,
    ) -> Option<&'static str> {
        let now = self.now();
        let events = match &command.action {
            RoomAction::Pause => self.room.decide(&DomainRoomCommand::Pause, now),
            RoomAction::Resume => self.room.decide(&DomainRoomCommand::Resume, now),
            RoomAction::Extend { seconds } => self
                .room
                .decide(&DomainRoomCommand::Extend { seconds: *seconds }, now),
            RoomAction::Notice { text } => {
                check_text(text, MAX_NOTE_CHARS, "a notice").map(|()| Vec::new())
            }
        };
        let events = match events {
            Ok(events) => events,
            Err(refusal) => {
                let _ = command.reply.send(Err(refusal.into()));
                return None;
            }
        };
        let fence = match self.fence() {
            Ok(fence) => fence,
            Err(error) => {
                let _ = command.reply.send(Err(error));
                return Some(LEASE_LOST);
            }
        };
        let action = command.action.name();
        let (text, extend_s) = match &command.action {
            RoomAction::Notice { text } => (Some(text.clone()), None),
            RoomAction::Extend { seconds } => (None, Some(*seconds)),
            RoomAction::Pause | RoomAction::Resume => (None, None),
        };
        let log = self.proctor_log(
            &command.by,
            format!("{action} room {}", self.room_id),
            json!({"action": action, "text": text, "extend_s": extend_s}),
        );
        let mut entries: Vec<FencedEntry> = events
            .into_iter()
            .map(|event| self.room_entry(fence, event))
            .collect();
        entries.push(FencedEntry {
            fence,
            entry: JournalEntry::Log(log),
        });
        let targets: Vec<usize> = (0..self.seats.len()).collect();
        let mut after = AfterCommit::new(Waiting::Receipt {
            received: std::time::Instant::now(),
            reply: command.reply,
            targets: targets.clone(),
        });
        for &seat in &targets {
            match &text {
                Some(text) => after
                    .frames
                    .push((seat, StreamFrame::Notice { text: text.clone() })),
                None => {
                    if self.seats[seat].runtime.state.is_sitting() {
                        after.frames.push((
                            seat,
                            StreamFrame::Control {
                                action,
                                reason: None,
                                extend_s,
                            },
                        ));
                        after
                            .frames
                            .push((seat, self.state_frame(seat, state_event(action))));
                    }
                }
            }
        }
        if let Some(text) = &text {
            after
                .proctor_frames
                .push(wire::proctor::notice_sent(self.room_id.as_str(), text));
        } else {
            after.seats = targets;
            after.proctor_frames.push(self.room_state_frame());
        }
        match self.write(myself, entries, after).await {
            Ok(()) => None,
            Err(_) => Some(WRITE_FAILED),
        }
    }

    pub(super) fn room_state_frame(&self) -> String {
        wire::proctor::room_state(
            self.room_id.as_str(),
            self.room.state.as_str(),
            self.room.pauses.is_paused(),
            self.room.extension_s,
            self.plan.state.as_str(),
        )
    }

    pub(super) async fn on_report_incident(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        report: ReportIncident,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&report.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                let _ = report.reply.send(Err(error));
                return None;
            }
        };
        if !is_valid_kind(&report.kind) {
            let refusal =
                DomainError::InvalidIncident(format!("{:?} is not a snake_case kind", report.kind));
            let _ = report.reply.send(Err(refusal.into()));
            return None;
        }
        if let Some(Err(refusal)) = report
            .note
            .as_ref()
            .map(|note| check_text(note, MAX_NOTE_CHARS, "a note"))
        {
            let _ = report.reply.send(Err(refusal.into()));
            return None;
        }
        let note = Some(match report.note {
            Some(note) => format!("{note} (by {})", report.by),
            None => format!("reported by {}", report.by),
        });
        self.record_incident(
            myself,
            seat,
            report.kind,
            IncidentSource::Proctor,
            note,
            Some(report.reply),
        )
        .await
    }

    pub(super) async fn on_resolve_incident(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        resolve: ResolveIncident,
    ) -> Option<&'static str> {
        if let Some(Err(refusal)) = resolve
            .action
            .as_ref()
            .map(|action| check_text(action, MAX_ACTION_CHARS, "an action"))
        {
            let _ = resolve.reply.send(Err(refusal.into()));
            return None;
        }
        let Some(position) = self
            .incidents
            .iter()
            .position(|incident| incident.id == resolve.incident_id)
        else {
            // Not open here: resolved already, or not this room's.
            let error = match self
                .deps
                .plans
                .incident(&self.plan_id, &resolve.incident_id)
                .await
            {
                Ok(Some(incident)) if incident.room_id == self.room_id => ExamError::Domain(
                    DomainError::IncidentAlreadyResolved(incident.status.as_str()),
                ),
                Ok(_) => ExamError::NotFound("incident"),
                Err(error) => error.into(),
            };
            let _ = resolve.reply.send(Err(error));
            return None;
        };
        let fence = match self.fence() {
            Ok(fence) => fence,
            Err(error) => {
                let _ = resolve.reply.send(Err(error));
                return Some(LEASE_LOST);
            }
        };
        let mut incident = self.incidents[position].clone();
        if let Err(already) =
            incident.resolve(resolve.status, resolve.by, resolve.action, self.now())
        {
            let _ = resolve
                .reply
                .send(Err(DomainError::IncidentAlreadyResolved(already.0).into()));
            return None;
        }
        self.incidents.remove(position);
        let view = IncidentView::from(&incident);
        let seat = incident
            .candidate_id
            .as_ref()
            .and_then(|candidate| self.index.get(candidate).copied());
        let mut after = AfterCommit::new(Waiting::Incident {
            reply: resolve.reply,
            view: Box::new(view.clone()),
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

    pub(super) fn on_subscribe(&mut self, subscribe: Subscribe) {
        let snapshot = wire::proctor::room(&self.room_view());
        if subscribe
            .sink
            .try_send(SocketOut::Frame {
                seq: 0,
                text: snapshot.into(),
            })
            .is_err()
        {
            let _ = subscribe
                .reply
                .send(Err(ExamError::Unavailable("the dashboard is not reading")));
            return;
        }
        self.subscribers
            .retain(|subscriber| subscriber.id != subscribe.subscriber_id);
        self.subscribers.push(Subscriber {
            id: subscribe.subscriber_id,
            sink: subscribe.sink,
        });
        let _ = subscribe.reply.send(Ok(()));
    }
}

/// The `state` frame's event for a command.
fn state_event(action: &str) -> &'static str {
    match action {
        "pause" => "paused",
        "resume" => "resumed",
        "extend" => "extended",
        "force_submit" => "submitted",
        "expel" => "expelled",
        _ => "changed",
    }
}
