//! The exam clock of one candidate, computed rather than ticked: remaining
//! time follows from the actual start, the allowance (duration, plan, room and
//! candidate extensions, the candidate's extra time) and the union of the
//! plan's, the room's and the candidate's pauses.
//!
//! The clock knows only pause logs and seconds: the plan, the room and the
//! candidate each hand it their [`ClockShare`], so it depends on none of them.

use super::error::DomainError;
use super::spec::MAX_DURATION_S;
use super::time::{PauseLog, Timestamp, active_millis, any_paused};

/// The longest single extension: a day.
pub const MAX_EXTENSION_S: i64 = 24 * 3600;

/// A log with no pause: the share of a holder that cannot pause.
static NO_PAUSES: PauseLog = PauseLog::new();

/// One holder's part of a candidate's clock: its pauses and the seconds its
/// extensions added.
#[derive(Clone, Copy, Debug)]
pub struct ClockShare<'a> {
    pub pauses: &'a PauseLog,
    pub extension_s: i64,
}

impl ClockShare<'_> {
    /// No pause, no extension.
    pub fn none() -> ClockShare<'static> {
        ClockShare {
            pauses: &NO_PAUSES,
            extension_s: 0,
        }
    }
}

/// Everything one candidate's remaining time depends on.
#[derive(Clone, Copy, Debug)]
pub struct CandidateClock<'a> {
    pub duration_s: i64,
    pub extra_time_s: i64,
    /// The plan's actual start (none yet: the whole allowance remains).
    pub started_at: Option<Timestamp>,
    /// The plan's end: the clock stops there.
    pub ended_at: Option<Timestamp>,
    pub plan: ClockShare<'a>,
    pub room: ClockShare<'a>,
    pub candidate: ClockShare<'a>,
}

impl CandidateClock<'_> {
    /// The candidate's total time in milliseconds.
    pub fn allowance_millis(&self) -> i64 {
        let seconds = self
            .duration_s
            .saturating_add(self.plan.extension_s)
            .saturating_add(self.room.extension_s)
            .saturating_add(self.extra_time_s)
            .saturating_add(self.candidate.extension_s);
        seconds.saturating_mul(1000)
    }

    fn pause_logs(&self) -> [&PauseLog; 3] {
        [self.plan.pauses, self.room.pauses, self.candidate.pauses]
    }

    /// Returns whether any holder (plan, room, candidate) has the clock paused.
    pub fn is_frozen(&self) -> bool {
        any_paused(&self.pause_logs())
    }

    /// Milliseconds left at `now`; the whole allowance before the start, never
    /// below zero. Once the plan has ended the clock stops where it was.
    pub fn remaining_millis(&self, now: Timestamp) -> i64 {
        let Some(started_at) = self.started_at else {
            return self.allowance_millis();
        };
        let until = match self.ended_at {
            Some(ended_at) => now.min(ended_at),
            None => now,
        };
        let used = active_millis(started_at, until, &self.pause_logs());
        (self.allowance_millis() - used).max(0)
    }

    /// Whole seconds left, rounded up so a client never shows 0 while time remains.
    pub fn remaining_s(&self, now: Timestamp) -> i64 {
        (self.remaining_millis(now) + 999) / 1000
    }

    /// The instant the time runs out if nothing changes, or `None` while
    /// frozen, before the start or after the plan ended.
    pub fn ends_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.started_at.is_none() || self.ended_at.is_some() || self.is_frozen() {
            return None;
        }
        Some(now.plus_millis(self.remaining_millis(now)))
    }
}

/// Checks one extension against the per-command and total bounds.
pub(crate) fn check_extension(seconds: i64, already_s: i64) -> Result<(), DomainError> {
    let max = MAX_EXTENSION_S;
    if !(1..=max).contains(&seconds) || already_s.saturating_add(seconds) > MAX_DURATION_S {
        return Err(DomainError::InvalidExtension { max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn pauses_freeze_and_extensions_add() {
        let mut plan_pauses = PauseLog::default();
        let no_pauses = PauseLog::default();
        let clock = |plan_pauses: &PauseLog, room_extension_s: i64, now: Timestamp| {
            let clock = CandidateClock {
                duration_s: 100,
                extra_time_s: 20,
                started_at: Some(t(0)),
                ended_at: None,
                plan: ClockShare {
                    pauses: plan_pauses,
                    extension_s: 0,
                },
                room: ClockShare {
                    pauses: &no_pauses,
                    extension_s: room_extension_s,
                },
                candidate: ClockShare::none(),
            };
            (clock.remaining_s(now), clock.ends_at(now))
        };
        assert_eq!(clock(&plan_pauses, 0, t(10)).0, 110);
        plan_pauses.open(t(10));
        assert_eq!(clock(&plan_pauses, 0, t(50)), (110, None));
        plan_pauses.close(t(50));
        assert_eq!(clock(&plan_pauses, 30, t(60)), (130, Some(t(190))));
        assert_eq!(clock(&plan_pauses, 30, t(1_000)).0, 0);
    }

    #[test]
    fn nothing_runs_before_the_start_and_the_end_stops_the_clock() {
        let mut clock = CandidateClock {
            duration_s: 100,
            extra_time_s: 0,
            started_at: None,
            ended_at: None,
            plan: ClockShare::none(),
            room: ClockShare::none(),
            candidate: ClockShare::none(),
        };
        assert_eq!(
            (clock.remaining_s(t(500)), clock.ends_at(t(500))),
            (100, None)
        );
        clock.started_at = Some(t(0));
        clock.ended_at = Some(t(40));
        assert_eq!((clock.remaining_s(t(90)), clock.ends_at(t(90))), (60, None));
    }

    #[test]
    fn an_extension_is_bounded_alone_and_in_total() {
        assert!(check_extension(1, 0).is_ok());
        assert!(check_extension(0, 0).is_err());
        assert!(check_extension(MAX_EXTENSION_S + 1, 0).is_err());
        assert!(check_extension(10, MAX_DURATION_S - 5).is_err());
    }
}
