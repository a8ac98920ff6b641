//! The work-queue conformance cases. Each runs against every `WorkQueue`
//! adapter — in process and on Redis Streams (a fresh key prefix per test) —
//! so embedded and cluster mode keep one behaviour.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use invigil_actors::ports::{WorkItem, WorkQueue};
use invigil_store::{RedisOptions, RedisWorkQueue};

use crate::redis_support::TestRedis;

const TOPIC: &str = "logs";
const SHORT: Duration = Duration::from_millis(150);

/// Declares each listed case once per adapter.
macro_rules! work_queue_cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&invigil_store::MemoryWorkQueue::default()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = crate::redis_support::TestRedis::new().await;
                    super::$case(&redis.work_queue()).await;
                }
            )*
        }
    };
}

work_queue_cases!(
    published_items_are_fetched_once_and_acked,
    consumers_of_one_group_never_share_an_item,
    every_group_gets_every_item,
    an_unacked_item_is_reclaimed_after_min_idle,
    dead_letters_are_parked_inspected_and_replayed,
    a_fetch_waits_for_new_items_and_no_longer,
);

fn payloads(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|n| format!("item-{n}").into_bytes()).collect()
}

fn texts(items: &[WorkItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| String::from_utf8(item.payload.clone()).unwrap())
        .collect()
}

fn ids(items: &[WorkItem]) -> Vec<String> {
    items.iter().map(|item| item.id.clone()).collect()
}

pub async fn published_items_are_fetched_once_and_acked(queue: &dyn WorkQueue) {
    queue.publish(TOPIC, &payloads(0..3)).await.unwrap();
    let items = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
    assert_eq!(
        texts(&items),
        vec!["item-0", "item-1", "item-2"],
        "in order"
    );
    assert!(items.iter().all(|item| item.deliveries == 1));
    queue.ack(TOPIC, "g", &ids(&items)).await.unwrap();

    assert!(
        queue
            .fetch(TOPIC, "g", "c1", 10, SHORT)
            .await
            .unwrap()
            .is_empty(),
        "nothing new"
    );
    assert!(
        queue
            .reclaim(TOPIC, "g", "c2", Duration::ZERO, 10)
            .await
            .unwrap()
            .is_empty(),
        "acked items are not delivered again"
    );
    // Acking again, or acking ids that never were, is harmless.
    queue.ack(TOPIC, "g", &ids(&items)).await.unwrap();
    queue
        .ack(TOPIC, "g", &["not-an-id".to_string()])
        .await
        .unwrap();
    assert!(queue.publish(TOPIC, &[]).await.is_ok());
    assert!(
        queue
            .fetch(TOPIC, "g", "c1", 0, SHORT)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn consumers_of_one_group_never_share_an_item(queue: &dyn WorkQueue) {
    // Both consumers wait while the items arrive.
    let publish = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        queue.publish(TOPIC, &payloads(0..20)).await.unwrap();
    };
    let (first, second, ()) = tokio::join!(
        queue.fetch(TOPIC, "g", "c1", 7, Duration::from_secs(2)),
        queue.fetch(TOPIC, "g", "c2", 7, Duration::from_secs(2)),
        publish,
    );
    let mut delivered = [first.unwrap(), second.unwrap()];
    // Then they drain the rest, turn by turn.
    loop {
        let a = queue.fetch(TOPIC, "g", "c1", 3, SHORT).await.unwrap();
        let b = queue.fetch(TOPIC, "g", "c2", 3, SHORT).await.unwrap();
        if a.is_empty() && b.is_empty() {
            break;
        }
        delivered[0].extend(a);
        delivered[1].extend(b);
    }
    let by_c1: HashSet<String> = texts(&delivered[0]).into_iter().collect();
    let by_c2: HashSet<String> = texts(&delivered[1]).into_iter().collect();
    assert!(by_c1.is_disjoint(&by_c2), "{by_c1:?} / {by_c2:?}");
    assert_eq!(by_c1.len() + by_c2.len(), 20, "every item once");
    assert_eq!(delivered[0].len() + delivered[1].len(), 20);
}

pub async fn every_group_gets_every_item(queue: &dyn WorkQueue) {
    queue.publish(TOPIC, &payloads(0..5)).await.unwrap();
    let logs = queue.fetch(TOPIC, "logs", "c1", 10, SHORT).await.unwrap();
    let rules = queue.fetch(TOPIC, "rules", "c1", 10, SHORT).await.unwrap();
    assert_eq!(texts(&logs), texts(&rules));
    assert_eq!(logs.len(), 5);
    queue.ack(TOPIC, "logs", &ids(&logs)).await.unwrap();
    // One group's ack is not the other's.
    let pending = queue
        .reclaim(TOPIC, "rules", "c2", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(texts(&pending), texts(&rules));
    // Another topic is another queue.
    assert!(
        queue
            .fetch("stats", "logs", "c1", 10, SHORT)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn an_unacked_item_is_reclaimed_after_min_idle(queue: &dyn WorkQueue) {
    let min_idle = Duration::from_millis(300);
    queue.publish(TOPIC, &payloads(0..1)).await.unwrap();
    let taken = queue.fetch(TOPIC, "g", "dies", 10, SHORT).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        queue
            .reclaim(TOPIC, "g", "survivor", min_idle, 10)
            .await
            .unwrap()
            .is_empty(),
        "not idle long enough"
    );
    tokio::time::sleep(min_idle + Duration::from_millis(100)).await;
    let reclaimed = queue
        .reclaim(TOPIC, "g", "survivor", min_idle, 10)
        .await
        .unwrap();
    assert_eq!(ids(&reclaimed), ids(&taken));
    assert_eq!(reclaimed[0].payload, taken[0].payload);
    assert_eq!(reclaimed[0].deliveries, 2);
    assert!(
        queue
            .reclaim(TOPIC, "g", "third", min_idle, 10)
            .await
            .unwrap()
            .is_empty(),
        "the survivor holds it now: idle again from zero"
    );
    queue.ack(TOPIC, "g", &ids(&reclaimed)).await.unwrap();
    tokio::time::sleep(min_idle + Duration::from_millis(100)).await;
    assert!(
        queue
            .reclaim(TOPIC, "g", "third", min_idle, 10)
            .await
            .unwrap()
            .is_empty(),
        "acked"
    );
}

pub async fn dead_letters_are_parked_inspected_and_replayed(queue: &dyn WorkQueue) {
    queue.publish(TOPIC, &payloads(0..2)).await.unwrap();
    let items = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
    assert_eq!(items.len(), 2);
    let poison = &items[0];
    queue
        .dead_letter(TOPIC, "g", poison, "payload does not parse")
        .await
        .unwrap();

    let parked = queue.dead_letters(TOPIC, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].payload, poison.payload);
    assert_eq!(parked[0].deliveries, poison.deliveries);
    let details = queue.dead_letter_details(TOPIC, 10).await.unwrap();
    assert_eq!(details[0].item, parked[0]);
    assert_eq!(details[0].reason, "payload does not parse");
    assert_eq!(details[0].group, "g");
    assert_eq!(details[0].original_id, poison.id);
    assert!(details[0].dead_lettered_at.as_millis() > 1_600_000_000_000);
    assert!(queue.dead_letters("other", 10).await.unwrap().is_empty());

    // Gone from pending: only the other item is still there to reclaim.
    let pending = queue
        .reclaim(TOPIC, "g", "c2", Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(ids(&pending), vec![items[1].id.clone()]);
    queue.ack(TOPIC, "g", &ids(&pending)).await.unwrap();

    assert!(
        queue
            .replay_dead_letter(TOPIC, &parked[0].id)
            .await
            .unwrap()
    );
    assert!(queue.dead_letters(TOPIC, 10).await.unwrap().is_empty());
    let again = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
    assert_eq!(texts(&again), vec!["item-0"], "deliverable again");
    assert_eq!(again[0].deliveries, 1, "as a new item");

    assert!(
        !queue
            .replay_dead_letter(TOPIC, &parked[0].id)
            .await
            .unwrap()
    );
    assert!(!queue.replay_dead_letter(TOPIC, "999999-0").await.unwrap());
    assert!(!queue.replay_dead_letter(TOPIC, "no such id").await.unwrap());
}

pub async fn a_fetch_waits_for_new_items_and_no_longer(queue: &dyn WorkQueue) {
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    assert!(
        queue
            .fetch(TOPIC, "g", "c1", 10, wait)
            .await
            .unwrap()
            .is_empty()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "waited {waited:?}"
    );

    // An item published meanwhile ends the wait early.
    let started = Instant::now();
    let publish = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        queue.publish(TOPIC, &payloads(0..1)).await.unwrap();
    };
    let (items, ()) = tokio::join!(
        queue.fetch(TOPIC, "g", "c1", 10, Duration::from_secs(5)),
        publish
    );
    assert_eq!(texts(&items.unwrap()), vec!["item-0"]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woke at once: {:?}",
        started.elapsed()
    );
}

/// What only the Redis adapter has: a server that forgets, and one that is
/// not there.
mod redis_only {
    use super::*;

    #[tokio::test]
    async fn a_group_lost_with_its_stream_is_created_again() {
        let redis = TestRedis::new().await;
        let queue = redis.work_queue();
        queue.publish(TOPIC, &payloads(0..1)).await.unwrap();
        let first = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
        queue.ack(TOPIC, "g", &ids(&first)).await.unwrap();

        // What a Redis restart without persistence does to the stream.
        let mut raw = redis.raw().await;
        let stream = format!("{}q:{TOPIC}", redis.options.key_prefix);
        let deleted: u64 = ::redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(deleted, 1);

        queue.publish(TOPIC, &payloads(1..2)).await.unwrap();
        let after = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
        assert_eq!(texts(&after), vec!["item-1"]);
        queue.ack(TOPIC, "g", &ids(&after)).await.unwrap();
        assert!(
            queue
                .reclaim(TOPIC, "g", "c2", Duration::ZERO, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_group_lost_under_a_blocked_fetch_is_created_again() {
        let redis = TestRedis::new().await;
        let queue = redis.work_queue();
        // Creates the group; the next fetch blocks on its own connection.
        assert!(
            queue
                .fetch(TOPIC, "g", "c1", 10, SHORT)
                .await
                .unwrap()
                .is_empty()
        );
        let stream = format!("{}q:{TOPIC}", redis.options.key_prefix);
        let mut raw = redis.raw().await;
        let interfere = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let _: u64 = ::redis::cmd("DEL")
                .arg(&stream)
                .query_async(&mut raw)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue.publish(TOPIC, &payloads(0..1)).await.unwrap();
        };
        let (fetched, ()) = tokio::join!(
            queue.fetch(TOPIC, "g", "c1", 10, Duration::from_secs(2)),
            interfere
        );
        // Whether Redis woke the blocked read with an error or not, the
        // worker's next fetch gets the item.
        let mut items = fetched.unwrap_or_default();
        if items.is_empty() {
            items = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
        }
        assert_eq!(texts(&items), vec!["item-0"]);
    }

    #[tokio::test]
    async fn a_blocked_fetch_does_not_hold_up_other_calls() {
        let redis = TestRedis::new().await;
        let queue = redis.work_queue();
        let others = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let started = Instant::now();
            queue.publish("other", &payloads(0..1)).await.unwrap();
            queue.dead_letters(TOPIC, 10).await.unwrap();
            started.elapsed()
        };
        let (fetched, others_took) = tokio::join!(
            queue.fetch(TOPIC, "g", "c1", 10, Duration::from_millis(800)),
            others
        );
        assert!(fetched.unwrap().is_empty());
        assert!(
            others_took < Duration::from_millis(300),
            "calls during a blocked read took {others_took:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_within_the_op_timeout() {
        let mut options = RedisOptions::new("redis://127.0.0.1:1");
        options.op_timeout = Duration::from_millis(300);
        let queue = RedisWorkQueue::connect(options).unwrap();
        let started = Instant::now();
        assert!(queue.publish(TOPIC, &payloads(0..1)).await.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "took {:?}",
            started.elapsed()
        );
        // A fetch against a dead Redis fails, within its wait and no later.
        let started = Instant::now();
        assert!(
            queue
                .fetch(TOPIC, "g", "c1", 10, Duration::from_millis(200))
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_millis(1_500));
        assert!(queue.ack(TOPIC, "g", &["1-0".to_string()]).await.is_err());
        assert!(queue.dead_letters(TOPIC, 10).await.is_err());
    }
}

/// Kills every connection to the test's database, as a Redis restart does.
async fn kill_connections_to(redis: &TestRedis, database: u8) -> usize {
    let mut raw = redis.raw().await;
    let own: i64 = ::redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut raw)
        .await
        .unwrap();
    let clients: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut killed = 0;
    for line in clients.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        let id: i64 = field("id").and_then(|id| id.parse().ok()).unwrap_or(-1);
        if field("db") == Some(database.to_string()) && id != own {
            let _: i64 = ::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut raw)
                .await
                .unwrap_or(0);
            killed += 1;
        }
    }
    killed
}

mod recovery {
    use invigil_actors::ports::{CandidateKey, HotState, OutboundFrame};

    use super::*;

    /// Only this test uses it, so its connections are the adapters'.
    const DATABASE: u8 = 13;

    async fn eventually<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
        what: &str,
        mut call: impl FnMut() -> F,
    ) -> T {
        let started = Instant::now();
        loop {
            match call().await {
                Ok(value) => return value,
                Err(_) if started.elapsed() < Duration::from_secs(3) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("{what} did not recover within 3 s: {error:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_adapters_recover_from_a_redis_restart_by_themselves() {
        let redis = TestRedis::on_database(DATABASE).await;
        let hot = redis.hot_state();
        let queue = redis.work_queue();
        let key = CandidateKey {
            plan_id: "p1".parse().unwrap(),
            candidate_id: "c1".parse().unwrap(),
        };
        let frame = |seq: u64| OutboundFrame {
            seq,
            text: format!("{{\"seq\":{seq}}}").into(),
        };
        hot.append_outbound(&[(key.clone(), frame(1))], 8)
            .await
            .unwrap();
        queue.publish(TOPIC, &payloads(0..1)).await.unwrap();
        let first = queue.fetch(TOPIC, "g", "c1", 10, SHORT).await.unwrap();
        queue.ack(TOPIC, "g", &ids(&first)).await.unwrap();

        // The restart: every connection dropped, every key gone, scripts
        // forgotten.
        let mut raw = redis.raw().await;
        let _: () = ::redis::cmd("SELECT")
            .arg(DATABASE)
            .query_async(&mut raw)
            .await
            .unwrap();
        let _: () = ::redis::cmd("FLUSHDB").query_async(&mut raw).await.unwrap();
        let _: () = ::redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(kill_connections_to(&redis, DATABASE).await >= 2);

        // The hot state reconnects: the buffer is gone (a snapshot), and
        // appends work again.
        let next = [(key.clone(), frame(2))];
        eventually("append", || hot.append_outbound(&next, 8)).await;
        assert_eq!(hot.last_outbound_seq(&key).await.unwrap(), 2);
        assert_eq!(
            hot.outbound_after(&key, 0).await.unwrap(),
            None,
            "frame 1 went with the restart: a snapshot"
        );

        // The queue reconnects and creates its group again.
        let second = payloads(1..2);
        eventually("publish", || queue.publish(TOPIC, &second)).await;
        let after = eventually("fetch", || queue.fetch(TOPIC, "g", "c1", 10, SHORT)).await;
        assert_eq!(texts(&after), vec!["item-1"]);
    }
}
