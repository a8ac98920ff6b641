//! What a node hosts, as rooms and plans last reported it, and the
//! node-wide numbers other parts set: read at scrape time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableCounter, ObservableGauge};

use super::labels::{CANDIDATE_STATES, MEMBER_STATUSES, PLAN_STATES, QUEUE_TOPICS, kv};
use crate::domain::{CandidateState, PlanState, Presence};

/// What one room last reported: its candidates by state and connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoomCounts {
    /// Indexed like [`CANDIDATE_STATES`].
    pub states: [i64; 8],
    /// online, stale, offline.
    pub connection: [i64; 3],
    /// Most candidates who checked in are offline.
    pub dark: bool,
}

impl RoomCounts {
    pub fn add(&mut self, state: CandidateState, presence: Presence) {
        let index = CANDIDATE_STATES
            .iter()
            .position(|known| *known == state)
            .unwrap_or(0);
        self.states[index] += 1;
        self.connection[match presence {
            Presence::Online => 0,
            Presence::Stale => 1,
            Presence::Offline => 2,
        }] += 1;
    }

    /// Marks the room dark when more than half of the candidates who are
    /// sitting the exam (checked in, testing or paused) are offline.
    pub fn with_dark(mut self, sitting: i64, sitting_offline: i64) -> Self {
        self.dark = sitting > 0 && sitting_offline * 2 > sitting;
        self
    }
}

/// What rooms and plans on this node last reported, and the node-wide
/// numbers other parts set; read at scrape time.
#[derive(Default)]
pub(super) struct Hosted {
    rooms: Mutex<HashMap<u64, RoomCounts>>,
    plans: Mutex<HashMap<u64, usize>>,
    next: AtomicU64,
    pub(super) members: [AtomicI64; 4],
    pub(super) shards_owned: AtomicI64,
    /// (pending, dead letters) by topic index, -1 until sampled.
    pub(super) queue: [(AtomicI64, AtomicI64); 3],
}

impl Hosted {
    /// Nothing sampled yet: the queue gauges have no sample.
    pub(super) fn new() -> Arc<Self> {
        let hosted = Self::default();
        for (pending, dead) in &hosted.queue {
            pending.store(-1, Ordering::Relaxed);
            dead.store(-1, Ordering::Relaxed);
        }
        Arc::new(hosted)
    }

    pub(super) fn room_gauge(self: &Arc<Self>) -> RoomGauge {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.insert(id, RoomCounts::default());
        }
        RoomGauge {
            id,
            hosted: self.clone(),
        }
    }

    pub(super) fn plan_gauge(self: &Arc<Self>) -> PlanGauge {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        PlanGauge {
            id,
            hosted: self.clone(),
        }
    }
}

/// One room's entry in the hosted gauges; removed when dropped (the room stops).
pub struct RoomGauge {
    id: u64,
    hosted: Arc<Hosted>,
}

impl RoomGauge {
    pub fn set(&self, counts: RoomCounts) {
        if let Ok(mut rooms) = self.hosted.rooms.lock() {
            rooms.insert(self.id, counts);
        }
    }
}

impl Drop for RoomGauge {
    fn drop(&mut self) {
        if let Ok(mut rooms) = self.hosted.rooms.lock() {
            rooms.remove(&self.id);
        }
    }
}

/// One plan coordinator's entry; removed when dropped.
pub struct PlanGauge {
    id: u64,
    hosted: Arc<Hosted>,
}

impl PlanGauge {
    pub fn set(&self, state: PlanState) {
        let index = PLAN_STATES
            .iter()
            .position(|known| *known == state)
            .unwrap_or(0);
        if let Ok(mut plans) = self.hosted.plans.lock() {
            plans.insert(self.id, index);
        }
    }
}

impl Drop for PlanGauge {
    fn drop(&mut self) {
        if let Ok(mut plans) = self.hosted.plans.lock() {
            plans.remove(&self.id);
        }
    }
}

/// The gauges read at scrape time from what rooms, plans, the cluster and
/// the queue sampler last reported, and the process-wide fencing counters.
pub(super) fn observe_hosted(
    meter: &Meter,
    hosted: &Arc<Hosted>,
) -> (Vec<ObservableGauge<i64>>, Vec<ObservableCounter<u64>>) {
    // One observable gauge read from `hosted` at scrape time.
    let gauge = |name: &'static str,
                 description: &'static str,
                 observe: fn(&Hosted, &dyn AsyncInstrument<i64>)| {
        let hosted = hosted.clone();
        meter
            .i64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| observe(&hosted, observer))
            .build()
    };
    let gauges = vec![
        gauge(
            "invigil_candidates",
            "Candidates in the rooms this node hosts, by state",
            |hosted, observer| {
                for (state, count) in CANDIDATE_STATES.iter().zip(hosted.room_totals().states) {
                    observer.observe(count, &[kv("state", state.as_str())]);
                }
            },
        ),
        gauge(
            "invigil_candidates_connection",
            "Candidates in the rooms this node hosts, by connection",
            |hosted, observer| {
                let connection = hosted.room_totals().connection;
                for (label, count) in ["online", "stale", "offline"].into_iter().zip(connection) {
                    observer.observe(count, &[kv("connection", label)]);
                }
            },
        ),
        gauge(
            "invigil_rooms_active",
            "Rooms this node hosts",
            |hosted, observer| observer.observe(hosted.room_totals().active, &[]),
        ),
        gauge(
            "invigil_rooms_dark",
            "Hosted rooms where most candidates sitting the exam are offline",
            |hosted, observer| observer.observe(hosted.room_totals().dark, &[]),
        ),
        gauge(
            "invigil_plan_state",
            "Plans whose coordinator runs on this node, by state",
            |hosted, observer| {
                let mut states = [0i64; 6];
                if let Ok(plans) = hosted.plans.lock() {
                    for index in plans.values() {
                        states[*index] += 1;
                    }
                }
                for (state, count) in PLAN_STATES.iter().zip(states) {
                    observer.observe(count, &[kv("state", state.as_str())]);
                }
            },
        ),
        gauge(
            "invigil_cluster_members",
            "Cluster members as this node sees them, by status",
            |hosted, observer| {
                for (status, count) in MEMBER_STATUSES.iter().zip(&hosted.members) {
                    observer.observe(count.load(Ordering::Relaxed), &[kv("status", status)]);
                }
            },
        ),
        gauge(
            "invigil_shards_owned",
            "Shard leases this node holds",
            |hosted, observer| observer.observe(hosted.shards_owned.load(Ordering::Relaxed), &[]),
        ),
        gauge(
            "invigil_queue_pending",
            "Work items published and not yet acked, by topic (sampled)",
            |hosted, observer| {
                for (topic, (pending, _)) in QUEUE_TOPICS.iter().zip(&hosted.queue) {
                    observe_sampled(observer, pending, topic);
                }
            },
        ),
        gauge(
            "invigil_queue_dead_letters",
            "Work items parked as dead letters, by topic (sampled)",
            |hosted, observer| {
                for (topic, (_, dead)) in QUEUE_TOPICS.iter().zip(&hosted.queue) {
                    observe_sampled(observer, dead, topic);
                }
            },
        ),
    ];
    let counters = vec![
        meter
            .u64_observable_counter("invigil_journal_stale_epoch_rejected")
            .with_description(
                "Durable writes the store refused because their shard epoch moved on (this process)",
            )
            .with_callback(|observer| {
                observer.observe(
                    crate::shard::STALE_EPOCH_WRITES.load(Ordering::Relaxed),
                    &[],
                );
            })
            .build(),
        meter
            .u64_observable_counter("invigil_self_fenced")
            .with_description(
                "Writes a room refused itself because its shard lease had run out (this process)",
            )
            .with_callback(|observer| {
                observer.observe(
                    crate::shard::SELF_FENCED_WRITES.load(Ordering::Relaxed),
                    &[],
                );
            })
            .build(),
    ];
    (gauges, counters)
}

/// A sampled queue gauge of `topic`; none before the first sample (-1).
fn observe_sampled(observer: &dyn AsyncInstrument<i64>, value: &AtomicI64, topic: &'static str) {
    let value = value.load(Ordering::Relaxed);
    if value >= 0 {
        observer.observe(value, &[kv("topic", topic)]);
    }
}

/// What the hosted rooms add up to at one scrape.
#[derive(Default)]
struct RoomTotals {
    states: [i64; 8],
    connection: [i64; 3],
    active: i64,
    dark: i64,
}

impl Hosted {
    /// The rooms' last reports, summed.
    fn room_totals(&self) -> RoomTotals {
        let mut totals = RoomTotals::default();
        if let Ok(rooms) = self.rooms.lock() {
            for counts in rooms.values() {
                for (total, count) in totals.states.iter_mut().zip(counts.states) {
                    *total += count;
                }
                for (total, count) in totals.connection.iter_mut().zip(counts.connection) {
                    *total += count;
                }
                totals.active += 1;
                totals.dark += i64::from(counts.dark);
            }
        }
        totals
    }
}
