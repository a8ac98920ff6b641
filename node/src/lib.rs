//! invigil-node: the `invigil` binary as a library — configuration, wiring,
//! telemetry, the demo, graceful shutdown.
//!
//! # Layout
//! - `config`: typed, layered configuration
//! - `app`: [`Application`]: build, serve, stop in order
//! - `demo`: `invigil demo`
//! - `telemetry`: logging setup

pub mod app;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod listener;
pub mod telemetry;
pub mod workers;

pub use app::{Application, shutdown_signal};
pub use config::Config;
