//! The room lifecycle: waiting → in_progress ⇄ paused → ended. A room pause
//! freezes the clock of every candidate in the room.

use serde::{Deserialize, Serialize};

use super::clock::{ClockShare, check_extension};
use super::error::DomainError;
use super::time::{PauseLog, Timestamp};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomState {
    #[default]
    Waiting,
    InProgress,
    Paused,
    Ended,
}

impl RoomState {
    pub const ALL: [RoomState; 4] = [Self::Waiting, Self::InProgress, Self::Paused, Self::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Paused => "paused",
            Self::Ended => "ended",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RoomCommand {
    /// The plan started.
    Start,
    Pause,
    Resume,
    Extend {
        seconds: i64,
    },
    /// The plan ended.
    End,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEvent {
    Started { at: Timestamp },
    Paused { at: Timestamp },
    Resumed { at: Timestamp },
    Extended { seconds: i64, at: Timestamp },
    Ended { at: Timestamp },
}

impl RoomEvent {
    pub fn at(&self) -> Timestamp {
        match *self {
            Self::Started { at }
            | Self::Paused { at }
            | Self::Resumed { at }
            | Self::Extended { at, .. }
            | Self::Ended { at } => at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Paused { .. } => "paused",
            Self::Resumed { .. } => "resumed",
            Self::Extended { .. } => "extended",
            Self::Ended { .. } => "ended",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRuntime {
    pub state: RoomState,
    pub pauses: PauseLog,
    /// Sum of room-wide extensions.
    pub extension_s: i64,
}

impl RoomRuntime {
    /// The room's part of its candidates' clocks.
    pub fn clock_share(&self) -> ClockShare<'_> {
        ClockShare {
            pauses: &self.pauses,
            extension_s: self.extension_s,
        }
    }

    pub fn decide(
        &self,
        command: &RoomCommand,
        now: Timestamp,
    ) -> Result<Vec<RoomEvent>, DomainError> {
        use RoomState::*;
        let events = match (command, self.state) {
            (RoomCommand::Start, Waiting) => vec![RoomEvent::Started { at: now }],
            (RoomCommand::Start, _) => vec![],
            (RoomCommand::End, Ended) => vec![],
            (RoomCommand::End, _) => vec![RoomEvent::Ended { at: now }],
            (RoomCommand::Pause, InProgress) => {
                if !self.pauses.has_room_for_another() {
                    return Err(DomainError::TooManyPauses);
                }
                vec![RoomEvent::Paused { at: now }]
            }
            (RoomCommand::Pause, Paused) => return Err(DomainError::RoomAlreadyPaused),
            (RoomCommand::Resume, Paused) => vec![RoomEvent::Resumed { at: now }],
            (RoomCommand::Resume, InProgress) => return Err(DomainError::RoomNotPaused),
            (RoomCommand::Extend { seconds }, InProgress | Paused) => {
                check_extension(*seconds, self.extension_s)?;
                vec![RoomEvent::Extended {
                    seconds: *seconds,
                    at: now,
                }]
            }
            (
                RoomCommand::Pause | RoomCommand::Resume | RoomCommand::Extend { .. },
                Waiting | Ended,
            ) => {
                return Err(DomainError::RoomNotRunning);
            }
        };
        Ok(events)
    }

    pub fn apply(&mut self, event: &RoomEvent) {
        match *event {
            RoomEvent::Started { .. } => self.state = RoomState::InProgress,
            RoomEvent::Paused { at } => {
                self.state = RoomState::Paused;
                self.pauses.open(at);
            }
            RoomEvent::Resumed { at } => {
                self.state = RoomState::InProgress;
                self.pauses.close(at);
            }
            RoomEvent::Extended { seconds, .. } => {
                self.extension_s = self.extension_s.saturating_add(seconds);
            }
            RoomEvent::Ended { at } => {
                self.state = RoomState::Ended;
                self.pauses.close(at);
            }
        }
    }

    pub fn handle(
        &mut self,
        command: &RoomCommand,
        now: Timestamp,
    ) -> Result<Vec<RoomEvent>, DomainError> {
        let events = self.decide(command, now)?;
        events.iter().for_each(|event| self.apply(event));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_needs_a_running_room() {
        let mut room = RoomRuntime::default();
        let now = Timestamp::from_millis(0);
        assert_eq!(
            room.decide(&RoomCommand::Pause, now),
            Err(DomainError::RoomNotRunning)
        );
        room.handle(&RoomCommand::Start, now).unwrap();
        room.handle(&RoomCommand::Pause, now).unwrap();
        assert_eq!(
            room.decide(&RoomCommand::Pause, now),
            Err(DomainError::RoomAlreadyPaused)
        );
        room.handle(&RoomCommand::Resume, now).unwrap();
        room.handle(&RoomCommand::End, now).unwrap();
        assert_eq!(room.state, RoomState::Ended);
        assert_eq!(room.handle(&RoomCommand::End, now), Ok(vec![]));
    }
}
