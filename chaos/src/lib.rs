//! invigil-chaos: a load generator and benchmarks against real invigil
//! nodes. Every loop is bounded in count and time, and only loopback
//! addresses are targeted.
//!
//! # Layout
//! - `plans`: generated plans of any size with known credentials
//! - `stats`: latency histograms and their summary
//! - `target`: the loopback guard and the HTTP client
//! - `login`: the candidate login storm
//! - `reconnect`: a candidate socket kept by docs/protocol.md's reconnect rule
//! - `exam`: the live exam: answers, heartbeats, proctor commands over WebSockets
//! - `import`: timed plan imports and the row-by-row baseline
//! - `drill`: `invigil-chaos drill`: faults, an independent checker, verdicts
//! - `disk`: the disk's flush latency, the floor under every durable ack

pub mod disk;
pub mod drill;
pub mod exam;
pub mod import;
pub mod login;
pub mod plans;
pub mod reconnect;
pub mod stats;
pub mod target;
