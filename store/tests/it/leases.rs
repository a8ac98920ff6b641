use std::time::Duration;

use invigil_actors::ports::LeaseStore;
use invigil_actors::shard::{Fence, ShardId};
use invigil_store::SqlStore;

use crate::support::t;

crate::conformance!(
    a_lease_is_held_by_one_node_at_a_time,
    expired_leases_move_with_a_new_epoch,
    release_lets_another_node_take_over_at_once,
    a_restarted_node_supersedes_its_previous_incarnation,
    a_dead_members_leases_are_taken_once_it_stops_renewing,
);

fn shards(numbers: &[u16]) -> Vec<ShardId> {
    numbers.iter().map(|&n| ShardId::new(n).unwrap()).collect()
}

const TTL: Duration = Duration::from_secs(10);

async fn a_lease_is_held_by_one_node_at_a_time(store: &SqlStore) {
    let all: Vec<ShardId> = ShardId::all().collect();
    let held = store
        .acquire_leases("a", &all, TTL, t(1_000))
        .await
        .unwrap();
    assert_eq!(held.len(), 1024);
    assert!(
        held.iter()
            .all(|lease| lease.epoch == 1 && lease.owner == "a")
    );
    assert!(
        store
            .acquire_leases("b", &all, TTL, t(2_000))
            .await
            .unwrap()
            .is_empty()
    );
    // Re-acquiring a valid lease of our own keeps its epoch.
    let again = store
        .acquire_leases("a", &shards(&[7]), TTL, t(3_000))
        .await
        .unwrap();
    assert_eq!((again[0].epoch, again[0].expires_at), (1, t(13_000)));
    let fences: Vec<Fence> = held
        .iter()
        .map(|l| Fence {
            shard: l.shard,
            epoch: l.epoch,
        })
        .collect();
    let renewed = store
        .renew_leases("a", &fences, TTL, t(5_000))
        .await
        .unwrap();
    assert_eq!(renewed.len(), 1024);
    assert!(
        store
            .renew_leases("b", &fences, TTL, t(5_000))
            .await
            .unwrap()
            .is_empty()
    );
    let all_leases = store.leases().await.unwrap();
    assert_eq!(all_leases.len(), 1024);
    assert!(all_leases.iter().all(|l| l.expires_at == t(15_000)));
}

async fn expired_leases_move_with_a_new_epoch(store: &SqlStore) {
    let first = store
        .acquire_leases("a", &shards(&[1, 2]), TTL, t(0))
        .await
        .unwrap();
    let taken = store
        .acquire_leases("b", &shards(&[1, 2, 3]), TTL, t(10_001))
        .await
        .unwrap();
    let mut epochs: Vec<(u16, i64, String)> = taken
        .iter()
        .map(|l| (l.shard.get(), l.epoch, l.owner.clone()))
        .collect();
    epochs.sort();
    assert_eq!(
        epochs,
        vec![(1, 2, "b".into()), (2, 2, "b".into()), (3, 1, "b".into())]
    );
    // The old owner's renewal at its old epoch fails: it must stop writing.
    let old: Vec<Fence> = first
        .iter()
        .map(|l| Fence {
            shard: l.shard,
            epoch: l.epoch,
        })
        .collect();
    assert!(
        store
            .renew_leases("a", &old, TTL, t(10_002))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn release_lets_another_node_take_over_at_once(store: &SqlStore) {
    let held = store
        .acquire_leases("a", &shards(&[5]), TTL, t(0))
        .await
        .unwrap();
    store
        .release_leases(
            "a",
            &[Fence {
                shard: held[0].shard,
                epoch: held[0].epoch,
            }],
        )
        .await
        .unwrap();
    let taken = store
        .acquire_leases("b", &shards(&[5]), TTL, t(1))
        .await
        .unwrap();
    assert_eq!((taken[0].owner.as_str(), taken[0].epoch), ("b", 2));
}

async fn a_restarted_node_supersedes_its_previous_incarnation(store: &SqlStore) {
    use invigil_actors::ports::owner_id;
    let (old, new) = (owner_id("node-1", t(900)), owner_id("node-1", t(1_000)));
    let before = store
        .acquire_leases(&old, &shards(&[9]), TTL, t(0))
        .await
        .unwrap();
    let other = owner_id("node-10", t(5_000));
    assert!(
        store
            .acquire_leases(&other, &shards(&[9]), TTL, t(1))
            .await
            .unwrap()
            .is_empty(),
        "another node waits"
    );
    let after = store
        .acquire_leases(&new, &shards(&[9]), TTL, t(1))
        .await
        .unwrap();
    assert_eq!(
        (after[0].owner.as_str(), after[0].epoch),
        (new.as_str(), before[0].epoch + 1)
    );
    // The older incarnation cannot take it back.
    assert!(
        store
            .acquire_leases(&old, &shards(&[9]), TTL, t(2))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_dead_members_leases_are_taken_once_it_stops_renewing(store: &SqlStore) {
    use invigil_actors::ports::owner_id;
    let dead = owner_id("node-2", t(100));
    let live = owner_id("node-20", t(100));
    let me = owner_id("node-1", t(100));
    let before = store
        .acquire_leases(&dead, &shards(&[11]), TTL, t(1_000))
        .await
        .unwrap();
    store
        .acquire_leases(&live, &shards(&[12]), TTL, t(1_000))
        .await
        .unwrap();
    let silent = vec!["node-2".to_string()];
    // Renewed at 1 000: not silent since 900.
    let early = store
        .take_silent_leases(&me, &shards(&[11, 12]), TTL, t(2_000), &silent, t(900))
        .await
        .unwrap();
    assert!(early.is_empty(), "renewed since: {early:?}");
    // Silent since 1 500: its shard moves with a new epoch; `node-20` (a
    // live member whose id starts alike) keeps its own.
    let taken = store
        .take_silent_leases(&me, &shards(&[11, 12]), TTL, t(2_000), &silent, t(1_500))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (taken[0].shard, taken[0].owner.as_str(), taken[0].epoch),
        (shards(&[11])[0], me.as_str(), before[0].epoch + 1)
    );
    // The dead member's renewal under its old epoch fails: it is fenced.
    let renewed = store
        .renew_leases(
            &dead,
            &[Fence {
                shard: before[0].shard,
                epoch: before[0].epoch,
            }],
            TTL,
            t(2_100),
        )
        .await
        .unwrap();
    assert!(renewed.is_empty());
}
