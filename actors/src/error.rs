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

/// What kind of refusal an error is. REST answers with the matching HTTP
/// status; sockets send only the code, and clients act on the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request carries an invalid value (HTTP 422).
    Invalid,
    /// Not allowed for this candidate or role (HTTP 403).
    Forbidden,
    /// What the request names does not exist (HTTP 404).
    NotFound,
    /// The current state does not allow it (HTTP 409).
    Conflict,
    /// Too many requests in a window; slow down (HTTP 429).
    TooMany,
    /// Not done now, nothing stored: send the same again later (HTTP 503).
    Unavailable,
    /// A bug or corrupt data: logged in full, answered without internals (HTTP 500).
    Internal,
}

impl StoreError {
    /// The stable code clients see for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            // A failed operation stored nothing: the caller sends it again
            // (an answer is resent after the room's reconnect).
            Self::Unavailable(_) | Self::Internal(_) => "store_unavailable",
            Self::Conflict(_) => "concurrent_update",
            // The same value would be refused again: final, like an invalid answer.
            Self::Rejected(_) => "invalid_value",
            Self::Corrupt(_) => "internal_error",
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Unavailable(_) | Self::Internal(_) => ErrorClass::Unavailable,
            Self::Conflict(_) => ErrorClass::Conflict,
            Self::Rejected(_) => ErrorClass::Invalid,
            Self::Corrupt(_) => ErrorClass::Internal,
        }
    }
}

impl ExamError {
    /// The stable code of the one table every surface uses: the
    /// problem+json `code` on REST, `error.code` on the sockets.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Domain(domain) => domain.code(),
            Self::NotFound(_) => "not_found",
            Self::NotOwner(_) => "not_owner",
            Self::Contended => "concurrent_update",
            Self::Store(store) => store.code(),
            Self::Stopped => "shutting_down",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// What a client may read about it: store internals (driver messages,
    /// table names) stay in the node's log.
    pub fn detail(&self) -> String {
        match self {
            Self::Store(StoreError::Unavailable(_) | StoreError::Internal(_)) => {
                "the database did not store it; nothing was changed, retry shortly".into()
            }
            Self::Store(StoreError::Corrupt(_)) => {
                "an unexpected error occurred; it was logged".into()
            }
            Self::Store(StoreError::Conflict(detail) | StoreError::Rejected(detail)) => {
                detail.clone()
            }
            Self::NotOwner(shard) => {
                format!("shard {shard} is not hosted on this node right now; retry")
            }
            Self::Contended => "too many concurrent updates; retry".into(),
            Self::Stopped => "this node is shutting down; retry on another".into(),
            other => other.to_string(),
        }
    }

    /// The kind of refusal (REST maps it to the HTTP status).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Domain(domain) => domain_class(domain),
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::Contended => ErrorClass::Conflict,
            Self::Store(store) => store.class(),
            Self::NotOwner(_) | Self::Stopped | Self::Unavailable(_) => ErrorClass::Unavailable,
        }
    }
}

/// Domain refusals: a bad value, a candidate who may no longer act, too
/// many events; the rest are states that do not allow the command.
fn domain_class(error: &crate::domain::DomainError) -> ErrorClass {
    use crate::domain::DomainError;
    match error {
        DomainError::UnknownQuestion(_)
        | DomainError::InvalidAnswer(_)
        | DomainError::InvalidCseq
        | DomainError::InvalidExtension { .. }
        | DomainError::InvalidIncident(_)
        | DomainError::InvalidText(_) => ErrorClass::Invalid,
        DomainError::TooManyEvents => ErrorClass::TooMany,
        DomainError::Expelled | DomainError::Absent => ErrorClass::Forbidden,
        DomainError::PlanNotOpen
        | DomainError::PlanAlreadyStarted
        | DomainError::PlanNotRunning
        | DomainError::PlanAlreadyPaused
        | DomainError::PlanNotPaused
        | DomainError::PlanEnded
        | DomainError::PlanNotEnded
        | DomainError::PlanFinalized
        | DomainError::RoomNotRunning
        | DomainError::RoomAlreadyPaused
        | DomainError::RoomNotPaused
        | DomainError::LateEntryClosed
        | DomainError::NotCheckedIn
        | DomainError::ExamNotRunning
        | DomainError::ExamPaused
        | DomainError::CandidateAlreadyPaused
        | DomainError::CandidateNotPaused
        | DomainError::TimeUp
        | DomainError::AlreadySubmitted
        | DomainError::CseqNotIncreasing { .. }
        | DomainError::CseqConflict(_)
        | DomainError::TooManyPauses
        | DomainError::IncidentAlreadyResolved(_) => ErrorClass::Conflict,
    }
}
