//! Typed, layered configuration: a TOML file, then `INVIGIL_<SECTION>__<KEY>`
//! environment variables. Unknown keys are errors; secrets never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use invigil_actors::domain::ids::id_problem;
use serde::{Deserialize, Serialize};

/// The largest `files.max_bytes`: an upload is held in memory and stored
/// as one value, and both databases cap a value near 1 GB.
const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// A secret value: deserializes from a string, prints as `[redacted]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Unique per node; `[A-Za-z0-9._-]{1,64}`. Required with Postgres
    /// (several nodes share it, and two with one id would take each other's
    /// shards); defaults to `node-1` on SQLite, which only one node uses.
    pub id: String,
    pub listen: SocketAddr,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace_s: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            id: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_s: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// `postgres://…` or `sqlite:path`. May carry a password: printed redacted.
    pub url: Secret,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    /// Postgres: a session idle inside a transaction this long is ended (a
    /// stalled node then cannot hold shard lease rows locked).
    pub idle_in_transaction_timeout_ms: u64,
    pub migrate_on_start: bool,
    /// SQLite only: fsync every commit.
    pub sqlite_full_sync: bool,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite:invigil-data/invigil.db"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            idle_in_transaction_timeout_ms: 2_000,
            migrate_on_start: true,
            sqlite_full_sync: true,
        }
    }
}

/// Redis: hot state (resume buffers, sessions, counters) and the work
/// queue shared by a cluster's nodes. Without a url a node keeps both in
/// process (embedded mode: one node only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]`; absent or empty: in-process
    /// adapters. May carry a password: printed redacted.
    pub url: Option<Secret>,
    /// Put in front of every key (docs/redis-keys.md).
    pub key_prefix: String,
    /// The longest one Redis call may take; a dead Redis costs callers no more.
    pub op_timeout_ms: u64,
    /// How long a candidate's resume buffer and session outlive their last write.
    pub resume_ttl_s: u64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "invigil:".into(),
            op_timeout_ms: 500,
            resume_ttl_s: 24 * 3600,
        }
    }
}

impl RedisSection {
    /// The configured url; `None` means embedded, in-process adapters.
    pub fn url_opt(&self) -> Option<&str> {
        self.url
            .as_ref()
            .map(Secret::expose)
            .filter(|url| !url.is_empty())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Keys the admin server sends as `X-Api-Key`; at least 16 characters each.
    pub api_keys: Vec<Secret>,
    /// Signs bearer tokens (HS256); at least 32 bytes.
    pub jwt_secret: Secret,
    /// Keys candidate access-code hashes; at least 32 bytes. Changing it
    /// invalidates every imported access code.
    pub access_code_secret: Secret,
    pub candidate_token_ttl_s: i64,
    pub proctor_token_ttl_s: i64,
    pub login_max_failures: u32,
    pub login_window_s: i64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            jwt_secret: Secret::default(),
            access_code_secret: Secret::default(),
            candidate_token_ttl_s: 12 * 3600,
            proctor_token_ttl_s: 12 * 3600,
            login_max_failures: 10,
            login_window_s: 300,
            argon2_memory_kib: 7 * 1024,
            argon2_iterations: 5,
            argon2_parallelism: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub body_bytes: usize,
    pub import_body_bytes: usize,
    /// The largest WebSocket message; bigger ones close the socket (1009).
    pub ws_message_bytes: usize,
    /// How long a new socket has to say hello.
    pub ws_hello_timeout_ms: u64,
    /// Frames one socket may send per second.
    pub ws_frames_per_second: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            import_body_bytes: 32 * 1024 * 1024,
            ws_message_bytes: 256 * 1024,
            ws_hello_timeout_ms: 5_000,
            ws_frames_per_second: 100,
        }
    }
}

/// Uploaded files (exam materials), kept in the database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesSection {
    /// The largest file `POST /api/v1/files` accepts; an upload is held in
    /// memory up to this size while it is read and stored.
    pub max_bytes: usize,
    /// `Cache-Control: private, max-age` of downloads (a file id always
    /// names the same bytes).
    pub cache_max_age_s: u64,
}

impl Default for FilesSection {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            cache_max_age_s: 86_400,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSection {
    /// How often rooms re-evaluate clocks and connections.
    pub tick_ms: u64,
    /// Stream frames kept per candidate for resume.
    pub resume_buffer: usize,
    /// Frames queued per socket before it counts as too slow.
    pub socket_queue: usize,
    /// Client events accepted per candidate per minute.
    pub events_per_minute: u32,
    /// How long a request waits for a room or plan actor.
    pub call_timeout_ms: u64,
}

impl Default for LiveSection {
    fn default() -> Self {
        Self {
            tick_ms: 500,
            resume_buffer: 256,
            socket_queue: 1024,
            events_per_minute: 30,
            call_timeout_ms: 5_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    pub max_batch: usize,
    pub linger_ms: u64,
    pub queue_capacity: usize,
    /// `group` (group commit) or `per_entry` (one transaction per write: the
    /// naive baseline for benchmarks; never for an exam).
    pub mode: JournalMode,
    /// Group-commit writers committing in parallel (rooms are spread over them).
    pub lanes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalMode {
    Group,
    PerEntry,
}

impl Default for JournalSection {
    fn default() -> Self {
        Self {
            max_batch: 1_000,
            linger_ms: 1,
            queue_capacity: 16_384,
            mode: JournalMode::Group,
            lanes: 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShardsSection {
    /// A shard lease lasts this long unless renewed (every third of it).
    pub lease_ttl_ms: u64,
}

impl Default for ShardsSection {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 15_000,
        }
    }
}

/// Several identical nodes as one cluster (docs/cluster.md). Off: this node
/// hosts every shard itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    pub enabled: bool,
    /// Nodes only gossip with nodes of the same cluster id.
    pub cluster_id: String,
    /// UDP address of chitchat gossip.
    pub gossip_listen: SocketAddr,
    /// The gossip address other nodes reach this one at (default: gossip_listen).
    pub gossip_advertise: Option<SocketAddr>,
    /// `host:port` gossip addresses of a few nodes to join through.
    pub seeds: Vec<String>,
    pub gossip_interval_ms: u64,
    /// phi-accrual threshold above which a silent member is considered dead.
    pub phi_threshold: f64,
    /// TCP address of the ractor_cluster transport.
    pub actor_listen: SocketAddr,
    /// The actor address other nodes connect to (default: actor_listen).
    pub actor_advertise: Option<SocketAddr>,
    /// The http address published to other nodes (default: node.listen).
    pub http_advertise: Option<SocketAddr>,
    /// Shared secret of the transport's handshake; at least 16 characters.
    pub cookie: Secret,
    /// Timeout of one remote call.
    pub call_timeout_ms: u64,
    /// Attempts of a remote call (the first included).
    pub call_attempts: u32,
    /// Mutual TLS for the transport: this node's certificate chain and key,
    /// and the CA that signs every node's certificate (PEM); all three or
    /// none. Every node certificate carries the DNS name `invigil-node` and
    /// allows server and client auth (docs/cluster.md).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_ca: Option<String>,
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            enabled: false,
            cluster_id: "invigil".into(),
            gossip_listen: SocketAddr::from(([127, 0, 0, 1], 7946)),
            gossip_advertise: None,
            seeds: Vec::new(),
            gossip_interval_ms: 200,
            phi_threshold: 8.0,
            actor_listen: SocketAddr::from(([127, 0, 0, 1], 7947)),
            actor_advertise: None,
            http_advertise: None,
            cookie: Secret::default(),
            call_timeout_ms: 2_000,
            call_attempts: 3,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySection {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it.
    pub log_filter: String,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
        }
    }
}

/// The queue workers every node runs (logs, incident rules, statistics,
/// admin webhook) and the outbox that feeds them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersSection {
    /// Run this node's workers (a node without them still publishes).
    pub enabled: bool,
    /// Entries fetched per round.
    pub batch: usize,
    /// How long a fetch waits for new entries.
    pub fetch_wait_ms: u64,
    /// An entry pending this long belongs to a dead consumer: reclaim it.
    pub min_idle_ms: u64,
    pub reclaim_every_ms: u64,
    /// Deliveries before an entry goes to the dead-letter stream.
    pub max_deliveries: u32,
    /// Payloads the outbox holds while the queue is unreachable.
    pub outbox_capacity: usize,
    /// How often statistics are recomputed.
    pub statistics_refresh_ms: u64,
}

impl Default for WorkersSection {
    fn default() -> Self {
        Self {
            enabled: true,
            batch: 500,
            fetch_wait_ms: 500,
            min_idle_ms: 30_000,
            reclaim_every_ms: 5_000,
            max_deliveries: 5,
            outbox_capacity: 100_000,
            statistics_refresh_ms: 2_000,
        }
    }
}

/// Notifications to the admin server when a plan ends or is finalized.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSection {
    /// `http(s)://…`; empty: no notifications.
    pub url: String,
    /// HMAC-SHA256 key of the `X-Invigil-Signature` header (>= 16 bytes).
    pub secret: Secret,
    /// Per attempt; 0 means the default of 10 s.
    pub timeout_ms: u64,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub store: StoreSection,
    pub redis: RedisSection,
    pub auth: AuthSection,
    pub limits: LimitsSection,
    pub files: FilesSection,
    pub live: LiveSection,
    pub journal: JournalSection,
    pub shards: ShardsSection,
    pub cluster: ClusterSection,
    pub workers: WorkersSection,
    pub webhook: WebhookSection,
    pub telemetry: TelemetrySection,
}

impl Config {
    /// Loads defaults ← `file` ← environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_figment(figment.merge(Self::environment()))
    }

    /// `INVIGIL_<SECTION>__<KEY>`; variables without a section separator
    /// (e.g. test settings) are not configuration.
    fn environment() -> Env {
        Env::prefixed("INVIGIL_")
            .filter(|key| key.as_str().contains("__"))
            .split("__")
    }

    pub fn from_figment(figment: Figment) -> anyhow::Result<Self> {
        let mut config: Config = figment.extract().context("invalid configuration")?;
        if config.node.id.is_empty() && config.store.url.expose().starts_with("sqlite:") {
            config.node.id = "node-1".into();
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.node.id.is_empty() {
            bail!(
                "node.id is required with Postgres: give every node its own (INVIGIL_NODE__ID=…)"
            );
        }
        if let Some(problem) = id_problem(&self.node.id) {
            bail!("node.id {:?} {problem}", self.node.id);
        }
        let auth = &self.auth;
        if auth.api_keys.is_empty() {
            bail!("auth.api_keys needs at least one key (INVIGIL_AUTH__API_KEYS='[\"…\"]')");
        }
        // Short keys only for a node nobody else can reach (the local
        // cluster's documented `local-admin-key`).
        let min_key = if self.node.listen.ip().is_loopback() {
            8
        } else {
            16
        };
        if auth.api_keys.iter().any(|key| key.expose().len() < min_key) {
            bail!(
                "every auth.api_keys entry must be at least 16 characters (8 on a loopback-only node)"
            );
        }
        if auth.jwt_secret.expose().len() < 32 {
            bail!("auth.jwt_secret must be at least 32 bytes");
        }
        if auth.access_code_secret.expose().len() < 32 {
            bail!("auth.access_code_secret must be at least 32 bytes");
        }
        if auth.candidate_token_ttl_s < 60 || auth.proctor_token_ttl_s < 60 {
            bail!("token lifetimes must be at least 60 seconds");
        }
        if auth.argon2_memory_kib < 8 * auth.argon2_parallelism.max(1)
            || auth.argon2_iterations == 0
        {
            bail!("argon2 parameters are too small");
        }
        if self.limits.body_bytes < 1024 || self.limits.import_body_bytes < self.limits.body_bytes {
            bail!(
                "limits.body_bytes must be >= 1024 and limits.import_body_bytes >= limits.body_bytes"
            );
        }
        if self.limits.ws_message_bytes < 1024 || self.limits.ws_hello_timeout_ms < 100 {
            bail!("limits.ws_message_bytes must be >= 1024 and limits.ws_hello_timeout_ms >= 100");
        }
        if !(1024..=MAX_FILE_BYTES).contains(&self.files.max_bytes) {
            bail!("files.max_bytes must be between 1024 and {MAX_FILE_BYTES} (512 MiB)");
        }
        if self.files.cache_max_age_s > 31_536_000 {
            bail!("files.cache_max_age_s must be at most 31536000 (a year)");
        }
        let live = &self.live;
        if live.tick_ms < 10
            || live.resume_buffer == 0
            || live.socket_queue <= live.resume_buffer
            || live.call_timeout_ms < 100
        {
            bail!(
                "live: tick_ms >= 10, resume_buffer > 0, socket_queue > resume_buffer, call_timeout_ms >= 100"
            );
        }
        if self.journal.max_batch == 0 || self.journal.queue_capacity == 0 {
            bail!("journal.max_batch and journal.queue_capacity must be positive");
        }
        let workers = &self.workers;
        if workers.batch == 0
            || workers.batch > 10_000
            || workers.fetch_wait_ms == 0
            || workers.min_idle_ms < 1_000
            || workers.reclaim_every_ms == 0
            || workers.max_deliveries == 0
            || workers.outbox_capacity == 0
            || workers.statistics_refresh_ms < 100
        {
            bail!(
                "workers: batch 1..=10000, fetch_wait_ms > 0, min_idle_ms >= 1000, reclaim_every_ms > 0, \
                 max_deliveries > 0, outbox_capacity > 0, statistics_refresh_ms >= 100"
            );
        }
        let webhook = &self.webhook;
        if !webhook.url.is_empty() {
            if !(webhook.url.starts_with("http://") || webhook.url.starts_with("https://")) {
                bail!("webhook.url must start with http:// or https://");
            }
            if webhook.secret.expose().len() < 16 {
                bail!("webhook.secret must be at least 16 bytes when webhook.url is set");
            }
        }
        if !(100..=600_000).contains(&self.store.idle_in_transaction_timeout_ms) {
            bail!("store.idle_in_transaction_timeout_ms must be between 100 and 600000");
        }
        if self.shards.lease_ttl_ms < 300 {
            bail!("shards.lease_ttl_ms must be at least 300");
        }
        let url = self.store.url.expose();
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            bail!("store.url must start with postgres:// or sqlite:");
        }
        self.validate_redis()?;
        self.validate_cluster()
    }

    fn validate_cluster(&self) -> anyhow::Result<()> {
        let cluster = &self.cluster;
        if !cluster.enabled {
            return Ok(());
        }
        if !self.store.url.expose().starts_with("postgres") {
            bail!("cluster.enabled needs a shared Postgres store (store.url = postgres://…)");
        }
        if self.redis.url_opt().is_none() {
            bail!(
                "cluster.enabled needs redis.url: resume buffers must survive a room's move to another node"
            );
        }
        if cluster.cookie.expose().len() < 16 {
            bail!("cluster.cookie must be at least 16 characters, the same on every node");
        }
        if cluster.cluster_id.is_empty() || cluster.cluster_id.len() > 64 {
            bail!("cluster.cluster_id must be 1 to 64 characters");
        }
        if cluster.gossip_listen == cluster.actor_listen {
            bail!("cluster.gossip_listen and cluster.actor_listen must differ");
        }
        for seed in &cluster.seeds {
            if seed
                .rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
            {
                bail!("cluster.seeds: {seed:?} is not host:port");
            }
        }
        if !(20..=5_000).contains(&cluster.gossip_interval_ms) {
            bail!("cluster.gossip_interval_ms must be between 20 and 5000");
        }
        if !(1.0..=100.0).contains(&cluster.phi_threshold) {
            bail!("cluster.phi_threshold must be between 1 and 100");
        }
        if !(50..=60_000).contains(&cluster.call_timeout_ms)
            || !(1..=10).contains(&cluster.call_attempts)
        {
            bail!("cluster.call_timeout_ms must be 50..=60000 and cluster.call_attempts 1..=10");
        }
        let tls = [&cluster.tls_cert, &cluster.tls_key, &cluster.tls_ca];
        if tls.iter().any(|file| file.is_some()) && !tls.iter().all(|file| file.is_some()) {
            bail!("cluster.tls_cert, tls_key and tls_ca go together: all three or none");
        }
        Ok(())
    }

    fn validate_redis(&self) -> anyhow::Result<()> {
        let redis = &self.redis;
        if let Some(url) = redis.url_opt() {
            if url.starts_with("rediss://") {
                bail!(
                    "redis.url: TLS (rediss://) is not supported yet; use redis:// on a private network"
                );
            }
            if !(url.starts_with("redis://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                bail!("redis.url must start with redis:// (or redis+unix:// for a socket)");
            }
        }
        let prefix = &redis.key_prefix;
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            bail!("redis.key_prefix must be 1 to 64 characters without spaces, e.g. \"invigil:\"");
        }
        if !(10..=60_000).contains(&redis.op_timeout_ms) {
            bail!("redis.op_timeout_ms must be between 10 and 60000");
        }
        if !(60..=30 * 86_400).contains(&redis.resume_ttl_s) {
            bail!("redis.resume_ttl_s must be between 60 and 2592000 (30 days)");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its own error type
mod tests {
    use figment::Jail;

    use super::*;

    const VALID: &str = r#"
        [node]
        id = "node-7"
        listen = "127.0.0.1:9000"
        [auth]
        api_keys = ["admin-key-0123456789"]
        jwt_secret = "jwt-secret-0123456789-0123456789-xx"
        access_code_secret = "code-secret-0123456789-0123456789-x"
    "#;

    #[test]
    fn file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            jail.set_env("INVIGIL_NODE__LISTEN", "127.0.0.1:9001");
            jail.set_env("INVIGIL_STORE__MAX_CONNECTIONS", "3");
            jail.set_env("INVIGIL_TEST_PG_URL", "not configuration");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.id, "node-7");
            assert_eq!(config.node.listen.port(), 9001);
            assert_eq!(config.store.max_connections, 3);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_weak_secrets_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("typo.toml", &format!("{VALID}\n[journal]\nmax_bath = 5\n"))?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("typo.toml"))).unwrap_err()
            );
            assert!(error.contains("max_bath"), "{error}");
            jail.create_file(
                "weak.toml",
                &VALID.replace("jwt-secret-0123456789-0123456789-xx", "short"),
            )?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("weak.toml"))).unwrap_err()
            );
            assert!(error.contains("jwt_secret"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn postgres_nodes_need_an_id() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "pg.toml",
                &VALID
                    .replace("id = \"node-7\"", "")
                    .replace("[auth]", "[store]\nurl = \"postgres://h/db\"\n[auth]"),
            )?;
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("pg.toml"))).unwrap_err()
            );
            assert!(error.contains("node.id is required"), "{error}");
            jail.create_file("lite.toml", &VALID.replace("id = \"node-7\"", ""))?;
            let config = Config::load(Some(Path::new("lite.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.node.id, "node-1");
            Ok(())
        });
    }

    #[test]
    fn file_limits_come_from_the_environment_and_are_bounded() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            jail.set_env("INVIGIL_FILES__MAX_BYTES", "1048576");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.files.max_bytes, 1_048_576);
            assert_eq!(config.files.cache_max_age_s, 86_400);
            jail.set_env("INVIGIL_FILES__MAX_BYTES", "100");
            let error = format!(
                "{:#}",
                Config::load(Some(Path::new("node.toml"))).unwrap_err()
            );
            assert!(error.contains("files.max_bytes"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn redis_is_optional_and_checked() {
        Jail::expect_with(|jail| {
            jail.create_file("node.toml", VALID)?;
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.url_opt(), None, "embedded by default");
            assert_eq!(config.redis.key_prefix, "invigil:");

            jail.set_env(
                "INVIGIL_REDIS__URL",
                "redis://:hunter2-password@cache:6379/2",
            );
            jail.set_env("INVIGIL_REDIS__OP_TIMEOUT_MS", "250");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                config.redis.url_opt(),
                Some("redis://:hunter2-password@cache:6379/2")
            );
            assert_eq!(config.redis.op_timeout_ms, 250);
            assert!(
                !format!("{config:?}").contains("hunter2"),
                "the url prints redacted"
            );

            jail.set_env("INVIGIL_REDIS__URL", "");
            let config = Config::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.redis.url_opt(), None, "empty turns Redis off");

            for (key, value, named) in [
                ("INVIGIL_REDIS__URL", "http://cache:6379", "redis.url"),
                ("INVIGIL_REDIS__URL", "rediss://cache:6380", "TLS"),
                ("INVIGIL_REDIS__OP_TIMEOUT_MS", "0", "redis.op_timeout_ms"),
                ("INVIGIL_REDIS__RESUME_TTL_S", "5", "redis.resume_ttl_s"),
                (
                    "INVIGIL_REDIS__KEY_PREFIX",
                    "has space:",
                    "redis.key_prefix",
                ),
            ] {
                jail.clear_env();
                jail.set_env(key, value);
                let error = format!(
                    "{:#}",
                    Config::load(Some(Path::new("node.toml"))).unwrap_err()
                );
                assert!(error.contains(named), "{key}={value}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_print() {
        let mut config = Config::default();
        config.auth.jwt_secret = Secret::new("super-secret-value");
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }
}
