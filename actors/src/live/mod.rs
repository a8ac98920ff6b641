//! The live exam: room actors holding their candidates, a coordinator per
//! plan, the directory that finds or activates them, and the wire frames.
//!
//! # Layout
//! - `wire`: frames to candidates and proctors, and the views they carry
//! - `room`: the room actor (candidates live as state inside it)
//! - `plan`: the plan coordinator
//! - `directory`: finds or activates actors by name; the cluster puts a shard region in front

pub mod directory;
pub mod plan;
pub mod room;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{PlanEvent, PlanId, PlanRuntime, RoomId};
use crate::error::ExamError;
use crate::journal_writer::JournalWriter;
use crate::ports::{Clock, HotState, Journal, PlanStore};
use crate::shard::leases::LeaseKeeper;

/// Timings and bounds of the live exam (configurable; tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct LiveConfig {
    /// How often a room re-evaluates clocks and connections.
    pub tick: Duration,
    /// Stream frames kept per candidate for resume.
    pub resume_buffer: usize,
    /// Frames queued per socket before it counts as too slow and is closed.
    pub socket_queue: usize,
    /// Client events (focus lost, …) accepted per candidate per minute.
    pub events_per_minute: u32,
    /// How long a caller waits for an actor's answer.
    pub call_timeout: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            resume_buffer: 256,
            socket_queue: 1024,
            events_per_minute: 30,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// Reaches the live actors another node hosts. In a cluster, a plan's
/// coordinator and its rooms may live on different nodes (each in its own
/// shard); single-node there is none and everything is local.
#[async_trait]
pub trait RemoteLive: Send + Sync + 'static {
    /// Tells the room, on the owner of its shard, that its plan changed;
    /// `Ok` once the room made the consequences durable there.
    async fn plan_changed(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError>;

    /// Tells the plan's coordinator, on the owner of the plan's shard, that
    /// every candidate of the room is done; `Ok` once it recorded it (the
    /// room reports again until then).
    async fn room_done(&self, plan_id: &PlanId, room_id: &RoomId) -> Result<(), ExamError>;

    /// Tells every other node that the plan was replaced.
    fn plan_replaced(&self, plan_id: &PlanId);

    /// Connection counts of a room live on the owner of its shard, if any.
    async fn presence(&self, plan_id: &PlanId, room_id: &RoomId) -> Option<wire::PresenceCounts>;
}

/// What a plan's coordinator asks of its rooms, wherever they live (the
/// directory answers: here, or through [`RemoteLive`] on their owners).
#[async_trait]
pub trait PlanRooms: Send + Sync + 'static {
    /// Activates the room if it is not live here (its timers must run with
    /// nobody connected).
    async fn keep_live(&self, plan_id: &PlanId, room_id: &RoomId) -> Result<(), ExamError>;

    /// Tells the room that its plan changed; `Ok` once the room made the
    /// consequences durable.
    async fn deliver_plan_change(
        &self,
        plan_id: &PlanId,
        room_id: &RoomId,
        runtime: &PlanRuntime,
        events: &[PlanEvent],
    ) -> Result<(), ExamError>;
}

/// What the live actors need from the node.
pub struct LiveDeps {
    pub node_id: String,
    pub plans: Arc<dyn PlanStore>,
    /// For lookups of superseded answers.
    pub journal: Arc<dyn Journal>,
    pub writer: JournalWriter,
    pub hot: Arc<dyn HotState>,
    pub leases: Arc<LeaseKeeper>,
    pub clock: Arc<dyn Clock>,
    pub config: LiveConfig,
    /// Where live events, log lines and plan notices go for the workers.
    pub outbox: crate::workers::Outbox,
    /// Whether plan notices are published (an admin webhook is configured).
    pub webhooks: bool,
    /// The actors other nodes host; none when the node runs alone.
    pub remote: Option<Arc<dyn RemoteLive>>,
    /// The node's instruments.
    pub metrics: crate::metrics::Metrics,
}
