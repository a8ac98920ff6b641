//! `invigil-chaos drill`: a named fault against a local cluster under
//! steady exam traffic, a steady-state hypothesis, an independent checker,
//! a verdict and a report (docs/chaos.md).
//!
//! One drill: start N nodes (their own Postgres schema and Redis prefix),
//! import and start an exam, put every candidate on a socket (round robin
//! over the nodes), let them save, inject the fault, keep the traffic
//! going, then check what the clients were told against the journal read
//! from Postgres directly.
//!
//! # Layout
//! - `cluster`: the local nodes and the faults (SIGKILL, SIGSTOP, drain)
//! - `faults`: faults outside the nodes (Postgres stalled, a partition)
//! - `fleet`: an existing fleet (`--target`, `--control`): its nodes, its commands
//! - `servers`: a Redis and a Postgres of the drill's own, to restart
//! - `inject`: each scenario's fault, step by step
//! - `traffic`: the candidates, reconnecting by docs/protocol.md's rule
//! - `proctors`: proctors warning candidates throughout, delivery timed
//! - `agreement`: what the nodes say: views, readiness, agreement
//! - `boarding`: the drill's plans imported and started, candidates on sockets
//! - `checker`: acks against the journal: lost, written twice, stale epoch
//! - `closing`: a second plan whose time runs out during the fault
//! - `figures`: recovery times, refusals, clocks, series over time
//! - `report`: the verdict line, summary.json, report.md, report.html

pub mod agreement;
pub mod boarding;
pub mod checker;
pub mod closing;
pub mod cluster;
pub mod faults;
pub mod figures;
pub mod fleet;
pub mod inject;
pub mod proctors;
pub mod report;
pub mod servers;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::time::Instant;

use self::boarding::{Boarding, Exam, board, start_exam};
use self::checker::{Acked, Findings, check, read_journal};
use self::cluster::{Cluster, ClusterSpec};
use self::figures::{Figures, Times, Victim};
use self::traffic::{Pace, Rider, Storm};

/// Steady traffic before the fault.
const STEADY: Duration = Duration::from_secs(3);

/// How long into the fault the closing plan's time runs out.
const CLOSING_AFTER_FAULT: Duration = Duration::from_secs(2);

/// The faults a drill can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// SIGKILL of the busiest node.
    Kill,
    /// SIGSTOP of the busiest node past its lease, then SIGCONT.
    Stop,
    /// The busiest node drained (`POST /api/v1/cluster/drain`).
    Drain,
    /// Every candidate's socket dropped at once.
    ReconnectStorm,
    /// The busiest node cut off from the others, Postgres and Redis
    /// (nftables on loopback, gossip included) past its lease, then healed;
    /// its HTTP port still answers clients.
    Partition,
    /// Every Postgres process stopped (SIGSTOP) for longer than the ack
    /// budget, then resumed.
    PostgresStall,
    /// Redis (the drill's own, without persistence) killed and started
    /// again empty.
    RedisRestart,
    /// Postgres (the drill's own) crashed (`pg_ctl stop -m immediate`) and
    /// started again, recovering from its WAL.
    PostgresRestart,
    /// Every node drained and restarted in turn.
    RollingRestart,
    /// One more node started under traffic; it takes its share of rooms.
    ScaleOut,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Kill,
        Scenario::Stop,
        Scenario::Partition,
        Scenario::Drain,
        Scenario::ReconnectStorm,
        Scenario::PostgresStall,
        Scenario::RedisRestart,
        Scenario::PostgresRestart,
        Scenario::RollingRestart,
        Scenario::ScaleOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Drain => "drain",
            Self::ReconnectStorm => "reconnect-storm",
            Self::Partition => "partition",
            Self::PostgresStall => "postgres-stall",
            Self::RedisRestart => "redis-restart",
            Self::PostgresRestart => "postgres-restart",
            Self::RollingRestart => "rolling-restart",
            Self::ScaleOut => "scale-out",
        }
    }

    /// The steady-state hypothesis the drill tests.
    pub fn hypothesis(self) -> &'static str {
        match self {
            Self::Kill => {
                "When the node hosting the most rooms is killed, every candidate — on its sockets or in its rooms — saves again within the budget, and no acknowledged answer is lost or written twice."
            }
            Self::Stop => {
                "When the busiest node freezes past its lease and wakes up, the others take its rooms, every candidate saves again, and nothing the frozen node writes after waking is accepted under its old epoch."
            }
            Self::Drain => {
                "When the busiest node is drained, its rooms move with their writes finished, every candidate saves again, and no acknowledged answer is lost."
            }
            Self::ReconnectStorm => {
                "When every socket drops at once, every candidate reconnects, resumes and saves again within the budget, and every unacknowledged answer is acknowledged once."
            }
            Self::Partition => {
                "When the busiest node is cut off from the other nodes and the data stores while candidates still reach it, the cut-off minority stops hosting and accepting writes, the majority takes every room, every candidate saves again, and after the cut heals no acknowledged answer is lost and none was written under a stale epoch."
            }
            Self::PostgresStall => {
                "When Postgres stops answering for seconds, nothing is acknowledged that is not stored, every candidate saves again once it is back, and no acknowledged answer is lost."
            }
            Self::RedisRestart => {
                "When Redis dies and comes back empty, candidates keep saving throughout (answers go to the store, not Redis), resumes get snapshots instead of replays, and no acknowledged answer is lost."
            }
            Self::PostgresRestart => {
                "When Postgres crashes and restarts, nothing is acknowledged that is not stored, every candidate saves again once it is back, no acknowledged answer is lost (the crash recovery keeps every committed row), and no shard changes hands."
            }
            Self::RollingRestart => {
                "When every node is drained and restarted in turn, as in a release, no candidate's saves pause for long, and no acknowledged answer is lost."
            }
            Self::ScaleOut => {
                "When a node joins under traffic, it takes its share of the rooms without a candidate's saves pausing for long or an acknowledged answer being lost."
            }
        }
    }
}

impl Scenario {
    /// Whether this machine can run the scenario (`all` skips, saying why,
    /// the ones it cannot; naming one of them fails instead).
    pub fn can_run(self) -> anyhow::Result<()> {
        match self {
            Self::Partition => faults::can_partition(),
            Self::RedisRestart => servers::PrivateRedis::available(),
            Self::PostgresRestart => servers::PrivatePostgres::available(),
            _ => Ok(()),
        }
    }

    /// The control file's commands the scenario needs on an existing fleet.
    fn needs(self) -> &'static [&'static str] {
        match self {
            Self::Kill => &["kill"],
            Self::Stop => &["stop", "cont"],
            Self::Partition => &["cut", "heal"],
            Self::RollingRestart => &["start"],
            Self::RedisRestart => &["redis_restart"],
            Self::PostgresRestart => &["postgres_restart"],
            Self::PostgresStall => &["postgres_stop", "postgres_cont"],
            Self::Drain | Self::ReconnectStorm | Self::ScaleOut => &[],
        }
    }

    /// Whether `control` lets the drill run the scenario on its fleet.
    pub fn can_run_on(self, control: &fleet::ControlFile) -> anyhow::Result<()> {
        anyhow::ensure!(
            self != Self::ScaleOut,
            "scale-out needs a node that is not in the fleet yet: run it on a local cluster"
        );
        let missing: Vec<&str> = self
            .needs()
            .iter()
            .copied()
            .filter(|name| !control.has(name))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{} needs `{}` in the control file",
            self.name(),
            missing.join("`, `")
        );
        Ok(())
    }

    /// The data stores of the drill's own the scenario needs.
    async fn stores(self) -> anyhow::Result<servers::Stores> {
        Ok(servers::Stores {
            redis: match self {
                Self::RedisRestart => Some(servers::PrivateRedis::start().await?),
                _ => None,
            },
            postgres: match self {
                Self::PostgresRestart => Some(servers::PrivatePostgres::start().await?),
                _ => None,
            },
        })
    }
}

/// What to drill and how.
#[derive(Clone, Debug)]
pub struct DrillOptions {
    pub nodes: usize,
    pub candidates: usize,
    pub per_room: usize,
    /// Proctors (of rooms 1 …) sending a warning every two seconds.
    pub proctors: usize,
    /// Traffic after the fault (at least until every candidate saved again).
    pub after: Duration,
    pub pace: Pace,
    /// A p99 longest pause between saves above this fails the drill.
    pub budget: Duration,
    pub cluster: ClusterSpec,
    /// An existing fleet to drill instead of a local cluster.
    pub fleet: Option<Fleet>,
}

/// An existing fleet: every node's base URL, and the control file.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub targets: Vec<String>,
    pub control: fleet::ControlFile,
}

/// One drill's outcome.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: Scenario,
    pub passed: bool,
    pub verdict: String,
    pub hypothesis: &'static str,
    /// Seconds since the traffic started, and what happened.
    pub timeline: Vec<(f64, String)>,
    pub figures: Figures,
    pub findings: Findings,
    /// The closing plan: time-up during the fault.
    pub time_up: closing::TimeUp,
    pub nodes: usize,
    pub candidates: usize,
    pub violations: Vec<String>,
}

/// Runs one scenario on a fresh local cluster.
pub async fn drill(scenario: Scenario, options: &DrillOptions) -> anyhow::Result<Outcome> {
    if let Some(fleet) = &options.fleet {
        scenario.can_run_on(&fleet.control)?;
        let mut cluster = Cluster::attach(
            options.cluster.clone(),
            &fleet.targets,
            fleet.control.clone(),
        )
        .await?;
        let outcome = run(
            scenario,
            options,
            &mut cluster,
            &mut servers::Stores::default(),
        )
        .await;
        // The fleet is not the drill's: its plans are ended, not dropped.
        let plan = cluster.plan_id();
        for plan_id in [closing::plan_id(&plan), plan] {
            end_plan(&cluster, &plan_id).await;
        }
        cluster.stop().await;
        return outcome;
    }
    scenario.can_run()?;
    let mut stores = scenario.stores().await?;
    let mut spec = options.cluster.clone();
    stores.apply(&mut spec);
    let mut cluster = Cluster::start(spec).await?;
    let outcome = run(scenario, options, &mut cluster, &mut stores).await;
    // The nodes first: their stores go after them.
    cluster.stop().await;
    drop(stores);
    outcome
}

async fn run(
    scenario: Scenario,
    options: &DrillOptions,
    cluster: &mut Cluster,
    stores: &mut servers::Stores,
) -> anyhow::Result<Outcome> {
    let began = Instant::now();
    let mut timeline = Vec::new();
    let mut note = |what: String| timeline.push((began.elapsed().as_secs_f64(), what));
    note(format!(
        "{} nodes ready and in agreement",
        cluster.running().len()
    ));
    let main_plan = cluster.plan_id();
    let plan_id = main_plan.as_str();
    let closing_plan = closing::plan_id(plan_id);
    let rooms = options.candidates.div_ceil(options.per_room.max(1));
    let heartbeat_s = options.pace.heartbeat.as_secs().max(1);
    start_exam(
        cluster,
        &Exam {
            plan_id,
            title: "Chaos drill",
            duration_s: 7200,
            per_room: options.per_room,
            candidates: options.candidates,
            heartbeat_s,
        },
    )
    .await?;
    note(format!(
        "exam started: {} candidates in {rooms} rooms",
        options.candidates
    ));

    // Everyone on a socket, round robin over the nodes.
    let bases = cluster.bases();
    let running = cluster.running().len();
    let storm = Storm::default();
    // Bounded: the riders are stopped when the drill ends, at the latest
    // after ten minutes.
    let stop_at = Instant::now() + Duration::from_secs(600);
    let boarding = Boarding {
        plan_id,
        per_room: options.per_room,
        pace: options.pace,
        storm: &storm,
        stop_at,
    };
    let (riders, mut tasks) = board(cluster, &boarding, options.candidates).await?;
    wait_for(&riders, None, 2, Duration::from_secs(60))
        .await
        .context("every candidate saving before the fault")?;
    note("every candidate saving".into());
    let sent = Arc::new(proctors::Sent::default());
    for room in 1..=options.proctors.min(rooms) {
        let first = (room - 1) % running;
        let rotated: Vec<String> = (0..bases.len())
            .map(|i| bases[(first + i) % bases.len()].clone())
            .collect();
        let candidates: Vec<String> = riders
            .iter()
            .filter(|rider| rider.room == room)
            .map(|rider| rider.candidate_id.clone())
            .collect();
        let proctor = proctors::Proctor {
            client: cluster.client.clone(),
            bases: rotated,
            plan_id: plan_id.to_string(),
            room,
            candidates,
        };
        tasks.push(tokio::spawn(proctor.run(
            sent.clone(),
            Duration::from_secs(2),
            stop_at,
        )));
    }

    // The closing plan, whose time runs out a couple of seconds into the
    // fault; steady traffic for a while before the fault.
    let steady_from = Instant::now();
    let closing_rooms = closing::rooms(cluster.size());
    let closing_duration_s = STEADY.as_secs() + CLOSING_AFTER_FAULT.as_secs();
    start_exam(
        cluster,
        &Exam {
            plan_id: &closing_plan,
            title: "Chaos drill: time runs out",
            duration_s: closing_duration_s,
            per_room: closing::PER_ROOM,
            candidates: closing_rooms * closing::PER_ROOM,
            heartbeat_s,
        },
    )
    .await?;
    let (closing_riders, closing_tasks) = board(
        cluster,
        &Boarding {
            plan_id: &closing_plan,
            per_room: closing::PER_ROOM,
            ..boarding
        },
        closing_rooms * closing::PER_ROOM,
    )
    .await?;
    tasks.extend(closing_tasks);
    note(format!(
        "closing plan started: {} candidates, {closing_duration_s} s",
        closing_rooms * closing::PER_ROOM
    ));
    tokio::time::sleep_until(steady_from + STEADY).await;
    // The fault, on the node hosting the most rooms (owners as they were).
    let owners = cluster
        .owners_of_rooms(plan_id, rooms)
        .await
        .context("room owners")?;
    let victim = busiest(cluster, &owners);
    let closing_unlucky = cluster
        .owners_of_rooms(&closing_plan, closing_rooms)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|owner| **owner == cluster.node_id(victim))
        .count()
        * closing::PER_ROOM;
    let fault_at = Instant::now();
    let fault_at_ms = unix_ms();
    let injected = inject::inject(
        inject::Fault {
            scenario,
            options,
            victim,
            storm: &storm,
            plan_id,
            rooms,
        },
        cluster,
        stores,
        &mut note,
    )
    .await?;
    let fault_ends = injected.ends;
    let saved_again = wait_for(&riders, Some(fault_at), 2, options.budget * 3).await;
    match &saved_again {
        Ok(()) => note("every candidate saving again".into()),
        Err(error) => note(format!("not every candidate saved again: {error:#}")),
    }
    let until = (fault_ends + options.after).max(Instant::now() + Duration::from_secs(2));
    tokio::time::sleep_until(until).await;
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    // Acks on their way are in the records; let writes settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    note("traffic stopped; checking the journal".into());

    let acked: Vec<Acked> = riders
        .iter()
        .flat_map(|rider| {
            let record = rider.record.lock().unwrap_or_else(|p| p.into_inner());
            record
                .acked
                .iter()
                .map(|(cseq, version, _)| Acked {
                    candidate: rider.candidate_id.clone(),
                    cseq: *cseq,
                    version: *version,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let store = cluster.store().await?;
    let (journal, epochs) = read_journal(&store, plan_id).await?;
    let findings = check(&acked, &journal, &epochs);
    let mut time_up = closing::check(
        &store,
        &closing_plan,
        &closing_riders,
        i64::try_from(closing_duration_s)?,
        options.budget,
    )
    .await?;
    store.close().await;
    time_up.in_victims_rooms = closing_unlucky;
    time_up.deadline_after_fault_s = time_up.deadline_after_fault_s_from(fault_at_ms);
    let victim_id = cluster.node_id(victim);
    let commands = sent.take();
    let figures = Figures::gather(
        &riders,
        Times {
            began,
            fault_at,
            fault_ends,
        },
        Victim {
            index: victim,
            id: &victim_id,
            room_owners: Some(&owners),
        },
        &commands,
    );
    Ok(report::judge(
        scenario,
        options,
        timeline,
        figures,
        findings,
        time_up,
        injected.violations,
    ))
}

/// Ends a plan (best effort: the drill is over either way).
async fn end_plan(cluster: &Cluster, plan_id: &str) {
    let Some(&index) = cluster.running().first() else {
        return;
    };
    let ended = cluster
        .client
        .post(format!(
            "{}/api/v1/admin/plans/{plan_id}/commands",
            cluster.base(index)
        ))
        .header("X-Api-Key", cluster.api_key())
        .json(&serde_json::json!({"action": "end"}))
        .send()
        .await;
    if let Err(error) = ended {
        eprintln!("the drill could not end its plan {plan_id}: {error:#}");
    }
}

/// Now, in milliseconds since the unix epoch (the nodes' timestamps).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// The node (of `nodes`) that owns the most of the rooms in `owners`.
fn busiest(cluster: &Cluster, owners: &[String]) -> usize {
    (0..cluster.size())
        .max_by_key(|&index| {
            let id = cluster.node_id(index);
            owners.iter().filter(|owner| **owner == id).count()
        })
        .unwrap_or(0)
}

/// Waits until every rider has `more` acks (after `since`, when given).
async fn wait_for(
    riders: &[Rider],
    since: Option<Instant>,
    more: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let behind = riders
            .iter()
            .filter(|rider| {
                let record = rider.record.lock().unwrap_or_else(|p| p.into_inner());
                record
                    .acked
                    .iter()
                    .filter(|(_, _, at)| since.is_none_or(|since| *at > since))
                    .count()
                    < more
            })
            .count();
        if behind == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{behind} of {} candidates did not save within {timeout:?}",
            riders.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a drill's reports go by default.
pub fn default_report_dir() -> PathBuf {
    PathBuf::from("target/chaos")
}
