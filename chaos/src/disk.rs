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

/// Writes and flushes 8 KiB every `interval` for `duration` in a scratch
/// file in `dir` (removed afterwards), cycling over 16 MiB. Bounded in time.
pub fn probe(dir: &Path, duration: Duration, interval: Duration) -> std::io::Result<DiskReport> {
    let path = dir.join(format!(".invigil-disk-probe-{}", std::process::id()));
    let result = run(&path, duration, interval);
    let _ = std::fs::remove_file(&path);
    result
}

fn run(path: &Path, duration: Duration, interval: Duration) -> std::io::Result<DiskReport> {
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
    let mut offset = 0_u64;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let started = Instant::now();
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(&block)?;
        file.sync_data()?;
        let took = started.elapsed();
        report.flushes.record(took);
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
        let report = probe(
            dir.path(),
            Duration::from_millis(100),
            Duration::from_millis(5),
        )
        .expect("probe");
        assert!(report.flushes.count() >= 2, "{}", report.flushes.count());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
