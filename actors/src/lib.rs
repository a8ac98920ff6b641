//! invigil-actors: the exam domain and the ports it needs from the outside.
//!
//! # Layout
//! - `domain`: pure state machines for plans, rooms, candidates, answers, incidents
//! - `error`: errors of the ports and of exam operations
//! - `exam`: plan commands and check-in, decided by the domain, written fenced
//! - `journal_writer`: group commit of durable writes
//! - `ports`: the traits the outside provides (durable store, hot state, work queue, clock)
//! - `shard`: virtual shards and the fence every durable write carries

pub mod domain;
pub mod error;
pub mod exam;
pub mod journal_writer;
pub mod ports;
pub mod shard;
