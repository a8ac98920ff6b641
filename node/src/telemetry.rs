//! Logging: JSON lines for machines, pretty for people; `RUST_LOG` overrides
//! the configured filter.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySection};

/// Installs the global subscriber once; later calls do nothing.
pub fn init(telemetry: &TelemetrySection) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&telemetry.log_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match telemetry.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
