//! [`RedisHotState`]: the hot state shared by a cluster's nodes, with the
//! semantics of `MemoryHotState` (the conformance suite runs both).
//!
//! A resume buffer is a capped stream per candidate whose entry ids are the
//! frames' seqs (`<seq>-0`), so "what came after seq n" is one `XRANGE`.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::ports::{
    CandidateKey, HotState, HotStateError, OutboundFrame, ResumePosition, SessionClaim,
};
use redis::streams::{StreamId, StreamRangeReply};
use redis::{ErrorKind, Script, ServerErrorKind};

use super::RedisOptions;
use super::connection::{Failure, InvalidRedisUrl, RedisConnection};

/// Appends one candidate's frames to its resume buffer and refreshes its TTL.
///
/// `KEYS[1]` the stream; `ARGV` = cap, ttl (ms), then (seq, text) pairs.
/// A frame newer than the buffer's newest is added. One at or below it is
/// either a retried append (the same frame is held: nothing to do) or a
/// numbering that started over (a room re-activated without its last seq):
/// then the old frames are not this numbering's past, and the buffer
/// restarts from this frame — a client asking for them gets a snapshot
/// rather than somebody else's history.
/// `window_position`: members at or before ARGV[1] (by score, ties by
/// member, as a sorted set orders them) within ARGV[2] ms ending at its score.
static WINDOW_POSITION_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at then return 0 end
at = tonumber(at)
local earlier = redis.call('ZCOUNT', KEYS[1], '(' .. (at - tonumber(ARGV[2])), '(' .. at)
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
local below = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. at)
return earlier + (rank - below) + 1
",
    )
});

static APPEND_SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = KEYS[1]
local cap = ARGV[1]
local last = 0
local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #top > 0 then
  last = tonumber(string.match(top[1][1], '^(%d+)'))
end
for i = 3, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  local id = ARGV[i] .. '-0'
  local text = ARGV[i + 1]
  if seq > last then
    redis.call('XADD', key, 'MAXLEN', cap, id, 't', text)
    last = seq
  else
    local held = redis.call('XRANGE', key, id, id)
    if #held == 0 or held[1][2][2] ~= text then
      redis.call('DEL', key)
      redis.call('XADD', key, 'MAXLEN', cap, id, 't', text)
      last = seq
    end
  end
end
redis.call('PEXPIRE', key, ARGV[2])
return last
",
    )
});

/// The stream field holding a frame's text.
const TEXT_FIELD: &str = "t";

/// Resume buffers, sessions, snapshots, rate counters and sliding windows
/// in Redis.
#[derive(Clone, Debug)]
pub struct RedisHotState {
    connection: RedisConnection,
}

impl RedisHotState {
    /// Uses a connection shared with the node's other Redis adapters.
    pub fn new(connection: RedisConnection) -> Self {
        Self { connection }
    }

    /// Prepares a connection of its own (without connecting yet).
    pub fn connect(options: RedisOptions) -> Result<Self, InvalidRedisUrl> {
        Ok(Self::new(RedisConnection::new(options)?))
    }

    pub fn connection(&self) -> &RedisConnection {
        &self.connection
    }

    fn ttl_ms(&self) -> u64 {
        millis(self.connection.options().buffer_ttl).max(1)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unavailable(operation: &str, failure: Failure) -> HotStateError {
    HotStateError(format!("redis {operation}: {failure}"))
}

/// The seq of a resume-buffer entry id (`<seq>-0`).
fn seq_of(entry: &StreamId) -> Result<u64, Failure> {
    entry
        .id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| Failure::Corrupt(format!("resume buffer entry id {:?}", entry.id)))
}

fn frame_of(entry: &StreamId) -> Result<OutboundFrame, Failure> {
    let seq = seq_of(entry)?;
    let text = entry
        .get::<String>(TEXT_FIELD)
        .ok_or_else(|| Failure::Corrupt(format!("resume buffer entry {} has no text", entry.id)))?;
    Ok(OutboundFrame {
        seq,
        text: text.into(),
    })
}

/// A session claim as stored: `[session_id, node_id]` in JSON.
fn encode_claim(claim: &SessionClaim) -> String {
    serde_json::json!([claim.session_id, claim.node_id]).to_string()
}

fn decode_claim(stored: Option<String>) -> Result<Option<SessionClaim>, Failure> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let (session_id, node_id): (String, String) = serde_json::from_str(&stored)
        .map_err(|error| Failure::Corrupt(format!("session claim: {error}")))?;
    Ok(Some(SessionClaim {
        session_id,
        node_id,
    }))
}

#[async_trait]
impl HotState for RedisHotState {
    async fn append_outbound(
        &self,
        frames: &[(CandidateKey, OutboundFrame)],
        cap: usize,
    ) -> Result<(), HotStateError> {
        if frames.is_empty() {
            return Ok(());
        }
        // One script call per candidate, in the order the frames came, all
        // in one pipelined round trip.
        let mut order: Vec<&CandidateKey> = Vec::new();
        let mut by_candidate: HashMap<&CandidateKey, Vec<&OutboundFrame>> = HashMap::new();
        for (key, frame) in frames {
            by_candidate
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(frame);
        }
        let ttl_ms = self.ttl_ms();
        let cap = cap.max(1);
        let mut pipeline = redis::pipe();
        for key in order {
            let mut invocation = APPEND_SCRIPT.key(self.connection.keys().outbound(key));
            invocation.arg(cap).arg(ttl_ms);
            for frame in by_candidate.get(key).into_iter().flatten() {
                invocation.arg(frame.seq).arg(&*frame.text);
            }
            pipeline.invoke_script(&invocation).ignore();
        }
        let mut connection = self.connection.manager();
        self.connection
            .call("append_outbound", async move {
                match pipeline.query_async::<()>(&mut connection).await {
                    // Redis restarted and forgot its scripts: load, run again
                    // (no script ran, so nothing is appended twice).
                    Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        APPEND_SCRIPT.load_async(&mut connection).await?;
                        pipeline.query_async::<()>(&mut connection).await
                    }
                    other => other,
                }
            })
            .await
            .map_err(|failure| unavailable("append_outbound", failure))
    }

    async fn last_outbound_seq(&self, key: &CandidateKey) -> Result<u64, HotStateError> {
        let stream = self.connection.keys().outbound(key);
        let mut connection = self.connection.manager();
        let newest: StreamRangeReply = self
            .connection
            .call("last_outbound_seq", async move {
                redis::cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("last_outbound_seq", failure))?;
        match newest.ids.first() {
            Some(entry) => {
                seq_of(entry).map_err(|failure| unavailable("last_outbound_seq", failure))
            }
            None => Ok(0),
        }
    }

    async fn resume_positions(
        &self,
        keys: &[CandidateKey],
    ) -> Result<Vec<ResumePosition>, HotStateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Per candidate the newest buffer entry and the session, all in one
        // pipelined round trip.
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline
                .cmd("XREVRANGE")
                .arg(self.connection.keys().outbound(key))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .cmd("GET")
                .arg(self.connection.keys().session(key));
        }
        let mut connection = self.connection.manager();
        let replies: Vec<(StreamRangeReply, Option<String>)> = self
            .connection
            .call("resume_positions", async move {
                let values: Vec<redis::Value> = pipeline.query_async(&mut connection).await?;
                values
                    .chunks_exact(2)
                    .map(|pair| {
                        Ok((
                            redis::from_redis_value_ref(&pair[0])?,
                            redis::from_redis_value_ref(&pair[1])?,
                        ))
                    })
                    .collect::<Result<Vec<_>, redis::ParsingError>>()
                    .map_err(redis::RedisError::from)
            })
            .await
            .map_err(|failure| unavailable("resume_positions", failure))?;
        replies
            .into_iter()
            .map(|(newest, session)| {
                let last_seq = match newest.ids.first() {
                    Some(entry) => seq_of(entry)?,
                    None => 0,
                };
                Ok(ResumePosition {
                    last_seq,
                    session: decode_claim(session)?,
                })
            })
            .collect::<Result<Vec<_>, Failure>>()
            .map_err(|failure| unavailable("resume_positions", failure))
    }

    async fn outbound_after(
        &self,
        key: &CandidateKey,
        after_seq: u64,
    ) -> Result<Option<Vec<OutboundFrame>>, HotStateError> {
        let stream = self.connection.keys().outbound(key);
        // After u64::MAX nothing can follow; read only the newest.
        let start = after_seq
            .checked_add(1)
            .map_or_else(|| "+".to_string(), |next| format!("{next}-0"));
        let mut connection = self.connection.manager();
        let (missed, newest): (StreamRangeReply, StreamRangeReply) = self
            .connection
            .call("outbound_after", async move {
                redis::pipe()
                    .atomic()
                    .cmd("XRANGE")
                    .arg(&stream)
                    .arg(&start)
                    .arg("+")
                    .cmd("XREVRANGE")
                    .arg(&stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("outbound_after", failure))?;
        let corrupt = |failure| unavailable("outbound_after", failure);
        let newest = newest
            .ids
            .first()
            .map(seq_of)
            .transpose()
            .map_err(corrupt)?;
        let missed = missed
            .ids
            .iter()
            .map(frame_of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        Ok(crate::resume::replay(after_seq, newest, missed))
    }

    async fn swap_session(
        &self,
        key: &CandidateKey,
        claim: SessionClaim,
    ) -> Result<Option<SessionClaim>, HotStateError> {
        let session = self.connection.keys().session(key);
        let ttl_ms = self.ttl_ms();
        let mut connection = self.connection.manager();
        let previous: Option<String> = self
            .connection
            .call("swap_session", async move {
                redis::cmd("SET")
                    .arg(&session)
                    .arg(encode_claim(&claim))
                    .arg("GET")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("swap_session", failure))?;
        decode_claim(previous).map_err(|failure| unavailable("swap_session", failure))
    }

    async fn session(&self, key: &CandidateKey) -> Result<Option<SessionClaim>, HotStateError> {
        let session = self.connection.keys().session(key);
        let mut connection = self.connection.manager();
        let stored: Option<String> = self
            .connection
            .call("session", async move {
                redis::cmd("GET")
                    .arg(&session)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("session", failure))?;
        decode_claim(stored).map_err(|failure| unavailable("session", failure))
    }

    async fn put_snapshot(
        &self,
        key: &str,
        snapshot: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), HotStateError> {
        let snapshot_key = self.connection.keys().snapshot(key);
        let ttl_ms = millis(ttl);
        let mut connection = self.connection.manager();
        self.connection
            .call("put_snapshot", async move {
                if ttl_ms == 0 {
                    // Expired on arrival.
                    return redis::cmd("DEL")
                        .arg(&snapshot_key)
                        .query_async::<()>(&mut connection)
                        .await;
                }
                redis::cmd("SET")
                    .arg(&snapshot_key)
                    .arg(snapshot)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("put_snapshot", failure))
    }

    async fn snapshot(&self, key: &str) -> Result<Option<Vec<u8>>, HotStateError> {
        let snapshot_key = self.connection.keys().snapshot(key);
        let mut connection = self.connection.manager();
        self.connection
            .call("snapshot", async move {
                redis::cmd("GET")
                    .arg(&snapshot_key)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("snapshot", failure))
    }

    /// A fixed window that opens with its first event (like the in-memory
    /// counter): the key is created with the window as its TTL and counted
    /// up until it expires, in one transaction.
    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, HotStateError> {
        let window_ms = millis(window);
        if window_ms == 0 {
            // Every event opens a window of its own.
            return Ok(1);
        }
        let counter = self.connection.keys().counter(key, window);
        let mut connection = self.connection.manager();
        let (count,): (u64,) = self
            .connection
            .call("count_in_window", async move {
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&counter)
                    .arg(0)
                    .arg("NX")
                    .arg("PX")
                    .arg(window_ms)
                    .ignore()
                    .cmd("INCR")
                    .arg(&counter)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("count_in_window", failure))?;
        Ok(count)
    }

    async fn window_add(
        &self,
        key: &str,
        member: &str,
        at_ms: i64,
        keep: Duration,
    ) -> Result<(), HotStateError> {
        let window = self.connection.keys().window(key);
        let keep_ms = millis(keep);
        let oldest = at_ms.saturating_sub(i64::try_from(keep_ms).unwrap_or(i64::MAX));
        let member = member.to_string();
        let mut connection = self.connection.manager();
        self.connection
            .call("window_add", async move {
                redis::pipe()
                    .atomic()
                    // GT: a member is held once, at its latest time.
                    .cmd("ZADD")
                    .arg(&window)
                    .arg("GT")
                    .arg(at_ms)
                    .arg(&member)
                    .ignore()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&window)
                    .arg("-inf")
                    .arg(format!("({oldest}"))
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&window)
                    .arg(keep_ms)
                    .ignore()
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("window_add", failure))
    }

    async fn window_position(
        &self,
        key: &str,
        member: &str,
        span_ms: i64,
    ) -> Result<u64, HotStateError> {
        let window = self.connection.keys().window(key);
        let member = member.to_string();
        let mut connection = self.connection.manager();
        self.connection
            .call("window_position", async move {
                WINDOW_POSITION_SCRIPT
                    .key(&window)
                    .arg(&member)
                    .arg(span_ms)
                    .invoke_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("window_position", failure))
    }

    async fn window_count(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, HotStateError> {
        if from_ms > to_ms {
            return Ok(0);
        }
        let window = self.connection.keys().window(key);
        let mut connection = self.connection.manager();
        self.connection
            .call("window_count", async move {
                redis::cmd("ZCOUNT")
                    .arg(&window)
                    .arg(from_ms)
                    .arg(to_ms)
                    .query_async(&mut connection)
                    .await
            })
            .await
            .map_err(|failure| unavailable("window_count", failure))
    }
}
