//! Failed-login limiting: after too many failures for one account within a
//! window, further attempts are refused until the window ends. In memory per
//! node; the Redis hot state takes this over in cluster mode.

use std::collections::HashMap;
use std::sync::Mutex;

use invigil_actors::domain::Timestamp;

/// Above this many tracked accounts, expired windows are swept.
const SWEEP_ABOVE: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    started_at: Timestamp,
    failures: u32,
}

pub struct LoginLimiter {
    max_failures: u32,
    window_ms: i64,
    /// Failures per account. A std mutex: held only for map operations, never across an await.
    windows: Mutex<HashMap<String, Window>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window_s: i64) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window_ms: window_s.max(1) * 1000,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the seconds until `account` may try again, if it is blocked.
    pub fn blocked_for(&self, account: &str, now: Timestamp) -> Option<i64> {
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = windows.get(account)?;
        let ends_at = window.started_at.plus_millis(self.window_ms);
        (window.failures >= self.max_failures && ends_at > now)
            .then(|| (ends_at.millis_since(now) + 999) / 1000)
    }

    pub fn record_failure(&self, account: &str, now: Timestamp) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.len() > SWEEP_ABOVE {
            let window_ms = self.window_ms;
            windows.retain(|_, window| window.started_at.plus_millis(window_ms) > now);
        }
        let window = windows.entry(account.to_string()).or_insert(Window {
            started_at: now,
            failures: 0,
        });
        if window.started_at.plus_millis(self.window_ms) <= now {
            *window = Window {
                started_at: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    pub fn record_success(&self, account: &str) {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let limiter = LoginLimiter::new(3, 60);
        let t = Timestamp::from_millis;
        for _ in 0..2 {
            limiter.record_failure("a", t(0));
        }
        assert_eq!(limiter.blocked_for("a", t(1)), None);
        limiter.record_failure("a", t(1_000));
        assert_eq!(limiter.blocked_for("a", t(1_000)), Some(59));
        assert_eq!(limiter.blocked_for("b", t(1_000)), None);
        assert_eq!(limiter.blocked_for("a", t(60_000)), None);
        limiter.record_failure("a", t(60_000));
        assert_eq!(
            limiter.blocked_for("a", t(60_001)),
            None,
            "a new window starts"
        );
        limiter.record_success("a");
    }
}
