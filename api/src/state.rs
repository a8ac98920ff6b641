//! What every handler shares.

use std::sync::Arc;

use async_trait::async_trait;
use invigil_actors::exam::Exam;
use invigil_actors::ports::{Clock, FileStore, HotState, PlanStore, StatisticsStore, WorkQueue};
use invigil_actors::shard::ShardId;

use crate::auth::{AdminKeys, CredentialHasher, LoginLimiter, TokenIssuer};
use crate::cluster::port::{ClusterPort, Route};
use crate::settings::ApiSettings;

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
    /// The cluster; none when the node runs alone.
    pub cluster: Option<Arc<dyn ClusterPort>>,
    /// The node's instruments.
    pub metrics: invigil_actors::metrics::Metrics,
    /// What `GET /metrics` serves on the API's address; none when metrics
    /// are off or served on their own address.
    pub exposition: Option<Arc<dyn crate::metrics::MetricsExposition>>,
}

/// Shared application state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

impl AppState {
    pub fn new(inner: AppInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl AppInner {
    /// The node that owns `shard`, when it is not this one (cluster).
    pub fn owner_elsewhere(&self, shard: ShardId) -> Option<String> {
        match self.cluster.as_ref()?.route(shard) {
            Route::Node(node) => Some(node),
            Route::Here | Route::Nowhere => None,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}
