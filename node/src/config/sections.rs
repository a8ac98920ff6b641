//! The configuration's sections, field by field, with their defaults.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The largest `files.max_bytes`: an upload is held in memory and stored
/// as one value, and both databases cap a value near 1 GB.
pub(super) const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

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
    /// An OpenTelemetry collector's OTLP/HTTP address (`http://host:4318`,
    /// or the whole traces URL): spans are exported there as JSON. Empty:
    /// no spans leave the node.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
            otlp_endpoint: None,
        }
    }
}

/// Prometheus metrics (docs/observability.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `false`: nothing is recorded and `GET /metrics` is 404.
    pub enabled: bool,
    /// Serve `GET /metrics` on its own address (e.g. `0.0.0.0:9464`) instead
    /// of the API's; empty: on the API's address.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
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
    pub metrics: MetricsSection,
}
