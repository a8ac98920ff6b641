//! Faults outside the nodes:
//! - Postgres stalled: every process of the server the drill's schema lives
//!   on stopped with SIGSTOP, then resumed. The server must be on this
//!   machine (a loopback address); the drill refuses otherwise.
//! - A node cut off by nftables ([`Partition`]).

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

/// The group id a drill's node runs under (when the drill runs as root), so
/// nftables can tell its packets from the others' (`meta skgid`). Unique
/// per drill process, so two drills on one machine do not cut each
/// other's nodes.
pub fn node_gid(index: usize) -> u32 {
    let slot = std::process::id() % 10_000;
    100_000 + slot * 32 + u32::try_from(index % 32).unwrap_or(0)
}

/// Whether this process may cut nodes off: root, and `nft` installed.
pub fn can_partition() -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    anyhow::ensure!(
        std::fs::metadata("/proc/self")?.uid() == 0,
        "the partition drill needs root (nftables rules, nodes under their own group id)"
    );
    let found = Command::new("nft")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    anyhow::ensure!(
        found,
        "the partition drill needs nft (Debian: apt-get install nftables)"
    );
    Ok(())
}

/// The ports of the node to cut off.
pub struct CutPorts {
    pub http: u16,
    pub actor: u16,
    pub gossip: u16,
}

/// One node cut off from the other nodes, Postgres and Redis by an
/// nftables table of the drill's own, on loopback, both ways and UDP
/// gossip included; its HTTP port still answers clients (a node whose
/// back-end network failed while candidates still reach it: the harder
/// case). Every connection the node makes, and every packet of it, is
/// marked and dropped (conntrack, so replies die too); packets to its actor
/// and gossip ports are dropped. The table goes when [`Partition::heal`]
/// is called, when this value is dropped, and at the latest by a detached
/// `sleep; nft delete table` started first.
pub struct Partition {
    how: Cut,
    healed: bool,
}

/// How the cut was made, so it can be undone.
enum Cut {
    /// The drill's own nftables table.
    Table(String),
    /// A fleet's `cut` command; `heal` undoes it.
    Command(Box<(super::fleet::ControlFile, super::fleet::Node)>),
}

impl Partition {
    pub fn cut(name: &str, gid: u32, ports: &CutPorts, at_most: Duration) -> anyhow::Result<Self> {
        can_partition()?;
        let table = format!("invigil_drill_{name}");
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep {:.1}; nft delete table inet {table} 2>/dev/null",
                at_most.as_secs_f64() + 2.0
            ))
            .spawn()
            .context("the safety net that heals the partition")?;
        let rules = format!(
            "table inet {table} {{\n\
             \x20 chain out {{\n\
             \x20   type filter hook output priority 0; policy accept;\n\
             \x20   meta skgid {gid} tcp sport != {http} ct mark set 0x1d1\n\
             \x20   meta skgid {gid} meta l4proto udp ct mark set 0x1d1\n\
             \x20   ct mark 0x1d1 drop\n\
             \x20   tcp dport {actor} drop\n\
             \x20   udp dport {gossip} drop\n\
             \x20 }}\n\
             }}\n",
            http = ports.http,
            actor = ports.actor,
            gossip = ports.gossip,
        );
        nft_file(&rules).context("nft: adding the partition")?;
        Ok(Self {
            how: Cut::Table(table),
            healed: false,
        })
    }

    /// A cut a fleet's `cut` command made (already run); healed by its
    /// `heal` command.
    pub fn by_command(control: super::fleet::ControlFile, node: super::fleet::Node) -> Self {
        Self {
            how: Cut::Command(Box::new((control, node))),
            healed: false,
        }
    }

    fn undo(&self) -> anyhow::Result<()> {
        match &self.how {
            Cut::Table(table) => {
                let status = Command::new("nft")
                    .args(["delete", "table", "inet", table])
                    .status()?;
                anyhow::ensure!(status.success(), "nft delete table {table} failed");
                Ok(())
            }
            Cut::Command(cut) => {
                let (control, node) = &**cut;
                control.run("heal", control.heal.as_ref(), Some(node))
            }
        }
    }

    /// Removes the cut: the node can talk to everyone again.
    pub fn heal(mut self) -> anyhow::Result<()> {
        self.healed = true;
        self.undo()
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if !self.healed {
            let _ = self.undo();
        }
    }
}

fn nft_file(rules: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(rules.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "nft -f failed on:\n{rules}");
    Ok(())
}
