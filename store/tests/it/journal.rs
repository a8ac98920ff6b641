use invigil_actors::domain::AnswerValue;
use invigil_actors::domain::{
    CandidateCommand, CandidateRuntime, CandidateState, ExamContext, ExamRules, Incident,
    IncidentSource, IncidentStatus, PlanRuntime, QuestionId, RoomRuntime, Severity,
};
use invigil_actors::ports::{
    EntryOutcome, FencedEntry, Journal, JournalEntry, JournaledAnswer, LogEntry, LogKind, PlanStore,
};
use invigil_actors::shard::{Fence, ShardId};
use invigil_store::SqlStore;
use serde_json::json;

use crate::support::{own_everything, plan, t};

crate::conformance!(
    answers_are_stored_once_per_cseq,
    a_cseq_repeated_within_one_batch_is_written_once,
    the_current_answer_keeps_the_highest_version,
    stale_fences_are_rejected_per_entry,
    an_old_epoch_is_rejected_after_a_takeover,
    candidate_transitions_update_the_candidate,
    racing_writers_of_one_candidate_cannot_lose_an_update,
    incidents_and_logs_are_written,
    a_mixed_batch_decides_each_entry_on_its_own,
);

fn answer(
    fence: Fence,
    candidate: &str,
    question: &str,
    cseq: i64,
    version: i64,
    value: serde_json::Value,
) -> FencedEntry {
    FencedEntry {
        fence,
        entry: JournalEntry::Answer {
            plan_id: "p1".parse().unwrap(),
            candidate_id: candidate.parse().unwrap(),
            question_id: question.parse().unwrap(),
            value: AnswerValue::new(value),
            cseq,
            version,
            at: t(cseq * 10),
        },
    }
}

async fn setup(store: &SqlStore) -> Fence {
    let spec = plan("p1", 1, 3);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let fence = own_everything(store, "node-a", t(1)).await;
    fence(ShardId::of_room(&spec.id, &spec.rooms[0].id))
}

async fn answers_are_stored_once_per_cseq(store: &SqlStore) {
    let fence = setup(store).await;
    let first = answer(fence, "cand-0", "q1", 1, 1, json!("A"));
    let outcomes = store
        .commit(&[
            first.clone(),
            answer(fence, "cand-1", "q1", 1, 1, json!("B")),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![EntryOutcome::Written, EntryOutcome::Written]);
    // The same cseq again, alone and inside a batch, is stored once.
    assert_eq!(
        store.commit(std::slice::from_ref(&first)).await.unwrap(),
        vec![EntryOutcome::AlreadyStored]
    );
    let outcomes = store
        .commit(&[answer(fence, "cand-0", "q3", 2, 1, json!("x")), first])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![EntryOutcome::Written, EntryOutcome::AlreadyStored]
    );
    let counts = store
        .plan_counts(&"p1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.answers_saved, 3);
    assert_eq!(
        store
            .journaled_answer(&"p1".parse().unwrap(), &"cand-0".parse().unwrap(), 1)
            .await
            .unwrap(),
        Some(JournaledAnswer {
            question_id: QuestionId::parse("q1").unwrap(),
            version: 1,
            digest: invigil_actors::domain::answer::value_digest(&json!("A")),
        })
    );
    assert_eq!(
        store
            .journaled_answer(&"p1".parse().unwrap(), &"cand-0".parse().unwrap(), 9)
            .await
            .unwrap(),
        None
    );
}

async fn the_current_answer_keeps_the_highest_version(store: &SqlStore) {
    let fence = setup(store).await;
    // Versions 1..3 of one question in one batch, out of order, then an old one later.
    store
        .commit(&[
            answer(fence, "cand-0", "q1", 2, 2, json!("B")),
            answer(fence, "cand-0", "q1", 3, 3, json!("A")),
            answer(fence, "cand-0", "q1", 1, 1, json!("A")),
        ])
        .await
        .unwrap();
    store
        .commit(&[answer(fence, "cand-0", "q2", 4, 1, json!(["A"]))])
        .await
        .unwrap();
    let current: Vec<(String, String, i64, i64)> = current_answers(store).await;
    assert_eq!(
        current,
        vec![
            ("q1".into(), "\"A\"".into(), 3, 3),
            ("q2".into(), "[\"A\"]".into(), 1, 4)
        ]
    );
}

async fn current_answers(store: &SqlStore) -> Vec<(String, String, i64, i64)> {
    let sql = "SELECT question_id, value, version, cseq FROM answers WHERE candidate_id = 'cand-0' ORDER BY question_id";
    match &store.backend_for_tests() {
        invigil_store::Backend::Postgres(pool) => {
            sqlx::query_as(sql).fetch_all(pool).await.unwrap()
        }
        invigil_store::Backend::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

async fn stale_fences_are_rejected_per_entry(store: &SqlStore) {
    let fence = setup(store).await;
    let stale = Fence {
        epoch: fence.epoch + 7,
        ..fence
    };
    let outcomes = store
        .commit(&[
            answer(stale, "cand-0", "q1", 1, 1, json!("A")),
            answer(fence, "cand-1", "q1", 1, 1, json!("A")),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![EntryOutcome::StaleFence, EntryOutcome::Written]
    );
    assert_eq!(
        store
            .journaled_answer(&"p1".parse().unwrap(), &"cand-0".parse().unwrap(), 1)
            .await
            .unwrap(),
        None
    );
}

async fn candidate_transitions_update_the_candidate(store: &SqlStore) {
    let fence = setup(store).await;
    let mut plan_runtime = PlanRuntime::default();
    plan_runtime
        .handle(&invigil_actors::domain::PlanCommand::Start, t(5))
        .unwrap();
    let rules = ExamRules::without_questions(3_600, 600);
    let room = RoomRuntime::default();
    let context = ExamContext {
        rules: &rules,
        plan: &plan_runtime,
        room: &room,
        extra_time_s: 0,
    };
    let mut runtime = CandidateRuntime::default();
    let events = runtime
        .handle(&CandidateCommand::CheckIn, &context, t(6))
        .unwrap();
    assert_eq!(events.len(), 2, "late check-in also begins");
    let entries: Vec<FencedEntry> = events
        .into_iter()
        .enumerate()
        .map(|(revision, event)| FencedEntry {
            fence,
            entry: JournalEntry::Candidate {
                plan_id: "p1".parse().unwrap(),
                candidate_id: "cand-2".parse().unwrap(),
                revision: revision as i64,
                event,
                runtime: runtime.clone(),
            },
        })
        .collect();
    assert_eq!(
        store.commit(&entries).await.unwrap(),
        vec![EntryOutcome::Written; 2]
    );
    let login = store
        .candidate_login(&"p1".parse().unwrap(), "R000002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(login.runtime.state, CandidateState::Testing);
    assert_eq!(login.runtime.checked_in_at, Some(t(6)));
    let counts = store
        .plan_counts(&"p1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counts.rooms[0]
            .candidates_by_state
            .get(&CandidateState::Testing),
        Some(&1)
    );
}

async fn incidents_and_logs_are_written(store: &SqlStore) {
    let fence = setup(store).await;
    let mut incident = Incident {
        id: "inc-1".into(),
        plan_id: "p1".parse().unwrap(),
        room_id: "room-0".parse().unwrap(),
        candidate_id: Some("cand-0".parse().unwrap()),
        kind: "copy_paste".into(),
        source: IncidentSource::Client,
        severity: Severity::High,
        status: IncidentStatus::Open,
        note: None,
        action: None,
        created_at: t(1),
        resolved_at: None,
        resolved_by: None,
    };
    let log = LogEntry {
        plan_id: "p1".parse().unwrap(),
        kind: LogKind::Candidate,
        subject: Some("cand-0".into()),
        room_id: Some("room-0".parse().unwrap()),
        message: "focus lost".into(),
        detail: json!({"n": 1}),
        at: t(1),
    };
    store
        .commit(&[
            FencedEntry {
                fence,
                entry: JournalEntry::Incident(incident.clone()),
            },
            FencedEntry {
                fence,
                entry: JournalEntry::Log(log),
            },
        ])
        .await
        .unwrap();
    let counts = store
        .plan_counts(&"p1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (counts.incidents_open, counts.rooms[0].incidents_open),
        (1, 1)
    );
    incident
        .resolve(
            IncidentStatus::Dismissed,
            "proctor-0".parse().unwrap(),
            None,
            t(2),
        )
        .unwrap();
    store
        .commit(&[FencedEntry {
            fence,
            entry: JournalEntry::Incident(incident),
        }])
        .await
        .unwrap();
    let counts = store
        .plan_counts(&"p1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.incidents_open, 0);
}

async fn a_cseq_repeated_within_one_batch_is_written_once(store: &SqlStore) {
    let fence = setup(store).await;
    let outcomes = store
        .commit(&[
            answer(fence, "cand-0", "q1", 1, 1, json!("A")),
            answer(fence, "cand-0", "q1", 1, 2, json!("B")),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![EntryOutcome::Written, EntryOutcome::AlreadyStored]
    );
    // The journal and the current answer agree on the one that was written.
    assert_eq!(
        current_answers(store).await,
        vec![("q1".into(), "\"A\"".into(), 1, 1)]
    );
}

async fn an_old_epoch_is_rejected_after_a_takeover(store: &SqlStore) {
    use invigil_actors::ports::LeaseStore;
    let spec = plan("p1", 1, 3);
    store.import_plan(&spec, "d", t(1)).await.unwrap();
    let shard = ShardId::of_room(&spec.id, &spec.rooms[0].id);
    let ttl = std::time::Duration::from_secs(10);
    let old = store
        .acquire_leases("node-a", &[shard], ttl, t(1_000))
        .await
        .unwrap()[0]
        .clone();
    let new = store
        .acquire_leases("node-b", &[shard], ttl, t(20_000))
        .await
        .unwrap()[0]
        .clone();
    assert!(new.epoch > old.epoch);
    let old_fence = Fence {
        shard,
        epoch: old.epoch,
    };
    let new_fence = Fence {
        shard,
        epoch: new.epoch,
    };
    let outcomes = store
        .commit(&[
            answer(old_fence, "cand-0", "q1", 1, 1, json!("A")),
            answer(new_fence, "cand-1", "q1", 1, 1, json!("B")),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![EntryOutcome::StaleFence, EntryOutcome::Written]
    );
    assert_eq!(
        store
            .journaled_answer(&"p1".parse().unwrap(), &"cand-0".parse().unwrap(), 1)
            .await
            .unwrap(),
        None
    );
}

async fn racing_writers_of_one_candidate_cannot_lose_an_update(store: &SqlStore) {
    let fence = setup(store).await;
    let open = {
        let mut plan = PlanRuntime::default();
        plan.handle(&invigil_actors::domain::PlanCommand::Open, t(5))
            .unwrap();
        plan
    };
    let rules = ExamRules::without_questions(3_600, 600);
    let room = RoomRuntime::default();
    let context = ExamContext {
        rules: &rules,
        plan: &open,
        room: &room,
        extra_time_s: 0,
    };
    let entry = |revision: i64, command: CandidateCommand, base: &CandidateRuntime| {
        let mut runtime = base.clone();
        let event = runtime.handle(&command, &context, t(6)).unwrap().remove(0);
        FencedEntry {
            fence,
            entry: JournalEntry::Candidate {
                plan_id: "p1".parse().unwrap(),
                candidate_id: "cand-0".parse().unwrap(),
                revision,
                event,
                runtime,
            },
        }
    };
    // Two writers read the candidate at revision 0 and decide apart.
    let registered = CandidateRuntime::default();
    let check_in = entry(0, CandidateCommand::CheckIn, &registered);
    let absent = entry(0, CandidateCommand::MarkAbsent, &registered);
    assert_eq!(
        store.commit(std::slice::from_ref(&check_in)).await.unwrap(),
        vec![EntryOutcome::Written]
    );
    assert_eq!(
        store.commit(std::slice::from_ref(&absent)).await.unwrap(),
        vec![EntryOutcome::Conflict]
    );
    let login = store
        .candidate_login(&"p1".parse().unwrap(), "R000000")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (login.runtime.state, login.revision),
        (CandidateState::CheckedIn, 1)
    );
    // A chain whose second entry skips a revision: only the first is written.
    let checked_in = login.runtime.clone();
    let warn = entry(1, CandidateCommand::Warn { reason: None }, &checked_in);
    let skipping = entry(3, CandidateCommand::Warn { reason: None }, &checked_in);
    assert_eq!(
        store.commit(&[warn, skipping]).await.unwrap(),
        vec![EntryOutcome::Written, EntryOutcome::Conflict]
    );
    let history: i64 = match store.backend_for_tests() {
        invigil_store::Backend::Postgres(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM transitions WHERE entity_id = 'cand-0'")
                .fetch_one(pool)
                .await
                .unwrap()
        }
        invigil_store::Backend::Sqlite(pool) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM transitions WHERE entity_id = 'cand-0'")
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(history, 2, "a refused entry leaves no transition behind");
}

/// Postgres writes a batch of answers as one statement; its fence read must
/// still hold a takeover back (and see it once it commits), as the
/// multi-statement transaction does.
#[tokio::test]
async fn postgres_an_answer_batch_waits_for_a_takeover_in_flight_and_sees_it() {
    let backend = crate::support::TestStore::postgres().await;
    let store = backend.store.clone();
    let fence = setup(&store).await;
    let invigil_store::Backend::Postgres(pool) = store.backend_for_tests().clone() else {
        unreachable!("a Postgres store")
    };
    // A takeover in progress: the epoch is bumped but not yet committed.
    let mut takeover = pool.begin().await.unwrap();
    sqlx::query("UPDATE shard_lease SET epoch = epoch + 1 WHERE shard = $1")
        .bind(i64::from(fence.shard.get()))
        .execute(&mut *takeover)
        .await
        .unwrap();
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .commit(&[answer(fence, "cand-0", "q1", 1, 1, json!("A"))])
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the answer batch waits for the takeover's lease row"
    );
    takeover.commit().await.unwrap();
    assert_eq!(
        writer.await.unwrap().unwrap(),
        vec![EntryOutcome::StaleFence],
        "the batch sees the epoch the takeover committed"
    );
    assert_eq!(current_answers(&store).await, vec![]);
    // And the other way round: a batch under the new epoch is written.
    let fresh = Fence {
        epoch: fence.epoch + 1,
        ..fence
    };
    assert_eq!(
        store
            .commit(&[answer(fresh, "cand-0", "q1", 1, 1, json!("A"))])
            .await
            .unwrap(),
        vec![EntryOutcome::Written]
    );
    backend.cleanup().await;
}

/// One text column of a query, on either backend.
async fn texts(store: &SqlStore, sql: &'static str) -> Vec<String> {
    match store.backend_for_tests() {
        invigil_store::Backend::Postgres(pool) => {
            sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
        }
        invigil_store::Backend::Sqlite(pool) => {
            sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
        }
    }
}

/// A batch carrying every kind of entry, some under a stale fence and one
/// that breaks its chain: each entry gets its own outcome, and only what was
/// written leaves a trace (Postgres writes such a batch as one statement,
/// SQLite as a transaction of several).
async fn a_mixed_batch_decides_each_entry_on_its_own(store: &SqlStore) {
    let fence = setup(store).await;
    let stale = Fence {
        epoch: fence.epoch + 3,
        ..fence
    };
    let mut plan_runtime = PlanRuntime::default();
    plan_runtime
        .handle(&invigil_actors::domain::PlanCommand::Start, t(5))
        .unwrap();
    let rules = ExamRules::without_questions(3_600, 600);
    let room_before = RoomRuntime::default();
    let context = ExamContext {
        rules: &rules,
        plan: &plan_runtime,
        room: &room_before,
        extra_time_s: 0,
    };
    let candidate =
        |fence: Fence, id: &str, revision: i64, runtime: &CandidateRuntime, event| FencedEntry {
            fence,
            entry: JournalEntry::Candidate {
                plan_id: "p1".parse().unwrap(),
                candidate_id: id.parse().unwrap(),
                revision,
                event,
                runtime: runtime.clone(),
            },
        };
    // cand-2 checks in late, which also begins its exam: a chain of two.
    let mut runtime = CandidateRuntime::default();
    let events = runtime
        .handle(&CandidateCommand::CheckIn, &context, t(6))
        .unwrap();
    let (checked_in, began) = (events[0].clone(), events[1].clone());
    // cand-1: decided on revision 4, but the row is at 0.
    let mut other = CandidateRuntime::default();
    let conflicting = other
        .handle(&CandidateCommand::CheckIn, &context, t(6))
        .unwrap()
        .remove(0);
    // cand-0: under a stale fence.
    let mut third = CandidateRuntime::default();
    let fenced_out = third
        .handle(&CandidateCommand::CheckIn, &context, t(6))
        .unwrap()
        .remove(0);
    let mut room = RoomRuntime::default();
    let started = room
        .handle(&invigil_actors::domain::RoomCommand::Start, t(5))
        .unwrap()
        .remove(0);
    let incident = |id: &str| Incident {
        id: id.into(),
        plan_id: "p1".parse().unwrap(),
        room_id: "room-0".parse().unwrap(),
        candidate_id: None,
        kind: "focus".into(),
        source: IncidentSource::Client,
        severity: Severity::Low,
        status: IncidentStatus::Open,
        note: Some("n".into()),
        action: None,
        created_at: t(7),
        resolved_at: None,
        resolved_by: None,
    };
    let log = |message: &str| LogEntry {
        plan_id: "p1".parse().unwrap(),
        kind: LogKind::Proctor,
        subject: None,
        room_id: Some("room-0".parse().unwrap()),
        message: message.into(),
        detail: json!({}),
        at: t(8),
    };
    let fenced_log = |fence: Fence, message: &str| FencedEntry {
        fence,
        entry: JournalEntry::Log(log(message)),
    };
    let fenced_incident = |fence: Fence, id: &str| FencedEntry {
        fence,
        entry: JournalEntry::Incident(incident(id)),
    };
    let batch = vec![
        answer(fence, "cand-0", "q1", 1, 1, json!("A")),
        candidate(fence, "cand-2", 0, &runtime, checked_in),
        fenced_log(fence, "first"),
        answer(stale, "cand-1", "q1", 1, 1, json!("B")),
        candidate(fence, "cand-1", 4, &other, conflicting),
        candidate(stale, "cand-0", 0, &third, fenced_out),
        FencedEntry {
            fence,
            entry: JournalEntry::Room {
                plan_id: "p1".parse().unwrap(),
                room_id: "room-0".parse().unwrap(),
                revision: 0,
                event: started,
                runtime: room.clone(),
            },
        },
        candidate(fence, "cand-2", 1, &runtime, began),
        fenced_incident(fence, "inc-live"),
        fenced_incident(stale, "inc-stale"),
        fenced_log(fence, "second"),
        fenced_log(stale, "stale"),
        // A repeat of the first answer's cseq.
        answer(fence, "cand-0", "q1", 1, 1, json!("A")),
    ];
    use EntryOutcome::{AlreadyStored, Conflict, StaleFence, Written};
    assert_eq!(
        store.commit(&batch).await.unwrap(),
        vec![
            Written,
            Written,
            Written,
            StaleFence,
            Conflict,
            StaleFence,
            Written,
            Written,
            Written,
            StaleFence,
            Written,
            StaleFence,
            AlreadyStored,
        ]
    );
    // Only the written entries left rows, transitions in the batch's order.
    assert_eq!(
        texts(
            store,
            "SELECT entity_id || ':' || event FROM transitions ORDER BY id"
        )
        .await,
        vec![
            "cand-2:checked_in".to_owned(),
            "cand-2:began".to_owned(),
            "room-0:started".to_owned(),
        ]
    );
    assert_eq!(
        texts(
            store,
            "SELECT id || ':' || state || ':' || revision FROM candidates ORDER BY id"
        )
        .await,
        vec![
            "cand-0:registered:0".to_owned(),
            "cand-1:registered:0".to_owned(),
            "cand-2:testing:2".to_owned(),
        ]
    );
    assert_eq!(
        texts(store, "SELECT state || ':' || revision FROM rooms").await,
        vec!["in_progress:1".to_owned()]
    );
    assert_eq!(
        texts(store, "SELECT message FROM logs ORDER BY id").await,
        vec!["first".to_owned(), "second".to_owned()]
    );
    assert_eq!(
        texts(store, "SELECT id FROM incidents").await,
        vec!["inc-live".to_owned()]
    );
    assert_eq!(
        texts(store, "SELECT candidate_id || ':' || value FROM answers").await,
        vec!["cand-0:\"A\"".to_owned()]
    );
    // A later batch repeating a stored cseq among other entries: the repeat
    // is reported, the rest written (Postgres sends such a batch again in
    // the form that tolerates repeats).
    assert_eq!(
        store
            .commit(&[
                fenced_log(fence, "third"),
                answer(fence, "cand-0", "q1", 1, 1, json!("A")),
                answer(fence, "cand-1", "q2", 2, 1, json!("C")),
            ])
            .await
            .unwrap(),
        vec![Written, AlreadyStored, Written]
    );
    assert_eq!(
        texts(store, "SELECT message FROM logs ORDER BY id").await,
        vec!["first".to_owned(), "second".to_owned(), "third".to_owned()]
    );
    assert_eq!(
        texts(
            store,
            "SELECT candidate_id || ':' || value FROM answers ORDER BY candidate_id"
        )
        .await,
        vec!["cand-0:\"A\"".to_owned(), "cand-1:\"C\"".to_owned()]
    );
}
