//! The node's queue workers: one log writer, one incident-rules worker, one
//! statistics worker and (when a webhook is configured) one admin-webhook
//! worker per node, all consuming the same queue as every other node's
//! (consumer groups share the entries out; a dead node's entries are
//! reclaimed by the survivors).

use std::sync::Arc;
use std::time::Duration;

use invigil_actors::live::directory::Directory;
use invigil_actors::metrics::Metrics;
use invigil_actors::ports::{Clock, HotState, StatisticsStore, WorkQueue};
use invigil_actors::workers::logs::LogWorker;
use invigil_actors::workers::rules::RulesWorker;
use invigil_actors::workers::stats::{StatisticsActor, StatisticsArgs};
use invigil_actors::workers::webhook::{WebhookTarget, WebhookWorker};
use invigil_actors::workers::{
    ConsumerConfig, Outbox, WorkerActor, WorkerArgs, WorkerCounters, consumer::Consume,
};
use invigil_store::{HttpWebhookSender, SqlStore};
use ractor::{Actor, ActorCell};
use tracing::{debug, info, warn};

use crate::config::Config;

/// What the workers read and write besides the store.
pub struct WorkerPorts {
    pub hot: Arc<dyn HotState>,
    pub queue: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
}

/// Running workers, stopped in order at shutdown.
pub struct Workers {
    cells: Vec<ActorCell>,
    pub counters: Vec<(&'static str, Arc<WorkerCounters>)>,
    /// (topic, group) of each consumer, for the backlog gauges.
    consumed: Vec<(&'static str, &'static str)>,
    metrics: Metrics,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Starts the workers `config.workers` asks for.
    pub async fn start(
        config: &Config,
        owner: &str,
        directory: &Arc<Directory>,
        store: &SqlStore,
        ports: WorkerPorts,
    ) -> anyhow::Result<Self> {
        let WorkerPorts {
            hot,
            queue,
            clock,
            metrics,
        } = ports;
        let metrics = &metrics;
        let mut workers = Self {
            cells: Vec::new(),
            counters: Vec::new(),
            consumed: Vec::new(),
            metrics: metrics.clone(),
            sampler: None,
        };
        if !config.workers.enabled {
            info!("queue workers disabled on this node");
            return Ok(workers);
        }
        let consumer = config.consumer();
        workers
            .spawn(
                "logs",
                owner,
                LogWorker::new(Arc::new(store.clone())),
                queue.clone(),
                consumer,
            )
            .await?;
        workers
            .spawn(
                "rules",
                owner,
                RulesWorker::new(directory.clone()),
                queue.clone(),
                consumer,
            )
            .await?;
        if !config.webhook.url.is_empty() {
            let target = WebhookTarget {
                url: config.webhook.url.clone(),
                secret: config.webhook.secret.expose().to_string(),
                timeout: Duration::from_millis(if config.webhook.timeout_ms == 0 {
                    10_000
                } else {
                    config.webhook.timeout_ms
                }),
            };
            let sender = HttpWebhookSender::new().map_err(anyhow::Error::msg)?;
            workers
                .spawn(
                    "webhook",
                    owner,
                    WebhookWorker::new(target, Arc::new(sender), clock.clone()),
                    queue.clone(),
                    consumer,
                )
                .await?;
        }
        let statistics: Arc<dyn StatisticsStore> = Arc::new(store.clone());
        let (actor, _) = Actor::spawn(
            None,
            StatisticsActor,
            StatisticsArgs {
                plans: Arc::new(store.clone()),
                store: statistics,
                hot,
                clock,
                refresh: Duration::from_millis(config.workers.statistics_refresh_ms),
            },
        )
        .await?;
        workers.cells.push(actor.get_cell());
        workers.sampler = Some(tokio::spawn(sample_backlog(
            queue,
            workers.consumed.clone(),
            metrics.clone(),
        )));
        Ok(workers)
    }

    async fn spawn<C: Consume>(
        &mut self,
        kind: &'static str,
        owner: &str,
        consumer: C,
        queue: Arc<dyn WorkQueue>,
        config: ConsumerConfig,
    ) -> anyhow::Result<()> {
        let counters = Arc::new(WorkerCounters::default());
        self.consumed.push((consumer.topic(), consumer.group()));
        let (actor, _) = Actor::spawn(
            None,
            WorkerActor::<C>::default(),
            WorkerArgs {
                queue,
                // Unique per process: a restarted node's consumer is new, and
                // what its previous process left pending is reclaimed.
                consumer_name: format!("{owner}/{kind}"),
                consumer,
                config,
                counters: counters.clone(),
                metrics: self.metrics.clone(),
            },
        )
        .await?;
        self.cells.push(actor.get_cell());
        self.counters.push((kind, counters));
        Ok(())
    }

    /// Stops every worker; what they had not acknowledged is redelivered.
    pub async fn stop(self, grace: Duration) {
        if let Some(sampler) = &self.sampler {
            sampler.abort();
        }
        for cell in &self.cells {
            cell.stop(Some("the node is shutting down".into()));
        }
        for cell in self.cells {
            let stopped = async {
                while cell.get_status() != ractor::ActorStatus::Stopped {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout(grace, stopped).await.is_err() {
                warn!("a worker did not stop in time");
                cell.kill();
            }
        }
    }
}

/// How often the queue's backlog is sampled for the gauges.
const BACKLOG_SAMPLE: Duration = Duration::from_secs(5);

/// Samples each consumed topic's backlog (`invigil_queue_pending`,
/// `invigil_queue_dead_letters`) until aborted. A queue that does not
/// answer keeps the last value (the queue's own errors are logged by the
/// workers).
async fn sample_backlog(
    queue: Arc<dyn WorkQueue>,
    consumed: Vec<(&'static str, &'static str)>,
    metrics: Metrics,
) {
    let mut ticker = tokio::time::interval(BACKLOG_SAMPLE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (topic, group) in &consumed {
            let depth = tokio::time::timeout(BACKLOG_SAMPLE, queue.depth(topic, group)).await;
            match depth {
                Ok(Ok(depth)) => metrics.set_queue_depth(topic, depth.pending, depth.dead_letters),
                Ok(Err(error)) => debug!(topic, %error, "queue backlog not sampled"),
                Err(_) => debug!(topic, "queue backlog not sampled in time"),
            }
        }
    }
}

/// Waits (up to `grace`) for the outbox to hand what it holds to the queue.
pub async fn flush_outbox(outbox: &Outbox, grace: Duration) {
    let flushed = async {
        while !outbox.is_flushed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(grace, flushed).await.is_err() {
        warn!("the work queue did not take every pending payload before shutdown");
    }
}
