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

mod hosted;
mod labels;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{
    Counter, Histogram, Meter, MeterProvider, NoopMeterProvider, ObservableCounter,
    ObservableGauge, UpDownCounter,
};

use self::hosted::{Hosted, observe_hosted};
pub use self::hosted::{PlanGauge, RoomCounts, RoomGauge};
pub use self::labels::*;

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

impl Metrics {
    /// Instruments that record nothing.
    pub fn noop() -> Self {
        Self::new(&NoopMeterProvider::new().meter("invigil"))
    }

    /// The node's instruments on `meter`. Every family with a fixed label
    /// set starts at zero, so dashboards and alerts find it before the
    /// first event.
    pub fn new(meter: &Meter) -> Self {
        let hosted = Hosted::new();
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
        self.0.hosted.room_gauge()
    }

    /// A plan coordinator's entry in `invigil_plan_state`.
    pub fn plan_gauge(&self) -> PlanGauge {
        self.0.hosted.plan_gauge()
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
