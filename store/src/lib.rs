//! invigil-store: adapters for the ports of invigil-actors.
//!
//! # Layout
//! - `sql`: the durable store on sqlx, Postgres and SQLite, with migrations
//! - `memory`: in-process hot state for embedded mode
//! - `error`: mapping of driver errors to the ports' errors

pub mod error;
pub mod memory;
pub mod sql;

pub use memory::MemoryHotState;
pub use sql::{Backend, SqlOptions, SqlStore, redact_url};
