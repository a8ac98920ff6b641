//! The node's queue workers: one log writer, one incident-rules worker, one
//! statistics worker and (when a webhook is configured) one admin-webhook
//! worker per node, all consuming the same queue as every other node's
//! (consumer groups share the entries out; a dead node's entries are
//! reclaimed by the survivors).

use std::sync::Arc;
use std::time::Duration;

use invigil_actors::live::directory::Directory;
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
use tracing::{info, warn};

use crate::config::Config;

/// Running workers, stopped in order at shutdown.
pub struct Workers {
    cells: Vec<ActorCell>,
    pub counters: Vec<(&'static str, Arc<WorkerCounters>)>,
}

impl Workers {
    /// Starts the workers `config.workers` asks for.
    pub async fn start(
        config: &Config,
        owner: &str,
        directory: &Arc<Directory>,
        store: &SqlStore,
        hot: Arc<dyn HotState>,
        queue: Arc<dyn WorkQueue>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let mut workers = Self {
            cells: Vec::new(),
            counters: Vec::new(),
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
                    queue,
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
            },
        )
        .await?;
        self.cells.push(actor.get_cell());
        self.counters.push((kind, counters));
        Ok(())
    }

    /// Stops every worker; what they had not acknowledged is redelivered.
    pub async fn stop(self, grace: Duration) {
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
