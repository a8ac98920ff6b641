//! Why a command is refused. Each variant has a stable snake_case code that
//! reaches clients unchanged (problem+json `code`, WebSocket `error.code`).

/// A command the current state does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the plan is not open for check-in yet")]
    PlanNotOpen,
    #[error("the plan has already started")]
    PlanAlreadyStarted,
    #[error("the plan is not running")]
    PlanNotRunning,
    #[error("the plan is already paused")]
    PlanAlreadyPaused,
    #[error("the plan is not paused")]
    PlanNotPaused,
    #[error("the plan has ended")]
    PlanEnded,
    #[error("the plan has not ended yet")]
    PlanNotEnded,
    #[error("the plan is finalized")]
    PlanFinalized,
    #[error("the room is not running")]
    RoomNotRunning,
    #[error("the room is already paused")]
    RoomAlreadyPaused,
    #[error("the room is not paused")]
    RoomNotPaused,
    #[error("the late entry window has closed")]
    LateEntryClosed,
    #[error("the candidate has not checked in")]
    NotCheckedIn,
    #[error("the exam is not running for this candidate")]
    ExamNotRunning,
    #[error("the exam is paused")]
    ExamPaused,
    #[error("the candidate is already paused")]
    CandidateAlreadyPaused,
    #[error("the candidate is not paused")]
    CandidateNotPaused,
    #[error("the exam time is up")]
    TimeUp,
    #[error("the exam is already submitted")]
    AlreadySubmitted,
    #[error("the candidate was expelled")]
    Expelled,
    #[error("the candidate was marked absent")]
    Absent,
    #[error("unknown question {0}")]
    UnknownQuestion(String),
    #[error("invalid answer: {0}")]
    InvalidAnswer(String),
    #[error("cseq must be an integer from 1 to 2^53 - 1")]
    InvalidCseq,
    #[error("cseq {cseq} is not newer than the last accepted {last}")]
    CseqNotIncreasing { cseq: i64, last: i64 },
    #[error("cseq {0} was already used for another question")]
    CseqConflict(i64),
    #[error("an extension must be between 1 and {max} seconds")]
    InvalidExtension { max: i64 },
    #[error("too many pauses")]
    TooManyPauses,
    #[error("the incident is already {0}")]
    IncidentAlreadyResolved(&'static str),
    #[error("invalid incident: {0}")]
    InvalidIncident(String),
    #[error("invalid text: {0}")]
    InvalidText(String),
    #[error("too many client events; slow down")]
    TooManyEvents,
}

impl DomainError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PlanNotOpen => "plan_not_open",
            Self::PlanAlreadyStarted => "plan_already_started",
            Self::PlanNotRunning => "plan_not_running",
            Self::PlanAlreadyPaused => "plan_already_paused",
            Self::PlanNotPaused => "plan_not_paused",
            Self::PlanEnded => "plan_ended",
            Self::PlanNotEnded => "plan_not_ended",
            Self::PlanFinalized => "plan_finalized",
            Self::RoomNotRunning => "room_not_running",
            Self::RoomAlreadyPaused => "room_already_paused",
            Self::RoomNotPaused => "room_not_paused",
            Self::LateEntryClosed => "late_entry_closed",
            Self::NotCheckedIn => "not_checked_in",
            Self::ExamNotRunning => "exam_not_running",
            Self::ExamPaused => "exam_paused",
            Self::CandidateAlreadyPaused => "candidate_already_paused",
            Self::CandidateNotPaused => "candidate_not_paused",
            Self::TimeUp => "time_up",
            Self::AlreadySubmitted => "already_submitted",
            Self::Expelled => "candidate_expelled",
            Self::Absent => "candidate_absent",
            Self::UnknownQuestion(_) => "unknown_question",
            Self::InvalidAnswer(_) => "invalid_answer",
            Self::InvalidCseq => "invalid_cseq",
            Self::CseqNotIncreasing { .. } => "cseq_not_increasing",
            Self::CseqConflict(_) => "cseq_conflict",
            Self::InvalidExtension { .. } => "invalid_extension",
            Self::TooManyPauses => "too_many_pauses",
            Self::IncidentAlreadyResolved(_) => "incident_already_resolved",
            Self::InvalidIncident(_) => "invalid_incident",
            Self::InvalidText(_) => "invalid_text",
            Self::TooManyEvents => "too_many_events",
        }
    }
}
