//! Virtual shards: every room (with its candidates) and every plan lives in
//! one of [`SHARD_COUNT`] shards, and every durable write carries the fence
//! of the shard it belongs to.
//!
//! # Layout
//! - `mod.rs`: shard ids, the stable hash and [`Fence`]
//! - `leases`: the leases this node holds and their renewal
//! - `placement`: which member owns which shard (rendezvous hashing)

pub mod leases;
pub mod placement;

use serde::{Deserialize, Serialize};

use crate::domain::{PlanId, RoomId};

/// The number of virtual shards. Fixed for the life of a cluster: changing it
/// moves every room.
pub const SHARD_COUNT: u16 = 1024;

/// One of the [`SHARD_COUNT`] virtual shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(u16);

impl ShardId {
    /// Returns the shard with this number, if it is below [`SHARD_COUNT`].
    pub fn new(number: u16) -> Option<Self> {
        (number < SHARD_COUNT).then_some(Self(number))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn all() -> impl Iterator<Item = ShardId> {
        (0..SHARD_COUNT).map(ShardId)
    }

    /// Returns the shard of a room: rooms are unique within a plan, so the
    /// plan id is part of the key.
    pub fn of_room(plan_id: &PlanId, room_id: &RoomId) -> Self {
        Self::of_key(&[plan_id.as_str().as_bytes(), room_id.as_str().as_bytes()])
    }

    /// Returns the shard of a plan's coordinator.
    pub fn of_plan(plan_id: &PlanId) -> Self {
        Self::of_key(&[plan_id.as_str().as_bytes()])
    }

    fn of_key(parts: &[&[u8]]) -> Self {
        let hash = stable_hash(parts);
        // SHARD_COUNT is a power of two below u16::MAX, so the cast is lossless.
        Self((hash % u64::from(SHARD_COUNT)) as u16)
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A hash that is the same on every node, build and version: FNV-1a over the
/// parts (each followed by a 0xff separator that cannot occur in an id),
/// finished with the splitmix64 mixer so nearby keys spread evenly.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    mix64(hash)
}

/// The splitmix64 finalizer.
pub fn mix64(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Durable writes the store refused because their epoch was stale, since
/// the process started: each one is a write a fenced-off node attempted
/// after another node took its shard (shown in `GET /api/v1/cluster`).
pub static STALE_EPOCH_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a write refused for a stale epoch.
pub fn count_stale_write() {
    STALE_EPOCH_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Writes a room refused itself because its lease had run out (it never
/// sent them): a stalled node that wakes up refuses what it was sent.
pub static SELF_FENCED_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a write refused by self-fencing.
pub fn count_self_fenced_write() {
    SELF_FENCED_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Proof of ownership carried by every durable write: the shard and the epoch
/// of the lease under which the writer hosts it. The store rejects a write
/// whose epoch is no longer the shard's current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    pub shard: ShardId,
    pub epoch: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_stable_across_builds() {
        // Pinned values: a change here moves every room of a running cluster.
        // Computed independently (Python FNV-1a + splitmix64).
        assert_eq!(stable_hash(&[b"plan-1"]), 0x12a2_f0a7_fc22_ec3c);
        let plan = PlanId::parse("plan-1").unwrap();
        assert_eq!(ShardId::of_plan(&plan).get(), 60);
        assert_eq!(
            ShardId::of_room(&plan, &RoomId::parse("room-1").unwrap()).get(),
            503
        );
    }

    #[test]
    fn rooms_spread_over_shards() {
        let plan = PlanId::parse("plan-2026").unwrap();
        let mut counts = vec![0_u32; usize::from(SHARD_COUNT)];
        for room in 0..102_400 {
            let room_id = RoomId::parse(format!("room-{room}")).unwrap();
            counts[usize::from(ShardId::of_room(&plan, &room_id).get())] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 50 && *max < 150, "uneven spread: {min}..{max}");
    }

    #[test]
    fn parts_are_separated() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }
}
