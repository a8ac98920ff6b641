//! The run: log every candidate in, then connect them, a bounded number at
//! a time; connect the proctors; start one task per socket on a spread
//! schedule; sample the node and the machine meanwhile; gather the report.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::Semaphore;

use super::candidate::{Schedule, candidate};
use super::proctor::proctor;
use super::report::ExamReport;
use super::shared::{Shared, show_progress};
use super::socket::{connect, login};
use super::watch::{NodeWatch, resting_rss_kib, spawn_cpu_watch};
use crate::plans::{access_code, reg_no};
use crate::reconnect::Candidate;
use crate::stats::Latencies;

/// What to drive, how fast and for how long.
#[derive(Clone, Debug)]
pub struct ExamLoad {
    pub base: String,
    pub plan_id: String,
    /// Candidates driven: B000001 … B{candidates}.
    pub candidates: usize,
    /// Candidates per room in the plan (to target proctors' commands).
    pub per_room: usize,
    /// Answers per second over all candidates (0: sockets only).
    pub answer_rate: f64,
    /// Closed loop instead: each candidate keeps this many answers in flight
    /// and sends the next as soon as one is acked (measures the ceiling).
    pub window: Option<usize>,
    pub heartbeat: Duration,
    /// How long answers (and commands) are sent.
    pub duration: Duration,
    /// Proctors driven: the first proctor of rooms 1 … proctors.
    pub proctors: usize,
    /// Commands per second over all proctors.
    pub command_rate: f64,
    /// Logins and connects in flight at once.
    pub connect_concurrency: usize,
    pub progress: bool,
    /// Answers sent in the first `warmup` of the run are not measured.
    pub warmup: Duration,
    /// The node's process id, to sample its resident memory (same machine).
    pub watch_pid: Option<u32>,
    /// With the admin key, the node's own count of online candidates is read
    /// at the end of the run.
    pub api_key: Option<String>,
}

/// Runs the load and returns what it measured.
pub async fn run(load: ExamLoad) -> anyhow::Result<ExamReport> {
    let client = crate::target::client(load.connect_concurrency)?;
    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(load.connect_concurrency.max(1)));

    // Log in every candidate, then connect them, a bounded number at a time;
    // the node's memory is sampled in between so the sockets' share shows.
    let mut report = ExamReport::default();
    let mut logging_in = Vec::new();
    for n in 1..=load.candidates {
        let (client, gate, base, plan_id) = (
            client.clone(),
            gate.clone(),
            load.base.clone(),
            load.plan_id.clone(),
        );
        logging_in.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let body =
                json!({"plan_id": plan_id, "reg_no": reg_no(n), "access_code": access_code(n)});
            login(&client, &base, body, "/api/v1/auth/candidate").await
        }));
    }
    let mut tokens = Vec::new();
    for task in logging_in {
        match task.await? {
            Ok(token) => tokens.push(token),
            Err(error) => {
                report.connect_failures += 1;
                shared.error(format!("login: {error:#}"));
            }
        }
    }
    if let Some(pid) = load.watch_pid {
        report.rss_before_kib = resting_rss_kib(pid).await;
    }
    let mut connecting = Vec::new();
    // Connecting may take until the run would have ended.
    let connect_until = tokio::time::Instant::now() + load.duration.max(Duration::from_secs(30));
    for token in tokens {
        let (gate, base) = (gate.clone(), load.base.clone());
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut client = Candidate::new(vec![base], token);
            let (socket, welcome) = client.connect(connect_until).await?;
            anyhow::Ok((client, socket, welcome.last_cseq))
        }));
    }
    let mut sockets = Vec::new();
    for task in connecting {
        match task.await? {
            Ok(connected) => sockets.push(connected),
            Err(error) => {
                report.connect_failures += 1;
                shared.error(format!("connect: {error:#}"));
            }
        }
    }
    report.connected = sockets.len();
    let mut proctor_sockets = Vec::new();
    for room in 1..=load.proctors {
        let body =
            json!({"login": format!("proctor-{room}-1"), "password": format!("password-{room}-1")});
        let token = login(&client, &load.base, body, "/api/v1/auth/proctor")
            .await
            .with_context(|| {
                format!(
                    "proctor-{room}-1: --proctors drives the first proctor of rooms 1 … {}; \
                     the plan must have that many rooms (setup makes one per --per-room candidates)",
                    load.proctors
                )
            })?;
        proctor_sockets.push((room, connect(&load.base, "/ws/proctor", &token).await?.0));
    }

    let started = Instant::now();
    let deadline = started + load.duration;
    let measure_from = started + load.warmup.min(load.duration / 2);
    let per_candidate = if load.answer_rate > 0.0 && !sockets.is_empty() {
        Some(Duration::from_secs_f64(
            sockets.len() as f64 / load.answer_rate,
        ))
    } else {
        None
    };
    let progress = load
        .progress
        .then(|| tokio::spawn(show_progress(shared.clone(), started, load.duration)));
    let mut tasks = Vec::new();
    let count = sockets.len().max(1);
    for (index, (client, socket, last_cseq)) in sockets.into_iter().enumerate() {
        // Spread the candidates' schedules over one interval.
        let phase = per_candidate.map(|interval| interval.mul_f64(index as f64 / count as f64));
        let schedule = Schedule {
            interval: per_candidate,
            phase,
            heartbeat: load.heartbeat,
            deadline,
            last_cseq,
            window: load.window,
            measure_from,
        };
        tasks.push(tokio::spawn(candidate(
            client,
            socket,
            shared.clone(),
            schedule,
        )));
    }
    let per_proctor = (load.command_rate > 0.0 && !proctor_sockets.is_empty())
        .then(|| Duration::from_secs_f64(proctor_sockets.len() as f64 / load.command_rate));
    let mut proctor_tasks = Vec::new();
    let proctor_count = proctor_sockets.len().max(1);
    for (index, (room, socket)) in proctor_sockets.into_iter().enumerate() {
        let candidates_in_room: Vec<usize> = (1..=load.candidates)
            .filter(|n| (n - 1) / load.per_room.max(1) + 1 == room)
            .collect();
        proctor_tasks.push(tokio::spawn(proctor(
            socket,
            shared.clone(),
            per_proctor,
            // Spread the proctors' schedules over one interval, as people are.
            per_proctor.map(|interval| interval.mul_f64(index as f64 / proctor_count as f64)),
            candidates_in_room,
            deadline,
        )));
    }
    // Sample the node while the sockets are held; near the end, ask it how
    // many candidates it sees online.
    let watcher = NodeWatch {
        client: client.clone(),
        base: load.base.clone(),
        plan_id: load.plan_id.clone(),
        pid: load.watch_pid,
        api_key: load.api_key.clone(),
        // Sampling starts once the connect storm has settled (when the run
        // is long enough to have a settled part).
        settle: if load.duration >= Duration::from_secs(6) {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        },
        end: tokio::time::Instant::from_std(deadline) - Duration::from_millis(500),
    }
    .spawn();
    // The machine's CPU over the measured window (after the warm-up).
    let cpu = spawn_cpu_watch(measure_from, deadline);
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.merge(&task.await?);
    }
    (report.rss_connected_kib, report.online_at_end) = watcher.await?;
    report.machine_cpu_busy_pct = cpu.await?;
    shared.stop_sending.store(true, Ordering::Relaxed);
    for task in proctor_tasks {
        task.await?;
    }
    if let Some(progress) = progress {
        progress.abort();
        eprintln!();
    }
    report.sending = deadline.saturating_duration_since(measure_from);
    report.ack_latency = latencies;
    shared.fill_report(&mut report);
    Ok(report)
}
