//! A proctor dashboard's rooms and commands on other nodes (cluster): a
//! room hosted elsewhere streams in through a feed tunnel from its owner,
//! and a command for it goes to the owner as its REST equivalent.

use std::time::Duration;

use invigil_actors::domain::{PlanId, ProctorId, RoomId};
use invigil_actors::live::wire::SocketOut;
use invigil_actors::shard::ShardId;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

use super::frames::Target;
use crate::cluster::{ForwardedRequest, Route, SocketKind, TunnelFrame, TunnelOpen};
use crate::state::AppState;

/// The pause before a feed is opened again after it ended or failed.
const REOPEN_AFTER: Duration = Duration::from_millis(250);
/// The pause before a room that moved here is watched again after a refusal.
const WATCH_AGAIN_AFTER: Duration = Duration::from_millis(500);

/// A room hosted on another node, streamed into a proctor socket's queue:
/// its snapshot and deltas come through a feed tunnel from the owner; when
/// the room moves (its owner died or drained) the feed is opened again on
/// the new owner, which sends a fresh snapshot, or the room is watched here
/// once it moved here. Ends when the socket does (the task is aborted) or
/// its queue closes.
pub(super) async fn remote_feed(
    state: AppState,
    plan_id: PlanId,
    room_id: RoomId,
    proctor_id: ProctorId,
    token: String,
    sender: mpsc::Sender<SocketOut>,
) {
    let shard = ShardId::of_room(&plan_id, &room_id);
    loop {
        let Some((cluster, node)) = state
            .cluster
            .as_ref()
            .and_then(|cluster| Some((cluster, state.owner_elsewhere(shard)?)))
        else {
            // Moved here: watch it here for as long as the socket lives.
            match state
                .exam
                .watch_room(&plan_id, &room_id, &proctor_id, &sender)
                .await
            {
                Ok(watch) => {
                    sender.closed().await;
                    drop(watch);
                    return;
                }
                Err(error) => {
                    debug!(room_id = %room_id, %error, "a moved room could not be watched yet");
                    tokio::time::sleep(WATCH_AGAIN_AFTER).await;
                    continue;
                }
            }
        };
        let open = TunnelOpen {
            kind: SocketKind::ProctorRoom,
            token: token.clone(),
            ip: None,
            room: Some(room_id.to_string()),
            traceparent: None,
        };
        match cluster.open_tunnel(&node, open).await {
            Ok(mut tunnel) => {
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
            }
            Err(error) => debug!(node = %node, %error, "a proctor feed could not be opened"),
        }
        if sender.is_closed() {
            return;
        }
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// A socket command, sent as its REST equivalent to the node hosting the
/// room when the room is not here.
pub(super) struct RemoteCommand {
    pub target: Target,
    pub action: String,
    pub reason: Option<String>,
    pub text: Option<String>,
    pub extend_s: Option<i64>,
}

impl RemoteCommand {
    /// Sends the command to the owner of `shard`; returns whether a live
    /// candidate socket got the control, or the owner's `(code, detail)`.
    pub(super) async fn send(
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
        let cluster = state.cluster.as_ref().ok_or_else(unavailable)?;
        let node = match shard
            .and_then(ShardId::new)
            .map(|shard| cluster.route(shard))
        {
            Some(Route::Node(node)) => node,
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
        let request = ForwardedRequest {
            method: "POST".into(),
            uri,
            headers: vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ],
            body: body.to_string().into_bytes(),
        };
        // A transport failure is retried like a move, as REST forwarding
        // does (the transport itself already retries a call whose answer
        // was lost, so a forwarded command is at-least-once either way).
        let answer = cluster.forward(&node, request).await.map_err(|error| {
            debug!(node = %node, %error, "a proctor command could not be forwarded");
            unavailable()
        })?;
        let body: serde_json::Value = match serde_json::from_slice(&answer.body) {
            Ok(body) => body,
            Err(error) => {
                debug!(node = %node, status = answer.status, %error, "the owner's answer is not JSON");
                serde_json::Value::Null
            }
        };
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
