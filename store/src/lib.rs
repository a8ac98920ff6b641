//! invigil-store: adapters for the ports of invigil-actors.
//!
//! # Layout
//! - `sql`: the durable store on sqlx, Postgres and SQLite, with migrations
//! - `error`: mapping of driver errors to the ports' errors

pub mod error;
pub mod sql;

pub use sql::{Backend, SqlOptions, SqlStore, redact_url};
