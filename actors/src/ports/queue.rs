//! At-least-once work for the workers.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::Timestamp;

/// One delivery of a queued item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkItem {
    pub id: String,
    pub payload: Vec<u8>,
    /// How many times it was delivered, this one included.
    pub deliveries: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("work queue unavailable: {0}")]
pub struct QueueError(pub String);

/// At-least-once work for the workers: consumer groups, acknowledgements,
/// reclaim of items stuck with a dead consumer, and a dead-letter list.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError>;

    /// Returns up to `max` new items for `consumer` of `group`, waiting up to `wait`.
    async fn fetch(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<WorkItem>, QueueError>;

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> Result<(), QueueError>;

    /// Moves items idle for at least `min_idle` (their consumer died) to `consumer`.
    async fn reclaim(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>, QueueError>;

    /// Parks an item that keeps failing, with the reason, and acks it.
    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        item: &WorkItem,
        reason: &str,
    ) -> Result<(), QueueError>;

    /// The oldest `max` dead-lettered items of `topic`. Their `id` is the
    /// dead-letter id (what [`Self::replay_dead_letter`] takes), not the
    /// original one.
    async fn dead_letters(&self, topic: &str, max: usize) -> Result<Vec<WorkItem>, QueueError>;

    /// [`Self::dead_letters`] with why and when each item was parked, for an
    /// operator.
    async fn dead_letter_details(
        &self,
        topic: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError>;

    /// Publishes a dead-lettered item again (to its topic, as a new item)
    /// and removes it from the dead letters; returns whether it existed.
    async fn replay_dead_letter(&self, topic: &str, id: &str) -> Result<bool, QueueError>;

    /// How far `group` is behind on `topic` (items not yet delivered plus
    /// those delivered and not acknowledged) and how many items of the
    /// topic are parked as dead letters. A topic or group that does not
    /// exist yet has nothing pending.
    async fn depth(&self, topic: &str, group: &str) -> Result<QueueDepth, QueueError>;
}

/// A topic's backlog for one consumer group (`invigil_queue_pending`,
/// `invigil_queue_dead_letters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub pending: u64,
    pub dead_letters: u64,
}

/// A dead-lettered item with the circumstances of its parking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// `id` is the dead-letter id; `deliveries` those before it was parked.
    pub item: WorkItem,
    /// The item's id in its topic when it was parked.
    pub original_id: String,
    /// The consumer group that gave up on it.
    pub group: String,
    pub reason: String,
    pub dead_lettered_at: Timestamp,
}
