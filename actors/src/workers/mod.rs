//! Queue workers: work that need not hold up a reply. Actors publish through
//! the [`outbox::Outbox`]; workers — actors too, one of each per node —
//! consume the `WorkQueue` port (Redis Streams consumer groups in cluster
//! mode, in process in embedded mode), at least once and idempotently.
//!
//! # Layout
//! - `events`: the payloads and their topics
//! - `outbox`: non-blocking publishing with a bounded backlog
//! - `consumer`: the shared consume loop (reclaim, ack, dead letters)
//! - `logs`: batched log inserts
//! - `rules`: incident rules (focus bursts, copy-paste, IP change, connectivity)
//! - `stats`: per-question distributions, room progress, counts by state
//! - `webhook`: signed notifications to the admin server

pub mod consumer;
pub mod events;
pub mod logs;
pub mod outbox;
pub mod rules;
pub mod stats;
pub mod webhook;

pub use consumer::{ConsumerConfig, Outcome, WorkerActor, WorkerArgs, WorkerCounters};
pub use events::{LiveEvent, LiveEventKind, LogPayload, PlanNotice, topics};
pub use outbox::Outbox;
