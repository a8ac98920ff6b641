//! Plans as imported, their runtime, logins and status: the durable store the live exam reads.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use super::journal::FencedError;
use crate::domain::{
    CandidateId, CandidateRuntime, CandidateState, CredentialHash, Incident, PlanEvent, PlanId,
    PlanRuntime, PlanSettings, PlanSpec, PlanState, ProctorId, QuestionId, RoomId, RoomRuntime,
    Timestamp,
};
use crate::error::StoreError;
use crate::shard::Fence;

/// A secret that is never read back out of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redacted;

/// A plan as stored: its content without secrets, its runtime and revision.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPlan {
    pub spec: PlanSpec<Redacted>,
    pub runtime: PlanRuntime,
    /// Increases with every change of the plan row; for optimistic concurrency.
    pub revision: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What an import did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    Created,
    Replaced,
    /// The same content was imported before; nothing changed.
    Unchanged,
    /// The plan exists and is past the point where it may be replaced.
    Refused(PlanState),
}

/// The plan's runtime with the revision it was read at.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedPlanRuntime {
    pub runtime: PlanRuntime,
    pub revision: i64,
    pub duration_s: i64,
}

/// Everything a candidate login needs, read in one query.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateLogin {
    pub plan_id: PlanId,
    pub candidate_id: CandidateId,
    pub room_id: RoomId,
    pub name: String,
    pub access_code_hash: CredentialHash,
    pub extra_time_s: i64,
    pub runtime: CandidateRuntime,
    /// The candidate row's revision the runtime was read at.
    pub revision: i64,
    pub plan_runtime: PlanRuntime,
    pub duration_s: i64,
    pub late_entry_s: i64,
}

/// A candidate as durably stored, with what its clock depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateRecord {
    pub candidate_id: CandidateId,
    pub reg_no: String,
    pub name: String,
    pub room_id: RoomId,
    pub seat: Option<String>,
    pub extra_time_s: i64,
    /// With the answer sheet rebuilt from the current answers.
    pub runtime: CandidateRuntime,
    pub revision: i64,
    pub room_runtime: RoomRuntime,
    pub plan_runtime: PlanRuntime,
    pub duration_s: i64,
    pub settings: PlanSettings,
}

/// Everything a proctor login needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ProctorLogin {
    pub plan_id: PlanId,
    pub proctor_id: ProctorId,
    pub name: String,
    pub password_hash: CredentialHash,
    pub room_ids: Vec<RoomId>,
    pub plan_state: PlanState,
    pub starts_at: Timestamp,
    /// The plan's import digest, so tokens can tell a re-import.
    pub plan_digest: String,
}

/// Durable per-room counts for the status view.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomCounts {
    pub room_id: RoomId,
    pub name: String,
    pub capacity: i64,
    pub runtime: RoomRuntime,
    pub candidates_by_state: BTreeMap<CandidateState, i64>,
    pub incidents_open: i64,
}

/// Durable counts of a plan for `GET .../status`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanCounts {
    pub plan_id: PlanId,
    pub title: String,
    pub duration_s: i64,
    pub runtime: PlanRuntime,
    pub rooms: Vec<RoomCounts>,
    pub incidents_open: i64,
    pub answers_saved: i64,
}

/// A candidate's current answer to one question, for results.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultAnswer {
    pub question_id: QuestionId,
    /// As saved; `null` when the candidate cleared the answer.
    pub value: Value,
    pub version: i64,
}

/// One candidate's row of a plan's results.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateResult {
    pub candidate_id: CandidateId,
    pub reg_no: String,
    pub name: String,
    pub room_id: RoomId,
    pub seat: Option<String>,
    pub state: CandidateState,
    pub submitted_at: Option<Timestamp>,
    /// The current answer of every question answered, in question order.
    pub answers: Vec<ResultAnswer>,
}

/// Everything a plan's results are computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanResults {
    pub plan_id: PlanId,
    pub title: String,
    pub runtime: PlanRuntime,
    /// In plan order, with their answer keys.
    pub questions: Vec<crate::domain::Question>,
    /// Every candidate, in import order.
    pub candidates: Vec<CandidateResult>,
}

/// Plans as the admin server imports them, and the reads built on them.
#[async_trait]
pub trait PlanStore: Send + Sync + 'static {
    /// Returns the import digest and state of a plan, to answer a repeated
    /// import without hashing its secrets again.
    async fn plan_digest(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<(String, PlanState)>, StoreError>;

    /// Creates a plan, or replaces it while it is still scheduled, in one
    /// transaction. `digest` identifies the content for idempotency.
    async fn import_plan(
        &self,
        plan: &PlanSpec<CredentialHash>,
        digest: &str,
        now: Timestamp,
    ) -> Result<ImportOutcome, StoreError>;

    async fn load_plan(&self, plan_id: &PlanId) -> Result<Option<StoredPlan>, StoreError>;

    async fn plan_runtime(
        &self,
        plan_id: &PlanId,
    ) -> Result<Option<VersionedPlanRuntime>, StoreError>;

    /// Stores a plan's new runtime and its events if the plan is still at
    /// `expected_revision` and `fence` is current; returns the new revision,
    /// or `Conflict` when another writer came first.
    async fn save_plan_runtime(
        &self,
        fence: Fence,
        plan_id: &PlanId,
        expected_revision: i64,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<i64, FencedError>;

    async fn plan_counts(&self, plan_id: &PlanId) -> Result<Option<PlanCounts>, StoreError>;

    /// What a plan's results are computed from: the questions with their
    /// keys and every candidate in import order with their current answers,
    /// read from one consistent snapshot in a constant number of queries
    /// (never one per candidate).
    async fn plan_results(&self, plan_id: &PlanId) -> Result<Option<PlanResults>, StoreError>;

    /// Every room's runtime, in import order.
    async fn room_runtimes(&self, plan_id: &PlanId) -> Result<Vec<RoomRuntimeRow>, StoreError>;

    /// Every candidate's runtime without its answer sheet, in import order.
    async fn candidate_runtimes(
        &self,
        plan_id: &PlanId,
    ) -> Result<Vec<CandidateRuntimeRow>, StoreError>;

    async fn candidate_login(
        &self,
        plan_id: &PlanId,
        reg_no: &str,
    ) -> Result<Option<CandidateLogin>, StoreError>;

    /// The shared context of a plan, for its coordinator and rooms.
    async fn plan_context(&self, plan_id: &PlanId) -> Result<Option<PlanContext>, StoreError>;

    /// One room with its candidates and open incidents.
    async fn load_room(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
    ) -> Result<Option<RoomSnapshot>, StoreError>;

    /// Plans whose rooms must be live: open, in progress or paused — and
    /// ended ones where some candidate is not done yet (a room missed the
    /// end and must still submit or mark them absent).
    async fn active_plans(&self) -> Result<Vec<PlanId>, StoreError>;

    /// The room a candidate sits in.
    async fn candidate_room(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<RoomId>, StoreError>;

    /// An incident by id.
    async fn incident(
        &self,
        plan_id: &PlanId,
        incident_id: &str,
    ) -> Result<Option<Incident>, StoreError>;

    /// A candidate with its runtime (sheet included), room and plan.
    async fn candidate_record(
        &self,
        plan_id: &PlanId,
        candidate_id: &CandidateId,
    ) -> Result<Option<CandidateRecord>, StoreError>;

    /// Returns every non-finalized plan's proctor with this login.
    async fn proctor_logins(&self, login: &str) -> Result<Vec<ProctorLogin>, StoreError>;
}

/// What every room of a plan shares: settings, questions, the plan's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanContext {
    pub plan_id: PlanId,
    pub title: String,
    pub duration_s: i64,
    pub settings: PlanSettings,
    pub questions: Vec<crate::domain::Question>,
    pub rooms: Vec<crate::domain::RoomSpec>,
    pub runtime: PlanRuntime,
    pub revision: i64,
    /// The import digest: changes when the plan is replaced.
    pub digest: String,
}

/// A candidate as a room actor restores it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredCandidate {
    pub spec: crate::domain::CandidateSpec<Redacted>,
    /// With the answer sheet rebuilt from the current answers and the journal.
    pub runtime: CandidateRuntime,
    pub revision: i64,
}

/// One room as a room actor restores it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomSnapshot {
    pub spec: crate::domain::RoomSpec,
    pub runtime: RoomRuntime,
    pub revision: i64,
    /// In import order.
    pub candidates: Vec<StoredCandidate>,
    pub open_incidents: Vec<Incident>,
}

/// A candidate's durable runtime (the answer sheet is not part of it).
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateRuntimeRow {
    pub candidate_id: CandidateId,
    pub room_id: RoomId,
    pub extra_time_s: i64,
    pub runtime: CandidateRuntime,
    pub revision: i64,
}

/// A room's durable runtime with its revision.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomRuntimeRow {
    pub room_id: RoomId,
    pub runtime: RoomRuntime,
    pub revision: i64,
}
