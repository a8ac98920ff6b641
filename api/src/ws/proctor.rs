//! The proctor socket: after `hello`, a `room` snapshot per assigned room,
//! then deltas (`seat`, `incident`, `progress`, `room_state`). Commands sent
//! on the socket are answered with `command_ack` once the candidate's room
//! has applied them (`delivered`: a live candidate socket got the control).

use futures::{Sink, SinkExt, Stream, StreamExt};
use invigil_actors::domain::{ProctorId, RoomId};
use invigil_actors::exam::RoomWatch;
use invigil_actors::live::room::RoomAction;
use invigil_actors::live::wire::{SocketOut, close as code, proctor};
use invigil_actors::shard::ShardId;
use poem::web::websocket::Message;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

use super::frames::{ProctorFrame, Target, describe};
use super::proctor_remote::{RemoteCommand, remote_feed};
use super::socket::{FrameRate, Incoming, RATE_LIMITED, await_greeting, close, next_frame};
use crate::auth::Claims;
use crate::error::ApiError;
use crate::proctor::dto::CandidateActionName;
use crate::proctor::{assigned_room, candidate_room, proctor_action};
use crate::state::AppState;

/// The proctor socket over any transport. `token` is the proctor's bearer
/// token, presented again to the owners of rooms hosted elsewhere.
pub async fn serve<K, S>(state: AppState, claims: Claims, token: String, mut sink: K, mut stream: S)
where
    K: Sink<Message> + Unpin + Send,
    S: Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let greeting = |text: &str| match serde_json::from_str::<ProctorFrame>(text) {
        Ok(ProctorFrame::Hello {}) => Ok(()),
        Ok(_) => Err(("hello_expected", "send a hello first".to_string())),
        Err(error) => Err(describe(&error)),
    };
    let settings = &state.settings;
    let greeted = await_greeting(
        &mut sink,
        &mut stream,
        settings.ws_hello_timeout,
        settings.ws_max_message_bytes,
        greeting,
        |code, message| proctor::error(code, message, None),
    )
    .await;
    if greeted.is_none() {
        return;
    }
    let proctor_id = match claims.proctor_id() {
        Ok(proctor_id) => proctor_id,
        Err(_) => return close(&mut sink, code::UNAUTHORIZED, "bad token").await,
    };
    let (sender, mut outgoing) = state.exam.proctor_queue();
    // Local rooms are watched while the socket lives; rooms hosted elsewhere
    // stream in through feeds from their owners.
    let mut watches: Vec<RoomWatch> = Vec::new();
    let mut feeds = Vec::new();
    for room_id in &claims.rooms {
        if state
            .owner_elsewhere(ShardId::of_room(&claims.plan, room_id))
            .is_some()
        {
            feeds.push(tokio::spawn(remote_feed(
                state.clone(),
                claims.plan.clone(),
                room_id.clone(),
                proctor_id.clone(),
                token.clone(),
                sender.clone(),
            )));
            continue;
        }
        match state
            .exam
            .watch_room(&claims.plan, room_id, &proctor_id, &sender)
            .await
        {
            Ok(watch) => watches.push(watch),
            Err(error) => {
                let frame = proctor::exam_error(&error, Some(room_id.as_str()));
                let _ = sink.send(Message::text(frame)).await;
            }
        }
    }
    debug!(plan_id = %claims.plan, proctor_id = %proctor_id, rooms = watches.len(), "proctor connected");
    let limit = state.settings.ws_max_message_bytes;
    let mut rate = FrameRate::new(state.settings.ws_frames_per_second);
    // One timer for the socket's life, not one per frame.
    let mut cut_off_check = tokio::time::interval(std::time::Duration::from_millis(100));

    loop {
        tokio::select! {
            incoming = next_frame(&mut stream, limit) => {
                let text = match incoming {
                    Incoming::Text(text) => text,
                    Incoming::Closed => break,
                    Incoming::TooBig => {
                        close(&mut sink, code::TOO_BIG, "frame too large").await;
                        break;
                    }
                    Incoming::Binary => {
                        if sink.send(Message::text(proctor::error("text_only", "frames are JSON text", None))).await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                if !rate.admit() {
                    let (error_code, message) = RATE_LIMITED;
                    if sink.send(Message::text(proctor::error(error_code, message, None))).await.is_err() {
                        break;
                    }
                    continue;
                }
                let reply = match serde_json::from_str::<ProctorFrame>(&text) {
                    Ok(ProctorFrame::Hb { ts }) => {
                        json!({"t": "hb", "ts": ts, "server_ts": state.clock.now().as_millis()}).to_string()
                    }
                    Ok(ProctorFrame::Hello {}) => {
                        proctor::error("already_greeted", "hello is sent once", None)
                    }
                    Ok(ProctorFrame::Command { id, target, action, reason, text, extend_s }) => {
                        // Commands run beside the socket loop; their acks come back through it.
                        let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
                        let request = RemoteCommand { target, action, reason, text, extend_s };
                        tokio::spawn(run_command(state.clone(), claims.clone(), token.clone(), id, request, sender.clone()));
                        continue;
                    }
                    Err(error) => {
                        let (error_code, message) = describe(&error);
                        proctor::error(error_code, &message, None)
                    }
                };
                if sink.send(Message::text(reply)).await.is_err() {
                    break;
                }
            }
            // Cut off from most of the cluster, this node can neither run
            // commands nor feed rooms: the proctor goes to another node
            // (the door answers `503 node_cut_off` from now on).
            _ = cut_off_check.tick() => {
                if super::cut_off(&state) {
                    close(&mut sink, code::RECONNECT, "connect to another node").await;
                    break;
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
    // Dropping the watches unsubscribes from the rooms.
    drop(watches);
}

/// Runs one socket command and queues its `command_ack`: here through the
/// exam, or — the room hosted on another node — as its REST equivalent there.
async fn run_command(
    state: AppState,
    claims: Claims,
    token: String,
    id: String,
    request: RemoteCommand,
    sender: mpsc::Sender<SocketOut>,
) {
    // While the room moves (`not_owner`: nothing ran) the command is held
    // and tried again, as REST is, up to the same bound.
    let deadline = tokio::time::Instant::now() + crate::cluster::FORWARD_PATIENCE;
    let frame = loop {
        let outcome = match command(&state, &claims, &request).await {
            Ok(delivered) => Ok(delivered),
            Err(error) if error.shard.is_some() => request.send(&state, &token, error.shard).await,
            Err(error) => Err((error.code.to_string(), error.detail.clone())),
        };
        match outcome {
            Err((code, _)) if code == "not_owner" && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(delivered) => break proctor::command_ack(&id, delivered),
            Err((code, detail)) => break proctor::command_failed(&id, &code, &detail),
        }
    };
    let _ = sender
        .send(SocketOut::Frame {
            seq: 0,
            text: frame.into(),
        })
        .await;
}

/// Owner side of a feed: one room's proctor stream, written to `sink` until
/// the gateway goes away.
pub async fn feed<K, S>(
    state: AppState,
    claims: Claims,
    room_id: RoomId,
    mut sink: K,
    mut stream: S,
) where
    K: Sink<Message> + Unpin + Send,
    S: Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let Ok(proctor_id) = claims.proctor_id() else {
        return close(&mut sink, code::UNAUTHORIZED, "bad token").await;
    };
    let (sender, mut outgoing) = state.exam.proctor_queue();
    let watch = match watch(&state, &claims, &room_id, &proctor_id, &sender).await {
        Ok(watch) => watch,
        Err(frame) => {
            let _ = sink.send(Message::text(frame)).await;
            return close(&mut sink, code::TRY_AGAIN, "try again").await;
        }
    };
    drop(sender);
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
    drop(watch);
}

/// Watches one of the proctor's rooms; a refusal comes as its error frame.
async fn watch(
    state: &AppState,
    claims: &Claims,
    room_id: &RoomId,
    proctor_id: &ProctorId,
    sender: &mpsc::Sender<SocketOut>,
) -> Result<RoomWatch, String> {
    state
        .exam
        .watch_room(&claims.plan, room_id, proctor_id, sender)
        .await
        .map_err(|error| proctor::exam_error(&error, Some(room_id.as_str())))
}

/// Runs a command from the socket through the same path as REST; returns
/// whether a live candidate socket got the control.
async fn command(
    state: &AppState,
    claims: &Claims,
    request: &RemoteCommand,
) -> Result<bool, ApiError> {
    let proctor_id = claims.proctor_id()?;
    let Target {
        candidate_id,
        room_id,
    } = &request.target;
    match (candidate_id, room_id) {
        (Some(candidate_id), None) => {
            let (candidate_id, room_id) = candidate_room(state, claims, candidate_id).await?;
            let action = candidate_action(&request.action)?;
            let action = proctor_action(action, request.reason.clone(), request.extend_s)?;
            let receipt = state
                .exam
                .candidate_command(&claims.plan, &room_id, &candidate_id, &action, &proctor_id)
                .await?;
            Ok(receipt.delivered)
        }
        (None, Some(room_id)) => {
            let room_id = assigned_room(claims, room_id)?;
            let action = room_action(request)?;
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

fn room_action(request: &RemoteCommand) -> Result<RoomAction, ApiError> {
    Ok(match request.action.as_str() {
        "pause" => RoomAction::Pause,
        "resume" => RoomAction::Resume,
        "extend" => RoomAction::Extend {
            seconds: request
                .extend_s
                .ok_or_else(|| ApiError::unprocessable("missing_field", "extend needs extend_s"))?,
        },
        "notice" => RoomAction::Notice {
            text: request
                .text
                .clone()
                .ok_or_else(|| ApiError::unprocessable("missing_field", "notice needs text"))?,
        },
        other => {
            return Err(ApiError::unprocessable(
                "invalid_action",
                format!("{other:?} is not a room action"),
            ));
        }
    })
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
