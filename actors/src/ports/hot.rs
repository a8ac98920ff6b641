//! Fast, non-durable state shared by the nodes: resume buffers, live sessions, snapshots, rate counters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{CandidateId, PlanId};

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
    /// The JSON text sent on the socket (the same text the socket got).
    pub text: Arc<str>,
}

/// Where a candidate's resume stands when a room activates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumePosition {
    /// The highest seq appended, 0 when none: numbering continues from it.
    pub last_seq: u64,
    /// The candidate's live session, if one was claimed.
    pub session: Option<SessionClaim>,
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

    /// [`Self::last_outbound_seq`] and [`Self::session`] of many candidates
    /// (a room's, when it activates) in one round trip, in the order of `keys`.
    async fn resume_positions(
        &self,
        keys: &[CandidateKey],
    ) -> Result<Vec<ResumePosition>, HotStateError>;

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
