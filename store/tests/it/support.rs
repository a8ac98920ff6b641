//! Fresh stores for each test, and a sample plan.

use invigil_actors::domain::{
    CandidateId, CandidateSpec, CredentialHash, PlanId, PlanSettings, PlanSpec, ProctorId,
    ProctorSpec, Question, QuestionId, QuestionKind, RoomId, RoomSpec, Timestamp,
};
use invigil_actors::ports::LeaseStore;
use invigil_actors::shard::{Fence, ShardId};
use invigil_store::{SqlOptions, SqlStore};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

/// The Postgres the tests use; scripts/ensure-services.sh provides it.
pub fn postgres_url() -> String {
    std::env::var("INVIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/invigil_test".to_string())
}

pub struct TestStore {
    pub store: SqlStore,
    cleanup: Cleanup,
}

enum Cleanup {
    Directory(tempfile::TempDir),
    Schema(String),
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let directory = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", directory.path().join("invigil.db").display());
        let store = SqlStore::connect(&SqlOptions::new(url))
            .await
            .expect("sqlite opens");
        store.migrate().await.expect("sqlite migrates");
        Self {
            store,
            cleanup: Cleanup::Directory(directory),
        }
    }

    pub async fn postgres() -> Self {
        let url = postgres_url();
        let schema = format!("test_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|error| {
            panic!("Postgres at {url} is not reachable ({error}); run scripts/ensure-services.sh")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let options = PgConnectOptions::from_str(&url)
            .expect("url")
            .options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connect");
        let store = SqlStore::from_postgres(pool);
        store.migrate().await.expect("postgres migrates");
        Self {
            store,
            cleanup: Cleanup::Schema(schema),
        }
    }

    pub async fn cleanup(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::Directory(directory) => drop(directory),
            Cleanup::Schema(schema) => {
                if let Ok(admin) = sqlx::PgPool::connect(&postgres_url()).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&admin)
                            .await;
                    admin.close().await;
                }
            }
        }
    }
}

pub fn t(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

/// A plan with `rooms` rooms of `per_room` candidates, one proctor per room
/// and three questions of every kind.
pub fn plan(id: &str, rooms: usize, per_room: usize) -> PlanSpec<CredentialHash> {
    let room_id = |room: usize| RoomId::parse(format!("room-{room}")).unwrap();
    PlanSpec {
        id: PlanId::parse(id).unwrap(),
        title: format!("Plan {id}"),
        starts_at: t(1_800_000_000_000),
        duration_s: 3_600,
        settings: PlanSettings::default(),
        questions: vec![
            Question {
                id: QuestionId::parse("q1").unwrap(),
                kind: QuestionKind::Single,
                choices: vec!["A".into(), "B".into()],
                answer: json!("A"),
                points: 2.5,
            },
            Question {
                id: QuestionId::parse("q2").unwrap(),
                kind: QuestionKind::Multi,
                choices: vec!["A".into(), "B".into(), "C".into()],
                answer: json!(["A", "C"]),
                points: 3.0,
            },
            Question {
                id: QuestionId::parse("q3").unwrap(),
                kind: QuestionKind::Text,
                choices: vec![],
                answer: json!("서울"),
                points: 1.0,
            },
        ],
        rooms: (0..rooms)
            .map(|room| RoomSpec {
                id: room_id(room),
                name: format!("Room {room}"),
                capacity: per_room as i64,
            })
            .collect(),
        proctors: (0..rooms)
            .map(|room| ProctorSpec {
                id: ProctorId::parse(format!("proctor-{room}")).unwrap(),
                name: format!("Proctor {room}"),
                login: format!("{id}-proctor-{room}"),
                password: CredentialHash(format!("hash-of-proctor-{room}")),
                room_ids: vec![room_id(room)],
            })
            .collect(),
        candidates: (0..rooms * per_room)
            .map(|index| CandidateSpec {
                id: CandidateId::parse(format!("cand-{index}")).unwrap(),
                reg_no: format!("R{index:06}"),
                name: format!("수험자 {index}"),
                room_id: room_id(index / per_room),
                seat: Some(format!("{}", index % per_room + 1)),
                access_code: CredentialHash(format!("code-hash-{index}")),
                extra_time_s: if index == 0 { 600 } else { 0 },
            })
            .collect(),
    }
}

/// Takes every shard for `node` and returns the fence of `shard`.
pub async fn own_everything(
    store: &SqlStore,
    node: &str,
    now: Timestamp,
) -> impl Fn(ShardId) -> Fence {
    let leases = store
        .acquire_leases(
            node,
            &ShardId::all().collect::<Vec<_>>(),
            std::time::Duration::from_secs(60),
            now,
        )
        .await
        .expect("acquire");
    assert_eq!(leases.len(), 1024);
    move |shard| {
        let lease = leases
            .iter()
            .find(|lease| lease.shard == shard)
            .expect("held");
        Fence {
            shard,
            epoch: lease.epoch,
        }
    }
}
