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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use invigil_actors::shard::ShardId;
use poem::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::auth::AdminKey;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tags::ApiTags;

/// Marks a request forwarded by another node: it is served here or refused,
/// never forwarded again.
pub const FORWARDED_HEADER: &str = "x-invigil-forwarded-by";
pub use crate::error::SHARD_HEADER;
/// How long a forwarded request keeps trying while its shard moves.
pub const FORWARD_PATIENCE: Duration = Duration::from_secs(5);

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
    async fn forward(
        &self,
        node: &str,
        request: ForwardedRequest,
    ) -> Result<ForwardedResponse, String>;
    async fn open_tunnel(&self, node: &str, open: TunnelOpen) -> Result<Tunnel, String>;
}

pub struct ClusterApi {
    pub state: AppState,
}

impl ClusterApi {
    fn port(&self) -> Result<&Arc<dyn ClusterPort>, ApiError> {
        self.state.cluster.get().ok_or_else(|| {
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

/// Forwards requests refused with `not_owner` to the shard's owner.
pub struct Forward {
    pub state: AppState,
}

impl<E: Endpoint<Output = Response>> Middleware<E> for Forward {
    type Output = ForwardEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ForwardEndpoint {
            inner,
            state: self.state.clone(),
        }
    }
}

pub struct ForwardEndpoint<E> {
    inner: E,
    state: AppState,
}

/// Whether a request may reach live actors (and so be refused `not_owner`).
fn may_need_owner(request: &Request) -> bool {
    let path = request.uri().path();
    // Candidate login checks the candidate in at the room.
    (path.starts_with("/api/v1/candidate")
        || path == "/api/v1/auth/candidate"
        || path.starts_with("/api/v1/proctor")
        || path.starts_with("/api/v1/admin/plans"))
        && !request.headers().contains_key(FORWARDED_HEADER)
}

impl<E: Endpoint<Output = Response>> Endpoint for ForwardEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let Some(cluster) = self.state.cluster.get().cloned() else {
            return self.inner.call(request).await;
        };
        if !may_need_owner(&request) {
            return self.inner.call(request).await;
        }
        // Buffer the body (bounded by the import limit) so the request can
        // be sent on; `not_owner` is decided before any of it is used.
        let limit = self.state.settings.body_limits.import_bytes;
        let (parts, body) = request.into_parts();
        let body = match body.into_bytes_limit(limit).await {
            Ok(bytes) => bytes,
            Err(_) => {
                return Ok(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body exceeds {limit} bytes"),
                )
                .into_response());
            }
        };
        let forwarded = ForwardedRequest {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers: header_pairs(&parts.headers),
            body: body.to_vec(),
        };
        let local = Request::from_parts(parts, Body::from(body));
        let mut response = self.inner.call(local).await?;
        let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
        while let Some(shard) = not_owner_shard(&response) {
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            response = match cluster.route(shard) {
                Route::Node(node) => match cluster.forward(&node, forwarded.clone()).await {
                    Ok(answer) => into_response(answer),
                    Err(error) => {
                        tracing::debug!(node = %node, %error, "forwarding failed; retrying");
                        response
                    }
                },
                Route::Here => {
                    let retry = rebuild(&forwarded)?;
                    self.inner.call(retry).await?
                }
                Route::Nowhere => response,
            };
            if not_owner_shard(&response).is_some() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(response)
    }
}

/// Headers as text pairs (a value that is not text is left out).
fn header_pairs(headers: &poem::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The shard of a `not_owner` refusal.
fn not_owner_shard(response: &Response) -> Option<ShardId> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let value = response.headers().get(SHARD_HEADER)?.to_str().ok()?;
    ShardId::new(value.parse().ok()?)
}

/// A request as the owner receives it.
pub fn rebuild(forwarded: &ForwardedRequest) -> poem::Result<Request> {
    let method = Method::from_bytes(forwarded.method.as_bytes())
        .map_err(|_| ApiError::bad_request("bad_forward", "unknown method"))?;
    let uri: Uri = forwarded
        .uri
        .parse()
        .map_err(|_| ApiError::bad_request("bad_forward", "malformed uri"))?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(forwarded.body.clone()));
    for (name, value) in &forwarded.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            request.headers_mut().append(name, value);
        }
    }
    Ok(request)
}

/// The owner's answer as this node's response.
pub fn into_response(answer: ForwardedResponse) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY))
        .body(answer.body);
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            if name == poem::http::header::CONTENT_LENGTH
                || name == poem::http::header::TRANSFER_ENCODING
            {
                continue;
            }
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// Serves a forwarded request through this node's endpoint and reads the
/// whole answer (bounded: answers that reach live actors are small).
pub async fn serve_forwarded(
    endpoint: &dyn poem::endpoint::DynEndpoint<Output = Response>,
    node_id: &str,
    forwarded: ForwardedRequest,
) -> ForwardedResponse {
    let mut request = match rebuild(&forwarded) {
        Ok(request) => request,
        Err(error) => return capture(error.into_response()).await,
    };
    if let Ok(value) = HeaderValue::from_str(node_id) {
        request
            .headers_mut()
            .insert(HeaderName::from_static(FORWARDED_HEADER), value);
    }
    let response = match poem::endpoint::DynEndpoint::call(endpoint, request).await {
        Ok(response) => response,
        Err(error) => crate::error::problem_response(error),
    };
    capture(response).await
}

async fn capture(response: Response) -> ForwardedResponse {
    let (parts, body) = response.into_parts();
    let body = body.into_vec().await.unwrap_or_default();
    ForwardedResponse {
        status: parts.status.as_u16(),
        headers: header_pairs(&parts.headers),
        body,
    }
}
