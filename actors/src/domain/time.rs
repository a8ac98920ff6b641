//! Time as the domain sees it: instants in unix milliseconds from the injected
//! clock, and logs of pause intervals from which remaining time is computed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since the unix epoch, read from the server's clock.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Returns this instant moved by `millis` (negative moves back), saturating.
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Returns the milliseconds from `earlier` to `self`, or 0 if `earlier` is later.
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        let difference = self.0.saturating_sub(earlier.0);
        if difference < 0 { 0 } else { difference }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}ms", self.0)
    }
}

/// The most pause intervals one plan, room or candidate may accumulate. A pause
/// is a human action; this bound keeps a misbehaving client from growing state
/// without limit.
pub const MAX_PAUSES: usize = 1_000;

/// One pause: from `from` until `until`, or still running when `until` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseInterval {
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

/// The pauses of one clock holder (a plan, a room or a candidate), oldest first.
/// At most the last interval is open.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PauseLog(Vec<PauseInterval>);

impl PauseLog {
    /// A log without pauses.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    pub fn intervals(&self) -> &[PauseInterval] {
        &self.0
    }

    /// Returns whether a pause is running.
    pub fn is_paused(&self) -> bool {
        self.0
            .last()
            .is_some_and(|interval| interval.until.is_none())
    }

    /// Returns whether another pause may be opened.
    pub fn has_room_for_another(&self) -> bool {
        self.0.len() < MAX_PAUSES
    }

    /// Opens a pause at `at`. Does nothing if one is already open; callers check
    /// the state machine first, so a repeat is a replay, not an error.
    pub fn open(&mut self, at: Timestamp) {
        if !self.is_paused() {
            self.0.push(PauseInterval {
                from: at,
                until: None,
            });
        }
    }

    /// Closes the running pause at `at` (never before it began).
    pub fn close(&mut self, at: Timestamp) {
        if let Some(interval) = self.0.last_mut()
            && interval.until.is_none()
        {
            interval.until = Some(at.max(interval.from));
        }
    }
}

/// Returns the milliseconds between `start` and `now` during which none of the
/// `logs` was paused: the union of all pauses counts once, so a candidate paused
/// by a proctor during a plan-wide pause does not lose time twice.
pub fn active_millis(start: Timestamp, now: Timestamp, logs: &[&PauseLog]) -> i64 {
    if now <= start {
        return 0;
    }
    // The common case: nothing was ever paused.
    if logs.iter().all(|log| log.intervals().is_empty()) {
        return now.millis_since(start);
    }
    let mut clipped: Vec<(i64, i64)> = logs
        .iter()
        .flat_map(|log| log.intervals())
        .filter_map(|interval| {
            let from = interval.from.max(start).as_millis();
            let until = interval.until.unwrap_or(now).min(now).as_millis();
            (until > from).then_some((from, until))
        })
        .collect();
    clipped.sort_unstable();

    let mut paused = 0_i64;
    let mut current: Option<(i64, i64)> = None;
    for (from, until) in clipped {
        match current {
            Some((current_from, current_until)) if from <= current_until => {
                current = Some((current_from, current_until.max(until)));
            }
            Some((current_from, current_until)) => {
                paused += current_until - current_from;
                current = Some((from, until));
            }
            None => current = Some((from, until)),
        }
    }
    if let Some((from, until)) = current {
        paused += until - from;
    }
    now.millis_since(start) - paused
}

/// Returns whether any of the logs has a running pause.
pub fn any_paused(logs: &[&PauseLog]) -> bool {
    logs.iter().any(|log| log.is_paused())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    fn log(intervals: &[(i64, Option<i64>)]) -> PauseLog {
        PauseLog(
            intervals
                .iter()
                .map(|&(from, until)| PauseInterval {
                    from: t(from),
                    until: until.map(t),
                })
                .collect(),
        )
    }

    #[test]
    fn no_pauses_counts_wall_time() {
        assert_eq!(active_millis(t(1_000), t(4_000), &[]), 3_000);
        assert_eq!(active_millis(t(1_000), t(500), &[]), 0);
    }

    #[test]
    fn overlapping_pauses_of_different_holders_count_once() {
        let plan = log(&[(2_000, Some(5_000))]);
        let candidate = log(&[(4_000, Some(6_000))]);
        // active: 1000..2000 and 6000..10000
        assert_eq!(
            active_millis(t(1_000), t(10_000), &[&plan, &candidate]),
            5_000
        );
    }

    #[test]
    fn a_running_pause_freezes_the_clock() {
        let room = log(&[(3_000, None)]);
        assert_eq!(active_millis(t(0), t(3_000), &[&room]), 3_000);
        assert_eq!(active_millis(t(0), t(9_000), &[&room]), 3_000);
        assert!(any_paused(&[&room]));
    }

    #[test]
    fn pauses_before_the_start_do_not_count() {
        let plan = log(&[(0, Some(2_000))]);
        assert_eq!(active_millis(t(1_000), t(3_000), &[&plan]), 1_000);
    }

    #[test]
    fn open_and_close_are_idempotent() {
        let mut pauses = PauseLog::default();
        pauses.open(t(10));
        pauses.open(t(20));
        assert_eq!(pauses.intervals().len(), 1);
        pauses.close(t(30));
        pauses.close(t(40));
        assert_eq!(pauses.intervals()[0].until, Some(t(30)));
        assert!(!pauses.is_paused());
    }

    fn arbitrary_log() -> impl Strategy<Value = PauseLog> {
        prop::collection::vec((0_i64..10_000, 0_i64..3_000), 0..6).prop_map(|pairs| {
            let mut pauses = PauseLog::default();
            let mut cursor = 0;
            for (gap, length) in pairs {
                cursor += gap;
                pauses.open(t(cursor));
                cursor += length;
                pauses.close(t(cursor));
            }
            pauses
        })
    }

    proptest! {
        #[test]
        fn active_time_is_monotonic_and_bounded(
            a in arbitrary_log(), b in arbitrary_log(), start in 0_i64..5_000,
            first in 0_i64..60_000, step in 0_i64..60_000,
        ) {
            let earlier = active_millis(t(start), t(start + first), &[&a, &b]);
            let later = active_millis(t(start), t(start + first + step), &[&a, &b]);
            prop_assert!(earlier >= 0);
            prop_assert!(earlier <= first);
            prop_assert!(later >= earlier);
            prop_assert!(later - earlier <= step);
        }

        #[test]
        fn union_is_order_independent(a in arbitrary_log(), b in arbitrary_log(), now in 0_i64..80_000) {
            prop_assert_eq!(
                active_millis(t(0), t(now), &[&a, &b]),
                active_millis(t(0), t(now), &[&b, &a])
            );
        }
    }
}
