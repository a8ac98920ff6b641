//! A room's resume buffers, kept off its mailbox. Every numbered frame goes
//! to its socket at once and, in the background, to the candidate's buffer
//! in the hot state (a Redis stream in a cluster), so the room never waits
//! for the hot state — not on an ack, not on a connect.
//!
//! One task per room runs the buffer's operations in the order the room
//! queued them, so a resume read sees every frame numbered before it:
//! - appends are batched: whatever piled up while the last round trip was
//!   on its way goes in the next one (one pipelined call for many frames);
//! - a resume read goes after the appends queued before it, and its answer
//!   comes back to the room as a message;
//! - a flush answers once everything queued before it is done: a retiring
//!   room stops only then, so the next activation (here or on another
//!   node) reads buffers that hold every frame this one numbered.
//!
//! A failed append is logged and dropped: the buffer then has a hole (or
//! ends early), which a later resume detects and answers with a snapshot,
//! never with a silent gap.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::messages::{ResumeRead, RoomMsg};
use crate::domain::CandidateId;
use crate::ports::{CandidateKey, HotState, OutboundFrame, SessionClaim};

/// Operations taken in one round: a bound on one pipelined append.
const MAX_OPS_PER_ROUND: usize = 4096;

enum Op {
    Append(Vec<(CandidateKey, OutboundFrame)>),
    Claim(CandidateKey, SessionClaim),
    Read {
        key: CandidateKey,
        candidate_id: CandidateId,
        connection_id: u64,
        after_seq: u64,
    },
    Flush(oneshot::Sender<()>),
}

/// The room's handle on its buffer task; the task ends when this is dropped
/// (after finishing what was queued).
pub(super) struct ResumeLog {
    ops: mpsc::UnboundedSender<Op>,
}

impl ResumeLog {
    /// Starts the task of `room`, writing to `hot` with buffers capped at `cap` frames.
    pub(super) fn start(hot: Arc<dyn HotState>, cap: usize, room: ActorRef<RoomMsg>) -> Self {
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(hot, cap, room, queue));
        Self { ops }
    }

    fn queue(&self, op: Op) {
        if self.ops.send(op).is_err() {
            // Only after the task panicked: resumes degrade to snapshots.
            warn!("the resume buffer task has stopped; frames are not kept for resume");
        }
    }

    /// Appends numbered frames to their candidates' buffers.
    pub(super) fn append(&self, frames: Vec<(CandidateKey, OutboundFrame)>) {
        if !frames.is_empty() {
            self.queue(Op::Append(frames));
        }
    }

    /// Records the candidate's live session (for a resume on another node).
    pub(super) fn claim(&self, key: CandidateKey, claim: SessionClaim) {
        self.queue(Op::Claim(key, claim));
    }

    /// Reads the frames after `after_seq`; the answer comes back as
    /// [`RoomMsg::ResumeRead`].
    pub(super) fn read(
        &self,
        key: CandidateKey,
        candidate_id: CandidateId,
        connection_id: u64,
        after_seq: u64,
    ) {
        self.queue(Op::Read {
            key,
            candidate_id,
            connection_id,
            after_seq,
        });
    }

    /// Waits, up to `wait`, until everything queued so far is done.
    pub(super) async fn flush(&self, wait: Duration) {
        let (done, finished) = oneshot::channel();
        self.queue(Op::Flush(done));
        if tokio::time::timeout(wait, finished).await.is_err() {
            warn!("resume buffers not flushed in time; a resume may get a snapshot");
        }
    }
}

async fn run(
    hot: Arc<dyn HotState>,
    cap: usize,
    room: ActorRef<RoomMsg>,
    mut queue: mpsc::UnboundedReceiver<Op>,
) {
    let mut round = Vec::new();
    while queue.recv_many(&mut round, MAX_OPS_PER_ROUND).await > 0 {
        let mut frames = Vec::new();
        for op in round.drain(..) {
            match op {
                Op::Append(batch) => frames.extend(batch),
                Op::Claim(key, claim) => {
                    if let Err(error) = hot.swap_session(&key, claim).await {
                        warn!(%error, "session not recorded in the hot state");
                    }
                }
                Op::Read {
                    key,
                    candidate_id,
                    connection_id,
                    after_seq,
                } => {
                    // Everything numbered before the read goes in first.
                    append(hot.as_ref(), &mut frames, cap).await;
                    let found = hot.outbound_after(&key, after_seq).await;
                    let read = ResumeRead {
                        candidate_id,
                        connection_id,
                        found,
                    };
                    if room.cast(RoomMsg::ResumeRead(read)).is_err() {
                        debug!("a resume read finished after its room stopped");
                    }
                }
                Op::Flush(done) => {
                    append(hot.as_ref(), &mut frames, cap).await;
                    let _ = done.send(());
                }
            }
        }
        append(hot.as_ref(), &mut frames, cap).await;
    }
}

/// Appends what was gathered, in one call, and empties it.
async fn append(hot: &dyn HotState, frames: &mut Vec<(CandidateKey, OutboundFrame)>, cap: usize) {
    if frames.is_empty() {
        return;
    }
    if let Err(error) = hot.append_outbound(frames, cap).await {
        // Resume degrades to a snapshot; the live frames went out.
        warn!(%error, frames = frames.len(), "resume buffer append failed");
    }
    frames.clear();
}
