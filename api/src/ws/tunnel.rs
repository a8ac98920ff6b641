//! Sockets across nodes. A client may connect to any node; when the room
//! its token names is hosted on another node, this node upgrades the socket
//! and becomes a *gateway*: it opens a tunnel to the owner and pipes frames
//! both ways. The owner runs the very same socket code ([`serve`]) over the
//! tunnel, so a candidate behind a gateway gets exactly what a local one
//! gets. When either side goes away, the client's socket is closed with
//! `1012 reconnect` and the client reconnects (through any node) and
//! resumes with its `last_seq`.

use std::time::Duration;

use futures::SinkExt;
use invigil_actors::live::wire::close as code;
use poem::web::websocket::{Message, WebSocketStream};
use tokio::sync::mpsc;
use tracing::{Instrument, debug};

use super::socket::{Incoming, close, next_frame};
use crate::auth::{Role, candidate_seat, verify_socket_token};
use crate::cluster::{SocketKind, Tunnel, TunnelFrame, TunnelOpen};
use crate::state::AppState;

/// The frame that tells the other side the client is gone.
fn client_gone() -> TunnelFrame {
    TunnelFrame::Close {
        code: 1000,
        reason: String::new(),
    }
}

/// How long a greeting is held while its room moves, like a forwarded
/// REST request.
pub const HOLD: Duration = crate::cluster::FORWARD_PATIENCE;

/// Codes with which a room's node refuses a socket only for now: the room
/// is not there yet, or is leaving. The front door looks for the owner
/// again rather than passing them on.
pub fn moving(code: &str) -> bool {
    matches!(code, "not_owner" | "shutting_down" | "unavailable")
}

/// The gateway's span for a socket tunnelled to `node`; the owner's socket
/// span continues its trace.
pub fn span(node: &str) -> tracing::Span {
    let span = tracing::info_span!("ws.tunnel", node = %node, trace_id = tracing::field::Empty);
    crate::trace::record_trace_id(&span);
    span
}

/// Gateway side, first step: opens a tunnel to `node`, sends the client's
/// `hello` through it and waits (until `until`) for the owner's first
/// frame. Returns the tunnel and that frame when the owner took the
/// socket (a welcome, or a refusal meant for the client); None when it
/// cannot now (unreachable, or the room is not there yet).
pub async fn offer(
    state: &AppState,
    node: &str,
    mut open: TunnelOpen,
    hello: String,
    until: tokio::time::Instant,
) -> Option<(Tunnel, TunnelFrame)> {
    let cluster = state.cluster.clone()?;
    open.traceparent = crate::trace::traceparent(&tracing::Span::current());
    let mut tunnel = match tokio::time::timeout_at(until, cluster.open_tunnel(node, open)).await {
        Ok(Ok(tunnel)) => tunnel,
        Ok(Err(error)) => {
            debug!(node = %node, %error, "could not open a socket tunnel; looking again");
            return None;
        }
        Err(_) => return None,
    };
    tunnel.to_owner.send(TunnelFrame::Text(hello)).await.ok()?;
    let first = tokio::time::timeout_at(until, tunnel.from_owner.recv())
        .await
        .ok()
        .flatten()?;
    match &first {
        TunnelFrame::Text(text) => {
            let refused = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .filter(|frame| frame["t"] == "error")
                .and_then(|frame| frame["code"].as_str().map(moving))
                .unwrap_or(false);
            (!refused).then_some((tunnel, first))
        }
        // Closed before a word: the owner could not take it now.
        TunnelFrame::Close { .. } | TunnelFrame::Binary => None,
    }
}

/// Gateway side: pipes a client's socket to the owner's end of `tunnel`,
/// starting with the owner's `first` frame.
pub async fn pipe(
    state: AppState,
    node: String,
    mut tunnel: Tunnel,
    first: TunnelFrame,
    socket: WebSocketStream,
) {
    state.metrics.forwarded("socket");
    let (mut sink, mut stream) = super::socket::metered(socket, &state.metrics, "tunnel");
    if let TunnelFrame::Text(text) = first
        && sink.send(Message::Text(text)).await.is_err()
    {
        let _ = tunnel.to_owner.send(client_gone()).await;
        return;
    }
    let limit = state.settings.ws_max_message_bytes;
    loop {
        tokio::select! {
            incoming = next_frame(&mut stream, limit) => {
                let frame = match incoming {
                    Incoming::Text(text) => TunnelFrame::Text(text),
                    Incoming::Binary => TunnelFrame::Binary,
                    Incoming::TooBig => {
                        close(&mut sink, code::TOO_BIG, "frame too large").await;
                        let _ = tunnel.to_owner.send(client_gone()).await;
                        break;
                    }
                    Incoming::Closed => {
                        let _ = tunnel.to_owner.send(client_gone()).await;
                        break;
                    }
                };
                if tunnel.to_owner.send(frame).await.is_err() {
                    close(&mut sink, code::RECONNECT, "reconnect").await;
                    break;
                }
            }
            outgoing = tunnel.from_owner.recv() => match outgoing {
                Some(TunnelFrame::Text(text)) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        let _ = tunnel.to_owner.send(client_gone()).await;
                        break;
                    }
                }
                Some(TunnelFrame::Close { code, reason }) => {
                    close(&mut sink, code, &reason).await;
                    break;
                }
                Some(TunnelFrame::Binary) => {}
                None => {
                    // The owner went away (died, or the tunnel broke): the
                    // client reconnects and resumes through any node.
                    close(&mut sink, code::RECONNECT, "reconnect").await;
                    break;
                }
            },
        }
    }
    debug!(node = %node, "socket tunnel closed");
}

/// Owner side: runs the socket named by `open` over a tunnel. `incoming`
/// carries the client's frames; what the socket writes goes to `outgoing`.
pub async fn serve(
    state: AppState,
    open: TunnelOpen,
    incoming: mpsc::Receiver<TunnelFrame>,
    outgoing: mpsc::Sender<TunnelFrame>,
) {
    let stream = futures::stream::unfold(incoming, |mut incoming| async move {
        let message = match incoming.recv().await? {
            TunnelFrame::Text(text) => Message::Text(text),
            TunnelFrame::Binary => Message::Binary(Vec::new()),
            TunnelFrame::Close { code, reason } => {
                Message::close_with(poem::web::websocket::CloseCode::from(code), reason)
            }
        };
        Some((Ok::<_, std::io::Error>(message), incoming))
    });
    let stream = Box::pin(stream);
    let sink = futures::sink::unfold(outgoing, |outgoing, message: Message| async move {
        let frame = match message {
            Message::Text(text) => Some(TunnelFrame::Text(text)),
            Message::Close(Some((code, reason))) => Some(TunnelFrame::Close {
                code: code.into(),
                reason,
            }),
            Message::Close(None) => Some(TunnelFrame::Close {
                code: 1000,
                reason: String::new(),
            }),
            _ => None,
        };
        if let Some(frame) = frame {
            outgoing
                .send(frame)
                .await
                .map_err(|_| std::io::Error::other("the tunnel closed"))?;
        }
        Ok::<_, std::io::Error>(outgoing)
    });
    let mut sink = Box::pin(sink);
    let span = tracing::info_span!(
        "ws.socket",
        kind = ?open.kind,
        tunnelled = true,
        trace_id = tracing::field::Empty,
    );
    crate::trace::continue_trace(&span, open.traceparent.as_deref());
    async move {
        match open.kind {
            SocketKind::Candidate => match candidate_seat(&state, Some(&open.token)).await {
                Ok((plan_id, room_id, candidate_id)) => {
                    super::candidate::serve(
                        state,
                        plan_id,
                        room_id,
                        candidate_id,
                        open.ip,
                        sink,
                        stream,
                    )
                    .await;
                }
                Err(error) => close(&mut sink, code::UNAUTHORIZED, &error.detail).await,
            },
            SocketKind::Proctor => {
                match verify_socket_token(&state, Some(&open.token), Role::Proctor).await {
                    Ok(claims) => {
                        super::proctor::serve(state, claims, open.token, sink, stream).await
                    }
                    Err(error) => close(&mut sink, code::UNAUTHORIZED, &error.detail).await,
                }
            }
            SocketKind::ProctorRoom => {
                let claims = match verify_socket_token(&state, Some(&open.token), Role::Proctor)
                    .await
                {
                    Ok(claims) => claims,
                    Err(error) => return close(&mut sink, code::UNAUTHORIZED, &error.detail).await,
                };
                let room = open.room.as_deref().unwrap_or_default();
                match crate::proctor::assigned_room(&claims, room) {
                    Ok(room_id) => super::proctor::feed(state, claims, room_id, sink, stream).await,
                    Err(error) => close(&mut sink, code::UNAUTHORIZED, &error.detail).await,
                }
            }
        }
    }
    .instrument(span)
    .await;
}
