//! The settings each part of the node is built with, read off the config:
//! one place maps a config field to the component setting it becomes, so
//! `Application::build` only wires.

use std::net::SocketAddr;
use std::time::Duration;

use invigil_actors::journal_writer::{JournalWriterConfig, WriteMode};
use invigil_actors::live::LiveConfig;
use invigil_actors::workers::ConsumerConfig;
use invigil_api::auth::Argon2Cost;
use invigil_api::body::BodyLimits;
use invigil_api::{ApiSettings, FileSettings};
use invigil_store::{RedisOptions, SqlOptions};

use super::sections::{Config, JournalMode};
use crate::cluster::membership::MembershipConfig;
use crate::cluster::transport::{TlsFiles, TransportConfig};

/// Journal lanes are bounded: more only adds transactions competing for
/// the same cores (docs/architecture.md).
const MAX_JOURNAL_LANES: usize = 64;

impl Config {
    /// The database pool.
    pub fn sql_options(&self) -> SqlOptions {
        let store = &self.store;
        let mut options = SqlOptions::new(store.url.expose());
        options.max_connections = store.max_connections;
        options.acquire_timeout = Duration::from_millis(store.acquire_timeout_ms);
        options.idle_in_transaction_timeout =
            Duration::from_millis(store.idle_in_transaction_timeout_ms);
        options.sqlite_full_sync = store.sqlite_full_sync;
        options
    }

    /// Redis, when `redis.url` is set.
    pub fn redis_options(&self) -> Option<RedisOptions> {
        let redis = &self.redis;
        let mut options = RedisOptions::new(redis.url_opt()?);
        options.key_prefix = redis.key_prefix.clone();
        options.op_timeout = Duration::from_millis(redis.op_timeout_ms);
        options.buffer_ttl = Duration::from_secs(redis.resume_ttl_s);
        Some(options)
    }

    /// How long a shard lease lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.shards.lease_ttl_ms)
    }

    /// The group-commit journal writer.
    pub fn journal_writer(&self) -> JournalWriterConfig {
        let journal = &self.journal;
        JournalWriterConfig {
            max_batch: journal.max_batch,
            linger: Duration::from_millis(journal.linger_ms),
            queue_capacity: journal.queue_capacity,
            max_attempts: 3,
            lanes: journal.lanes.clamp(1, MAX_JOURNAL_LANES),
            mode: match journal.mode {
                JournalMode::Group => WriteMode::Group,
                JournalMode::PerEntry => WriteMode::PerEntry,
            },
        }
    }

    /// Timings and bounds of the live exam.
    pub fn live(&self) -> LiveConfig {
        let live = &self.live;
        LiveConfig {
            tick: Duration::from_millis(live.tick_ms),
            resume_buffer: live.resume_buffer,
            socket_queue: live.socket_queue,
            events_per_minute: live.events_per_minute,
            call_timeout: Duration::from_millis(live.call_timeout_ms),
        }
    }

    /// How the queue workers consume.
    pub fn consumer(&self) -> ConsumerConfig {
        let workers = &self.workers;
        ConsumerConfig {
            batch: workers.batch,
            wait: Duration::from_millis(workers.fetch_wait_ms),
            min_idle: Duration::from_millis(workers.min_idle_ms),
            reclaim_every: Duration::from_millis(workers.reclaim_every_ms),
            max_deliveries: workers.max_deliveries,
        }
    }

    /// The cost of proctor password hashes.
    pub fn argon2_cost(&self) -> Argon2Cost {
        let auth = &self.auth;
        Argon2Cost {
            memory_kib: auth.argon2_memory_kib,
            iterations: auth.argon2_iterations,
            parallelism: auth.argon2_parallelism,
        }
    }

    /// Token lifetimes and the limits of every input of the HTTP surface.
    pub fn api_settings(&self) -> ApiSettings {
        let (auth, limits) = (&self.auth, &self.limits);
        ApiSettings {
            candidate_token_ttl_s: auth.candidate_token_ttl_s,
            proctor_token_ttl_s: auth.proctor_token_ttl_s,
            login_max_failures: auth.login_max_failures,
            login_window_s: auth.login_window_s,
            body_limits: BodyLimits {
                default_bytes: limits.body_bytes,
                import_bytes: limits.import_body_bytes,
            },
            ws_max_message_bytes: limits.ws_message_bytes,
            ws_hello_timeout: Duration::from_millis(limits.ws_hello_timeout_ms),
            ws_frames_per_second: limits.ws_frames_per_second.max(1),
            files: FileSettings {
                max_bytes: self.files.max_bytes,
                cache_max_age: Duration::from_secs(self.files.cache_max_age_s),
            },
        }
    }

    /// The inter-node transport.
    pub fn transport(&self) -> TransportConfig {
        let cluster = &self.cluster;
        TransportConfig {
            node_id: self.node.id.clone(),
            listen: cluster.actor_listen,
            cookie: cluster.cookie.expose().to_string(),
            call_timeout: Duration::from_millis(cluster.call_timeout_ms),
            call_attempts: cluster.call_attempts,
            tls: match (&cluster.tls_cert, &cluster.tls_key, &cluster.tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    ca: ca.into(),
                }),
                _ => None,
            },
        }
    }

    /// Gossip membership for this incarnation (`generation`: its start in
    /// ms), serving HTTP on `local_addr` unless another address is advertised.
    pub fn membership(&self, generation: u64, local_addr: SocketAddr) -> MembershipConfig {
        let cluster = &self.cluster;
        MembershipConfig {
            cluster_id: cluster.cluster_id.clone(),
            node_id: self.node.id.clone(),
            generation,
            gossip_listen: cluster.gossip_listen,
            gossip_advertise: cluster.gossip_advertise.unwrap_or(cluster.gossip_listen),
            seeds: cluster.seeds.clone(),
            gossip_interval: Duration::from_millis(cluster.gossip_interval_ms),
            phi_threshold: cluster.phi_threshold,
            http_addr: cluster.http_advertise.unwrap_or(local_addr).to_string(),
            actor_addr: cluster
                .actor_advertise
                .unwrap_or(cluster.actor_listen)
                .to_string(),
        }
    }
}
