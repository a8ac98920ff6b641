//! `GET /ws/proctor?token=…`: after `hello`, a `room` snapshot per assigned
//! room, then deltas (`seat`, `incident`, `progress`, `room_state`).
//! Commands sent on the socket are answered with `command_ack` once the
//! candidate's room has applied them (`delivered`: a live candidate socket
//! got the control).

use futures::{SinkExt, StreamExt};
use invigil_actors::domain::{PlanId, RoomId};
use invigil_actors::live::room::{RoomAction, RoomMsg, Subscribe, Unsubscribe};
use invigil_actors::live::wire::{SocketOut, close as code, proctor};
use invigil_actors::shard::ShardId;
use poem::web::websocket::{Message, WebSocket, WebSocketStream};
use poem::web::{Data, Query};
use poem::{IntoResponse, Response, handler};
use ractor::rpc::CallResult;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use super::frames::{ProctorFrame, Target, describe};
use super::{
    FrameRate, RATE_LIMITED, TokenQuery, close, next_connection_id, socket_config, too_big,
};
use crate::auth::guards::check_plan_version;
use crate::auth::{Claims, Role};
use crate::cluster::{SocketKind, TunnelOpen};
use crate::error::ApiError;
use crate::proctor::dto::CandidateActionName;
use crate::proctor::{assigned_room, candidate_room, proctor_action};
use crate::state::AppState;

/// Verifies a socket's token: present, valid, of the right role, current.
pub async fn verify_token(
    state: &AppState,
    token: Option<&str>,
    role: Role,
) -> Result<Claims, ApiError> {
    let token = token.ok_or_else(|| {
        ApiError::unauthorized("missing_credentials", "connect with ?token=<bearer token>")
    })?;
    let claims = state.tokens.verify(token)?;
    if claims.role != role {
        return Err(ApiError::forbidden(
            "wrong_role",
            "this socket is for another role",
        ));
    }
    check_plan_version(state, &claims).await?;
    Ok(claims)
}

#[handler]
pub async fn proctor_socket(
    ws: WebSocket,
    Query(query): Query<TokenQuery>,
    Data(state): Data<&AppState>,
) -> Response {
    let claims = match verify_token(state, query.token.as_deref(), Role::Proctor).await {
        Ok(claims) => claims,
        Err(error) => return error.into_response(),
    };
    let state = state.clone();
    // A proctor's socket is served by the owner of its (first) room.
    if let Some(room_id) = claims.rooms.first()
        && let Some(node) =
            super::tunnel::owner_elsewhere(&state, ShardId::of_room(&claims.plan, room_id))
    {
        let open = TunnelOpen {
            kind: SocketKind::Proctor,
            token: query.token.unwrap_or_default(),
            ip: None,
        };
        return ws
            .config(socket_config(&state.settings))
            .on_upgrade(move |socket| super::tunnel::gateway(state, node, open, socket))
            .into_response();
    }
    ws.config(socket_config(&state.settings))
        .on_upgrade(move |socket| run(state, claims, socket))
        .into_response()
}

async fn run(state: AppState, claims: Claims, socket: WebSocketStream) {
    let (sink, stream) = socket.split();
    serve(state, claims, sink, stream).await;
}

/// The proctor socket over any transport: a WebSocket here, or a tunnel
/// from the node the client is connected to (cluster).
pub(crate) async fn serve<K, S>(state: AppState, claims: Claims, mut sink: K, mut stream: S)
where
    K: futures::Sink<Message> + Unpin + Send,
    S: futures::Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let deadline = Instant::now() + state.settings.ws_hello_timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(next) => next,
            Err(_) => return close(&mut sink, code::HELLO_TIMEOUT, "no valid hello in time").await,
        };
        match next {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Err(error)) => {
                if too_big(&error) {
                    close(&mut sink, code::TOO_BIG, "frame too large").await;
                }
                return;
            }
            Some(Ok(Message::Binary(_))) => {
                let _ = sink
                    .send(Message::text(error_frame(
                        "text_only",
                        "frames are JSON text",
                        None,
                    )))
                    .await;
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ProctorFrame>(&text) {
                Ok(ProctorFrame::Hello {}) => break,
                Ok(_) => {
                    let _ = sink
                        .send(Message::text(error_frame(
                            "hello_expected",
                            "send a hello first",
                            None,
                        )))
                        .await;
                }
                Err(error) => {
                    let (error_code, message) = describe(&error);
                    let _ = sink
                        .send(Message::text(error_frame(error_code, &message, None)))
                        .await;
                }
            },
            Some(Ok(_)) => {}
        }
    }

    let subscriber_id = next_connection_id();
    let (sender, mut outgoing) =
        mpsc::channel::<SocketOut>(4 * state.exam.directory().deps().config.socket_queue);
    let mut subscribed: Vec<RoomId> = Vec::new();
    let proctor_id = match claims.proctor_id() {
        Ok(proctor_id) => proctor_id,
        Err(_) => return close(&mut sink, code::UNAUTHORIZED, "bad token").await,
    };
    for room_id in &claims.rooms {
        match subscribe(
            &state,
            &claims.plan,
            room_id,
            subscriber_id,
            &proctor_id,
            sender.clone(),
        )
        .await
        {
            Ok(()) => subscribed.push(room_id.clone()),
            Err(error) => {
                let api = ApiError::from(error);
                let frame = error_frame(api.code, &api.detail, Some(room_id.as_str()));
                let _ = sink.send(Message::text(frame)).await;
            }
        }
    }
    debug!(plan_id = %claims.plan, proctor_id = %proctor_id, rooms = subscribed.len(), "proctor connected");
    let mut rate = FrameRate::new(state.settings.ws_frames_per_second);

    loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Err(error)) => {
                        if too_big(&error) {
                            close(&mut sink, code::TOO_BIG, "frame too large").await;
                        }
                        break;
                    }
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        if sink.send(Message::text(error_frame("text_only", "frames are JSON text", None))).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                if !rate.admit() {
                    let (error_code, message) = RATE_LIMITED;
                    if sink.send(Message::text(error_frame(error_code, message, None))).await.is_err() {
                        break;
                    }
                    continue;
                }
                match serde_json::from_str::<ProctorFrame>(&text) {
                    Ok(ProctorFrame::Hb { ts }) => {
                        let frame = json!({"t": "hb", "ts": ts, "server_ts": state.clock.now().as_millis()});
                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                            break;
                        }
                    }
                    Ok(ProctorFrame::Hello {}) => {
                        let _ = sink.send(Message::text(error_frame("already_greeted", "hello is sent once", None))).await;
                    }
                    Ok(ProctorFrame::Command { id, target, action, reason, text, extend_s }) => {
                        // Commands run beside the socket loop; their acks come back through it.
                        let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
                        let (state, claims, sender) = (state.clone(), claims.clone(), sender.clone());
                        tokio::spawn(async move {
                            let frame = match command(&state, &claims, target, &action, reason, text, extend_s).await {
                                Ok(delivered) => proctor::command_ack(&id, delivered),
                                Err(error) => proctor::command_failed(&id, error.code, &error.detail),
                            };
                            let _ = sender.send(SocketOut::Frame { seq: 0, text: frame.into() }).await;
                        });
                    }
                    Err(error) => {
                        let (error_code, message) = describe(&error);
                        if sink.send(Message::text(error_frame(error_code, &message, None))).await.is_err() {
                            break;
                        }
                    }
                }
            }
            out = outgoing.recv() => match out {
                Some(SocketOut::Frame { text, .. }) => {
                    if sink.send(Message::text(text.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(SocketOut::Close { code, reason }) => {
                    close(&mut sink, code, reason).await;
                    break;
                }
                None => break,
            },
        }
    }
    for room_id in subscribed {
        if let Some(room) = state.exam.directory().live_room(&claims.plan, &room_id) {
            let _ = room.cast(RoomMsg::Unsubscribe(Unsubscribe { subscriber_id }));
        }
    }
}

fn error_frame(code: &str, message: &str, room_id: Option<&str>) -> String {
    json!({"t": "error", "code": code, "message": message, "room_id": room_id}).to_string()
}

async fn subscribe(
    state: &AppState,
    plan_id: &PlanId,
    room_id: &RoomId,
    subscriber_id: u64,
    proctor_id: &invigil_actors::domain::ProctorId,
    sink: mpsc::Sender<SocketOut>,
) -> Result<(), invigil_actors::error::ExamError> {
    let timeout = state.exam.directory().deps().config.call_timeout;
    let room = state.exam.directory().room(plan_id, room_id).await?;
    let message = |reply| {
        RoomMsg::Subscribe(Subscribe {
            subscriber_id,
            proctor_id: proctor_id.clone(),
            sink: sink.clone(),
            reply,
        })
    };
    match room.call(message, Some(timeout)).await {
        Ok(CallResult::Success(result)) => result,
        _ => Err(invigil_actors::error::ExamError::Unavailable(
            "the room did not answer; retry",
        )),
    }
}

/// Runs a command from the socket through the same path as REST.
async fn command(
    state: &AppState,
    claims: &Claims,
    target: Target,
    action: &str,
    reason: Option<String>,
    text: Option<String>,
    extend_s: Option<i64>,
) -> Result<bool, ApiError> {
    let proctor_id = claims.proctor_id()?;
    match (target.candidate_id, target.room_id) {
        (Some(candidate_id), None) => {
            let (candidate_id, room_id) = candidate_room(state, claims, &candidate_id).await?;
            let action = candidate_action(action)?;
            let action = proctor_action(action, reason, extend_s)?;
            let receipt = state
                .exam
                .candidate_command(&claims.plan, &room_id, &candidate_id, &action, &proctor_id)
                .await?;
            Ok(receipt.delivered)
        }
        (None, Some(room_id)) => {
            let room_id = assigned_room(claims, &room_id)?;
            let action = match action {
                "pause" => RoomAction::Pause,
                "resume" => RoomAction::Resume,
                "extend" => RoomAction::Extend {
                    seconds: extend_s.ok_or_else(|| {
                        ApiError::unprocessable("missing_field", "extend needs extend_s")
                    })?,
                },
                "notice" => RoomAction::Notice {
                    text: text.ok_or_else(|| {
                        ApiError::unprocessable("missing_field", "notice needs text")
                    })?,
                },
                other => {
                    return Err(ApiError::unprocessable(
                        "invalid_action",
                        format!("{other:?} is not a room action"),
                    ));
                }
            };
            let receipt = state
                .exam
                .room_command(&claims.plan, &room_id, &action, &proctor_id)
                .await?;
            Ok(receipt.delivered)
        }
        _ => Err(ApiError::unprocessable(
            "invalid_target",
            "target is {\"room_id\"} or {\"candidate_id\"}",
        )),
    }
}

fn candidate_action(action: &str) -> Result<CandidateActionName, ApiError> {
    Ok(match action {
        "warn" => CandidateActionName::Warn,
        "pause" => CandidateActionName::Pause,
        "resume" => CandidateActionName::Resume,
        "extend" => CandidateActionName::Extend,
        "force_submit" => CandidateActionName::ForceSubmit,
        "expel" => CandidateActionName::Expel,
        other => {
            return Err(ApiError::unprocessable(
                "invalid_action",
                format!("{other:?} is not a candidate action"),
            ));
        }
    })
}
