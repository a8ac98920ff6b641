//! What every handler shares.

use std::sync::Arc;

use async_trait::async_trait;
use invigil_actors::exam::Exam;
use invigil_actors::ports::{Clock, FileStore, HotState, PlanStore, StatisticsStore, WorkQueue};

use crate::auth::{AdminKeys, CredentialHasher, LoginLimiter, TokenIssuer};
use crate::body::BodyLimits;
use crate::files::FileSettings;

/// One readiness check's result.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Tells whether this node can serve: the node wires the real checks (store
/// reachable, shard leases held, cluster membership).
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn checks(&self) -> Vec<Check>;
}

/// Token lifetimes and login limits.
#[derive(Clone, Copy, Debug)]
pub struct ApiSettings {
    pub candidate_token_ttl_s: i64,
    pub proctor_token_ttl_s: i64,
    pub login_max_failures: u32,
    pub login_window_s: i64,
    pub body_limits: BodyLimits,
    /// The largest WebSocket message accepted (bigger closes with 1009).
    pub ws_max_message_bytes: usize,
    /// How long a new socket has to send a valid `hello`.
    pub ws_hello_timeout: std::time::Duration,
    /// Frames a socket may send per second; beyond, they are refused.
    pub ws_frames_per_second: u32,
    /// Upload size limit and download caching.
    pub files: FileSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            candidate_token_ttl_s: 12 * 3600,
            proctor_token_ttl_s: 12 * 3600,
            login_max_failures: 10,
            login_window_s: 300,
            body_limits: BodyLimits::default(),
            ws_max_message_bytes: 256 * 1024,
            ws_hello_timeout: std::time::Duration::from_secs(5),
            ws_frames_per_second: 100,
            files: FileSettings::default(),
        }
    }
}

pub struct AppInner {
    pub node_id: String,
    pub plans: Arc<dyn PlanStore>,
    pub files: Arc<dyn FileStore>,
    pub statistics: Arc<dyn StatisticsStore>,
    pub hot: Arc<dyn HotState>,
    pub queue: Arc<dyn WorkQueue>,
    pub exam: Arc<Exam>,
    pub clock: Arc<dyn Clock>,
    pub hasher: CredentialHasher,
    pub tokens: TokenIssuer,
    pub admin_keys: AdminKeys,
    pub readiness: Arc<dyn Readiness>,
    pub settings: ApiSettings,
    pub login_limiter: LoginLimiter,
    /// The cluster (set once at start); none when the node runs alone.
    pub cluster: std::sync::OnceLock<Arc<dyn crate::cluster::ClusterPort>>,
}

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
