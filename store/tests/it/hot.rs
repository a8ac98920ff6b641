//! The hot-state conformance cases. Each runs against every `HotState`
//! adapter — in memory and on Redis (a fresh key prefix per test) — so
//! embedded and cluster mode keep one behaviour.

use std::time::{Duration, Instant};

use invigil_actors::ports::{CandidateKey, HotState, OutboundFrame, SessionClaim};
use invigil_store::{RedisHotState, RedisOptions};

use crate::redis_support::TestRedis;

fn key(candidate: &str) -> CandidateKey {
    CandidateKey {
        plan_id: "p1".parse().unwrap(),
        candidate_id: candidate.parse().unwrap(),
    }
}

fn frame(seq: u64) -> OutboundFrame {
    OutboundFrame {
        seq,
        text: format!("{{\"seq\":{seq}}}").into(),
    }
}

/// Declares each listed case once per adapter.
macro_rules! hot_state_cases {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&invigil_store::MemoryHotState::default()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $case() {
                    let redis = crate::redis_support::TestRedis::new().await;
                    super::$case(&redis.hot_state()).await;
                }
            )*
        }
    };
}

hot_state_cases!(
    resume_buffers_replay_what_was_missed,
    a_gap_beyond_the_buffer_asks_for_a_snapshot,
    a_retried_append_changes_nothing,
    a_numbering_that_starts_over_never_replays_the_old_frames,
    sessions_are_swapped,
    counters_and_snapshots_expire,
    sliding_windows_count_members_once,
    a_members_position_never_changes_as_later_ones_arrive,
);

pub async fn resume_buffers_replay_what_was_missed(hot: &dyn HotState) {
    let frames: Vec<_> = (1..=5).map(|seq| (key("c1"), frame(seq))).collect();
    hot.append_outbound(&frames, 256).await.unwrap();
    let missed = hot.outbound_after(&key("c1"), 2).await.unwrap().unwrap();
    assert_eq!(
        missed.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        hot.outbound_after(&key("c1"), 5).await.unwrap(),
        Some(vec![]),
        "up to date"
    );
    assert_eq!(
        hot.outbound_after(&key("c1"), 9).await.unwrap(),
        None,
        "ahead of the server: snapshot"
    );
    assert_eq!(
        hot.outbound_after(&key("nobody"), 0).await.unwrap(),
        Some(vec![])
    );
    assert_eq!(hot.last_outbound_seq(&key("c1")).await.unwrap(), 5);
    assert_eq!(hot.last_outbound_seq(&key("nobody")).await.unwrap(), 0);
}

pub async fn a_gap_beyond_the_buffer_asks_for_a_snapshot(hot: &dyn HotState) {
    let frames: Vec<_> = (1..=10).map(|seq| (key("c2"), frame(seq))).collect();
    hot.append_outbound(&frames, 4).await.unwrap();
    assert_eq!(
        hot.outbound_after(&key("c2"), 5).await.unwrap(),
        None,
        "6 was dropped"
    );
    let kept = hot.outbound_after(&key("c2"), 6).await.unwrap().unwrap();
    assert_eq!(
        kept.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![7, 8, 9, 10]
    );
    assert_eq!(hot.outbound_after(&key("nobody"), 3).await.unwrap(), None);

    // A hole inside the buffer (an append that failed): never a silent gap.
    let holed: Vec<_> = [1, 2, 4, 5]
        .into_iter()
        .map(|seq| (key("c4"), frame(seq)))
        .collect();
    hot.append_outbound(&holed, 256).await.unwrap();
    assert_eq!(
        hot.outbound_after(&key("c4"), 1).await.unwrap(),
        None,
        "3 is missing"
    );
    let after_hole = hot.outbound_after(&key("c4"), 3).await.unwrap().unwrap();
    assert_eq!(
        after_hole.iter().map(|f| f.seq).collect::<Vec<_>>(),
        vec![4, 5]
    );
}

pub async fn sessions_are_swapped(hot: &dyn HotState) {
    let first = SessionClaim {
        session_id: "s1".into(),
        node_id: "n1".into(),
    };
    let second = SessionClaim {
        session_id: "s2".into(),
        node_id: "n2".into(),
    };
    assert_eq!(
        hot.swap_session(&key("c3"), first.clone()).await.unwrap(),
        None
    );
    assert_eq!(
        hot.swap_session(&key("c3"), second.clone()).await.unwrap(),
        Some(first)
    );
    assert_eq!(hot.session(&key("c3")).await.unwrap(), Some(second));
}

pub async fn counters_and_snapshots_expire(hot: &dyn HotState) {
    let window = Duration::from_millis(200);
    assert_eq!(hot.count_in_window("login:x", window).await.unwrap(), 1);
    assert_eq!(hot.count_in_window("login:x", window).await.unwrap(), 2);
    hot.put_snapshot("room:r1", b"state".to_vec(), window)
        .await
        .unwrap();
    assert_eq!(
        hot.snapshot("room:r1").await.unwrap(),
        Some(b"state".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        hot.count_in_window("login:x", window).await.unwrap(),
        1,
        "a new window"
    );
    assert_eq!(hot.snapshot("room:r1").await.unwrap(), None);
}

pub async fn a_retried_append_changes_nothing(hot: &dyn HotState) {
    let frames: Vec<_> = (1..=3).map(|seq| (key("c5"), frame(seq))).collect();
    hot.append_outbound(&frames, 256).await.unwrap();
    // The same frames again, as after a timeout that hid a success.
    hot.append_outbound(&frames[1..], 256).await.unwrap();
    let all = hot.outbound_after(&key("c5"), 0).await.unwrap().unwrap();
    assert_eq!(all.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(hot.last_outbound_seq(&key("c5")).await.unwrap(), 3);
}

pub async fn a_numbering_that_starts_over_never_replays_the_old_frames(hot: &dyn HotState) {
    let old: Vec<_> = (1..=6).map(|seq| (key("c6"), frame(seq))).collect();
    hot.append_outbound(&old, 256).await.unwrap();
    // A room re-activated without knowing its last seq numbers from 1 again.
    let restarted: Vec<_> = (1..=2)
        .map(|seq| {
            (
                key("c6"),
                OutboundFrame {
                    seq,
                    text: format!("{{\"seq\":{seq},\"epoch\":2}}").into(),
                },
            )
        })
        .collect();
    hot.append_outbound(&restarted, 256).await.unwrap();
    assert_eq!(hot.last_outbound_seq(&key("c6")).await.unwrap(), 2);
    assert_eq!(
        hot.outbound_after(&key("c6"), 2).await.unwrap(),
        Some(vec![]),
        "nothing of the old numbering follows"
    );
    let replay = hot.outbound_after(&key("c6"), 1).await.unwrap();
    assert!(
        replay.is_none() || replay == Some(vec![restarted[1].1.clone()]),
        "only the new numbering is ever replayed: {replay:?}"
    );
    assert_eq!(hot.outbound_after(&key("c6"), 5).await.unwrap(), None);
}

pub async fn sliding_windows_count_members_once(hot: &dyn HotState) {
    let keep = Duration::from_secs(60);
    hot.window_add("focus:c1", "e1", 1_000, keep).await.unwrap();
    hot.window_add("focus:c1", "e2", 2_000, keep).await.unwrap();
    hot.window_add("focus:c1", "e3", 3_000, keep).await.unwrap();
    assert_eq!(hot.window_count("focus:c1", 1_500, 3_000).await.unwrap(), 2);
    // A member is held once, at its latest time.
    hot.window_add("focus:c1", "e1", 2_500, keep).await.unwrap();
    hot.window_add("focus:c1", "e1", 1_200, keep).await.unwrap();
    assert_eq!(hot.window_count("focus:c1", 0, 10_000).await.unwrap(), 3);
    assert_eq!(hot.window_count("focus:c1", 2_400, 2_600).await.unwrap(), 1);
    // Members older than `keep` before the newest addition are dropped.
    hot.window_add("focus:c1", "e4", 62_600, keep)
        .await
        .unwrap();
    assert_eq!(
        hot.window_count("focus:c1", 0, 100_000).await.unwrap(),
        2,
        "e2 (2 000) and e1 (2 500) fell out"
    );
    assert_eq!(hot.window_count("nothing", 0, 100_000).await.unwrap(), 0);
    // The set expires when untouched for `keep`.
    hot.window_add("short", "e1", 1_000, Duration::from_millis(150))
        .await
        .unwrap();
    assert_eq!(hot.window_count("short", 0, 2_000).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(hot.window_count("short", 0, 2_000).await.unwrap(), 0);
}

/// What only the Redis adapter has: TTLs on the keys, and bounded failure.
mod redis_only {
    use super::*;

    #[tokio::test]
    async fn resume_buffers_and_sessions_expire_and_are_refreshed() {
        let redis = TestRedis::new().await;
        let hot = redis.hot_state();
        hot.append_outbound(&[(key("c1"), frame(1))], 8)
            .await
            .unwrap();
        hot.swap_session(
            &key("c1"),
            SessionClaim {
                session_id: "s1".into(),
                node_id: "n1".into(),
            },
        )
        .await
        .unwrap();
        let mut raw = redis.raw().await;
        let day_ms = 24 * 3600 * 1000;
        for name in ["out:p1:c1", "session:p1:c1"] {
            let full = format!("{}{name}", redis.options.key_prefix);
            let ttl: i64 = ::redis::cmd("PTTL")
                .arg(&full)
                .query_async(&mut raw)
                .await
                .unwrap();
            assert!(
                ttl > day_ms - 60_000 && ttl <= day_ms,
                "{name} expires in a day: {ttl}"
            );
        }
        assert_eq!(redis.keys().len(), 2, "{:?}", redis.keys());
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_within_the_op_timeout() {
        let mut options = RedisOptions::new("redis://127.0.0.1:1");
        options.op_timeout = Duration::from_millis(300);
        let hot = RedisHotState::connect(options).unwrap();
        let started = Instant::now();
        let error = hot
            .append_outbound(&[(key("c1"), frame(1))], 8)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "took {:?}",
            started.elapsed()
        );
        assert!(error.to_string().contains("redis"), "{error}");
        // The breaker is open now: the next calls fail at once.
        let started = Instant::now();
        assert!(hot.last_outbound_seq(&key("c1")).await.is_err());
        assert!(hot.outbound_after(&key("c1"), 0).await.is_err());
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "failed fast: {:?}",
            started.elapsed()
        );
        // And after the cooldown, Redis is tried again (and fails again, bounded).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        assert!(hot.session(&key("c1")).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(1_500));
    }
}

pub async fn a_members_position_never_changes_as_later_ones_arrive(hot: &dyn HotState) {
    let keep = Duration::from_secs(60);
    // Three at the same time (ties go by member), one later, one too early.
    hot.window_add("pos:c1", "old", 1_000, keep).await.unwrap();
    hot.window_add("pos:c1", "b", 20_000, keep).await.unwrap();
    hot.window_add("pos:c1", "a", 20_000, keep).await.unwrap();
    hot.window_add("pos:c1", "c", 20_000, keep).await.unwrap();
    hot.window_add("pos:c1", "d", 25_000, keep).await.unwrap();
    let position = async |member| hot.window_position("pos:c1", member, 10_000).await.unwrap();
    assert_eq!(position("a").await, 1, "'old' is outside the 10 s span");
    assert_eq!(position("b").await, 2);
    assert_eq!(position("c").await, 3);
    assert_eq!(position("d").await, 4);
    assert_eq!(position("nobody").await, 0);
    // Adding more changes nobody's position.
    hot.window_add("pos:c1", "e", 26_000, keep).await.unwrap();
    assert_eq!(position("a").await, 1);
    assert_eq!(
        hot.window_position("pos:none", "a", 10_000).await.unwrap(),
        0
    );
}
