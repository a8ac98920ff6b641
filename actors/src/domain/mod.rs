//! The exam domain: pure state machines, no IO and no async. Every change is
//! `decide(state, command, now) -> Result<Vec<Event>, DomainError>` followed by
//! `apply(event)`, so replaying recorded events rebuilds the same state.
//!
//! # Layout
//! - `ids`: validated identifiers chosen by the admin server
//! - `time`: timestamps and pause logs
//! - `clock`: a candidate's remaining time
//! - `connection`: online / stale / offline with hysteresis
//! - `spec`: the imported plan and its validation
//! - `question`: question kinds and which answers fit them
//! - `plan`, `room`, `candidate`: the lifecycles
//! - `fanout`: what a plan's state asks of its rooms and candidates
//! - `answer`: the answer sheet
//! - `grading`: scores of answers against the questions' keys
//! - `incident`, `proctor`: incidents and proctor presence
//! - `error`: refusals with stable codes

pub mod answer;
pub mod candidate;
pub mod clock;
pub mod connection;
pub mod error;
pub mod fanout;
pub mod grading;
pub mod ids;
pub mod incident;
pub mod plan;
pub mod proctor;
pub mod question;
pub mod room;
pub mod rules;
pub mod spec;
pub mod time;

#[cfg(test)]
mod properties;

pub use answer::{AnswerSheet, AnswerValue, KnownCseq, SavedAnswer};
pub use candidate::{
    AcceptedAnswer, AnswerDecision, CandidateCommand, CandidateEvent, CandidateRuntime,
    CandidateState, ExamContext, ExamRules, SubmitReason,
};
pub use clock::{CandidateClock, ClockShare};
pub use connection::{Connection, Hysteresis, Presence};
pub use error::DomainError;
pub use fanout::implied_commands;
pub use ids::{CandidateId, InvalidId, PlanId, ProctorId, QuestionId, RoomId};
pub use incident::{Incident, IncidentSource, IncidentStatus, Severity};
pub use plan::{PlanCommand, PlanEvent, PlanRuntime, PlanState};
pub use question::{Question, QuestionKind};
pub use room::{RoomCommand, RoomEvent, RoomRuntime, RoomState};
pub use rules::IncidentRules;
pub use spec::{
    CandidateSpec, CredentialHash, Plaintext, PlanSettings, PlanSpec, ProctorSpec, RoomSpec,
    SpecProblem, SpecProblems,
};
pub use time::{PauseLog, Timestamp};
