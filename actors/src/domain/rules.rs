//! Incident rules: when the server itself raises an incident (source
//! `rule`) from what candidates' clients and connections do. Configurable per
//! plan (`settings.incident_rules`); the decisions here are pure, the
//! incident-rules worker feeds them counts and the room records the result.
//!
//! - `focus_lost` N times within M seconds → `focus_lost_repeated` (one open
//!   per candidate);
//! - a `copy_paste` event → `copy_paste_detected`;
//! - a new connection from another IP address while the candidate is sitting
//!   → `ip_changed`;
//! - a second connection taking over a candidate → `duplicate_login`;
//! - a candidate who goes offline while sitting → after a grace period,
//!   either one room-level `connectivity` incident (when many of the room
//!   went offline together: a network problem, not cheating) or, alone,
//!   `went_offline` for that candidate.

use serde::{Deserialize, Serialize};

/// Per-plan rule settings. Every key has a default; unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentRules {
    /// `focus_lost` events that raise `focus_lost_repeated`; 0 switches the rule off.
    pub focus_lost_count: u32,
    /// …within this many seconds.
    pub focus_lost_window_s: i64,
    /// Raise `copy_paste_detected` on a `copy_paste` event.
    pub copy_paste: bool,
    /// Raise `ip_changed` when a sitting candidate reconnects from another address.
    pub ip_change: bool,
    /// Raise `duplicate_login` when a second connection takes a candidate over.
    pub duplicate_login: bool,
    /// Offline candidates of one room within `connectivity_window_s` that
    /// make one room-level `connectivity` incident instead of individual ones…
    pub connectivity_min_candidates: u32,
    /// …and at least this fraction of the room's sitting candidates.
    pub connectivity_fraction: f64,
    pub connectivity_window_s: i64,
    /// Raise `went_offline` for a candidate who went offline alone.
    pub offline_alone: bool,
}

impl Default for IncidentRules {
    fn default() -> Self {
        Self {
            focus_lost_count: 5,
            focus_lost_window_s: 60,
            copy_paste: true,
            ip_change: true,
            duplicate_login: true,
            connectivity_min_candidates: 3,
            connectivity_fraction: 0.5,
            connectivity_window_s: 20,
            offline_alone: true,
        }
    }
}

impl IncidentRules {
    /// Problems of these settings: (field under `incident_rules`, message).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let checks = [
            (
                self.focus_lost_count <= 1_000,
                "focus_lost_count",
                "must be between 0 (off) and 1000",
            ),
            (
                (1..=3_600).contains(&self.focus_lost_window_s),
                "focus_lost_window_s",
                "must be between 1 and 3600",
            ),
            (
                (1..=100_000).contains(&self.connectivity_min_candidates),
                "connectivity_min_candidates",
                "must be between 1 and 100000",
            ),
            (
                self.connectivity_fraction.is_finite()
                    && (0.0..=1.0).contains(&self.connectivity_fraction),
                "connectivity_fraction",
                "must be between 0 and 1",
            ),
            // The rules worker holds an offline event unacknowledged for
            // this long; well under the queue's reclaim time, so the entry
            // is not redelivered (and dead-lettered) while it waits.
            (
                (1..=60).contains(&self.connectivity_window_s),
                "connectivity_window_s",
                "must be between 1 and 60",
            ),
        ];
        checks
            .into_iter()
            .filter(|(ok, _, _)| !ok)
            .map(|(_, field, message)| (field, message))
            .collect()
    }

    /// Whether `count` focus losses within the window raise an incident.
    pub fn focus_burst(&self, count: u64) -> bool {
        self.focus_lost_count > 0 && count >= u64::from(self.focus_lost_count)
    }

    /// Whether `offline` candidates going offline together in a room where
    /// `sitting` candidates sit is a connectivity problem of the room.
    pub fn room_connectivity(&self, offline: u64, sitting: u64) -> bool {
        let sitting = sitting.max(offline);
        offline >= u64::from(self.connectivity_min_candidates)
            && offline as f64 >= self.connectivity_fraction * sitting as f64
    }
}

/// The kinds of incidents rules raise.
pub mod kinds {
    pub const FOCUS_LOST_REPEATED: &str = "focus_lost_repeated";
    pub const COPY_PASTE_DETECTED: &str = "copy_paste_detected";
    pub const IP_CHANGED: &str = "ip_changed";
    pub const DUPLICATE_LOGIN: &str = "duplicate_login";
    pub const CONNECTIVITY: &str = "connectivity";
    pub const WENT_OFFLINE: &str = "went_offline";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(IncidentRules::default().problems().is_empty());
    }

    #[test]
    fn focus_burst_counts_up_to_the_threshold() {
        let rules = IncidentRules::default();
        assert!(!rules.focus_burst(4));
        assert!(rules.focus_burst(5));
        let off = IncidentRules {
            focus_lost_count: 0,
            ..IncidentRules::default()
        };
        assert!(!off.focus_burst(1_000));
    }

    #[test]
    fn connectivity_needs_many_and_a_share_of_the_room() {
        let rules = IncidentRules::default();
        // 2 of 30: too few.
        assert!(!rules.room_connectivity(2, 30));
        // 3 of 30: enough people, not enough of the room.
        assert!(!rules.room_connectivity(3, 30));
        // 20 of 30: the room's network.
        assert!(rules.room_connectivity(20, 30));
        // 3 of 4.
        assert!(rules.room_connectivity(3, 4));
    }

    #[test]
    fn bad_values_are_named() {
        let rules = IncidentRules {
            connectivity_fraction: f64::NAN,
            focus_lost_window_s: 0,
            ..IncidentRules::default()
        };
        let fields: Vec<&str> = rules
            .problems()
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(fields, ["focus_lost_window_s", "connectivity_fraction"]);
    }
}
