//! The exam as the API sees it: every operation is a message to the actor
//! that owns the state (a room or a plan coordinator), found or activated
//! through the directory. REST and WebSockets take this one path.
//!
//! Every call has a timeout; a call that finds its actor just stopped (it
//! retired, e.g. after a failed write) is retried once on a fresh
//! activation.

use std::sync::Arc;

use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use serde_json::Value;

use crate::domain::{
    CandidateId, CandidateState, IncidentStatus, PlanCommand, PlanId, ProctorId, QuestionId, RoomId,
};
use crate::error::ExamError;
use crate::live::directory::Directory;
use crate::live::plan::{Command, PlanMsg};
use crate::live::room::{
    Answer, AnswerReceipt, CandidateCommand, CheckIn, CommandReceipt, PresenceQuery, ProctorAction,
    ReportIncident, ResolveIncident, RoomAction, RoomCommand, RoomMsg, Submit, ViewCandidate,
    ViewRoom,
};
use crate::live::wire::{CandidateView, IncidentView, PresenceCounts, RoomView};
use crate::ports::VersionedPlanRuntime;

pub struct Exam {
    directory: Arc<Directory>,
}

impl Exam {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory }
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Asks a room; `build` makes the message around the reply port.
    pub async fn ask_room<T: Send + 'static>(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        build: impl Fn(RpcReplyPort<Result<T, ExamError>>) -> RoomMsg,
    ) -> Result<T, ExamError> {
        let timeout = self.directory.deps().config.call_timeout;
        for attempt in 0..2 {
            let room = self.directory.room(plan_id, room_id).await?;
            match room.call(&build, Some(timeout)).await {
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::Timeout) => {
                    return Err(ExamError::Unavailable(
                        "the room did not answer in time; retry",
                    ));
                }
                Ok(CallResult::SenderError) if attempt == 0 => continue,
                Ok(CallResult::SenderError) => {
                    return Err(ExamError::Unavailable("the room stopped; retry"));
                }
                Err(_) if attempt == 0 => continue,
                Err(_) => return Err(ExamError::Unavailable("the room is unavailable; retry")),
            }
        }
        Err(ExamError::Unavailable("the room is unavailable; retry"))
    }

    async fn ask_plan(
        &self,
        plan_id: &PlanId,
        command: PlanCommand,
    ) -> Result<VersionedPlanRuntime, ExamError> {
        let timeout = self.directory.deps().config.call_timeout * 6;
        for attempt in 0..2 {
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
        self.ask_room(plan_id, room_id, |reply| {
            RoomMsg::Answer(Answer {
                candidate_id: candidate_id.clone(),
                connection_id: None,
                question_id: question_id.clone(),
                value: value.clone(),
                cseq,
                reply: Some(reply),
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
        let Some(room) = self.directory.live_room(plan_id, room_id) else {
            // Hosted on another node (cluster), or not live anywhere.
            let shard = crate::shard::ShardId::of_room(plan_id, room_id);
            if self.directory.deps().leases.fence(shard).is_some() {
                return None;
            }
            let remote = self.directory.remote()?.clone();
            return remote.presence(plan_id, room_id).await;
        };
        let timeout = self.directory.deps().config.call_timeout;
        match room
            .call(
                |reply| RoomMsg::Presence(PresenceQuery { reply }),
                Some(timeout),
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
