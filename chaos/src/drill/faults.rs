//! Faults outside the nodes: Postgres stalled (every process of the
//! server the drill's schema lives on stopped with SIGSTOP, then resumed).
//! The server must be on this machine (a loopback address); the drill
//! refuses otherwise.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// The postmaster's pid and its children's, found from a backend of ours
/// (`pg_backend_pid()`, whose parent is the postmaster).
async fn postgres_processes(pool: &sqlx::PgPool) -> anyhow::Result<Vec<u32>> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await?;
    let postmaster = parent_of(u32::try_from(backend)?)
        .context("the Postgres backend is not a process on this machine")?;
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(postmaster) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// The parent pid of `pid` (from `/proc/PID/stat`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …"; comm may hold spaces, so split after ')'.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn signal(pids: &[u32], name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .status()?;
    anyhow::ensure!(status.success(), "kill -{name} of Postgres failed");
    Ok(())
}

/// Stops every Postgres process for `stall`, then resumes them. A
/// detached `sleep; kill -CONT` is started first, so the server resumes
/// even if the drill dies in between. Returns how many processes stopped.
pub async fn stall_postgres(pool: &sqlx::PgPool, stall: Duration) -> anyhow::Result<usize> {
    let pids = postgres_processes(pool).await?;
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep {:.1}; kill -CONT {} 2>/dev/null",
            stall.as_secs_f64() + 2.0,
            list.join(" ")
        ))
        .spawn()
        .context("the safety net that resumes Postgres")?;
    signal(&pids, "STOP")?;
    tokio::time::sleep(stall).await;
    signal(&pids, "CONT")?;
    Ok(pids.len())
}
