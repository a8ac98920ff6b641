//! The outbox: how actors hand work to the queue without waiting for it.
//! `publish` never blocks and never fails the caller (a room actor must not
//! stall on Redis); one task per node batches payloads by topic into
//! `WorkQueue::publish` calls. While the queue is unreachable the task keeps
//! retrying with backoff and the channel holds up to `capacity` payloads;
//! beyond that new payloads are dropped and counted (logs and rule inputs are
//! best effort past that point — answers never travel this way).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::ports::WorkQueue;

/// Payloads taken off the channel per publish round.
const BATCH: usize = 512;

/// A cheap, cloneable handle for publishing.
#[derive(Clone)]
pub struct Outbox {
    sender: mpsc::Sender<(&'static str, Vec<u8>)>,
    counters: Arc<OutboxCounters>,
}

/// What the outbox did, for metrics and tests.
#[derive(Debug, Default)]
pub struct OutboxCounters {
    /// Taken into the backlog.
    pub queued: AtomicU64,
    /// Handed to the queue.
    pub published: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_rounds: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("counters", &self.counters)
            .finish()
    }
}

impl Outbox {
    /// Starts the publishing task. It ends once every `Outbox` clone is
    /// dropped and what they queued is published (or `drain` times out).
    pub fn start(queue: Arc<dyn WorkQueue>, capacity: usize) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(OutboxCounters::default());
        let task = tokio::spawn(run(queue, receiver, counters.clone()));
        (Self { sender, counters }, task)
    }

    /// Queues a payload for `topic`; returns false when it had to be dropped.
    pub fn publish(&self, topic: &'static str, payload: Vec<u8>) -> bool {
        match self.sender.try_send((topic, payload)) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(
                        dropped,
                        topic, "work queue backlog is full; dropping payloads"
                    );
                }
                false
            }
        }
    }

    /// Serializes and queues a payload.
    pub fn publish_json<T: serde::Serialize>(&self, topic: &'static str, payload: &T) -> bool {
        match serde_json::to_vec(payload) {
            Ok(bytes) => self.publish(topic, bytes),
            Err(error) => {
                warn!(%error, topic, "payload not serializable");
                false
            }
        }
    }

    pub fn counters(&self) -> &OutboxCounters {
        &self.counters
    }

    /// Whether everything queued so far was handed to the queue.
    pub fn is_flushed(&self) -> bool {
        self.counters.published.load(Ordering::Relaxed)
            >= self.counters.queued.load(Ordering::Relaxed)
    }
}

async fn run(
    queue: Arc<dyn WorkQueue>,
    mut receiver: mpsc::Receiver<(&'static str, Vec<u8>)>,
    counters: Arc<OutboxCounters>,
) {
    let mut buffer = Vec::with_capacity(BATCH);
    loop {
        buffer.clear();
        if receiver.recv_many(&mut buffer, BATCH).await == 0 {
            return;
        }
        let mut by_topic: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
        for (topic, payload) in buffer.drain(..) {
            by_topic.entry(topic).or_default().push(payload);
        }
        for (topic, payloads) in by_topic {
            let mut backoff = Duration::from_millis(50);
            loop {
                match queue.publish(topic, &payloads).await {
                    Ok(()) => {
                        counters
                            .published
                            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(error) => {
                        let rounds = counters.failed_rounds.fetch_add(1, Ordering::Relaxed) + 1;
                        if rounds.is_power_of_two() {
                            warn!(%error, topic, rounds, "publishing to the work queue failed; retrying");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }
}
