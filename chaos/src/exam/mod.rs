//! The live-exam load: candidates logged in over REST, connected over
//! WebSockets, sending answers at a paced rate (open loop: the schedule does
//! not wait for acks, so slow acks show up as latency instead of hiding as
//! lower load) with heartbeats; proctors sending `warn` commands whose
//! arrival at the candidate is timed (same process, same clock). Bounded by
//! a duration; loopback only.
//!
//! # Layout
//! - `driver`: [`ExamLoad`] and [`run`]: log in, connect, drive, gather the report
//! - `socket`: the REST login and the WebSocket connect both sides share
//! - `candidate`: one candidate's answers (paced or windowed), heartbeats, acks
//! - `proctor`: one proctor's `warn` commands and their acks
//! - `shared`: the counters every task adds to, and the live progress line
//! - `watch`: samples of the node and the machine: memory, online count, CPU
//! - `report`: [`ExamReport`], what a run measured

mod candidate;
mod driver;
mod proctor;
mod report;
mod shared;
pub(crate) mod socket;
mod watch;

pub use driver::{ExamLoad, run};
pub use report::ExamReport;
pub use watch::{cpu_jiffies, rss_kib};
