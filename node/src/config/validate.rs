//! What types alone cannot check: sizes, lengths, URL schemes, and the
//! settings a cluster needs.

use anyhow::bail;
use invigil_actors::domain::ids::id_problem;

use super::sections::{Config, MAX_FILE_BYTES};

impl Config {
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
        if let Some(endpoint) = self.telemetry.otlp_endpoint.as_deref()
            && !endpoint.is_empty()
            && !(endpoint.starts_with("http://")
                && endpoint.len() > "http://".len()
                && endpoint.parse::<poem::http::Uri>().is_ok())
        {
            bail!(
                "telemetry.otlp_endpoint must be an http:// address, e.g. http://127.0.0.1:4318 (spans go as OTLP/HTTP JSON; put a local collector in front of a TLS one)"
            );
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
