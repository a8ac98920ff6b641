//! Properties over random command sequences on one plan, room and candidate:
//! remaining time is never negative and never grows except by an extension;
//! replaying the recorded events rebuilds the same state; a submitted sheet
//! never changes.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::answer::AnswerValue;
use super::candidate::{
    AnswerDecision, CandidateCommand, CandidateEvent, CandidateRuntime, ExamContext, ExamRules,
};
use super::ids::QuestionId;
use super::plan::{PlanCommand, PlanEvent, PlanRuntime};
use super::room::{RoomCommand, RoomEvent, RoomRuntime};
use super::spec::tests::sample_plan;
use super::time::Timestamp;

#[derive(Clone, Debug)]
enum Op {
    Advance(i64),
    Plan(PlanCommand),
    Room(RoomCommand),
    Candidate(CandidateCommand),
    Answer {
        question: usize,
        value: usize,
        cseq_step: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0_i64..400_000).prop_map(Op::Advance),
        3 => prop_oneof![
            Just(PlanCommand::Open),
            Just(PlanCommand::Start),
            Just(PlanCommand::Pause),
            Just(PlanCommand::Resume),
            (-10_i64..600).prop_map(|seconds| PlanCommand::Extend { seconds }),
            Just(PlanCommand::End),
        ].prop_map(Op::Plan),
        2 => prop_oneof![
            Just(RoomCommand::Pause),
            Just(RoomCommand::Resume),
            (1_i64..600).prop_map(|seconds| RoomCommand::Extend { seconds }),
        ].prop_map(Op::Room),
        3 => prop_oneof![
            Just(CandidateCommand::CheckIn),
            Just(CandidateCommand::Pause),
            Just(CandidateCommand::Resume),
            (1_i64..600).prop_map(|seconds| CandidateCommand::Extend { seconds }),
            Just(CandidateCommand::Submit),
            Just(CandidateCommand::ForceSubmit { reason: None }),
            Just(CandidateCommand::Expel { reason: None }),
            Just(CandidateCommand::Warn { reason: None }),
        ].prop_map(Op::Candidate),
        6 => (0_usize..4, 0_usize..4, -2_i64..3)
            .prop_map(|(question, value, cseq_step)| Op::Answer { question, value, cseq_step }),
    ]
}

#[derive(Clone, Debug)]
enum Recorded {
    Plan(PlanEvent),
    Room(RoomEvent),
    Candidate(CandidateEvent),
}

/// An event as it comes back from the transitions table's JSON column.
fn through_json(event: &Recorded) -> Recorded {
    match event {
        Recorded::Plan(event) => {
            Recorded::Plan(serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap())
        }
        Recorded::Room(event) => {
            Recorded::Room(serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap())
        }
        Recorded::Candidate(event) => Recorded::Candidate(
            serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap(),
        ),
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct World {
    plan: PlanRuntime,
    room: RoomRuntime,
    candidate: CandidateRuntime,
}

impl World {
    fn apply(&mut self, event: &Recorded) {
        match event {
            Recorded::Plan(event) => self.plan.apply(event),
            Recorded::Room(event) => self.room.apply(event),
            Recorded::Candidate(event) => self.candidate.apply(event),
        }
    }
}

struct Run {
    rules: ExamRules,
    world: World,
    log: Vec<Recorded>,
    now: Timestamp,
    next_cseq: i64,
}

impl Run {
    fn new() -> Self {
        Self {
            rules: ExamRules::from_spec(&sample_plan()),
            world: World::default(),
            log: Vec::new(),
            now: Timestamp::from_millis(1_000_000),
            next_cseq: 1,
        }
    }

    fn remaining(&self) -> i64 {
        let context = ExamContext {
            rules: &self.rules,
            plan: &self.world.plan,
            room: &self.world.room,
            extra_time_s: 30,
        };
        self.world
            .candidate
            .clock(&context)
            .remaining_millis(self.now)
    }

    fn record(&mut self, events: Vec<Recorded>) -> bool {
        let mut extended = false;
        for event in events {
            extended |= matches!(
                event,
                Recorded::Plan(PlanEvent::Extended { .. })
                    | Recorded::Room(RoomEvent::Extended { .. })
                    | Recorded::Candidate(CandidateEvent::Extended { .. })
            );
            self.log.push(event);
        }
        extended
    }

    /// Runs one op the way the actors do; returns whether it extended time.
    fn step(&mut self, op: &Op) -> bool {
        let now = self.now;
        match op {
            Op::Advance(millis) => {
                self.now = self.now.plus_millis(*millis);
                false
            }
            Op::Plan(command) => {
                let Ok(events) = self.world.plan.handle(command, now) else {
                    return false;
                };
                let mut recorded: Vec<Recorded> =
                    events.iter().cloned().map(Recorded::Plan).collect();
                // The coordinator fans plan starts and ends out to rooms and candidates.
                let starts = events
                    .iter()
                    .any(|e| matches!(e, PlanEvent::Started { .. }));
                let ends = events.iter().any(|e| matches!(e, PlanEvent::Ended { .. }));
                let extended = self.record(std::mem::take(&mut recorded));
                if starts {
                    let room = self
                        .world
                        .room
                        .handle(&RoomCommand::Start, now)
                        .unwrap_or_default();
                    self.record(room.into_iter().map(Recorded::Room).collect());
                    self.candidate_command(&CandidateCommand::Begin);
                }
                if ends {
                    let room = self
                        .world
                        .room
                        .handle(&RoomCommand::End, now)
                        .unwrap_or_default();
                    self.record(room.into_iter().map(Recorded::Room).collect());
                    self.candidate_command(&CandidateCommand::AutoSubmit {
                        reason: super::candidate::SubmitReason::PlanEnded,
                    });
                }
                extended
            }
            Op::Room(command) => {
                let events = self.world.room.handle(command, now).unwrap_or_default();
                self.record(events.into_iter().map(Recorded::Room).collect())
            }
            Op::Candidate(command) => self.candidate_command(command),
            Op::Answer {
                question,
                value,
                cseq_step,
            } => {
                let questions = ["q1", "q2", "q3", "q404"];
                let values = [json!("A"), json!(["A", "C"]), json!("seoul"), Value::Null];
                let cseq = (self.next_cseq + cseq_step).max(0);
                let question_id = QuestionId::parse(questions[*question]).unwrap();
                let context = ExamContext {
                    rules: &self.rules,
                    plan: &self.world.plan,
                    room: &self.world.room,
                    extra_time_s: 30,
                };
                if let Ok(AnswerDecision::Accepted(accepted)) = self.world.candidate.decide_answer(
                    &question_id,
                    &AnswerValue::new(values[*value].clone()),
                    cseq,
                    &context,
                    now,
                ) {
                    self.next_cseq = cseq + 1;
                    let event = accepted.event();
                    self.world.candidate.apply(&event);
                    self.record(vec![Recorded::Candidate(event)]);
                }
                false
            }
        }
    }

    fn candidate_command(&mut self, command: &CandidateCommand) -> bool {
        let context = ExamContext {
            rules: &self.rules,
            plan: &self.world.plan,
            room: &self.world.room,
            extra_time_s: 30,
        };
        let events = self
            .world
            .candidate
            .handle(command, &context, self.now)
            .unwrap_or_default();
        self.record(events.into_iter().map(Recorded::Candidate).collect())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn remaining_time_never_negative_and_grows_only_by_extension(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in &ops {
            let before = run.remaining();
            let extended = run.step(op);
            let after = run.remaining();
            prop_assert!(after >= 0);
            if !extended {
                prop_assert!(after <= before, "{op:?} grew remaining time from {before} to {after}");
            }
        }
    }

    #[test]
    fn replaying_recorded_events_rebuilds_the_state(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        // Replay what the store records (events as JSON) onto fresh state.
        let mut replayed = World::default();
        for event in &run.log {
            replayed.apply(&through_json(event));
        }
        prop_assert_eq!(&replayed, &run.world);

        // The runtimes survive the store's JSON columns (the candidate's
        // sheet is stored apart, in the answers table).
        let mut stored_candidate = run.world.candidate.clone();
        stored_candidate.sheet = Default::default();
        let restored: super::candidate::CandidateRuntime =
            serde_json::from_str(&serde_json::to_string(&stored_candidate).unwrap()).unwrap();
        prop_assert_eq!(restored, stored_candidate);
        let plan: PlanRuntime = serde_json::from_str(&serde_json::to_string(&run.world.plan).unwrap()).unwrap();
        prop_assert_eq!(plan, run.world.plan.clone());
        let room: RoomRuntime = serde_json::from_str(&serde_json::to_string(&run.world.room).unwrap()).unwrap();
        prop_assert_eq!(room, run.world.room.clone());

        // The same commands at the same instants decide the same events.
        let mut again = Run::new();
        for op in &ops {
            again.step(op);
        }
        prop_assert_eq!(&again.world, &run.world);
    }

    #[test]
    fn a_submitted_sheet_never_changes(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        let mut frozen_sheet = None;
        for op in &ops {
            run.step(op);
            if run.world.candidate.state.is_final() {
                let sheet = frozen_sheet.get_or_insert_with(|| run.world.candidate.sheet.clone());
                prop_assert_eq!(&*sheet, &run.world.candidate.sheet);
            }
        }
    }
}

/// A check-in after the late-entry window is refused with the same code
/// whether the room's clock has already marked the seat absent or not.
#[test]
fn a_late_check_in_reads_the_same_before_and_after_the_seat_is_marked_absent() {
    use super::error::DomainError;
    let mut run = Run::new();
    run.world.plan.handle(&PlanCommand::Start, run.now).unwrap();
    run.now = Timestamp::from_millis(run.now.as_millis() + (run.rules.late_entry_s + 1) * 1000);
    let context = ExamContext {
        rules: &run.rules,
        plan: &run.world.plan,
        room: &run.world.room,
        extra_time_s: 0,
    };
    let mut candidate = run.world.candidate.clone();
    let before = candidate.decide(&CandidateCommand::CheckIn, &context, run.now);
    candidate
        .handle(&CandidateCommand::MarkAbsent, &context, run.now)
        .unwrap();
    let after = candidate.decide(&CandidateCommand::CheckIn, &context, run.now);
    assert_eq!(before, Err(DomainError::LateEntryClosed));
    assert_eq!(after, Err(DomainError::LateEntryClosed));
}
