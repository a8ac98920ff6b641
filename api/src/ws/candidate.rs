//! `GET /ws/candidate?token=…`: hello / resume, then heartbeats, answers,
//! events and submit forwarded to the room actor; everything the room sends
//! written back. See PROTOCOL.md and docs/protocol.md.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use invigil_actors::domain::{CandidateId, PlanId, QuestionId, RoomId};
use invigil_actors::live::room::{
    Answer, ClientEvent, Connect, Disconnect, Heartbeat, RoomMsg, Submit,
};
use invigil_actors::live::wire::{self, SocketOut, close as code};
use invigil_actors::shard::ShardId;
use poem::web::websocket::{Message, WebSocket, WebSocketStream};
use poem::web::{Data, Query};
use poem::{IntoResponse, Response, handler};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::frames::{CandidateFrame, describe};
use super::{
    FrameRate, RATE_LIMITED, TokenQuery, close, next_connection_id, socket_config, too_big,
};
use crate::auth::Role;
use crate::cluster::{SocketKind, TunnelOpen};
use crate::error::ApiError;
use crate::state::AppState;

/// Checks the token (role candidate), then upgrades.
#[handler]
pub async fn candidate_socket(
    ws: WebSocket,
    Query(query): Query<TokenQuery>,
    Data(state): Data<&AppState>,
    remote: &poem::web::RemoteAddr,
) -> Response {
    // The peer's address (the load balancer's when there is one in front).
    let ip = remote
        .as_socket_addr()
        .map(|address| address.ip().to_string());
    let (plan_id, room_id, candidate_id) = match seat(state, query.token.as_deref()).await {
        Ok(seat) => seat,
        Err(error) => return error.into_response(),
    };
    let state = state.clone();
    if let Some(node) = super::tunnel::owner_elsewhere(&state, ShardId::of_room(&plan_id, &room_id))
    {
        let open = TunnelOpen {
            kind: SocketKind::Candidate,
            token: query.token.unwrap_or_default(),
            ip,
            room: None,
        };
        return ws
            .config(socket_config(&state.settings))
            .on_upgrade(move |socket| super::tunnel::gateway(state, node, open, socket))
            .into_response();
    }
    ws.config(socket_config(&state.settings))
        .on_upgrade(move |socket| run(state, plan_id, room_id, candidate_id, ip, socket))
        .into_response()
}

/// The seat a candidate token names: plan, room, candidate.
pub(crate) async fn seat(
    state: &AppState,
    token: Option<&str>,
) -> Result<(PlanId, RoomId, CandidateId), ApiError> {
    let claims = super::proctor::verify_token(state, token, Role::Candidate).await?;
    match (claims.candidate_id(), claims.rooms.first()) {
        (Ok(candidate_id), Some(room_id)) => {
            Ok((claims.plan.clone(), room_id.clone(), candidate_id))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "the token names no candidate room",
        )),
    }
}

/// Sends a connection frame (error) with the current seq.
async fn send_error(
    sink: &mut (impl SinkExt<Message> + Unpin),
    seq: u64,
    code: &str,
    message: &str,
    cseq: Option<i64>,
) -> bool {
    sink.send(Message::text(wire::error(seq, code, message, cseq)))
        .await
        .is_ok()
}

async fn run(
    state: AppState,
    plan_id: PlanId,
    room_id: RoomId,
    candidate_id: CandidateId,
    ip: Option<String>,
    socket: WebSocketStream,
) {
    let (sink, stream) = socket.split();
    serve(state, plan_id, room_id, candidate_id, ip, sink, stream).await;
}

/// The candidate socket over any transport: a WebSocket here, or a tunnel
/// from the node the client is connected to (cluster).
pub(crate) async fn serve<K, S>(
    state: AppState,
    plan_id: PlanId,
    room_id: RoomId,
    candidate_id: CandidateId,
    ip: Option<String>,
    mut sink: K,
    mut stream: S,
) where
    K: futures::Sink<Message> + Unpin + Send,
    S: futures::Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let connection_id = next_connection_id();

    // The first valid frame must be a hello, within the deadline.
    let deadline = Instant::now() + state.settings.ws_hello_timeout;
    let resume = loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                close(&mut sink, code::HELLO_TIMEOUT, "no valid hello in time").await;
                return;
            }
        };
        match next {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Err(error)) => {
                if too_big(&error) {
                    close(&mut sink, code::TOO_BIG, "frame too large").await;
                }
                return;
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<CandidateFrame>(&text) {
                Ok(CandidateFrame::Hello { resume }) => break resume,
                Ok(_) => {
                    if !send_error(&mut sink, 0, "hello_expected", "send a hello first", None).await
                    {
                        return;
                    }
                }
                Err(error) => {
                    let (error_code, message) = describe(&error);
                    if !send_error(&mut sink, 0, error_code, &message, None).await {
                        return;
                    }
                }
            },
            Some(Ok(Message::Binary(_))) => {
                if !send_error(&mut sink, 0, "text_only", "frames are JSON text", None).await {
                    return;
                }
            }
            Some(Ok(_)) => {}
        }
    };

    // Join the room: it sends the welcome (and the replay) through `outgoing`.
    let (sender, mut outgoing) =
        mpsc::channel::<SocketOut>(state.exam.directory().deps().config.socket_queue);
    let close_signal = wire::CloseSignal::default();
    let connect = |reply| {
        RoomMsg::Connect(Connect {
            candidate_id: candidate_id.clone(),
            connection_id,
            sink: sender.clone(),
            close_signal: close_signal.clone(),
            ip: ip.clone(),
            resume: resume
                .as_ref()
                .map(|resume| (resume.session.clone(), resume.last_seq)),
            reply,
        })
    };
    let room = match join(&state, &plan_id, &room_id, connect).await {
        Ok(room) => room,
        Err(error) => {
            let error_code = crate::error::ApiError::from(error.clone()).code;
            let _ = send_error(&mut sink, 0, error_code, &error.to_string(), None).await;
            close(&mut sink, code::TRY_AGAIN, "try again").await;
            return;
        }
    };
    drop(sender);
    debug!(plan_id = %plan_id, candidate_id = %candidate_id, connection_id, "candidate connected");

    let mut last_seq = 0_u64;
    let mut rate = FrameRate::new(state.settings.ws_frames_per_second);
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let message = match incoming {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(error)) => {
                        if too_big(&error) {
                            close(&mut sink, code::TOO_BIG, "frame too large").await;
                        }
                        break;
                    }
                    Some(Ok(message)) => message,
                };
                let text = match message {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        if !send_error(&mut sink, last_seq, "text_only", "frames are JSON text", None).await {
                            break;
                        }
                        continue;
                    }
                    _ => continue,
                };
                if !rate.admit() {
                    // A refused answer names its cseq: the client resends it.
                    let cseq = match serde_json::from_str::<CandidateFrame>(&text) {
                        Ok(CandidateFrame::Answer { cseq, .. }) => Some(cseq),
                        _ => None,
                    };
                    let (error_code, message) = RATE_LIMITED;
                    if !send_error(&mut sink, last_seq, error_code, message, cseq).await {
                        break;
                    }
                    continue;
                }
                let forwarded = match serde_json::from_str::<CandidateFrame>(&text) {
                    Ok(frame) => match to_room(frame, &candidate_id, connection_id) {
                        Ok(message) => room.cast(message).is_ok(),
                        Err((error_code, message, cseq)) => {
                            if !send_error(&mut sink, last_seq, error_code, &message, cseq).await {
                                break;
                            }
                            true
                        }
                    },
                    Err(error) => {
                        let (error_code, message) = describe(&error);
                        if !send_error(&mut sink, last_seq, error_code, &message, None).await {
                            break;
                        }
                        true
                    }
                };
                if !forwarded {
                    // The room stopped: the client reconnects and resumes.
                    close(&mut sink, code::RECONNECT, "reconnect").await;
                    break;
                }
            }
            out = outgoing.recv() => match out {
                Some(SocketOut::Frame { seq, text }) => {
                    last_seq = last_seq.max(seq);
                    if sink.send(Message::text(text.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(SocketOut::Close { code, reason }) => {
                    close(&mut sink, code, reason).await;
                    break;
                }
                None => {
                    // Let go by the room; its close frame may not have fit
                    // in the queue, the signal says why.
                    let reason = close_signal.get().unwrap_or(code::RECONNECT);
                    close(&mut sink, reason, code::reason(reason)).await;
                    break;
                }
            },
        }
    }
    let _ = room.cast(RoomMsg::Disconnect(Disconnect {
        candidate_id,
        connection_id,
    }));
}

/// Finds (or activates) the room and connects; retried once if the room
/// stopped in between.
async fn join(
    state: &AppState,
    plan_id: &PlanId,
    room_id: &RoomId,
    connect: impl Fn(
        ractor::RpcReplyPort<
            Result<invigil_actors::live::room::Connected, invigil_actors::error::ExamError>,
        >,
    ) -> RoomMsg,
) -> Result<ActorRef<RoomMsg>, invigil_actors::error::ExamError> {
    let timeout = state.exam.directory().deps().config.call_timeout;
    for _ in 0..2 {
        let room = state.exam.directory().room(plan_id, room_id).await?;
        match room.call(&connect, Some(timeout)).await {
            Ok(CallResult::Success(Ok(_))) => return Ok(room),
            Ok(CallResult::Success(Err(error))) => return Err(error),
            Ok(CallResult::Timeout) => break,
            Ok(CallResult::SenderError) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    }
    Err(invigil_actors::error::ExamError::Unavailable(
        "the room is unavailable; retry",
    ))
}

/// Turns a client frame into the room's message, or a refusal.
fn to_room(
    frame: CandidateFrame,
    candidate_id: &CandidateId,
    connection_id: u64,
) -> Result<RoomMsg, (&'static str, String, Option<i64>)> {
    Ok(match frame {
        CandidateFrame::Hello { .. } => {
            return Err((
                "already_greeted",
                "hello is sent once per connection".into(),
                None,
            ));
        }
        CandidateFrame::Hb { ts } => RoomMsg::Heartbeat(Heartbeat {
            candidate_id: candidate_id.clone(),
            connection_id,
            client_ts: ts,
        }),
        CandidateFrame::Answer { q, value, cseq } => {
            let question_id = QuestionId::parse(q)
                .map_err(|error| ("unknown_question", error.to_string(), Some(cseq)))?;
            RoomMsg::Answer(Answer {
                candidate_id: candidate_id.clone(),
                connection_id: Some(connection_id),
                question_id,
                value,
                cseq,
                reply: None,
            })
        }
        CandidateFrame::Event { kind, detail } => RoomMsg::ClientEvent(ClientEvent {
            candidate_id: candidate_id.clone(),
            connection_id,
            kind,
            detail,
        }),
        CandidateFrame::Submit {} => RoomMsg::Submit(Submit {
            candidate_id: candidate_id.clone(),
            connection_id: Some(connection_id),
            reply: None,
        }),
    })
}
