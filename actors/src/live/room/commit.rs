//! Writes and their commit: the room submits entries to the journal with
//! the effects held back (acks, frames, deltas, replies) and runs them once
//! the batch is durable; a failed commit answers every waiter with the
//! error, acknowledges nothing, and retires the room.

use std::collections::HashSet;

use ractor::ActorRef;
use tracing::warn;

use super::messages::{AnswerReceipt, CommandReceipt, Committed, RoomMsg};
use super::state::{AfterCommit, AnswerWaiter, RoomState, Waiting};
use crate::error::ExamError;
use crate::live::wire::{self, StreamFrame};
use crate::ports::{EntryOutcome, FencedEntry, JournalEntry};
use crate::shard::Fence;

impl RoomState {
    /// Writes entries through the journal (group commit). `after` runs once
    /// they are durable; on failure its waiters get the error and the room
    /// retires.
    pub(super) async fn write(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        entries: Vec<FencedEntry>,
        after: AfterCommit,
    ) -> Result<(), ExamError> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(ticket, after);
        let actor = myself.clone();
        let on_commit = Box::new(move |result| {
            // The actor may have stopped; its state is then restored from the store.
            let _ = actor.cast(RoomMsg::Committed(Committed { ticket, result }));
        });
        if let Err(error) = self.deps.writer.submit(entries, on_commit).await {
            let error = ExamError::from(error);
            if let Some(after) = self.pending.remove(&ticket) {
                self.fail(after, &error);
            }
            return Err(error);
        }
        Ok(())
    }

    /// The journal entry of a candidate event (at the seat's next revision).
    pub(super) fn candidate_entry(
        &mut self,
        fence: Fence,
        seat: usize,
        event: crate::domain::CandidateEvent,
    ) -> FencedEntry {
        let candidate = &mut self.seats[seat];
        candidate.runtime.apply(&event);
        let revision = candidate.revision;
        candidate.revision += 1;
        FencedEntry {
            fence,
            entry: JournalEntry::Candidate {
                plan_id: self.plan_id.clone(),
                candidate_id: candidate.spec.id.clone(),
                revision,
                event,
                runtime: candidate.runtime.clone(),
            },
        }
    }

    pub(super) fn room_entry(
        &mut self,
        fence: Fence,
        event: crate::domain::RoomEvent,
    ) -> FencedEntry {
        self.room.apply(&event);
        let revision = self.room_revision;
        self.room_revision += 1;
        FencedEntry {
            fence,
            entry: JournalEntry::Room {
                plan_id: self.plan_id.clone(),
                room_id: self.room_id.clone(),
                revision,
                event,
                runtime: self.room.clone(),
            },
        }
    }

    /// Handles a commit: on success sends what waited for it; on failure
    /// fails the waiters. Returns whether the room must retire.
    pub(super) fn committed(&mut self, committed: Committed) -> bool {
        let Some(after) = self.pending.remove(&committed.ticket) else {
            return false;
        };
        let failure = match &committed.result {
            Ok(outcomes) => outcomes.iter().find_map(|outcome| match outcome {
                EntryOutcome::Written | EntryOutcome::AlreadyStored => None,
                EntryOutcome::StaleFence => {
                    crate::shard::count_stale_write();
                    Some(ExamError::NotOwner(self.shard))
                }
                EntryOutcome::Conflict => Some(ExamError::Contended),
            }),
            Err(error) => Some(ExamError::Store(error.clone())),
        };
        match failure {
            None => {
                self.deliver(after);
                false
            }
            Some(error) => {
                warn!(room_id = %self.room_id, %error, "a write of this room failed; retiring it");
                self.fail(after, &error);
                true
            }
        }
    }

    fn deliver(&mut self, after: AfterCommit) {
        // A state frame shows the candidate as they are when it is sent, not
        // as they were when the write was decided (a plan pause may have come
        // in between).
        let mut frames: Vec<(usize, StreamFrame)> = after
            .frames
            .into_iter()
            .map(|(seat, frame)| match frame {
                StreamFrame::State { event, .. } => (seat, self.state_frame(seat, event)),
                other => (seat, other),
            })
            .collect();
        let mut replies_after_push = None;
        match after.waiting {
            Waiting::Nobody => {}
            Waiting::Answer {
                candidate,
                cseq,
                version,
                first,
            } => {
                let mut waiters = self.seats[candidate]
                    .uncommitted
                    .remove(&cseq)
                    .map(|pending| pending.waiters)
                    .unwrap_or_default();
                waiters.push(first);
                // One ack per send of the cseq: a repeat is acked again.
                let mut stream_acks = 0;
                for waiter in waiters {
                    match waiter {
                        AnswerWaiter::Stream { received, span } => {
                            self.deps.metrics.answer_acked(received.elapsed());
                            span.in_scope(|| tracing::debug!(version, "acked"));
                            stream_acks += 1;
                        }
                        AnswerWaiter::Rest {
                            reply,
                            received,
                            span,
                        } => {
                            self.deps.metrics.answer_acked(received.elapsed());
                            span.in_scope(|| tracing::debug!(version, "acked"));
                            let _ = reply.send(Ok(AnswerReceipt { cseq, version }));
                        }
                    }
                }
                for _ in 0..stream_acks {
                    frames.push((candidate, StreamFrame::Ack { cseq, version }));
                }
                self.progress_dirty.insert(candidate);
            }
            Waiting::State { reply, state } => {
                let _ = reply.send(Ok(state));
            }
            Waiting::Incident { reply, view } => {
                let _ = reply.send(Ok(*view));
            }
            Waiting::Done(reply) => {
                let _ = reply.send(Ok(()));
            }
            Waiting::Receipt {
                reply,
                targets,
                received,
            } => replies_after_push = Some((reply, targets, received)),
        }
        let seats_of_frames: Vec<usize> = frames.iter().map(|(seat, _)| *seat).collect();
        let delivered = self.push(frames);
        if let Some((reply, targets, received)) = replies_after_push {
            let reached: HashSet<usize> = seats_of_frames
                .iter()
                .zip(&delivered)
                .filter(|(seat, delivered)| **delivered && targets.contains(seat))
                .map(|(seat, _)| *seat)
                .collect();
            if !reached.is_empty() {
                self.deps.metrics.control_delivered(received.elapsed());
            }
            let _ = reply.send(Ok(CommandReceipt {
                delivered: !reached.is_empty(),
                reached: reached.len(),
            }));
        }
        for seat in after.seats {
            self.seat_changed(seat);
        }
        for frame in after.proctor_frames {
            self.broadcast_to_proctors(frame);
        }
    }

    fn fail(&mut self, after: AfterCommit, error: &ExamError) {
        match after.waiting {
            Waiting::Nobody => {}
            Waiting::Answer {
                candidate,
                cseq,
                first,
                ..
            } => {
                let mut waiters = self.seats[candidate]
                    .uncommitted
                    .remove(&cseq)
                    .map(|pending| pending.waiters)
                    .unwrap_or_default();
                waiters.push(first);
                for waiter in waiters {
                    self.deps.metrics.answer_refused(error.code());
                    match waiter {
                        AnswerWaiter::Stream { .. } => {
                            let text =
                                wire::exam_error(self.seats[candidate].last_seq, error, Some(cseq));
                            self.send_connection_frame(candidate, None, text);
                        }
                        AnswerWaiter::Rest { reply, .. } => {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
            Waiting::State { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Receipt { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Incident { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Waiting::Done(reply) => {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
