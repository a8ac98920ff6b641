//! The candidate lifecycle:
//! registered → checked_in → testing ⇄ paused → submitted | force_submitted | expelled | absent,
//! and the answer rules that apply while testing.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::answer::{AnswerSheet, AnswerValue, KnownCseq};
use super::clock::{CandidateClock, ClockShare, check_extension};
use super::error::DomainError;
use super::ids::QuestionId;
use super::plan::{PlanRuntime, PlanState};
use super::question::Question;
use super::room::RoomRuntime;
use super::spec::PlanSpec;
use super::time::{PauseLog, Timestamp};

/// The largest `cseq` accepted (JavaScript's `Number.MAX_SAFE_INTEGER`).
pub const MAX_CSEQ: i64 = (1 << 53) - 1;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CandidateState {
    #[default]
    Registered,
    CheckedIn,
    Testing,
    Paused,
    Submitted,
    ForceSubmitted,
    Expelled,
    Absent,
}

impl CandidateState {
    pub const ALL: [CandidateState; 8] = [
        Self::Registered,
        Self::CheckedIn,
        Self::Testing,
        Self::Paused,
        Self::Submitted,
        Self::ForceSubmitted,
        Self::Expelled,
        Self::Absent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::CheckedIn => "checked_in",
            Self::Testing => "testing",
            Self::Paused => "paused",
            Self::Submitted => "submitted",
            Self::ForceSubmitted => "force_submitted",
            Self::Expelled => "expelled",
            Self::Absent => "absent",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == value)
    }

    /// Returns whether the candidate is done: nothing changes the sheet any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Submitted | Self::ForceSubmitted | Self::Expelled | Self::Absent
        )
    }

    /// Returns whether the candidate is sitting the exam (testing or paused).
    pub fn is_sitting(self) -> bool {
        matches!(self, Self::Testing | Self::Paused)
    }
}

/// Why a sheet was submitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitReason {
    /// The candidate pressed submit.
    Candidate,
    /// The candidate's time ran out.
    TimeUp,
    /// The plan was ended.
    PlanEnded,
    /// A proctor forced the submission.
    Proctor,
}

impl SubmitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::TimeUp => "time_up",
            Self::PlanEnded => "plan_ended",
            Self::Proctor => "proctor",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum CandidateCommand {
    /// The candidate logged in.
    CheckIn,
    /// The plan started (or the candidate checked in late): the clock applies.
    Begin,
    Pause,
    Resume,
    Extend {
        seconds: i64,
    },
    /// The candidate submits.
    Submit,
    /// A proctor submits for the candidate.
    ForceSubmit {
        reason: Option<String>,
    },
    /// Time ran out or the plan ended.
    AutoSubmit {
        reason: SubmitReason,
    },
    Expel {
        reason: Option<String>,
    },
    /// The late entry window closed, or the plan ended, without a check-in.
    MarkAbsent,
    Warn {
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CandidateEvent {
    CheckedIn {
        at: Timestamp,
    },
    Began {
        at: Timestamp,
    },
    Paused {
        at: Timestamp,
    },
    Resumed {
        at: Timestamp,
    },
    Extended {
        seconds: i64,
        at: Timestamp,
    },
    Submitted {
        at: Timestamp,
        reason: SubmitReason,
    },
    Expelled {
        at: Timestamp,
        reason: Option<String>,
    },
    MarkedAbsent {
        at: Timestamp,
    },
    Warned {
        at: Timestamp,
        reason: Option<String>,
    },
    AnswerSaved {
        question_id: QuestionId,
        cseq: i64,
        version: i64,
        /// `answer::value_digest` of the value (0: not known).
        #[serde(default)]
        digest: u64,
        at: Timestamp,
    },
}

impl CandidateEvent {
    pub fn at(&self) -> Timestamp {
        match self {
            Self::CheckedIn { at }
            | Self::Began { at }
            | Self::Paused { at }
            | Self::Resumed { at }
            | Self::Extended { at, .. }
            | Self::Submitted { at, .. }
            | Self::Expelled { at, .. }
            | Self::MarkedAbsent { at }
            | Self::Warned { at, .. }
            | Self::AnswerSaved { at, .. } => *at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::CheckedIn { .. } => "checked_in",
            Self::Began { .. } => "began",
            Self::Paused { .. } => "paused",
            Self::Resumed { .. } => "resumed",
            Self::Extended { .. } => "extended",
            Self::Submitted { .. } => "submitted",
            Self::Expelled { .. } => "expelled",
            Self::MarkedAbsent { .. } => "marked_absent",
            Self::Warned { .. } => "warned",
            Self::AnswerSaved { .. } => "answer_saved",
        }
    }

    /// Returns whether this event changes the candidate's state (as opposed to
    /// a warning or an answer).
    pub fn is_transition(&self) -> bool {
        !matches!(self, Self::Warned { .. } | Self::AnswerSaved { .. })
    }
}

/// The rules of one plan that candidate decisions need.
#[derive(Clone, Debug, PartialEq)]
pub struct ExamRules {
    pub duration_s: i64,
    pub late_entry_s: i64,
    pub max_text_chars: usize,
    pub questions: HashMap<QuestionId, Question>,
}

impl ExamRules {
    /// Rules without questions, for decisions that never look at answers.
    pub fn without_questions(duration_s: i64, late_entry_s: i64) -> Self {
        Self {
            duration_s,
            late_entry_s,
            max_text_chars: 0,
            questions: HashMap::new(),
        }
    }

    pub fn from_spec<S>(spec: &PlanSpec<S>) -> Self {
        Self {
            duration_s: spec.duration_s,
            late_entry_s: spec.settings.late_entry_s,
            max_text_chars: usize::try_from(spec.settings.max_text_chars).unwrap_or(usize::MAX),
            questions: spec
                .questions
                .iter()
                .map(|question| (question.id.clone(), question.clone()))
                .collect(),
        }
    }
}

/// The plan and room a candidate decision is taken in.
#[derive(Clone, Copy, Debug)]
pub struct ExamContext<'a> {
    pub rules: &'a ExamRules,
    pub plan: &'a PlanRuntime,
    pub room: &'a RoomRuntime,
    pub extra_time_s: i64,
}

/// What an answer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerDecision {
    /// A new version to journal; ack once it is durable.
    Accepted(AcceptedAnswer),
    /// The same `cseq` for the same question again: ack with the stored version.
    Repeat { version: i64 },
}

/// A new version of one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedAnswer {
    pub question_id: QuestionId,
    pub cseq: i64,
    pub version: i64,
    /// `answer::value_digest` of the value.
    pub digest: u64,
    pub at: Timestamp,
}

impl AcceptedAnswer {
    /// The event that records it on the sheet.
    pub fn event(&self) -> CandidateEvent {
        CandidateEvent::AnswerSaved {
            question_id: self.question_id.clone(),
            cseq: self.cseq,
            version: self.version,
            digest: self.digest,
            at: self.at,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateRuntime {
    pub state: CandidateState,
    pub checked_in_at: Option<Timestamp>,
    pub began_at: Option<Timestamp>,
    /// Candidate-level pauses (a proctor paused this one candidate).
    pub pauses: PauseLog,
    /// Sum of the candidate's own extensions (not its `extra_time_s`).
    pub extension_s: i64,
    pub submitted_at: Option<Timestamp>,
    pub submit_reason: Option<SubmitReason>,
    pub expelled_reason: Option<String>,
    pub warnings: i64,
    pub sheet: AnswerSheet,
}

impl CandidateRuntime {
    /// Returns this candidate's clock in `context`.
    pub fn clock<'a>(&'a self, context: &ExamContext<'a>) -> CandidateClock<'a> {
        CandidateClock {
            duration_s: context.rules.duration_s,
            extra_time_s: context.extra_time_s,
            started_at: context.plan.started_at,
            ended_at: context.plan.ended_at,
            plan: context.plan.clock_share(),
            room: context.room.clock_share(),
            candidate: ClockShare {
                pauses: &self.pauses,
                extension_s: self.extension_s,
            },
        }
    }

    pub fn decide(
        &self,
        command: &CandidateCommand,
        context: &ExamContext<'_>,
        now: Timestamp,
    ) -> Result<Vec<CandidateEvent>, DomainError> {
        use CandidateState::*;
        let state = self.state;
        let events = match command {
            CandidateCommand::CheckIn => match state {
                Registered => {
                    context
                        .plan
                        .admits_check_in(context.rules.late_entry_s, now)?;
                    let mut events = vec![CandidateEvent::CheckedIn { at: now }];
                    if context.plan.state.is_running() {
                        events.push(CandidateEvent::Began { at: now });
                    }
                    events
                }
                CheckedIn | Testing | Paused | Submitted | ForceSubmitted => vec![],
                Expelled => return Err(DomainError::Expelled),
                // Only the late-entry window closing marks a seat absent, so
                // a check-in after it reads the same whether or not the
                // room's clock has got there yet.
                Absent => return Err(DomainError::LateEntryClosed),
            },
            CandidateCommand::Begin => match state {
                CheckedIn => vec![CandidateEvent::Began { at: now }],
                _ => vec![],
            },
            CandidateCommand::Pause => match state {
                Testing => {
                    if !self.pauses.has_room_for_another() {
                        return Err(DomainError::TooManyPauses);
                    }
                    vec![CandidateEvent::Paused { at: now }]
                }
                Paused => return Err(DomainError::CandidateAlreadyPaused),
                _ => return Err(self.not_sitting()),
            },
            CandidateCommand::Resume => match state {
                Paused => vec![CandidateEvent::Resumed { at: now }],
                Testing => return Err(DomainError::CandidateNotPaused),
                _ => return Err(self.not_sitting()),
            },
            CandidateCommand::Extend { seconds } => match state {
                Testing | Paused => {
                    check_extension(*seconds, self.extension_s)?;
                    vec![CandidateEvent::Extended {
                        seconds: *seconds,
                        at: now,
                    }]
                }
                _ => return Err(self.not_sitting()),
            },
            CandidateCommand::Submit => match state {
                Testing if self.clock(context).is_frozen() => return Err(DomainError::ExamPaused),
                Testing => vec![CandidateEvent::Submitted {
                    at: now,
                    reason: SubmitReason::Candidate,
                }],
                Paused => return Err(DomainError::ExamPaused),
                _ => return Err(self.not_sitting()),
            },
            CandidateCommand::ForceSubmit { .. } => match state {
                CheckedIn | Testing | Paused => {
                    vec![CandidateEvent::Submitted {
                        at: now,
                        reason: SubmitReason::Proctor,
                    }]
                }
                _ => return Err(self.not_sitting()),
            },
            CandidateCommand::AutoSubmit { reason } => match state {
                Testing | Paused => vec![CandidateEvent::Submitted {
                    at: now,
                    reason: *reason,
                }],
                Registered | CheckedIn => vec![CandidateEvent::MarkedAbsent { at: now }],
                _ => vec![],
            },
            CandidateCommand::Expel { reason } => match state {
                CheckedIn | Testing | Paused | Submitted | ForceSubmitted => {
                    vec![CandidateEvent::Expelled {
                        at: now,
                        reason: reason.clone(),
                    }]
                }
                Expelled => return Err(DomainError::Expelled),
                Registered => return Err(DomainError::NotCheckedIn),
                Absent => return Err(DomainError::Absent),
            },
            CandidateCommand::MarkAbsent => match state {
                Registered => vec![CandidateEvent::MarkedAbsent { at: now }],
                _ => vec![],
            },
            CandidateCommand::Warn { reason } => match state {
                CheckedIn | Testing | Paused => {
                    vec![CandidateEvent::Warned {
                        at: now,
                        reason: reason.clone(),
                    }]
                }
                _ => return Err(self.not_sitting()),
            },
        };
        Ok(events)
    }

    /// Decides what an answer does. `Err(CseqNotIncreasing)` means the sheet
    /// cannot tell: the caller asks the journal whether that cseq was saved for
    /// this question before refusing it.
    pub fn decide_answer(
        &self,
        question_id: &QuestionId,
        value: &AnswerValue,
        cseq: i64,
        context: &ExamContext<'_>,
        now: Timestamp,
    ) -> Result<AnswerDecision, DomainError> {
        // Up to 2^53 - 1: exact in every JSON client, and far from i64::MAX,
        // which would otherwise lock the candidate out of any newer cseq.
        if !(1..=MAX_CSEQ).contains(&cseq) {
            return Err(DomainError::InvalidCseq);
        }
        // A repeat is acknowledged whatever happened since: the client only
        // needs to learn that its answer is safe.
        let last = self.sheet.last_cseq();
        let digest = value.digest();
        if cseq <= last {
            return match self.sheet.known(question_id, cseq, digest) {
                KnownCseq::Repeat { version } => Ok(AnswerDecision::Repeat { version }),
                KnownCseq::Conflict => Err(DomainError::CseqConflict(cseq)),
                KnownCseq::Unknown => Err(DomainError::CseqNotIncreasing { cseq, last }),
            };
        }
        match self.state {
            CandidateState::Testing => {}
            CandidateState::Paused => return Err(DomainError::ExamPaused),
            _ => return Err(self.not_sitting()),
        }
        if context.plan.state.is_over() {
            return Err(DomainError::PlanEnded);
        }
        let clock = self.clock(context);
        if clock.is_frozen() || context.plan.state == PlanState::Paused {
            return Err(DomainError::ExamPaused);
        }
        if clock.remaining_millis(now) == 0 {
            return Err(DomainError::TimeUp);
        }
        let question = context
            .rules
            .questions
            .get(question_id)
            .ok_or_else(|| DomainError::UnknownQuestion(question_id.to_string()))?;
        question
            .check_value(value.value(), context.rules.max_text_chars)
            .map_err(|problem| DomainError::InvalidAnswer(problem.0))?;
        Ok(AnswerDecision::Accepted(AcceptedAnswer {
            question_id: question_id.clone(),
            cseq,
            version: self.sheet.next_version(question_id),
            digest,
            at: now,
        }))
    }

    /// The refusal for a command that needs a sitting candidate.
    fn not_sitting(&self) -> DomainError {
        match self.state {
            CandidateState::Submitted | CandidateState::ForceSubmitted => {
                DomainError::AlreadySubmitted
            }
            CandidateState::Expelled => DomainError::Expelled,
            CandidateState::Absent => DomainError::Absent,
            CandidateState::Registered => DomainError::NotCheckedIn,
            CandidateState::CheckedIn | CandidateState::Testing | CandidateState::Paused => {
                DomainError::ExamNotRunning
            }
        }
    }

    pub fn apply(&mut self, event: &CandidateEvent) {
        match event {
            CandidateEvent::CheckedIn { at } => {
                self.state = CandidateState::CheckedIn;
                self.checked_in_at = Some(*at);
            }
            CandidateEvent::Began { at } => {
                self.state = CandidateState::Testing;
                self.began_at = Some(*at);
            }
            CandidateEvent::Paused { at } => {
                self.state = CandidateState::Paused;
                self.pauses.open(*at);
            }
            CandidateEvent::Resumed { at } => {
                self.state = CandidateState::Testing;
                self.pauses.close(*at);
            }
            CandidateEvent::Extended { seconds, .. } => {
                self.extension_s = self.extension_s.saturating_add(*seconds);
            }
            CandidateEvent::Submitted { at, reason } => {
                self.state = match reason {
                    SubmitReason::Proctor => CandidateState::ForceSubmitted,
                    _ => CandidateState::Submitted,
                };
                self.pauses.close(*at);
                self.submitted_at = Some(*at);
                self.submit_reason = Some(*reason);
            }
            CandidateEvent::Expelled { at, reason } => {
                self.state = CandidateState::Expelled;
                self.pauses.close(*at);
                self.expelled_reason = reason.clone();
            }
            CandidateEvent::MarkedAbsent { .. } => self.state = CandidateState::Absent,
            CandidateEvent::Warned { .. } => self.warnings += 1,
            CandidateEvent::AnswerSaved {
                question_id,
                cseq,
                version,
                digest,
                ..
            } => {
                self.sheet.record(question_id, *version, *cseq, *digest);
            }
        }
    }

    pub fn handle(
        &mut self,
        command: &CandidateCommand,
        context: &ExamContext<'_>,
        now: Timestamp,
    ) -> Result<Vec<CandidateEvent>, DomainError> {
        let events = self.decide(command, context, now)?;
        events.iter().for_each(|event| self.apply(event));
        Ok(events)
    }
}
