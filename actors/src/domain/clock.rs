//! The exam clock of one candidate, computed rather than ticked: remaining
//! time follows from the actual start, the allowance (duration, plan, room and
//! candidate extensions, the candidate's extra time) and the union of the
//! plan's, the room's and the candidate's pauses.

use super::candidate::CandidateRuntime;
use super::plan::PlanRuntime;
use super::room::RoomRuntime;
use super::time::{Timestamp, active_millis, any_paused};

/// Everything one candidate's remaining time depends on.
#[derive(Clone, Copy, Debug)]
pub struct CandidateClock<'a> {
    pub duration_s: i64,
    pub extra_time_s: i64,
    pub plan: &'a PlanRuntime,
    pub room: &'a RoomRuntime,
    pub candidate: &'a CandidateRuntime,
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

    /// Returns whether any holder (plan, room, candidate) has the clock paused.
    pub fn is_frozen(&self) -> bool {
        any_paused(&[&self.plan.pauses, &self.room.pauses, &self.candidate.pauses])
    }

    /// Milliseconds left at `now`; the whole allowance before the start, never
    /// below zero. Once the plan has ended the clock stops where it was.
    pub fn remaining_millis(&self, now: Timestamp) -> i64 {
        let Some(started_at) = self.plan.started_at else {
            return self.allowance_millis();
        };
        let until = match self.plan.ended_at {
            Some(ended_at) => now.min(ended_at),
            None => now,
        };
        let used = active_millis(
            started_at,
            until,
            &[&self.plan.pauses, &self.room.pauses, &self.candidate.pauses],
        );
        (self.allowance_millis() - used).max(0)
    }

    /// Whole seconds left, rounded up so a client never shows 0 while time remains.
    pub fn remaining_s(&self, now: Timestamp) -> i64 {
        (self.remaining_millis(now) + 999) / 1000
    }

    /// The instant the time runs out if nothing changes, or `None` while
    /// frozen, before the start or after the plan ended.
    pub fn ends_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.plan.started_at.is_none() || self.plan.ended_at.is_some() || self.is_frozen() {
            return None;
        }
        Some(now.plus_millis(self.remaining_millis(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::PlanCommand;
    use crate::domain::room::RoomCommand;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn pauses_freeze_and_extensions_add() {
        let mut plan = PlanRuntime::default();
        let mut room = RoomRuntime::default();
        let candidate = CandidateRuntime::default();
        plan.handle(&PlanCommand::Start, t(0)).unwrap();
        room.handle(&RoomCommand::Start, t(0)).unwrap();
        fn clock<'a>(
            plan: &'a PlanRuntime,
            room: &'a RoomRuntime,
            candidate: &'a CandidateRuntime,
        ) -> CandidateClock<'a> {
            CandidateClock {
                duration_s: 100,
                extra_time_s: 20,
                plan,
                room,
                candidate,
            }
        }
        assert_eq!(clock(&plan, &room, &candidate).remaining_s(t(10)), 110);
        plan.handle(&PlanCommand::Pause, t(10)).unwrap();
        assert_eq!(clock(&plan, &room, &candidate).remaining_s(t(50)), 110);
        assert_eq!(clock(&plan, &room, &candidate).ends_at(t(50)), None);
        plan.handle(&PlanCommand::Resume, t(50)).unwrap();
        room.handle(&RoomCommand::Extend { seconds: 30 }, t(50))
            .unwrap();
        assert_eq!(clock(&plan, &room, &candidate).remaining_s(t(60)), 130);
        assert_eq!(clock(&plan, &room, &candidate).ends_at(t(60)), Some(t(190)));
        assert_eq!(clock(&plan, &room, &candidate).remaining_s(t(1_000)), 0);
    }
}
