//! The hot-state conformance cases. They run against every `HotState`
//! adapter: in memory here; the Redis adapter joins the same list.

use std::time::Duration;

use invigil_actors::ports::{CandidateKey, HotState, OutboundFrame, SessionClaim};
use invigil_store::MemoryHotState;

fn key(candidate: &str) -> CandidateKey {
    CandidateKey {
        plan_id: "p1".parse().unwrap(),
        candidate_id: candidate.parse().unwrap(),
    }
}

fn frame(seq: u64) -> OutboundFrame {
    OutboundFrame {
        seq,
        text: format!("{{\"seq\":{seq}}}"),
    }
}

macro_rules! hot_state_cases {
    ($module:ident, $make:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn resume_buffers_replay_what_was_missed() {
                crate::hot::resume_buffers_replay_what_was_missed(&$make).await;
            }

            #[tokio::test]
            async fn a_gap_beyond_the_buffer_asks_for_a_snapshot() {
                crate::hot::a_gap_beyond_the_buffer_asks_for_a_snapshot(&$make).await;
            }

            #[tokio::test]
            async fn sessions_are_swapped() {
                crate::hot::sessions_are_swapped(&$make).await;
            }

            #[tokio::test]
            async fn counters_and_snapshots_expire() {
                crate::hot::counters_and_snapshots_expire(&$make).await;
            }
        }
    };
}

hot_state_cases!(memory, MemoryHotState::default());

pub async fn resume_buffers_replay_what_was_missed(hot: &impl HotState) {
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

pub async fn a_gap_beyond_the_buffer_asks_for_a_snapshot(hot: &impl HotState) {
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

pub async fn sessions_are_swapped(hot: &impl HotState) {
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

pub async fn counters_and_snapshots_expire(hot: &impl HotState) {
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
