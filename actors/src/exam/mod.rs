//! The exam as the API sees it: every operation is a message to the actor
//! that owns the state (a room or a plan coordinator), found or activated
//! through the directory. REST and WebSockets take this one door; the api
//! crate never names an actor.
//!
//! Every call has a timeout; a call that finds its actor just stopped (it
//! retired, e.g. after a failed write) is retried once, after a short
//! pause, on a fresh activation.
//!
//! # Layout
//! - `link`: what a socket holds while joined: a candidate's link to their
//!   room, a proctor's watch on a room

mod link;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde_json::Value;
use tokio::sync::mpsc;

pub use self::link::{CandidateInput, CandidateLink, RoomGone, RoomWatch};
use crate::domain::AnswerValue;
use crate::domain::{
    CandidateId, CandidateState, IncidentStatus, PlanCommand, PlanId, ProctorId, QuestionId, RoomId,
};
use crate::error::ExamError;
use crate::live::directory::Directory;
use crate::live::plan::{Command, PlanMsg};
use crate::live::room::{
    Answer, AnswerReceipt, CandidateCommand, CheckIn, CommandReceipt, Connect, Disconnect,
    PresenceQuery, ProctorAction, ReportIncident, ResolveIncident, RoomAction, RoomCommand,
    RoomMsg, Submit, Subscribe, ViewCandidate, ViewRoom,
};
use crate::live::wire::{
    CandidateView, CloseSignal, IncidentView, PresenceCounts, RoomView, SocketOut,
};
use crate::ports::VersionedPlanRuntime;

/// The pause before the one retry of a call whose actor had just stopped:
/// long enough for the registry to let go of its name.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// Distinguishes the sockets (and dashboard subscriptions) of one process.
fn next_socket_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub struct Exam {
    directory: Arc<Directory>,
    /// How long a caller waits for an actor's answer.
    call_timeout: Duration,
    /// Frames queued per candidate socket before it counts as too slow.
    socket_queue: usize,
}

impl Exam {
    pub fn new(directory: Arc<Directory>) -> Self {
        let config = directory.deps().config;
        Self {
            directory,
            call_timeout: config.call_timeout,
            socket_queue: config.socket_queue,
        }
    }

    /// Asks a room; `build` makes the message around the reply port (it is
    /// called again for the retry). Returns the room with the answer.
    async fn ask<T: Send + 'static>(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        build: impl Fn(RpcReplyPort<Result<T, ExamError>>) -> RoomMsg,
    ) -> Result<(ActorRef<RoomMsg>, T), ExamError> {
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            let room = self.directory.room(plan_id, room_id).await?;
            match room.call(&build, Some(self.call_timeout)).await {
                Ok(CallResult::Success(result)) => return result.map(|answer| (room, answer)),
                Ok(CallResult::Timeout) => {
                    return Err(ExamError::Unavailable(
                        "the room did not answer in time; retry",
                    ));
                }
                // The room stopped between the lookup and the call.
                Ok(CallResult::SenderError) | Err(_) => continue,
            }
        }
        Err(ExamError::Unavailable("the room is unavailable; retry"))
    }

    /// Asks a room; see [`Self::ask`].
    async fn ask_room<T: Send + 'static>(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        build: impl Fn(RpcReplyPort<Result<T, ExamError>>) -> RoomMsg,
    ) -> Result<T, ExamError> {
        self.ask(plan_id, room_id, build)
            .await
            .map(|(_, answer)| answer)
    }

    /// Joins a candidate's socket to their room after its `hello`: the room
    /// sends `welcome` (and, resuming, what the client missed) through the
    /// link, then every numbered frame. `resume` is `(session, last_seq)`;
    /// `ip` the peer's address, for the IP-change rule.
    pub async fn connect_candidate(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
        ip: Option<String>,
        resume: Option<(String, u64)>,
    ) -> Result<CandidateLink, ExamError> {
        let connection_id = next_socket_id();
        let (sink, outgoing) = mpsc::channel::<SocketOut>(self.socket_queue);
        let close_signal = CloseSignal::default();
        let joined = self
            .ask(plan_id, room_id, |reply| {
                RoomMsg::Connect(Connect {
                    candidate_id: candidate_id.clone(),
                    connection_id,
                    sink: sink.clone(),
                    close_signal: close_signal.clone(),
                    ip: ip.clone(),
                    resume: resume.clone(),
                    reply,
                })
            })
            .await;
        let (room, connected) = match joined {
            Ok(joined) => joined,
            Err(error) => {
                // The room may have taken the socket before its answer was
                // given up on (a timeout): it lets it go again.
                if let Some(room) = self.directory.live_room(plan_id, room_id) {
                    let _ = room.cast(RoomMsg::Disconnect(Disconnect {
                        candidate_id: candidate_id.clone(),
                        connection_id,
                    }));
                }
                return Err(error);
            }
        };
        // The room holds the only sender now: the queue ends when it lets go.
        drop(sink);
        Ok(CandidateLink {
            room,
            candidate_id: candidate_id.clone(),
            connection_id,
            outgoing,
            close_signal,
            session: connected.session,
            resumed: connected.resumed,
        })
    }

    /// A queue for a proctor dashboard's frames, fed by [`Self::watch_room`]
    /// (larger than a candidate's: a snapshot per room, every seat's deltas).
    pub fn proctor_queue(&self) -> (mpsc::Sender<SocketOut>, mpsc::Receiver<SocketOut>) {
        mpsc::channel(4 * self.socket_queue)
    }

    /// Subscribes a dashboard queue to a room: the room's snapshot, then its
    /// deltas, until the returned watch is dropped. A dashboard that does
    /// not keep up is sent a close and dropped by the room.
    pub async fn watch_room(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        proctor_id: &ProctorId,
        sink: &mpsc::Sender<SocketOut>,
    ) -> Result<RoomWatch, ExamError> {
        let subscriber_id = next_socket_id();
        let (room, ()) = self
            .ask(plan_id, room_id, |reply| {
                RoomMsg::Subscribe(Subscribe {
                    subscriber_id,
                    proctor_id: proctor_id.clone(),
                    sink: sink.clone(),
                    reply,
                })
            })
            .await?;
        Ok(RoomWatch {
            room,
            subscriber_id,
        })
    }

    async fn ask_plan(
        &self,
        plan_id: &PlanId,
        command: PlanCommand,
    ) -> Result<VersionedPlanRuntime, ExamError> {
        let timeout = self.call_timeout * 6;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            let plan: ActorRef<PlanMsg> = self.directory.plan(plan_id).await?;
            let message = |reply| {
                PlanMsg::Command(Command {
                    command: command.clone(),
                    reply,
                })
            };
            match plan.call(message, Some(timeout)).await {
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::Timeout) => {
                    return Err(ExamError::Unavailable(
                        "the plan did not answer in time; retry",
                    ));
                }
                Ok(CallResult::SenderError) | Err(_) if attempt == 0 => continue,
                Ok(CallResult::SenderError) | Err(_) => {
                    return Err(ExamError::Unavailable("the plan is unavailable; retry"));
                }
            }
        }
        Err(ExamError::Unavailable("the plan is unavailable; retry"))
    }

    /// Runs an admin command on a plan through its coordinator.
    #[tracing::instrument(name = "plan.command", skip_all, fields(plan_id = %plan_id, command = ?command))]
    pub async fn plan_command(
        &self,
        plan_id: &PlanId,
        command: &PlanCommand,
    ) -> Result<VersionedPlanRuntime, ExamError> {
        self.ask_plan(plan_id, command.clone()).await
    }

    /// Checks a candidate in (login); returns their state after it.
    pub async fn check_in(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
    ) -> Result<CandidateState, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::CheckIn(CheckIn {
                candidate_id: candidate_id.clone(),
                reply,
            })
        })
        .await
    }

    pub async fn candidate_view(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
    ) -> Result<CandidateView, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::ViewCandidate(ViewCandidate {
                candidate_id: candidate_id.clone(),
                reply,
            })
        })
        .await
    }

    /// Saves an answer; returns once it is durable.
    pub async fn answer(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
        question_id: &QuestionId,
        value: &Value,
        cseq: i64,
    ) -> Result<AnswerReceipt, ExamError> {
        let received = std::time::Instant::now();
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::Answer(Answer {
                candidate_id: candidate_id.clone(),
                connection_id: None,
                question_id: question_id.clone(),
                value: AnswerValue::new(value.clone()),
                cseq,
                reply: Some(reply),
                received,
                span: tracing::debug_span!("answer", cseq, question = %question_id),
            })
        })
        .await
    }

    pub async fn submit(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
    ) -> Result<CandidateState, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::Submit(Submit {
                candidate_id: candidate_id.clone(),
                connection_id: None,
                reply: Some(reply),
            })
        })
        .await
    }

    #[tracing::instrument(name = "proctor.command", skip_all, fields(candidate_id = %candidate_id, action = action.name()))]
    pub async fn candidate_command(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
        action: &ProctorAction,
        by: &ProctorId,
    ) -> Result<CommandReceipt, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::CandidateCommand(CandidateCommand {
                candidate_id: candidate_id.clone(),
                action: action.clone(),
                by: by.clone(),
                reply,
            })
        })
        .await
    }

    pub async fn room_command(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        action: &RoomAction,
        by: &ProctorId,
    ) -> Result<CommandReceipt, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::RoomCommand(RoomCommand {
                action: action.clone(),
                by: by.clone(),
                reply,
            })
        })
        .await
    }

    pub async fn report_incident(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        candidate_id: &CandidateId,
        kind: &str,
        note: Option<&str>,
        by: &ProctorId,
    ) -> Result<IncidentView, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::ReportIncident(ReportIncident {
                candidate_id: candidate_id.clone(),
                kind: kind.to_string(),
                note: note.map(str::to_string),
                by: by.clone(),
                reply,
            })
        })
        .await
    }

    pub async fn resolve_incident(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        incident_id: &str,
        status: IncidentStatus,
        action: Option<&str>,
        by: &ProctorId,
    ) -> Result<IncidentView, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::ResolveIncident(ResolveIncident {
                incident_id: incident_id.to_string(),
                status,
                action: action.map(str::to_string),
                by: by.clone(),
                reply,
            })
        })
        .await
    }

    pub async fn room_view(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<RoomView, ExamError> {
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::ViewRoom(ViewRoom { reply })
        })
        .await
    }

    /// Connection counts of a room where it is live: here, or on the node
    /// hosting it (a room that is not live has nobody connected).
    pub async fn presence(&self, plan_id: &PlanId, room_id: &RoomId) -> Option<PresenceCounts> {
        let shard = crate::shard::ShardId::of_room(plan_id, room_id);
        if self.directory.live_room(plan_id, room_id).is_some()
            || self.directory.deps().leases.fence(shard).is_some()
        {
            return self.presence_here(plan_id, room_id).await;
        }
        // Hosted on another node (cluster), or not live anywhere.
        let remote = self.directory.remote()?;
        remote.presence(plan_id, room_id).await
    }

    /// Connection counts of a room live on this node; `None` when it is not
    /// (never asked onwards: the answer to another node's question).
    pub async fn presence_here(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Option<PresenceCounts> {
        let room = self.directory.live_room(plan_id, room_id)?;
        match room
            .call(
                |reply| RoomMsg::Presence(PresenceQuery { reply }),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(Ok(counts))) => Some(counts),
            _ => None,
        }
    }

    /// The plan was replaced: live actors built from the old one stop.
    pub fn plan_replaced(&self, plan_id: &PlanId) {
        self.directory.forget_plan(plan_id);
        if let Some(remote) = self.directory.remote() {
            remote.plan_replaced(plan_id);
        }
    }
}
