//! Group commit: one task owns the journal's write path. Callers hand it
//! entries and wait; it collects whatever arrives within a short linger (or up
//! to a batch size) and commits it in one transaction, then answers each
//! caller with its entry's outcome. An acknowledgement sent after `write`
//! returns is therefore an acknowledgement of durable data.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::warn;

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
}

impl Default for JournalWriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 1_000,
            linger: Duration::from_millis(2),
            queue_capacity: 16_384,
            max_attempts: 3,
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

enum Reply {
    Channel(oneshot::Sender<CommitResult>),
    Callback(OnCommit),
}

impl Reply {
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
}

/// The handle callers write through. Cloning is cheap; the writer stops when
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct JournalWriter {
    sender: mpsc::Sender<Pending>,
}

impl JournalWriter {
    /// Starts the writer task.
    pub fn spawn(
        journal: Arc<dyn Journal>,
        config: JournalWriterConfig,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let task = tokio::spawn(run(journal, config, receiver));
        (Self { sender }, task)
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
        self.sender
            .send(Pending {
                entries,
                reply: Reply::Channel(reply),
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
        self.sender
            .send(Pending {
                entries,
                reply: Reply::Callback(on_commit),
            })
            .await
            .map_err(|_| JournalError::Stopped)
    }
}

async fn run(
    journal: Arc<dyn Journal>,
    config: JournalWriterConfig,
    mut receiver: mpsc::Receiver<Pending>,
) {
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
        commit(journal.as_ref(), &config, batch).await;
    }
}

async fn commit(journal: &dyn Journal, config: &JournalWriterConfig, batch: Vec<Pending>) {
    let entries: Vec<FencedEntry> = batch
        .iter()
        .flat_map(|pending| pending.entries.iter().cloned())
        .collect();
    let mut attempt = 1;
    let result = loop {
        match journal.commit(&entries).await {
            Err(error) if error.is_transient() && attempt < config.max_attempts.max(1) => {
                warn!(%error, attempt, entries = entries.len(), "journal commit failed, retrying");
                tokio::time::sleep(Duration::from_millis(20 * 4_u64.pow(attempt - 1))).await;
                attempt += 1;
            }
            other => break other,
        }
    };
    match result {
        Ok(outcomes) if outcomes.len() == entries.len() => {
            let mut outcomes = outcomes.into_iter();
            for pending in batch {
                let mine = outcomes.by_ref().take(pending.entries.len()).collect();
                pending.reply.send(Ok(mine));
            }
        }
        Ok(outcomes) => {
            let error = StoreError::Internal(format!(
                "journal returned {} outcomes for {} entries",
                outcomes.len(),
                entries.len()
            ));
            for pending in batch {
                pending.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            warn!(%error, entries = entries.len(), "journal commit failed");
            for pending in batch {
                pending.reply.send(Err(error.clone()));
            }
        }
    }
}
