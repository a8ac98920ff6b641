//! The two doors a candidate or proctor goes through before the load: the
//! REST login that returns a token, and the WebSocket connect that waits for
//! the server's first frame.

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub(super) use crate::reconnect::Socket;

/// Logs in with `body` at `path` and returns the session token.
pub(crate) async fn login(
    client: &reqwest::Client,
    base: &str,
    body: Value,
    path: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "login failed with {status}: {answer}");
    Ok(answer["token"].as_str().context("no token")?.to_string())
}

/// A connected socket and the highest cseq the server has accepted so far.
pub(crate) async fn connect(base: &str, path: &str, token: &str) -> anyhow::Result<(Socket, i64)> {
    let url = format!("{}{path}?token={token}", base.replace("http://", "ws://"));
    // A small read buffer: tungstenite zero-fills the whole buffer on every
    // read, and the 128 KiB default made memset the load tool's top cost.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    socket
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await?;
    // Wait for the welcome (candidates) or the first room snapshot (proctors).
    while let Some(message) = socket.next().await {
        if let Message::Text(text) = message? {
            let frame: Value = serde_json::from_str(&text)?;
            match frame["t"].as_str() {
                Some("welcome") => {
                    return Ok((socket, frame["state"]["last_cseq"].as_i64().unwrap_or(0)));
                }
                Some("room") => return Ok((socket, 0)),
                Some("error") => anyhow::bail!("refused: {frame}"),
                _ => {}
            }
        }
    }
    anyhow::bail!("closed before the welcome")
}
