//! What candidates do: connect (hello / resume, single login), heartbeats,
//! answers, client events, submit, check-in.

use ractor::ActorRef;
use tracing::warn;

use super::messages::{
    Answer, CheckIn, ClientEvent, Connect, Connected, Disconnect, Heartbeat, RoomMsg, Submit,
};
use super::state::{
    AfterCommit, AnswerWaiter, RoomState, SocketLink, Uncommitted, Waiting, error_code,
};
use crate::domain::answer::value_digest;
use crate::domain::incident::{MAX_NOTE_CHARS, is_valid_kind};
use crate::domain::{
    AnswerDecision, CandidateCommand, CandidateEvent, DomainError, Incident, IncidentSource,
    IncidentStatus, Severity,
};
use crate::error::ExamError;
use crate::live::wire::{self, SocketOut, StreamFrame, close};
use crate::ports::{FencedEntry, JournalEntry, SessionClaim};

/// A room write that could not even be queued: the room retires.
const WRITE_FAILED: &str = "the journal is unavailable";
/// Journal lookups of superseded cseqs one room runs at once; beyond, the
/// resend is refused with `unavailable` (the client sends it again later).
const MAX_LOOKUPS: usize = 8;

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
    pub(super) async fn on_connect(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        connect: Connect,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&connect.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                let _ = connect.reply.send(Err(error));
                return None;
            }
        };
        let now = self.now();
        let same_session = connect.resume.as_ref().is_some_and(|(session, _)| {
            self.seats[seat].session.as_deref() == Some(session.as_str())
        });

        // One live socket per candidate: a newer one takes over.
        let mut duplicate_login = false;
        if let Some(previous) = self.seats[seat].socket.take()
            && previous.connection_id != connect.connection_id
        {
            let seq = self.seats[seat].last_seq;
            let control = StreamFrame::Control {
                action: "reconnect",
                reason: Some("another connection took over this candidate".into()),
                extend_s: None,
            };
            let _ = previous.sink.try_send(SocketOut::Frame {
                seq,
                text: control.render(seq).into(),
            });
            previous.let_go(close::REPLACED);
            // One open duplicate_login incident per candidate: a device
            // looping on takeovers cannot fill the room with incidents.
            duplicate_login = !same_session
                && self.shared.settings.incident_rules.duplicate_login
                && !self.has_open_incident(seat, "duplicate_login");
        }

        let key = self.seats[seat].key.clone();
        let last_seq = self.seats[seat].last_seq;
        let (session, replay) = match (same_session, &connect.resume) {
            (true, Some((session, client_seq))) if *client_seq <= last_seq => {
                match self.deps.hot.outbound_after(&key, *client_seq).await {
                    Ok(Some(frames)) => (session.clone(), Some(frames)),
                    Ok(None) => (session.clone(), None),
                    Err(error) => {
                        warn!(%error, "resume buffer unreadable; sending a snapshot");
                        (session.clone(), None)
                    }
                }
            }
            _ => (uuid::Uuid::now_v7().simple().to_string(), None),
        };
        let resumed = replay.is_some();
        self.seats[seat].session = Some(session.clone());
        let claim = SessionClaim {
            session_id: session.clone(),
            node_id: self.deps.node_id.clone(),
        };
        if let Err(error) = self.deps.hot.swap_session(&key, claim).await {
            warn!(%error, "session not recorded in the hot state");
        }
        self.seats[seat].socket = Some(SocketLink {
            connection_id: connect.connection_id,
            sink: connect.sink,
            close_signal: connect.close_signal,
        });
        let welcome = wire::welcome(&session, last_seq, resumed, &self.candidate_view(seat));
        self.send_connection_frame(seat, Some(connect.connection_id), welcome);
        for frame in replay.into_iter().flatten() {
            self.send_to_socket(
                seat,
                SocketOut::Frame {
                    seq: frame.seq,
                    text: frame.text.into(),
                },
            );
        }
        self.seats[seat].connection.opened(now);
        self.seat_changed(seat);
        self.report_connected(seat, connect.ip, resumed);
        let _ = connect.reply.send(Ok(Connected { session, resumed }));
        if duplicate_login {
            return self
                .record_rule_incident(
                    myself,
                    seat,
                    "duplicate_login",
                    "a second connection took over",
                )
                .await;
        }
        None
    }

    pub(super) fn on_disconnect(&mut self, disconnect: Disconnect) {
        let Ok(seat) = self.seat_index(&disconnect.candidate_id) else {
            return;
        };
        let current = self.seats[seat]
            .socket
            .as_ref()
            .is_some_and(|socket| socket.connection_id == disconnect.connection_id);
        if current {
            let now = self.now();
            self.seats[seat].socket = None;
            if self.seats[seat].connection.closed(now).is_some() {
                self.seat_changed(seat);
            }
        }
    }

    pub(super) fn on_heartbeat(&mut self, heartbeat: Heartbeat) {
        let Ok(seat) = self.seat_index(&heartbeat.candidate_id) else {
            return;
        };
        let now = self.now();
        if !self.is_current(seat, heartbeat.connection_id) {
            return;
        }
        if self.seats[seat].connection.heard(now).is_some() {
            self.seat_changed(seat);
        }
        let text = wire::heartbeat(self.seats[seat].last_seq, heartbeat.client_ts, now);
        self.send_connection_frame(seat, Some(heartbeat.connection_id), text);
    }

    fn is_current(&self, seat: usize, connection_id: u64) -> bool {
        self.seats[seat]
            .socket
            .as_ref()
            .is_some_and(|socket| socket.connection_id == connection_id)
    }

    /// Tells whoever sent a refused request why.
    fn refuse_answer(&mut self, seat: usize, answer: Answer, error: ExamError) {
        match answer.reply {
            Some(reply) => {
                let _ = reply.send(Err(error));
            }
            None => {
                let text = wire::error(
                    self.seats[seat].last_seq,
                    error_code(&error),
                    &error.to_string(),
                    Some(answer.cseq),
                );
                self.send_connection_frame(seat, answer.connection_id, text);
            }
        }
    }

    pub(super) async fn on_answer(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        answer: Answer,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&answer.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                if let Some(reply) = answer.reply {
                    let _ = reply.send(Err(error));
                }
                return None;
            }
        };
        let now = self.now();
        if let Some(connection_id) = answer.connection_id
            && self.is_current(seat, connection_id)
        {
            self.seats[seat].connection.heard(now);
        }
        let waiter = if answer.reply.is_some() {
            None
        } else {
            Some(AnswerWaiter::Stream)
        };
        let decision = {
            let context = self.context(seat);
            self.seats[seat].runtime.decide_answer(
                &answer.question_id,
                &answer.value,
                answer.cseq,
                &context,
                now,
            )
        };
        match decision {
            Ok(AnswerDecision::Repeat { version }) => {
                // Still on its way to the journal: acknowledge with the original.
                if let Some(pending) = self.seats[seat].uncommitted.get_mut(&answer.cseq) {
                    pending.waiters.push(match answer.reply {
                        Some(reply) => AnswerWaiter::Rest(reply),
                        None => AnswerWaiter::Stream,
                    });
                    return None;
                }
                self.acknowledge(seat, answer, version).await;
                None
            }
            Err(DomainError::CseqNotIncreasing { .. }) => {
                // Superseded in memory but maybe still on its way to the
                // journal: it is acked when that write commits.
                if let Some(pending) = self.seats[seat].uncommitted.get_mut(&answer.cseq) {
                    if pending.question_id == answer.question_id
                        && pending.digest == value_digest(&answer.value)
                    {
                        pending.waiters.push(match answer.reply {
                            Some(reply) => AnswerWaiter::Rest(reply),
                            None => AnswerWaiter::Stream,
                        });
                    } else {
                        let cseq = answer.cseq;
                        self.refuse_answer(seat, answer, DomainError::CseqConflict(cseq).into());
                    }
                    return None;
                }
                // Older: only the journal knows whether it was saved. Asked
                // off the mailbox (a bounded number at once); the answer
                // comes back as a message.
                if self.lookups >= MAX_LOOKUPS {
                    self.refuse_answer(
                        seat,
                        answer,
                        ExamError::Unavailable("too many old answers are being looked up; resend"),
                    );
                    return None;
                }
                self.lookups += 1;
                let (journal, actor, plan_id) = (
                    self.deps.journal.clone(),
                    myself.clone(),
                    self.plan_id.clone(),
                );
                tokio::spawn(async move {
                    let found = journal
                        .journaled_answer(&plan_id, &answer.candidate_id, answer.cseq)
                        .await;
                    let _ = actor.cast(RoomMsg::Superseded(super::messages::Superseded {
                        answer,
                        found,
                    }));
                });
                None
            }
            Err(refusal) => {
                self.refuse_answer(seat, answer, refusal.into());
                None
            }
            Ok(AnswerDecision::Accepted(event)) => {
                let fence = match self.fence() {
                    Ok(fence) => fence,
                    Err(error) => {
                        // The shard moves (hand-off) or its lease ran out:
                        // a socket gets `control reconnect` as the room
                        // retires and resends the answer after resuming,
                        // like any unacknowledged one; a REST caller gets
                        // `not_owner` (and is forwarded to the new owner).
                        if answer.reply.is_some() {
                            self.refuse_answer(seat, answer, error);
                        }
                        return Some("the shard lease is lost");
                    }
                };
                let CandidateEvent::AnswerSaved {
                    version, digest, ..
                } = &event
                else {
                    return None;
                };
                let (version, digest, cseq) = (*version, *digest, answer.cseq);
                self.seats[seat].runtime.apply(&event);
                self.seats[seat].uncommitted.insert(
                    cseq,
                    Uncommitted {
                        question_id: answer.question_id.clone(),
                        digest,
                        waiters: Vec::new(),
                    },
                );
                let entry = FencedEntry {
                    fence,
                    entry: JournalEntry::Answer {
                        plan_id: self.plan_id.clone(),
                        candidate_id: answer.candidate_id,
                        question_id: answer.question_id,
                        value: answer.value,
                        cseq,
                        version,
                        at: now,
                    },
                };
                let first = match (waiter, answer.reply) {
                    (_, Some(reply)) => AnswerWaiter::Rest(reply),
                    (_, None) => AnswerWaiter::Stream,
                };
                let after = AfterCommit::new(Waiting::Answer {
                    candidate: seat,
                    cseq,
                    version,
                    first,
                });
                match self.write(myself, vec![entry], after).await {
                    Ok(()) => None,
                    Err(_) => Some(WRITE_FAILED),
                }
            }
        }
    }

    pub(super) async fn on_superseded(&mut self, superseded: super::messages::Superseded) {
        self.lookups = self.lookups.saturating_sub(1);
        let answer = superseded.answer;
        let Ok(seat) = self.seat_index(&answer.candidate_id) else {
            return;
        };
        match superseded.found {
            Ok(Some(saved))
                if saved.question_id == answer.question_id
                    && saved.digest == value_digest(&answer.value) =>
            {
                self.acknowledge(seat, answer, saved.version).await;
            }
            Ok(Some(_)) => {
                let cseq = answer.cseq;
                self.refuse_answer(seat, answer, DomainError::CseqConflict(cseq).into());
            }
            Ok(None) => {
                let last = self.seats[seat].runtime.sheet.last_cseq();
                let cseq = answer.cseq;
                self.refuse_answer(
                    seat,
                    answer,
                    DomainError::CseqNotIncreasing { cseq, last }.into(),
                );
            }
            Err(error) => self.refuse_answer(seat, answer, error.into()),
        }
    }

    /// Acknowledges an answer that is already durable.
    async fn acknowledge(&mut self, seat: usize, answer: Answer, version: i64) {
        match answer.reply {
            Some(reply) => {
                let _ = reply.send(Ok(super::messages::AnswerReceipt {
                    cseq: answer.cseq,
                    version,
                }));
            }
            None => {
                self.push(vec![(
                    seat,
                    StreamFrame::Ack {
                        cseq: answer.cseq,
                        version,
                    },
                )])
                .await;
            }
        }
    }

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
