//! In-process adapters for embedded mode: [`MemoryHotState`] and
//! [`MemoryWorkQueue`] (in `memory/queue.rs`). Everything lives in this
//! process and is lost with it — exactly the contract of the hot state (a lost
//! resume buffer costs a full snapshot, never an answer) and of unconsumed
//! work (acknowledged answers are in the durable store, not in the queue).

mod queue;

pub use queue::{DEFAULT_RETAINED_DEAD_LETTERS, DEFAULT_RETAINED_ENTRIES, MemoryWorkQueue};

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use invigil_actors::ports::{
    CandidateKey, HotState, HotStateError, OutboundFrame, ResumePosition, SessionClaim,
};

/// Independent locks, so rooms on different cores rarely contend.
const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    buffers: HashMap<CandidateKey, VecDeque<OutboundFrame>>,
    sessions: HashMap<CandidateKey, SessionClaim>,
    snapshots: HashMap<String, (Vec<u8>, Instant)>,
    counters: HashMap<String, (u64, Instant)>,
    /// Time-ordered sets: member → time (ms), and when the set expires.
    windows: HashMap<String, (HashMap<String, i64>, Instant)>,
}

/// The hot state of one process.
pub struct MemoryHotState {
    /// Std mutexes: each held only for map operations, never across an await.
    shards: Vec<Mutex<Shard>>,
}

impl Default for MemoryHotState {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl MemoryHotState {
    fn shard<K: Hash + ?Sized>(&self, key: &K) -> std::sync::MutexGuard<'_, Shard> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl HotState for MemoryHotState {
    async fn append_outbound(
        &self,
        frames: &[(CandidateKey, OutboundFrame)],
        cap: usize,
    ) -> Result<(), HotStateError> {
        for (key, frame) in frames {
            let mut shard = self.shard(key);
            let buffer = shard.buffers.entry(key.clone()).or_default();
            if buffer.back().is_some_and(|newest| frame.seq <= newest.seq) {
                if buffer.contains(frame) {
                    // A retried append: the frame is held already.
                    continue;
                }
                // A numbering that started over (a room re-activated without
                // its last seq): the held frames are not its past.
                buffer.clear();
            }
            buffer.push_back(frame.clone());
            while buffer.len() > cap.max(1) {
                buffer.pop_front();
            }
        }
        Ok(())
    }

    async fn last_outbound_seq(&self, key: &CandidateKey) -> Result<u64, HotStateError> {
        Ok(self
            .shard(key)
            .buffers
            .get(key)
            .and_then(|buffer| buffer.back())
            .map_or(0, |frame| frame.seq))
    }

    async fn resume_positions(
        &self,
        keys: &[CandidateKey],
    ) -> Result<Vec<ResumePosition>, HotStateError> {
        let mut positions = Vec::with_capacity(keys.len());
        for key in keys {
            positions.push(ResumePosition {
                last_seq: self.last_outbound_seq(key).await?,
                session: self.session(key).await?,
            });
        }
        Ok(positions)
    }

    async fn outbound_after(
        &self,
        key: &CandidateKey,
        after_seq: u64,
    ) -> Result<Option<Vec<OutboundFrame>>, HotStateError> {
        let shard = self.shard(key);
        let buffer = shard.buffers.get(key);
        let newest = buffer
            .and_then(|buffer| buffer.back())
            .map(|frame| frame.seq);
        let missed = buffer
            .into_iter()
            .flatten()
            .filter(|frame| frame.seq > after_seq)
            .cloned()
            .collect();
        Ok(crate::resume::replay(after_seq, newest, missed))
    }

    async fn swap_session(
        &self,
        key: &CandidateKey,
        claim: SessionClaim,
    ) -> Result<Option<SessionClaim>, HotStateError> {
        Ok(self.shard(key).sessions.insert(key.clone(), claim))
    }

    async fn session(&self, key: &CandidateKey) -> Result<Option<SessionClaim>, HotStateError> {
        Ok(self.shard(key).sessions.get(key).cloned())
    }

    async fn put_snapshot(
        &self,
        key: &str,
        snapshot: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), HotStateError> {
        self.shard(key)
            .snapshots
            .insert(key.to_string(), (snapshot, Instant::now() + ttl));
        Ok(())
    }

    async fn snapshot(&self, key: &str) -> Result<Option<Vec<u8>>, HotStateError> {
        let mut shard = self.shard(key);
        match shard.snapshots.get(key) {
            Some((_, expires)) if *expires <= Instant::now() => {
                shard.snapshots.remove(key);
                Ok(None)
            }
            Some((snapshot, _)) => Ok(Some(snapshot.clone())),
            None => Ok(None),
        }
    }

    async fn window_add(
        &self,
        key: &str,
        member: &str,
        at_ms: i64,
        keep: Duration,
    ) -> Result<(), HotStateError> {
        let mut shard = self.shard(key);
        let now = Instant::now();
        let (members, expires) = shard
            .windows
            .entry(key.to_string())
            .or_insert_with(|| (HashMap::new(), now + keep));
        if *expires <= now {
            members.clear();
        }
        *expires = now + keep;
        let oldest = at_ms.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        members.retain(|_, at| *at >= oldest);
        let at = members.entry(member.to_string()).or_insert(at_ms);
        *at = (*at).max(at_ms);
        Ok(())
    }

    async fn window_position(
        &self,
        key: &str,
        member: &str,
        span_ms: i64,
    ) -> Result<u64, HotStateError> {
        let shard = self.shard(key);
        let Some((members, expires)) = shard.windows.get(key) else {
            return Ok(0);
        };
        if *expires <= Instant::now() {
            return Ok(0);
        }
        let Some(&at) = members.get(member) else {
            return Ok(0);
        };
        Ok(members
            .iter()
            .filter(|(other, other_at)| {
                **other_at > at - span_ms && (**other_at, other.as_str()) <= (at, member)
            })
            .count() as u64)
    }

    async fn window_count(
        &self,
        key: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<u64, HotStateError> {
        let shard = self.shard(key);
        Ok(match shard.windows.get(key) {
            Some((members, expires)) if *expires > Instant::now() => members
                .values()
                .filter(|at| (from_ms..=to_ms).contains(*at))
                .count()
                as u64,
            _ => 0,
        })
    }

    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, HotStateError> {
        let mut shard = self.shard(key);
        let now = Instant::now();
        let entry = shard
            .counters
            .entry(key.to_string())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(entry.0)
    }
}

/// Forgets a candidate's resume buffer (e.g. after their exam ended).
impl MemoryHotState {
    pub fn forget(&self, key: &CandidateKey) {
        let mut shard = self.shard(key);
        shard.buffers.remove(key);
        shard.sessions.remove(key);
    }
}
