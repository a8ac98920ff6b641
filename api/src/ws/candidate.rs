//! The candidate socket: hello / resume, then heartbeats, answers, events
//! and submit handed to the room through the exam's `CandidateLink`;
//! everything the room sends written back. See docs/protocol.md.

use futures::{Sink, SinkExt, Stream};
use invigil_actors::domain::{CandidateId, PlanId, QuestionId, RoomId};
use invigil_actors::exam::{CandidateInput, CandidateLink};
use invigil_actors::live::wire::{self, SocketOut, close as code};
use poem::web::websocket::Message;
use tracing::debug;

use super::frames::{CandidateFrame, describe};
use super::socket::{FrameRate, Incoming, RATE_LIMITED, await_greeting, close, next_frame};
use crate::state::AppState;

/// Sends a connection frame (`error`) with the current seq; false when the
/// socket is gone.
async fn send_error(
    sink: &mut (impl Sink<Message> + Unpin),
    seq: u64,
    code: &str,
    message: &str,
    cseq: Option<i64>,
) -> bool {
    sink.send(Message::text(wire::error(seq, code, message, cseq)))
        .await
        .is_ok()
}

/// The hello's `resume`, as the room takes it.
pub(super) type Resume = Option<(String, u64)>;

/// Waits for the socket's `hello`: its resume and its text (sent on as is
/// when the socket is tunnelled); None when the socket ended first.
pub(super) async fn greeting<K, S>(
    state: &AppState,
    sink: &mut K,
    stream: &mut S,
) -> Option<(Resume, String)>
where
    K: Sink<Message> + Unpin,
    S: Stream<Item = std::io::Result<Message>> + Unpin,
{
    let parse = |text: &str| match serde_json::from_str::<CandidateFrame>(text) {
        Ok(CandidateFrame::Hello { resume }) => Ok((
            resume.map(|resume| (resume.session, resume.last_seq)),
            text.to_owned(),
        )),
        Ok(_) => Err(("hello_expected", "send a hello first".to_string())),
        Err(error) => Err(describe(&error)),
    };
    await_greeting(
        sink,
        stream,
        state.settings.ws_hello_timeout,
        state.settings.ws_max_message_bytes,
        parse,
        |code, message| wire::error(0, code, message, None),
    )
    .await
}

/// The candidate socket on the node that hosts its room, reached through
/// a tunnel from the node the client is connected to: one attempt to
/// join (the front door holds and retries, not this side).
pub async fn serve<K, S>(
    state: AppState,
    plan_id: PlanId,
    room_id: RoomId,
    candidate_id: CandidateId,
    ip: Option<String>,
    mut sink: K,
    mut stream: S,
) where
    K: Sink<Message> + Unpin + Send,
    S: Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let Some((resume, _)) = greeting(&state, &mut sink, &mut stream).await else {
        return;
    };
    // Join the room: it sends the welcome (and the replay) through the link.
    let link = match state
        .exam
        .connect_candidate(&plan_id, &room_id, &candidate_id, ip, resume)
        .await
    {
        Ok(link) => link,
        Err(error) => {
            let _ = sink
                .send(Message::text(wire::exam_error(0, &error, None)))
                .await;
            close(&mut sink, code::TRY_AGAIN, "try again").await;
            return;
        }
    };
    debug!(plan_id = %plan_id, candidate_id = %candidate_id, connection_id = link.connection_id(), "candidate connected");
    session(state, link, sink, stream).await;
}

/// A joined socket: frames to the room, what the room sends to the client.
pub(super) async fn session<K, S>(
    state: AppState,
    mut link: CandidateLink,
    mut sink: K,
    mut stream: S,
) where
    K: Sink<Message> + Unpin + Send,
    S: Stream<Item = std::io::Result<Message>> + Unpin + Send,
{
    let limit = state.settings.ws_max_message_bytes;
    let mut last_seq = 0_u64;
    let mut rate = FrameRate::new(state.settings.ws_frames_per_second);
    loop {
        tokio::select! {
            incoming = next_frame(&mut stream, limit) => {
                let text = match incoming {
                    Incoming::Text(text) => text,
                    Incoming::Closed => break,
                    Incoming::TooBig => {
                        close(&mut sink, code::TOO_BIG, "frame too large").await;
                        break;
                    }
                    Incoming::Binary => {
                        if !send_error(&mut sink, last_seq, "text_only", "frames are JSON text", None).await {
                            break;
                        }
                        continue;
                    }
                };
                let frame = serde_json::from_str::<CandidateFrame>(&text);
                if !rate.admit() {
                    // A refused answer names its cseq: the client resends it.
                    let cseq = match &frame {
                        Ok(CandidateFrame::Answer { cseq, .. }) => Some(*cseq),
                        _ => None,
                    };
                    let (error_code, message) = RATE_LIMITED;
                    if !send_error(&mut sink, last_seq, error_code, message, cseq).await {
                        break;
                    }
                    continue;
                }
                let refusal = match frame.map_err(|error| describe(&error)) {
                    Ok(frame) => match input(frame) {
                        Ok(input) => match link.send(input) {
                            Ok(()) => None,
                            Err(_) => {
                                // The room stopped: the client reconnects and resumes.
                                close(&mut sink, code::RECONNECT, "reconnect").await;
                                break;
                            }
                        },
                        Err((error_code, message, cseq)) => Some((error_code, message, cseq)),
                    },
                    Err((error_code, message)) => Some((error_code, message, None)),
                };
                if let Some((error_code, message, cseq)) = refusal
                    && !send_error(&mut sink, last_seq, error_code, &message, cseq).await
                {
                    break;
                }
            }
            out = link.recv() => match out {
                Some(SocketOut::Frame { seq, text }) => {
                    last_seq = last_seq.max(seq);
                    if sink.send(Message::text(text.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(SocketOut::Close { code, reason }) => {
                    close(&mut sink, code, reason).await;
                    break;
                }
                None => {
                    // Let go by the room; its close frame may not have fit
                    // in the queue, the link says why.
                    let reason = link.close_code();
                    close(&mut sink, reason, code::reason(reason)).await;
                    break;
                }
            },
        }
    }
    // Dropping the link tells the room this socket is gone.
    drop(link);
}

/// Turns a client frame into the room's input, or a refusal.
fn input(frame: CandidateFrame) -> Result<CandidateInput, (&'static str, String, Option<i64>)> {
    Ok(match frame {
        CandidateFrame::Hello { .. } => {
            return Err((
                "already_greeted",
                "hello is sent once per connection".into(),
                None,
            ));
        }
        CandidateFrame::Hb { ts } => CandidateInput::Heartbeat { client_ts: ts },
        CandidateFrame::Answer { q, value, cseq } => CandidateInput::Answer {
            question_id: QuestionId::parse(q)
                .map_err(|error| ("unknown_question", error.to_string(), Some(cseq)))?,
            value,
            cseq,
        },
        CandidateFrame::Event { kind, detail } => CandidateInput::Event { kind, detail },
        CandidateFrame::Submit {} => CandidateInput::Submit,
    })
}
