//! What a run samples besides its own traffic: the node's resident memory
//! (same machine, from /proc), the node's own count of online candidates
//! (admin status), and how busy the machine's CPUs were.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

/// The machine's CPU time so far as (busy, total) jiffies, from /proc/stat.
pub fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// A process's resident set size in KiB, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The node's resting size in KiB: the lowest of eight samples 250 ms
/// apart, so the login storm's transient buffers go back first.
pub(super) async fn resting_rss_kib(pid: u32) -> Option<u64> {
    let mut lowest = None;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        lowest = match (lowest, rss_kib(pid)) {
            (Some(low), Some(now)) => Some(std::cmp::min(low, now)),
            (low, now) => low.or(now),
        };
    }
    lowest
}

/// Watches the node while the sockets are held: its peak memory (when its
/// pid is known) and, near the end, its count of online candidates (when
/// the admin key is known).
pub(super) struct NodeWatch {
    pub(super) client: reqwest::Client,
    pub(super) base: String,
    pub(super) plan_id: String,
    pub(super) pid: Option<u32>,
    pub(super) api_key: Option<String>,
    /// How long to wait before the first sample (the connect storm settles).
    pub(super) settle: Duration,
    /// When sampling stops and the online count is read.
    pub(super) end: tokio::time::Instant,
}

impl NodeWatch {
    /// Samples every 500 ms until `end`; the task returns (peak VmRSS in KiB,
    /// online count).
    pub(super) fn spawn(self) -> JoinHandle<(Option<u64>, Option<i64>)> {
        tokio::spawn(async move {
            tokio::time::sleep(self.settle).await;
            let mut peak = None;
            let mut ticker = tokio::time::interval(Duration::from_millis(500));
            while tokio::time::Instant::now() < self.end {
                ticker.tick().await;
                peak = peak.max(self.pid.and_then(rss_kib));
            }
            let online = match &self.api_key {
                Some(key) => online_count(&self.client, &self.base, &self.plan_id, key).await,
                None => None,
            };
            (peak, online)
        })
    }
}

/// How busy the machine's CPUs were from `from` to `to`, in % (all
/// processes); `None` without /proc/stat.
pub(super) fn spawn_cpu_watch(from: Instant, to: Instant) -> JoinHandle<Option<f64>> {
    let (from, to) = (
        tokio::time::Instant::from_std(from),
        tokio::time::Instant::from_std(to),
    );
    tokio::spawn(async move {
        tokio::time::sleep_until(from).await;
        let (busy_from, total_from) = cpu_jiffies()?;
        tokio::time::sleep_until(to).await;
        let (busy_to, total_to) = cpu_jiffies()?;
        let total = total_to
            .checked_sub(total_from)
            .filter(|total| *total > 0)?;
        Some(100.0 * busy_to.saturating_sub(busy_from) as f64 / total as f64)
    })
}

/// The node's count of online candidates in the plan (admin status).
async fn online_count(
    client: &reqwest::Client,
    base: &str,
    plan_id: &str,
    api_key: &str,
) -> Option<i64> {
    let status: Value = client
        .get(format!("{base}/api/v1/admin/plans/{plan_id}/status"))
        .header("X-Api-Key", api_key)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    status["connection"]["online"].as_i64()
}
