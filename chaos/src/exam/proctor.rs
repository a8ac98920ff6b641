//! One proctor on its socket: `warn` commands to the candidates of its room
//! on a schedule, each clocked in `Shared` until the candidate sees it, and
//! the command acks that come back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::shared::Shared;
use super::socket::Socket;

/// One proctor: `warn` commands to the room's candidates on schedule.
pub(super) async fn proctor(
    socket: Socket,
    shared: Arc<Shared>,
    interval: Option<Duration>,
    phase: Option<Duration>,
    candidates: Vec<usize>,
    deadline: Instant,
) {
    static NEXT_COMMAND: AtomicU64 = AtomicU64::new(1);
    let (mut sink, mut stream) = socket.split();
    let mut next = tokio::time::Instant::now()
        + interval.unwrap_or(Duration::from_secs(3600))
        + phase.unwrap_or_default();
    // The last command leaves well before the candidates stop listening.
    let last_command = deadline - Duration::from_millis(500);
    let mut target = 0;
    // Commands sent and not yet acked; after the run, wait a little for them.
    let mut unacked = 0_u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        if shared.stop_sending.load(Ordering::Relaxed) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if unacked == 0 || since.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next), if interval.is_some() && Instant::now() < last_command && !candidates.is_empty() => {
                let id = NEXT_COMMAND.fetch_add(1, Ordering::Relaxed);
                let candidate = candidates[target % candidates.len()];
                target += 1;
                let frame = json!({
                    "t": "command", "id": id.to_string(), "action": "warn", "reason": format!("load:{id}"),
                    "target": {"candidate_id": format!("cand-{candidate:06}")}
                });
                shared.commands.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Instant::now());
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                shared.commands_sent.fetch_add(1, Ordering::Relaxed);
                unacked += 1;
                next += interval.unwrap_or_default();
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(frame) = serde_json::from_str::<Value>(&text)
                        && frame["t"] == "command_ack"
                    {
                        shared.command_acks.fetch_add(1, Ordering::Relaxed);
                        unacked = unacked.saturating_sub(1);
                        if frame.get("error").is_some() {
                            shared.error(frame.to_string());
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let _ = sink.close().await;
}
