//! The consume loop every queue worker shares, as a ractor actor: reclaim
//! what a dead consumer left behind, fetch new entries, hand them to the
//! worker's [`Consume`], acknowledge what it finished and park what keeps
//! failing in the dead-letter stream.
//!
//! At least once: an entry is acknowledged only after its effect is durable,
//! so a worker killed mid-batch leaves its entries pending; after `min_idle`
//! another consumer (on any node) reclaims them. Consumers make their effect
//! idempotent by the payload's id. An entry delivered more than
//! `max_deliveries` times, or one that cannot be decoded at all, goes to the
//! dead-letter stream where an operator can inspect and replay it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, warn};

use crate::ports::{WorkItem, WorkQueue};

/// What became of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable: acknowledge it.
    Done,
    /// Failed for now: leave it pending; it is redelivered after `min_idle`.
    Retry(String),
    /// Can never succeed (e.g. undecodable): dead-letter it at once.
    Poison(String),
    /// Taken on, finished later: `idle` returns its id once done.
    Later,
}

/// A queue worker's work.
#[async_trait]
pub trait Consume: Send + Sync + 'static {
    fn topic(&self) -> &'static str;
    /// The consumer group: every group gets every entry once.
    fn group(&self) -> &'static str;
    /// One outcome per item, in order.
    async fn consume(&mut self, items: &[WorkItem]) -> Vec<Outcome>;
    /// Called between fetches (also when nothing came): periodic work.
    /// Returns the ids of entries taken on `Later` that are now done.
    async fn idle(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// How a worker consumes.
#[derive(Clone, Copy, Debug)]
pub struct ConsumerConfig {
    pub batch: usize,
    /// How long one fetch waits for new entries.
    pub wait: Duration,
    /// Pending this long means its consumer died: reclaim it.
    pub min_idle: Duration,
    pub reclaim_every: Duration,
    pub max_deliveries: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            wait: Duration::from_millis(500),
            min_idle: Duration::from_secs(30),
            reclaim_every: Duration::from_secs(5),
            max_deliveries: 5,
        }
    }
}

/// What a worker did, for metrics, benchmarks and tests.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub acked: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub reclaimed: AtomicU64,
    pub queue_errors: AtomicU64,
}

pub struct WorkerActor<C>(std::marker::PhantomData<fn() -> C>);

impl<C> Default for WorkerActor<C> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

pub struct WorkerArgs<C> {
    pub queue: Arc<dyn WorkQueue>,
    /// Unique per process (node id, generation, worker kind).
    pub consumer_name: String,
    pub consumer: C,
    pub config: ConsumerConfig,
    pub counters: Arc<WorkerCounters>,
    /// `invigil_queue_processed_total`.
    pub metrics: crate::metrics::Metrics,
}

pub struct WorkerState<C> {
    args: WorkerArgs<C>,
    last_reclaim: Option<Instant>,
    backoff: Duration,
}

pub enum WorkerMsg {
    Poll,
}

impl ractor::Message for WorkerMsg {}

impl<C: Consume> Actor for WorkerActor<C> {
    type Msg = WorkerMsg;
    type State = WorkerState<C>;
    type Arguments = WorkerArgs<C>;

    async fn pre_start(
        &self,
        myself: ActorRef<WorkerMsg>,
        args: WorkerArgs<C>,
    ) -> Result<WorkerState<C>, ActorProcessingErr> {
        myself.cast(WorkerMsg::Poll)?;
        Ok(WorkerState {
            args,
            last_reclaim: None,
            backoff: Duration::ZERO,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<WorkerMsg>,
        WorkerMsg::Poll: WorkerMsg,
        state: &mut WorkerState<C>,
    ) -> Result<(), ActorProcessingErr> {
        if let Err(error) = state.poll().await {
            state
                .args
                .counters
                .queue_errors
                .fetch_add(1, Ordering::Relaxed);
            state.backoff =
                (state.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            warn!(
                %error,
                topic = state.args.consumer.topic(),
                retry_in_ms = state.backoff.as_millis() as u64,
                "work queue unavailable"
            );
            tokio::time::sleep(state.backoff).await;
        } else {
            state.backoff = Duration::ZERO;
        }
        let finished = state.args.consumer.idle().await;
        if !finished.is_empty() {
            let (topic, group) = (state.args.consumer.topic(), state.args.consumer.group());
            match state.args.queue.ack(topic, group, &finished).await {
                Ok(()) => {
                    state
                        .args
                        .counters
                        .acked
                        .fetch_add(finished.len() as u64, Ordering::Relaxed);
                    state
                        .args
                        .metrics
                        .queue_processed(topic, "ok", finished.len() as u64);
                }
                // Redelivered later; consumers are idempotent.
                Err(error) => warn!(%error, topic, "acknowledging finished entries failed"),
            }
        }
        // Poll again after whatever else is queued for this actor (a stop).
        myself.cast(WorkerMsg::Poll)?;
        Ok(())
    }
}

impl<C: Consume> WorkerState<C> {
    async fn poll(&mut self) -> Result<(), crate::ports::QueueError> {
        let WorkerArgs {
            queue,
            consumer_name,
            consumer,
            config,
            counters,
            metrics,
        } = &mut self.args;
        let (topic, group) = (consumer.topic(), consumer.group());
        let mut items = Vec::new();
        if self
            .last_reclaim
            .is_none_or(|at| at.elapsed() >= config.reclaim_every)
        {
            self.last_reclaim = Some(Instant::now());
            items = queue
                .reclaim(topic, group, consumer_name, config.min_idle, config.batch)
                .await?;
            if !items.is_empty() {
                counters
                    .reclaimed
                    .fetch_add(items.len() as u64, Ordering::Relaxed);
                debug!(topic, group, count = items.len(), "reclaimed entries");
            }
        }
        if items.is_empty() {
            items = queue
                .fetch(topic, group, consumer_name, config.batch, config.wait)
                .await?;
        }
        if items.is_empty() {
            return Ok(());
        }

        // Delivered too often already: park it without trying again.
        let mut work = Vec::with_capacity(items.len());
        for item in items {
            if item.deliveries > config.max_deliveries {
                queue
                    .dead_letter(topic, group, &item, "delivered too many times")
                    .await?;
                counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                metrics.queue_processed(topic, "dead_letter", 1);
            } else {
                work.push(item);
            }
        }
        if work.is_empty() {
            return Ok(());
        }
        let outcomes = consumer.consume(&work).await;
        let mut done = Vec::with_capacity(work.len());
        for (item, outcome) in work.iter().zip(outcomes) {
            match outcome {
                Outcome::Done => done.push(item.id.clone()),
                Outcome::Poison(reason) => {
                    warn!(topic, id = %item.id, %reason, "dead-lettering an entry");
                    queue.dead_letter(topic, group, item, &reason).await?;
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    metrics.queue_processed(topic, "dead_letter", 1);
                }
                Outcome::Retry(reason) if item.deliveries >= config.max_deliveries => {
                    warn!(topic, id = %item.id, %reason, deliveries = item.deliveries, "giving up on an entry");
                    queue.dead_letter(topic, group, item, &reason).await?;
                    counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    metrics.queue_processed(topic, "dead_letter", 1);
                }
                Outcome::Later => {}
                Outcome::Retry(reason) => {
                    debug!(topic, id = %item.id, %reason, "entry left for redelivery");
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    metrics.queue_processed(topic, "retry", 1);
                }
            }
        }
        if !done.is_empty() {
            queue.ack(topic, group, &done).await?;
            counters
                .acked
                .fetch_add(done.len() as u64, Ordering::Relaxed);
            metrics.queue_processed(topic, "ok", done.len() as u64);
        }
        Ok(())
    }
}

/// Decodes a JSON payload, or says why it is poison.
pub fn decode<T: serde::de::DeserializeOwned>(item: &WorkItem) -> Result<T, Outcome> {
    serde_json::from_slice(&item.payload)
        .map_err(|error| Outcome::Poison(format!("undecodable payload: {error}")))
}
