//! [`RedisWorkQueue`]: the work queue on Redis Streams with consumer groups.
//!
//! A topic is the stream `<prefix>q:<topic>`, capped near
//! [`RedisOptions::queue_max_len`]; its dead letters are the stream
//! `<prefix>dlq:<topic>`. Groups are created when first read, from the start
//! of the stream, and created again when Redis lost them (a restart without
//! persistence), so workers recover by themselves.
//!
//! A blocking read (`XREADGROUP … BLOCK`) occupies its connection
//! server-side, so every (topic, group, consumer) reads on a connection of
//! its own, opened on first use and replaced after a failure; everything
//! else shares the multiplexed connection.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::domain::Timestamp;
use invigil_actors::ports::{
    Clock, DeadLetter, QueueDepth, QueueError, SystemClock, WorkItem, WorkQueue,
};
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{RedisResult, Script, Value};
use tracing::{debug, warn};

use super::RedisOptions;
use super::connection::{Failure, InvalidRedisUrl, RedisConnection};

mod depth;

/// Moves a dead letter back to its topic as a new entry, atomically.
/// `KEYS` = dead-letter stream, topic stream; `ARGV` = dead-letter id, the
/// topic's approximate cap. Returns 1 when it existed, else 0.
static REPLAY_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then
  return 0
end
local fields = entries[1][2]
local payload = ''
for i = 1, #fields, 2 do
  if fields[i] == 'p' then
    payload = fields[i + 1]
  end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'p', payload)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
",
    )
});

/// Stream fields.
const PAYLOAD: &str = "p";
const ORIGINAL_ID: &str = "id";
const GROUP: &str = "group";
const REASON: &str = "reason";
const DELIVERIES: &str = "deliveries";
const AT: &str = "at";

/// Blocking-read connections kept before idle ones are closed.
const MAX_READERS: usize = 256;

/// One consumer's blocking-read connection; `None` until opened or after a
/// failure. A tokio mutex: held across the read, which also keeps one
/// consumer's fetches in sequence.
type ReaderSlot = Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>;

/// The work queue on Redis Streams.
pub struct RedisWorkQueue {
    connection: RedisConnection,
    /// (topic, group) known to exist. Std mutex: held only for the set
    /// operation, never across an await.
    groups: Mutex<HashSet<(String, String)>>,
    /// Where the next `XAUTOCLAIM` of a (topic, group) continues. Std
    /// mutex: held only to read or store a cursor, never across an await.
    reclaim_cursors: Mutex<HashMap<(String, String), String>>,
    /// Blocking-read connections by (topic, group, consumer). Std mutex:
    /// held only to find or add a slot, never across an await.
    readers: Mutex<HashMap<(String, String, String), ReaderSlot>>,
}

impl std::fmt::Debug for RedisWorkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWorkQueue")
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unavailable(operation: &str, failure: Failure) -> QueueError {
    QueueError(format!("redis {operation}: {failure}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `<ms>-<seq>` or `<ms>`: what Redis accepts as an entry id.
fn is_stream_id(id: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    match id.split_once('-') {
        Some((ms, seq)) => digits(ms) && digits(seq),
        None => digits(id),
    }
}

fn payload_of(entry: &StreamId) -> Vec<u8> {
    entry.get::<Vec<u8>>(PAYLOAD).unwrap_or_else(|| {
        warn!(id = %entry.id, "work queue entry without a payload; delivered empty");
        Vec::new()
    })
}

fn dead_letter_of(entry: &StreamId) -> DeadLetter {
    let text = |field: &str| entry.get::<String>(field).unwrap_or_default();
    DeadLetter {
        item: WorkItem {
            id: entry.id.clone(),
            payload: payload_of(entry),
            deliveries: entry.get::<u32>(DELIVERIES).unwrap_or(0),
        },
        original_id: text(ORIGINAL_ID),
        group: text(GROUP),
        reason: text(REASON),
        dead_lettered_at: Timestamp::from_millis(entry.get::<i64>(AT).unwrap_or(0)),
    }
}

impl RedisWorkQueue {
    /// Uses a connection shared with the node's other Redis adapters.
    pub fn new(connection: RedisConnection) -> Self {
        Self {
            connection,
            groups: Mutex::new(HashSet::new()),
            reclaim_cursors: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Prepares a connection of its own (without connecting yet).
    pub fn connect(options: RedisOptions) -> Result<Self, InvalidRedisUrl> {
        Ok(Self::new(RedisConnection::new(options)?))
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    fn options(&self) -> &RedisOptions {
        self.connection.options()
    }

    /// Creates the group (and the stream) unless it is known to exist.
    async fn ensure_group(&self, stream: &str, topic: &str, group: &str) -> Result<(), Failure> {
        let known = (topic.to_string(), group.to_string());
        if lock(&self.groups).contains(&known) {
            return Ok(());
        }
        let mut connection = self.connection.manager();
        let created = self
            .connection
            .call("create_group", async {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(stream)
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await;
        match created {
            Ok(()) => debug!(topic, group, "consumer group created"),
            Err(failure) if failure.code() == Some("BUSYGROUP") => {}
            Err(failure) => return Err(failure),
        }
        lock(&self.groups).insert(known);
        Ok(())
    }

    /// Forgets that a group exists (Redis lost it), so it is created again.
    fn forget_group(&self, topic: &str, group: &str) {
        lock(&self.groups).remove(&(topic.to_string(), group.to_string()));
        lock(&self.reclaim_cursors).remove(&(topic.to_string(), group.to_string()));
    }

    fn reader(&self, topic: &str, group: &str, consumer: &str) -> ReaderSlot {
        let mut readers = lock(&self.readers);
        if readers.len() >= MAX_READERS {
            // Close the connections no fetch is using right now.
            readers.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        readers
            .entry((topic.to_string(), group.to_string(), consumer.to_string()))
            .or_default()
            .clone()
    }

    /// One `XREADGROUP … >` on the consumer's own connection.
    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        slot: &mut Option<MultiplexedConnection>,
        max: usize,
        wait: Duration,
    ) -> Result<Option<StreamReadReply>, Failure> {
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => self.connection.dedicated().await?,
        };
        let block_ms = millis(wait);
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        // BLOCK 0 would wait forever; without BLOCK the read returns at once.
        if block_ms > 0 {
            command.arg("BLOCK").arg(block_ms);
        }
        command.arg("STREAMS").arg(stream).arg(">");
        // The reply may take the whole block time, plus a normal call's.
        let limit = wait.saturating_add(self.connection.op_timeout());
        let result = self
            .connection
            .call_within("fetch", limit, command.query_async(&mut connection))
            .await;
        let sound = match &result {
            Ok(_) => true,
            // Redis answered, if only with an error: the connection is sound.
            Err(Failure::Redis(error)) => !(error.is_io_error() || error.is_connection_dropped()),
            // Timed out or refused: a late reply must not land on the next read.
            Err(_) => false,
        };
        if sound {
            *slot = Some(connection);
        }
        result
    }
}

#[async_trait]
impl WorkQueue for RedisWorkQueue {
    async fn publish(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        if payloads.is_empty() {
            return Ok(());
        }
        let stream = self.connection.keys().queue(topic);
        let max_len = self.options().queue_max_len.max(1);
        let mut pipeline = redis::pipe();
        for payload in payloads {
            pipeline
                .cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*")
                .arg(PAYLOAD)
                .arg(payload.as_slice())
                .ignore();
        }
        let mut connection = self.connection.manager();
        self.connection
            .call("publish", pipeline.query_async::<()>(&mut connection))
            .await
            .map_err(|failure| unavailable("publish", failure))
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
        let stream = self.connection.keys().queue(topic);
        let result = async {
            self.ensure_group(&stream, topic, group).await?;
            let slot = self.reader(topic, group, consumer);
            let mut slot = slot.lock().await;
            match self
                .read_new(&stream, group, consumer, &mut slot, max, wait)
                .await
            {
                // The stream or the group is gone (Redis restarted without
                // persistence, or the key was deleted under a blocked read):
                // create the group again and read once more.
                Err(failure) if matches!(failure.code(), Some("NOGROUP" | "UNBLOCKED")) => {
                    warn!(topic, group, "consumer group lost; creating it again");
                    self.forget_group(topic, group);
                    self.ensure_group(&stream, topic, group).await?;
                    self.read_new(&stream, group, consumer, &mut slot, max, wait)
                        .await
                }
                other => other,
            }
        }
        .await;
        match result {
            Ok(reply) => Ok(reply
                .into_iter()
                .flat_map(|reply| reply.keys)
                .flat_map(|key| key.ids)
                .map(|entry| WorkItem {
                    payload: payload_of(&entry),
                    id: entry.id,
                    deliveries: 1,
                })
                .collect()),
            Err(failure) => {
                if matches!(failure, Failure::CircuitOpen) {
                    // A fetch may take `wait`: spend it here, so a worker
                    // polling a dead Redis does not spin.
                    let pause = self
                        .connection
                        .breaker_remaining()
                        .max(Duration::from_millis(50))
                        .min(wait);
                    tokio::time::sleep(pause).await;
                }
                Err(unavailable("fetch", failure))
            }
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[String]) -> Result<(), QueueError> {
        let ids: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|id| is_stream_id(id))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let stream = self.connection.keys().queue(topic);
        let mut connection = self.connection.manager();
        let acked = self
            .connection
            .call("ack", async {
                redis::cmd("XACK")
                    .arg(&stream)
                    .arg(group)
                    .arg(&ids)
                    .query_async::<u64>(&mut connection)
                    .await
            })
            .await;
        match acked {
            Ok(_) => Ok(()),
            // Redis lost the group, and with it everything pending.
            Err(failure) if failure.code() == Some("NOGROUP") => Ok(()),
            Err(failure) => Err(unavailable("ack", failure)),
        }
    }

    async fn reclaim(
        &self,
        topic: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<WorkItem>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let stream = self.connection.keys().queue(topic);
        let cursor_key = (topic.to_string(), group.to_string());
        let cursor = lock(&self.reclaim_cursors)
            .get(&cursor_key)
            .cloned()
            .unwrap_or_else(|| "0-0".to_string());
        let mut connection = self.connection.manager();
        let claimed = self
            .connection
            .call("reclaim", async {
                redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(group)
                    .arg(consumer)
                    .arg(millis(min_idle))
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(max)
                    .query_async::<StreamAutoClaimReply>(&mut connection)
                    .await
            })
            .await;
        let claimed = match claimed {
            Ok(claimed) => claimed,
            // No group yet, or Redis lost it: nothing is pending.
            Err(failure) if failure.code() == Some("NOGROUP") => {
                self.forget_group(topic, group);
                return Ok(Vec::new());
            }
            Err(failure) => return Err(unavailable("reclaim", failure)),
        };
        lock(&self.reclaim_cursors).insert(cursor_key, claimed.next_stream_id.clone());
        if !claimed.deleted_ids.is_empty() {
            warn!(
                topic,
                group,
                lost = claimed.deleted_ids.len(),
                "pending work queue entries were trimmed before they were processed"
            );
        }
        if claimed.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // XAUTOCLAIM counted the delivery; XPENDING tells the counts.
        let mut pipeline = redis::pipe();
        for entry in &claimed.claimed {
            pipeline
                .cmd("XPENDING")
                .arg(&stream)
                .arg(group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let mut connection = self.connection.manager();
        let pending: Vec<StreamPendingCountReply> = self
            .connection
            .call("reclaim", pipeline.query_async(&mut connection))
            .await
            .map_err(|failure| unavailable("reclaim", failure))?;
        Ok(claimed
            .claimed
            .iter()
            .zip(pending)
            .filter_map(|(entry, pending)| {
                // Not pending any more: acknowledged in between.
                let state = pending.ids.into_iter().find(|state| state.id == entry.id)?;
                Some(WorkItem {
                    id: entry.id.clone(),
                    payload: payload_of(entry),
                    deliveries: u32::try_from(state.times_delivered).unwrap_or(u32::MAX),
                })
            })
            .collect())
    }

    async fn dead_letter(
        &self,
        topic: &str,
        group: &str,
        item: &WorkItem,
        reason: &str,
    ) -> Result<(), QueueError> {
        let stream = self.connection.keys().queue(topic);
        let dead_letters = self.connection.keys().dead_letters(topic);
        let max_len = self.options().dead_letter_max_len.max(1);
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .ignore_errors()
            .cmd("XADD")
            .arg(&dead_letters)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg(PAYLOAD)
            .arg(item.payload.as_slice())
            .arg(ORIGINAL_ID)
            .arg(&item.id)
            .arg(GROUP)
            .arg(group)
            .arg(REASON)
            .arg(reason)
            .arg(DELIVERIES)
            .arg(item.deliveries)
            .arg(AT)
            .arg(SystemClock.now().as_millis());
        if is_stream_id(&item.id) {
            // Fails only when Redis lost the group: nothing pending to ack.
            pipeline
                .cmd("XACK")
                .arg(&stream)
                .arg(group)
                .arg(&item.id)
                .ignore();
        }
        let mut connection = self.connection.manager();
        let results: Vec<RedisResult<Value>> = self
            .connection
            .call("dead_letter", pipeline.query_async(&mut connection))
            .await
            .map_err(|failure| unavailable("dead_letter", failure))?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(unavailable("dead_letter", Failure::Redis(error))),
            None => Err(unavailable(
                "dead_letter",
                Failure::Corrupt("no reply to XADD".into()),
            )),
        }
    }

    async fn depth(&self, topic: &str, group: &str) -> Result<QueueDepth, QueueError> {
        self.read_depth(topic, group).await
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
        if max == 0 {
            return Ok(Vec::new());
        }
        let dead_letters = self.connection.keys().dead_letters(topic);
        let mut connection = self.connection.manager();
        let entries: StreamRangeReply = self
            .connection
            .call("dead_letters", async {
                redis::cmd("XRANGE")
                    .arg(&dead_letters)
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(max)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("dead_letters", failure))?;
        Ok(entries.ids.iter().map(dead_letter_of).collect())
    }

    async fn replay_dead_letter(&self, topic: &str, id: &str) -> Result<bool, QueueError> {
        if !is_stream_id(id) {
            return Ok(false);
        }
        let mut invocation = REPLAY_SCRIPT.key(self.connection.keys().dead_letters(topic));
        invocation
            .key(self.connection.keys().queue(topic))
            .arg(id)
            .arg(self.options().queue_max_len.max(1));
        let mut connection = self.connection.manager();
        let replayed: i64 = self
            .connection
            .call(
                "replay_dead_letter",
                invocation.invoke_async(&mut connection),
            )
            .await
            .map_err(|failure| unavailable("replay_dead_letter", failure))?;
        Ok(replayed == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::is_stream_id;

    #[test]
    fn stream_ids_are_checked_before_they_reach_redis() {
        assert!(is_stream_id("1700000000000-0"));
        assert!(is_stream_id("42"));
        assert!(!is_stream_id(""));
        assert!(!is_stream_id("-1"));
        assert!(!is_stream_id("1-"));
        assert!(!is_stream_id("nope"));
        assert!(!is_stream_id("1-2-3"));
    }
}
