//! Proctor presence: online while at least one dashboard socket is open.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProctorPresence {
    #[default]
    Offline,
    Online,
}

/// Counts a proctor's open dashboards; a proctor may watch from two devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProctorSessions {
    open: u32,
}

impl ProctorSessions {
    pub fn presence(self) -> ProctorPresence {
        if self.open > 0 {
            ProctorPresence::Online
        } else {
            ProctorPresence::Offline
        }
    }

    /// Records a dashboard opening; returns whether presence changed.
    pub fn connect(&mut self) -> bool {
        self.open = self.open.saturating_add(1);
        self.open == 1
    }

    /// Records a dashboard closing; returns whether presence changed.
    pub fn disconnect(&mut self) -> bool {
        let was_online = self.open > 0;
        self.open = self.open.saturating_sub(1);
        was_online && self.open == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_follows_the_last_dashboard() {
        let mut sessions = ProctorSessions::default();
        assert!(sessions.connect());
        assert!(!sessions.connect());
        assert!(!sessions.disconnect());
        assert_eq!(sessions.presence(), ProctorPresence::Online);
        assert!(sessions.disconnect());
        assert!(!sessions.disconnect());
        assert_eq!(sessions.presence(), ProctorPresence::Offline);
    }
}
