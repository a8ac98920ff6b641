//! The plan lifecycle: scheduled → open → in_progress ⇄ paused → ended → finalized.

use serde::{Deserialize, Serialize};

use super::clock::{CandidateClock, ClockShare, check_extension};
use super::error::DomainError;
use super::time::{PauseLog, Timestamp};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    #[default]
    Scheduled,
    Open,
    InProgress,
    Paused,
    Ended,
    Finalized,
}

impl PlanState {
    pub const ALL: [PlanState; 6] = [
        Self::Scheduled,
        Self::Open,
        Self::InProgress,
        Self::Paused,
        Self::Ended,
        Self::Finalized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Open => "open",
            Self::InProgress => "in_progress",
            Self::Paused => "paused",
            Self::Ended => "ended",
            Self::Finalized => "finalized",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    /// Returns whether the exam clock has started (running or paused).
    pub fn is_running(self) -> bool {
        matches!(self, Self::InProgress | Self::Paused)
    }

    /// Returns whether the plan can no longer run.
    pub fn is_over(self) -> bool {
        matches!(self, Self::Ended | Self::Finalized)
    }
}

/// An admin command on a whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PlanCommand {
    Open,
    Start,
    Pause,
    Resume,
    Extend { seconds: i64 },
    End,
    Finalize,
}

/// What happened to a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PlanEvent {
    Opened { at: Timestamp },
    Started { at: Timestamp },
    Paused { at: Timestamp },
    Resumed { at: Timestamp },
    Extended { seconds: i64, at: Timestamp },
    Ended { at: Timestamp },
    Finalized { at: Timestamp },
}

impl PlanEvent {
    /// When it happened.
    pub fn at(&self) -> Timestamp {
        match *self {
            Self::Opened { at }
            | Self::Started { at }
            | Self::Paused { at }
            | Self::Resumed { at }
            | Self::Extended { at, .. }
            | Self::Ended { at }
            | Self::Finalized { at } => at,
        }
    }

    /// The event's name as recorded in the transition log.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "opened",
            Self::Started { .. } => "started",
            Self::Paused { .. } => "paused",
            Self::Resumed { .. } => "resumed",
            Self::Extended { .. } => "extended",
            Self::Ended { .. } => "ended",
            Self::Finalized { .. } => "finalized",
        }
    }
}

/// The changing part of a plan; the static part is its [`super::spec::PlanSpec`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRuntime {
    pub state: PlanState,
    pub opened_at: Option<Timestamp>,
    /// The actual start; the exam clock runs from here.
    pub started_at: Option<Timestamp>,
    pub pauses: PauseLog,
    /// Sum of plan-wide extensions.
    pub extension_s: i64,
    pub ended_at: Option<Timestamp>,
    pub finalized_at: Option<Timestamp>,
}

impl PlanRuntime {
    /// Decides what `command` does now, without changing anything.
    pub fn decide(
        &self,
        command: &PlanCommand,
        now: Timestamp,
    ) -> Result<Vec<PlanEvent>, DomainError> {
        use PlanState::*;
        let state = self.state;
        let events = match (command, state) {
            (_, Finalized) => return Err(DomainError::PlanFinalized),
            (PlanCommand::Open, Scheduled) => vec![PlanEvent::Opened { at: now }],
            (PlanCommand::Open, Open) => vec![],
            (PlanCommand::Open, InProgress | Paused) => {
                return Err(DomainError::PlanAlreadyStarted);
            }
            (PlanCommand::Start, Scheduled) => {
                vec![
                    PlanEvent::Opened { at: now },
                    PlanEvent::Started { at: now },
                ]
            }
            (PlanCommand::Start, Open) => vec![PlanEvent::Started { at: now }],
            (PlanCommand::Start, InProgress | Paused) => {
                return Err(DomainError::PlanAlreadyStarted);
            }
            (PlanCommand::Pause, InProgress) => {
                if !self.pauses.has_room_for_another() {
                    return Err(DomainError::TooManyPauses);
                }
                vec![PlanEvent::Paused { at: now }]
            }
            (PlanCommand::Pause, Paused) => return Err(DomainError::PlanAlreadyPaused),
            (PlanCommand::Pause, Scheduled | Open) => return Err(DomainError::PlanNotRunning),
            (PlanCommand::Resume, Paused) => vec![PlanEvent::Resumed { at: now }],
            (PlanCommand::Resume, InProgress) => return Err(DomainError::PlanNotPaused),
            (PlanCommand::Resume, Scheduled | Open) => return Err(DomainError::PlanNotRunning),
            (PlanCommand::Extend { seconds }, InProgress | Paused) => {
                check_extension(*seconds, self.extension_s)?;
                vec![PlanEvent::Extended {
                    seconds: *seconds,
                    at: now,
                }]
            }
            (PlanCommand::Extend { .. }, Scheduled | Open) => {
                return Err(DomainError::PlanNotRunning);
            }
            (PlanCommand::End, Scheduled | Open | InProgress | Paused) => {
                vec![PlanEvent::Ended { at: now }]
            }
            (PlanCommand::Finalize, Ended) => vec![PlanEvent::Finalized { at: now }],
            (PlanCommand::Finalize, _) => return Err(DomainError::PlanNotEnded),
            (_, Ended) => return Err(DomainError::PlanEnded),
        };
        Ok(events)
    }

    /// Applies an event that [`Self::decide`] produced (now or in the past).
    pub fn apply(&mut self, event: &PlanEvent) {
        match *event {
            PlanEvent::Opened { at } => {
                self.state = PlanState::Open;
                self.opened_at = Some(at);
            }
            PlanEvent::Started { at } => {
                self.state = PlanState::InProgress;
                self.started_at = Some(at);
            }
            PlanEvent::Paused { at } => {
                self.state = PlanState::Paused;
                self.pauses.open(at);
            }
            PlanEvent::Resumed { at } => {
                self.state = PlanState::InProgress;
                self.pauses.close(at);
            }
            PlanEvent::Extended { seconds, .. } => {
                self.extension_s = self.extension_s.saturating_add(seconds);
            }
            PlanEvent::Ended { at } => {
                self.state = PlanState::Ended;
                self.pauses.close(at);
                self.ended_at = Some(at);
            }
            PlanEvent::Finalized { at } => {
                self.state = PlanState::Finalized;
                self.finalized_at = Some(at);
            }
        }
    }

    /// Decides and applies `command`, returning the events to record.
    pub fn handle(
        &mut self,
        command: &PlanCommand,
        now: Timestamp,
    ) -> Result<Vec<PlanEvent>, DomainError> {
        let events = self.decide(command, now)?;
        events.iter().for_each(|event| self.apply(event));
        Ok(events)
    }

    /// The plan's part of its candidates' clocks.
    pub fn clock_share(&self) -> ClockShare<'_> {
        ClockShare {
            pauses: &self.pauses,
            extension_s: self.extension_s,
        }
    }

    /// The plan's own clock: the time of a candidate without extra time,
    /// extensions or pauses of their own, in a room that never paused.
    pub fn clock(&self, duration_s: i64) -> CandidateClock<'_> {
        CandidateClock {
            duration_s,
            extra_time_s: 0,
            started_at: self.started_at,
            ended_at: self.ended_at,
            plan: self.clock_share(),
            room: ClockShare::none(),
            candidate: ClockShare::none(),
        }
    }

    /// Returns whether a candidate may still check in at `now`.
    pub fn admits_check_in(&self, late_entry_s: i64, now: Timestamp) -> Result<(), DomainError> {
        match self.state {
            PlanState::Scheduled => Err(DomainError::PlanNotOpen),
            PlanState::Open => Ok(()),
            PlanState::InProgress | PlanState::Paused => {
                let started_at = self.started_at.unwrap_or(now);
                if now.millis_since(started_at) <= late_entry_s.saturating_mul(1000) {
                    Ok(())
                } else {
                    Err(DomainError::LateEntryClosed)
                }
            }
            PlanState::Ended | PlanState::Finalized => Err(DomainError::PlanEnded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn the_happy_path() {
        let mut plan = PlanRuntime::default();
        plan.handle(&PlanCommand::Open, t(0)).unwrap();
        plan.handle(&PlanCommand::Start, t(10)).unwrap();
        plan.handle(&PlanCommand::Pause, t(20)).unwrap();
        plan.handle(&PlanCommand::Extend { seconds: 60 }, t(25))
            .unwrap();
        plan.handle(&PlanCommand::Resume, t(30)).unwrap();
        plan.handle(&PlanCommand::End, t(40)).unwrap();
        plan.handle(&PlanCommand::Finalize, t(50)).unwrap();
        assert_eq!(plan.state, PlanState::Finalized);
        assert_eq!(plan.started_at, Some(t(10)));
        assert_eq!(plan.extension_s, 60);
        assert_eq!(plan.pauses.intervals().len(), 1);
    }

    #[test]
    fn start_from_scheduled_opens_first() {
        let mut plan = PlanRuntime::default();
        let events = plan.handle(&PlanCommand::Start, t(5)).unwrap();
        assert_eq!(
            events,
            vec![
                PlanEvent::Opened { at: t(5) },
                PlanEvent::Started { at: t(5) }
            ]
        );
    }

    #[test]
    fn refusals_carry_their_codes() {
        let mut plan = PlanRuntime::default();
        assert_eq!(
            plan.decide(&PlanCommand::Pause, t(0)).unwrap_err().code(),
            "plan_not_running"
        );
        plan.handle(&PlanCommand::Start, t(0)).unwrap();
        assert_eq!(
            plan.decide(&PlanCommand::Start, t(1)).unwrap_err().code(),
            "plan_already_started"
        );
        assert_eq!(
            plan.decide(&PlanCommand::Resume, t(1)).unwrap_err().code(),
            "plan_not_paused"
        );
        assert_eq!(
            plan.decide(&PlanCommand::Extend { seconds: 0 }, t(1))
                .unwrap_err()
                .code(),
            "invalid_extension"
        );
        plan.handle(&PlanCommand::End, t(2)).unwrap();
        assert_eq!(
            plan.decide(&PlanCommand::Pause, t(3)).unwrap_err().code(),
            "plan_ended"
        );
    }

    #[test]
    fn ending_closes_a_running_pause() {
        let mut plan = PlanRuntime::default();
        plan.handle(&PlanCommand::Start, t(0)).unwrap();
        plan.handle(&PlanCommand::Pause, t(10)).unwrap();
        plan.handle(&PlanCommand::End, t(20)).unwrap();
        assert!(!plan.pauses.is_paused());
    }

    #[test]
    fn late_entry_is_wall_time_from_the_actual_start() {
        let mut plan = PlanRuntime::default();
        assert_eq!(
            plan.admits_check_in(60, t(0)),
            Err(DomainError::PlanNotOpen)
        );
        plan.handle(&PlanCommand::Start, t(100)).unwrap();
        assert_eq!(plan.admits_check_in(60, t(160)), Ok(()));
        assert_eq!(
            plan.admits_check_in(60, t(161)),
            Err(DomainError::LateEntryClosed)
        );
    }
}
