//! [`RedisConnection`]: the one multiplexed connection a node's Redis
//! adapters share, with the bounds that keep a dead Redis from hanging a
//! caller: every call ends within `op_timeout`, and after a connection
//! failure a circuit breaker fails calls at once for `breaker_cooldown`,
//! then lets a single probe through.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, ErrorKind, RedisError, RedisResult, ServerErrorKind};
use tracing::{info, warn};

use super::RedisOptions;
use super::keys::Keys;
use crate::sql::redact_url;

/// Why a Redis call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Redis answered with an error, or the connection failed.
    Redis(RedisError),
    /// No answer within the time allowed.
    TimedOut(Duration),
    /// A recent failure opened the circuit breaker; Redis was not asked.
    CircuitOpen,
    /// Redis answered something the adapter cannot read.
    Corrupt(String),
}

impl Failure {
    /// The server's error code (`NOGROUP`, `BUSYGROUP`, …), if it sent one.
    pub(crate) fn code(&self) -> Option<&str> {
        match self {
            Self::Redis(error) => error.code(),
            _ => None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(error) => write!(f, "{error}"),
            Self::TimedOut(limit) => write!(f, "no answer within {} ms", limit.as_millis()),
            Self::CircuitOpen => f.write_str("redis failed recently; not retried yet"),
            Self::Corrupt(detail) => write!(f, "unreadable reply: {detail}"),
        }
    }
}

/// A Redis URL the client does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid redis url {url}: {reason}")]
pub struct InvalidRedisUrl {
    /// Redacted.
    pub url: String,
    pub reason: String,
}

/// The shared connection of a node's Redis adapters. Cheap to clone.
#[derive(Clone)]
pub struct RedisConnection {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// Connects lazily and reconnects by itself after a failure.
    manager: ConnectionManager,
    options: RedisOptions,
    keys: Keys,
    redacted_url: String,
    breaker: Breaker,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.inner.redacted_url)
            .field("key_prefix", &self.inner.options.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Prepares the connection without connecting: a node starts while
    /// Redis is down, and the first call (or [`Self::ping`]) connects.
    /// Must be called within a Tokio runtime.
    pub fn new(options: RedisOptions) -> Result<Self, InvalidRedisUrl> {
        let redacted_url = redact_url(&options.url);
        let invalid = |error: RedisError| InvalidRedisUrl {
            url: redacted_url.clone(),
            reason: error.to_string(),
        };
        let client = redis::Client::open(options.url.as_str()).map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.op_timeout))
            .set_response_timeout(Some(options.op_timeout))
            // A short reconnect cycle: once it gives up, the next call that
            // reaches the manager starts another.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(invalid)?;
        let breaker = Breaker::new(options.breaker_cooldown);
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                manager,
                keys: Keys::new(&options.key_prefix),
                options,
                redacted_url,
                breaker,
            }),
        })
    }

    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// The URL with its password masked, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted_url
    }

    /// Checks that Redis answers (connecting if needed); for readiness
    /// checks and a warning at start.
    pub async fn ping(&self) -> Result<(), String> {
        let mut connection = self.manager();
        self.call("ping", async move {
            redis::cmd("PING").query_async::<()>(&mut connection).await
        })
        .await
        .map_err(|failure| failure.to_string())
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The shared multiplexed connection (a cheap handle).
    pub(crate) fn manager(&self) -> ConnectionManager {
        self.inner.manager.clone()
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.inner.options.op_timeout
    }

    /// Opens a connection of its own, for a command that blocks it
    /// server-side (`XREADGROUP … BLOCK`). It has no response timeout: the
    /// caller bounds every command on it.
    pub(crate) async fn dedicated(&self) -> Result<MultiplexedConnection, Failure> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.op_timeout()))
            .set_response_timeout(None);
        let client = self.inner.client.clone();
        self.call("connect", async move {
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        })
        .await
    }

    /// Runs one Redis call within `op_timeout`, through the breaker.
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
        self.call_within(operation, self.op_timeout(), call).await
    }

    /// [`Self::call`] with another limit (a blocking read waits longer).
    pub(crate) async fn call_within<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Failure> {
        let _probe = self.inner.breaker.admit()?;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                Ok(value)
            }
            Ok(Err(error)) => {
                if is_connection_failure(&error) {
                    self.failed(operation, &error.to_string());
                } else {
                    // Redis answered: it is up, whatever it said.
                    self.succeeded();
                }
                Err(Failure::Redis(error))
            }
            Err(_) => {
                self.failed(
                    operation,
                    &format!("no answer within {} ms", limit.as_millis()),
                );
                Err(Failure::TimedOut(limit))
            }
        }
    }

    /// How long the breaker stays open from now; zero when closed.
    pub(crate) fn breaker_remaining(&self) -> Duration {
        self.inner.breaker.remaining()
    }

    fn succeeded(&self) {
        if self.inner.breaker.close() {
            info!(url = %self.inner.redacted_url, "redis reachable again");
        }
    }

    fn failed(&self, operation: &'static str, error: &str) {
        if self.inner.breaker.trip() {
            warn!(
                url = %self.inner.redacted_url,
                operation,
                error,
                "redis unavailable: resume buffers, sessions and the work queue degrade until it is back"
            );
        }
    }
}

/// Errors that say nothing about the data and everything about the link:
/// worth opening the breaker for.
fn is_connection_failure(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || matches!(
            error.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(ServerErrorKind::BusyLoading)
                | ErrorKind::Server(ServerErrorKind::MasterDown)
                | ErrorKind::Server(ServerErrorKind::ReadOnly)
        )
}

/// A circuit breaker: closed (calls pass), open (calls fail at once until
/// the cooldown ends), then half-open (one probe passes; its outcome closes
/// or reopens it).
struct Breaker {
    cooldown: Duration,
    origin: Instant,
    healthy: AtomicBool,
    /// Milliseconds since `origin` until which calls fail at once.
    open_until_ms: AtomicU64,
    /// A half-open probe is in flight.
    probing: Arc<AtomicBool>,
}

/// Releases the half-open probe slot when the probe ends, even if its
/// caller stopped waiting.
pub(crate) struct Probe(Option<Arc<AtomicBool>>);

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(probing) = self.0.take() {
            probing.store(false, Ordering::Release);
        }
    }
}

impl Breaker {
    fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            origin: Instant::now(),
            healthy: AtomicBool::new(true),
            open_until_ms: AtomicU64::new(0),
            probing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn admit(&self) -> Result<Probe, Failure> {
        if self.healthy.load(Ordering::Acquire) {
            return Ok(Probe(None));
        }
        if self.now_ms() < self.open_until_ms.load(Ordering::Acquire) {
            return Err(Failure::CircuitOpen);
        }
        // Half-open: one caller probes, the others keep failing fast.
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Ok(Probe(Some(self.probing.clone())))
        } else {
            Err(Failure::CircuitOpen)
        }
    }

    fn remaining(&self) -> Duration {
        if self.healthy.load(Ordering::Acquire) {
            return Duration::ZERO;
        }
        let until = self.open_until_ms.load(Ordering::Acquire);
        Duration::from_millis(until.saturating_sub(self.now_ms()))
    }

    /// Opens the breaker; returns whether it was closed before.
    fn trip(&self) -> bool {
        let cooldown = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX);
        self.open_until_ms
            .store(self.now_ms().saturating_add(cooldown), Ordering::Release);
        self.healthy.swap(false, Ordering::AcqRel)
    }

    /// Closes the breaker; returns whether it was open before.
    fn close(&self) -> bool {
        !self.healthy.swap(true, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_fails_fast_then_lets_one_probe_through() {
        let breaker = Breaker::new(Duration::from_millis(30));
        assert!(breaker.admit().is_ok(), "closed");
        assert!(breaker.trip(), "was closed");
        assert!(!breaker.trip(), "already open");
        assert!(matches!(breaker.admit(), Err(Failure::CircuitOpen)));
        std::thread::sleep(Duration::from_millis(40));
        let probe = breaker.admit().expect("the probe passes");
        assert!(
            matches!(breaker.admit(), Err(Failure::CircuitOpen)),
            "one probe at a time"
        );
        drop(probe);
        assert!(breaker.admit().is_ok(), "the slot is free again");
        assert!(breaker.close(), "was open");
        assert!(breaker.admit().is_ok());
        assert_eq!(breaker.remaining(), Duration::ZERO);
    }
}
