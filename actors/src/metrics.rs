//! What the node measures, as OpenTelemetry instruments (docs/observability.md
//! lists every family). The node builds one [`Metrics`] from its meter and
//! hands it to every part; tests and tools that do not export use
//! [`Metrics::noop`].
//!
//! Labels are bounded by construction: every label value is a `&'static
//! str` from a fixed set (a state, a role, an error code), never an id, a
//! token, a URL or error text. Gauges that describe what a node hosts
//! (candidates by state, rooms, plans) are observed at scrape time from
//! what rooms and plans last reported ([`RoomGauge`], [`PlanGauge`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, Meter, MeterProvider, NoopMeterProvider, ObservableCounter,
    ObservableGauge, UpDownCounter,
};

use crate::domain::{CandidateState, PlanState, Presence};

/// Time buckets (seconds) of every latency histogram.
pub const TIME_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets of the journal's batch sizes.
pub const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0,
];

/// Every candidate state, in the order of [`RoomCounts::states`].
pub const CANDIDATE_STATES: [CandidateState; 8] = [
    CandidateState::Registered,
    CandidateState::CheckedIn,
    CandidateState::Testing,
    CandidateState::Paused,
    CandidateState::Submitted,
    CandidateState::ForceSubmitted,
    CandidateState::Expelled,
    CandidateState::Absent,
];

/// Every plan state, in the order [`PlanGauge::set`] counts them.
pub const PLAN_STATES: [PlanState; 6] = [
    PlanState::Scheduled,
    PlanState::Open,
    PlanState::InProgress,
    PlanState::Paused,
    PlanState::Ended,
    PlanState::Finalized,
];

/// Member statuses as `invigil_cluster_members` labels them.
pub const MEMBER_STATUSES: [&str; 4] = ["joining", "ready", "draining", "unreachable"];

/// Incident kinds that get their own label value; any other kind a
/// client sends counts as `other` (kinds are free snake_case words).
pub const INCIDENT_KINDS: [&str; 15] = [
    "focus_lost",
    "focus_lost_repeated",
    "tab_switch",
    "fullscreen_exit",
    "copy_paste",
    "copy_paste_detected",
    "screen_share",
    "duplicate_login",
    "ip_change",
    "ip_changed",
    "went_offline",
    "connectivity",
    "proctor_report",
    "multiple_displays",
    "other",
];

/// Queue topics (`workers::topics`).
pub const QUEUE_TOPICS: [&str; 3] = ["logs", "events", "webhooks"];

/// Socket roles.
pub const SOCKET_ROLES: [&str; 3] = ["candidate", "proctor", "tunnel"];

/// The `code` label of a WebSocket close code: known codes by number, the
/// rest as `other`.
pub fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1002) => "1002",
        Some(1003) => "1003",
        Some(1006) => "1006",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1011) => "1011",
        Some(1012) => "1012",
        Some(1013) => "1013",
        Some(4400) => "4400",
        Some(4401) => "4401",
        Some(4403) => "4403",
        Some(4404) => "4404",
        Some(4408) => "4408",
        Some(4409) => "4409",
        Some(4410) => "4410",
        Some(4429) => "4429",
        Some(4503) => "4503",
        Some(_) => "other",
    }
}

/// The `status_class` label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The `kind` label of an incident kind.
pub fn incident_kind_label(kind: &str) -> &'static str {
    INCIDENT_KINDS
        .iter()
        .find(|known| **known == kind)
        .copied()
        .unwrap_or("other")
}

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
struct Hosted {
    rooms: Mutex<HashMap<u64, RoomCounts>>,
    plans: Mutex<HashMap<u64, usize>>,
    next: AtomicU64,
    members: [AtomicI64; 4],
    shards_owned: AtomicI64,
    /// (pending, dead letters) by topic index, -1 until sampled.
    queue: [(AtomicI64, AtomicI64); 3],
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

/// The node's instruments. Cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Instruments>);

struct Instruments {
    hosted: Arc<Hosted>,
    answers_acked: Counter<u64>,
    answers_refused: Counter<u64>,
    answer_ack: Histogram<f64>,
    journal_batch: Histogram<u64>,
    journal_commit: Histogram<f64>,
    sockets: UpDownCounter<i64>,
    socket_frames: Counter<u64>,
    socket_closes: Counter<u64>,
    resumes: Counter<u64>,
    control_delivery: Histogram<f64>,
    incidents: Counter<u64>,
    handoffs: Counter<u64>,
    lease_renewal: Histogram<f64>,
    transport_calls: Counter<u64>,
    forwarded: Counter<u64>,
    queue_processed: Counter<u64>,
    http_requests: Counter<u64>,
    http_duration: Histogram<f64>,
    logins: Counter<u64>,
    _observed: (Vec<ObservableGauge<i64>>, Vec<ObservableCounter<u64>>),
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn kv(key: &'static str, value: &'static str) -> KeyValue {
    KeyValue::new(key, value)
}

impl Metrics {
    /// Instruments that record nothing.
    pub fn noop() -> Self {
        Self::new(&NoopMeterProvider::new().meter("invigil"))
    }

    /// The node's instruments on `meter`. Every family with a fixed label
    /// set starts at zero, so dashboards and alerts find it before the
    /// first event.
    pub fn new(meter: &Meter) -> Self {
        let hosted = Arc::new(Hosted::default());
        for topic in &hosted.queue {
            topic.0.store(-1, Ordering::Relaxed);
            topic.1.store(-1, Ordering::Relaxed);
        }
        let time = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_description(description)
                .with_unit("s")
                .with_boundaries(TIME_BUCKETS.to_vec())
                .build()
        };
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let observed = observe_hosted(meter, &hosted);
        let instruments = Instruments {
            answers_acked: counter("invigil_answers_acked", "Answers acked to candidates"),
            answers_refused: counter(
                "invigil_answers_refused",
                "Answers refused with an error frame, by error code",
            ),
            answer_ack: time(
                "invigil_answer_ack_seconds",
                "An answer frame's receipt on the room owner to its ack being sent",
            ),
            journal_batch: meter
                .u64_histogram("invigil_journal_batch_entries")
                .with_description("Entries per journal commit")
                .with_boundaries(BATCH_BUCKETS.to_vec())
                .build(),
            journal_commit: time("invigil_journal_commit_seconds", "One journal batch commit"),
            sockets: meter
                .i64_up_down_counter("invigil_sockets")
                .with_description("Open WebSockets on this node, by role")
                .build(),
            socket_frames: counter(
                "invigil_socket_frames",
                "WebSocket frames by role and direction",
            ),
            socket_closes: counter(
                "invigil_socket_closes",
                "WebSocket closes by role and close code",
            ),
            resumes: counter(
                "invigil_resumes",
                "hello {resume} outcomes: replayed or snapshot",
            ),
            control_delivery: time(
                "invigil_control_delivery_seconds",
                "A proctor command's receipt to its delivery to the candidate's socket",
            ),
            incidents: counter("invigil_incidents", "Incidents opened, by kind and source"),
            handoffs: counter(
                "invigil_shard_handoffs",
                "Shard ownership changes seen by this node, by reason",
            ),
            lease_renewal: time(
                "invigil_lease_renewal_seconds",
                "One shard lease renewal round",
            ),
            transport_calls: counter(
                "invigil_transport_calls",
                "Calls to other nodes over the cluster transport, by outcome",
            ),
            forwarded: counter(
                "invigil_forwarded_requests",
                "Requests passed on to the owning node (REST forward or socket tunnel)",
            ),
            queue_processed: counter(
                "invigil_queue_processed",
                "Work items handled by this node's workers, by topic and outcome",
            ),
            http_requests: counter(
                "invigil_http_requests",
                "HTTP requests by route pattern, method and status class",
            ),
            http_duration: time(
                "invigil_http_request_seconds",
                "HTTP request duration by route pattern, method and status class",
            ),
            logins: counter("invigil_logins", "Logins by role and outcome"),
            _observed: observed,
            hosted,
        };
        let metrics = Self(Arc::new(instruments));
        metrics.start_at_zero();
        metrics
    }

    fn start_at_zero(&self) {
        let m = &self.0;
        m.answers_acked.add(0, &[]);
        for code in [
            "store_unavailable",
            "invalid_value",
            "cseq_conflict",
            "time_up",
        ] {
            m.answers_refused.add(0, &[kv("code", code)]);
        }
        for role in SOCKET_ROLES {
            m.sockets.add(0, &[kv("role", role)]);
            for direction in ["in", "out"] {
                m.socket_frames
                    .add(0, &[kv("role", role), kv("direction", direction)]);
            }
        }
        for outcome in ["replayed", "snapshot"] {
            m.resumes.add(0, &[kv("outcome", outcome)]);
        }
        for reason in ["acquired", "taken_over", "released", "lost"] {
            m.handoffs.add(0, &[kv("reason", reason)]);
        }
        for outcome in ["ok", "error", "timeout"] {
            m.transport_calls.add(0, &[kv("outcome", outcome)]);
        }
        for kind in ["rest", "socket"] {
            m.forwarded.add(0, &[kv("kind", kind)]);
        }
        for topic in QUEUE_TOPICS {
            for outcome in ["ok", "retry", "dead_letter"] {
                m.queue_processed
                    .add(0, &[kv("topic", topic), kv("outcome", outcome)]);
            }
        }
        for role in ["candidate", "proctor"] {
            for outcome in ["ok", "refused", "limited"] {
                m.logins.add(0, &[kv("role", role), kv("outcome", outcome)]);
            }
        }
    }

    // ------------------------------------------------------------ answers

    /// An answer acked, `elapsed` after its frame arrived.
    pub fn answer_acked(&self, elapsed: Duration) {
        self.0.answers_acked.add(1, &[]);
        self.0.answer_ack.record(elapsed.as_secs_f64(), &[]);
    }

    /// An answer refused with `code` (a stable error code).
    pub fn answer_refused(&self, code: &'static str) {
        self.0.answers_refused.add(1, &[kv("code", code)]);
    }

    /// One journal commit of `entries` entries.
    pub fn journal_committed(&self, entries: usize, elapsed: Duration) {
        self.0
            .journal_batch
            .record(u64::try_from(entries).unwrap_or(u64::MAX), &[]);
        self.0.journal_commit.record(elapsed.as_secs_f64(), &[]);
    }

    // ------------------------------------------------------------ sockets

    /// A socket of `role` opened; the guard counts it closed when dropped.
    pub fn socket_opened(&self, role: &'static str) -> SocketGauge {
        self.0.sockets.add(1, &[kv("role", role)]);
        SocketGauge {
            metrics: self.clone(),
            role,
        }
    }

    pub fn socket_frame(&self, role: &'static str, direction: &'static str) {
        self.0
            .socket_frames
            .add(1, &[kv("role", role), kv("direction", direction)]);
    }

    pub fn socket_closed(&self, role: &'static str, code: Option<u16>) {
        self.0
            .socket_closes
            .add(1, &[kv("role", role), kv("code", close_code_label(code))]);
    }

    /// A resume answered by replaying frames (`true`) or with a snapshot.
    pub fn resumed(&self, replayed: bool) {
        let outcome = if replayed { "replayed" } else { "snapshot" };
        self.0.resumes.add(1, &[kv("outcome", outcome)]);
    }

    pub fn control_delivered(&self, elapsed: Duration) {
        self.0.control_delivery.record(elapsed.as_secs_f64(), &[]);
    }

    // ------------------------------------------------------------ exam

    pub fn incident_opened(&self, kind: &str, source: &'static str) {
        self.0.incidents.add(
            1,
            &[kv("kind", incident_kind_label(kind)), kv("source", source)],
        );
    }

    /// A room's entry in `invigil_candidates` and friends.
    pub fn room_gauge(&self) -> RoomGauge {
        let hosted = self.0.hosted.clone();
        let id = hosted.next.fetch_add(1, Ordering::Relaxed);
        hosted
            .rooms
            .lock()
            .map(|mut rooms| rooms.insert(id, RoomCounts::default()))
            .ok();
        RoomGauge { id, hosted }
    }

    /// A plan coordinator's entry in `invigil_plan_state`.
    pub fn plan_gauge(&self) -> PlanGauge {
        let hosted = self.0.hosted.clone();
        let id = hosted.next.fetch_add(1, Ordering::Relaxed);
        PlanGauge { id, hosted }
    }

    // ------------------------------------------------------------ cluster

    /// Members as this node sees them, counted by [`MEMBER_STATUSES`].
    pub fn set_members(&self, counts: [i64; 4]) {
        for (gauge, count) in self.0.hosted.members.iter().zip(counts) {
            gauge.store(count, Ordering::Relaxed);
        }
    }

    pub fn set_shards_owned(&self, count: usize) {
        self.0
            .hosted
            .shards_owned
            .store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// A shard changed hands here: `acquired`, `taken_over`, `released`, `lost`.
    pub fn shard_handoff(&self, reason: &'static str, count: u64) {
        if count > 0 {
            self.0.handoffs.add(count, &[kv("reason", reason)]);
        }
    }

    pub fn lease_renewed(&self, elapsed: Duration) {
        self.0.lease_renewal.record(elapsed.as_secs_f64(), &[]);
    }

    /// A call to another node: `ok`, `error` or `timeout`.
    pub fn transport_call(&self, outcome: &'static str) {
        self.0.transport_calls.add(1, &[kv("outcome", outcome)]);
    }

    /// A request passed on to its owner: `rest` or `socket`.
    pub fn forwarded(&self, kind: &'static str) {
        self.0.forwarded.add(1, &[kv("kind", kind)]);
    }

    // ------------------------------------------------------------ queue

    /// A work item handled: `ok`, `retry` or `dead_letter`.
    pub fn queue_processed(&self, topic: &'static str, outcome: &'static str, count: u64) {
        if count > 0 {
            self.0
                .queue_processed
                .add(count, &[kv("topic", topic), kv("outcome", outcome)]);
        }
    }

    /// The sampled backlog of `topic`.
    pub fn set_queue_depth(&self, topic: &str, pending: u64, dead_letters: u64) {
        if let Some(index) = QUEUE_TOPICS.iter().position(|known| *known == topic) {
            let (p, d) = &self.0.hosted.queue[index];
            p.store(
                i64::try_from(pending).unwrap_or(i64::MAX),
                Ordering::Relaxed,
            );
            d.store(
                i64::try_from(dead_letters).unwrap_or(i64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    // ------------------------------------------------------------ http

    /// One HTTP request. `route` is the route pattern (bounded by the
    /// routes that exist), never the URL.
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        let attributes = [
            KeyValue::new("route", route.to_owned()),
            kv("method", method),
            kv("status_class", status_class(status)),
        ];
        self.0.http_requests.add(1, &attributes);
        self.0
            .http_duration
            .record(elapsed.as_secs_f64(), &attributes);
    }

    /// A login of `role` (`candidate`, `proctor`): `ok`, `refused`, `limited`.
    pub fn login(&self, role: &'static str, outcome: &'static str) {
        self.0
            .logins
            .add(1, &[kv("role", role), kv("outcome", outcome)]);
    }
}

/// Counts an open socket; counts it closed when dropped.
pub struct SocketGauge {
    metrics: Metrics,
    role: &'static str,
}

impl SocketGauge {
    pub fn role(&self) -> &'static str {
        self.role
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for SocketGauge {
    fn drop(&mut self) {
        self.metrics.0.sockets.add(-1, &[kv("role", self.role)]);
    }
}

/// The gauges read at scrape time from what rooms, plans, the cluster and
/// the queue sampler last reported, and the process-wide fencing counters.
fn observe_hosted(
    meter: &Meter,
    hosted: &Arc<Hosted>,
) -> (Vec<ObservableGauge<i64>>, Vec<ObservableCounter<u64>>) {
    let mut gauges = Vec::new();
    let rooms = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_candidates")
            .with_description("Candidates in the rooms this node hosts, by state")
            .with_callback(move |observer| {
                let mut states = [0i64; 8];
                if let Ok(rooms) = rooms.rooms.lock() {
                    for counts in rooms.values() {
                        for (total, count) in states.iter_mut().zip(counts.states) {
                            *total += count;
                        }
                    }
                }
                for (state, count) in CANDIDATE_STATES.iter().zip(states) {
                    observer.observe(count, &[kv("state", state.as_str())]);
                }
            })
            .build(),
    );
    let rooms = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_candidates_connection")
            .with_description("Candidates in the rooms this node hosts, by connection")
            .with_callback(move |observer| {
                let mut connection = [0i64; 3];
                if let Ok(rooms) = rooms.rooms.lock() {
                    for counts in rooms.values() {
                        for (total, count) in connection.iter_mut().zip(counts.connection) {
                            *total += count;
                        }
                    }
                }
                for (label, count) in ["online", "stale", "offline"].into_iter().zip(connection) {
                    observer.observe(count, &[kv("connection", label)]);
                }
            })
            .build(),
    );
    let rooms = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_rooms_active")
            .with_description("Rooms this node hosts")
            .with_callback(move |observer| {
                let count = rooms.rooms.lock().map(|rooms| rooms.len()).unwrap_or(0);
                observer.observe(i64::try_from(count).unwrap_or(i64::MAX), &[]);
            })
            .build(),
    );
    let rooms = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_rooms_dark")
            .with_description("Hosted rooms where most candidates sitting the exam are offline")
            .with_callback(move |observer| {
                let count = rooms
                    .rooms
                    .lock()
                    .map(|rooms| rooms.values().filter(|counts| counts.dark).count())
                    .unwrap_or(0);
                observer.observe(i64::try_from(count).unwrap_or(i64::MAX), &[]);
            })
            .build(),
    );
    let plans = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_plan_state")
            .with_description("Plans whose coordinator runs on this node, by state")
            .with_callback(move |observer| {
                let mut states = [0i64; 6];
                if let Ok(plans) = plans.plans.lock() {
                    for index in plans.values() {
                        states[*index] += 1;
                    }
                }
                for (state, count) in PLAN_STATES.iter().zip(states) {
                    observer.observe(count, &[kv("state", state.as_str())]);
                }
            })
            .build(),
    );
    let cluster = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_cluster_members")
            .with_description("Cluster members as this node sees them, by status")
            .with_callback(move |observer| {
                for (status, count) in MEMBER_STATUSES.iter().zip(&cluster.members) {
                    observer.observe(count.load(Ordering::Relaxed), &[kv("status", status)]);
                }
            })
            .build(),
    );
    let cluster = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_shards_owned")
            .with_description("Shard leases this node holds")
            .with_callback(move |observer| {
                observer.observe(cluster.shards_owned.load(Ordering::Relaxed), &[]);
            })
            .build(),
    );
    let queue = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_queue_pending")
            .with_description("Work items published and not yet acked, by topic (sampled)")
            .with_callback(move |observer| {
                for (topic, (pending, _)) in QUEUE_TOPICS.iter().zip(&queue.queue) {
                    let value = pending.load(Ordering::Relaxed);
                    if value >= 0 {
                        observer.observe(value, &[kv("topic", topic)]);
                    }
                }
            })
            .build(),
    );
    let queue = hosted.clone();
    gauges.push(
        meter
            .i64_observable_gauge("invigil_queue_dead_letters")
            .with_description("Work items parked as dead letters, by topic (sampled)")
            .with_callback(move |observer| {
                for (topic, (_, dead)) in QUEUE_TOPICS.iter().zip(&queue.queue) {
                    let value = dead.load(Ordering::Relaxed);
                    if value >= 0 {
                        observer.observe(value, &[kv("topic", topic)]);
                    }
                }
            })
            .build(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_label_is_from_a_fixed_set() {
        let labels: std::collections::HashSet<_> = (0..=u16::MAX)
            .map(|code| close_code_label(Some(code)))
            .collect();
        assert!(labels.len() < 25, "{} labels", labels.len());
    }

    #[test]
    fn unknown_incident_kinds_count_as_other() {
        assert_eq!(incident_kind_label("focus_lost"), "focus_lost");
        assert_eq!(incident_kind_label("anything_else_a_client_sends"), "other");
    }

    #[test]
    fn a_room_is_dark_when_most_of_those_sitting_are_offline() {
        assert!(RoomCounts::default().with_dark(10, 6).dark);
        assert!(!RoomCounts::default().with_dark(10, 5).dark);
        assert!(!RoomCounts::default().with_dark(0, 0).dark);
    }
}
