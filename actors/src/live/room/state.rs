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
use tracing::info;

use super::messages::{AnswerReceipt, CommandReceipt, Connected, Reply, RoomMsg};
use super::resume::ResumeLog;
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
use crate::ports::{CandidateKey, Redacted};
use crate::shard::{Fence, ShardId};

/// Telling the plan's coordinator that every candidate of the room is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneReport {
    /// Not told (or a report failed): the next tick reports.
    Unreported,
    /// Report number `attempt` is on its way.
    InFlight { attempt: u64 },
    /// The coordinator confirmed.
    Confirmed,
}

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
    Stream {
        received: std::time::Instant,
        span: tracing::Span,
    },
    Rest {
        reply: Reply<AnswerReceipt>,
        received: std::time::Instant,
        span: tracing::Span,
    },
}

impl AnswerWaiter {
    /// A REST caller's reply port, or (none) the candidate's stream; the
    /// answer's span stays open until it is answered.
    pub(super) fn of(answer: &mut super::messages::Answer) -> Self {
        let (received, span) = (answer.received, answer.span.clone());
        match answer.reply.take() {
            Some(reply) => Self::Rest {
                reply,
                received,
                span,
            },
            None => Self::Stream { received, span },
        }
    }
}

pub(super) struct SocketLink {
    pub connection_id: u64,
    pub sink: mpsc::Sender<SocketOut>,
    pub close_signal: wire::CloseSignal,
    /// While a resume reads what the client missed: what the room sends
    /// the socket meanwhile, to follow the replay.
    pub held: Option<Vec<SocketOut>>,
}

/// A resuming socket waiting for its buffer's answer (see `connect`).
pub(super) struct PendingResume {
    pub connection_id: u64,
    /// Tells the resume log the read is no longer wanted.
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
    pub session: String,
    /// The client's `last_seq`.
    pub client_seq: u64,
    /// The room's last frame to the candidate when the read was queued:
    /// the replay must reach it.
    pub through_seq: u64,
    /// The candidate as the welcome shows it, as of `through_seq`.
    pub view: CandidateView,
    pub ip: Option<String>,
    pub reply: Reply<Connected>,
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
    /// A resume waiting for the frames its client missed.
    pub resuming: Option<PendingResume>,
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
        /// When the room took the command (`invigil_control_delivery_seconds`).
        received: std::time::Instant,
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
    /// Whether the coordinator knows every candidate is done.
    pub(super) done_report: DoneReport,
    /// Set when the room stops hosting: it then only waits for its writes
    /// in flight (so their outcomes reach their waiters and the next
    /// activation reads a settled store) and refuses everything else.
    pub(super) retiring: Option<&'static str>,
    /// Journal lookups of superseded cseqs in flight (bounded).
    pub(super) lookups: usize,
    /// The candidates' resume buffers, written off the mailbox.
    pub(super) resume: ResumeLog,
    /// This room's part of `invigil_candidates` and friends, refreshed
    /// every tick; gone with the room.
    pub(super) gauge: crate::metrics::RoomGauge,
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

    /// The room's candidates by state and connection, for the metrics.
    pub(super) fn report_counts(&self) {
        let mut counts = crate::metrics::RoomCounts::default();
        let (mut sitting, mut sitting_offline) = (0, 0);
        for seat in &self.seats {
            let presence = seat.connection.presence();
            counts.add(seat.runtime.state, presence);
            if seat.runtime.state.is_sitting() || seat.runtime.state == CandidateState::CheckedIn {
                sitting += 1;
                if presence == crate::domain::Presence::Offline {
                    sitting_offline += 1;
                }
            }
        }
        self.gauge.set(counts.with_dark(sitting, sitting_offline));
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

    pub(super) fn seat_changed(&mut self, seat: usize) {
        self.report_presence(seat);
        if !self.subscribers.is_empty() {
            let frame = wire::proctor::seat(self.room_id.as_str(), &self.seat_view(seat));
            self.broadcast_to_proctors(frame);
        }
    }

    // ------------------------------------------------------------ writing

    /// A retiring room stops once its writes in flight have landed and its
    /// resume buffers hold every frame it numbered, so its next activation
    /// reads a settled store and numbers on from its last frame.
    pub(super) async fn stop_when_settled(&mut self, myself: &ActorRef<RoomMsg>, reason: &str) {
        if self.pending.is_empty() {
            self.resume.flush(self.deps.config.call_timeout).await;
            myself.stop(Some(reason.to_string()));
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
            if let Some(pending) = self.seats[seat].resuming.take() {
                pending
                    .cancelled
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = pending
                    .reply
                    .send(Err(ExamError::Unavailable("the room is moving; retry")));
            }
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
