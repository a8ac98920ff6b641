//! `invigil-load`: load and benchmarks against a running invigil node on
//! this machine. Every mode is bounded in requests and time.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use invigil_chaos::disk::Bound;
use invigil_chaos::import::{argon2_hashes_per_second, naive_import, timed_import};
use invigil_chaos::login::{LoginStorm, run};
use invigil_chaos::plans::{PlanShape, plan};
use invigil_chaos::target::loopback_base;

#[derive(Parser)]
#[command(
    name = "invigil-load",
    about = "Load and benchmarks against a local invigil node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time 8 KiB write + fdatasync every `interval_ms` for `seconds` in a
    /// scratch file under `dir`: the disk's flush latency, which every
    /// durable ack waits for at least once.
    DiskProbe {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
    /// Write a generated plan as JSON.
    GenPlan {
        #[arg(long, default_value_t = 10_000)]
        candidates: usize,
        #[arg(long, default_value_t = 30)]
        per_room: usize,
        #[arg(long, default_value_t = 1)]
        proctors_per_room: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a generated plan through the API and print the wall time.
    Import {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        plan_id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Write the same plan one INSERT per row (the naive baseline).
    NaiveImport {
        /// postgres://… or sqlite:… (a scratch database; it is migrated).
        #[arg(long)]
        database: String,
        #[arg(long)]
        plan_id: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Candidate logins from many workers; prints throughput and latency.
    Login {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        plan_id: String,
        /// Candidates in the plan (logins cycle over B000001…).
        #[arg(long, default_value_t = 10_000)]
        candidates: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 20_000)]
        max_requests: u64,
        #[arg(long, default_value_t = 30)]
        max_seconds: u64,
    },
    /// Import a generated plan, open and start it (setup for `exam`).
    Setup {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        api_key: String,
        #[arg(long)]
        plan_id: String,
        #[arg(long, default_value_t = 1_000)]
        candidates: usize,
        #[arg(long, default_value_t = 30)]
        per_room: usize,
        #[arg(long, default_value_t = 1)]
        proctors_per_room: usize,
    },
    /// The live exam: candidates answer over WebSockets, proctors send commands.
    Exam {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        plan_id: String,
        #[arg(long, default_value_t = 1_000)]
        candidates: usize,
        #[arg(long, default_value_t = 30)]
        per_room: usize,
        /// Answers per second over all candidates (0: sockets and heartbeats only).
        #[arg(long, default_value_t = 1_000.0)]
        answer_rate: f64,
        /// Closed loop: answers in flight per candidate (overrides --answer-rate).
        #[arg(long)]
        window: Option<usize>,
        #[arg(long, default_value_t = 10)]
        heartbeat_s: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 0)]
        proctors: usize,
        /// Commands per second over all proctors.
        #[arg(long, default_value_t = 0.0)]
        command_rate: f64,
        #[arg(long, default_value_t = 128)]
        connect_concurrency: usize,
        #[arg(long)]
        no_progress: bool,
        /// Answers sent in the first seconds are acked but not measured.
        #[arg(long, default_value_t = 0)]
        warmup_s: u64,
        /// The node's pid (same machine): its memory per socket is reported.
        #[arg(long)]
        watch_pid: Option<u32>,
        /// The admin key: the node's own online count is read at the end.
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Argon2id hashes per second with the node's default cost.
    Argon2 {
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::DiskProbe {
            dir,
            seconds,
            interval_ms,
        } => {
            let seconds = seconds.clamp(1, 600);
            let report = tokio::task::spawn_blocking(move || {
                invigil_chaos::disk::probe(
                    &dir,
                    Bound::Duration(Duration::from_secs(seconds)),
                    Duration::from_millis(interval_ms.max(1)),
                )
            })
            .await??;
            println!(
                "disk_flushes={} flushes_over_50ms={}",
                report.flushes.count(),
                report.over_50ms
            );
            println!("disk_flush_latency: {}", report.flushes.summary());
        }
        Command::GenPlan {
            candidates,
            per_room,
            proctors_per_room,
            out,
        } => {
            let shape = PlanShape {
                candidates,
                per_room,
                proctors_per_room,
            };
            std::fs::write(&out, serde_json::to_vec(&plan("generated", &shape))?)?;
            println!("wrote {} ({candidates} candidates)", out.display());
        }
        Command::Import {
            url,
            api_key,
            plan_id,
            file,
        } => {
            let base = loopback_base(&url)?;
            let body = serde_json::from_slice(&std::fs::read(&file)?)?;
            let (elapsed, outcome) = timed_import(&base, &api_key, &plan_id, &body).await?;
            println!(
                "import_ms={:.0} outcome={outcome}",
                elapsed.as_secs_f64() * 1000.0
            );
        }
        Command::NaiveImport {
            database,
            plan_id,
            file,
        } => {
            let body = serde_json::from_slice(&std::fs::read(&file)?)?;
            let elapsed = naive_import(&database, &plan_id, &body).await?;
            println!("naive_import_ms={:.0}", elapsed.as_secs_f64() * 1000.0);
        }
        Command::Login {
            url,
            plan_id,
            candidates,
            concurrency,
            max_requests,
            max_seconds,
        } => {
            let base = loopback_base(&url)?;
            let report = run(LoginStorm {
                base,
                plan_id,
                candidates,
                concurrency,
                max_requests,
                deadline: Duration::from_secs(max_seconds),
            })
            .await?;
            println!(
                "logins={} errors={} seconds={:.2} logins_per_s={:.0} latency: {}",
                report.requests,
                report.errors,
                report.elapsed.as_secs_f64(),
                report.per_second(),
                report.latencies.summary()
            );
            if let Some(error) = report.first_error {
                println!("first_error={error}");
            }
        }
        Command::Setup {
            url,
            api_key,
            plan_id,
            candidates,
            per_room,
            proctors_per_room,
        } => {
            let base = loopback_base(&url)?;
            let body = plan(
                "load",
                &PlanShape {
                    candidates,
                    per_room,
                    proctors_per_room,
                },
            );
            let (elapsed, outcome) = timed_import(&base, &api_key, &plan_id, &body).await?;
            let client = invigil_chaos::target::client(1)?;
            for action in ["open", "start"] {
                let response = client
                    .post(format!("{base}/api/v1/admin/plans/{plan_id}/commands"))
                    .header("X-Api-Key", &api_key)
                    .json(&serde_json::json!({"action": action}))
                    .send()
                    .await?;
                if !response.status().is_success()
                    && response.status() != reqwest::StatusCode::CONFLICT
                {
                    anyhow::bail!("{action} failed: {}", response.text().await?);
                }
            }
            println!(
                "plan {plan_id} {outcome} in {} ms, started",
                elapsed.as_millis()
            );
        }
        Command::Exam {
            url,
            plan_id,
            candidates,
            per_room,
            answer_rate,
            window,
            heartbeat_s,
            seconds,
            proctors,
            command_rate,
            connect_concurrency,
            no_progress,
            warmup_s,
            watch_pid,
            api_key,
        } => {
            let base = loopback_base(&url)?;
            let report = invigil_chaos::exam::run(invigil_chaos::exam::ExamLoad {
                base,
                plan_id,
                candidates,
                per_room,
                answer_rate: if window.is_some() { 0.0 } else { answer_rate },
                window,
                heartbeat: Duration::from_secs(heartbeat_s.max(1)),
                duration: Duration::from_secs(seconds.clamp(1, 3_600)),
                proctors,
                command_rate,
                connect_concurrency,
                progress: !no_progress,
                warmup: Duration::from_secs(warmup_s),
                watch_pid,
                api_key,
            })
            .await?;
            println!(
                "connected={} connect_failures={} answers_sent={} acks={} acks_per_s={:.0} errors={} disconnects={} reconnects={}",
                report.connected,
                report.connect_failures,
                report.answers_sent,
                report.acks,
                report.acks_per_second(),
                report.errors,
                report.disconnects,
                report.reconnects
            );
            println!("ack_latency: {}", report.ack_latency.summary());
            if let (Some(before), Some(held), Some(per)) = (
                report.rss_before_kib,
                report.rss_connected_kib,
                report.rss_per_connection(),
            ) {
                println!(
                    "node_rss_before_kib={before} node_rss_held_kib={held} rss_per_connection_bytes={per:.0}"
                );
            }
            if let Some(online) = report.online_at_end {
                println!("online_at_end={online}");
            }
            if let Some(busy) = report.machine_cpu_busy_pct {
                println!("machine_cpu_busy_pct={busy:.0}");
            }
            println!(
                "commands_sent={} command_acks={} controls_received={} control_latency: {}",
                report.commands_sent,
                report.command_acks,
                report.controls_received,
                report.control_latency.summary()
            );
            if let Some(error) = report.first_error {
                println!("first_error={error}");
            }
        }
        Command::Argon2 { samples } => {
            println!(
                "argon2_hashes_per_s={:.0}",
                argon2_hashes_per_second(samples)?
            );
        }
    }
    Ok(())
}
