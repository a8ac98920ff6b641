//! The Redis adapters of cluster mode: [`RedisHotState`] (resume buffers,
//! sessions, snapshots, rate counters, sliding windows) and
//! [`RedisWorkQueue`] (Redis Streams with consumer groups). Every key is
//! listed in docs/redis-keys.md.
//!
//! Redis holds only what may be lost: a dead or restarted Redis costs resume
//! replays (clients get full snapshots) and unconsumed work, never an
//! acknowledged answer. So every call is bounded by
//! [`RedisOptions::op_timeout`], a failure trips a short circuit breaker
//! (callers then fail in microseconds instead of waiting), and the adapters
//! reconnect by themselves.
//!
//! # Layout
//! - `connection`: the shared connection: lazy connect, timeouts, circuit breaker
//! - `hot`: [`RedisHotState`]
//! - `queue`: [`RedisWorkQueue`]
//! - `keys`: key names under the prefix

mod connection;
mod hot;
mod keys;
mod queue;

use std::time::Duration;

pub use connection::{InvalidRedisUrl, RedisConnection};
pub use hot::RedisHotState;
pub use queue::RedisWorkQueue;

/// How the Redis adapters connect and what they keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`. May carry a
    /// password: only ever printed through [`crate::redact_url`].
    pub url: String,
    /// Put in front of every key, so several deployments can share a Redis.
    pub key_prefix: String,
    /// The longest any single Redis call may take, connecting included.
    pub op_timeout: Duration,
    /// How long a candidate's resume buffer and session claim outlive their
    /// last write.
    pub buffer_ttl: Duration,
    /// After a connection failure, calls fail at once for this long before
    /// Redis is tried again.
    pub breaker_cooldown: Duration,
    /// Entries a queue topic's stream keeps (approximately: `MAXLEN ~`).
    pub queue_max_len: usize,
    /// Entries a topic's dead-letter stream keeps (approximately).
    pub dead_letter_max_len: usize,
}

impl RedisOptions {
    /// Options with the defaults: prefix `invigil:`, 500 ms per call, resume
    /// buffers and sessions kept 24 h, a 250 ms breaker, 100 000 queue
    /// entries and 10 000 dead letters per topic.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "invigil:".into(),
            op_timeout: Duration::from_millis(500),
            buffer_ttl: Duration::from_secs(24 * 3600),
            breaker_cooldown: Duration::from_millis(250),
            queue_max_len: 100_000,
            dead_letter_max_len: 10_000,
        }
    }
}
