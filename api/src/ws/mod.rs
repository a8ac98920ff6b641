//! The WebSocket gateway: `/ws/candidate` and `/ws/proctor`.
//!
//! The token is checked before the upgrade (a bad one is an HTTP 401/403
//! problem). After the upgrade a socket must say `hello` within
//! `ws_hello_timeout`; frames above `ws_max_message_bytes` close it with
//! 1009. The socket task is a pipe: it parses and forwards frames to the
//! room actor and writes what the room sends; all state lives in the room.
//!
//! # Layout
//! - `frames`: the client frames, parsed strictly
//! - `candidate`: the candidate socket
//! - `proctor`: the proctor dashboard socket
//! - `tunnel`: sockets whose room is hosted on another node

pub mod candidate;
pub mod frames;
pub mod proctor;
pub mod tunnel;

use std::sync::atomic::{AtomicU64, Ordering};

use futures::{Sink, SinkExt};
use poem::web::websocket::{CloseCode, Message, WebSocketConfig};
use serde::Deserialize;

use crate::state::ApiSettings;

/// Distinguishes the sockets of one node.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

pub fn next_connection_id() -> u64 {
    NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed)
}

/// `?token=…`
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// Small buffers: thousands of mostly idle sockets per node. Writes go out
/// at once (no write batching) so a control reaches the candidate without
/// waiting for company.
pub fn socket_config(settings: &ApiSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(settings.ws_max_message_bytes))
        .max_frame_size(Some(settings.ws_max_message_bytes))
}

/// Sends a close frame with a reason; the connection is over either way.
pub async fn close<S>(sink: &mut S, code: u16, reason: &str)
where
    S: Sink<Message> + Unpin,
{
    let _ = sink
        .send(Message::close_with(
            CloseCode::from(code),
            reason.to_string(),
        ))
        .await;
    let _ = sink.close().await;
}

/// Frames a socket may send per second. Beyond the limit each frame is
/// refused with a `rate_limited` error frame and the socket stays open: a
/// buggy client is slowed down, not cut off, and cannot make the node queue
/// unbounded work.
pub struct FrameRate {
    window_started: tokio::time::Instant,
    in_window: u32,
    per_second: u32,
}

impl FrameRate {
    pub fn new(per_second: u32) -> Self {
        Self {
            window_started: tokio::time::Instant::now(),
            in_window: 0,
            per_second: per_second.max(1),
        }
    }

    /// Counts a frame; false when it is over the limit.
    pub fn admit(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_started) >= std::time::Duration::from_secs(1) {
            self.window_started = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window <= self.per_second
    }
}

pub const RATE_LIMITED: (&str, &str) = ("rate_limited", "too many frames per second; slow down");

/// Whether a read error means "message too big".
pub fn too_big(error: &std::io::Error) -> bool {
    let text = error.to_string();
    text.contains("too long") || text.contains("too big") || text.contains("Space limit")
}
