//! A WebSocket test client: JSON frames in and out, with timeouts.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::TestApp;

pub struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The highest stream seq seen.
    pub last_seq: u64,
    /// Every frame received, in order (for seq checks).
    pub seen: Vec<Value>,
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Ws {
    pub async fn connect(app: &TestApp, path: &str, token: &str) -> Self {
        let url = format!(
            "{}{path}?token={token}",
            app.base.replace("http://", "ws://")
        );
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Self {
            socket,
            last_seq: 0,
            seen: Vec::new(),
        }
    }

    /// Opens a candidate socket and says hello (resuming if asked).
    pub async fn candidate(
        app: &TestApp,
        token: &str,
        resume: Option<(&str, u64)>,
    ) -> (Self, Value) {
        let mut ws = Self::connect(app, "/ws/candidate", token).await;
        let hello = match resume {
            Some((session, last_seq)) => {
                json!({"t": "hello", "resume": {"session": session, "last_seq": last_seq}})
            }
            None => json!({"t": "hello"}),
        };
        ws.send(hello).await;
        let welcome = ws.expect("welcome").await;
        (ws, welcome)
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send");
    }

    /// The next frame (skipping heartbeats), or `None` if the socket closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a frame within 10 s")?;
            match message {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(&text).expect("frames are JSON");
                    if value["t"] == "hb" {
                        continue;
                    }
                    if let Some(seq) = value["seq"].as_u64() {
                        self.last_seq = self.last_seq.max(seq);
                    }
                    self.seen.push(value.clone());
                    return Some(value);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of type `t`, skipping others.
    pub async fn expect(&mut self, t: &str) -> Value {
        loop {
            match self.next().await {
                Some(frame) if frame["t"] == t => return frame,
                Some(_) => continue,
                None => panic!(
                    "the socket closed while waiting for a {t} frame; seen {:?}",
                    self.seen
                ),
            }
        }
    }

    /// The next frame must be of type `t`.
    pub async fn expect_next(&mut self, t: &str) -> Value {
        let frame = self
            .next()
            .await
            .unwrap_or_else(|| panic!("closed while waiting for {t}"));
        assert_eq!(frame["t"], t, "{frame}");
        frame
    }

    /// Waits for the socket to close and returns how.
    pub async fn closed(&mut self) -> Closed {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("closes within 10 s");
            match message {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Closed {
                        code: code.into(),
                        reason: reason.to_string(),
                    };
                }
                Some(Ok(Message::Close(None))) | None => {
                    return Closed {
                        code: 1005,
                        reason: String::new(),
                    };
                }
                Some(Ok(Message::Text(text))) => {
                    self.seen
                        .push(serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    return Closed {
                        code: 1006,
                        reason: String::new(),
                    };
                }
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
