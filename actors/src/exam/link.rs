//! What a socket holds while it is joined to the live exam: a candidate's
//! link to their room, a proctor dashboard's watch on a room. Both end on
//! drop (the room forgets the socket), so a socket task that ends for any
//! reason — closed, panicked, aborted — never leaves a stale entry behind.

use ractor::ActorRef;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::domain::AnswerValue;
use crate::domain::{CandidateId, QuestionId};
use crate::live::room::{Answer, ClientEvent, Disconnect, Heartbeat, RoomMsg, Submit, Unsubscribe};
use crate::live::wire::{CloseSignal, SocketOut, close};

/// What a candidate's socket sends into the room after its `hello`.
#[derive(Clone, Debug, PartialEq)]
pub enum CandidateInput {
    Heartbeat {
        client_ts: Option<i64>,
    },
    /// Acked on the stream once durable (or refused with an `error` frame
    /// naming the `cseq`).
    Answer {
        question_id: QuestionId,
        value: Value,
        cseq: i64,
    },
    Event {
        kind: String,
        detail: Option<Value>,
    },
    Submit,
}

/// The room stopped: the socket closes with `4000 reconnect` and the client
/// resumes (through any node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the room stopped; reconnect")]
pub struct RoomGone;

/// A candidate's socket joined to their room (see [`crate::exam::Exam::connect_candidate`]).
pub struct CandidateLink {
    pub(super) room: ActorRef<RoomMsg>,
    pub(super) candidate_id: CandidateId,
    pub(super) connection_id: u64,
    /// The room's frames for this socket (welcome, replay, acks, controls).
    pub(super) outgoing: mpsc::Receiver<SocketOut>,
    pub(super) close_signal: CloseSignal,
    pub(super) session: String,
    pub(super) resumed: bool,
}

impl CandidateLink {
    pub fn connection_id(&self) -> u64 {
        self.connection_id
    }

    /// The session the room gave this connection (the client resumes with it).
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Whether the room replayed what the client missed (else it sent a snapshot).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Hands a frame to the room, without waiting for it.
    pub fn send(&self, input: CandidateInput) -> Result<(), RoomGone> {
        let candidate_id = self.candidate_id.clone();
        let connection_id = self.connection_id;
        let message = match input {
            CandidateInput::Heartbeat { client_ts } => RoomMsg::Heartbeat(Heartbeat {
                candidate_id,
                connection_id,
                client_ts,
            }),
            CandidateInput::Answer {
                question_id,
                value,
                cseq,
            } => RoomMsg::Answer(Answer {
                span: tracing::debug_span!("answer", cseq, question = %question_id),
                candidate_id,
                connection_id: Some(connection_id),
                question_id,
                value: AnswerValue::new(value),
                cseq,
                reply: None,
                received: std::time::Instant::now(),
            }),
            CandidateInput::Event { kind, detail } => RoomMsg::ClientEvent(ClientEvent {
                candidate_id,
                connection_id,
                kind,
                detail,
            }),
            CandidateInput::Submit => RoomMsg::Submit(Submit {
                candidate_id,
                connection_id: Some(connection_id),
                reply: None,
            }),
        };
        self.room.cast(message).map_err(|_| RoomGone)
    }

    /// The next frame for the socket; `None` once the room let the socket
    /// go (then [`Self::close_code`] says why).
    pub async fn recv(&mut self) -> Option<SocketOut> {
        self.outgoing.recv().await
    }

    /// The close code the room chose when it let the socket go (its close
    /// frame may not have fit in the full queue); `4000 reconnect` if it
    /// said nothing (it stopped).
    pub fn close_code(&self) -> u16 {
        self.close_signal.get().unwrap_or(close::RECONNECT)
    }
}

impl Drop for CandidateLink {
    fn drop(&mut self) {
        // The room ignores a disconnect of a socket it already replaced.
        let _ = self.room.cast(RoomMsg::Disconnect(Disconnect {
            candidate_id: self.candidate_id.clone(),
            connection_id: self.connection_id,
        }));
    }
}

/// A proctor dashboard's subscription to one room (see
/// [`crate::exam::Exam::watch_room`]): the room's snapshot, then its deltas,
/// go to the queue it was given, until this is dropped.
pub struct RoomWatch {
    pub(super) room: ActorRef<RoomMsg>,
    pub(super) subscriber_id: u64,
}

impl Drop for RoomWatch {
    fn drop(&mut self) {
        let _ = self.room.cast(RoomMsg::Unsubscribe(Unsubscribe {
            subscriber_id: self.subscriber_id,
        }));
    }
}
