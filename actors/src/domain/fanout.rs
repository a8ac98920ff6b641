//! What a plan asks of its rooms and candidates. The plan's lifecycle knows
//! nothing of rooms or candidates; this is where its state turns into their
//! commands: the start begins everyone checked in, the end submits every
//! open sheet and marks who never came absent. The fan-out is domain logic,
//! not wiring.

use super::candidate::{CandidateCommand, SubmitReason};
use super::plan::{PlanRuntime, PlanState};
use super::room::RoomCommand;

/// What the plan's state asks of every room and candidate of the plan,
/// whatever happened before: running → rooms started, candidates who
/// checked in begun; over → rooms ended, sheets submitted, absentees
/// marked. Applying it is idempotent, so it repairs any fan-out that was
/// interrupted.
pub fn implied_commands(plan: &PlanRuntime) -> (Option<RoomCommand>, Option<CandidateCommand>) {
    match plan.state {
        PlanState::InProgress | PlanState::Paused => {
            (Some(RoomCommand::Start), Some(CandidateCommand::Begin))
        }
        PlanState::Ended | PlanState::Finalized => (
            Some(RoomCommand::End),
            Some(CandidateCommand::AutoSubmit {
                reason: SubmitReason::PlanEnded,
            }),
        ),
        PlanState::Scheduled | PlanState::Open => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PlanCommand, Timestamp};

    #[test]
    fn a_running_plan_starts_rooms_and_an_ended_one_submits_every_sheet() {
        let mut plan = PlanRuntime::default();
        assert_eq!(implied_commands(&plan), (None, None));
        let now = Timestamp::from_millis(0);
        for command in [PlanCommand::Open, PlanCommand::Start, PlanCommand::Pause] {
            plan.handle(&command, now).expect("allowed");
        }
        assert_eq!(
            implied_commands(&plan),
            (Some(RoomCommand::Start), Some(CandidateCommand::Begin))
        );
        plan.handle(&PlanCommand::End, now).expect("allowed");
        assert_eq!(
            implied_commands(&plan),
            (
                Some(RoomCommand::End),
                Some(CandidateCommand::AutoSubmit {
                    reason: SubmitReason::PlanEnded
                })
            )
        );
    }
}
