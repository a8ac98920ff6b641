use invigil_actors::domain::AnswerValue;
use invigil_actors::domain::{
    CandidateCommand, CandidateRuntime, CandidateState, ExamContext, ExamRules, PlanCommand,
    PlanId, PlanRuntime, PlanState, RoomRuntime,
};
use invigil_actors::ports::{FencedEntry, Journal, JournalEntry, PlanStore, ResultAnswer};
use invigil_actors::shard::{Fence, ShardId};
use invigil_store::SqlStore;
use serde_json::{Value, json};

use crate::support::{own_everything, plan, t};

crate::conformance!(
    results_list_every_candidate_in_import_order_with_current_answers,
    results_read_a_large_plan_whole,
);

fn answer(
    fence: Fence,
    plan_id: &str,
    candidate: &str,
    question: &str,
    cseq: i64,
    version: i64,
    value: Value,
) -> FencedEntry {
    FencedEntry {
        fence,
        entry: JournalEntry::Answer {
            plan_id: plan_id.parse().unwrap(),
            candidate_id: candidate.parse().unwrap(),
            question_id: question.parse().unwrap(),
            value: AnswerValue::new(value),
            cseq,
            version,
            at: t(cseq * 10),
        },
    }
}

fn current(question: &str, value: Value, version: i64) -> ResultAnswer {
    ResultAnswer {
        question_id: question.parse().unwrap(),
        value,
        version,
    }
}

async fn results_list_every_candidate_in_import_order_with_current_answers(store: &SqlStore) {
    let spec = plan("p1", 2, 2);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    assert!(
        store
            .plan_results(&PlanId::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let fences = own_everything(store, "node-a", t(1)).await;
    let room_fence = |room: usize| fences(ShardId::of_room(&spec.id, &spec.rooms[room].id));

    // cand-0 (room-0) answers q2, then q1 twice (the second supersedes),
    // then clears q3; cand-3 (room-1) answers q3. cand-1 and cand-2 never answer.
    store
        .commit(&[
            answer(room_fence(0), "p1", "cand-0", "q2", 1, 1, json!(["A", "C"])),
            answer(room_fence(0), "p1", "cand-0", "q1", 2, 1, json!("B")),
            answer(
                room_fence(1),
                "p1",
                "cand-3",
                "q3",
                1,
                1,
                json!("서울,\n\"x\""),
            ),
        ])
        .await
        .unwrap();
    store
        .commit(&[
            answer(room_fence(0), "p1", "cand-0", "q1", 3, 2, json!("A")),
            answer(room_fence(0), "p1", "cand-0", "q3", 4, 1, json!("x")),
            answer(room_fence(0), "p1", "cand-0", "q3", 5, 2, Value::Null),
        ])
        .await
        .unwrap();

    // cand-0 checks in late and submits; the plan ends.
    let mut plan_runtime = PlanRuntime::default();
    let mut plan_events = Vec::new();
    for command in [PlanCommand::Start, PlanCommand::End] {
        plan_events.extend(plan_runtime.handle(&command, t(5)).unwrap());
    }
    let rules = ExamRules::without_questions(3_600, 600);
    let room = RoomRuntime::default();
    let running = {
        let mut running = PlanRuntime::default();
        running.handle(&PlanCommand::Start, t(5)).unwrap();
        running
    };
    let context = ExamContext {
        rules: &rules,
        plan: &running,
        room: &room,
        extra_time_s: 0,
    };
    let mut candidate = CandidateRuntime::default();
    let mut events = candidate
        .handle(&CandidateCommand::CheckIn, &context, t(6))
        .unwrap();
    events.extend(
        candidate
            .handle(&CandidateCommand::Submit, &context, t(90))
            .unwrap(),
    );
    let entries: Vec<FencedEntry> = events
        .into_iter()
        .enumerate()
        .map(|(revision, event)| FencedEntry {
            fence: room_fence(0),
            entry: JournalEntry::Candidate {
                plan_id: spec.id.clone(),
                candidate_id: spec.candidates[0].id.clone(),
                revision: revision as i64,
                event,
                runtime: candidate.clone(),
            },
        })
        .collect();
    store.commit(&entries).await.unwrap();
    store
        .save_plan_runtime(
            fences(ShardId::of_plan(&spec.id)),
            &spec.id,
            1,
            &plan_runtime,
            &plan_events,
        )
        .await
        .unwrap();

    let results = store.plan_results(&spec.id).await.unwrap().unwrap();
    assert_eq!(results.plan_id, spec.id);
    assert_eq!(results.title, "Plan p1");
    assert_eq!(results.runtime.state, PlanState::Ended);
    assert_eq!(
        results.questions, spec.questions,
        "with their keys, in order"
    );
    assert_eq!(
        results
            .candidates
            .iter()
            .map(|candidate| candidate.candidate_id.as_str())
            .collect::<Vec<_>>(),
        vec!["cand-0", "cand-1", "cand-2", "cand-3"],
        "import order"
    );
    let first = &results.candidates[0];
    assert_eq!(
        (
            first.reg_no.as_str(),
            first.name.as_str(),
            first.room_id.as_str(),
            first.seat.as_deref()
        ),
        ("R000000", "수험자 0", "room-0", Some("1"))
    );
    assert_eq!(first.state, CandidateState::Submitted);
    assert_eq!(first.submitted_at, Some(t(90)));
    assert_eq!(
        first.answers,
        vec![
            current("q1", json!("A"), 2),
            current("q2", json!(["A", "C"]), 1),
            current("q3", Value::Null, 2),
        ],
        "the current versions, in question order"
    );
    let never = &results.candidates[1];
    assert_eq!(
        (never.state, never.submitted_at, never.answers.len()),
        (CandidateState::Registered, None, 0)
    );
    assert_eq!(
        results.candidates[3].answers,
        vec![current("q3", json!("서울,\n\"x\""), 1)]
    );
}

async fn results_read_a_large_plan_whole(store: &SqlStore) {
    let spec = plan("big", 20, 100);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let fences = own_everything(store, "node-a", t(1)).await;
    let entries: Vec<FencedEntry> = spec
        .candidates
        .iter()
        .flat_map(|candidate| {
            let fence = fences(ShardId::of_room(&spec.id, &candidate.room_id));
            let id = candidate.id.as_str();
            [
                answer(
                    fence,
                    "big",
                    id,
                    "q3",
                    1,
                    1,
                    json!(format!("answer of {id}")),
                ),
                answer(fence, "big", id, "q1", 2, 1, json!("A")),
            ]
        })
        .collect();
    for batch in entries.chunks(1_000) {
        store.commit(batch).await.unwrap();
    }
    let results = store.plan_results(&spec.id).await.unwrap().unwrap();
    assert_eq!(results.candidates.len(), 2_000);
    for (index, candidate) in results.candidates.iter().enumerate() {
        assert_eq!(candidate.candidate_id.as_str(), format!("cand-{index}"));
        assert_eq!(
            candidate.answers,
            vec![
                current("q1", json!("A"), 1),
                current("q3", json!(format!("answer of cand-{index}")), 1),
            ]
        );
    }
}
