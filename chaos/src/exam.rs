//! The live-exam load: candidates logged in over REST, connected over
//! WebSockets, sending answers at a paced rate (open loop: the schedule does
//! not wait for acks, so slow acks show up as latency instead of hiding as
//! lower load) with heartbeats; proctors sending `warn` commands whose
//! arrival at the candidate is timed (same process, same clock). Bounded by
//! a duration; loopback only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::plans::{access_code, reg_no};
use crate::stats::Latencies;

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

#[derive(Default)]
pub struct ExamReport {
    pub connected: usize,
    pub connect_failures: usize,
    pub answers_sent: u64,
    pub acks: u64,
    pub errors: u64,
    pub disconnects: u64,
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

/// Counters shared by every task.
#[derive(Default)]
struct Shared {
    answers_sent: AtomicU64,
    acks: AtomicU64,
    measured_acks: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    controls: AtomicU64,
    command_acks: AtomicU64,
    commands_sent: AtomicU64,
    stop_sending: AtomicBool,
    /// Command id → when the proctor sent it. A std mutex: no await under it.
    commands: Mutex<HashMap<u64, Instant>>,
    control_latency: Mutex<Latencies>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn error(&self, message: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| message.into());
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn login(
    client: &reqwest::Client,
    base: &str,
    body: Value,
    path: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "login failed with {status}: {answer}");
    Ok(answer["token"].as_str().context("no token")?.to_string())
}

/// A connected socket and the highest cseq the server has accepted so far.
async fn connect(base: &str, path: &str, token: &str) -> anyhow::Result<(Socket, i64)> {
    let url = format!("{}{path}?token={token}", base.replace("http://", "ws://"));
    // A small read buffer: tungstenite zero-fills the whole buffer on every
    // read, and the 128 KiB default made memset the load tool's top cost.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    socket
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await?;
    // Wait for the welcome (candidates) or the first room snapshot (proctors).
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message? {
            let frame: Value = serde_json::from_str(&text)?;
            match frame["t"].as_str() {
                Some("welcome") => {
                    return Ok((socket, frame["state"]["last_cseq"].as_i64().unwrap_or(0)));
                }
                Some("room") => return Ok((socket, 0)),
                Some("error") => anyhow::bail!("refused: {frame}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("closed before the welcome")
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
        // Let the login storm's transient buffers go back first; the lowest
        // of a few samples is the node's resting size.
        let mut lowest = None;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            lowest = match (lowest, rss_kib(pid)) {
                (Some(low), Some(now)) => Some(std::cmp::min(low, now)),
                (low, now) => low.or(now),
            };
        }
        report.rss_before_kib = lowest;
    }
    let mut connecting = Vec::new();
    for token in tokens {
        let (gate, base) = (gate.clone(), load.base.clone());
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(&base, "/ws/candidate", &token).await
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
        let token = login(&client, &load.base, body, "/api/v1/auth/proctor").await?;
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
    for (index, (socket, last_cseq)) in sockets.into_iter().enumerate() {
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
        tasks.push(tokio::spawn(candidate(socket, shared.clone(), schedule)));
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
    let watcher = {
        let (pid, api_key, base, plan_id) = (
            load.watch_pid,
            load.api_key.clone(),
            load.base.clone(),
            load.plan_id.clone(),
        );
        let client = client.clone();
        let end = tokio::time::Instant::from_std(deadline) - Duration::from_millis(500);
        // Sampling starts once the connect storm has settled (when the run
        // is long enough to have a settled part).
        let settle = if load.duration >= Duration::from_secs(6) {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        tokio::spawn(async move {
            tokio::time::sleep(settle).await;
            let mut peak = None;
            let mut ticker = tokio::time::interval(Duration::from_millis(500));
            while tokio::time::Instant::now() < end {
                ticker.tick().await;
                peak = peak.max(pid.and_then(rss_kib));
            }
            let online = match api_key {
                Some(key) => online_count(&client, &base, &plan_id, &key).await,
                None => None,
            };
            (peak, online)
        })
    };
    // The machine's CPU over the measured window (after the warm-up).
    let cpu = {
        let (from, to) = (
            tokio::time::Instant::from_std(measure_from),
            tokio::time::Instant::from_std(deadline),
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
    };
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
    report.measured_acks = shared.measured_acks.load(Ordering::Relaxed);
    report.ack_latency = latencies;
    report.answers_sent = shared.answers_sent.load(Ordering::Relaxed);
    report.acks = shared.acks.load(Ordering::Relaxed);
    report.errors = shared.errors.load(Ordering::Relaxed);
    report.disconnects = shared.disconnects.load(Ordering::Relaxed);
    report.commands_sent = shared.commands_sent.load(Ordering::Relaxed);
    report.command_acks = shared.command_acks.load(Ordering::Relaxed);
    report.controls_received = shared.controls.load(Ordering::Relaxed);
    report.control_latency = std::mem::take(
        &mut *shared
            .control_latency
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    report.first_error = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    Ok(report)
}

/// When one candidate sends.
struct Schedule {
    interval: Option<Duration>,
    phase: Option<Duration>,
    heartbeat: Duration,
    deadline: Instant,
    /// Continue after the highest cseq the server has (as a real client does).
    last_cseq: i64,
    window: Option<usize>,
    /// Answers sent before this are warm-up: acked but not measured.
    measure_from: Instant,
}

/// One candidate: answers on schedule, heartbeats, acks timed.
async fn candidate(socket: Socket, shared: Arc<Shared>, schedule: Schedule) -> Latencies {
    let Schedule {
        interval,
        phase,
        heartbeat,
        deadline,
        last_cseq,
        window,
        measure_from,
    } = schedule;
    let (mut sink, mut stream) = socket.split();
    let mut latencies = Latencies::default();
    let mut in_flight: HashMap<i64, Instant> = HashMap::new();
    let mut cseq = last_cseq;
    let start = tokio::time::Instant::now();
    let mut next_answer = interval.map(|_| start + phase.unwrap_or_default());
    let mut next_heartbeat = start + heartbeat;
    // After the deadline, wait a little for the acks still on their way.
    let drain_until = tokio::time::Instant::from_std(deadline) + Duration::from_secs(3);
    loop {
        let now = tokio::time::Instant::now();
        let sending = Instant::now() < deadline;
        // Closed loop: top the window up before waiting.
        if let Some(window) = window
            && sending
        {
            while in_flight.len() < window {
                cseq += 1;
                if !send_answer(&mut sink, &shared, &mut in_flight, cseq).await {
                    return latencies;
                }
            }
        }
        if !sending && now >= drain_until {
            break;
        }
        if !sending && in_flight.is_empty() {
            // Stay for controls still on their way to some candidate.
            let controls_pending = !shared
                .commands
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if !controls_pending {
                break;
            }
        }
        let wake = match (sending, next_answer) {
            (true, Some(at)) => at.min(next_heartbeat),
            (true, None) => next_heartbeat,
            // Draining: look again soon whether anything is still awaited.
            (false, _) => next_heartbeat
                .min(drain_until)
                .min(now + Duration::from_millis(100)),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                let now = tokio::time::Instant::now();
                if sending && let (Some(at), Some(interval)) = (next_answer, interval) && now >= at {
                    cseq += 1;
                    if !send_answer(&mut sink, &shared, &mut in_flight, cseq).await {
                        break;
                    }
                    next_answer = Some(at + interval);
                }
                if now >= next_heartbeat {
                    let frame = format!(r#"{{"t":"hb","ts":{}}}"#, start.elapsed().as_millis());
                    if sink.send(Message::text(frame)).await.is_err() {
                        shared.disconnects.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    next_heartbeat = now + heartbeat;
                }
            }
            message = stream.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    _ => {
                        shared.disconnects.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                // Acks are the bulk: read them without building a JSON tree.
                if let Some(cseq) = ack_cseq(&text) {
                    if let Some(sent) = in_flight.remove(&cseq) {
                        acked(&shared, &mut latencies, sent, measure_from);
                    }
                    continue;
                }
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                match frame["t"].as_str() {
                    Some("ack") => {
                        if let Some(sent) = frame["cseq"].as_i64().and_then(|cseq| in_flight.remove(&cseq)) {
                            acked(&shared, &mut latencies, sent, measure_from);
                        }
                    }
                    Some("error") => {
                        if let Some(cseq) = frame["cseq"].as_i64() {
                            in_flight.remove(&cseq);
                        }
                        shared.error(frame.to_string());
                    }
                    Some("control") => {
                        let id = frame["reason"].as_str().and_then(|reason| reason.strip_prefix("load:")).and_then(|id| id.parse::<u64>().ok());
                        if let Some(id) = id {
                            let sent = shared.commands.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                            if let Some(sent) = sent {
                                shared.control_latency.lock().unwrap_or_else(|p| p.into_inner()).record(sent.elapsed());
                                shared.controls.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = sink.close().await;
    latencies
}

/// Sends answer `cseq` (cycling over 12 single-choice questions) and starts
/// its clock; false when the socket is gone.
async fn send_answer(
    sink: &mut futures::stream::SplitSink<Socket, Message>,
    shared: &Shared,
    in_flight: &mut HashMap<i64, Instant>,
    cseq: i64,
) -> bool {
    let frame = format!(
        r#"{{"t":"answer","q":"q{:02}","value":"{}","cseq":{cseq}}}"#,
        cseq % 12 + 1,
        cseq % 4 + 1
    );
    if sink.send(Message::text(frame)).await.is_err() {
        shared.disconnects.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    in_flight.insert(cseq, Instant::now());
    shared.answers_sent.fetch_add(1, Ordering::Relaxed);
    true
}

/// Counts an ack; times it when its answer was sent after the warm-up.
fn acked(shared: &Shared, latencies: &mut Latencies, sent: Instant, measure_from: Instant) {
    shared.acks.fetch_add(1, Ordering::Relaxed);
    if sent >= measure_from {
        latencies.record(sent.elapsed());
        shared.measured_acks.fetch_add(1, Ordering::Relaxed);
    }
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

/// The cseq of an `{"t":"ack",…,"cseq":N,…}` frame.
fn ack_cseq(text: &str) -> Option<i64> {
    let rest = text.strip_prefix(r#"{"t":"ack","#)?;
    let start = rest.find(r#""cseq":"#)? + 7;
    let digits: &str = &rest[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One proctor: `warn` commands to the room's candidates on schedule.
async fn proctor(
    socket: Socket,
    shared: Arc<Shared>,
    interval: Option<Duration>,
    phase: Option<Duration>,
    candidates: Vec<usize>,
    deadline: Instant,
) {
    static NEXT_COMMAND: AtomicU64 = AtomicU64::new(1);
    let (mut sink, mut stream) = socket.split();
    let mut next = tokio::time::Instant::now()
        + interval.unwrap_or(Duration::from_secs(3600))
        + phase.unwrap_or_default();
    // The last command leaves well before the candidates stop listening.
    let last_command = deadline - Duration::from_millis(500);
    let mut target = 0;
    // Commands sent and not yet acked; after the run, wait a little for them.
    let mut unacked = 0_u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if shared.stop_sending.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if unacked == 0 || since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next), if interval.is_some() && Instant::now() < last_command && !candidates.is_empty() => {
                let id = NEXT_COMMAND.fetch_add(1, Ordering::Relaxed);
                let candidate = candidates[target % candidates.len()];
                target += 1;
                let frame = json!({
                    "t": "command", "id": id.to_string(), "action": "warn", "reason": format!("load:{id}"),
                    "target": {"candidate_id": format!("cand-{candidate:06}")}
                });
                shared.commands.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Instant::now());
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                shared.commands_sent.fetch_add(1, Ordering::Relaxed);
                unacked += 1;
                next += interval.unwrap_or_default();
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(&text)
                        && frame["t"] == "command_ack"
                    {
                        shared.command_acks.fetch_add(1, Ordering::Relaxed);
                        unacked = unacked.saturating_sub(1);
                        if frame.get("error").is_some() {
                            shared.error(frame.to_string());
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = sink.close().await;
}

/// A progress line on stderr, refreshed every second.
async fn show_progress(shared: Arc<Shared>, started: Instant, duration: Duration) {
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
