//! invigil-node: the `invigil` binary as a library — configuration, wiring,
//! telemetry, the demo, graceful shutdown.
//!
//! # Layout
//! - `config`: typed, layered configuration, and the settings it gives each part
//! - `app`: [`Application`]: build in dependency order, serve, stop in order
//! - `cluster`: membership, transport, placement, hand-off, forwarding
//! - `workers`: the node's queue workers (logs, incident rules, statistics, webhooks)
//! - `listener`: the HTTP acceptor (`TCP_NODELAY` on every connection)
//! - `metrics`: the OpenTelemetry metrics pipeline behind `GET /metrics`
//! - `demo`: `invigil demo`
//! - `telemetry`: logging setup

pub mod app;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod listener;
pub mod metrics;
pub mod telemetry;
pub mod workers;

pub use app::{Application, shutdown_signal};
pub use config::Config;
