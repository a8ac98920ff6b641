//! A candidate's socket kept alive by docs/protocol.md's reconnect rule
//! ("Reconnecting"), exactly: the same node first after a socket closed
//! with a close frame, the next node after a silence, a broken connection
//! or a failed attempt, full-jitter backoff growing
//! while attempts fail, a `hello` with `resume {session, last_seq}`, the
//! wait for a held greeting, `retry_after_ms` honoured, and every unacked
//! answer resent byte for byte after the welcome. `invigil-load` and
//! `invigil-chaos drill` drive their candidates through it.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// A client WebSocket to a node.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long the upgrade may take before the attempt counts as failed.
pub const UPGRADE_PATIENCE: Duration = Duration::from_secs(3);
/// How long a greeting may be held (the node holds it up to 5 s while the
/// room moves) before the attempt counts as failed.
pub const WELCOME_PATIENCE: Duration = Duration::from_secs(7);

/// The wait before the next attempt after `failures` failed ones: a random
/// time up to `min(2 s, 100 ms × 2^(failures − 1))`; none before the first.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ceiling = (100_u64 << (failures - 1).min(5)).min(2_000);
    let mut noise = std::collections::hash_map::RandomState::new().build_hasher();
    noise.write_u32(failures);
    Duration::from_millis(noise.finish() % (ceiling + 1))
}

/// What a welcome said.
#[derive(Clone, Debug)]
pub struct Welcome {
    /// The whole frame.
    pub frame: Value,
    /// Whether the session was resumed (frames replayed) or started anew.
    pub resumed: bool,
    /// The highest cseq the server has accepted.
    pub last_cseq: i64,
}

/// One candidate's connection state across sockets.
pub struct Candidate {
    bases: Vec<String>,
    token: String,
    /// Index into `bases` of the node to try next.
    node: usize,
    failures: u32,
    /// The session and the last `seq` received, for `resume`.
    session: Option<(String, u64)>,
    /// Answers sent and not acknowledged: cseq → the frame's exact text.
    unacked: BTreeMap<i64, String>,
    /// Attempts that failed, and sockets that ended, so far.
    pub failed_attempts: u64,
    pub reconnects: u64,
}

impl Candidate {
    /// A candidate holding `token`, connecting first to `bases[0]`.
    pub fn new(bases: Vec<String>, token: String) -> Self {
        assert!(!bases.is_empty(), "at least one node address");
        Self {
            bases,
            token,
            node: 0,
            failures: 0,
            session: None,
            unacked: BTreeMap::new(),
            failed_attempts: 0,
            reconnects: 0,
        }
    }

    /// The node the socket is (or will be) connected to.
    pub fn base(&self) -> &str {
        &self.bases[self.node % self.bases.len()]
    }

    /// Notes a frame received (its `seq`, for a later resume).
    pub fn received(&mut self, frame: &Value) {
        if let (Some(seq), Some((_, last_seq))) = (frame["seq"].as_u64(), self.session.as_mut()) {
            *last_seq = (*last_seq).max(seq);
        }
    }

    /// Notes a `seq` received without parsing the frame (fast paths).
    pub fn received_seq(&mut self, seq: u64) {
        if let Some((_, last_seq)) = self.session.as_mut() {
            *last_seq = (*last_seq).max(seq);
        }
    }

    /// The frame of an answer, remembered until it is acknowledged.
    pub fn answer(&mut self, question: &str, value: &Value, cseq: i64) -> String {
        let text = json!({"t": "answer", "q": question, "value": value, "cseq": cseq}).to_string();
        self.unacked.insert(cseq, text.clone());
        text
    }

    /// Remembers an answer frame sent as `text` under `cseq`.
    pub fn sent(&mut self, cseq: i64, text: String) {
        self.unacked.insert(cseq, text);
    }

    /// The answer `cseq` was acknowledged (or finally refused).
    pub fn settled(&mut self, cseq: i64) {
        self.unacked.remove(&cseq);
    }

    /// Answers not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The socket that was serving ended. `cleanly`: with a close frame
    /// (the node is alive — a room moved, it is handing off): the next
    /// [`Self::connect`] tries the same node first. Otherwise (silence, a
    /// broken connection: the node may be dead or frozen) the next node.
    pub fn ended(&mut self, cleanly: bool) {
        self.reconnects += 1;
        if !cleanly {
            self.node += 1;
        }
    }

    /// Connects by the rule until welcomed or `until`; after the welcome
    /// every unacked answer is sent again, in cseq order. Returns the
    /// socket and the welcome.
    pub async fn connect(&mut self, until: Instant) -> anyhow::Result<(Socket, Welcome)> {
        loop {
            let wait = backoff(self.failures);
            anyhow::ensure!(
                Instant::now() + wait < until,
                "not welcomed before the deadline ({} failed attempts)",
                self.failures
            );
            tokio::time::sleep(wait).await;
            match self.attempt(until).await {
                Ok((mut socket, welcome)) => {
                    self.failures = 0;
                    for text in self.unacked.values() {
                        socket.send(Message::text(text.clone())).await?;
                    }
                    return Ok((socket, welcome));
                }
                Err(Refused::RetryAfter(wait)) => {
                    self.fail();
                    tokio::time::sleep(wait).await;
                }
                Err(Refused::Final(error)) => return Err(error),
                Err(Refused::Failed) => self.fail(),
            }
        }
    }

    fn fail(&mut self) {
        self.failures += 1;
        self.failed_attempts += 1;
        self.node += 1;
    }

    /// One attempt on the current node.
    async fn attempt(&mut self, until: Instant) -> Result<(Socket, Welcome), Refused> {
        let url = format!(
            "{}/ws/candidate?token={}",
            self.base().replace("http://", "ws://"),
            self.token
        );
        // A small read buffer: tungstenite zero-fills the whole buffer on
        // every read, and the 128 KiB default made memset the top cost.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(4 * 1024)
            .write_buffer_size(0);
        let upgrade = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
        let mut socket = match tokio::time::timeout(UPGRADE_PATIENCE, upgrade).await {
            Ok(Ok((socket, _))) => socket,
            // A 401/403 is final: the token is no good anywhere.
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
                if response.status() == 401 || response.status() == 403 =>
            {
                return Err(Refused::Final(anyhow::anyhow!(
                    "the node refused the token ({})",
                    response.status()
                )));
            }
            _ => return Err(Refused::Failed),
        };
        let hello = match &self.session {
            Some((session, last_seq)) => {
                json!({"t": "hello", "resume": {"session": session, "last_seq": last_seq}})
            }
            None => json!({"t": "hello"}),
        };
        if socket.send(Message::text(hello.to_string())).await.is_err() {
            return Err(Refused::Failed);
        }
        let patience = (Instant::now() + WELCOME_PATIENCE).min(until);
        loop {
            let next = tokio::time::timeout_at(patience, socket.next()).await;
            let text = match next {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
                _ => return Err(Refused::Failed),
            };
            let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            match frame["t"].as_str() {
                Some("welcome") => {
                    let session = frame["session"].as_str().unwrap_or_default().to_string();
                    let seq = frame["seq"].as_u64().unwrap_or(0);
                    self.session = Some((session, seq));
                    let welcome = Welcome {
                        resumed: frame["resumed"].as_bool().unwrap_or(false),
                        last_cseq: frame["state"]["last_cseq"].as_i64().unwrap_or(0),
                        frame,
                    };
                    return Ok((socket, welcome));
                }
                Some("error") => {
                    if let Some(wait) = frame["retry_after_ms"].as_u64() {
                        return Err(Refused::RetryAfter(Duration::from_millis(wait)));
                    }
                    let code = frame["code"].as_str().unwrap_or_default();
                    // Refused for good: the exam is over for this candidate.
                    if matches!(
                        code,
                        "candidate_expelled" | "candidate_absent" | "not_found"
                    ) {
                        return Err(Refused::Final(anyhow::anyhow!("greeting refused: {frame}")));
                    }
                    return Err(Refused::Failed);
                }
                _ => {}
            }
        }
    }
}

/// Why an attempt did not end in a welcome.
enum Refused {
    /// Try the next node after the backoff.
    Failed,
    /// `room_moving`: wait this long, then go on.
    RetryAfter(Duration),
    /// Do not retry.
    Final(anyhow::Error),
}

impl From<anyhow::Error> for Refused {
    fn from(error: anyhow::Error) -> Self {
        Self::Final(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_to_two_seconds_with_full_jitter() {
        assert_eq!(backoff(0), Duration::ZERO);
        for failures in 1..20 {
            let ceiling = Duration::from_millis((100_u64 << (failures - 1).min(5)).min(2_000));
            let waits: Vec<Duration> = (0..50).map(|_| backoff(failures)).collect();
            assert!(waits.iter().all(|wait| *wait <= ceiling));
            // Jittered: not all the same.
            assert!(waits.iter().any(|wait| *wait != waits[0]), "{waits:?}");
        }
    }

    #[test]
    fn unacked_answers_are_kept_byte_for_byte_in_cseq_order() {
        let mut candidate = Candidate::new(vec!["http://127.0.0.1:1".into()], "t".into());
        let second = candidate.answer("q2", &json!("b"), 2);
        let first = candidate.answer("q1", &json!({"x": 1}), 1);
        candidate.settled(3);
        assert_eq!(candidate.unacked(), 2);
        let texts: Vec<&String> = candidate.unacked.values().collect();
        assert_eq!(texts, vec![&first, &second]);
        candidate.settled(1);
        assert_eq!(candidate.unacked(), 1);
    }
}
