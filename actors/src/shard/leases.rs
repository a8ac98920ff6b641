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
use crate::ports::{Clock, LeaseStore, StoreError};

#[derive(Clone, Copy, Debug)]
struct HeldLease {
    epoch: i64,
    /// Until when this node may write under the lease, by its own clock.
    usable_until: Timestamp,
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
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn ttl_millis(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Returns the fence to write `shard` under, if this node holds it now.
    pub fn fence(&self, shard: ShardId) -> Option<Fence> {
        let now = self.clock.now();
        let held = self
            .held
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.get(&shard)
            .filter(|lease| lease.usable_until > now)
            .map(|lease| Fence {
                shard,
                epoch: lease.epoch,
            })
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
            .filter(|(_, lease)| lease.usable_until > now)
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
        let sent_at = self.clock.now();
        let leases = self
            .store
            .acquire_leases(&self.node_id, shards, self.ttl, sent_at)
            .await?;
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
                },
            );
        }
        if !leases.is_empty() {
            info!(node_id = %self.node_id, acquired = leases.len(), asked = shards.len(), "shard leases acquired");
        }
        Ok(leases.len())
    }

    /// Renews every held lease in one statement; drops the ones lost.
    pub async fn renew(&self) -> Result<(), StoreError> {
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
        let renewed = self
            .store
            .renew_leases(&self.node_id, &fences, self.ttl, sent_at)
            .await?;
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
        if lost > 0 {
            warn!(node_id = %self.node_id, lost, "shard leases lost at renewal");
        }
        Ok(())
    }

    /// Renews every `ttl / 3` until `shutdown` turns true, and takes desired
    /// shards that are missing. A failed renewal is retried at the next tick;
    /// leases simply become unusable when their validity runs out.
    pub async fn run_renewal(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period = (self.ttl / 3).max(Duration::from_millis(50));
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
            fences
        };
        if fences.is_empty() {
            return Ok(());
        }
        self.store.release_leases(&self.node_id, &fences).await
    }
}
