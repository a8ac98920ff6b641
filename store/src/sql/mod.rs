//! The durable store on sqlx: Postgres in cluster mode, SQLite embedded. Both
//! run the same queries (written with `$N` placeholders, which SQLite reads
//! as numbered parameters); [`on_backend!`] expands a body once per concrete
//! pool type so there is no trait-bound maze and no second copy to drift.
//! Where the dialects differ, the code matches on the backend explicitly.
//!
//! # Layout
//! - `mod.rs`: connection, migrations, transactions
//! - `plans`: [`PlanStore`](invigil_actors::ports::PlanStore)
//! - `results`: the snapshot read behind a plan's results
//! - `journal`: [`Journal`](invigil_actors::ports::Journal)
//! - `leases`: [`LeaseStore`](invigil_actors::ports::LeaseStore)
//! - `files`: [`FileStore`](invigil_actors::ports::FileStore)
//! - `rows`: JSON columns and row conversions

mod files;
mod journal;
mod leases;
mod plans;
mod results;
mod rows;
mod stats;

use std::str::FromStr;
use std::time::Duration;

use invigil_actors::error::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::error::from_sqlx;

/// Expands `$body` once for each backend with `$pool` bound to the concrete pool.
macro_rules! on_backend {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::sql::Backend::Postgres($pool) => $body,
            $crate::sql::Backend::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use on_backend;

/// Which database a [`SqlStore`] talks to.
#[derive(Clone, Debug)]
pub enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// How to connect.
#[derive(Clone, Debug)]
pub struct SqlOptions {
    /// `postgres://…` or `sqlite://path` (`sqlite:` plus a file path).
    pub url: String,
    pub max_connections: u32,
    /// How long a caller waits for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// SQLite: fsync every commit (`synchronous=FULL`). Group commit amortizes
    /// it; turning it off trades power-loss safety for latency.
    pub sqlite_full_sync: bool,
    /// Postgres ends a session that sits inside a transaction this long
    /// without sending anything (`idle_in_transaction_session_timeout`). A
    /// node stalled mid-write (SIGSTOP, a VM freeze) would otherwise keep
    /// its shard lease rows locked, and no other node could take them over.
    /// invigil never pauses inside a transaction, so only a stall trips it;
    /// the stalled write is rolled back and was never acknowledged.
    pub idle_in_transaction_timeout: Duration,
}

impl SqlOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            sqlite_full_sync: true,
            idle_in_transaction_timeout: Duration::from_secs(2),
        }
    }
}

/// The durable store. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pub(crate) backend: Backend,
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqlStore {
    /// Connects (lazily for Postgres, so a node starts while the database is
    /// still coming up; `/readyz` tells when it is reachable).
    pub async fn connect(options: &SqlOptions) -> Result<Self, StoreError> {
        let url = options.url.as_str();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .map_err(|error| bad_url(url, error))?
                .options([(
                    "idle_in_transaction_session_timeout",
                    options.idle_in_transaction_timeout.as_millis().max(1),
                )]);
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_lazy_with(connect);
            Ok(Self {
                backend: Backend::Postgres(pool),
            })
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|error| bad_url(url, error))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if options.sqlite_full_sync {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections.clamp(1, 8))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await
                .map_err(from_sqlx)?;
            Ok(Self {
                backend: Backend::Sqlite(pool),
            })
        } else {
            Err(StoreError::Internal(format!(
                "unsupported database url {:?}: use postgres://… or sqlite:…",
                redact_url(url)
            )))
        }
    }

    /// Wraps an existing Postgres pool (tests use a schema per test).
    pub fn from_postgres(pool: PgPool) -> Self {
        Self {
            backend: Backend::Postgres(pool),
        }
    }

    /// The pool, for tests and tools that inspect tables directly.
    pub fn backend_for_tests(&self) -> &Backend {
        &self.backend
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
            Backend::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
        };
        result.map_err(|error| StoreError::Internal(format!("migration failed: {error}")))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()).map_err(from_sqlx))
    }

    /// The statement that begins a writing transaction. SQLite takes the
    /// write lock up front (`BEGIN IMMEDIATE`) so a read-then-write
    /// transaction cannot fail half-way on a busy snapshot; Postgres relies on
    /// row locks (`FOR UPDATE`, `FOR SHARE`) where it matters.
    pub(crate) fn begin_write_sql(&self) -> &'static str {
        self.dialect("BEGIN", "BEGIN IMMEDIATE")
    }

    /// Picks the statement written for this backend's dialect.
    pub(crate) fn dialect(&self, postgres: &'static str, sqlite: &'static str) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => postgres,
            Backend::Sqlite(_) => sqlite,
        }
    }

    pub async fn close(&self) {
        on_backend!(self, pool => pool.close().await)
    }
}

fn bad_url(url: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!(
        "invalid database url {:?}: {error}",
        redact_url(url)
    ))
}

/// Hides passwords in a URL for messages: the `user:password@` part and
/// any `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &base[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &base[..scheme_end + 3],
                    &credentials[..colon],
                    &base[at..]
                ),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    match query {
        None => base,
        Some(query) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|parameter| match parameter.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => parameter.to_string(),
                })
                .collect();
            format!("{base}?{}", parameters.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_do_not_print() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:data/x.db"), "sqlite:data/x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
    }
}
