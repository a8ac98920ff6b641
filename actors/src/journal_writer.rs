//! Group commit: one task owns the journal's write path. Callers hand it
//! entries and wait; it collects whatever arrives within a short linger (or up
//! to a batch size) and commits it in one transaction, then answers each
//! caller with its entry's outcome. An acknowledgement sent after `write`
//! returns is therefore an acknowledgement of durable data.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, warn};

use crate::metrics::Metrics;
use crate::ports::{EntryOutcome, FencedEntry, Journal, StoreError};

#[derive(Clone, Copy, Debug)]
pub struct JournalWriterConfig {
    /// The most entries in one transaction.
    pub max_batch: usize,
    /// How long the first entry of a batch waits for company.
    pub linger: Duration,
    /// Entries waiting beyond this push back on the callers.
    pub queue_capacity: usize,
    /// Tries of one batch on transient store errors (at least 1).
    pub max_attempts: u32,
    pub mode: WriteMode,
    /// Independent writers committing in parallel. A shard always uses the
    /// same lane, so one room's writes stay in order.
    pub lanes: usize,
}

/// How writes reach the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// Group commit: one transaction per batch.
    #[default]
    Group,
    /// One transaction per write, many at once: the naive writer, kept as
    /// the baseline benchmarks compare group commit with.
    PerEntry,
}

impl Default for JournalWriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 1_000,
            linger: Duration::from_millis(1),
            queue_capacity: 16_384,
            max_attempts: 3,
            mode: WriteMode::Group,
            lanes: 2,
        }
    }
}

/// Why a write did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the journal writer has stopped")]
    Stopped,
}

/// What a batch's commit answers with: one outcome per entry, or the error
/// that kept the whole batch from committing.
pub type CommitResult = Result<Vec<EntryOutcome>, StoreError>;

/// Called once with the commit result, on the writer task: it must be quick
/// (typically a message send).
pub type OnCommit = Box<dyn FnOnce(CommitResult) + Send>;

enum ReplyTo {
    Channel(oneshot::Sender<CommitResult>),
    Callback(OnCommit),
}

/// Answers a write exactly once: with its commit's result, or — dropped
/// unanswered because its lane ended abnormally (a panic) — with an error,
/// so no caller waits forever and nothing is acknowledged.
struct Reply(Option<ReplyTo>);

impl Reply {
    fn channel(sender: oneshot::Sender<CommitResult>) -> Self {
        Self(Some(ReplyTo::Channel(sender)))
    }

    fn callback(callback: OnCommit) -> Self {
        Self(Some(ReplyTo::Callback(callback)))
    }

    fn send(mut self, result: CommitResult) {
        if let Some(to) = self.0.take() {
            to.send(result);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(to) = self.0.take() {
            to.send(Err(StoreError::Unavailable(
                "the journal writer stopped before this write committed".into(),
            )));
        }
    }
}

impl ReplyTo {
    fn send(self, result: CommitResult) {
        match self {
            // The caller may have gone away (a closed socket); its data is durable anyway.
            Self::Channel(sender) => {
                let _ = sender.send(result);
            }
            Self::Callback(callback) => callback(result),
        }
    }
}

struct Pending {
    entries: Vec<FencedEntry>,
    reply: Reply,
    /// The caller's span: the batch's commit span follows from it.
    span: tracing::Span,
}

/// The handle callers write through. Cloning is cheap; the writer stops when
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct JournalWriter {
    lanes: Arc<[mpsc::Sender<Pending>]>,
}

impl JournalWriter {
    /// Starts the writer tasks; the handle completes when all have drained.
    pub fn spawn(
        journal: Arc<dyn Journal>,
        config: JournalWriterConfig,
        metrics: Metrics,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let lanes = config.lanes.max(1);
        let mut senders = Vec::with_capacity(lanes);
        let mut tasks = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
            senders.push(sender);
            tasks.push(tokio::spawn(run(
                journal.clone(),
                config,
                metrics.clone(),
                receiver,
            )));
        }
        let all = tokio::spawn(async move {
            for (lane, task) in tasks.into_iter().enumerate() {
                // A lane that panicked dropped its writes unanswered: each
                // `Reply` answered its caller with an error on drop, so
                // nothing was acknowledged and nobody waits.
                if let Err(error) = task.await {
                    tracing::error!(lane, %error, "a journal lane ended abnormally");
                }
            }
        });
        (
            Self {
                lanes: senders.into(),
            },
            all,
        )
    }

    /// The lane of a write: by the shard of its first entry.
    fn lane(&self, entries: &[FencedEntry]) -> &mpsc::Sender<Pending> {
        let shard = entries
            .first()
            .map_or(0, |entry| usize::from(entry.fence.shard.get()));
        &self.lanes[shard % self.lanes.len()]
    }

    /// Writes one entry; returns once it is durable (or refused).
    pub async fn write(&self, entry: FencedEntry) -> Result<EntryOutcome, JournalError> {
        let outcomes = self.write_together(vec![entry]).await?;
        outcomes.into_iter().next().ok_or(JournalError::Stopped)
    }

    /// Writes entries in the same transaction; all or none become durable.
    pub async fn write_together(
        &self,
        entries: Vec<FencedEntry>,
    ) -> Result<Vec<EntryOutcome>, JournalError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.lane(&entries)
            .send(Pending {
                span: tracing::Span::current(),
                entries,
                reply: Reply::channel(reply),
            })
            .await
            .map_err(|_| JournalError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(JournalError::Store),
            Err(_) => Err(JournalError::Stopped),
        }
    }

    /// Queues entries to be written in one transaction and returns at once;
    /// `on_commit` is called with the result after the commit. Waits only
    /// while the queue is full (backpressure).
    pub async fn submit(
        &self,
        entries: Vec<FencedEntry>,
        on_commit: OnCommit,
    ) -> Result<(), JournalError> {
        if entries.is_empty() {
            on_commit(Ok(Vec::new()));
            return Ok(());
        }
        self.lane(&entries)
            .send(Pending {
                span: tracing::Span::current(),
                entries,
                reply: Reply::callback(on_commit),
            })
            .await
            .map_err(|_| JournalError::Stopped)
    }
}

async fn run(
    journal: Arc<dyn Journal>,
    config: JournalWriterConfig,
    metrics: Metrics,
    mut receiver: mpsc::Receiver<Pending>,
) {
    if config.mode == WriteMode::PerEntry {
        // Each write commits alone, up to 64 at once (the pool bounds it too).
        let permits = Arc::new(tokio::sync::Semaphore::new(64));
        while let Some(pending) = receiver.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (journal, metrics) = (journal.clone(), metrics.clone());
            tokio::spawn(async move {
                commit(journal.as_ref(), &config, &metrics, vec![pending]).await;
                drop(permit);
            });
        }
        // Done only when every write in flight is.
        let _ = permits.acquire_many(64).await;
        return;
    }
    let max_batch = config.max_batch.max(1);
    while let Some(first) = receiver.recv().await {
        let mut size = first.entries.len();
        let mut batch = vec![first];
        let deadline = Instant::now() + config.linger;
        while size < max_batch {
            let next = if config.linger.is_zero() {
                receiver.try_recv().ok()
            } else {
                tokio::time::timeout_at(deadline, receiver.recv())
                    .await
                    .ok()
                    .flatten()
            };
            let Some(pending) = next else { break };
            size += pending.entries.len();
            batch.push(pending);
        }
        commit(journal.as_ref(), &config, &metrics, batch).await;
    }
}

async fn commit(
    journal: &dyn Journal,
    config: &JournalWriterConfig,
    metrics: &Metrics,
    batch: Vec<Pending>,
) {
    // Move the entries out; keep each caller's reply with its entry count.
    let mut entries: Vec<FencedEntry> =
        Vec::with_capacity(batch.iter().map(|pending| pending.entries.len()).sum());
    let mut replies: Vec<(Reply, usize)> = Vec::with_capacity(batch.len());
    let mut spans = Vec::with_capacity(batch.len());
    for pending in batch {
        spans.push(pending.span);
        replies.push((pending.reply, pending.entries.len()));
        entries.extend(pending.entries);
    }
    let started = Instant::now();
    let span = tracing::debug_span!(
        "journal.commit",
        entries = entries.len(),
        callers = replies.len()
    );
    for caller in &spans {
        span.follows_from(caller);
    }
    let result = commit_with_retries(journal, config, &entries)
        .instrument(span)
        .await;
    metrics.journal_committed(entries.len(), started.elapsed());
    tracing::debug!(
        entries = entries.len(),
        callers = replies.len(),
        micros = started.elapsed().as_micros() as u64,
        "journal batch"
    );
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, count) in replies {
                reply.send(Ok(outcomes.by_ref().take(count).collect()));
            }
        }
        Err(error) if !error.is_transient() && replies.len() > 1 => {
            // The database refused something in the batch (a value it cannot
            // store, a constraint): one caller's bad write must not fail the
            // others who happened to share its batch. Each caller's writes
            // are committed alone, in order; only the culprit's fail.
            warn!(%error, callers = replies.len(), "journal batch refused; committing its writes one caller at a time");
            let mut entries = entries.into_iter();
            for (reply, count) in replies {
                let own: Vec<FencedEntry> = entries.by_ref().take(count).collect();
                let result = commit_with_retries(journal, config, &own).await;
                if let Err(error) = &result {
                    warn!(%error, entries = own.len(), "journal commit failed");
                }
                reply.send(result);
            }
        }
        Err(error) => {
            warn!(%error, entries = entries.len(), "journal commit failed");
            for (reply, _) in replies {
                reply.send(Err(error.clone()));
            }
        }
    }
}

/// One transaction for `entries`, retried on transient errors with backoff;
/// one outcome per entry.
async fn commit_with_retries(
    journal: &dyn Journal,
    config: &JournalWriterConfig,
    entries: &[FencedEntry],
) -> Result<Vec<EntryOutcome>, StoreError> {
    let mut attempt = 1;
    loop {
        match journal.commit(entries).await {
            Ok(outcomes) if outcomes.len() == entries.len() => return Ok(outcomes),
            Ok(outcomes) => {
                return Err(StoreError::Internal(format!(
                    "journal returned {} outcomes for {} entries",
                    outcomes.len(),
                    entries.len()
                )));
            }
            Err(error) if error.is_transient() && attempt < config.max_attempts.max(1) => {
                warn!(%error, attempt, entries = entries.len(), "journal commit failed, retrying");
                tokio::time::sleep(Duration::from_millis(20 * 4_u64.pow(attempt - 1))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

impl From<JournalError> for crate::error::ExamError {
    fn from(error: JournalError) -> Self {
        match error {
            JournalError::Store(store) => Self::Store(store),
            JournalError::Stopped => Self::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::{CandidateId, PlanId, Timestamp};
    use crate::ports::{JournalEntry, JournaledAnswer, LogEntry, LogKind};
    use crate::shard::{Fence, ShardId};

    /// Refuses any batch holding a log whose message is "poison" (as
    /// Postgres refuses a NUL byte), counting the transactions it is asked for.
    #[derive(Default)]
    struct Picky {
        transactions: AtomicUsize,
    }

    #[async_trait]
    impl Journal for Picky {
        async fn commit(&self, batch: &[FencedEntry]) -> Result<Vec<EntryOutcome>, StoreError> {
            self.transactions.fetch_add(1, Ordering::SeqCst);
            let poisoned = batch.iter().any(
                |fenced| matches!(&fenced.entry, JournalEntry::Log(log) if log.message == "poison"),
            );
            if poisoned {
                Err(StoreError::Rejected("invalid byte sequence 0x00".into()))
            } else {
                Ok(vec![EntryOutcome::Written; batch.len()])
            }
        }

        async fn append_logs(&self, logs: &[crate::ports::QueuedLog]) -> Result<u64, StoreError> {
            Ok(logs.len() as u64)
        }

        async fn journaled_answer(
            &self,
            _: &PlanId,
            _: &CandidateId,
            _: i64,
        ) -> Result<Option<JournaledAnswer>, StoreError> {
            Ok(None)
        }
    }

    fn log(message: &str) -> FencedEntry {
        FencedEntry {
            fence: Fence {
                shard: ShardId::new(0).expect("shard 0"),
                epoch: 1,
            },
            entry: JournalEntry::Log(LogEntry {
                plan_id: "p1".parse().expect("plan id"),
                kind: LogKind::System,
                subject: None,
                room_id: None,
                message: message.into(),
                detail: serde_json::Value::Null,
                at: Timestamp::from_millis(0),
            }),
        }
    }

    #[tokio::test]
    async fn a_refused_write_fails_alone_not_the_batch_it_shared() {
        let journal = Arc::new(Picky::default());
        let config = JournalWriterConfig {
            linger: Duration::from_millis(50),
            lanes: 1,
            ..JournalWriterConfig::default()
        };
        let (writer, _task) = JournalWriter::spawn(journal.clone(), config, Metrics::noop());
        let (first, bad, last) = tokio::join!(
            writer.write(log("a")),
            writer.write(log("poison")),
            writer.write(log("b")),
        );
        assert_eq!(first, Ok(EntryOutcome::Written));
        assert!(
            matches!(bad, Err(JournalError::Store(StoreError::Rejected(_)))),
            "{bad:?}"
        );
        assert_eq!(last, Ok(EntryOutcome::Written));
        assert_eq!(
            journal.transactions.load(Ordering::SeqCst),
            4,
            "one shared batch, refused; then each caller alone"
        );
    }

    /// Panics on every commit: a bug in an adapter.
    struct Broken;

    #[async_trait]
    impl Journal for Broken {
        async fn commit(&self, _: &[FencedEntry]) -> Result<Vec<EntryOutcome>, StoreError> {
            panic!("a bug in the adapter");
        }

        async fn append_logs(&self, logs: &[crate::ports::QueuedLog]) -> Result<u64, StoreError> {
            Ok(logs.len() as u64)
        }

        async fn journaled_answer(
            &self,
            _: &PlanId,
            _: &CandidateId,
            _: i64,
        ) -> Result<Option<JournaledAnswer>, StoreError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn a_lane_that_panics_answers_every_write_it_held_with_an_error() {
        let (writer, task) = JournalWriter::spawn(
            Arc::new(Broken),
            JournalWriterConfig::default(),
            Metrics::noop(),
        );
        let (answered, answer) = oneshot::channel();
        writer
            .submit(
                vec![log("a")],
                Box::new(move |result| {
                    let _ = answered.send(result);
                }),
            )
            .await
            .expect("queued");
        let result = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .expect("answered, not left waiting")
            .expect("the callback ran");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        let waiting = writer.write(log("b")).await;
        assert!(waiting.is_err(), "{waiting:?}");
        drop(writer);
        task.await.expect("the writer's own task ends cleanly");
    }
}
