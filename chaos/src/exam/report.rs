//! What a live-exam run measured.

use std::time::Duration;

use crate::stats::Latencies;

/// What one run measured.
#[derive(Default)]
pub struct ExamReport {
    pub connected: usize,
    pub connect_failures: usize,
    pub answers_sent: u64,
    pub acks: u64,
    pub errors: u64,
    pub disconnects: u64,
    /// Sockets replaced by the reconnect rule (docs/protocol.md).
    pub reconnects: u64,
    pub first_error: Option<String>,
    pub ack_latency: Latencies,
    pub commands_sent: u64,
    pub command_acks: u64,
    pub controls_received: u64,
    pub control_latency: Latencies,
    /// How long measured answers were sent (the run less its warm-up).
    pub sending: Duration,
    /// Acks of answers sent after the warm-up (the measured ones).
    pub measured_acks: u64,
    /// The node's VmRSS once every candidate had logged in, before any socket.
    pub rss_before_kib: Option<u64>,
    /// The node's highest VmRSS sampled while every socket was held.
    pub rss_connected_kib: Option<u64>,
    /// Candidates the node itself counted online near the end of the run.
    pub online_at_end: Option<i64>,
    /// How busy this machine's CPUs were (all processes: the node, this
    /// generator, the database) over the measured part of the run, in %.
    pub machine_cpu_busy_pct: Option<f64>,
}

impl ExamReport {
    /// Measured acks per second (after the warm-up).
    pub fn acks_per_second(&self) -> f64 {
        self.measured_acks as f64 / self.sending.as_secs_f64().max(1e-9)
    }

    /// Node memory per held socket, in bytes.
    pub fn rss_per_connection(&self) -> Option<f64> {
        let (before, connected) = (self.rss_before_kib?, self.rss_connected_kib?);
        (self.connected > 0)
            .then(|| connected.saturating_sub(before) as f64 * 1024.0 / self.connected as f64)
    }
}
