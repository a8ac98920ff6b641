//! A candidate's connection, tracked apart from their exam state: online,
//! stale or offline, from socket events and heartbeats, with hysteresis so a
//! late heartbeat or a quick reconnect is not a disconnect.
//!
//! - online: a socket is open and something was heard within `stale_after`
//! - stale: nothing heard for `stale_after` (2.5 heartbeat periods), or the
//!   socket closed less than `offline_after` ago
//! - offline: no socket for `offline_after`, or silence for `offline_after`
//!   (6 heartbeat periods) on an open socket

use serde::{Deserialize, Serialize};

use super::time::Timestamp;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Stale,
    #[default]
    Offline,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Stale => "stale",
            Self::Offline => "offline",
        }
    }
}

/// The thresholds, from the plan's heartbeat period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hysteresis {
    pub stale_after_ms: i64,
    pub offline_after_ms: i64,
}

impl Hysteresis {
    pub fn from_heartbeat(heartbeat_s: i64) -> Self {
        let period = heartbeat_s.max(1) * 1000;
        Self {
            stale_after_ms: period * 5 / 2,
            offline_after_ms: period * 6,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    presence: Presence,
    socket_open: bool,
    last_heard: Option<Timestamp>,
    closed_at: Option<Timestamp>,
}

impl Connection {
    pub fn presence(&self) -> Presence {
        self.presence
    }

    pub fn socket_open(&self) -> bool {
        self.socket_open
    }

    pub fn last_heard(&self) -> Option<Timestamp> {
        self.last_heard
    }

    /// A socket opened (hello accepted). Returns the new presence if it changed.
    pub fn opened(&mut self, now: Timestamp) -> Option<Presence> {
        self.socket_open = true;
        self.closed_at = None;
        self.last_heard = Some(now);
        self.set(Presence::Online)
    }

    /// A frame arrived on the open socket.
    pub fn heard(&mut self, now: Timestamp) -> Option<Presence> {
        self.last_heard = Some(now);
        if self.socket_open {
            self.set(Presence::Online)
        } else {
            None
        }
    }

    /// The socket closed: stale at once, offline unless it comes back soon.
    pub fn closed(&mut self, now: Timestamp) -> Option<Presence> {
        if !self.socket_open {
            return None;
        }
        self.socket_open = false;
        self.closed_at = Some(now);
        self.set(Presence::Stale)
    }

    /// The socket was declared dead after `offline_after` of silence: the
    /// candidate has been gone that long already, so offline at once.
    pub fn dead(&mut self) -> Option<Presence> {
        self.socket_open = false;
        self.closed_at = None;
        self.set(Presence::Offline)
    }

    /// Re-evaluates with the passage of time. Returns the new presence if it
    /// changed.
    pub fn evaluate(&mut self, now: Timestamp, thresholds: Hysteresis) -> Option<Presence> {
        let target = if self.socket_open {
            let silent = self
                .last_heard
                .map_or(i64::MAX, |heard| now.millis_since(heard));
            if silent >= thresholds.offline_after_ms {
                Presence::Offline
            } else if silent >= thresholds.stale_after_ms {
                Presence::Stale
            } else {
                Presence::Online
            }
        } else {
            match self.closed_at {
                Some(closed_at) if now.millis_since(closed_at) < thresholds.offline_after_ms => {
                    Presence::Stale
                }
                _ => Presence::Offline,
            }
        };
        self.set(target)
    }

    /// Returns whether an open socket has been silent long enough to be
    /// considered dead (the gateway then closes it).
    pub fn is_dead(&self, now: Timestamp, thresholds: Hysteresis) -> bool {
        self.socket_open
            && self
                .last_heard
                .is_some_and(|heard| now.millis_since(heard) >= thresholds.offline_after_ms)
    }

    fn set(&mut self, presence: Presence) -> Option<Presence> {
        (self.presence != presence).then(|| {
            self.presence = presence;
            presence
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    const TEN_SECONDS: Hysteresis = Hysteresis {
        stale_after_ms: 25_000,
        offline_after_ms: 60_000,
    };

    #[test]
    fn one_late_heartbeat_is_not_a_disconnect() {
        let mut connection = Connection::default();
        assert_eq!(connection.opened(t(0)), Some(Presence::Online));
        // The heartbeat due at 10 s arrives at 19 s: still online.
        assert_eq!(connection.evaluate(t(19), TEN_SECONDS), None);
        connection.heard(t(19));
        assert_eq!(connection.evaluate(t(40), TEN_SECONDS), None);
        assert_eq!(
            connection.evaluate(t(44), TEN_SECONDS),
            Some(Presence::Stale)
        );
        assert_eq!(connection.heard(t(45)), Some(Presence::Online));
        assert_eq!(
            connection.evaluate(t(105), TEN_SECONDS),
            Some(Presence::Offline)
        );
        assert!(connection.is_dead(t(105), TEN_SECONDS));
    }

    #[test]
    fn a_quick_reconnect_never_goes_offline() {
        let mut connection = Connection::default();
        connection.opened(t(0));
        assert_eq!(connection.closed(t(5)), Some(Presence::Stale));
        assert_eq!(connection.evaluate(t(30), TEN_SECONDS), None);
        assert_eq!(connection.opened(t(31)), Some(Presence::Online));
        connection.closed(t(40));
        assert_eq!(
            connection.evaluate(t(100), TEN_SECONDS),
            Some(Presence::Offline)
        );
        assert_eq!(
            connection.closed(t(101)),
            None,
            "closing twice changes nothing"
        );
    }
}
