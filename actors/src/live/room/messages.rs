//! What a room actor is asked. Each variant wraps a named struct.

use ractor::RpcReplyPort;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::domain::AnswerValue;
use crate::domain::{
    CandidateId, CandidateState, IncidentStatus, PlanEvent, PlanRuntime, ProctorId, QuestionId,
};
use crate::error::ExamError;
use crate::journal_writer::CommitResult;
use crate::live::wire::{
    CandidateView, CloseSignal, IncidentView, PresenceCounts, RoomView, SocketOut,
};

pub type Reply<T> = RpcReplyPort<Result<T, ExamError>>;

pub enum RoomMsg {
    Connect(Connect),
    ResumeRead(ResumeRead),
    Disconnect(Disconnect),
    Heartbeat(Heartbeat),
    Answer(Answer),
    ClientEvent(ClientEvent),
    Submit(Submit),
    CheckIn(CheckIn),
    CandidateCommand(CandidateCommand),
    RoomCommand(RoomCommand),
    ReportIncident(ReportIncident),
    ResolveIncident(ResolveIncident),
    RaiseIncident(RaiseIncident),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    ViewCandidate(ViewCandidate),
    ViewRoom(ViewRoom),
    Presence(PresenceQuery),
    PlanChanged(PlanChanged),
    Tick,
    Committed(Committed),
    Superseded(Superseded),
    DoneReported(DoneReported),
    Retire(Retire),
}

impl ractor::Message for RoomMsg {}

/// A candidate socket said hello.
pub struct Connect {
    pub candidate_id: CandidateId,
    pub connection_id: u64,
    pub sink: mpsc::Sender<SocketOut>,
    /// Set by the room when it lets the socket go.
    pub close_signal: CloseSignal,
    /// `(session, last_seq)` when the client resumes.
    pub resume: Option<(String, u64)>,
    /// The peer's address, for the IP-change rule and the candidate log.
    pub ip: Option<String>,
    pub reply: Reply<Connected>,
}

#[derive(Debug)]
pub struct Connected {
    pub session: String,
    pub resumed: bool,
}

/// The frames a resuming client missed, read from its resume buffer (off
/// the mailbox, after every frame the room numbered before the read).
pub struct ResumeRead {
    pub candidate_id: CandidateId,
    pub connection_id: u64,
    pub found: Result<Option<Vec<crate::ports::OutboundFrame>>, crate::ports::HotStateError>,
}

pub struct Disconnect {
    pub candidate_id: CandidateId,
    pub connection_id: u64,
}

pub struct Heartbeat {
    pub candidate_id: CandidateId,
    pub connection_id: u64,
    pub client_ts: Option<i64>,
}

/// An answer from a socket (`reply` is `None`: the ack goes on the stream)
/// or from REST (`reply` answers once durable).
pub struct Answer {
    pub candidate_id: CandidateId,
    pub connection_id: Option<u64>,
    pub question_id: QuestionId,
    /// Serialised where it entered (the socket task or the REST handler),
    /// not on the room's mailbox.
    pub value: AnswerValue,
    pub cseq: i64,
    pub reply: Option<Reply<AnswerReceipt>>,
    /// When the frame or request arrived (`invigil_answer_ack_seconds`).
    pub received: std::time::Instant,
    /// The answer's span, from receipt to ack (a `debug` span: traced only
    /// when spans are exported).
    pub span: tracing::Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerReceipt {
    pub cseq: i64,
    pub version: i64,
}

/// A client-side event (focus lost, copy-paste, …): recorded as an incident.
pub struct ClientEvent {
    pub candidate_id: CandidateId,
    pub connection_id: u64,
    pub kind: String,
    pub detail: Option<Value>,
}

pub struct Submit {
    pub candidate_id: CandidateId,
    pub connection_id: Option<u64>,
    pub reply: Option<Reply<CandidateState>>,
}

/// A login: check the candidate in (and begin when the exam runs).
pub struct CheckIn {
    pub candidate_id: CandidateId,
    pub reply: Reply<CandidateState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProctorAction {
    Warn {
        reason: Option<String>,
    },
    Pause {
        reason: Option<String>,
    },
    Resume {
        reason: Option<String>,
    },
    Extend {
        seconds: i64,
        reason: Option<String>,
    },
    ForceSubmit {
        reason: Option<String>,
    },
    Expel {
        reason: Option<String>,
    },
}

impl ProctorAction {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Warn { .. } => "warn",
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
            Self::Extend { .. } => "extend",
            Self::ForceSubmit { .. } => "force_submit",
            Self::Expel { .. } => "expel",
        }
    }
}

/// A proctor's command to one candidate.
pub struct CandidateCommand {
    pub candidate_id: CandidateId,
    pub action: ProctorAction,
    pub by: ProctorId,
    pub reply: Reply<CommandReceipt>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReceipt {
    /// The candidate (or, for a room command, at least one) had a live
    /// socket and was sent the control.
    pub delivered: bool,
    /// Live sockets reached.
    pub reached: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomAction {
    Pause,
    Resume,
    Extend { seconds: i64 },
    Notice { text: String },
}

impl RoomAction {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Extend { .. } => "extend",
            Self::Notice { .. } => "notice",
        }
    }
}

pub struct RoomCommand {
    pub action: RoomAction,
    pub by: ProctorId,
    pub reply: Reply<CommandReceipt>,
}

pub struct ReportIncident {
    pub candidate_id: CandidateId,
    pub kind: String,
    pub note: Option<String>,
    pub by: ProctorId,
    pub reply: Reply<IncidentView>,
}

/// An incident rule fired: raise `kind` for the candidate (or, with no
/// candidate, for the room) unless one of that kind is open already.
pub struct RaiseIncident {
    /// The incident's id, derived from the rule's input: raising it again
    /// (a redelivered entry) finds it stored and changes nothing.
    pub id: String,
    pub candidate_id: Option<CandidateId>,
    pub kind: &'static str,
    pub note: String,
    /// `true` when a new incident was recorded.
    pub reply: Reply<bool>,
}

pub struct ResolveIncident {
    pub incident_id: String,
    pub status: IncidentStatus,
    pub action: Option<String>,
    pub by: ProctorId,
    pub reply: Reply<IncidentView>,
}

/// A proctor dashboard wants the room's snapshot, then its deltas.
pub struct Subscribe {
    pub subscriber_id: u64,
    pub proctor_id: ProctorId,
    pub sink: mpsc::Sender<SocketOut>,
    pub reply: Reply<()>,
}

pub struct Unsubscribe {
    pub subscriber_id: u64,
}

pub struct ViewCandidate {
    pub candidate_id: CandidateId,
    pub reply: Reply<CandidateView>,
}

pub struct ViewRoom {
    pub reply: Reply<RoomView>,
}

pub struct PresenceQuery {
    pub reply: Reply<PresenceCounts>,
}

/// The plan's coordinator changed the plan.
pub struct PlanChanged {
    pub runtime: PlanRuntime,
    pub events: Vec<PlanEvent>,
    /// Answered once the room's consequences of the change are durable.
    pub done: Option<Reply<()>>,
}

/// A journal batch with this room's entries committed (or failed).
pub struct Committed {
    pub ticket: u64,
    pub result: CommitResult,
}

/// The journal's answer about a cseq below the last one (looked up off the
/// room's mailbox so a slow read or a flood of old cseqs cannot stall it).
pub struct Superseded {
    pub answer: Answer,
    pub found: Result<Option<crate::ports::JournaledAnswer>, crate::error::StoreError>,
}

/// How a report to the plan's coordinator that every candidate is done went.
pub struct DoneReported {
    pub attempt: u64,
    pub confirmed: bool,
}

/// Stop hosting the room: sockets are told to reconnect.
pub struct Retire {
    pub reason: &'static str,
}

impl RoomMsg {
    /// Whether the message asks for a durable write.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::Answer(_)
                | Self::ClientEvent(_)
                | Self::Submit(_)
                | Self::CheckIn(_)
                | Self::CandidateCommand(_)
                | Self::RoomCommand(_)
                | Self::ReportIncident(_)
                | Self::ResolveIncident(_)
                | Self::RaiseIncident(_)
        )
    }

    /// Answers the message with `error` without acting on it (a retiring
    /// room); messages nobody waits for are dropped.
    pub fn refuse(self, error: ExamError) {
        match self {
            Self::Connect(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::Answer(message) => {
                if let Some(reply) = message.reply {
                    let _ = reply.send(Err(error));
                }
            }
            Self::Submit(message) => {
                if let Some(reply) = message.reply {
                    let _ = reply.send(Err(error));
                }
            }
            Self::CheckIn(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::CandidateCommand(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::RoomCommand(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::ReportIncident(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::ResolveIncident(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::RaiseIncident(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::Subscribe(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::ViewCandidate(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::ViewRoom(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::Presence(message) => {
                let _ = message.reply.send(Err(error));
            }
            Self::PlanChanged(message) => {
                if let Some(done) = message.done {
                    let _ = done.send(Err(error));
                }
            }
            Self::Superseded(message) => {
                if let Some(reply) = message.answer.reply {
                    let _ = reply.send(Err(error));
                }
            }
            Self::Disconnect(_)
            | Self::ResumeRead(_)
            | Self::Heartbeat(_)
            | Self::ClientEvent(_)
            | Self::Unsubscribe(_)
            | Self::Tick
            | Self::Committed(_)
            | Self::DoneReported(_)
            | Self::Retire(_) => {}
        }
    }
}
