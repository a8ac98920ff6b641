//! The shard leases this node holds. A lease is usable only while it is
//! certainly still ours: the keeper counts its validity from the moment it
//! *sent* the last successful renewal, so a node that cannot renew stops
//! writing before anyone else may take the shard over (self-fencing).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Fence, ShardId};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::ports::{Clock, LeaseStore, StoreError};

#[derive(Clone, Copy, Debug)]
struct HeldLease {
    epoch: i64,
    /// Until when this node may write under the lease, by its own clock.
    usable_until: Timestamp,
    /// Being handed off: still held (writes in flight commit under it) but
    /// usable for nothing new.
    releasing: bool,
}

impl HeldLease {
    fn usable(&self, now: Timestamp) -> bool {
        self.usable_until > now && !self.releasing
    }
}

/// The leases held by this node and their renewal.
pub struct LeaseKeeper {
    node_id: String,
    store: Arc<dyn LeaseStore>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    /// Held leases. A std lock: only read and written without awaiting.
    held: RwLock<HashMap<ShardId, HeldLease>>,
    /// The shards this node should host; missing ones are taken when free.
    /// A std lock: never held across an await.
    desired: RwLock<Vec<ShardId>>,
    /// One store call at a time: a renewal that overlaps an acquisition
    /// could otherwise read fences the acquisition is about to replace and
    /// drop leases it just took.
    store_calls: tokio::sync::Mutex<()>,
    /// Members gossip declared dead while this node holds a majority
    /// (stable ids): their leases are taken once they stop renewing,
    /// without waiting for them to run out ([`Self::silence`]).
    silent: RwLock<Vec<String>>,
    /// Shards owned, hand-offs, renewal time.
    metrics: Metrics,
}

impl LeaseKeeper {
    pub fn new(
        node_id: impl Into<String>,
        store: Arc<dyn LeaseStore>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self {
            node_id: node_id.into(),
            store,
            clock,
            ttl,
            held: RwLock::new(HashMap::new()),
            desired: RwLock::new(Vec::new()),
            store_calls: tokio::sync::Mutex::new(()),
            silent: RwLock::new(Vec::new()),
            metrics: Metrics::noop(),
        }
    }

    /// Records to `metrics` (`invigil_shards_owned`, hand-offs, renewals).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Publishes how many leases are held now.
    fn count_held(&self, held: &HashMap<ShardId, HeldLease>) {
        self.metrics.set_shards_owned(held.len());
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// How often held leases are renewed: a third of the TTL, at most
    /// every 500 ms, so that a live owner is never silent for long.
    pub fn renew_period(&self) -> Duration {
        (self.ttl / 3)
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(50))
    }

    /// How long an owner gossip declared dead must have gone without
    /// renewing before its leases are taken: three renewal periods (a
    /// renewal that is slow once, or clocks a little apart, do not count).
    pub fn silence(&self) -> Duration {
        self.renew_period() * 3
    }

    /// The members gossip declares dead now (stable node ids); empty while
    /// this node does not hold a majority.
    pub fn set_silent(&self, members: Vec<String>) {
        *self
            .silent
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = members;
    }

    fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns the fence to write `shard` under, if this node holds it now
    /// (and is not handing it off).
    pub fn fence(&self, shard: ShardId) -> Option<Fence> {
        let now = self.clock.now();
        let held = self
            .held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.get(&shard)
            .filter(|lease| lease.usable(now))
            .map(|lease| Fence {
                shard,
                epoch: lease.epoch,
            })
    }

    /// Every shard whose lease is held, usable or not (hand-offs included).
    pub fn held_shards(&self) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = self
            .held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .copied()
            .collect();
        shards.sort();
        shards
    }

    /// Starts handing `shards` off: nothing new may use them (activations,
    /// writes), while the leases stay held until [`Self::release`]. Shards
    /// not listed that were being handed off are kept after all.
    pub fn set_releasing(&self, shards: &std::collections::HashSet<ShardId>) {
        let mut held = self
            .held
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (shard, lease) in held.iter_mut() {
            lease.releasing = shards.contains(shard);
        }
    }

    /// Returns the fences of every usable lease.
    pub fn fences(&self) -> Vec<Fence> {
        let now = self.clock.now();
        let held = self
            .held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut fences: Vec<Fence> = held
            .iter()
            .filter(|(_, lease)| lease.usable(now))
            .map(|(&shard, lease)| Fence {
                shard,
                epoch: lease.epoch,
            })
            .collect();
        fences.sort_by_key(|fence| fence.shard);
        fences
    }

    pub fn held_count(&self) -> usize {
        self.fences().len()
    }

    /// Sets the shards this node should host and takes the free ones now;
    /// returns how many of them are held.
    pub async fn host(&self, shards: Vec<ShardId>) -> Result<usize, StoreError> {
        *self
            .desired
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = shards.clone();
        self.acquire(&shards).await
    }

    /// Takes the desired shards not held now (e.g. lost at a renewal, or
    /// held by a node whose lease since expired).
    pub async fn acquire_missing(&self) -> Result<usize, StoreError> {
        let missing: Vec<ShardId> = {
            let desired = self
                .desired
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let held = self
                .held
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            desired
                .iter()
                .filter(|shard| !held.contains_key(shard))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return Ok(0);
        }
        self.acquire(&missing).await
    }

    /// Takes the given shards where possible; returns how many are now held.
    pub async fn acquire(&self, shards: &[ShardId]) -> Result<usize, StoreError> {
        let _one_at_a_time = self.store_calls.lock().await;
        // Taken meanwhile by a call that held the lock: nothing to ask.
        let shards: Vec<ShardId> = {
            let held = self
                .held
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = self.clock.now();
            shards
                .iter()
                .filter(|shard| {
                    held.get(shard)
                        .is_none_or(|lease| lease.usable_until <= now)
                })
                .copied()
                .collect()
        };
        if shards.is_empty() {
            return Ok(0);
        }
        let shards = shards.as_slice();
        let sent_at = self.clock.now();
        let leases = self
            .store
            .acquire_leases(&self.node_id, shards, self.ttl, sent_at)
            .await?;
        let mut leases = leases;
        let silent = self
            .silent
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if !silent.is_empty() && leases.len() < shards.len() {
            let rest: Vec<ShardId> = shards
                .iter()
                .filter(|shard| !leases.iter().any(|lease| lease.shard == **shard))
                .copied()
                .collect();
            let silence = i64::try_from(self.silence().as_millis()).unwrap_or(i64::MAX);
            let taken = self
                .store
                .take_silent_leases(
                    &self.node_id,
                    &rest,
                    self.ttl,
                    sent_at,
                    &silent,
                    sent_at.plus_millis(-silence),
                )
                .await?;
            if !taken.is_empty() {
                info!(node_id = %self.node_id, taken = taken.len(), silent = ?silent, "shard leases taken from members declared dead");
            }
            leases.extend(taken);
        }
        let usable_until = sent_at.plus_millis(self.ttl_millis());
        let mut held = self
            .held
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for lease in &leases {
            held.insert(
                lease.shard,
                HeldLease {
                    epoch: lease.epoch,
                    usable_until,
                    releasing: false,
                },
            );
        }
        self.count_held(&held);
        // Epoch 1 is a shard nobody held before; a later epoch was taken
        // from an earlier owner (another node, or this node's previous run).
        let fresh = leases.iter().filter(|lease| lease.epoch <= 1).count() as u64;
        self.metrics.shard_handoff("acquired", fresh);
        self.metrics
            .shard_handoff("taken_over", leases.len() as u64 - fresh);
        if !leases.is_empty() {
            info!(node_id = %self.node_id, acquired = leases.len(), asked = shards.len(), "shard leases acquired");
        }
        Ok(leases.len())
    }

    /// Renews every held lease in one statement; drops the ones lost.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.store_calls.lock().await;
        let fences = {
            let held = self
                .held
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            held.iter()
                .map(|(&shard, lease)| Fence {
                    shard,
                    epoch: lease.epoch,
                })
                .collect::<Vec<_>>()
        };
        if fences.is_empty() {
            return Ok(());
        }
        let sent_at = self.clock.now();
        let started = std::time::Instant::now();
        let renewed = self
            .store
            .renew_leases(&self.node_id, &fences, self.ttl, sent_at)
            .await;
        self.metrics.lease_renewed(started.elapsed());
        let renewed = renewed?;
        let usable_until = sent_at.plus_millis(self.ttl_millis());
        let mut held = self
            .held
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut lost = 0;
        held.retain(|shard, _| {
            let kept = renewed.contains(shard);
            lost += usize::from(!kept);
            kept
        });
        for shard in renewed {
            if let Some(lease) = held.get_mut(&shard) {
                lease.usable_until = usable_until;
            }
        }
        self.count_held(&held);
        self.metrics.shard_handoff("lost", lost as u64);
        if lost > 0 {
            warn!(node_id = %self.node_id, lost, "shard leases lost at renewal");
        }
        Ok(())
    }

    /// Renews every [`Self::renew_period`] until `shutdown` turns true, and
    /// takes desired shards that are missing. A failed renewal is retried at
    /// the next tick; leases simply become unusable when their validity runs
    /// out.
    pub async fn run_renewal(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period = self.renew_period();
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(error) = self.renew().await {
                        warn!(node_id = %self.node_id, %error, "shard lease renewal failed");
                    }
                    if let Err(error) = self.acquire_missing().await {
                        warn!(node_id = %self.node_id, %error, "taking missing shards failed");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
    }

    /// The shards this node should host.
    pub fn desired(&self) -> Vec<ShardId> {
        self.desired
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets the shards this node should host without taking any now.
    pub fn set_desired(&self, shards: Vec<ShardId>) {
        *self
            .desired
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = shards;
    }

    /// Whether every desired shard is held (and usable) now.
    pub fn holds_desired(&self) -> bool {
        let desired = self.desired();
        let now = self.clock.now();
        let held = self
            .held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        desired.iter().all(|shard| {
            held.get(shard)
                .is_some_and(|lease| lease.usable_until > now)
        })
    }

    /// Stops using the given shards at once and gives their leases back, so
    /// their new owner takes them without waiting for the TTL (hand-off).
    pub async fn release(&self, shards: &[ShardId]) -> Result<(), StoreError> {
        let _one_at_a_time = self.store_calls.lock().await;
        let fences = {
            let mut held = self
                .held
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let fences = shards
                .iter()
                .filter_map(|shard| {
                    held.remove(shard).map(|lease| Fence {
                        shard: *shard,
                        epoch: lease.epoch,
                    })
                })
                .collect::<Vec<_>>();
            self.count_held(&held);
            fences
        };
        self.metrics.shard_handoff("released", fences.len() as u64);
        if fences.is_empty() {
            return Ok(());
        }
        info!(node_id = %self.node_id, released = fences.len(), "shard leases handed off");
        self.store.release_leases(&self.node_id, &fences).await
    }

    /// Stops using every lease without telling the store (a node that lost
    /// its majority: the leases run out and the majority's nodes take them).
    pub fn abandon_all(&self) {
        let mut held = self
            .held
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.metrics.shard_handoff("lost", held.len() as u64);
        held.clear();
        self.count_held(&held);
    }

    /// Gives every lease back so another node can take the shards at once.
    pub async fn release_all(&self) -> Result<(), StoreError> {
        let fences = {
            let mut held = self
                .held
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let fences = held
                .iter()
                .map(|(&shard, lease)| Fence {
                    shard,
                    epoch: lease.epoch,
                })
                .collect::<Vec<_>>();
            held.clear();
            self.count_held(&held);
            fences
        };
        self.metrics.shard_handoff("released", fences.len() as u64);
        if fences.is_empty() {
            return Ok(());
        }
        self.store.release_leases(&self.node_id, &fences).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::ports::{Lease, ManualClock};

    /// A lease table in memory whose every call can be made to fail, like an
    /// unreachable database.
    #[derive(Default)]
    struct FlakyLeases {
        down: AtomicBool,
        /// shard → (owner, epoch, expires_at). A std mutex: never held across an await.
        rows: Mutex<HashMap<ShardId, (String, i64, Timestamp)>>,
    }

    impl FlakyLeases {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                Err(StoreError::Unavailable("down".into()))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl LeaseStore for FlakyLeases {
        async fn acquire_leases(
            &self,
            node: &str,
            shards: &[ShardId],
            ttl: Duration,
            now: Timestamp,
        ) -> Result<Vec<Lease>, StoreError> {
            self.check()?;
            let mut rows = self.rows.lock().unwrap();
            let expires_at = now.plus_millis(ttl.as_millis() as i64);
            let mut taken = Vec::new();
            for &shard in shards {
                let row =
                    rows.entry(shard)
                        .or_insert((String::new(), 0, Timestamp::from_millis(0)));
                if row.2 <= now || row.0 == node {
                    let epoch = if row.0 == node && row.2 > now {
                        row.1
                    } else {
                        row.1 + 1
                    };
                    *row = (node.to_string(), epoch, expires_at);
                    taken.push(Lease {
                        shard,
                        owner: node.to_string(),
                        epoch,
                        expires_at,
                    });
                }
            }
            Ok(taken)
        }

        async fn renew_leases(
            &self,
            node: &str,
            held: &[Fence],
            ttl: Duration,
            now: Timestamp,
        ) -> Result<Vec<ShardId>, StoreError> {
            self.check()?;
            let mut rows = self.rows.lock().unwrap();
            Ok(held
                .iter()
                .filter_map(|fence| {
                    let row = rows.get_mut(&fence.shard)?;
                    (row.0 == node && row.1 == fence.epoch).then(|| {
                        row.2 = now.plus_millis(ttl.as_millis() as i64);
                        fence.shard
                    })
                })
                .collect())
        }

        async fn release_leases(&self, _node: &str, _held: &[Fence]) -> Result<(), StoreError> {
            self.check()
        }

        async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
            self.check()?;
            Ok(Vec::new())
        }
    }

    fn shard(n: u16) -> ShardId {
        ShardId::new(n).unwrap()
    }

    #[tokio::test]
    async fn a_node_that_cannot_renew_stops_writing_and_recovers_after() {
        let store = Arc::new(FlakyLeases::default());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let keeper = LeaseKeeper::new("a@1", store.clone(), clock.clone(), Duration::from_secs(9));
        assert_eq!(keeper.host(vec![shard(1), shard(2)]).await.unwrap(), 2);
        let fence = keeper.fence(shard(1)).expect("held");

        // The database goes away: renewals fail, the leases run out.
        store.down.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(3));
        assert!(keeper.renew().await.is_err());
        assert_eq!(
            keeper.fence(shard(1)),
            Some(fence),
            "still valid within the TTL"
        );
        clock.advance(Duration::from_secs(6));
        assert_eq!(
            keeper.fence(shard(1)),
            None,
            "self-fenced once the TTL ran out"
        );
        assert_eq!(keeper.held_count(), 0);

        // It comes back before anyone else took the shards: same epoch, usable again.
        store.down.store(false, Ordering::SeqCst);
        keeper.renew().await.unwrap();
        assert_eq!(keeper.fence(shard(1)), Some(fence));
    }

    #[tokio::test]
    async fn a_lease_taken_over_is_dropped_and_taken_back_when_free() {
        let store = Arc::new(FlakyLeases::default());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000_000)));
        let keeper = LeaseKeeper::new("a@1", store.clone(), clock.clone(), Duration::from_secs(9));
        keeper.host(vec![shard(1)]).await.unwrap();
        let old = keeper.fence(shard(1)).unwrap();

        // Stalled past the TTL; another node takes the shard.
        clock.advance(Duration::from_secs(10));
        store
            .acquire_leases("b@1", &[shard(1)], Duration::from_secs(9), clock.now())
            .await
            .unwrap();
        keeper.renew().await.unwrap();
        assert_eq!(keeper.fence(shard(1)), None, "lost at renewal");
        assert_eq!(keeper.acquire_missing().await.unwrap(), 0, "not free yet");

        // The other node's lease expires: the keeper takes it back with a new epoch.
        clock.advance(Duration::from_secs(10));
        assert_eq!(keeper.acquire_missing().await.unwrap(), 1);
        let new = keeper.fence(shard(1)).unwrap();
        assert!(new.epoch > old.epoch + 1, "{new:?} after {old:?}");
    }
}
