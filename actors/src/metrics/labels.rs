//! Label values: every one from a fixed set.

use opentelemetry::KeyValue;

use crate::domain::{CandidateState, PlanState};

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

/// A label with a fixed value.
pub(super) fn kv(key: &'static str, value: &'static str) -> KeyValue {
    KeyValue::new(key, value)
}
