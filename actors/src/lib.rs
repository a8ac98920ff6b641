//! invigil-actors: the exam domain and the ports it needs from the outside.
//!
//! # Layout
//! - `domain`: pure state machines for plans, rooms, candidates, answers, incidents
//! - `error`: errors of the ports and of exam operations
//! - `exam`: the exam as the API sees it: one message path to the owning actor
//! - `live`: room actors, plan coordinators, the directory, wire frames
//! - `journal_writer`: group commit of durable writes
//! - `metrics`: the node's OpenTelemetry instruments (docs/observability.md)
//! - `ports`: the traits the outside provides (durable store, hot state, work queue, clock)
//! - `shard`: virtual shards and the fence every durable write carries
//! - `workers`: queue workers (logs, incident rules, statistics, admin webhook)

pub mod domain;
pub mod error;
pub mod exam;
pub mod journal_writer;
pub mod live;
pub mod metrics;
pub mod ports;
pub mod shard;
pub mod workers;
