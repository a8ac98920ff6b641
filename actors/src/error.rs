//! Errors of the ports, shared by every adapter so the layers above map them
//! to one set of responses.

/// A durable-store failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or timed out; the operation may be retried.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// Another writer changed the row first (optimistic concurrency).
    #[error("concurrent update of {0}")]
    Conflict(String),
    /// The database refused a value (e.g. a character it cannot store): the
    /// caller sent something invalid that validation let through.
    #[error("the database refused a value: {0}")]
    Rejected(String),
    /// The data read back does not make sense (a bug or a manual edit).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else the database refused.
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// Returns whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
}

/// Why an exam operation failed, for the layers above to map to responses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExamError {
    #[error(transparent)]
    Domain(#[from] crate::domain::DomainError),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The shard is not hosted here (any more); the caller should retry elsewhere.
    #[error("this node does not own shard {0}")]
    NotOwner(crate::shard::ShardId),
    #[error("too many concurrent updates, try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the journal writer has stopped")]
    Stopped,
    /// An actor did not answer (in time): overloaded, restarting, or gone.
    #[error("{0}")]
    Unavailable(&'static str),
}

impl From<crate::journal_writer::JournalError> for ExamError {
    fn from(error: crate::journal_writer::JournalError) -> Self {
        match error {
            crate::journal_writer::JournalError::Store(store) => Self::Store(store),
            crate::journal_writer::JournalError::Stopped => Self::Stopped,
        }
    }
}
