//! `invigil-chaos drill SCENARIO`: a fault against a local cluster under
//! steady exam traffic, checked independently, with a verdict per scenario
//! and a report (docs/chaos.md). Exits non-zero on any violation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use invigil_chaos::drill::cluster::ClusterSpec;
use invigil_chaos::drill::fleet::ControlFile;
use invigil_chaos::drill::traffic::Pace;
use invigil_chaos::drill::{DrillOptions, Fleet, Scenario, drill, report};

#[derive(Parser)]
#[command(
    name = "invigil-chaos",
    about = "Chaos drills against a local invigil cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario (or `all`, one after another, each on a fresh
    /// cluster) and prints a verdict line per scenario.
    Drill {
        /// kill, stop, drain, reconnect-storm, partition, postgres-stall,
        /// redis-restart, postgres-restart, rolling-restart, scale-out, or
        /// all.
        scenario: String,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 300)]
        candidates: usize,
        #[arg(long, default_value_t = 10)]
        per_room: usize,
        /// Proctors (of rooms 1 …), each warning a candidate every 2 s.
        #[arg(long, default_value_t = 6)]
        proctors: usize,
        /// Seconds of traffic after the fault ends.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The plan's heartbeat (a silent socket is left after two).
        #[arg(long, default_value_t = 3)]
        heartbeat_s: u64,
        /// A p99 longest pause between saves above this fails the drill.
        #[arg(long, default_value_t = 10_000)]
        budget_ms: u64,
        /// `shards.lease_ttl_ms` of the nodes (their default: 15 000).
        #[arg(long)]
        lease_ttl_ms: Option<u64>,
        /// The `invigil` binary.
        #[arg(long, default_value = "target/release/invigil")]
        bin: PathBuf,
        #[arg(
            long,
            env = "INVIGIL_TEST_PG_URL",
            default_value = "postgres://postgres:postgres@127.0.0.1:5432/invigil_test"
        )]
        pg_url: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Writes summary.json, report.md and report.html (with charts) here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Drills an existing fleet instead of starting one: every node's
        /// base URL, comma-separated (loopback: reach a remote fleet
        /// through tunnels or port-forwards). Needs --control.
        #[arg(long, value_delimiter = ',', requires = "control")]
        target: Vec<String>,
        /// The fleet's control file (TOML): its admin key, its store, and
        /// the shell commands that inject each fault (docs/chaos.md).
        #[arg(long, requires = "target")]
        control: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Drill {
        scenario,
        nodes,
        candidates,
        per_room,
        proctors,
        seconds,
        heartbeat_s,
        budget_ms,
        lease_ttl_ms,
        bin,
        pg_url,
        redis_url,
        report: report_dir,
        target,
        control,
    } = Cli::parse().command;
    let fleet = match control {
        Some(path) => Some(Fleet {
            targets: target,
            control: ControlFile::read(&path)?,
        }),
        None => None,
    };
    let scenarios: Vec<Scenario> = if scenario == "all" {
        // `all` skips, saying why, what this machine cannot run (the
        // partition without root or nft, a restart without the server's
        // programs); naming one of them fails instead.
        Scenario::ALL
            .into_iter()
            .filter(|scenario| {
                match fleet.as_ref().map_or_else(
                    || scenario.can_run(),
                    |fleet| scenario.can_run_on(&fleet.control),
                ) {
                    Err(why) => {
                        println!("SKIP {}: {why:#}", scenario.name());
                        false
                    }
                    Ok(()) => true,
                }
            })
            .collect()
    } else {
        vec![
            <Scenario as clap::ValueEnum>::from_str(&scenario, true).map_err(|_| {
                anyhow::anyhow!(
                    "unknown scenario {scenario:?}: kill, stop, drain, reconnect-storm, partition, postgres-stall, redis-restart, postgres-restart, rolling-restart, scale-out or all"
                )
            })?,
        ]
    };
    anyhow::ensure!((2..=9).contains(&nodes), "--nodes is 2 … 9");
    anyhow::ensure!(
        (1..=20_000).contains(&candidates),
        "--candidates is 1 … 20000"
    );
    anyhow::ensure!(per_room >= 1, "--per-room is at least 1");
    anyhow::ensure!((1..=600).contains(&seconds), "--seconds is 1 … 600");
    anyhow::ensure!(
        fleet.is_some() || bin.exists(),
        "no node binary at {} (cargo build --release -p invigil-node)",
        bin.display()
    );
    let log_dir = report_dir
        .clone()
        .unwrap_or_else(invigil_chaos::drill::default_report_dir)
        .join("logs");
    let mut outcomes = Vec::new();
    for scenario in scenarios {
        let options = DrillOptions {
            nodes,
            candidates,
            per_room,
            proctors,
            after: Duration::from_secs(seconds),
            pace: Pace {
                think: Duration::from_millis(300),
                heartbeat: Duration::from_secs(heartbeat_s),
            },
            budget: Duration::from_millis(budget_ms),
            cluster: ClusterSpec {
                bin: bin.clone(),
                nodes,
                pg_url: pg_url.clone(),
                redis_url: redis_url.clone(),
                lease_ttl_ms,
                log_dir: log_dir.join(scenario.name()),
                spare: usize::from(scenario == Scenario::ScaleOut),
            },
            fleet: fleet.clone(),
        };
        let outcome = drill(scenario, &options).await?;
        println!("{}", outcome.verdict);
        for violation in outcome.violations.iter().take(10) {
            println!("  {violation}");
        }
        outcomes.push(outcome);
    }
    if let Some(dir) = &report_dir {
        report::write(&outcomes, dir)?;
        println!("report: {}", dir.join("report.md").display());
    }
    if outcomes.iter().any(|outcome| !outcome.passed) {
        std::process::exit(1);
    }
    Ok(())
}
