//! Shard leases with fencing epochs.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::Timestamp;
use crate::error::StoreError;
use crate::shard::{Fence, ShardId};

/// The lease owner of one process of a node: its stable id and its
/// generation (start time in ms), zero-padded so that owners of one node
/// order by generation as text.
pub fn owner_id(node_id: &str, generation: Timestamp) -> String {
    format!("{node_id}@{:015}", generation.as_millis().max(0))
}

/// A shard lease as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub shard: ShardId,
    pub owner: String,
    pub epoch: i64,
    pub expires_at: Timestamp,
}

/// Shard leases with fencing epochs. Acquiring a lease bumps its epoch; every
/// write under an older epoch is rejected from then on.
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes every shard of `shards` whose lease expired, is already ours, or
    /// belongs to an earlier incarnation of this node, in one statement.
    /// `node_id` is `<stable id>@<generation>` with a fixed-width generation
    /// (see [`owner_id`]); an owner with the same stable id and a smaller
    /// generation is a previous process of this node. Returns
    /// the leases now held (with new epochs for the ones taken over).
    async fn acquire_leases(
        &self,
        node_id: &str,
        shards: &[ShardId],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError>;

    /// Takes every shard of `shards` held by a member gossip declared dead
    /// (`silent`: stable node ids, the part before the '@') that has not
    /// renewed its lease since `renewed_before` (its lease, of length
    /// `ttl`, expires at or before `renewed_before + ttl`), without waiting
    /// for the lease to run out; the new epoch fences any write the silent
    /// owner still makes. A live owner renews often, so its leases are
    /// never taken this way. The default takes nothing.
    async fn take_silent_leases(
        &self,
        node_id: &str,
        shards: &[ShardId],
        ttl: Duration,
        now: Timestamp,
        silent: &[String],
        renewed_before: Timestamp,
    ) -> Result<Vec<Lease>, StoreError> {
        let _ = (node_id, shards, ttl, now, silent, renewed_before);
        Ok(Vec::new())
    }

    /// Extends the leases still held at the given epochs, in one statement.
    /// Returns the shards renewed; a missing one was lost.
    async fn renew_leases(
        &self,
        node_id: &str,
        held: &[Fence],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<ShardId>, StoreError>;

    /// Gives leases up (expires them now) so another node may take them at once.
    async fn release_leases(&self, node_id: &str, held: &[Fence]) -> Result<(), StoreError>;

    /// Every lease, for the cluster view.
    async fn leases(&self) -> Result<Vec<Lease>, StoreError>;
}
