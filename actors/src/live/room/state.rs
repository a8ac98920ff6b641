//! The state of one room actor: its seats (candidates with their live
//! connection and outbound stream), its proctor subscribers, its open
//! incidents, and the writes waiting for their commit.
//!
//! Decisions apply to this state at once (optimistically) so the next
//! message sees them; everything observable — acks, state pushes, controls,
//! proctor deltas, replies — happens only after the journal commit. A failed
//! commit means memory and store disagree: the room retires and is restored
//! from the store on next use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::messages::{AnswerReceipt, CommandReceipt, Committed, Reply, RoomMsg};
use crate::domain::{
    CandidateId, CandidateRuntime, CandidateSpec, CandidateState, Connection, ExamContext,
    ExamRules, Hysteresis, Incident, PlanId, PlanRuntime, PlanSettings, RoomId, RoomRuntime,
    RoomSpec, Timestamp,
};
use crate::error::ExamError;
use crate::live::LiveDeps;
use crate::live::wire::{
    self, CandidateView, IncidentView, PresenceCounts, RoomView, SeatView, SocketOut, StreamFrame,
    close,
};
use crate::ports::{
    CandidateKey, EntryOutcome, FencedEntry, JournalEntry, OutboundFrame, Redacted,
};
use crate::shard::{Fence, ShardId};

/// What a plan's rooms share, built once per plan.
pub struct PlanShared {
    pub rules: ExamRules,
    pub settings: PlanSettings,
    pub title: String,
    /// The import digest the actors were built from.
    pub digest: String,
}

/// Who waits for an answer to become durable.
pub(super) enum AnswerWaiter {
    /// The candidate's stream gets an `ack`.
    Stream,
    Rest(Reply<AnswerReceipt>),
}

pub(super) struct SocketLink {
    pub connection_id: u64,
    pub sink: mpsc::Sender<SocketOut>,
    pub close_signal: wire::CloseSignal,
}

impl SocketLink {
    /// Lets the socket go with a close code. The code reaches the socket task
    /// even when its queue is full (then the close frame itself is lost and
    /// the task reads the code from the signal once the queue's sender drops).
    pub fn let_go(self, code: u16) {
        self.close_signal.set(code);
        let _ = self.sink.try_send(SocketOut::Close {
            code,
            reason: close::reason(code),
        });
    }
}

/// An answer applied here whose write is still on its way to the journal.
pub(super) struct Uncommitted {
    pub question_id: crate::domain::QuestionId,
    /// `answer::value_digest` of its value.
    pub digest: u64,
    /// Who else waits for it (repeats of its cseq).
    pub waiters: Vec<AnswerWaiter>,
}

pub(super) struct Seat {
    pub spec: CandidateSpec<Redacted>,
    pub key: CandidateKey,
    pub runtime: CandidateRuntime,
    /// The candidate row's revision in the store.
    pub revision: i64,
    pub connection: Connection,
    /// The presence last reported to the workers (going offline while
    /// sitting is a rule input).
    pub reported_presence: crate::domain::Presence,
    pub session: Option<String>,
    /// The last stream `seq` sent.
    pub last_seq: u64,
    pub socket: Option<SocketLink>,
    /// Answers applied here but not yet durable, by cseq.
    pub uncommitted: HashMap<i64, Uncommitted>,
    /// Client events in the current minute: (window start, count).
    pub events: (Timestamp, u32),
}

pub(super) struct Subscriber {
    pub id: u64,
    pub sink: mpsc::Sender<SocketOut>,
}

/// Who waits for a write, and what to send once it is durable.
pub(super) enum Waiting {
    Nobody,
    Answer {
        candidate: usize,
        cseq: i64,
        version: i64,
        first: AnswerWaiter,
    },
    State {
        reply: Reply<CandidateState>,
        state: CandidateState,
    },
    Receipt {
        reply: Reply<CommandReceipt>,
        targets: Vec<usize>,
    },
    Incident {
        reply: Reply<IncidentView>,
        view: Box<IncidentView>,
    },
    Done(Reply<()>),
}

/// What happens once a write is durable.
pub(super) struct AfterCommit {
    /// Stream frames to candidates (seat index, frame).
    pub frames: Vec<(usize, StreamFrame)>,
    /// Seats whose proctor view changed.
    pub seats: Vec<usize>,
    /// Other frames for the dashboards.
    pub proctor_frames: Vec<String>,
    pub waiting: Waiting,
}

impl AfterCommit {
    pub fn new(waiting: Waiting) -> Self {
        Self {
            frames: Vec::new(),
            seats: Vec::new(),
            proctor_frames: Vec::new(),
            waiting,
        }
    }
}

pub struct RoomState {
    pub(super) deps: Arc<LiveDeps>,
    /// The directory's scope of actor names (to find the coordinator).
    pub(super) scope: Arc<str>,
    pub(super) plan_id: PlanId,
    pub(super) room_id: RoomId,
    pub(super) shard: ShardId,
    pub(super) shared: Arc<PlanShared>,
    pub(super) plan: PlanRuntime,
    pub(super) room: RoomRuntime,
    pub(super) room_revision: i64,
    pub(super) spec: RoomSpec,
    pub(super) seats: Vec<Seat>,
    pub(super) index: HashMap<CandidateId, usize>,
    /// Open incidents of the room.
    pub(super) incidents: Vec<Incident>,
    pub(super) subscribers: Vec<Subscriber>,
    pub(super) pending: HashMap<u64, AfterCommit>,
    pub(super) next_ticket: u64,
    /// Seats whose answer count changed since the last progress frame.
    pub(super) progress_dirty: HashSet<usize>,
    pub(super) hysteresis: Hysteresis,
    /// The coordinator was told every candidate is done.
    pub(super) done_reported: bool,
    /// Set when the room stops hosting: it then only waits for its writes
    /// in flight (so their outcomes reach their waiters and the next
    /// activation reads a settled store) and refuses everything else.
    pub(super) retiring: Option<&'static str>,
    /// Journal lookups of superseded cseqs in flight (bounded).
    pub(super) lookups: usize,
}

impl RoomState {
    pub(super) fn seat_index(&self, candidate_id: &CandidateId) -> Result<usize, ExamError> {
        self.index
            .get(candidate_id)
            .copied()
            .ok_or(ExamError::NotFound("candidate"))
    }

    pub(super) fn context(&self, seat: usize) -> ExamContext<'_> {
        ExamContext {
            rules: &self.shared.rules,
            plan: &self.plan,
            room: &self.room,
            extra_time_s: self.seats[seat].spec.extra_time_s,
        }
    }

    pub(super) fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    /// The fence to write under. A room whose lease ran out refuses the
    /// write itself (self-fencing), counted like a refusal by the store.
    pub(super) fn fence(&self) -> Result<Fence, ExamError> {
        self.deps.leases.fence(self.shard).ok_or_else(|| {
            crate::shard::count_self_fenced_write();
            ExamError::NotOwner(self.shard)
        })
    }

    /// Whether the room's lease is still usable (no write intended).
    pub(super) fn holds_lease(&self) -> bool {
        self.deps.leases.fence(self.shard).is_some()
    }

    // ------------------------------------------------------------ views

    pub(super) fn candidate_view(&self, seat: usize) -> CandidateView {
        let now = self.now();
        let candidate = &self.seats[seat];
        let context = self.context(seat);
        let clock = candidate.runtime.clock(&context);
        CandidateView {
            candidate_id: candidate.spec.id.to_string(),
            plan_id: self.plan_id.to_string(),
            room_id: self.room_id.to_string(),
            name: candidate.spec.name.clone(),
            seat: candidate.spec.seat.clone(),
            state: candidate.runtime.state.as_str(),
            exam_state: wire::exam_state(&candidate.runtime, &clock).as_str(),
            paused_by: wire::paused_by(
                self.plan.pauses.is_paused(),
                &self.room,
                &candidate.runtime,
            ),
            submit_reason: wire::submit_reason(&candidate.runtime),
            remaining_s: self.shown_remaining_s(seat, &clock, now),
            ends_at: clock.ends_at(now).map(wire::rfc3339),
            extra_time_s: candidate.spec.extra_time_s,
            warnings: candidate.runtime.warnings,
            last_cseq: candidate.runtime.sheet.last_cseq(),
            answers: candidate
                .runtime
                .sheet
                .answered()
                .filter(|(_, saved)| !candidate.uncommitted.contains_key(&saved.cseq))
                .map(|(question, saved)| (question.to_string(), saved.version))
                .collect::<BTreeMap<_, _>>(),
            server_time: wire::rfc3339(now),
        }
    }

    /// Time left as people see it: none once the candidate is done or the
    /// plan is over (the clock itself would still count what was unused).
    fn shown_remaining_s(
        &self,
        seat: usize,
        clock: &crate::domain::CandidateClock<'_>,
        now: Timestamp,
    ) -> i64 {
        if self.seats[seat].runtime.state.is_final() || self.plan.state.is_over() {
            0
        } else {
            clock.remaining_s(now)
        }
    }

    pub(super) fn seat_view(&self, seat: usize) -> SeatView {
        let now = self.now();
        let candidate = &self.seats[seat];
        let context = self.context(seat);
        let clock = candidate.runtime.clock(&context);
        SeatView {
            candidate_id: candidate.spec.id.to_string(),
            reg_no: candidate.spec.reg_no.clone(),
            name: candidate.spec.name.clone(),
            seat: candidate.spec.seat.clone(),
            state: candidate.runtime.state.as_str(),
            exam_state: wire::exam_state(&candidate.runtime, &clock).as_str(),
            connection: candidate.connection.presence().as_str(),
            answered: candidate.runtime.sheet.answered_count(),
            remaining_s: self.shown_remaining_s(seat, &clock, now),
            extra_time_s: candidate.spec.extra_time_s,
            warnings: candidate.runtime.warnings,
            incidents_open: self
                .incidents
                .iter()
                .filter(|incident| incident.candidate_id.as_ref() == Some(&candidate.spec.id))
                .count(),
        }
    }

    pub(super) fn room_view(&self) -> RoomView {
        RoomView {
            room_id: self.room_id.to_string(),
            name: self.spec.name.clone(),
            state: self.room.state.as_str(),
            paused: self.room.pauses.is_paused(),
            plan_state: self.plan.state.as_str(),
            extension_s: self.room.extension_s,
            capacity: self.spec.capacity,
            seats: (0..self.seats.len())
                .map(|seat| self.seat_view(seat))
                .collect(),
            incidents: self.incidents.iter().map(IncidentView::from).collect(),
        }
    }

    pub(super) fn presence(&self) -> PresenceCounts {
        let mut counts = PresenceCounts::default();
        for seat in &self.seats {
            counts.add(seat.connection.presence());
        }
        counts
    }

    pub(super) fn state_frame(&self, seat: usize, event: &'static str) -> StreamFrame {
        StreamFrame::State {
            event,
            view: Box::new(self.candidate_view(seat)),
        }
    }

    // ------------------------------------------------------------ sending

    /// Sends stream frames: numbered, kept for resume, forwarded to live
    /// sockets. Returns, per frame, whether a live socket got it.
    pub(super) async fn push(&mut self, frames: Vec<(usize, StreamFrame)>) -> Vec<bool> {
        if frames.is_empty() {
            return Vec::new();
        }
        let mut buffered = Vec::with_capacity(frames.len());
        let mut outgoing = Vec::with_capacity(frames.len());
        for (seat, frame) in frames {
            let candidate = &mut self.seats[seat];
            candidate.last_seq += 1;
            let seq = candidate.last_seq;
            let text = frame.render(seq);
            buffered.push((
                candidate.key.clone(),
                OutboundFrame {
                    seq,
                    text: text.clone(),
                },
            ));
            outgoing.push((seat, seq, Arc::<str>::from(text)));
        }
        if let Err(error) = self
            .deps
            .hot
            .append_outbound(&buffered, self.deps.config.resume_buffer)
            .await
        {
            // Resume degrades to a snapshot; the live frame still goes out.
            warn!(%error, room_id = %self.room_id, "resume buffer append failed");
        }
        outgoing
            .into_iter()
            .map(|(seat, seq, text)| self.send_to_socket(seat, SocketOut::Frame { seq, text }))
            .collect()
    }

    /// Sends a connection frame (not numbered, not kept) to one socket.
    pub(super) fn send_connection_frame(
        &mut self,
        seat: usize,
        connection_id: Option<u64>,
        text: String,
    ) {
        let candidate = &self.seats[seat];
        let matches = match (&candidate.socket, connection_id) {
            (Some(socket), Some(id)) => socket.connection_id == id,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches {
            let seq = candidate.last_seq;
            self.send_to_socket(
                seat,
                SocketOut::Frame {
                    seq,
                    text: text.into(),
                },
            );
        }
    }

    /// Hands a frame to the seat's socket. A socket that cannot keep up is
    /// closed; its client resumes from the buffer.
    pub(super) fn send_to_socket(&mut self, seat: usize, out: SocketOut) -> bool {
        let candidate = &mut self.seats[seat];
        let Some(socket) = &candidate.socket else {
            return false;
        };
        let released = match socket.sink.try_send(out) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(candidate_id = %candidate.spec.id, "socket too slow; closing it");
                if let Some(socket) = candidate.socket.take() {
                    socket.let_go(close::SLOW_CONSUMER);
                }
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => candidate.socket.take().is_some(),
        };
        // The socket task's own Disconnect will no longer match: the seat
        // goes stale (then offline) here.
        if released {
            let now = self.now();
            if self.seats[seat].connection.closed(now).is_some() {
                self.seat_changed(seat);
            }
        }
        false
    }

    /// Sends a frame to every dashboard; drops the ones that cannot keep up.
    pub(super) fn broadcast_to_proctors(&mut self, text: String) {
        if self.subscribers.is_empty() {
            return;
        }
        let text: Arc<str> = text.into();
        self.subscribers.retain(|subscriber| {
            match subscriber.sink.try_send(SocketOut::Frame {
                seq: 0,
                text: text.clone(),
            }) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = subscriber.sink.try_send(SocketOut::Close {
                        code: close::SLOW_CONSUMER,
                        reason: "too slow",
                    });
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    pub(super) fn seat_changed(&mut self, seat: usize) {
        self.report_presence(seat);
        if !self.subscribers.is_empty() {
            let frame = wire::proctor::seat(self.room_id.as_str(), &self.seat_view(seat));
            self.broadcast_to_proctors(frame);
        }
    }

    // ------------------------------------------------------------ writing

    /// Writes entries through the journal (group commit). `after` runs once
    /// they are durable; on failure its waiters get the error and the room
    /// retires.
    pub(super) async fn write(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        entries: Vec<FencedEntry>,
        after: AfterCommit,
    ) -> Result<(), ExamError> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(ticket, after);
        let actor = myself.clone();
        let on_commit = Box::new(move |result| {
            // The actor may have stopped; its state is then restored from the store.
            let _ = actor.cast(RoomMsg::Committed(Committed { ticket, result }));
        });
        if let Err(error) = self.deps.writer.submit(entries, on_commit).await {
            let error = ExamError::from(error);
            if let Some(after) = self.pending.remove(&ticket) {
                self.fail(after, &error);
            }
            return Err(error);
        }
        Ok(())
    }

    /// The journal entry of a candidate event (at the seat's next revision).
    pub(super) fn candidate_entry(
        &mut self,
        fence: Fence,
        seat: usize,
        event: crate::domain::CandidateEvent,
    ) -> FencedEntry {
        let candidate = &mut self.seats[seat];
        candidate.runtime.apply(&event);
        let revision = candidate.revision;
        candidate.revision += 1;
        FencedEntry {
            fence,
            entry: JournalEntry::Candidate {
                plan_id: self.plan_id.clone(),
                candidate_id: candidate.spec.id.clone(),
                revision,
                event,
                runtime: candidate.runtime.clone(),
            },
        }
    }

    pub(super) fn room_entry(
        &mut self,
        fence: Fence,
        event: crate::domain::RoomEvent,
    ) -> FencedEntry {
        self.room.apply(&event);
        let revision = self.room_revision;
        self.room_revision += 1;
        FencedEntry {
            fence,
            entry: JournalEntry::Room {
                plan_id: self.plan_id.clone(),
                room_id: self.room_id.clone(),
                revision,
                event,
                runtime: self.room.clone(),
            },
        }
    }

    /// Handles a commit: on success sends what waited for it; on failure
    /// fails the waiters. Returns whether the room must retire.
    pub(super) async fn committed(&mut self, committed: Committed) -> bool {
        let Some(after) = self.pending.remove(&committed.ticket) else {
            return false;
        };
        let failure = match &committed.result {
            Ok(outcomes) => outcomes.iter().find_map(|outcome| match outcome {
                EntryOutcome::Written | EntryOutcome::AlreadyStored => None,
                EntryOutcome::StaleFence => {
                    crate::shard::count_stale_write();
                    Some(ExamError::NotOwner(self.shard))
                }
                EntryOutcome::Conflict => Some(ExamError::Contended),
            }),
            Err(error) => Some(ExamError::Store(error.clone())),
        };
        match failure {
            None => {
                self.deliver(after).await;
                false
            }
            Some(error) => {
                warn!(room_id = %self.room_id, %error, "a write of this room failed; retiring it");
                self.fail(after, &error);
                true
            }
        }
    }

    async fn deliver(&mut self, after: AfterCommit) {
        // A state frame shows the candidate as they are when it is sent, not
        // as they were when the write was decided (a plan pause may have come
        // in between).
        let mut frames: Vec<(usize, StreamFrame)> = after
            .frames
            .into_iter()
            .map(|(seat, frame)| match frame {
                StreamFrame::State { event, .. } => (seat, self.state_frame(seat, event)),
                other => (seat, other),
            })
            .collect();
        let mut replies_after_push = None;
        match after.waiting {
            Waiting::Nobody => {}
            Waiting::Answer {
                candidate,
                cseq,
                version,
                first,
            } => {
                let mut waiters = self.seats[candidate]
                    .uncommitted
                    .remove(&cseq)
                    .map(|pending| pending.waiters)
                    .unwrap_or_default();
                waiters.push(first);
                // One ack per send of the cseq: a repeat is acked again.
                let mut stream_acks = 0;
                for waiter in waiters {
                    match waiter {
                        AnswerWaiter::Stream => stream_acks += 1,
                        AnswerWaiter::Rest(reply) => {
                            let _ = reply.send(Ok(AnswerReceipt { cseq, version }));
                        }
                    }
                }
                for _ in 0..stream_acks {
                    frames.push((candidate, StreamFrame::Ack { cseq, version }));
                }
                self.progress_dirty.insert(candidate);
            }
            Waiting::State { reply, state } => {
                let _ = reply.send(Ok(state));
            }
            Waiting::Incident { reply, view } => {
                let _ = reply.send(Ok(*view));
            }
            Waiting::Done(reply) => {
                let _ = reply.send(Ok(()));
            }
            Waiting::Receipt { reply, targets } => replies_after_push = Some((reply, targets)),
        }
        let seats_of_frames: Vec<usize> = frames.iter().map(|(seat, _)| *seat).collect();
        let delivered = self.push(frames).await;
        if let Some((reply, targets)) = replies_after_push {
            let reached: HashSet<usize> = seats_of_frames
                .iter()
                .zip(&delivered)
                .filter(|(seat, delivered)| **delivered && targets.contains(seat))
                .map(|(seat, _)| *seat)
                .collect();
            let _ = reply.send(Ok(CommandReceipt {
                delivered: !reached.is_empty(),
                reached: reached.len(),
            }));
        }
        for seat in after.seats {
            self.seat_changed(seat);
        }
        for frame in after.proctor_frames {
            self.broadcast_to_proctors(frame);
        }
    }

    fn fail(&mut self, after: AfterCommit, error: &ExamError) {
        match after.waiting {
            Waiting::Nobody => {}
            Waiting::Answer {
                candidate,
                cseq,
                first,
                ..
            } => {
                let mut waiters = self.seats[candidate]
                    .uncommitted
                    .remove(&cseq)
                    .map(|pending| pending.waiters)
                    .unwrap_or_default();
                waiters.push(first);
                for waiter in waiters {
                    match waiter {
                        AnswerWaiter::Stream => {
                            let text = wire::error(
                                self.seats[candidate].last_seq,
                                error_code(error),
                                &error.to_string(),
                                Some(cseq),
                            );
                            self.send_connection_frame(candidate, None, text);
                        }
                        AnswerWaiter::Rest(reply) => {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
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
        }
    }

    /// Stops hosting: every socket is told to reconnect (it will land on
    /// whichever node hosts the room next). Writes in flight are waited for
    /// (`retiring`): their outcomes still reach their waiters — an answer
    /// that commits is acked into the resume buffer — and the room's next
    /// activation reads a store they no longer change.
    pub(super) fn retire(&mut self, reason: &'static str) {
        if self.retiring.is_some() {
            return;
        }
        info!(room_id = %self.room_id, plan_id = %self.plan_id, reason, writes_in_flight = self.pending.len(), "room retiring");
        self.retiring = Some(reason);
        for seat in 0..self.seats.len() {
            let control = StreamFrame::Control {
                action: "reconnect",
                reason: Some(reason.to_string()),
                extend_s: None,
            };
            let seq = self.seats[seat].last_seq;
            // Not numbered: the client reconnects and resumes anyway.
            if let Some(socket) = self.seats[seat].socket.take() {
                let _ = socket.sink.try_send(SocketOut::Frame {
                    seq,
                    text: control.render(seq).into(),
                });
                socket.let_go(close::RECONNECT);
            }
        }
        for subscriber in std::mem::take(&mut self.subscribers) {
            let _ = subscriber.sink.try_send(SocketOut::Close {
                code: close::RECONNECT,
                reason: "reconnect",
            });
        }
    }
}

/// The stable code of an exam error, for error frames.
pub fn error_code(error: &ExamError) -> &'static str {
    match error {
        ExamError::Domain(domain) => domain.code(),
        ExamError::NotFound(_) => "not_found",
        ExamError::NotOwner(_) => "not_owner",
        ExamError::Contended => "concurrent_update",
        ExamError::Store(_) => "store_unavailable",
        ExamError::Stopped => "shutting_down",
        ExamError::Unavailable(_) => "unavailable",
    }
}
