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
use crate::cluster::{SocketKind, TunnelFrame, TunnelOpen};
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
    // Served here whichever nodes host the rooms: rooms hosted elsewhere
    // stream through a feed from their owner (cluster).
    let token = query.token.unwrap_or_default();
    ws.config(socket_config(&state.settings))
        .on_upgrade(move |socket| run(state, claims, token, socket))
        .into_response()
}

async fn run(state: AppState, claims: Claims, token: String, socket: WebSocketStream) {
    let (sink, stream) = socket.split();
    serve(state, claims, token, sink, stream).await;
}

/// The proctor socket over any transport. `token` is the proctor's bearer
/// token, presented again to the owners of rooms hosted elsewhere.
pub(crate) async fn serve<K, S>(
    state: AppState,
    claims: Claims,
    token: String,
    mut sink: K,
    mut stream: S,
) where
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
    let mut feeds = Vec::new();
    for room_id in &claims.rooms {
        if let Some(cluster) = state.cluster.get()
            && super::tunnel::owner_elsewhere(&state, ShardId::of_room(&claims.plan, room_id))
                .is_some()
        {
            feeds.push(tokio::spawn(remote_feed(
                state.clone(),
                cluster.clone(),
                claims.plan.clone(),
                room_id.clone(),
                token.clone(),
                sender.clone(),
            )));
            continue;
        }
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
                        let (state, claims, sender, token) = (state.clone(), claims.clone(), sender.clone(), token.clone());
                        tokio::spawn(async move {
                            let request = RemoteCommand { target: target.clone(), action: action.clone(), reason: reason.clone(), text: text.clone(), extend_s };
                            let frame = match command(&state, &claims, target, &action, reason, text, extend_s).await {
                                Ok(delivered) => proctor::command_ack(&id, delivered),
                                // The room is hosted on another node: the same command through its REST.
                                Err(error) if error.shard.is_some() => match request.send(&state, &token, error.shard).await {
                                    Ok(delivered) => proctor::command_ack(&id, delivered),
                                    Err((code, detail)) => proctor::command_failed(&id, &code, &detail),
                                },
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
    for feed in feeds {
        feed.abort();
    }
    for room_id in subscribed {
        if let Some(room) = state.exam.directory().live_room(&claims.plan, &room_id) {
            let _ = room.cast(RoomMsg::Unsubscribe(Unsubscribe { subscriber_id }));
        }
    }
}

/// A room hosted on another node, streamed into this proctor socket: its
/// snapshot and deltas come through a feed tunnel from the owner; when the
/// room moves (its owner died or drained) the feed is opened again on the
/// new owner, which sends a fresh snapshot. Ends when the socket does
/// (the task is aborted).
async fn remote_feed(
    state: AppState,
    cluster: std::sync::Arc<dyn crate::cluster::ClusterPort>,
    plan_id: PlanId,
    room_id: RoomId,
    token: String,
    sender: mpsc::Sender<SocketOut>,
) {
    let shard = ShardId::of_room(&plan_id, &room_id);
    loop {
        let node = match super::tunnel::owner_elsewhere(&state, shard) {
            Some(node) => node,
            None => {
                // Moved here: subscribe locally instead.
                let subscriber_id = next_connection_id();
                if let Ok(proctor_id) = claims_proctor(&state, &token).await
                    && subscribe(
                        &state,
                        &plan_id,
                        &room_id,
                        subscriber_id,
                        &proctor_id,
                        sender.clone(),
                    )
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                continue;
            }
        };
        let open = TunnelOpen {
            kind: SocketKind::ProctorRoom,
            token: token.clone(),
            ip: None,
            room: Some(room_id.to_string()),
        };
        if let Ok(mut tunnel) = cluster.open_tunnel(&node, open).await {
            while let Some(frame) = tunnel.from_owner.recv().await {
                match frame {
                    TunnelFrame::Text(text) => {
                        let frame = SocketOut::Frame {
                            seq: 0,
                            text: text.into(),
                        };
                        if sender.send(frame).await.is_err() {
                            return;
                        }
                    }
                    TunnelFrame::Close { .. } => break,
                    TunnelFrame::Binary => {}
                }
            }
            drop(tunnel.to_owner);
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn claims_proctor(
    state: &AppState,
    token: &str,
) -> Result<invigil_actors::domain::ProctorId, ApiError> {
    verify_token(state, Some(token), Role::Proctor)
        .await?
        .proctor_id()
}

/// Owner side of a feed: one room's proctor stream, written to `sink` until
/// the gateway goes away.
pub(crate) async fn feed<K, S>(
    state: AppState,
    claims: Claims,
    room_id: RoomId,
    mut sink: K,
    mut stream: S,
) where
    K: futures::Sink<Message> + Unpin + Send,
    S: futures::Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let Ok(proctor_id) = claims.proctor_id() else {
        return close(&mut sink, code::UNAUTHORIZED, "bad token").await;
    };
    let subscriber_id = next_connection_id();
    let (sender, mut outgoing) =
        mpsc::channel::<SocketOut>(4 * state.exam.directory().deps().config.socket_queue);
    if let Err(error) = subscribe(
        &state,
        &claims.plan,
        &room_id,
        subscriber_id,
        &proctor_id,
        sender,
    )
    .await
    {
        let api = ApiError::from(error);
        let _ = sink
            .send(Message::text(error_frame(
                api.code,
                &api.detail,
                Some(room_id.as_str()),
            )))
            .await;
        return close(&mut sink, code::TRY_AGAIN, "try again").await;
    }
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
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
                None => {
                    close(&mut sink, code::RECONNECT, "reconnect").await;
                    break;
                }
            },
        }
    }
    if let Some(room) = state.exam.directory().live_room(&claims.plan, &room_id) {
        let _ = room.cast(RoomMsg::Unsubscribe(Unsubscribe { subscriber_id }));
    }
}

/// A socket command sent as its REST equivalent to the node hosting the room.
struct RemoteCommand {
    target: Target,
    action: String,
    reason: Option<String>,
    text: Option<String>,
    extend_s: Option<i64>,
}

impl RemoteCommand {
    async fn send(
        &self,
        state: &AppState,
        token: &str,
        shard: Option<u16>,
    ) -> Result<bool, (String, String)> {
        let unavailable = || {
            (
                "not_owner".to_string(),
                "the room is moving; retry".to_string(),
            )
        };
        let cluster = state.cluster.get().ok_or_else(unavailable)?;
        let node = match shard
            .and_then(ShardId::new)
            .map(|shard| cluster.route(shard))
        {
            Some(crate::cluster::Route::Node(node)) => node,
            _ => return Err(unavailable()),
        };
        let (uri, body) = match (&self.target.candidate_id, &self.target.room_id) {
            (Some(candidate_id), None) => (
                format!("/api/v1/proctor/candidates/{candidate_id}/commands"),
                json!({"action": self.action, "reason": self.reason, "extend_s": self.extend_s}),
            ),
            (None, Some(room_id)) => (
                format!("/api/v1/proctor/rooms/{room_id}/commands"),
                json!({"action": self.action, "text": self.text, "extend_s": self.extend_s}),
            ),
            _ => return Err(unavailable()),
        };
        let request = crate::cluster::ForwardedRequest {
            method: "POST".into(),
            uri,
            headers: vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ],
            body: serde_json::to_vec(&body).unwrap_or_default(),
        };
        let answer = cluster
            .forward(&node, request)
            .await
            .map_err(|_| unavailable())?;
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if (200..300).contains(&answer.status) {
            Ok(body["delivered"].as_bool().unwrap_or(false))
        } else {
            Err((
                body["code"].as_str().unwrap_or("unavailable").to_string(),
                body["detail"]
                    .as_str()
                    .unwrap_or("the command failed")
                    .to_string(),
            ))
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
