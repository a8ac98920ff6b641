//! Proctors during a drill: one per room (up to `--proctors`), each on a
//! dashboard socket of its own node, warning a candidate of its room every
//! two seconds. A warning's reason carries its id; the candidate that gets
//! the `control` records it, so delivery is timed end to end (same
//! process, same clock), before, during and after the fault. The
//! `command_ack` of each is kept: a warning the server confirmed as
//! delivered that never reached its candidate fails the drill; one never
//! confirmed (its socket ended first) is what the proctor sees as not
//! confirmed, counted but not a violation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::exam::socket::{connect, login};
use crate::reconnect::backoff;

/// A warning's `command_ack`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Committed; `true`: the candidate had a socket to deliver it to.
    Delivered(bool),
    /// Refused, with the error's code.
    Failed(String),
}

/// One warning sent: when, and its `command_ack` if one came.
#[derive(Clone, Debug)]
pub struct Command {
    pub sent_at: Instant,
    pub ack: Option<Ack>,
}

/// Warnings sent, by id.
#[derive(Default)]
pub struct Sent(Mutex<HashMap<u64, Command>>);

impl Sent {
    pub fn take(&self) -> HashMap<u64, Command> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn sent(&self, id: u64) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Command {
                sent_at: Instant::now(),
                ack: None,
            },
        );
    }

    /// Records a `command_ack` frame (other frames are ignored).
    fn acked(&self, text: &str) {
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        if frame["t"] != "command_ack" {
            return;
        }
        let Some(id) = frame["id"].as_str().and_then(|id| id.parse::<u64>().ok()) else {
            return;
        };
        let ack = match frame["error"]["code"].as_str() {
            Some(code) => Ack::Failed(code.to_owned()),
            None => Ack::Delivered(frame["delivered"].as_bool().unwrap_or(false)),
        };
        if let Some(command) = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            command.ack = Some(ack);
        }
    }
}

/// The reason text of warning `id`.
pub fn reason(id: u64) -> String {
    format!("drill:{id}")
}

/// The id in a warning's reason.
pub fn id_of(reason: &str) -> Option<u64> {
    reason.strip_prefix("drill:")?.parse().ok()
}

/// One proctor of room `room` (login `proctor-ROOM`), its nodes, and the
/// candidates of its room.
pub struct Proctor {
    pub client: reqwest::Client,
    pub bases: Vec<String>,
    pub plan_id: String,
    pub room: usize,
    pub candidates: Vec<String>,
}

impl Proctor {
    /// Logs in on `bases[0]` (the next node when that fails), keeps a
    /// dashboard socket, warns the candidates in turn every `every` until
    /// `stop`. Ids are `room * 1_000_000 + n`.
    pub async fn run(self, sent: Arc<Sent>, every: Duration, stop: Instant) {
        if self.candidates.is_empty() {
            return;
        }
        let mut node = 0_usize;
        let mut failures = 0_u32;
        let mut next = 0_u64;
        while Instant::now() < stop {
            tokio::time::sleep(backoff(failures)).await;
            let base = &self.bases[node % self.bases.len()];
            let Some(mut socket) = dashboard(&self.client, base, &self.plan_id, self.room).await
            else {
                failures += 1;
                node += 1;
                continue;
            };
            failures = 0;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if Instant::now() >= stop {
                            return;
                        }
                        let id = self.room as u64 * 1_000_000 + next;
                        let target = &self.candidates[next as usize % self.candidates.len()];
                        next += 1;
                        let command = json!({"t": "command", "id": id.to_string(), "target": {"candidate_id": target},
                                             "action": "warn", "reason": reason(id)});
                        sent.sent(id);
                        if socket.send(Message::text(command.to_string())).await.is_err() {
                            break;
                        }
                    }
                    message = socket.next() => match message {
                        Some(Ok(Message::Text(text))) => sent.acked(&text),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
            // The dashboard's node went away: the next one.
            node += 1;
        }
    }
}

/// A proctor logged in on `base` with a dashboard socket that said hello
/// and got its first room snapshot (the load's own doors, each bounded).
async fn dashboard(
    client: &reqwest::Client,
    base: &str,
    plan_id: &str,
    room: usize,
) -> Option<crate::reconnect::Socket> {
    let body = json!({"plan_id": plan_id, "login": format!("proctor-{room}"), "password": format!("password-{room}")});
    let patience = Duration::from_secs(3);
    let token = tokio::time::timeout(patience, login(client, base, body, "/api/v1/auth/proctor"))
        .await
        .ok()?
        .ok()?;
    let (socket, _) = tokio::time::timeout(patience, connect(base, "/ws/proctor", &token))
        .await
        .ok()?
        .ok()?;
    Some(socket)
}
