//! invigil-api: the HTTP surface — OpenAPI REST, auth, problem+json errors.
//!
//! # Layout
//! - `app`: the assembled endpoint, `/openapi.json`, `/docs`
//! - `admin`: plan import, reads, commands, status, results (X-Api-Key)
//! - `login`: candidate and proctor login
//! - `candidate`, `proctor`: role-scoped reads
//! - `files`: uploads (X-Api-Key) and streamed downloads of exam materials
//! - `ops`: `/healthz`, `/readyz`
//! - `metrics`: `/metrics` and the HTTP request metrics
//! - `monitoring`: plan statistics, the work queue's dead letters (X-Api-Key)
//! - `ws`: the WebSocket gateway for candidates and proctors
//! - `cluster`: the cluster view, drain, and forwarding to a shard's owner
//! - `auth`: credential hashing, tokens, guards, login limits
//! - `body`: JSON bodies with size limits and field-path errors
//! - `error`: the one mapping from errors to status and code
//! - `settings`: what the node configures (limits, lifetimes, sizes)
//! - `trace`: the trace context carried to other nodes
//! - `state`, `views`, `tags`, `time`: shared pieces

pub mod admin;
pub mod app;
pub mod auth;
pub mod body;
pub mod candidate;
pub mod cluster;
pub mod error;
pub mod files;
pub mod login;
pub mod metrics;
pub mod monitoring;
pub mod ops;
pub mod proctor;
pub mod settings;
pub mod state;
pub mod tags;
pub mod time;
pub mod trace;
pub mod views;
pub mod ws;

pub use metrics::MetricsExposition;
pub use settings::{ApiSettings, FileSettings};
pub use state::{AppInner, AppState, Check, Readiness};
