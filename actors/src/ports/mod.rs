//! The ports: what the exam needs from the outside, as traits. Adapters live
//! in invigil-store (sqlx for Postgres and SQLite, Redis) and are wired by the
//! node; the domain and the actors see only these traits.
//!
//! # Layout
//! - `clock`: [`Clock`], the server's time, injectable for tests
//! - `plans`: [`PlanStore`], plans as imported, their runtime, logins and status
//! - `journal`: [`Journal`], fenced, batched durable writes of the live exam
//! - `leases`: [`LeaseStore`], shard leases with fencing epochs
//! - `hot`: [`HotState`], resume buffers, live sessions, snapshots, rate counters
//! - `files`: [`FileStore`], uploaded files (exam materials), read back in ranges
//! - `webhooks`: [`WebhookSender`], signed notices to the admin server
//! - `statistics`: [`StatisticsStore`], grouped counts of a plan
//! - `queue`: [`WorkQueue`], at-least-once work for the workers

mod clock;
mod files;
mod hot;
mod journal;
mod leases;
mod plans;
mod queue;
mod statistics;
mod webhooks;

pub use self::clock::*;
pub use self::files::*;
pub use self::hot::*;
pub use self::journal::*;
pub use self::leases::*;
pub use self::plans::*;
pub use self::queue::*;
pub use self::statistics::*;
pub use self::webhooks::*;
pub use crate::error::StoreError;
