//! The cluster as the HTTP surface needs it, implemented by the node:
//! where a shard is served, the cluster view, drain, and the two ways to
//! reach another node (a forwarded request, a socket tunnel). Single-node
//! there is no port and everything is served here.

use async_trait::async_trait;
use invigil_actors::shard::ShardId;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::ApiError;

/// Where a shard is served from, by this node's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Here,
    Node(String),
    /// No ready member (the cluster is forming, or this node lost its majority).
    Nowhere,
}

/// An HTTP request carried to another node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardedRequest {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The owner's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ForwardedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    Candidate,
    Proctor,
    /// One room's proctor feed for a proctor socket served by another node.
    ProctorRoom,
}

/// Opens a socket on the owner: what the client presented to the gateway.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TunnelOpen {
    pub kind: SocketKind,
    pub token: String,
    pub ip: Option<String>,
    /// The room of a [`SocketKind::ProctorRoom`] feed.
    #[serde(default)]
    pub room: Option<String>,
    /// The gateway's trace context (W3C), continued by the owner's socket span.
    #[serde(default)]
    pub traceparent: Option<String>,
}

/// One frame through a tunnel, either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", content = "v", rename_all = "snake_case")]
pub enum TunnelFrame {
    Text(String),
    /// A binary frame (refused by the socket code, but passed on).
    Binary,
    Close {
        code: u16,
        reason: String,
    },
}

/// The gateway's ends of a tunnel.
pub struct Tunnel {
    pub to_owner: mpsc::Sender<TunnelFrame>,
    pub from_owner: mpsc::Receiver<TunnelFrame>,
}

/// A member as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, Object)]
pub struct MemberView {
    pub node_id: String,
    pub http_addr: String,
    pub actor_addr: String,
    /// `joining`, `ready` or `draining`.
    pub status: String,
    /// Start time of the member's process (ms since the epoch).
    pub generation: u64,
    /// Open sockets on the member.
    pub load: u64,
}

/// One shard: its owner by placement, and its lease in the store.
#[derive(Clone, Debug, Serialize, Deserialize, Object)]
pub struct ShardView {
    pub shard: u16,
    /// The owner by rendezvous placement over the ready members (null: none).
    pub owner: Option<String>,
    /// The fencing epoch of the shard's lease.
    pub epoch: i64,
    /// The node holding an unexpired lease now (null: free).
    pub held_by: Option<String>,
}

/// `GET /api/v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize, Object)]
pub struct ClusterView {
    pub node_id: String,
    /// This node's status: `joining`, `ready` or `draining`.
    pub status: String,
    /// Whether this node hosts shards (false without a majority of the last stable membership).
    pub hosting: bool,
    /// The size of the last stable membership.
    pub stable_members: u32,
    /// Shards whose lease this node holds now.
    pub shards_held: u32,
    /// Durable writes the store refused for a stale epoch since this process started.
    pub stale_epoch_writes: u64,
    /// Writes this node refused itself because the shard's lease had run out.
    pub self_fenced_writes: u64,
    pub members: Vec<MemberView>,
    pub shards: Vec<ShardView>,
}

/// `POST /api/v1/cluster/drain`.
#[derive(Clone, Debug, Serialize, Deserialize, Object)]
pub struct DrainView {
    pub node_id: String,
    pub status: String,
    /// Shards this node still has to hand off.
    pub shards_held: u32,
}

/// What the node provides.
#[async_trait]
pub trait ClusterPort: Send + Sync + 'static {
    /// Where `shard` is served.
    fn route(&self, shard: ShardId) -> Route;
    async fn view(&self) -> Result<ClusterView, ApiError>;
    /// Starts draining this node (also on SIGTERM): hand shards off, then exit.
    async fn drain(&self) -> DrainView;
    /// Whether this node is leaving (draining or stopping): it takes no
    /// new sockets then, so clients go straight to another node.
    fn leaving(&self) -> bool {
        false
    }
    /// Whether this node lost contact with most of the last stable
    /// membership (a partition's minority side): it hosts nothing and
    /// takes no new sockets, so clients go straight to another node.
    fn cut_off(&self) -> bool {
        false
    }
    async fn forward(
        &self,
        node: &str,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, String>;
    async fn open_tunnel(&self, node: &str, open: TunnelOpen) -> Result<Tunnel, String>;
}
