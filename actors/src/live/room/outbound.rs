//! What the room sends: numbered stream frames (to the socket and, in the
//! background, the resume buffer), connection frames, dashboard deltas;
//! a socket or dashboard that does not keep up is let go, never waited for.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::state::RoomState;
use crate::live::wire::{SocketOut, StreamFrame, close};
use crate::ports::OutboundFrame;

impl RoomState {
    /// Sends stream frames: numbered, forwarded to live sockets, and kept
    /// for resume (in the background: see `resume`). Returns, per frame,
    /// whether a live socket got it.
    pub(super) fn push(&mut self, frames: Vec<(usize, StreamFrame)>) -> Vec<bool> {
        let mut buffered = Vec::with_capacity(frames.len());
        let mut delivered = Vec::with_capacity(frames.len());
        for (seat, frame) in frames {
            let candidate = &mut self.seats[seat];
            candidate.last_seq += 1;
            let seq = candidate.last_seq;
            // One text for the socket and the buffer.
            let text: Arc<str> = frame.render(seq).into();
            buffered.push((
                candidate.key.clone(),
                OutboundFrame {
                    seq,
                    text: text.clone(),
                },
            ));
            delivered.push(self.send_to_socket(seat, SocketOut::Frame { seq, text }));
        }
        self.resume.append(buffered);
        delivered
    }

    /// Sends a connection frame (not numbered, not kept) to one socket.
    pub(super) fn send_connection_frame(
        &mut self,
        seat: usize,
        connection_id: Option<u64>,
        text: String,
    ) {
        let candidate = &self.seats[seat];
        let matches = match (&candidate.socket, connection_id) {
            (Some(socket), Some(id)) => socket.connection_id == id,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches {
            let seq = candidate.last_seq;
            self.send_to_socket(
                seat,
                SocketOut::Frame {
                    seq,
                    text: text.into(),
                },
            );
        }
    }

    /// Hands a frame to the seat's socket. A socket that cannot keep up is
    /// closed; its client resumes from the buffer.
    pub(super) fn send_to_socket(&mut self, seat: usize, out: SocketOut) -> bool {
        let queue_cap = self.deps.config.socket_queue;
        let candidate = &mut self.seats[seat];
        let Some(socket) = &mut candidate.socket else {
            return false;
        };
        let released = match &mut socket.held {
            // Resuming: follows the replay.
            Some(held) if held.len() < queue_cap => {
                held.push(out);
                return true;
            }
            Some(_) => {
                warn!(candidate_id = %candidate.spec.id, "too much to hold while resuming; closing the socket");
                if let Some(socket) = candidate.socket.take() {
                    socket.let_go(close::SLOW_CONSUMER);
                }
                true
            }
            None => match socket.sink.try_send(out) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    warn!(candidate_id = %candidate.spec.id, "socket too slow; closing it");
                    if let Some(socket) = candidate.socket.take() {
                        socket.let_go(close::SLOW_CONSUMER);
                    }
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => candidate.socket.take().is_some(),
            },
        };
        // The socket task's own Disconnect will no longer match: the seat
        // goes stale (then offline) here.
        if released {
            let now = self.now();
            if self.seats[seat].connection.closed(now).is_some() {
                self.seat_changed(seat);
            }
        }
        false
    }

    /// Sends a frame to every dashboard; drops the ones that cannot keep up.
    pub(super) fn broadcast_to_proctors(&mut self, text: String) {
        if self.subscribers.is_empty() {
            return;
        }
        let text: Arc<str> = text.into();
        self.subscribers.retain(|subscriber| {
            match subscriber.sink.try_send(SocketOut::Frame {
                seq: 0,
                text: text.clone(),
            }) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = subscriber.sink.try_send(SocketOut::Close {
                        code: close::SLOW_CONSUMER,
                        reason: "too slow",
                    });
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
}
