//! Answers: decided against the sheet, applied at once, acked after their
//! commit; repeats of a cseq acked with the version it got (after its
//! commit when it is still on its way); a superseded cseq looked up in the
//! journal off the mailbox.

use ractor::ActorRef;

use super::messages::{Answer, AnswerReceipt, RoomMsg, Superseded};
use super::state::{AfterCommit, AnswerWaiter, RoomState, Uncommitted, Waiting};
use crate::domain::{AnswerDecision, DomainError};
use crate::error::ExamError;
use crate::live::wire::{self, StreamFrame};
use crate::ports::{FencedEntry, JournalEntry};

/// A room write that could not even be queued: the room retires.
const WRITE_FAILED: &str = "the journal is unavailable";
/// Journal lookups of superseded cseqs one room runs at once; beyond, the
/// resend is refused with `unavailable` (the client sends it again later).
const MAX_LOOKUPS: usize = 8;

impl RoomState {
    /// Tells whoever sent a refused request why.
    fn refuse_answer(&mut self, seat: usize, answer: Answer, error: ExamError) {
        self.deps.metrics.answer_refused(error.code());
        match answer.reply {
            Some(reply) => {
                let _ = reply.send(Err(error));
            }
            None => {
                let text = wire::exam_error(self.seats[seat].last_seq, &error, Some(answer.cseq));
                self.send_connection_frame(seat, answer.connection_id, text);
            }
        }
    }

    pub(super) async fn on_answer(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        mut answer: Answer,
    ) -> Option<&'static str> {
        let seat = match self.seat_index(&answer.candidate_id) {
            Ok(seat) => seat,
            Err(error) => {
                if let Some(reply) = answer.reply {
                    let _ = reply.send(Err(error));
                }
                return None;
            }
        };
        let now = self.now();
        if let Some(connection_id) = answer.connection_id
            && self.is_current(seat, connection_id)
        {
            self.seats[seat].connection.heard(now);
        }
        let decision = {
            let context = self.context(seat);
            self.seats[seat].runtime.decide_answer(
                &answer.question_id,
                &answer.value,
                answer.cseq,
                &context,
                now,
            )
        };
        match decision {
            Ok(AnswerDecision::Repeat { version }) => {
                // Still on its way to the journal: acknowledge with the original.
                if let Some(pending) = self.seats[seat].uncommitted.get_mut(&answer.cseq) {
                    pending.waiters.push(AnswerWaiter::of(&mut answer));
                    return None;
                }
                self.acknowledge(seat, answer, version);
                None
            }
            Err(DomainError::CseqNotIncreasing { .. }) => {
                // Superseded in memory but maybe still on its way to the
                // journal: it is acked when that write commits.
                if let Some(pending) = self.seats[seat].uncommitted.get_mut(&answer.cseq) {
                    if pending.question_id == answer.question_id
                        && pending.digest == answer.value.digest()
                    {
                        pending.waiters.push(AnswerWaiter::of(&mut answer));
                    } else {
                        let cseq = answer.cseq;
                        self.refuse_answer(seat, answer, DomainError::CseqConflict(cseq).into());
                    }
                    return None;
                }
                // Older: only the journal knows whether it was saved. Asked
                // off the mailbox (a bounded number at once); the answer
                // comes back as a message.
                if self.lookups >= MAX_LOOKUPS {
                    self.refuse_answer(
                        seat,
                        answer,
                        ExamError::Unavailable("too many old answers are being looked up; resend"),
                    );
                    return None;
                }
                self.lookups += 1;
                let (journal, actor, plan_id) = (
                    self.deps.journal.clone(),
                    myself.clone(),
                    self.plan_id.clone(),
                );
                tokio::spawn(async move {
                    let found = journal
                        .journaled_answer(&plan_id, &answer.candidate_id, answer.cseq)
                        .await;
                    let _ = actor.cast(RoomMsg::Superseded(Superseded { answer, found }));
                });
                None
            }
            Err(refusal) => {
                self.refuse_answer(seat, answer, refusal.into());
                None
            }
            Ok(AnswerDecision::Accepted(accepted)) => {
                let fence = match self.fence() {
                    Ok(fence) => fence,
                    Err(error) => {
                        // The shard moves (hand-off) or its lease ran out:
                        // a socket gets `control reconnect` as the room
                        // retires and resends the answer after resuming,
                        // like any unacknowledged one; a REST caller gets
                        // `not_owner` (and is forwarded to the new owner).
                        if answer.reply.is_some() {
                            self.refuse_answer(seat, answer, error);
                        }
                        return Some("the shard lease is lost");
                    }
                };
                let (version, digest, cseq) = (accepted.version, accepted.digest, accepted.cseq);
                self.seats[seat].runtime.apply(&accepted.event());
                self.seats[seat].uncommitted.insert(
                    cseq,
                    Uncommitted {
                        question_id: answer.question_id.clone(),
                        digest,
                        waiters: Vec::new(),
                    },
                );
                let first = AnswerWaiter::of(&mut answer);
                let entry = FencedEntry {
                    fence,
                    entry: JournalEntry::Answer {
                        plan_id: self.plan_id.clone(),
                        candidate_id: answer.candidate_id,
                        question_id: answer.question_id,
                        value: answer.value,
                        cseq,
                        version,
                        at: now,
                    },
                };
                let after = AfterCommit::new(Waiting::Answer {
                    candidate: seat,
                    cseq,
                    version,
                    first,
                });
                match self.write(myself, vec![entry], after).await {
                    Ok(()) => None,
                    Err(_) => Some(WRITE_FAILED),
                }
            }
        }
    }

    pub(super) fn on_superseded(&mut self, superseded: Superseded) {
        self.lookups = self.lookups.saturating_sub(1);
        let answer = superseded.answer;
        let Ok(seat) = self.seat_index(&answer.candidate_id) else {
            return;
        };
        match superseded.found {
            Ok(Some(saved))
                if saved.question_id == answer.question_id
                    && saved.digest == answer.value.digest() =>
            {
                self.acknowledge(seat, answer, saved.version);
            }
            Ok(Some(_)) => {
                let cseq = answer.cseq;
                self.refuse_answer(seat, answer, DomainError::CseqConflict(cseq).into());
            }
            Ok(None) => {
                let last = self.seats[seat].runtime.sheet.last_cseq();
                let cseq = answer.cseq;
                self.refuse_answer(
                    seat,
                    answer,
                    DomainError::CseqNotIncreasing { cseq, last }.into(),
                );
            }
            Err(error) => self.refuse_answer(seat, answer, error.into()),
        }
    }

    /// Acknowledges an answer that is already durable.
    fn acknowledge(&mut self, seat: usize, answer: Answer, version: i64) {
        self.deps.metrics.answer_acked(answer.received.elapsed());
        match answer.reply {
            Some(reply) => {
                let _ = reply.send(Ok(AnswerReceipt {
                    cseq: answer.cseq,
                    version,
                }));
            }
            None => {
                self.push(vec![(
                    seat,
                    StreamFrame::Ack {
                        cseq: answer.cseq,
                        version,
                    },
                )]);
            }
        }
    }
}
