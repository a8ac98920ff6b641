//! The WebSocket gateway: `/ws/candidate` and `/ws/proctor`.
//!
//! The token is checked before the upgrade (a bad one is an HTTP 401/403
//! problem). After the upgrade a socket must say `hello` within
//! `ws_hello_timeout`; messages above `ws_max_message_bytes` close it with
//! 1009. The socket task is a pipe: it parses frames and hands them to the
//! exam through the `Exam` facade, and writes what the room sends; all
//! state lives in the room.
//!
//! This module decides where a socket is served: here, or — when the room
//! a candidate's token names is hosted on another node — on that node,
//! through a tunnel this node opens as a gateway. A proctor's socket is
//! always served here; rooms hosted elsewhere stream into it.
//!
//! # Layout
//! - `socket`: reading frames under the size limit, the frame rate, closing
//! - `frames`: the client frames, parsed strictly
//! - `door`: where a candidate socket is served; the greeting held while its room moves
//! - `candidate`: the candidate socket
//! - `proctor`: the proctor dashboard socket
//! - `proctor_remote`: a dashboard's rooms and commands on other nodes
//! - `tunnel`: sockets whose room is hosted on another node

pub mod candidate;
mod door;
pub mod frames;
pub mod proctor;
mod proctor_remote;
pub mod socket;
pub mod tunnel;

use poem::web::websocket::WebSocket;
use poem::web::{Data, Query, RemoteAddr};
use poem::{IntoResponse, Response, handler};

use self::socket::{TokenQuery, socket_config};
use crate::auth::{Role, candidate_seat, verify_socket_token};
use crate::state::AppState;

/// `GET /ws/candidate?token=…`: checks the token (role candidate), then
/// upgrades; the socket is served here or tunnelled to the room's owner.
#[handler]
pub async fn candidate_socket(
    ws: WebSocket,
    Query(query): Query<TokenQuery>,
    Data(state): Data<&AppState>,
    remote: &RemoteAddr,
) -> Response {
    // The peer's address (the load balancer's when there is one in front).
    let ip = remote
        .as_socket_addr()
        .map(|address| address.ip().to_string());
    // Before the token check: a cut-off node may not reach what that needs.
    if let Some(refusal) = leaving(state) {
        return refusal;
    }
    let (plan_id, room_id, candidate_id) = match candidate_seat(state, query.token.as_deref()).await
    {
        Ok(seat) => seat,
        Err(error) => return error.into_response(),
    };
    let state = state.clone();
    let token = query.token.unwrap_or_default();
    ws.config(socket_config(&state.settings))
        .on_upgrade(move |socket| {
            door::connect(state, (plan_id, room_id, candidate_id), ip, token, socket)
        })
        .into_response()
}

/// `GET /ws/proctor?token=…`: served here whichever nodes host the rooms
/// (rooms hosted elsewhere stream through a feed from their owner).
#[handler]
pub async fn proctor_socket(
    ws: WebSocket,
    Query(query): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Response {
    if let Some(refusal) = leaving(state) {
        return refusal;
    }
    let claims = match verify_socket_token(state, query.token.as_deref(), Role::Proctor).await {
        Ok(claims) => claims,
        Err(error) => return error.into_response(),
    };
    let state = state.clone();
    let token = query.token.unwrap_or_default();
    ws.config(socket_config(&state.settings))
        .on_upgrade(move |socket| {
            let (sink, stream) = socket::metered(socket, &state.metrics, "proctor");
            proctor::serve(state, claims, token, sink, stream)
        })
        .into_response()
}

/// A node that is leaving the cluster, or is cut off from most of it (a
/// partition's minority side, hosting nothing), takes no new sockets: `503
/// shutting_down` / `503 node_cut_off` with `Retry-After` before the
/// upgrade, so a reconnecting client moves on to the next node at once
/// (docs/protocol.md, "Reconnecting") instead of waiting for a welcome
/// that cannot come.
fn leaving(state: &AppState) -> Option<Response> {
    let cluster = state.cluster.as_ref()?;
    let (code, detail) = if cluster.leaving() {
        (
            "shutting_down",
            "this node is leaving the cluster; connect to another",
        )
    } else if cluster.cut_off() {
        (
            "node_cut_off",
            "this node lost contact with most of the cluster; connect to another",
        )
    } else {
        return None;
    };
    Some(
        crate::error::ApiError::new(poem::http::StatusCode::SERVICE_UNAVAILABLE, code, detail)
            .into_response(),
    )
}

/// Whether this node is cut off from most of the cluster (it hosts
/// nothing and reaches no owner).
fn cut_off(state: &AppState) -> bool {
    state
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.cut_off())
}

/// Returns once this node is cut off (checked every 100 ms): a socket
/// served here then sends its client on to another node.
async fn until_cut_off(state: &AppState) {
    while !cut_off(state) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
