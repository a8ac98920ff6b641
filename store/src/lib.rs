//! invigil-store: adapters for the ports of invigil-actors.
//!
//! # Layout
//! - `sql`: the durable store on sqlx, Postgres and SQLite, with migrations
//! - `memory`: in-process hot state and work queue for embedded mode
//! - `redis`: hot state and work queue on Redis for cluster mode
//! - `resume`: what a resume may replay (shared by both hot states)
//! - `webhook`: the admin webhook's HTTP client
//! - `error`: mapping of driver errors to the ports' errors

pub mod error;
pub mod memory;
pub mod redis;
pub mod resume;
pub mod sql;
pub mod webhook;

pub use self::redis::{
    InvalidRedisUrl, RedisConnection, RedisHotState, RedisOptions, RedisWorkQueue,
};
pub use memory::{MemoryHotState, MemoryWorkQueue};
pub use sql::{Backend, SqlOptions, SqlStore, redact_url};
pub use webhook::HttpWebhookSender;
