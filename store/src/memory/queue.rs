//! [`MemoryWorkQueue`]: the work queue of embedded mode, with the semantics of
//! the Redis Streams adapter — per topic an append-only log with ids, per
//! consumer group a cursor and the entries delivered but not acknowledged,
//! reclaim by idle time, and a dead-letter list an operator can inspect and
//! replay. Everything is lost with the process, like unconsumed entries of a
//! Redis without persistence.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use invigil_actors::ports::{
    Clock, DeadLetter, QueueDepth, QueueError, SystemClock, WorkItem, WorkQueue,
};
use tokio::sync::Notify;
use tracing::warn;

/// Entries a topic retains by default (older ones are dropped, read or not).
pub const DEFAULT_RETAINED_ENTRIES: usize = 100_000;
/// Dead letters a topic retains by default.
pub const DEFAULT_RETAINED_DEAD_LETTERS: usize = 10_000;

/// The in-process work queue.
pub struct MemoryWorkQueue {
    /// Std mutex: held only to look a topic up or add one, never across an await.
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    retained_entries: usize,
    retained_dead_letters: usize,
}

struct Topic {
    /// Std mutex: held only while the log and groups are read or changed,
    /// never across an await.
    state: Mutex<TopicState>,
    /// Wakes fetches waiting for new entries.
    published: Notify,
}

#[derive(Default)]
struct TopicState {
    next_id: u64,
    /// Ascending ids.
    log: VecDeque<Entry>,
    groups: HashMap<String, Group>,
    next_dead_id: u64,
    /// Ascending ids.
    dead: VecDeque<Parked>,
}

struct Entry {
    id: u64,
    payload: Arc<[u8]>,
}

struct Group {
    /// The id of the next entry this group has not seen.
    cursor: u64,
    /// Delivered, not yet acknowledged; by entry id.
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    consumer: String,
    delivered_at: Instant,
    deliveries: u32,
    /// Kept here too: a pending entry survives the log's trimming.
    payload: Arc<[u8]>,
}

struct Parked {
    id: u64,
    payload: Vec<u8>,
    original_id: String,
    group: String,
    reason: String,
    deliveries: u32,
    at: invigil_actors::domain::Timestamp,
}

impl Default for MemoryWorkQueue {
    fn default() -> Self {
        Self::with_retention(DEFAULT_RETAINED_ENTRIES, DEFAULT_RETAINED_DEAD_LETTERS)
    }
}

impl MemoryWorkQueue {
    /// A queue whose topics keep at most `entries` entries and
    /// `dead_letters` dead letters each (both at least 1).
    pub fn with_retention(entries: usize, dead_letters: usize) -> Self {
        Self {
            topics: Mutex::new(HashMap::new()),
            retained_entries: entries.max(1),
            retained_dead_letters: dead_letters.max(1),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    state: Mutex::new(TopicState {
                        next_id: 1,
                        next_dead_id: 1,
                        ..TopicState::default()
                    }),
                    published: Notify::new(),
                })
            })
            .clone()
    }

    /// Appends to a topic's log and trims it to the retention.
    fn append(&self, state: &mut TopicState, payload: Arc<[u8]>) {
        let id = state.next_id;
        state.next_id += 1;
        state.log.push_back(Entry { id, payload });
        while state.log.len() > self.retained_entries {
            state.log.pop_front();
        }
    }
}

impl Topic {
    fn lock(&self) -> MutexGuard<'_, TopicState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TopicState {
    /// A group, created at the start of the retained log when new (like
    /// `XGROUP CREATE … 0`): it sees every entry still held.
    fn group(&mut self, name: &str) -> &mut Group {
        let first = self.log.front().map_or(self.next_id, |entry| entry.id);
        self.groups.entry(name.to_string()).or_insert(Group {
            cursor: first,
            pending: BTreeMap::new(),
        })
    }

    /// Delivers up to `max` entries the group has not seen to `consumer`.
    fn deliver_new(&mut self, group_name: &str, consumer: &str, max: usize) -> Vec<WorkItem> {
        let first_retained = self.log.front().map_or(self.next_id, |entry| entry.id);
        let start = {
            let group = self.group(group_name);
            if group.cursor < first_retained {
                warn!(
                    group = group_name,
                    lost = first_retained - group.cursor,
                    "work queue entries were trimmed before this group read them"
                );
                group.cursor = first_retained;
            }
            group.cursor
        };
        let offset = usize::try_from(start - first_retained).unwrap_or(usize::MAX);
        let taken: Vec<(u64, Arc<[u8]>)> = self
            .log
            .iter()
            .skip(offset)
            .take(max)
            .map(|entry| (entry.id, entry.payload.clone()))
            .collect();
        let now = Instant::now();
        let group = self.group(group_name);
        let mut items = Vec::with_capacity(taken.len());
        for (id, payload) in taken {
            group.cursor = id + 1;
            group.pending.insert(
                id,
                Pending {
                    consumer: consumer.to_string(),
                    delivered_at: now,
                    deliveries: 1,
                    payload: payload.clone(),
                },
            );
            items.push(WorkItem {
                id: id.to_string(),
                payload: payload.to_vec(),
                deliveries: 1,
            });
        }
        items
    }
}

#[async_trait]
impl WorkQueue for MemoryWorkQueue {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let topic = self.topic(topic);
        {
            let mut state = topic.lock();
            for payload in payloads {
                self.append(&mut state, Arc::from(payload.as_slice()));
            }
        }
        topic.published.notify_waiters();
        Ok(())
    }

    async fn fetch(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<WorkItem>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let topic = self.topic(topic);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a publish in between still wakes us.
            let published = topic.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let items = topic.lock().deliver_new(group, consumer, max);
            if !items.is_empty() {
                return Ok(items);
            }
            if tokio::time::timeout_at(deadline, published).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> Result<(), QueueError> {
        let topic = self.topic(topic);
        let mut state = topic.lock();
        if let Some(group) = state.groups.get_mut(group) {
            for id in ids.iter().filter_map(|id| id.parse::<u64>().ok()) {
                group.pending.remove(&id);
            }
        }
        Ok(())
    }

    async fn reclaim(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>, QueueError> {
        let topic = self.topic(topic);
        let mut state = topic.lock();
        let Some(group) = state.groups.get_mut(group) else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let mut items = Vec::new();
        for (id, pending) in &mut group.pending {
            if items.len() >= max {
                break;
            }
            if now.duration_since(pending.delivered_at) < min_idle {
                continue;
            }
            pending.consumer = consumer.to_string();
            pending.delivered_at = now;
            pending.deliveries = pending.deliveries.saturating_add(1);
            items.push(WorkItem {
                id: id.to_string(),
                payload: pending.payload.to_vec(),
                deliveries: pending.deliveries,
            });
        }
        Ok(items)
    }

    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        item: &WorkItem,
        reason: &str,
    ) -> Result<(), QueueError> {
        let topic = self.topic(topic);
        let mut state = topic.lock();
        if let (Ok(id), Some(pending_group)) = (item.id.parse::<u64>(), state.groups.get_mut(group))
        {
            pending_group.pending.remove(&id);
        }
        let id = state.next_dead_id;
        state.next_dead_id += 1;
        state.dead.push_back(Parked {
            id,
            payload: item.payload.clone(),
            original_id: item.id.clone(),
            group: group.to_string(),
            reason: reason.to_string(),
            deliveries: item.deliveries,
            at: SystemClock.now(),
        });
        while state.dead.len() > self.retained_dead_letters {
            if let Some(dropped) = state.dead.pop_front() {
                warn!(
                    original_id = %dropped.original_id,
                    group = %dropped.group,
                    "dead-letter list full; the oldest dead letter was dropped"
                );
            }
        }
        Ok(())
    }

    async fn depth(&self, topic: &str, group: &str) -> Result<QueueDepth, QueueError> {
        let topic = self.topic(topic);
        let state = topic.lock();
        let pending = state.groups.get(group).map_or(state.log.len(), |group| {
            let undelivered = state
                .log
                .iter()
                .filter(|entry| entry.id >= group.cursor)
                .count();
            undelivered + group.pending.len()
        });
        Ok(QueueDepth {
            pending: pending as u64,
            dead_letters: state.dead.len() as u64,
        })
    }

    async fn dead_letters(&self, topic: &str, max: usize) -> Result<Vec<WorkItem>, QueueError> {
        Ok(self
            .dead_letter_details(topic, max)
            .await?
            .into_iter()
            .map(|dead| dead.item)
            .collect())
    }

    async fn dead_letter_details(
        &self,
        topic: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let topic = self.topic(topic);
        let state = topic.lock();
        Ok(state
            .dead
            .iter()
            .take(max)
            .map(|parked| DeadLetter {
                item: WorkItem {
                    id: parked.id.to_string(),
                    payload: parked.payload.clone(),
                    deliveries: parked.deliveries,
                },
                original_id: parked.original_id.clone(),
                group: parked.group.clone(),
                reason: parked.reason.clone(),
                dead_lettered_at: parked.at,
            })
            .collect())
    }

    async fn replay_dead_letter(&self, topic: &str, id: &str) -> Result<bool, QueueError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(false);
        };
        let topic = self.topic(topic);
        {
            let mut state = topic.lock();
            let Some(position) = state.dead.iter().position(|parked| parked.id == id) else {
                return Ok(false);
            };
            let Some(parked) = state.dead.remove(position) else {
                return Ok(false);
            };
            self.append(&mut state, Arc::from(parked.payload));
        }
        topic.published.notify_waiters();
        Ok(true)
    }
}
