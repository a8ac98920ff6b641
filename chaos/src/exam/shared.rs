//! The state every task of a run shares: counters, the clocks of commands
//! on their way, the first error; and the progress line drawn from them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::report::ExamReport;
use crate::stats::Latencies;

/// Counters shared by every task.
#[derive(Default)]
pub(super) struct Shared {
    pub(super) answers_sent: AtomicU64,
    pub(super) acks: AtomicU64,
    pub(super) measured_acks: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) disconnects: AtomicU64,
    /// Sockets replaced by the reconnect rule.
    pub(super) reconnects: AtomicU64,
    pub(super) controls: AtomicU64,
    pub(super) command_acks: AtomicU64,
    pub(super) commands_sent: AtomicU64,
    pub(super) stop_sending: AtomicBool,
    /// Command id → when the proctor sent it. A std mutex: no await under it.
    pub(super) commands: Mutex<HashMap<u64, Instant>>,
    pub(super) control_latency: Mutex<Latencies>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn error(&self, message: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| message.into());
    }

    /// Copies the counters into `report` and takes the control latencies and
    /// the first error out; called once every task has finished.
    pub(super) fn fill_report(&self, report: &mut ExamReport) {
        report.measured_acks = self.measured_acks.load(Ordering::Relaxed);
        report.answers_sent = self.answers_sent.load(Ordering::Relaxed);
        report.acks = self.acks.load(Ordering::Relaxed);
        report.errors = self.errors.load(Ordering::Relaxed);
        report.disconnects = self.disconnects.load(Ordering::Relaxed);
        report.reconnects = self.reconnects.load(Ordering::Relaxed);
        report.commands_sent = self.commands_sent.load(Ordering::Relaxed);
        report.command_acks = self.command_acks.load(Ordering::Relaxed);
        report.controls_received = self.controls.load(Ordering::Relaxed);
        report.control_latency = std::mem::take(
            &mut *self
                .control_latency
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        report.first_error = self
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// A progress line on stderr, refreshed every second.
pub(super) async fn show_progress(shared: Arc<Shared>, started: Instant, duration: Duration) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last = 0;
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed().min(duration);
        let acks = shared.acks.load(Ordering::Relaxed);
        let filled = ((elapsed.as_secs_f64() / duration.as_secs_f64().max(1e-9)) * 30.0) as usize;
        eprint!(
            "\r[{}{}] {:>3}s acks {acks} ({}/s) errors {} controls {}   ",
            "#".repeat(filled.min(30)),
            ".".repeat(30 - filled.min(30)),
            elapsed.as_secs(),
            acks - last,
            shared.errors.load(Ordering::Relaxed),
            shared.controls.load(Ordering::Relaxed),
        );
        last = acks;
    }
}
