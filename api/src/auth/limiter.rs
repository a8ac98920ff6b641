//! Failed-login limiting per account. An attempt is counted *before* the
//! secret is checked, under one lock, so parallel guesses cannot slip past
//! the limit; a success clears the account. Only existing accounts are
//! tracked (an unknown one has nothing to protect), which bounds the map by
//! the number of accounts.
//!
//! With a shared hot state (Redis, in cluster mode) the failures are also
//! kept there, in a sliding window per account, so guesses spread over
//! several nodes meet one limit: a node refuses an account whose failures
//! across the cluster reached it. Attempts in flight are still counted per
//! node; the shared count catches up as they fail. When the hot state is
//! unreachable the per-node limit still holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use invigil_actors::domain::Timestamp;
use invigil_actors::ports::HotState;
use tracing::debug;

#[derive(Clone, Copy, Debug)]
struct Window {
    started_at: Timestamp,
    attempts: u32,
}

#[derive(Default)]
struct Windows {
    by_account: HashMap<String, Window>,
    last_sweep: Timestamp,
}

pub struct LoginLimiter {
    max_attempts: u32,
    window_ms: i64,
    /// A std mutex: held only for map operations, never across an await.
    windows: Mutex<Windows>,
    /// The cluster's failures per account, when the hot state is shared.
    shared: Option<Arc<dyn HotState>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window_s: i64) -> Self {
        Self {
            max_attempts: max_failures.max(1),
            window_ms: window_s.max(1) * 1000,
            windows: Mutex::new(Windows::default()),
            shared: None,
        }
    }

    /// Also counts failures in `hot`, shared by every node.
    pub fn with_shared(mut self, hot: Arc<dyn HotState>) -> Self {
        self.shared = Some(hot);
        self
    }

    fn shared_key(account: &str) -> String {
        format!("login-failures:{account}")
    }

    /// Returns the seconds to wait when the cluster's failures for
    /// `account` within the window reached the limit.
    pub async fn blocked_across_nodes(&self, account: &str, now: Timestamp) -> Option<i64> {
        let hot = self.shared.as_ref()?;
        let from = now.as_millis() - self.window_ms;
        match hot
            // No upper bound: another node's clock may run slightly ahead.
            .window_count(&Self::shared_key(account), from + 1, i64::MAX)
            .await
        {
            Ok(failures) if failures >= u64::from(self.max_attempts) => Some(self.window_ms / 1000),
            Ok(_) => None,
            Err(error) => {
                debug!(%error, "shared login failures unreadable; the node's own limit applies");
                None
            }
        }
    }

    /// A wrong secret for an existing account.
    pub async fn record_failure(&self, account: &str, now: Timestamp) {
        let Some(hot) = &self.shared else {
            return;
        };
        let member = uuid::Uuid::now_v7().simple().to_string();
        let keep = Duration::from_millis(self.window_ms.unsigned_abs());
        if let Err(error) = hot
            .window_add(&Self::shared_key(account), &member, now.as_millis(), keep)
            .await
        {
            debug!(%error, "shared login failure not recorded");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the seconds until `account` may try again, if it is blocked.
    pub fn blocked_for(&self, account: &str, now: Timestamp) -> Option<i64> {
        let windows = self.lock();
        let window = windows.by_account.get(account)?;
        self.remaining(window, now)
    }

    fn remaining(&self, window: &Window, now: Timestamp) -> Option<i64> {
        let ends_at = window.started_at.plus_millis(self.window_ms);
        (window.attempts >= self.max_attempts && ends_at > now)
            .then(|| (ends_at.millis_since(now) + 999) / 1000)
    }

    /// Counts an attempt on an existing account before its secret is
    /// checked; refuses it (with the seconds to wait) when the limit is
    /// reached.
    pub fn begin_attempt(&self, account: &str, now: Timestamp) -> Result<(), i64> {
        let mut windows = self.lock();
        // Sweep expired windows at most once per window length.
        if now.millis_since(windows.last_sweep) >= self.window_ms {
            let window_ms = self.window_ms;
            windows
                .by_account
                .retain(|_, window| window.started_at.plus_millis(window_ms) > now);
            windows.last_sweep = now;
        }
        let window = windows
            .by_account
            .entry(account.to_string())
            .or_insert(Window {
                started_at: now,
                attempts: 0,
            });
        if window.started_at.plus_millis(self.window_ms) <= now {
            *window = Window {
                started_at: now,
                attempts: 0,
            };
        }
        if let Some(seconds) = self.remaining(window, now) {
            return Err(seconds);
        }
        window.attempts = window.attempts.saturating_add(1);
        Ok(())
    }

    /// A correct secret: the account starts afresh.
    pub fn record_success(&self, account: &str) {
        self.lock().by_account.remove(account);
    }

    /// How many accounts are tracked (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.lock().by_account.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn attempts_are_counted_before_the_check() {
        let limiter = LoginLimiter::new(3, 60);
        // Three guesses in flight at once all count; the fourth is refused
        // even though none has failed yet.
        for _ in 0..3 {
            assert_eq!(limiter.begin_attempt("a", t(0)), Ok(()));
        }
        assert_eq!(limiter.begin_attempt("a", t(1_000)), Err(59));
        assert_eq!(limiter.blocked_for("a", t(1_000)), Some(59));
        assert_eq!(
            limiter.begin_attempt("b", t(1_000)),
            Ok(()),
            "another account is not affected"
        );
        assert_eq!(
            limiter.begin_attempt("a", t(60_000)),
            Ok(()),
            "a new window"
        );
    }

    #[test]
    fn success_clears_and_sweeps_bound_the_map() {
        let limiter = LoginLimiter::new(3, 60);
        limiter.begin_attempt("a", t(0)).unwrap();
        limiter.record_success("a");
        assert_eq!(limiter.tracked(), 0);
        for n in 0..100 {
            limiter.begin_attempt(&format!("x{n}"), t(0)).unwrap();
        }
        assert_eq!(limiter.tracked(), 100);
        limiter.begin_attempt("late", t(61_000)).unwrap();
        assert_eq!(limiter.tracked(), 1, "expired windows were swept");
    }
}
