//! The node's metrics pipeline: the OpenTelemetry SDK with a Prometheus
//! exporter, one per node (never the global provider, so nodes in one test
//! process keep their numbers apart), plus process and runtime gauges read
//! from `/proc` and tokio at scrape time. docs/observability.md lists every
//! family.

use std::sync::Arc;

use invigil_actors::metrics::Metrics;
use invigil_api::MetricsExposition;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{MeterProvider, ObservableCounter, ObservableGauge};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// A node's meter provider and the registry `GET /metrics` renders.
pub struct MetricsPipeline {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    metrics: Metrics,
    _process: (Vec<ObservableGauge<i64>>, ObservableCounter<f64>),
}

impl MetricsPipeline {
    /// Builds the pipeline for node `node_id` (the `service_instance_id` of
    /// `target_info`).
    pub fn new(node_id: &str) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            // Names are written whole (`invigil_answer_ack_seconds`);
            // counters get `_total`.
            .without_units()
            .scope_info_enabled(false)
            .build()?;
        let provider = SdkMeterProvider::builder()
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("invigil")
                    .with_attributes([KeyValue::new("service.instance.id", node_id.to_string())])
                    .build(),
            )
            .with_reader(exporter)
            .build();
        let meter = provider.meter("invigil");
        let metrics = Metrics::new(&meter);
        let process = observe_process(&meter);
        Ok(Self {
            provider,
            registry,
            metrics,
            _process: process,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The exposition `GET /metrics` serves.
    pub fn exposition(self: &Arc<Self>) -> Arc<dyn MetricsExposition> {
        self.clone()
    }
}

impl MetricsExposition for MetricsPipeline {
    fn render(&self) -> Vec<u8> {
        let mut text = Vec::with_capacity(16 * 1024);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "metrics could not be encoded");
        }
        text
    }
}

impl Drop for MetricsPipeline {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// RSS, open and allowed file descriptors, CPU time, tokio tasks and
/// workers, and the build.
fn observe_process(
    meter: &opentelemetry::metrics::Meter,
) -> (Vec<ObservableGauge<i64>>, ObservableCounter<f64>) {
    let runtime = tokio::runtime::Handle::try_current().ok();
    let tasks = runtime.clone();
    let gauges = vec![
        meter
            .i64_observable_gauge("invigil_process_resident_memory_bytes")
            .with_description("Resident set size")
            .with_callback(|observer| {
                if let Some(bytes) = proc::resident_bytes() {
                    observer.observe(bytes, &[]);
                }
            })
            .build(),
        meter
            .i64_observable_gauge("invigil_process_open_fds")
            .with_description("Open file descriptors")
            .with_callback(|observer| {
                if let Some(count) = proc::open_fds() {
                    observer.observe(count, &[]);
                }
            })
            .build(),
        meter
            .i64_observable_gauge("invigil_process_max_fds")
            .with_description("The file-descriptor soft limit")
            .with_callback(|observer| {
                if let Some(limit) = proc::max_fds() {
                    observer.observe(limit, &[]);
                }
            })
            .build(),
        meter
            .i64_observable_gauge("invigil_runtime_alive_tasks")
            .with_description("Tokio tasks alive")
            .with_callback(move |observer| {
                if let Some(handle) = &tasks {
                    let alive = handle.metrics().num_alive_tasks();
                    observer.observe(i64::try_from(alive).unwrap_or(i64::MAX), &[]);
                }
            })
            .build(),
        meter
            .i64_observable_gauge("invigil_runtime_workers")
            .with_description("Tokio worker threads")
            .with_callback(move |observer| {
                if let Some(handle) = &runtime {
                    let workers = handle.metrics().num_workers();
                    observer.observe(i64::try_from(workers).unwrap_or(i64::MAX), &[]);
                }
            })
            .build(),
        meter
            .i64_observable_gauge("invigil_build_info")
            .with_description("The binary's version (always 1)")
            .with_callback(|observer| {
                observer.observe(1, &[KeyValue::new("version", env!("CARGO_PKG_VERSION"))]);
            })
            .build(),
    ];
    let cpu = meter
        .f64_observable_counter("invigil_process_cpu_seconds")
        .with_description("User and system CPU time")
        .with_callback(|observer| {
            if let Some(seconds) = proc::cpu_seconds() {
                observer.observe(seconds, &[]);
            }
        })
        .build();
    (gauges, cpu)
}

/// Readings from `/proc/self` (Linux; elsewhere each is `None` and its
/// gauge has no sample).
mod proc {
    /// `VmRSS` of `/proc/self/status`, in bytes.
    pub fn resident_bytes() -> Option<i64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn open_fds() -> Option<i64> {
        let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
        i64::try_from(count).ok()
    }

    /// The soft limit of `Max open files` in `/proc/self/limits`.
    pub fn max_fds() -> Option<i64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }

    /// utime + stime of `/proc/self/stat`, in seconds (USER_HZ is 100 on
    /// every Linux this runs on).
    pub fn cpu_seconds() -> Option<f64> {
        const USER_HZ: f64 = 100.0;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name (which may hold spaces).
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / USER_HZ)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_process_readings_are_plausible() {
            assert!(super::resident_bytes().unwrap() > 1024 * 1024);
            assert!(super::open_fds().unwrap() >= 3);
            assert!(super::max_fds().unwrap() >= super::open_fds().unwrap());
            assert!(super::cpu_seconds().unwrap() >= 0.0);
        }
    }
}
