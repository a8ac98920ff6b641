//! A candidate's socket in the room: connect (hello / resume, one live
//! socket per candidate), the replay of what a resuming client missed,
//! heartbeats and disconnects.
//!
//! A fresh session is welcomed at once. A resume first reads the frames
//! the client missed from its resume buffer — off the mailbox, through the
//! room's resume log, after every frame numbered before it — and holds
//! back what the room sends the socket meanwhile; when the read comes
//! back, the socket gets `welcome`, the missed frames, then what was held.
//! A buffer that does not reach back to the client's `last_seq`, has a
//! hole, or ends before the room's last frame gives `resumed: false` and a
//! snapshot instead, never a silent gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ractor::ActorRef;
use tracing::warn;

use super::messages::{Connect, Connected, Disconnect, Heartbeat, ResumeRead, RoomMsg};
use super::state::{PendingResume, RoomState, SocketLink};
use crate::live::wire::{self, SocketOut, StreamFrame, close};
use crate::ports::{OutboundFrame, SessionClaim};

impl RoomState {
    pub(super) async fn on_connect(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        connect: Connect,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&connect.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                let _ = connect.reply.send(Err(error));
                return None;
            }
        };
        let now = self.now();
        let same_session = connect.resume.as_ref().is_some_and(|(session, _)| {
            self.seats[seat].session.as_deref() == Some(session.as_str())
        });

        // One live socket per candidate: a newer one takes over.
        let mut duplicate_login = false;
        if let Some(previous) = self.seats[seat].socket.take()
            && previous.connection_id != connect.connection_id
        {
            let seq = self.seats[seat].last_seq;
            let control = StreamFrame::Control {
                action: "reconnect",
                reason: Some("another connection took over this candidate".into()),
                extend_s: None,
            };
            let _ = previous.sink.try_send(SocketOut::Frame {
                seq,
                text: control.render(seq).into(),
            });
            previous.let_go(close::REPLACED);
            // One open duplicate_login incident per candidate: a device
            // looping on takeovers cannot fill the room with incidents.
            duplicate_login = !same_session
                && self.shared.settings.incident_rules.duplicate_login
                && !self.has_open_incident(seat, "duplicate_login");
        }
        if let Some(replaced) = self.seats[seat].resuming.take() {
            // Its read is no longer needed; its socket reads the takeover's
            // close (4409, stay closed) from its queue.
            replaced.cancelled.store(true, Ordering::Relaxed);
            let _ = replaced.reply.send(Ok(Connected {
                session: replaced.session,
                resumed: false,
            }));
        }

        let key = self.seats[seat].key.clone();
        let last_seq = self.seats[seat].last_seq;
        let client_seq = match (same_session, &connect.resume) {
            (true, Some((_, client_seq))) if *client_seq <= last_seq => Some(*client_seq),
            _ => None,
        };
        let asked_to_resume = connect.resume.is_some();
        let session = match (client_seq, connect.resume) {
            (Some(_), Some((session, _))) => session,
            _ => uuid::Uuid::now_v7().simple().to_string(),
        };
        self.seats[seat].session = Some(session.clone());
        self.resume.claim(
            key.clone(),
            SessionClaim {
                session_id: session.clone(),
                node_id: self.deps.node_id.clone(),
            },
        );
        self.seats[seat].socket = Some(SocketLink {
            connection_id: connect.connection_id,
            sink: connect.sink,
            close_signal: connect.close_signal,
            held: client_seq.map(|_| Vec::new()),
        });
        let view = self.candidate_view(seat);
        match client_seq {
            Some(client_seq) => {
                // Welcomed once the buffer has answered (module doc).
                let cancelled = Arc::new(AtomicBool::new(false));
                self.resume.read(
                    key,
                    connect.candidate_id.clone(),
                    connect.connection_id,
                    client_seq,
                    cancelled.clone(),
                );
                self.seats[seat].resuming = Some(PendingResume {
                    cancelled,
                    connection_id: connect.connection_id,
                    session,
                    client_seq,
                    through_seq: last_seq,
                    view,
                    ip: connect.ip,
                    reply: connect.reply,
                });
            }
            None => {
                if asked_to_resume {
                    self.deps.metrics.resumed(false);
                }
                let welcome = wire::welcome(&session, last_seq, false, &view);
                self.send_connection_frame(seat, Some(connect.connection_id), welcome);
                self.report_connected(seat, connect.ip, false);
                let _ = connect.reply.send(Ok(Connected {
                    session,
                    resumed: false,
                }));
            }
        }
        self.seats[seat].connection.opened(now);
        self.seat_changed(seat);
        if duplicate_login {
            return self
                .record_rule_incident(
                    myself,
                    seat,
                    "duplicate_login",
                    "a second connection took over",
                )
                .await;
        }
        None
    }

    /// The frames a resuming client missed came back from its buffer: the
    /// socket gets its welcome, the replay (when complete), then what the
    /// room sent it meanwhile.
    pub(super) fn on_resume_read(&mut self, read: ResumeRead) {
        let Ok(seat) = self.seat_index(&read.candidate_id) else {
            return;
        };
        let current = self.seats[seat]
            .resuming
            .as_ref()
            .is_some_and(|pending| pending.connection_id == read.connection_id);
        let Some(pending) = current.then(|| self.seats[seat].resuming.take()).flatten() else {
            return; // Replaced meanwhile; its reply was answered then.
        };
        let replay = match read.found {
            Ok(Some(frames)) if reaches(&frames, pending.client_seq, pending.through_seq) => {
                Some(frames)
            }
            Ok(_) => None,
            Err(error) => {
                warn!(%error, "resume buffer unreadable; sending a snapshot");
                None
            }
        };
        let resumed = replay.is_some();
        self.deps.metrics.resumed(resumed);
        let held = match self.seats[seat].socket.as_mut() {
            Some(socket) if socket.connection_id == pending.connection_id => socket.held.take(),
            // Let go meanwhile (too slow): its close is in its queue.
            _ => {
                let _ = pending.reply.send(Ok(Connected {
                    session: pending.session,
                    resumed: false,
                }));
                return;
            }
        };
        let welcome = wire::welcome(
            &pending.session,
            pending.through_seq,
            resumed,
            &pending.view,
        );
        let frames = replay.into_iter().flatten().map(|frame| SocketOut::Frame {
            seq: frame.seq,
            text: frame.text,
        });
        let outgoing = std::iter::once(SocketOut::Frame {
            seq: pending.through_seq,
            text: welcome.into(),
        })
        .chain(frames)
        .chain(held.into_iter().flatten());
        for out in outgoing {
            if !self.send_to_socket(seat, out) {
                break;
            }
        }
        // `held` was taken above: from here frames go straight to the socket.
        self.report_connected(seat, pending.ip, resumed);
        let _ = pending.reply.send(Ok(Connected {
            session: pending.session,
            resumed,
        }));
    }

    pub(super) fn on_disconnect(&mut self, disconnect: Disconnect) {
        let Ok(seat) = self.seat_index(&disconnect.candidate_id) else {
            return;
        };
        if self.is_current(seat, disconnect.connection_id) {
            let now = self.now();
            self.seats[seat].socket = None;
            if self.seats[seat].connection.closed(now).is_some() {
                self.seat_changed(seat);
            }
        }
    }

    pub(super) fn on_heartbeat(&mut self, heartbeat: Heartbeat) {
        let Ok(seat) = self.seat_index(&heartbeat.candidate_id) else {
            return;
        };
        let now = self.now();
        if !self.is_current(seat, heartbeat.connection_id) {
            return;
        }
        if self.seats[seat].connection.heard(now).is_some() {
            self.seat_changed(seat);
        }
        let text = wire::heartbeat(self.seats[seat].last_seq, heartbeat.client_ts, now);
        self.send_connection_frame(seat, Some(heartbeat.connection_id), text);
    }

    pub(super) fn is_current(&self, seat: usize, connection_id: u64) -> bool {
        self.seats[seat]
            .socket
            .as_ref()
            .is_some_and(|socket| socket.connection_id == connection_id)
    }
}

/// Whether `frames` (the buffer's frames after `client_seq`, gapless from
/// the next one) end exactly at the room's last frame at the time of the
/// read. Frames beyond it were numbered by an earlier activation that this
/// one did not see (its buffer was still being written): they would clash
/// with this room's numbers, so the client gets a snapshot instead.
fn reaches(frames: &[OutboundFrame], client_seq: u64, through_seq: u64) -> bool {
    frames.last().map_or(client_seq, |frame| frame.seq) == through_seq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(seqs: &[u64]) -> Vec<OutboundFrame> {
        seqs.iter()
            .map(|&seq| OutboundFrame {
                seq,
                text: "{}".into(),
            })
            .collect()
    }

    #[test]
    fn a_replay_must_reach_the_last_frame_the_room_sent() {
        assert!(reaches(&frames(&[5, 6, 7]), 4, 7));
        assert!(reaches(&[], 7, 7), "nothing missed");
        // The buffer lost the tail (its appends failed): a snapshot, not a gap.
        assert!(!reaches(&frames(&[5, 6]), 4, 7));
        assert!(!reaches(&[], 4, 7));
        // An earlier activation's frames this one never saw.
        assert!(!reaches(&frames(&[5, 6, 7, 8]), 4, 7));
    }
}
