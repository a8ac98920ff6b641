//! `invigil-queue-bench`: work-queue throughput on real Redis and Postgres.
//!
//! 1. publishes N log lines to the `logs` topic (batches of 500, as the
//!    node's outbox does) and reports entries/s;
//! 2. runs the log worker (the node's own consume loop: fetch, one batched
//!    idempotent insert per batch, ack) until every entry is acknowledged;
//! 3. as the baseline, the same consume loop with one insert transaction
//!    per entry, over a fresh set of entries, bounded in time.
//!
//! Bounded: N entries (default 200 000) and a time limit per phase. Uses a
//! key prefix of its own and deletes its keys at the end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use clap::Parser;
use invigil_actors::domain::Timestamp;
use invigil_actors::ports::{Journal, LogEntry, LogKind, WorkItem, WorkQueue};
use invigil_actors::workers::consumer::{Consume, Outcome, decode};
use invigil_actors::workers::logs::LogWorker;
use invigil_actors::workers::{
    ConsumerConfig, LogPayload, WorkerActor, WorkerArgs, WorkerCounters, topics,
};
use invigil_store::redis::{RedisOptions, RedisWorkQueue};
use invigil_store::{SqlOptions, SqlStore};
use ractor::Actor;
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "invigil-queue-bench",
    about = "Work-queue throughput (Redis Streams → log worker → Postgres)"
)]
struct Cli {
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// A Postgres server; the bench creates (and drops) its own database.
    #[arg(long, default_value = "postgres://postgres:postgres@127.0.0.1:5432")]
    postgres: String,
    #[arg(long, default_value_t = 200_000)]
    entries: usize,
    /// Entries for the naive baseline (it is much slower).
    #[arg(long, default_value_t = 20_000)]
    naive_entries: usize,
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Per phase.
    #[arg(long, default_value_t = 120)]
    max_seconds: u64,
}

/// The baseline: one transaction per entry.
struct OnePerEntry(Arc<dyn Journal>);

#[async_trait]
impl Consume for OnePerEntry {
    fn topic(&self) -> &'static str {
        topics::LOGS
    }

    fn group(&self) -> &'static str {
        LogWorker::GROUP
    }

    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(match decode::<LogPayload>(item) {
                Ok(payload) => match self.0.append_logs(&[payload.into_queued()]).await {
                    Ok(_) => Outcome::Done,
                    Err(error) => Outcome::Retry(error.to_string()),
                },
                Err(poison) => poison,
            });
        }
        outcomes
    }
}

fn line(n: usize) -> Vec<u8> {
    serde_json::to_vec(&LogPayload::new(LogEntry {
        plan_id: "queue-bench".parse().expect("id"),
        kind: LogKind::Candidate,
        subject: Some(format!("cand-{:05}", n % 10_000)),
        room_id: Some(format!("room-{}", n % 300).parse().expect("id")),
        message: "client_event".into(),
        detail: json!({"kind": "focus_lost", "n": n}),
        at: Timestamp::from_millis(1_764_000_000_000 + n as i64),
    }))
    .expect("serializable")
}

fn queue(url: &str, prefix: &str) -> anyhow::Result<Arc<dyn WorkQueue>> {
    let mut options = RedisOptions::new(url);
    options.key_prefix = prefix.to_string();
    options.queue_max_len = 10_000_000;
    Ok(Arc::new(RedisWorkQueue::connect(options)?))
}

async fn publish(queue: &dyn WorkQueue, count: usize, batch: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let size = batch.min(count - sent);
        let payloads: Vec<Vec<u8>> = (sent..sent + size).map(line).collect();
        queue
            .publish(topics::LOGS, &payloads)
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
        sent += size;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Runs a consumer until `count` entries are acknowledged or time runs out;
/// returns (acknowledged, seconds).
async fn consume<C: Consume>(
    queue: Arc<dyn WorkQueue>,
    consumer: C,
    count: usize,
    batch: usize,
    limit: Duration,
) -> anyhow::Result<(u64, f64)> {
    let counters = Arc::new(WorkerCounters::default());
    let started = Instant::now();
    let (actor, handle) = Actor::spawn(
        None,
        WorkerActor::<C>::default(),
        WorkerArgs {
            queue,
            consumer_name: "bench".into(),
            consumer,
            config: ConsumerConfig {
                batch,
                wait: Duration::from_millis(100),
                ..ConsumerConfig::default()
            },
            counters: counters.clone(),
            metrics: invigil_actors::metrics::Metrics::noop(),
        },
    )
    .await?;
    while counters.acked.load(Ordering::Relaxed) < count as u64 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    actor.stop(None);
    let _ = handle.await;
    Ok((acked, seconds))
}

async fn forget(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.redis.contains("127.0.0.1") || cli.redis.contains("localhost"),
        "benchmarks run against loopback only"
    );
    let limit = Duration::from_secs(cli.max_seconds);
    let database = "invigil_bench_queue";
    let admin = sqlx::PgPool::connect(&format!("{}/postgres", cli.postgres))
        .await
        .context("postgres reachable")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database}"
    )))
    .execute(&admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let mut options = SqlOptions::new(format!("{}/{database}", cli.postgres));
    options.max_connections = 4;
    let store = SqlStore::connect(&options).await?;
    store.migrate().await?;
    let journal: Arc<dyn Journal> = Arc::new(store.clone());

    let prefix = format!("bench-{}:", uuid::Uuid::now_v7().simple());
    let group_queue = queue(&cli.redis, &format!("{prefix}group:"))?;
    let published = publish(group_queue.as_ref(), cli.entries, cli.batch).await?;
    println!("publish.entries_s {published:.0}");
    let (acked, seconds) = consume(
        group_queue,
        LogWorker::new(journal.clone()),
        cli.entries,
        cli.batch,
        limit,
    )
    .await?;
    println!("group.acked {acked}");
    println!("group.entries_s {:.0}", acked as f64 / seconds);

    let naive_queue = queue(&cli.redis, &format!("{prefix}naive:"))?;
    publish(naive_queue.as_ref(), cli.naive_entries, cli.batch).await?;
    let (naive_acked, naive_seconds) = consume(
        naive_queue,
        OnePerEntry(journal.clone()),
        cli.naive_entries,
        cli.batch,
        limit,
    )
    .await?;
    println!("naive.acked {naive_acked}");
    println!("naive.entries_s {:.0}", naive_acked as f64 / naive_seconds);

    let counter = sqlx::PgPool::connect(&format!("{}/{database}", cli.postgres)).await?;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM logs WHERE plan_id = 'queue-bench'")
        .fetch_one(&counter)
        .await?;
    counter.close().await;
    println!("stored.rows {stored}");
    anyhow::ensure!(
        stored as u64 == acked + naive_acked,
        "every acknowledged entry is stored once ({stored} rows for {} acks)",
        acked + naive_acked
    );
    forget(&cli.redis, &prefix).await?;
    store.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database}"
    )))
    .execute(&admin)
    .await?;
    Ok(())
}
