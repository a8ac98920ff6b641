//! The cluster as the HTTP surface sees it: `GET /api/v1/cluster`,
//! `POST /api/v1/cluster/drain` (X-Api-Key), and forwarding to a shard's
//! owner. The node implements [`ClusterPort`] (membership, placement,
//! transport); single-node there is none and everything is served here.
//!
//! # Forwarding
//! Any node accepts any request. A request that reaches a room or a plan
//! coordinator hosted elsewhere fails here with `not_owner` before it has
//! any effect (the directory refuses before anything is written), and
//! [`Forward`] then sends the buffered request to the shard's owner and
//! returns its answer. While a shard moves (its owner is taking the lease),
//! the request is retried for up to [`FORWARD_PATIENCE`]; after that the
//! client gets the `503 not_owner` problem and retries itself.
//!
//! # Layout
//! - `port`: what the node provides ([`ClusterPort`]) and the types that cross nodes
//! - `forward`: the forwarding middleware and the serving of forwarded requests

mod forward;
pub mod port;

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::payload::Json;

pub use self::forward::{
    FORWARD_PATIENCE, FORWARDED_HEADER, Forward, ForwardEndpoint, into_response, rebuild,
    serve_forwarded,
};
pub use self::port::{
    ClusterPort, ClusterView, DrainView, ForwardedRequest, ForwardedResponse, MemberView, Route,
    ShardView, SocketKind, Tunnel, TunnelFrame, TunnelOpen,
};
use crate::auth::AdminKey;
use crate::error::ApiError;
pub use crate::error::SHARD_HEADER;
use crate::state::AppState;
use crate::tags::ApiTags;

pub struct ClusterApi {
    pub state: AppState,
}

impl ClusterApi {
    fn port(&self) -> Result<&Arc<dyn ClusterPort>, ApiError> {
        self.state.cluster.as_ref().ok_or_else(|| {
            ApiError::not_found(
                "not_clustered",
                "this node runs alone (cluster.enabled = false)",
            )
        })
    }
}

#[OpenApi(prefix_path = "/api/v1")]
impl ClusterApi {
    /// The cluster as this node sees it: members, and every shard's owner and epoch.
    #[oai(path = "/cluster", method = "get", tag = "ApiTags::Operations")]
    async fn cluster(&self, _key: AdminKey) -> Result<Json<ClusterView>, ApiError> {
        Ok(Json(self.port()?.view().await?))
    }

    /// Drains this node: every shard is handed off after its writes are
    /// flushed, its sockets are told to reconnect, then the process exits.
    #[oai(path = "/cluster/drain", method = "post", tag = "ApiTags::Operations")]
    async fn drain(&self, _key: AdminKey) -> Result<Json<DrainView>, ApiError> {
        Ok(Json(self.port()?.drain().await))
    }
}
