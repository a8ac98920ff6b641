//! Fenced, batched durable writes of the live exam.

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::AnswerValue;
use crate::domain::{
    CandidateEvent, CandidateId, CandidateRuntime, Incident, PlanId, QuestionId, RoomEvent, RoomId,
    RoomRuntime, Timestamp,
};
use crate::error::StoreError;
use crate::shard::Fence;

/// One durable write of the live exam.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalEntry {
    /// A new answer version (append to the journal, update the current answer).
    Answer {
        plan_id: PlanId,
        candidate_id: CandidateId,
        question_id: QuestionId,
        value: AnswerValue,
        cseq: i64,
        version: i64,
        at: Timestamp,
    },
    /// A candidate event and the runtime it led to, decided on the
    /// candidate's row at `revision`; written only if the row is still at
    /// that revision (it then moves to `revision + 1`).
    Candidate {
        plan_id: PlanId,
        candidate_id: CandidateId,
        revision: i64,
        event: CandidateEvent,
        runtime: CandidateRuntime,
    },
    /// A room event and the runtime it led to, decided at `revision`.
    Room {
        plan_id: PlanId,
        room_id: RoomId,
        revision: i64,
        event: RoomEvent,
        runtime: RoomRuntime,
    },
    /// A new incident, or an incident's new status.
    Incident(Incident),
    /// A system, candidate or proctor log line.
    Log(LogEntry),
}

/// A log line (시스템 / 수험자 / 감독관 로그).
#[derive(Clone, Debug, PartialEq)]
pub struct LogEntry {
    pub plan_id: PlanId,
    pub kind: LogKind,
    /// The candidate or proctor concerned, if any.
    pub subject: Option<String>,
    pub room_id: Option<RoomId>,
    pub message: String,
    pub detail: Value,
    pub at: Timestamp,
}

/// A log line on its way through the work queue, with the id that makes
/// its insert idempotent.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedLog {
    pub entry_id: String,
    pub log: LogEntry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    System,
    Candidate,
    Proctor,
}

impl LogKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::Candidate => "candidate",
            Self::Proctor => "proctor",
        }
    }
}

/// A journal entry with the fence of the shard it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct FencedEntry {
    pub fence: Fence,
    pub entry: JournalEntry,
}

/// What became of one entry of a committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Durable.
    Written,
    /// An answer with this (candidate, cseq) was already durable; nothing changed.
    AlreadyStored,
    /// The shard's epoch moved on: this writer no longer owns it.
    StaleFence,
    /// The row changed since the revision the entry was decided on: re-read
    /// and decide again. Nothing of that row's entries was written.
    Conflict,
}

/// A write that was refused for its fence or failed in the store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FencedError {
    #[error("shard {} moved to a newer epoch than {}", .0.shard, .0.epoch)]
    StaleFence(Fence),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A previously journaled answer.
#[derive(Clone, Debug, PartialEq)]
pub struct JournaledAnswer {
    pub question_id: QuestionId,
    pub version: i64,
    /// `answer::text_digest` of the stored value.
    pub digest: u64,
}

/// The durable journal of the live exam. Writes come in batches (group
/// commit); each entry is checked against its fence in the same transaction.
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Writes a batch in one transaction. Returns one outcome per entry, in
    /// order. An `Err` means nothing of the batch was written.
    async fn commit(&self, batch: &[FencedEntry]) -> Result<Vec<EntryOutcome>, StoreError>;

    /// Appends log lines that came through the work queue, in one
    /// transaction. Each carries a unique `entry_id`; a line whose id is
    /// already stored is skipped, so a redelivered batch changes nothing
    /// twice. Returns how many lines were new.
    async fn append_logs(&self, logs: &[QueuedLog]) -> Result<u64, StoreError>;

    /// Looks up an answer by its client sequence number.
    async fn journaled_answer(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
        cseq: i64,
    ) -> Result<Option<JournaledAnswer>, StoreError>;
}
