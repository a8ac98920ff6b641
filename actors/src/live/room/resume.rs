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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::messages::ResumeRead;
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
        /// Set when nobody waits for the answer any more (taken over,
        /// retired): the read is skipped.
        cancelled: Arc<AtomicBool>,
    },
    Flush(oneshot::Sender<()>),
}

/// The room's handle on its buffer task; the task ends when this is dropped
/// (after finishing what was queued).
pub(super) struct ResumeLog {
    ops: mpsc::UnboundedSender<Op>,
}

impl ResumeLog {
    /// Starts the task writing to `hot` with buffers capped at `cap`
    /// frames; `deliver` takes the answers to resume reads (to the room).
    pub(super) fn start(
        hot: Arc<dyn HotState>,
        cap: usize,
        deliver: impl Fn(ResumeRead) + Send + 'static,
    ) -> Self {
        let (ops, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(hot, cap, deliver, queue));
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

    /// Reads the frames after `after_seq`; the answer goes to `deliver`,
    /// unless `cancelled` is set by then.
    pub(super) fn read(
        &self,
        key: CandidateKey,
        candidate_id: CandidateId,
        connection_id: u64,
        after_seq: u64,
        cancelled: Arc<AtomicBool>,
    ) {
        self.queue(Op::Read {
            key,
            candidate_id,
            connection_id,
            after_seq,
            cancelled,
        });
    }

    /// Waits until everything queued so far is done. Every hot-state call
    /// ends within its own timeout (at once while Redis is known down), so
    /// this ends too; it says so in the log each `patience` it takes. A room
    /// must not stop before: its next activation would number on from a
    /// buffer that is still being written.
    pub(super) async fn flush(&self, patience: Duration) {
        let (done, mut finished) = oneshot::channel();
        self.queue(Op::Flush(done));
        while tokio::time::timeout(patience, &mut finished).await.is_err() {
            warn!("still flushing resume buffers before the room stops");
        }
    }
}

async fn run(
    hot: Arc<dyn HotState>,
    cap: usize,
    deliver: impl Fn(ResumeRead),
    mut queue: mpsc::UnboundedReceiver<Op>,
) {
    let mut round = Vec::new();
    while queue.recv_many(&mut round, MAX_OPS_PER_ROUND).await > 0 {
        let mut frames = Vec::new();
        let mut claims = Vec::new();
        for op in round.drain(..) {
            match op {
                Op::Append(batch) => frames.extend(batch),
                Op::Claim(key, claim) => claims.push((key, claim)),
                Op::Read {
                    key,
                    candidate_id,
                    connection_id,
                    after_seq,
                    cancelled,
                } => {
                    if cancelled.load(Ordering::Relaxed) {
                        continue;
                    }
                    // Everything numbered before the read goes in first.
                    settle(hot.as_ref(), &mut frames, &mut claims, cap).await;
                    let found = hot.outbound_after(&key, after_seq).await;
                    deliver(ResumeRead {
                        candidate_id,
                        connection_id,
                        found,
                    });
                }
                Op::Flush(done) => {
                    settle(hot.as_ref(), &mut frames, &mut claims, cap).await;
                    let _ = done.send(());
                }
            }
        }
        settle(hot.as_ref(), &mut frames, &mut claims, cap).await;
    }
}

/// Writes what was gathered: the frames in one append, the session claims
/// beside it (independent of each other and of the frames), and empties both.
async fn settle(
    hot: &dyn HotState,
    frames: &mut Vec<(CandidateKey, OutboundFrame)>,
    claims: &mut Vec<(CandidateKey, SessionClaim)>,
    cap: usize,
) {
    let swaps = claims.drain(..).map(|(key, claim)| async move {
        let outcome = hot.swap_session(&key, claim).await;
        SESSIONS_FAILING.observe(
            outcome.as_ref().err(),
            "session not recorded in the hot state",
        );
    });
    futures::future::join(append(hot, frames, cap), futures::future::join_all(swaps)).await;
}

/// Appends what was gathered, in one call, and empties it.
async fn append(hot: &dyn HotState, frames: &mut Vec<(CandidateKey, OutboundFrame)>, cap: usize) {
    if frames.is_empty() {
        return;
    }
    // On failure resume degrades to a snapshot; the live frames went out.
    let outcome = hot.append_outbound(frames, cap).await;
    APPENDS_FAILING.observe(outcome.as_ref().err(), "resume buffer append failed");
    frames.clear();
}

/// One warning when hot-state writes start failing and one line when they
/// work again, for the whole process: while Redis is down every room fails
/// every batch (hundreds a second), and the Redis adapter has already said
/// so once ("redis unavailable"). The failures between are at debug.
struct Failing(AtomicBool);

static APPENDS_FAILING: Failing = Failing(AtomicBool::new(false));
static SESSIONS_FAILING: Failing = Failing(AtomicBool::new(false));

impl Failing {
    fn observe(&self, error: Option<&impl std::fmt::Display>, what: &'static str) {
        match error {
            Some(error) if !self.0.swap(true, Ordering::Relaxed) => {
                warn!(%error, "{what} (further failures at debug until one succeeds)");
            }
            Some(error) => debug!(%error, "{what}"),
            None if self.0.swap(false, Ordering::Relaxed) => {
                info!("{what}: working again");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::ports::{HotStateError, ResumePosition};

    /// A hot state whose appends take a while (a Redis round trip).
    #[derive(Default)]
    struct SlowBuffers {
        frames: Mutex<Vec<OutboundFrame>>,
        appends: Mutex<usize>,
    }

    fn unused() -> HotStateError {
        HotStateError("not used by the resume log".into())
    }

    #[async_trait]
    impl HotState for SlowBuffers {
        async fn append_outbound(
            &self,
            frames: &[(CandidateKey, OutboundFrame)],
            _cap: usize,
        ) -> Result<(), HotStateError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
            *self.appends.lock().unwrap() += 1;
            let mut held = self.frames.lock().unwrap();
            held.extend(frames.iter().map(|(_, frame)| frame.clone()));
            Ok(())
        }
        async fn last_outbound_seq(&self, _: &CandidateKey) -> Result<u64, HotStateError> {
            Err(unused())
        }
        async fn resume_positions(
            &self,
            _: &[CandidateKey],
        ) -> Result<Vec<ResumePosition>, HotStateError> {
            Err(unused())
        }
        async fn outbound_after(
            &self,
            _: &CandidateKey,
            after_seq: u64,
        ) -> Result<Option<Vec<OutboundFrame>>, HotStateError> {
            let held = self.frames.lock().unwrap();
            Ok(Some(
                held.iter()
                    .filter(|frame| frame.seq > after_seq)
                    .cloned()
                    .collect(),
            ))
        }
        async fn swap_session(
            &self,
            _: &CandidateKey,
            _: SessionClaim,
        ) -> Result<Option<SessionClaim>, HotStateError> {
            Ok(None)
        }
        async fn session(&self, _: &CandidateKey) -> Result<Option<SessionClaim>, HotStateError> {
            Err(unused())
        }
        async fn put_snapshot(
            &self,
            _: &str,
            _: Vec<u8>,
            _: Duration,
        ) -> Result<(), HotStateError> {
            Err(unused())
        }
        async fn snapshot(&self, _: &str) -> Result<Option<Vec<u8>>, HotStateError> {
            Err(unused())
        }
        async fn count_in_window(&self, _: &str, _: Duration) -> Result<u64, HotStateError> {
            Err(unused())
        }
        async fn window_add(
            &self,
            _: &str,
            _: &str,
            _: i64,
            _: Duration,
        ) -> Result<(), HotStateError> {
            Err(unused())
        }
        async fn window_position(&self, _: &str, _: &str, _: i64) -> Result<u64, HotStateError> {
            Err(unused())
        }
        async fn window_count(&self, _: &str, _: i64, _: i64) -> Result<u64, HotStateError> {
            Err(unused())
        }
    }

    fn key() -> CandidateKey {
        CandidateKey {
            plan_id: "p1".parse().unwrap(),
            candidate_id: "c1".parse().unwrap(),
        }
    }

    fn frame(seq: u64) -> (CandidateKey, OutboundFrame) {
        (
            key(),
            OutboundFrame {
                seq,
                text: format!("{{\"seq\":{seq}}}").into(),
            },
        )
    }

    fn started(hot: Arc<SlowBuffers>) -> (ResumeLog, mpsc::UnboundedReceiver<ResumeRead>) {
        let (reads, answers) = mpsc::unbounded_channel();
        let log = ResumeLog::start(hot, 256, move |read| {
            let _ = reads.send(read);
        });
        (log, answers)
    }

    fn seqs(read: &ResumeRead) -> Vec<u64> {
        let frames = read.found.clone().unwrap().unwrap();
        frames.iter().map(|frame| frame.seq).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_sees_every_frame_queued_before_it_and_none_after() {
        let hot = Arc::new(SlowBuffers::default());
        let (log, mut answers) = started(hot.clone());
        log.append(vec![frame(1)]);
        log.append(vec![frame(2), frame(3)]);
        log.read(key(), "c1".parse().unwrap(), 7, 1, Arc::default());
        log.append(vec![frame(4)]);
        let read = answers.recv().await.expect("the read is answered");
        assert_eq!(read.connection_id, 7);
        assert_eq!(
            seqs(&read),
            vec![2, 3],
            "frames 2 and 3 were appended first; 4 after"
        );
        log.flush(Duration::from_secs(5)).await;
        assert_eq!(hot.frames.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn what_piles_up_during_an_append_goes_in_one_more() {
        let hot = Arc::new(SlowBuffers::default());
        let (log, _answers) = started(hot.clone());
        log.append(vec![frame(1)]);
        tokio::task::yield_now().await; // the first append is on its way
        for seq in 2..=50 {
            log.append(vec![frame(seq)]);
        }
        log.flush(Duration::from_secs(5)).await;
        assert_eq!(hot.frames.lock().unwrap().len(), 50);
        assert_eq!(
            *hot.appends.lock().unwrap(),
            2,
            "one round trip for 49 frames"
        );
    }
}
