use invigil_actors::domain::AnswerValue;
use invigil_actors::domain::{
    CandidateSpec, CandidateState, PlanCommand, PlanId, PlanRuntime, PlanSpec, PlanState,
    ProctorSpec,
};
use invigil_actors::ports::{
    FencedEntry, FencedError, ImportOutcome, Journal, JournalEntry, PlanStore, Redacted,
};
use invigil_actors::shard::ShardId;
use invigil_store::SqlStore;

use crate::support::{own_everything, plan, t};

crate::conformance!(
    import_creates_then_is_idempotent_then_replaces,
    import_refuses_a_started_plan,
    replacing_a_plan_removes_its_journal,
    import_is_one_transaction,
    import_handles_many_candidates,
    load_plan_returns_the_content_without_secrets,
    plan_runtime_saves_are_fenced_and_optimistic,
    candidate_login_reads_one_row,
    proctor_logins_span_plans_but_not_finalized_ones,
    plan_counts_group_by_room_and_state,
    active_plans_include_ended_ones_until_every_candidate_is_done,
);

fn redacted(spec: PlanSpec<invigil_actors::domain::CredentialHash>) -> PlanSpec<Redacted> {
    spec.map_secrets::<_, ()>(|_| Ok(Redacted), |_| Ok(Redacted))
        .unwrap()
}

async fn import_creates_then_is_idempotent_then_replaces(store: &SqlStore) {
    let first = plan("p1", 2, 3);
    assert_eq!(
        store.import_plan(&first, "digest-1", t(1)).await.unwrap(),
        ImportOutcome::Created
    );
    assert_eq!(
        store.import_plan(&first, "digest-1", t(2)).await.unwrap(),
        ImportOutcome::Unchanged
    );
    let mut second = plan("p1", 1, 2);
    second.title = "Renamed".into();
    assert_eq!(
        store.import_plan(&second, "digest-2", t(3)).await.unwrap(),
        ImportOutcome::Replaced
    );
    let stored = store.load_plan(&second.id).await.unwrap().unwrap();
    assert_eq!(stored.spec, redacted(second));
    assert_eq!(
        store.plan_digest(&stored.spec.id).await.unwrap(),
        Some(("digest-2".into(), PlanState::Scheduled))
    );
}

/// The journal has no foreign key to candidates: replacing a plan deletes its
/// journal rows itself, and leaves another plan's alone.
async fn replacing_a_plan_removes_its_journal(store: &SqlStore) {
    let first = plan("p1", 1, 2);
    let other = plan("p2", 1, 2);
    store.import_plan(&first, "d1", t(1)).await.unwrap();
    store.import_plan(&other, "d1", t(1)).await.unwrap();
    let fence = own_everything(store, "node-a", t(1)).await;
    let entries: Vec<FencedEntry> = [&first, &other]
        .into_iter()
        .map(|spec| FencedEntry {
            fence: fence(ShardId::of_room(&spec.id, &spec.rooms[0].id)),
            entry: JournalEntry::Answer {
                plan_id: spec.id.clone(),
                candidate_id: spec.candidates[0].id.clone(),
                question_id: spec.questions[0].id.clone(),
                value: AnswerValue::new(serde_json::json!("A")),
                cseq: 1,
                version: 1,
                at: t(2),
            },
        })
        .collect();
    store.commit(&entries).await.unwrap();
    let saved = |id: &'static str| async move {
        let id = PlanId::parse(id).unwrap();
        store.plan_counts(&id).await.unwrap().unwrap().answers_saved
    };
    assert_eq!((saved("p1").await, saved("p2").await), (1, 1));

    assert_eq!(
        store.import_plan(&first, "d2", t(3)).await.unwrap(),
        ImportOutcome::Replaced
    );
    assert_eq!((saved("p1").await, saved("p2").await), (0, 1));
    assert_eq!(
        store
            .journaled_answer(&first.id, &first.candidates[0].id, 1)
            .await
            .unwrap(),
        None
    );
}

async fn import_refuses_a_started_plan(store: &SqlStore) {
    let spec = plan("p1", 1, 2);
    store.import_plan(&spec, "d1", t(1)).await.unwrap();
    let fence = own_everything(store, "node-a", t(1)).await;
    let current = store.plan_runtime(&spec.id).await.unwrap().unwrap();
    let mut runtime = current.runtime;
    let events = runtime.handle(&PlanCommand::Start, t(5)).unwrap();
    store
        .save_plan_runtime(
            fence(ShardId::of_plan(&spec.id)),
            &spec.id,
            current.revision,
            &runtime,
            &events,
        )
        .await
        .unwrap();
    assert_eq!(
        store.import_plan(&spec, "d2", t(6)).await.unwrap(),
        ImportOutcome::Refused(PlanState::InProgress)
    );
    // A retry of the exact same import still answers "unchanged".
    assert_eq!(
        store.import_plan(&spec, "d1", t(7)).await.unwrap(),
        ImportOutcome::Unchanged
    );
}

async fn import_is_one_transaction(store: &SqlStore) {
    let mut broken = plan("p1", 2, 3);
    // Validation normally catches this; the database must still not keep half a plan.
    broken.candidates[5].id = broken.candidates[0].id.clone();
    assert!(store.import_plan(&broken, "d1", t(1)).await.is_err());
    assert!(store.load_plan(&broken.id).await.unwrap().is_none());
    assert!(
        store
            .candidate_login(&broken.id, "R000000")
            .await
            .unwrap()
            .is_none()
    );
}

async fn import_handles_many_candidates(store: &SqlStore) {
    let big = plan("big", 50, 100);
    assert_eq!(
        store.import_plan(&big, "d", t(1)).await.unwrap(),
        ImportOutcome::Created
    );
    let stored = store.load_plan(&big.id).await.unwrap().unwrap();
    assert_eq!(stored.spec.candidates.len(), 5_000);
    assert_eq!(stored.spec.candidates[4_321].reg_no, "R004321");
    assert_eq!(stored.spec.rooms.len(), 50);
}

async fn load_plan_returns_the_content_without_secrets(store: &SqlStore) {
    let spec = plan("p1", 2, 2);
    store.import_plan(&spec, "d", t(10)).await.unwrap();
    let stored = store.load_plan(&spec.id).await.unwrap().unwrap();
    assert_eq!(stored.runtime, PlanRuntime::default());
    assert_eq!(stored.revision, 1);
    assert_eq!(stored.created_at, t(10));
    // Secrets are `Redacted` by type; the order and every other field survive.
    let proctor: &ProctorSpec<Redacted> = &stored.spec.proctors[1];
    assert_eq!(proctor.login, "p1-proctor-1");
    let candidate: &CandidateSpec<Redacted> = &stored.spec.candidates[0];
    assert_eq!(
        (candidate.extra_time_s, candidate.seat.as_deref()),
        (600, Some("1"))
    );
    assert_eq!(stored.spec.questions[0].points, 2.5);
    assert!(
        store
            .load_plan(&PlanId::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn plan_runtime_saves_are_fenced_and_optimistic(store: &SqlStore) {
    let spec = plan("p1", 1, 1);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let fence = own_everything(store, "node-a", t(1)).await(ShardId::of_plan(&spec.id));
    let current = store.plan_runtime(&spec.id).await.unwrap().unwrap();
    let mut runtime = current.runtime.clone();
    let events = runtime.handle(&PlanCommand::Open, t(2)).unwrap();

    let stale = invigil_actors::shard::Fence {
        epoch: fence.epoch - 1,
        ..fence
    };
    assert_eq!(
        store
            .save_plan_runtime(stale, &spec.id, current.revision, &runtime, &events)
            .await,
        Err(FencedError::StaleFence(stale))
    );
    let revision = store
        .save_plan_runtime(fence, &spec.id, current.revision, &runtime, &events)
        .await
        .unwrap();
    assert_eq!(revision, current.revision + 1);
    // A writer that read the old revision loses.
    assert!(matches!(
        store
            .save_plan_runtime(fence, &spec.id, current.revision, &runtime, &events)
            .await,
        Err(FencedError::Store(
            invigil_actors::error::StoreError::Conflict(_)
        ))
    ));
    let reread = store.plan_runtime(&spec.id).await.unwrap().unwrap();
    assert_eq!(
        (reread.runtime.state, reread.revision),
        (PlanState::Open, revision)
    );
}

async fn candidate_login_reads_one_row(store: &SqlStore) {
    let spec = plan("p1", 2, 2);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let login = store
        .candidate_login(&spec.id, "R000003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.candidate_id.as_str(), "cand-3");
    assert_eq!(login.room_id.as_str(), "room-1");
    assert_eq!(login.access_code_hash.0, "code-hash-3");
    assert_eq!((login.duration_s, login.late_entry_s), (3_600, 600));
    assert_eq!(login.runtime.state, CandidateState::Registered);
    assert!(
        store
            .candidate_login(&spec.id, "R999999")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .candidate_login(&PlanId::parse("other").unwrap(), "R000003")
            .await
            .unwrap()
            .is_none()
    );
}

async fn proctor_logins_span_plans_but_not_finalized_ones(store: &SqlStore) {
    let mut first = plan("p1", 2, 1);
    let mut second = plan("p2", 1, 1);
    first.proctors[1].login = "shared".into();
    second.proctors[0].login = "shared".into();
    store.import_plan(&first, "d1", t(1)).await.unwrap();
    store.import_plan(&second, "d2", t(1)).await.unwrap();
    let mut logins = store.proctor_logins("shared").await.unwrap();
    logins.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0].proctor_id.as_str(), "proctor-1");
    assert_eq!(
        logins[0]
            .room_ids
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>(),
        vec!["room-1"]
    );
    assert_eq!(logins[0].password_hash.0, "hash-of-proctor-1");

    let fence = own_everything(store, "n", t(1)).await(ShardId::of_plan(&second.id));
    let mut runtime = PlanRuntime::default();
    let mut events = Vec::new();
    for command in [PlanCommand::Start, PlanCommand::End, PlanCommand::Finalize] {
        events.extend(runtime.handle(&command, t(2)).unwrap());
    }
    store
        .save_plan_runtime(fence, &second.id, 1, &runtime, &events)
        .await
        .unwrap();
    let logins = store.proctor_logins("shared").await.unwrap();
    assert_eq!(
        logins
            .iter()
            .map(|l| l.plan_id.as_str())
            .collect::<Vec<_>>(),
        vec!["p1"]
    );
    assert!(store.proctor_logins("nobody").await.unwrap().is_empty());
}

async fn plan_counts_group_by_room_and_state(store: &SqlStore) {
    let spec = plan("p1", 2, 3);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let counts = store.plan_counts(&spec.id).await.unwrap().unwrap();
    assert_eq!(counts.rooms.len(), 2);
    assert_eq!(
        counts.rooms[1]
            .candidates_by_state
            .get(&CandidateState::Registered),
        Some(&3)
    );
    assert_eq!((counts.incidents_open, counts.answers_saved), (0, 0));
    assert_eq!(counts.runtime.state, PlanState::Scheduled);
    assert!(
        store
            .plan_counts(&PlanId::parse("nope").unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

async fn active_plans_include_ended_ones_until_every_candidate_is_done(store: &SqlStore) {
    use invigil_actors::domain::{
        CandidateCommand, CandidateRuntime, ExamContext, ExamRules, RoomRuntime,
    };
    use invigil_actors::ports::{FencedEntry, Journal, JournalEntry};

    let spec = plan("p1", 1, 1);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let fences = own_everything(store, "node-a", t(1)).await;
    let fence = fences(ShardId::of_plan(&spec.id));
    assert!(store.active_plans().await.unwrap().is_empty(), "scheduled");

    // Open, start, end: the plan row moves; the candidate stays registered.
    let mut revision = store
        .plan_runtime(&spec.id)
        .await
        .unwrap()
        .unwrap()
        .revision;
    let mut runtime = PlanRuntime::default();
    for (command, at) in [
        (PlanCommand::Open, 2),
        (PlanCommand::Start, 3),
        (PlanCommand::End, 4),
    ] {
        let events = runtime.handle(&command, t(at)).unwrap();
        revision = store
            .save_plan_runtime(fence, &spec.id, revision, &runtime, &events)
            .await
            .unwrap();
        assert_eq!(store.active_plans().await.unwrap(), vec![spec.id.clone()]);
    }

    // The end reaches the candidate (absent): nothing is left to do.
    let rules = ExamRules::without_questions(3_600, 600);
    let room = RoomRuntime::default();
    let context = ExamContext {
        rules: &rules,
        plan: &runtime,
        room: &room,
        extra_time_s: 0,
    };
    let mut candidate = CandidateRuntime::default();
    let event = candidate
        .handle(&CandidateCommand::MarkAbsent, &context, t(5))
        .unwrap()
        .remove(0);
    let candidate_id = spec.candidates[0].id.clone();
    let room_fence = fences(ShardId::of_room(&spec.id, &spec.candidates[0].room_id));
    store
        .commit(&[FencedEntry {
            fence: room_fence,
            entry: JournalEntry::Candidate {
                plan_id: spec.id.clone(),
                candidate_id,
                revision: 0,
                event,
                runtime: candidate,
            },
        }])
        .await
        .unwrap();
    assert!(
        store.active_plans().await.unwrap().is_empty(),
        "ended and settled"
    );
}
