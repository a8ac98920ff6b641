//! Steady exam traffic for a drill: every candidate on a real socket,
//! started round robin on every node (so some sit on the node the fault
//! hits and some in the rooms it owns), answering one question at a time,
//! heartbeating, and reconnecting by docs/protocol.md's rule. Each records
//! what it was told, when.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::reconnect::Candidate;

/// What one candidate saw.
#[derive(Debug, Default)]
pub struct Record {
    /// (cseq, version, when) of every ack.
    pub acked: Vec<(i64, i64, Instant)>,
    /// (code, when) of every error frame.
    pub refused: Vec<(String, Instant)>,
    /// (when, remaining_s) from every welcome and state frame.
    pub clock: Vec<(Instant, i64)>,
    /// When each socket was welcomed, and when each ended.
    pub welcomed: Vec<Instant>,
    pub ended: Vec<Instant>,
    /// (action, reason, when) of every control.
    pub controls: Vec<(String, Option<String>, Instant)>,
    /// When the candidate first learned its time was up: a `state
    /// {event: time_up}` frame, or a view (welcome or state) whose
    /// `submit_reason` is `time_up`.
    pub told_time_up: Option<Instant>,
    pub failed_attempts: u64,
    /// Why the candidate stopped early, if it did.
    pub gave_up: Option<String>,
}

/// One simulated candidate.
pub struct Rider {
    /// `cand-0001` …
    pub candidate_id: String,
    pub room: usize,
    /// The node its first socket went to.
    pub first_node: usize,
    pub record: Arc<Mutex<Record>>,
}

/// Asks every rider to drop its socket at once (the reconnect storm).
#[derive(Clone, Default)]
pub struct Storm(Arc<tokio::sync::Notify>);

impl Storm {
    pub fn now(&self) {
        self.0.notify_waiters();
    }
}

/// How a candidate behaves.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Pause between an ack and the next answer.
    pub think: Duration,
    pub heartbeat: Duration,
}

fn lock(record: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    record
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one candidate until `stop`: answers (one in flight), heartbeats,
/// and the reconnect rule when its socket ends or goes silent for two
/// heartbeats.
pub async fn ride(
    mut client: Candidate,
    record: Arc<Mutex<Record>>,
    pace: Pace,
    storm: Storm,
    stop: Instant,
) {
    let mut cseq = 0_i64;
    let mut in_flight: Option<i64> = None;
    loop {
        let (socket, welcome) = match client.connect(stop).await {
            Ok(connected) => connected,
            Err(error) => {
                let mut record = lock(&record);
                record.failed_attempts = client.failed_attempts;
                if Instant::now() < stop {
                    record.gave_up = Some(format!("{error:#}"));
                }
                return;
            }
        };
        {
            let mut record = lock(&record);
            record.welcomed.push(Instant::now());
            record.failed_attempts = client.failed_attempts;
            if let Some(remaining) = welcome.frame["state"]["remaining_s"].as_i64() {
                record.clock.push((Instant::now(), remaining));
            }
            if welcome.frame["state"]["submit_reason"] == "time_up" {
                record.told_time_up.get_or_insert(Instant::now());
            }
        }
        cseq = cseq.max(welcome.last_cseq);
        let (mut sink, mut stream) = socket.split();
        let mut next_answer = Instant::now();
        let mut next_heartbeat = Instant::now() + pace.heartbeat;
        let mut last_heard = Instant::now();
        let storm_hit = storm.0.notified();
        tokio::pin!(storm_hit);
        // Whether the socket ended with a close frame (the node is alive).
        let mut cleanly = false;
        loop {
            if Instant::now() >= stop {
                let _ = sink.close().await;
                return;
            }
            // After time-up there is nothing left to answer.
            let done = lock(&record).told_time_up.is_some();
            if in_flight.is_none() && !done && Instant::now() >= next_answer {
                cseq += 1;
                let question = format!("q{}", cseq % 10 + 1);
                let text = client.answer(&question, &json!(format!("answer {cseq}")), cseq);
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
                in_flight = Some(cseq);
            }
            let silent_at = last_heard + pace.heartbeat * 2;
            let wake =
                next_heartbeat
                    .min(silent_at)
                    .min(stop)
                    .min(if in_flight.is_none() && !done {
                        next_answer
                    } else {
                        stop
                    });
            tokio::select! {
                () = &mut storm_hit => {
                    // Dropped on our side; the node is fine.
                    cleanly = true;
                    break;
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= silent_at {
                        break;
                    }
                    if now >= next_heartbeat {
                        let frame = json!({"t": "hb", "ts": 0}).to_string();
                        if sink.send(Message::text(frame)).await.is_err() {
                            break;
                        }
                        next_heartbeat = now + pace.heartbeat;
                    }
                }
                message = stream.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) => {
                            cleanly = true;
                            break;
                        }
                        Some(Ok(_)) => continue,
                        _ => break,
                    };
                    last_heard = Instant::now();
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                    client.received(&frame);
                    let now = Instant::now();
                    match frame["t"].as_str() {
                        Some("ack") => {
                            let (Some(acked), Some(version)) = (frame["cseq"].as_i64(), frame["version"].as_i64()) else { continue };
                            client.settled(acked);
                            lock(&record).acked.push((acked, version, now));
                            if in_flight == Some(acked) {
                                in_flight = None;
                                next_answer = now + pace.think;
                            }
                        }
                        Some("error") => {
                            let code = frame["code"].as_str().unwrap_or_default().to_string();
                            lock(&record).refused.push((code.clone(), now));
                            // Refused for now (not acknowledged): send it
                            // again; refused for good: go on to the next.
                            if let Some(refused) = frame["cseq"].as_i64()
                                && in_flight == Some(refused)
                                && !retryable(&code)
                            {
                                client.settled(refused);
                                in_flight = None;
                                next_answer = now + pace.think;
                            } else if let Some(refused) = frame["cseq"].as_i64()
                                && in_flight == Some(refused)
                            {
                                let text = client.answer(&format!("q{}", refused % 10 + 1), &json!(format!("answer {refused}")), refused);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                if sink.send(Message::text(text)).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Some("state") => {
                            let mut record = lock(&record);
                            if let Some(remaining) = frame["remaining_s"].as_i64() {
                                record.clock.push((now, remaining));
                            }
                            if frame["event"] == "time_up" || frame["submit_reason"] == "time_up" {
                                record.told_time_up.get_or_insert(now);
                            }
                        }
                        Some("control") => {
                            let action = frame["action"].as_str().unwrap_or_default().to_string();
                            let reason = frame["reason"].as_str().map(str::to_string);
                            lock(&record).controls.push((action, reason, now));
                        }
                        _ => {}
                    }
                }
            }
        }
        lock(&record).ended.push(Instant::now());
        client.ended(cleanly);
    }
}

/// Refusals that say "not now" (docs/protocol.md, answer refusals): the
/// answer is sent again.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "store_unavailable"
            | "concurrent_update"
            | "internal_error"
            | "not_owner"
            | "shutting_down"
            | "unavailable"
            | "rate_limited"
    )
}
