//! What every socket shares: its buffers and limits, reading a frame under
//! the size limit, waiting for the `hello`, the frame rate, closing with a
//! reason.

use futures::{Sink, SinkExt, Stream, StreamExt};
use invigil_actors::live::wire::close as close_code;
use poem::web::websocket::{CloseCode, Message, WebSocketConfig};
use serde::Deserialize;

use crate::settings::ApiSettings;

/// `?token=…`
#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The WebSocket layer reads a message up to this many times the configured
/// limit into memory, so that one over the limit is refused by its size (a
/// 1009 close) rather than by the layer's error; beyond it, the connection
/// is cut without a close frame.
const READ_CAP_FACTOR: usize = 2;

/// Small buffers: thousands of mostly idle sockets per node. Writes go out
/// at once (no write batching) so a control reaches the candidate without
/// waiting for company.
pub fn socket_config(settings: &ApiSettings) -> WebSocketConfig {
    let cap = settings
        .ws_max_message_bytes
        .saturating_mul(READ_CAP_FACTOR);
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(cap))
        .max_frame_size(Some(cap))
}

/// A frame read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    /// Binary frames are refused (`text_only`); the socket stays open.
    Binary,
    /// The client closed, went away, or broke the protocol.
    Closed,
    /// A message over `limits.ws_message_bytes`: the socket closes with 1009.
    TooBig,
}

/// Reads the next text or binary frame (pings and pongs are the
/// WebSocket layer's), judging its size against `limit` bytes.
pub async fn next_frame<S>(stream: &mut S, limit: usize) -> Incoming
where
    S: Stream<Item = std::io::Result<Message>> + Unpin,
{
    loop {
        match stream.next().await {
            None | Some(Ok(Message::Close(_))) => return Incoming::Closed,
            Some(Err(error)) => {
                // A broken connection, a protocol violation, or a message
                // beyond the read cap: nothing to answer.
                tracing::debug!(%error, "socket read failed");
                return Incoming::Closed;
            }
            Some(Ok(Message::Text(text))) if text.len() > limit => return Incoming::TooBig,
            Some(Ok(Message::Text(text))) => return Incoming::Text(text),
            Some(Ok(Message::Binary(bytes))) if bytes.len() > limit => return Incoming::TooBig,
            Some(Ok(Message::Binary(_))) => return Incoming::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
        }
    }
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

/// Waits, until `timeout`, for the first frame `greeting` accepts (the
/// `hello`); answers anything else with the error frame `refusal` renders
/// from a code and a message. `None`: the socket is over (closed with 4408
/// when no greeting came in time, 1009 for a message over `limit`).
pub async fn await_greeting<K, S, T>(
    sink: &mut K,
    stream: &mut S,
    timeout: std::time::Duration,
    limit: usize,
    greeting: impl Fn(&str) -> Result<T, (&'static str, String)>,
    refusal: impl Fn(&str, &str) -> String,
) -> Option<T>
where
    K: Sink<Message> + Unpin,
    S: Stream<Item = std::io::Result<Message>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Ok(incoming) = tokio::time::timeout_at(deadline, next_frame(stream, limit)).await
        else {
            close(sink, close_code::HELLO_TIMEOUT, "no valid hello in time").await;
            return None;
        };
        let (code, message) = match incoming {
            Incoming::Closed => return None,
            Incoming::TooBig => {
                close(sink, close_code::TOO_BIG, "frame too large").await;
                return None;
            }
            Incoming::Binary => ("text_only", "frames are JSON text".to_string()),
            Incoming::Text(text) => match greeting(&text) {
                Ok(greeted) => return Some(greeted),
                Err(refused) => refused,
            },
        };
        if sink
            .send(Message::text(refusal(code, &message)))
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// One socket's share of the metrics: counted open while either half
/// lives; its close is counted once, with the first close code seen in
/// either direction (`none` when the connection just ended).
struct Meter {
    gauge: invigil_actors::metrics::SocketGauge,
    /// The first close code seen; 0 while none.
    close: std::sync::atomic::AtomicU32,
}

impl Meter {
    fn saw_close(&self, code: u16) {
        let _ = self.close.compare_exchange(
            0,
            u32::from(code),
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn frame(&self, message: &Message, direction: &'static str) {
        match message {
            Message::Text(_) | Message::Binary(_) => {
                self.gauge
                    .metrics()
                    .socket_frame(self.gauge.role(), direction);
            }
            Message::Close(frame) => {
                self.saw_close(frame.as_ref().map_or(1005, |(code, _)| u16::from(*code)));
            }
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let code = self.close.load(std::sync::atomic::Ordering::Relaxed);
        let code = u16::try_from(code).ok().filter(|code| *code != 0);
        self.gauge.metrics().socket_closed(self.gauge.role(), code);
    }
}

/// The reading half of a metered socket.
pub struct MeteredStream<S> {
    inner: S,
    meter: std::sync::Arc<Meter>,
}

/// The writing half of a metered socket.
pub struct MeteredSink<K> {
    inner: K,
    meter: std::sync::Arc<Meter>,
}

/// Splits `socket` into halves that count its frames, its close and its
/// being open (`invigil_sockets`, `invigil_socket_frames_total`,
/// `invigil_socket_closes_total`) under `role`.
pub fn metered<T>(
    socket: T,
    metrics: &invigil_actors::metrics::Metrics,
    role: &'static str,
) -> (
    MeteredSink<futures::stream::SplitSink<T, Message>>,
    MeteredStream<futures::stream::SplitStream<T>>,
)
where
    T: Stream<Item = std::io::Result<Message>> + Sink<Message>,
{
    let meter = std::sync::Arc::new(Meter {
        gauge: metrics.socket_opened(role),
        close: std::sync::atomic::AtomicU32::new(0),
    });
    let (sink, stream) = socket.split();
    (
        MeteredSink {
            inner: sink,
            meter: meter.clone(),
        },
        MeteredStream {
            inner: stream,
            meter,
        },
    )
}

impl<S> Stream for MeteredStream<S>
where
    S: Stream<Item = std::io::Result<Message>> + Unpin,
{
    type Item = std::io::Result<Message>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(message))) = &polled {
            self.meter.frame(message, "in");
        }
        polled
    }
}

impl<K> Sink<Message> for MeteredSink<K>
where
    K: Sink<Message> + Unpin,
{
    type Error = K::Error;

    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.meter.frame(&item, "out");
        std::pin::Pin::new(&mut self.inner).start_send(item)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::pin::Pin::new(&mut self.inner).poll_close(cx)
    }
}
