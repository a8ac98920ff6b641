//! `TestApp`: a node on port 0 with a fresh database, and a typed client.

use std::sync::Arc;

use invigil_actors::domain::Timestamp;
use invigil_actors::ports::ManualClock;
use invigil_node::Application;
use invigil_node::config::{Config, Secret};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const API_KEY: &str = "test-admin-key-0123456789";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Cleanup {
    Directory(#[allow(dead_code)] tempfile::TempDir),
    Schema(String),
}

pub struct TestApp {
    pub base: String,
    database_url: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    cleanup: Cleanup,
}

fn postgres_url() -> String {
    std::env::var("INVIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/invigil_test".to_string())
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// [`Self::spawn`] with the test's own settings over the defaults.
    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite:{}", directory.path().join("invigil.db").display());
                (url, Cleanup::Directory(directory))
            }
            Backend::Postgres => {
                let admin_url = postgres_url();
                let schema = format!("it_{}", uuid::Uuid::now_v7().simple());
                let admin = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|error| {
                    panic!("Postgres at {admin_url} is not reachable ({error}); run scripts/ensure-services.sh")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .expect("create schema");
                admin.close().await;
                let separator = if admin_url.contains('?') { '&' } else { '?' };
                (
                    format!("{admin_url}{separator}options=-c%20search_path%3D{schema}"),
                    Cleanup::Schema(schema),
                )
            }
        };
        let database_url = url.clone();
        let mut config = Config::default();
        config.node.id = "test-node".into();
        config.node.listen = "127.0.0.1:0".parse().expect("addr");
        config.node.shutdown_grace_s = 2;
        config.store.url = Secret::new(url);
        config.store.max_connections = 4;
        config.auth.api_keys = vec![Secret::new(API_KEY)];
        config.auth.jwt_secret = Secret::new("test-jwt-secret-0123456789-0123456789");
        config.auth.access_code_secret = Secret::new("test-code-secret-0123456789-012345678");
        // Cheap argon2 and long leases: tests move the clock by hours.
        config.auth.argon2_memory_kib = 64;
        config.auth.argon2_iterations = 1;
        config.auth.login_max_failures = 5;
        config.shards.lease_ttl_ms = 7 * 24 * 3600 * 1000;
        config.journal.linger_ms = 1;
        config.limits.import_body_bytes = 4 * 1024 * 1024;
        config.limits.ws_hello_timeout_ms = 500;
        config.limits.ws_message_bytes = 64 * 1024;
        config.live.tick_ms = 50;
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(
            chrono::Utc::now().timestamp_millis(),
        )));
        let application = Application::build_with_clock(config, clock.clone())
            .await
            .expect("node builds");
        let base = format!("http://{}", application.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            database_url,
            http: reqwest::Client::new(),
            clock,
            stop,
            task,
            cleanup,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("node task")
            .expect("node stops cleanly");
        if let Cleanup::Schema(schema) = self.cleanup
            && let Ok(admin) = sqlx::PgPool::connect(&postgres_url()).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }

    /// A second connection to the node's database, to check what is durable.
    pub async fn store(&self) -> invigil_store::SqlStore {
        invigil_store::SqlStore::connect(&invigil_store::SqlOptions::new(self.database_url.clone()))
            .await
            .expect("the test database opens")
    }

    /// A raw Postgres pool on the test's own schema, to inject faults.
    pub async fn postgres(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.database_url)
            .await
            .expect("the test schema opens")
    }

    /// Log lines of a kind in the node's database: (message, subject).
    pub async fn logs(&self, plan_id: &str, kind: &str) -> Vec<(String, Option<String>)> {
        let query =
            "SELECT message, subject FROM logs WHERE plan_id = $1 AND kind = $2 ORDER BY id";
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url)
                .await
                .expect("the test database opens");
            let rows = sqlx::query_as(query)
                .bind(plan_id)
                .bind(kind)
                .fetch_all(&pool)
                .await
                .expect("logs readable");
            pool.close().await;
            rows
        } else {
            let pool = self.postgres().await;
            let rows = sqlx::query_as(query)
                .bind(plan_id)
                .bind(kind)
                .fetch_all(&pool)
                .await
                .expect("logs readable");
            pool.close().await;
            rows
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn put_plan(&self, plan_id: &str, body: &Value) -> Response {
        self.http
            .put(self.url(&format!("/api/v1/admin/plans/{plan_id}")))
            .header("X-Api-Key", API_KEY)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .header("X-Api-Key", API_KEY)
            .send()
            .await
            .expect("request")
    }

    pub async fn command(&self, plan_id: &str, body: Value) -> Response {
        self.http
            .post(self.url(&format!("/api/v1/admin/plans/{plan_id}/commands")))
            .header("X-Api-Key", API_KEY)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn login_candidate(
        &self,
        plan_id: &str,
        reg_no: &str,
        access_code: &str,
    ) -> Response {
        self.http
            .post(self.url("/api/v1/auth/candidate"))
            .json(&json!({"plan_id": plan_id, "reg_no": reg_no, "access_code": access_code}))
            .send()
            .await
            .expect("request")
    }

    pub async fn login_proctor(&self, login: &str, password: &str) -> Response {
        self.http
            .post(self.url("/api/v1/auth/proctor"))
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("request")
    }

    pub async fn bearer_get(&self, path: &str, token: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn problem(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for expected code {code}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], format!("urn:invigil:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Polls `check` every 50 ms until it returns something or `timeout` passes.
pub async fn wait_for<T>(
    timeout: std::time::Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.expect("json body");
    assert!(status.is_success(), "unexpected {status}: {body}");
    body
}

/// A plan of `rooms` rooms with `per_room` candidates (`R0001`… with codes
/// `code-0001`…), a proctor per room (`{plan}-proctor-N` / `password-N`) and
/// one question of each kind.
pub fn plan(plan_id: &str, rooms: usize, per_room: usize) -> Value {
    json!({
        "title": format!("Plan {plan_id}"),
        "starts_at": "2026-12-01T09:00:00Z",
        "duration_s": 3600,
        "settings": {"heartbeat_s": 10, "late_entry_s": 600},
        "questions": [
            {"id": "q1", "kind": "single", "choices": ["1", "2", "3", "4"], "answer": "2", "points": 2},
            {"id": "q2", "kind": "multi", "choices": ["A", "B", "C"], "answer": ["A", "C"], "points": 3},
            {"id": "q3", "kind": "text", "answer": "서울"}
        ],
        "rooms": (1..=rooms).map(|r| json!({"id": format!("room-{r}"), "name": format!("Room {r}"), "capacity": per_room})).collect::<Vec<_>>(),
        "proctors": (1..=rooms).map(|r| json!({
            "id": format!("proctor-{r}"), "name": format!("Proctor {r}"), "login": format!("{plan_id}-proctor-{r}"),
            "password": format!("password-{r}"), "room_ids": [format!("room-{r}")]
        })).collect::<Vec<_>>(),
        "candidates": (1..=rooms * per_room).map(|n| json!({
            "id": format!("cand-{n:04}"), "reg_no": format!("R{n:04}"), "name": format!("수험자 {n}"),
            "room_id": format!("room-{}", (n - 1) / per_room + 1), "seat": (n - 1) % per_room + 1,
            "access_code": format!("code-{n:04}"), "extra_time_s": if n == 1 { 300 } else { 0 }
        })).collect::<Vec<_>>()
    })
}
