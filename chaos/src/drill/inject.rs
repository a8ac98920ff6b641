//! Each scenario's fault, step by step, with what the drill notes on its
//! timeline (docs/chaos.md, "Scenarios").

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::cluster::Cluster;
use anyhow::Context;

use super::checker::read_epochs;
use super::servers::Stores;
use super::traffic::Storm;
use super::{DrillOptions, Scenario, faults};

/// What to inject, and where.
pub struct Fault<'a> {
    pub scenario: Scenario,
    pub options: &'a DrillOptions,
    /// The node hosting the most rooms.
    pub victim: usize,
    pub storm: &'a Storm,
    pub plan_id: &'a str,
    pub rooms: usize,
}

/// How the fault went.
pub struct Injected {
    /// When the fault was over (for a single blow, when it struck).
    pub ends: Instant,
    /// Where the fault step itself saw the hypothesis broken.
    pub violations: Vec<String>,
}

/// Injects the fault; returns when it is over.
pub async fn inject(
    fault: Fault<'_>,
    cluster: &mut Cluster,
    stores: &mut Stores,
    note: &mut dyn FnMut(String),
) -> anyhow::Result<Injected> {
    let Fault {
        scenario,
        options,
        victim,
        storm,
        plan_id,
        rooms,
    } = fault;
    let fault_at = Instant::now();
    let mut fault_ends = fault_at;
    let mut violations = Vec::new();
    match scenario {
        Scenario::Kill => {
            cluster.kill(victim)?;
            note(format!("SIGKILL {}", cluster.node_id(victim)));
        }
        Scenario::Stop => {
            cluster.signal(victim, true)?;
            note(format!("SIGSTOP {}", cluster.node_id(victim)));
            let ttl = lease_ttl(options);
            tokio::time::sleep(ttl + Duration::from_secs(2)).await;
            cluster.signal(victim, false)?;
            fault_ends = Instant::now();
            note(format!("SIGCONT {}", cluster.node_id(victim)));
        }
        Scenario::Drain => {
            note(format!("drain {}", cluster.node_id(victim)));
            cluster.drain(victim).await?;
            fault_ends = Instant::now();
            note(format!("{} exited", cluster.node_id(victim)));
        }
        Scenario::ReconnectStorm => {
            storm.now();
            note(format!("{} sockets dropped at once", options.candidates));
        }
        Scenario::RollingRestart => {
            for index in cluster.running() {
                let node = cluster.node_id(index);
                note(format!("drain {node}"));
                cluster.drain(index).await?;
                cluster.spawn(index)?;
                note(format!("{node} restarted"));
                cluster.wait_agreed(Duration::from_secs(60)).await?;
                note(format!("{node} back: every node in agreement"));
            }
            fault_ends = Instant::now();
        }
        Scenario::ScaleOut => {
            let index = cluster.running().len();
            anyhow::ensure!(index < cluster.size(), "no spare node to add");
            cluster.spawn(index)?;
            note(format!("{} started", cluster.node_id(index)));
            cluster.wait_agreed(Duration::from_secs(60)).await?;
            fault_ends = Instant::now();
            let owners = cluster
                .owners_of_rooms(plan_id, rooms)
                .await
                .unwrap_or_default();
            let taken = owners
                .iter()
                .filter(|owner| **owner == cluster.node_id(index))
                .count();
            note(format!(
                "every node in agreement; {} hosts {taken} of {rooms} rooms",
                cluster.node_id(index)
            ));
        }
        Scenario::PostgresStall => {
            // Shorter than the lease (renewals fail meanwhile), longer
            // than any ack budget.
            let ttl = lease_ttl(options);
            let stall = (ttl / 2).min(Duration::from_secs(5));
            if let Some(control) = cluster.control() {
                control.run("postgres_stop", control.postgres_stop.as_ref(), None)?;
                note(format!("Postgres stopped (postgres_stop) for {stall:?}"));
                tokio::time::sleep(stall).await;
                control.run("postgres_cont", control.postgres_cont.as_ref(), None)?;
                fault_ends = Instant::now();
                note("Postgres resumed (postgres_cont)".into());
            } else {
                let pool = cluster.store().await?;
                note(format!("SIGSTOP Postgres for {stall:?}"));
                let stopped = faults::stall_postgres(&pool, stall).await?;
                pool.close().await;
                fault_ends = Instant::now();
                note(format!("SIGCONT Postgres ({stopped} processes)"));
            }
        }
        Scenario::RedisRestart => {
            let before = epochs(cluster).await?;
            if let Some(control) = cluster.control() {
                note("Redis restart (redis_restart)".into());
                control.run("redis_restart", control.redis_restart.as_ref(), None)?;
                fault_ends = Instant::now();
                note("redis_restart done".into());
            } else {
                let redis = stores
                    .redis
                    .as_mut()
                    .context("no Redis of the drill's own")?;
                redis.kill()?;
                note("SIGKILL Redis (no persistence: everything it held is gone)".into());
                tokio::time::sleep(STORE_DOWN).await;
                redis.launch().await?;
                fault_ends = Instant::now();
                note("Redis started again, empty".into());
            }
            violations.extend(moved_shards(cluster, &before, note).await?);
        }
        Scenario::PostgresRestart => {
            // Down for less than the lease: no node can renew meanwhile.
            let down = (lease_ttl(options) / 2).min(STORE_DOWN);
            let before = epochs(cluster).await?;
            if let Some(control) = cluster.control() {
                note("Postgres restart (postgres_restart)".into());
                control.run("postgres_restart", control.postgres_restart.as_ref(), None)?;
                fault_ends = Instant::now();
                note("postgres_restart done".into());
                violations.extend(moved_shards(cluster, &before, note).await?);
                return Ok(Injected {
                    ends: fault_ends,
                    violations,
                });
            }
            let postgres = stores
                .postgres
                .as_mut()
                .context("no Postgres of the drill's own")?;
            postgres.crash()?;
            note("Postgres crashed (pg_ctl stop -m immediate: no checkpoint)".into());
            tokio::time::sleep(down).await;
            postgres.launch().await?;
            fault_ends = Instant::now();
            note(format!(
                "Postgres started again after {:.1} s down (WAL recovery)",
                fault_at.elapsed().as_secs_f64()
            ));
            violations.extend(moved_shards(cluster, &before, note).await?);
        }
        Scenario::Partition => {
            violations = partition(cluster, options, victim, note).await?;
            fault_ends = Instant::now();
        }
    }
    Ok(Injected {
        ends: fault_ends,
        violations,
    })
}

/// Every shard's lease epoch, read from the store directly.
async fn epochs(cluster: &Cluster) -> anyhow::Result<HashMap<i64, i64>> {
    let pool = cluster.store().await?;
    let epochs = read_epochs(&pool).await;
    pool.close().await;
    epochs
}

/// After a data store came back: waits (bounded) for the nodes to agree
/// again, then names every shard that changed hands meanwhile (its epoch
/// grew) — a store restart shorter than the lease must move none.
async fn moved_shards(
    cluster: &Cluster,
    before: &HashMap<i64, i64>,
    note: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<String>> {
    let mut violations = Vec::new();
    if let Err(error) = cluster.wait_agreed(Duration::from_secs(30)).await {
        violations.push(format!("after the restart: {error:#}"));
    }
    let after = epochs(cluster).await?;
    let moved = changed_hands(before, &after);
    note(format!(
        "{} of {} shards changed hands during the restart",
        moved.len(),
        after.len()
    ));
    if !moved.is_empty() {
        violations.push(format!(
            "{} shards changed hands during a store restart shorter than the lease: {moved:?}",
            moved.len()
        ));
    }
    Ok(violations)
}

/// The shards whose epoch differs between `before` and `after`, in order.
fn changed_hands(before: &HashMap<i64, i64>, after: &HashMap<i64, i64>) -> Vec<i64> {
    let mut moved: Vec<i64> = after
        .iter()
        .filter(|(shard, epoch)| before.get(shard).is_some_and(|was| was != *epoch))
        .map(|(shard, _)| *shard)
        .collect();
    moved.sort_unstable();
    moved
}

/// How long a restarted data store stays down.
const STORE_DOWN: Duration = Duration::from_secs(3);

/// The lease TTL the nodes run with.
fn lease_ttl(options: &DrillOptions) -> Duration {
    Duration::from_millis(options.cluster.lease_ttl_ms.unwrap_or(15_000))
}

/// Cuts `victim` off for longer than its lease, watching both sides: the
/// cut-off node must say it hosts nothing, and the others must hold every
/// shard between them, before the cut heals.
async fn partition(
    cluster: &mut Cluster,
    options: &DrillOptions,
    victim: usize,
    note: &mut dyn FnMut(String),
) -> anyhow::Result<Vec<String>> {
    let node = cluster.node_id(victim);
    let others: Vec<usize> = cluster
        .running()
        .into_iter()
        .filter(|&index| index != victim)
        .collect();
    let hold = (lease_ttl(options) + Duration::from_secs(4)).max(Duration::from_secs(8));
    let cut = cluster.partition(victim, hold * 3 + Duration::from_secs(10))?;
    let cut_at = Instant::now();
    note(format!(
        "{node} cut off from the other nodes, Postgres and Redis (nftables; its HTTP port still answers clients)"
    ));
    let mut minority = None;
    let mut majority = None;
    // At least `hold`; longer (up to 3 × hold) while either side has not
    // settled, so a slow side shows as a late figure rather than a miss.
    while cut_at.elapsed() < hold
        || ((minority.is_none() || majority.is_none()) && cut_at.elapsed() < hold * 3)
    {
        if minority.is_none()
            && cluster
                .readiness(victim)
                .await
                .is_some_and(|detail| detail.starts_with("cut off"))
        {
            minority = Some(cut_at.elapsed());
            note(format!(
                "{node} (the minority) says it is cut off and hosts nothing, {:.1} s after the cut",
                cut_at.elapsed().as_secs_f64()
            ));
        }
        if majority.is_none() && majority_holds_every_shard(cluster, &others, &node).await {
            majority = Some(cut_at.elapsed());
            note(format!(
                "the majority ({}) holds every shard, {:.1} s after the cut",
                others
                    .iter()
                    .map(|&index| cluster.node_id(index))
                    .collect::<Vec<_>>()
                    .join(", "),
                cut_at.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    cut.heal()?;
    note(format!(
        "partition healed after {:.1} s",
        cut_at.elapsed().as_secs_f64()
    ));
    let mut violations = Vec::new();
    if minority.is_none() {
        violations.push(format!(
            "{node}, cut off, never said it stopped hosting ({:.1} s)",
            cut_at.elapsed().as_secs_f64()
        ));
    }
    if majority.is_none() {
        violations.push(format!(
            "the majority never held every shard while {node} was cut off"
        ));
    }
    match cluster.wait_agreed(Duration::from_secs(60)).await {
        Ok(()) => note("every node in agreement again".into()),
        Err(error) => violations.push(format!("after the partition healed: {error:#}")),
    }
    Ok(violations)
}

/// Every shard held (and owned) by one of `others`, as each of them sees it.
async fn majority_holds_every_shard(cluster: &Cluster, others: &[usize], cut: &str) -> bool {
    for &index in others {
        let Some(view) = cluster.view(index).await else {
            return false;
        };
        let Some(shards) = view["shards"].as_array() else {
            return false;
        };
        let held = |shard: &Value| {
            shard["held_by"]
                .as_str()
                .is_some_and(|holder| holder != cut)
                && shard["held_by"] == shard["owner"]
        };
        if !shards.iter().all(held) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check can fail: a shard whose epoch grew is named.
    #[test]
    fn a_shard_that_changed_hands_is_named() {
        let before = HashMap::from([(1, 3), (2, 5), (3, 1)]);
        assert!(changed_hands(&before, &before).is_empty());
        let after = HashMap::from([(1, 3), (2, 6), (3, 2)]);
        assert_eq!(changed_hands(&before, &after), vec![2, 3]);
    }
}
