//! The platform's durability floor: how long this machine's disk takes to
//! make a small write durable (`fdatasync`), sampled while a benchmark runs.
//! Every durable ack waits for at least one such flush (Postgres flushes its
//! WAL at commit), so a stall here is a stall of every ack, whatever the
//! node does; the live benchmark prints this next to its ack latencies.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::stats::Latencies;

/// What the probe saw.
pub struct DiskReport {
    pub flushes: Latencies,
    /// Flushes that took longer than 50 ms.
    pub over_50ms: u64,
}

/// When the probe stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// After this long: flushes start until it has passed (a benchmark
    /// samples the disk over its own run).
    Duration(Duration),
    /// After exactly this many flushes, however long they take.
    Flushes(u64),
}

impl Bound {
    /// Whether another flush starts, `flushes` done since `started`.
    fn allows_another(self, started: Instant, flushes: u64) -> bool {
        match self {
            Self::Duration(duration) => started.elapsed() < duration,
            Self::Flushes(count) => flushes < count,
        }
    }
}

/// Writes and flushes 8 KiB every `interval` in a scratch file in `dir`
/// (removed afterwards), cycling over 16 MiB, until `bound`.
pub fn probe(dir: &Path, bound: Bound, interval: Duration) -> std::io::Result<DiskReport> {
    let path = dir.join(format!(".invigil-disk-probe-{}", std::process::id()));
    let result = run(&path, bound, interval);
    let _ = std::fs::remove_file(&path);
    result
}

fn run(path: &Path, bound: Bound, interval: Duration) -> std::io::Result<DiskReport> {
    const BLOCK: usize = 8 * 1024;
    const SPAN: u64 = 16 * 1024 * 1024;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let block = vec![0x5a_u8; BLOCK];
    let mut report = DiskReport {
        flushes: Latencies::default(),
        over_50ms: 0,
    };
    let (mut offset, mut flushes) = (0_u64, 0_u64);
    let started = Instant::now();
    while bound.allows_another(started, flushes) {
        let flush_started = Instant::now();
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&block)?;
        file.sync_data()?;
        let took = flush_started.elapsed();
        report.flushes.record(took);
        flushes += 1;
        if took > Duration::from_millis(50) {
            report.over_50ms += 1;
        }
        offset = (offset + BLOCK as u64) % SPAN;
        std::thread::sleep(interval);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_flushes_and_cleans_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = probe(dir.path(), Bound::Flushes(3), Duration::from_millis(1)).expect("probe");
        assert_eq!(report.flushes.count(), 3);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
