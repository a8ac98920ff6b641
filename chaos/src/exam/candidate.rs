//! One candidate on its socket: answers on a schedule (paced, or a window
//! kept full), heartbeats, and the acks and proctor controls that come back,
//! each timed against when it was sent. A socket that ends is replaced by
//! docs/protocol.md's reconnect rule ([`crate::reconnect`]); an answer's
//! latency runs from its first send to its ack, resends included.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::shared::Shared;
use crate::reconnect::{Candidate, Socket};
use crate::stats::Latencies;

/// When one candidate sends.
pub(super) struct Schedule {
    /// Open loop: the time between two answers; `None` sends none on a clock.
    pub(super) interval: Option<Duration>,
    /// How far into the first interval the first answer leaves, so that the
    /// candidates' answers spread evenly.
    pub(super) phase: Option<Duration>,
    pub(super) heartbeat: Duration,
    /// When answers stop; acks are awaited a little longer.
    pub(super) deadline: Instant,
    /// Continue after the highest cseq the server has (as a real client does).
    pub(super) last_cseq: i64,
    /// Closed loop: answers kept in flight, the next sent as one is acked.
    pub(super) window: Option<usize>,
    /// Answers sent before this are warm-up: acked but not measured.
    pub(super) measure_from: Instant,
}

/// One candidate: answers on schedule, heartbeats, acks timed; the socket
/// replaced by the reconnect rule whenever it ends before the run does.
pub(super) async fn candidate(
    mut client: Candidate,
    socket: Socket,
    shared: Arc<Shared>,
    schedule: Schedule,
) -> Latencies {
    let Schedule {
        interval,
        phase,
        heartbeat,
        deadline,
        last_cseq,
        window,
        measure_from,
    } = schedule;
    let (mut sink, mut stream) = socket.split();
    let mut latencies = Latencies::default();
    let mut in_flight: HashMap<i64, Instant> = HashMap::new();
    let mut cseq = last_cseq;
    let start = tokio::time::Instant::now();
    let mut next_answer = interval.map(|_| start + phase.unwrap_or_default());
    let mut next_heartbeat = start + heartbeat;
    // After the deadline, wait a little for the acks still on their way.
    let drain_until = tokio::time::Instant::from_std(deadline) + Duration::from_secs(3);
    // The rule's "silent for 2 × heartbeat after the welcome".
    let silence = heartbeat * 2;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        let sending = Instant::now() < deadline;
        let mut gone = false;
        // Ended with a close frame (the node is alive): same node first.
        let mut cleanly = false;
        // Closed loop: top the window up before waiting.
        if let Some(window) = window
            && sending
        {
            while in_flight.len() < window {
                cseq += 1;
                if !send_answer(&mut sink, &mut client, &shared, &mut in_flight, cseq).await {
                    gone = true;
                    break;
                }
            }
        }
        if !gone {
            if !sending && now >= drain_until {
                break;
            }
            if !sending && in_flight.is_empty() {
                // Stay for controls still on their way to some candidate.
                let controls_pending = !shared
                    .commands
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty();
                if !controls_pending {
                    break;
                }
            }
            let wake = match (sending, next_answer) {
                (true, Some(at)) => at.min(next_heartbeat),
                (true, None) => next_heartbeat,
                // Draining: look again soon whether anything is still awaited.
                (false, _) => next_heartbeat
                    .min(drain_until)
                    .min(now + Duration::from_millis(100)),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake.min(last_heard + silence)) => {
                    let now = tokio::time::Instant::now();
                    if now >= last_heard + silence {
                        gone = true;
                    }
                    if !gone && sending && let (Some(at), Some(interval)) = (next_answer, interval) && now >= at {
                        cseq += 1;
                        gone = !send_answer(&mut sink, &mut client, &shared, &mut in_flight, cseq).await;
                        next_answer = Some(at + interval);
                    }
                    if !gone && now >= next_heartbeat {
                        let frame = format!(r#"{{"t":"hb","ts":{}}}"#, start.elapsed().as_millis());
                        gone = sink.send(Message::text(frame)).await.is_err();
                        next_heartbeat = now + heartbeat;
                    }
                }
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = tokio::time::Instant::now();
                        received(&text, &mut client, &shared, &mut in_flight, &mut latencies, measure_from);
                    }
                    Some(Ok(Message::Close(_))) => {
                        gone = true;
                        cleanly = true;
                    }
                    Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
                    _ => gone = true,
                },
            }
        }
        if gone {
            // The rule: reconnect (same node first), resume, resend.
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
            client.ended(cleanly);
            match client.connect(drain_until).await {
                Ok((socket, _)) => {
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    (sink, stream) = socket.split();
                    last_heard = tokio::time::Instant::now();
                }
                Err(error) => {
                    shared.error(format!("reconnect: {error:#}"));
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    latencies
}

/// Takes in one frame from the server: acks (timed), refusals, controls.
fn received(
    text: &str,
    client: &mut Candidate,
    shared: &Shared,
    in_flight: &mut HashMap<i64, Instant>,
    latencies: &mut Latencies,
    measure_from: Instant,
) {
    // Acks are the bulk: read them without building a JSON tree.
    if let Some((seq, cseq)) = ack_seq_cseq(text) {
        client.received_seq(seq);
        client.settled(cseq);
        if let Some(sent) = in_flight.remove(&cseq) {
            acked(shared, latencies, sent, measure_from);
        }
        return;
    }
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return;
    };
    client.received(&frame);
    match frame["t"].as_str() {
        Some("ack") => {
            if let Some(cseq) = frame["cseq"].as_i64() {
                client.settled(cseq);
                if let Some(sent) = in_flight.remove(&cseq) {
                    acked(shared, latencies, sent, measure_from);
                }
            }
        }
        Some("error") => {
            if let Some(cseq) = frame["cseq"].as_i64() {
                in_flight.remove(&cseq);
                client.settled(cseq);
            }
            shared.error(frame.to_string());
        }
        Some("control") => {
            let id = frame["reason"]
                .as_str()
                .and_then(|reason| reason.strip_prefix("load:"))
                .and_then(|id| id.parse::<u64>().ok());
            if let Some(id) = id {
                let sent = shared
                    .commands
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(sent) = sent {
                    shared
                        .control_latency
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(sent.elapsed());
                    shared.controls.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => {}
    }
}

/// Sends answer `cseq` (cycling over 12 single-choice questions), starts
/// its clock and keeps it for a resend; false when the socket is gone.
async fn send_answer(
    sink: &mut futures::stream::SplitSink<Socket, Message>,
    client: &mut Candidate,
    shared: &Shared,
    in_flight: &mut HashMap<i64, Instant>,
    cseq: i64,
) -> bool {
    let frame = format!(
        r#"{{"t":"answer","q":"q{:02}","value":"{}","cseq":{cseq}}}"#,
        cseq % 12 + 1,
        cseq % 4 + 1
    );
    // Timed from the first send; kept for a resend after a reconnect.
    in_flight.insert(cseq, Instant::now());
    client.sent(cseq, frame.clone());
    shared.answers_sent.fetch_add(1, Ordering::Relaxed);
    sink.send(Message::text(frame)).await.is_ok()
}

/// Counts an ack; times it when its answer was sent after the warm-up.
fn acked(shared: &Shared, latencies: &mut Latencies, sent: Instant, measure_from: Instant) {
    shared.acks.fetch_add(1, Ordering::Relaxed);
    if sent >= measure_from {
        latencies.record(sent.elapsed());
        shared.measured_acks.fetch_add(1, Ordering::Relaxed);
    }
}

/// The seq and cseq of an `{"t":"ack","seq":S,"cseq":N,…}` frame.
fn ack_seq_cseq(text: &str) -> Option<(u64, i64)> {
    let rest = text.strip_prefix(r#"{"t":"ack","seq":"#)?;
    let (seq, rest) = rest.split_once(',')?;
    let rest = rest.strip_prefix(r#""cseq":"#)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((seq.parse().ok()?, rest[..end].parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ack_is_read_without_a_json_tree() {
        assert_eq!(
            super::ack_seq_cseq(r#"{"t":"ack","seq":42,"cseq":17,"version":5}"#),
            Some((42, 17))
        );
        assert_eq!(super::ack_seq_cseq(r#"{"t":"control","seq":1}"#), None);
    }
}
