//! The front door of a candidate socket on the node the client reached:
//! it reads the `hello`, then serves the socket here (`candidate`) or
//! tunnels it to the room's owner (`tunnel`), holding the greeting while
//! the room moves (docs/protocol.md, "Reconnecting").

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use invigil_actors::domain::{CandidateId, PlanId, RoomId};
use invigil_actors::live::wire::{self, close as code};
use invigil_actors::shard::ShardId;
use poem::web::websocket::{Message, WebSocketStream};
use tracing::{Instrument, debug};

use super::candidate::{greeting, session};
use super::socket::{close, metered};
use super::tunnel::{self, HOLD};
use super::{cut_off, until_cut_off};
use crate::cluster::{SocketKind, TunnelOpen};
use crate::state::AppState;

/// The front door of a candidate socket on the node the client reached:
/// reads the `hello`, then serves the socket here or tunnels it to the
/// owner of the room. While the room moves (its node died, or hands it
/// off) the greeting is held until the room has an owner that takes it;
/// past [`HOLD`] it is refused with `room_moving` and a `retry_after_ms`
/// (docs/protocol.md, "Reconnecting"). The client never has to spin on
/// `not_owner`.
pub async fn connect(
    state: AppState,
    seat: (PlanId, RoomId, CandidateId),
    ip: Option<String>,
    token: String,
    socket: WebSocketStream,
) {
    let (mut sink, mut stream) = socket.split();
    let Some((resume, hello)) = greeting(&state, &mut sink, &mut stream).await else {
        return;
    };
    let Ok(socket) = stream.reunite(sink) else {
        return;
    };
    let (plan_id, room_id, candidate_id) = seat;
    let shard = ShardId::of_room(&plan_id, &room_id);
    let held_until = tokio::time::Instant::now() + HOLD;
    loop {
        if cut_off(&state) {
            return send_away(&state, socket).await;
        }
        if let Some(node) = state.owner_elsewhere(shard) {
            let open = TunnelOpen {
                kind: SocketKind::Candidate,
                token: token.clone(),
                ip: ip.clone(),
                room: None,
                traceparent: None,
            };
            let span = tunnel::span(&node);
            // An owner this node can no longer reach (it was cut off while
            // the greeting waited) would hold the client for the whole
            // [`HOLD`]: it is sent away as soon as the node knows.
            let offered = tokio::select! {
                offered = tunnel::offer(&state, &node, open, hello.clone(), held_until)
                    .instrument(span.clone()) => offered,
                () = until_cut_off(&state) => return send_away(&state, socket).await,
            };
            if let Some((tunnel, first)) = offered {
                return tunnel::pipe(state, node, tunnel, first, socket)
                    .instrument(span)
                    .await;
            }
        } else {
            match state
                .exam
                .connect_candidate(
                    &plan_id,
                    &room_id,
                    &candidate_id,
                    ip.clone(),
                    resume.clone(),
                )
                .await
            {
                Ok(link) => {
                    let (sink, stream) = metered(socket, &state.metrics, "candidate");
                    let span = tracing::info_span!(
                        "ws.socket",
                        kind = "candidate",
                        trace_id = tracing::field::Empty
                    );
                    crate::trace::record_trace_id(&span);
                    debug!(plan_id = %plan_id, candidate_id = %candidate_id, connection_id = link.connection_id(), "candidate connected");
                    return session(state, link, sink, stream).instrument(span).await;
                }
                Err(error) if !tunnel::moving(error.code()) => {
                    let (mut sink, _) = metered(socket, &state.metrics, "candidate");
                    let _ = sink
                        .send(Message::text(wire::exam_error(0, &error, None)))
                        .await;
                    close(&mut sink, code::TRY_AGAIN, "try again").await;
                    return;
                }
                Err(_) => {}
            }
        }
        if tokio::time::Instant::now() + HOLD_STEP >= held_until {
            let (mut sink, _) = metered(socket, &state.metrics, "candidate");
            let _ = sink.send(Message::text(room_moving(shard))).await;
            close(&mut sink, code::TRY_AGAIN, "try again").await;
            return;
        }
        tokio::time::sleep(HOLD_STEP).await;
    }
}

/// A held greeting on a node that was cut off: `node_cut_off` and a close
/// asking the client to reconnect; the node's door then answers `503
/// node_cut_off` and the client moves on to the next node
/// (docs/protocol.md, "Reconnecting").
async fn send_away(state: &AppState, socket: WebSocketStream) {
    let (mut sink, _) = metered(socket, &state.metrics, "candidate");
    let frame = serde_json::json!({
        "t": "error",
        "seq": 0,
        "code": "node_cut_off",
        "message": "this node lost contact with most of the cluster; connect to another",
    });
    let _ = sink.send(Message::text(frame.to_string())).await;
    close(&mut sink, code::RECONNECT, "connect to another node").await;
}

/// How long a greeting waits before it looks for the room's owner again.
const HOLD_STEP: Duration = Duration::from_millis(100);

/// The refusal of a greeting held past [`HOLD`]: try again after this.
pub const RETRY_AFTER_MS: u64 = 1000;

/// The `room_moving` error frame, with when to try again.
fn room_moving(shard: ShardId) -> String {
    serde_json::json!({
        "t": "error",
        "seq": 0,
        "code": "room_moving",
        "message": format!("the room (shard {shard}) is moving to another node; reconnect and resume after retry_after_ms"),
        "retry_after_ms": RETRY_AFTER_MS,
    })
    .to_string()
}
