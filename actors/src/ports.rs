//! The ports: what the exam needs from the outside, as traits. Adapters live
//! in invigil-store (sqlx for Postgres and SQLite, Redis) and are wired by the
//! node; the domain and the actors see only these traits.
//!
//! - [`Clock`]: the server's time, injectable for tests
//! - [`PlanStore`]: plans as imported, their runtime, logins and status
//! - [`Journal`]: fenced, batched durable writes of the live exam
//! - [`LeaseStore`]: shard leases with fencing epochs
//! - [`HotState`]: resume buffers, live sessions, snapshots, rate counters
//! - [`WorkQueue`]: at-least-once work for the workers
//! - [`FileStore`]: uploaded files (exam materials), read back in ranges

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::{
    CandidateEvent, CandidateId, CandidateRuntime, CandidateState, CredentialHash, Incident,
    PlanEvent, PlanId, PlanRuntime, PlanSettings, PlanSpec, PlanState, ProctorId, QuestionId,
    RoomEvent, RoomId, RoomRuntime, Timestamp,
};
pub use crate::error::StoreError;
use crate::shard::{Fence, ShardId};

// ---------------------------------------------------------------- clock

/// The server's clock. Everything time-dependent reads it, so tests can move time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_millis(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.as_millis()))
    }

    pub fn advance(&self, by: Duration) {
        let millis = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn set(&self, to: Timestamp) {
        self.0.store(to.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

// ---------------------------------------------------------------- plans

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

// ---------------------------------------------------------------- journal

/// One durable write of the live exam.
#[derive(Clone, Debug, PartialEq)]
pub enum JournalEntry {
    /// A new answer version (append to the journal, update the current answer).
    Answer {
        plan_id: PlanId,
        candidate_id: CandidateId,
        question_id: QuestionId,
        value: Value,
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

// ---------------------------------------------------------------- leases

/// The lease owner of one process of a node: its stable id and its
/// generation (start time in ms), zero-padded so that owners of one node
/// order by generation as text.
pub fn owner_id(node_id: &str, generation: Timestamp) -> String {
    format!("{node_id}@{:015}", generation.as_millis().max(0))
}

/// A shard lease as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard: ShardId,
    pub owner: String,
    pub epoch: i64,
    pub expires_at: Timestamp,
}

/// Shard leases with fencing epochs. Acquiring a lease bumps its epoch; every
/// write under an older epoch is rejected from then on.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes every shard of `shards` whose lease expired, is already ours, or
    /// belongs to an earlier incarnation of this node, in one statement.
    /// `node_id` is `<stable id>@<generation>` with a fixed-width generation
    /// (see [`owner_id`]); an owner with the same stable id and a smaller
    /// generation is a previous process of this node. Returns
    /// the leases now held (with new epochs for the ones taken over).
    async fn acquire_leases(
        &self,
        node_id: &str,
        shards: &[ShardId],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Extends the leases still held at the given epochs, in one statement.
    /// Returns the shards renewed; a missing one was lost.
    async fn renew_leases(
        &self,
        node_id: &str,
        held: &[Fence],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<ShardId>, StoreError>;

    /// Gives leases up (expires them now) so another node may take them at once.
    async fn release_leases(&self, node_id: &str, held: &[Fence]) -> Result<(), StoreError>;

    /// Every lease, for the cluster view.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}

// ---------------------------------------------------------------- hot state

/// Identifies one candidate across plans.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CandidateKey {
    pub plan_id: PlanId,
    pub candidate_id: CandidateId,
}

/// A server→client message kept for resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundFrame {
    pub seq: u64,
    /// The JSON text sent on the socket.
    pub text: String,
}

/// Who holds a candidate's live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClaim {
    pub session_id: String,
    pub node_id: String,
}

/// A hot-state failure: the data is a cache or a buffer, so callers degrade
/// (a full snapshot instead of a replay), they do not fail the exam.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hot state unavailable: {0}")]
pub struct HotStateError(pub String);

/// Fast, non-durable state shared by the nodes. Losing it costs a resume
/// replay (clients get a full snapshot) but never an acknowledged answer.
#[async_trait]
pub trait HotState: Send + Sync + 'static {
    /// Appends frames to candidates' resume buffers, each capped at `cap`.
    async fn append_outbound(
        &self,
        frames: &[(CandidateKey, OutboundFrame)],
        cap: usize,
    ) -> Result<(), HotStateError>;

    /// The highest seq appended for the candidate, 0 when none: a
    /// re-activated room continues numbering from there.
    async fn last_outbound_seq(&self, key: &CandidateKey) -> Result<u64, HotStateError>;

    /// Returns the frames after `after_seq`, oldest first, or `None` when the
    /// buffer no longer reaches back that far (the client needs a snapshot).
    async fn outbound_after(
        &self,
        key: &CandidateKey,
        after_seq: u64,
    ) -> Result<Option<Vec<OutboundFrame>>, HotStateError>;

    /// Makes `claim` the candidate's live session; returns the one it replaced.
    async fn swap_session(
        &self,
        key: &CandidateKey,
        claim: SessionClaim,
    ) -> Result<Option<SessionClaim>, HotStateError>;

    async fn session(&self, key: &CandidateKey) -> Result<Option<SessionClaim>, HotStateError>;

    /// Keeps a serialized live snapshot for fast re-activation elsewhere.
    async fn put_snapshot(
        &self,
        key: &str,
        snapshot: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), HotStateError>;

    async fn snapshot(&self, key: &str) -> Result<Option<Vec<u8>>, HotStateError>;

    /// Counts one event in the current fixed window of `window` and returns the
    /// count so far; for rate limits.
    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, HotStateError>;

    /// Adds `member` at time `at_ms` to the time-ordered set `key` (a member
    /// is held once, at its latest time: adding it again changes no count),
    /// dropping members older than `keep` before `at_ms`; the set expires
    /// when untouched for `keep`. For the incident rules' sliding windows.
    async fn window_add(
        &self,
        key: &str,
        member: &str,
        at_ms: i64,
        keep: Duration,
    ) -> Result<(), HotStateError>;

    /// Where `member` stands in `key`: how many members come at or before
    /// it (by time, ties by member) within the `span_ms` ending at its time;
    /// 0 when it is not held. Unlike a count up to "now", the answer for a
    /// member never changes as later members arrive — a redelivered event
    /// gets the position it had the first time.
    async fn window_position(
        &self,
        key: &str,
        member: &str,
        span_ms: i64,
    ) -> Result<u64, HotStateError>;

    /// How many members of `key` have a time within `[from_ms, to_ms]`.
    async fn window_count(&self, key: &str, from_ms: i64, to_ms: i64)
    -> Result<u64, HotStateError>;
}

// ---------------------------------------------------------------- files

/// A stored file's description; its bytes are read in ranges
/// ([`FileStore::read_file_range`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    pub id: crate::domain::ids::FileId,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub size: u64,
    /// A validated media type, e.g. `image/png`.
    pub content_type: String,
    /// The name the uploader gave; kept for display, never used as a path.
    pub name: Option<String>,
    pub created_at: Timestamp,
}

/// A file to store. `sha256` and the size are the caller's account of
/// `data`; the store keeps them as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewFile {
    pub id: crate::domain::ids::FileId,
    pub sha256: String,
    pub content_type: String,
    pub name: Option<String>,
    pub data: Vec<u8>,
    pub created_at: Timestamp,
}

/// What storing a file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutFileOutcome {
    /// The file is new and stored under the id it was given.
    Created(StoredFile),
    /// The same content (SHA-256, size and content type) was stored before:
    /// this is that record, with its id, name and time; nothing was written.
    Existing(StoredFile),
}

impl PutFileOutcome {
    pub fn file(&self) -> &StoredFile {
        match self {
            Self::Created(file) | Self::Existing(file) => file,
        }
    }
}

/// Files in the durable store, so every node serves every file. Files are
/// immutable: an id always names the same bytes, which is what lets readers
/// fetch a file in several range reads and clients cache it by id.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Stores a file, or returns the stored one with the same SHA-256, size
    /// and content type (identical content is kept once, also when two
    /// uploads race; the first upload's name is the one kept).
    async fn put_file(&self, file: &NewFile) -> Result<PutFileOutcome, StoreError>;

    /// A file's description, or `None` when there is no such file.
    async fn file(&self, id: &crate::domain::ids::FileId)
    -> Result<Option<StoredFile>, StoreError>;

    /// Up to `len` bytes of a file from `offset` (fewer at the end, none past
    /// it), without reading the rest into this process; `None` when there is
    /// no such file.
    async fn read_file_range(
        &self,
        id: &crate::domain::ids::FileId,
        offset: u64,
        len: u32,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

// ---------------------------------------------------------------- webhooks

/// Sends one HTTP POST for the admin webhook worker.
#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// Returns the response status, or why there was none (timeout,
    /// connection refused, …).
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, String>;
}

// ---------------------------------------------------------------- statistics

/// Answer counts of one question: per choice (single, multi), and how many
/// candidates answered at all.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuestionStatistics {
    pub question_id: QuestionId,
    pub kind: String,
    pub answered: i64,
    /// Choice id → candidates whose current answer includes it.
    pub choices: BTreeMap<String, i64>,
}

/// Progress of one room.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RoomStatistics {
    pub room_id: RoomId,
    pub candidates: i64,
    pub by_state: BTreeMap<String, i64>,
    /// Current answers of the room's candidates, all questions.
    pub answers: i64,
    pub incidents_open: i64,
}

/// A plan's aggregates for the monitoring views.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PlanStatistics {
    pub plan_id: PlanId,
    /// Server time (ms) they were computed at.
    pub computed_at: i64,
    pub candidates: i64,
    pub by_state: BTreeMap<String, i64>,
    pub answers: i64,
    pub questions: Vec<QuestionStatistics>,
    pub rooms: Vec<RoomStatistics>,
}

/// Aggregates over the durable store.
#[async_trait]
pub trait StatisticsStore: Send + Sync + 'static {
    /// `None` for an unknown plan. A handful of grouped queries, whatever
    /// the plan's size.
    async fn plan_statistics(
        &self,
        plan_id: &PlanId,
        now: Timestamp,
    ) -> Result<Option<PlanStatistics>, StoreError>;
}

// ---------------------------------------------------------------- work queue

/// One delivery of a queued item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub payload: Vec<u8>,
    /// How many times it was delivered, this one included.
    pub deliveries: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("work queue unavailable: {0}")]
pub struct QueueError(pub String);

/// At-least-once work for the workers: consumer groups, acknowledgements,
/// reclaim of items stuck with a dead consumer, and a dead-letter list.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError>;

    /// Returns up to `max` new items for `consumer` of `group`, waiting up to `wait`.
    async fn fetch(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<WorkItem>, QueueError>;

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> Result<(), QueueError>;

    /// Moves items idle for at least `min_idle` (their consumer died) to `consumer`.
    async fn reclaim(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>, QueueError>;

    /// Parks an item that keeps failing, with the reason, and acks it.
    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        item: &WorkItem,
        reason: &str,
    ) -> Result<(), QueueError>;

    /// The oldest `max` dead-lettered items of `topic`. Their `id` is the
    /// dead-letter id (what [`Self::replay_dead_letter`] takes), not the
    /// original one.
    async fn dead_letters(&self, topic: &str, max: usize) -> Result<Vec<WorkItem>, QueueError>;

    /// [`Self::dead_letters`] with why and when each item was parked, for an
    /// operator. Adapters that keep no such details answer with an error.
    async fn dead_letter_details(
        &self,
        topic: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let _ = (topic, max);
        Err(QueueError(
            "this work queue keeps no dead-letter details".into(),
        ))
    }

    /// Publishes a dead-lettered item again (to its topic, as a new item)
    /// and removes it from the dead letters; returns whether it existed.
    async fn replay_dead_letter(&self, topic: &str, id: &str) -> Result<bool, QueueError>;
}

/// A dead-lettered item with the circumstances of its parking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// `id` is the dead-letter id; `deliveries` those before it was parked.
    pub item: WorkItem,
    /// The item's id in its topic when it was parked.
    pub original_id: String,
    /// The consumer group that gave up on it.
    pub group: String,
    pub reason: String,
    pub dead_lettered_at: Timestamp,
}
