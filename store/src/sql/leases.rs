//! [`LeaseStore`] on sqlx: each operation is one statement over all the
//! shards concerned.

use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::domain::Timestamp;
use invigil_actors::error::StoreError;
use invigil_actors::ports::{Lease, LeaseStore};
use invigil_actors::shard::{Fence, ShardId};
use sqlx::{QueryBuilder, Row};

use super::{SqlStore, on_backend};
use crate::error::{corrupt, from_sqlx};

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn to_lease(
    shard: i64,
    owner: String,
    epoch: i64,
    expires_at_ms: i64,
) -> Result<Lease, StoreError> {
    let shard = u16::try_from(shard)
        .ok()
        .and_then(ShardId::new)
        .ok_or_else(|| corrupt("shard", shard))?;
    Ok(Lease {
        shard,
        owner,
        epoch,
        expires_at: Timestamp::from_millis(expires_at_ms),
    })
}

#[async_trait]
impl LeaseStore for SqlStore {
    async fn acquire_leases(
        &self,
        node_id: &str,
        shards: &[ShardId],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<Lease>, StoreError> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let expires_at = now.plus_millis(ttl_millis(ttl)).as_millis();
        on_backend!(self, pool => {
            // A lease expiring at T is free at T. Keep the epoch only when the lease
            // is ours and still valid: an expired lease may have in-flight
            // writes under the old epoch.
            let mut update = QueryBuilder::new("UPDATE shard_lease SET epoch = CASE WHEN owner = ");
            update.push_bind(node_id.to_owned());
            update.push(" AND expires_at_ms > ");
            update.push_bind(now.as_millis());
            update.push(" THEN epoch ELSE epoch + 1 END, owner = ");
            update.push_bind(node_id.to_owned());
            update.push(", expires_at_ms = ");
            update.push_bind(expires_at);
            update.push(" WHERE (expires_at_ms <= ");
            update.push_bind(now.as_millis());
            update.push(" OR owner = ");
            update.push_bind(node_id.to_owned());
            // An older incarnation of this node (same id before the '@', a
            // smaller fixed-width generation after it) is superseded at once;
            // the epoch bump fences it if it still lives. A newer one is not.
            if let Some((stable_id, _)) = node_id.split_once('@') {
                update.push(" OR (substr(owner, 1, ");
                update.push_bind(i32::try_from(stable_id.len() + 1).unwrap_or(i32::MAX));
                update.push(") = ");
                update.push_bind(format!("{stable_id}@"));
                update.push(" AND owner < ");
                update.push_bind(node_id.to_owned());
                update.push(")");
            }
            update.push(") AND shard IN (");
            let mut list = update.separated(", ");
            for shard in shards {
                list.push_bind(i64::from(shard.get()));
            }
            update.push(") RETURNING shard, owner, epoch, expires_at_ms");
            update
                .build()
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| to_lease(row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect()
        })
    }

    async fn take_silent_leases(
        &self,
        node_id: &str,
        shards: &[ShardId],
        ttl: Duration,
        now: Timestamp,
        silent: &[String],
        renewed_before: Timestamp,
    ) -> Result<Vec<Lease>, StoreError> {
        if shards.is_empty() || silent.is_empty() {
            return Ok(Vec::new());
        }
        let expires_at = now.plus_millis(ttl_millis(ttl)).as_millis();
        let stale = renewed_before.plus_millis(ttl_millis(ttl)).as_millis();
        on_backend!(self, pool => {
            let mut update = QueryBuilder::new("UPDATE shard_lease SET epoch = epoch + 1, owner = ");
            update.push_bind(node_id.to_owned());
            update.push(", expires_at_ms = ");
            update.push_bind(expires_at);
            update.push(" WHERE expires_at_ms <= ");
            update.push_bind(stale);
            update.push(" AND (");
            let mut owners = update.separated(" OR ");
            for stable_id in silent {
                let prefix = format!("{stable_id}@");
                owners.push("substr(owner, 1, ");
                owners.push_bind_unseparated(i32::try_from(prefix.len()).unwrap_or(i32::MAX));
                owners.push_unseparated(") = ");
                owners.push_bind_unseparated(prefix);
            }
            update.push(") AND shard IN (");
            let mut list = update.separated(", ");
            for shard in shards {
                list.push_bind(i64::from(shard.get()));
            }
            update.push(") RETURNING shard, owner, epoch, expires_at_ms");
            update
                .build()
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| to_lease(row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect()
        })
    }

    async fn renew_leases(
        &self,
        node_id: &str,
        held: &[Fence],
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Vec<ShardId>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let expires_at = now.plus_millis(ttl_millis(ttl)).as_millis();
        let renewed: Vec<i64> = on_backend!(self, pool => {
            let mut update = QueryBuilder::new("UPDATE shard_lease SET expires_at_ms = ");
            update.push_bind(expires_at);
            update.push(" WHERE owner = ");
            update.push_bind(node_id.to_owned());
            update.push(" AND (shard, epoch) IN (VALUES ");
            let mut list = update.separated(", ");
            for fence in held {
                list.push("(");
                list.push_bind_unseparated(i64::from(fence.shard.get()));
                list.push_unseparated(", ");
                list.push_bind_unseparated(fence.epoch);
                list.push_unseparated(")");
            }
            update.push(") RETURNING shard");
            update
                .build()
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| row.get(0))
                .collect()
        });
        renewed
            .into_iter()
            .map(|shard| {
                u16::try_from(shard)
                    .ok()
                    .and_then(ShardId::new)
                    .ok_or_else(|| corrupt("shard", shard))
            })
            .collect()
    }

    async fn release_leases(&self, node_id: &str, held: &[Fence]) -> Result<(), StoreError> {
        if held.is_empty() {
            return Ok(());
        }
        on_backend!(self, pool => {
            let mut update = QueryBuilder::new("UPDATE shard_lease SET expires_at_ms = 0 WHERE owner = ");
            update.push_bind(node_id.to_owned());
            update.push(" AND (shard, epoch) IN (VALUES ");
            let mut list = update.separated(", ");
            for fence in held {
                list.push("(");
                list.push_bind_unseparated(i64::from(fence.shard.get()));
                list.push_unseparated(", ");
                list.push_bind_unseparated(fence.epoch);
                list.push_unseparated(")");
            }
            update.push(")");
            update.build().execute(pool).await.map_err(from_sqlx)?;
            Ok(())
        })
    }

    async fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        on_backend!(self, pool => {
            sqlx::query("SELECT shard, owner, epoch, expires_at_ms FROM shard_lease ORDER BY shard")
                .fetch_all(pool)
                .await
                .map_err(from_sqlx)?
                .into_iter()
                .map(|row| to_lease(row.get(0), row.get(1), row.get(2), row.get(3)))
                .collect()
        })
    }
}
