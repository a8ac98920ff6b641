//! SIGKILL in the middle of an answer burst: every acknowledged answer is in
//! the database after a restart on the same data. Real node processes, real
//! sockets; on SQLite and on Postgres.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use invigil_actors::ports::Journal;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "crash-admin-key-0123456789";
const CANDIDATES: usize = 8;

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `invigil serve` on `database_url` and waits until it is ready.
fn start_node(database_url: &str) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_invigil"))
        .arg("serve")
        .env("INVIGIL_NODE__ID", "crash-node")
        .env("INVIGIL_NODE__LISTEN", "127.0.0.1:0")
        .env("INVIGIL_STORE__URL", database_url)
        .env("INVIGIL_AUTH__API_KEYS", format!("[\"{API_KEY}\"]"))
        .env(
            "INVIGIL_AUTH__JWT_SECRET",
            "crash-jwt-secret-0123456789-0123456789",
        )
        .env(
            "INVIGIL_AUTH__ACCESS_CODE_SECRET",
            "crash-code-secret-0123456789-012345678",
        )
        .env("INVIGIL_AUTH__ARGON2_MEMORY_KIB", "64")
        .env("INVIGIL_AUTH__ARGON2_ITERATIONS", "1")
        .env("INVIGIL_TELEMETRY__LOG_FORMAT", "json")
        .env("INVIGIL_TELEMETRY__LOG_FILTER", "info")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the node starts");
    let stderr = child.stderr.take().expect("stderr");
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && log["message"] == "serving"
                && let Some(addr) = log["addr"].as_str()
            {
                let _ = found.send(addr.to_string());
            }
        }
    });
    let addr = address
        .recv_timeout(Duration::from_secs(60))
        .expect("the node logs its address");
    Node {
        child,
        base: format!("http://{addr}"),
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node did not become ready");
}

fn plan() -> Value {
    json!({
        "title": "Crash test", "starts_at": "2026-12-01T09:00:00Z", "duration_s": 3600,
        "questions": (1..=20).map(|q| json!({"id": format!("q{q}"), "kind": "text"})).collect::<Vec<_>>(),
        "rooms": [{"id": "r1", "name": "Room 1", "capacity": 5}, {"id": "r2", "name": "Room 2", "capacity": 5}],
        "candidates": (1..=CANDIDATES).map(|n| json!({
            "id": format!("c{n}"), "reg_no": format!("R{n}"), "name": format!("Candidate {n}"),
            "room_id": if n % 2 == 0 { "r2" } else { "r1" }, "access_code": format!("access-code-{n}")
        })).collect::<Vec<_>>()
    })
}

/// Acknowledged answers per candidate: cseq → version.
type Acked = Arc<Mutex<HashMap<String, HashMap<i64, i64>>>>;

/// One candidate answering as fast as acks come back (a window of 8 in flight).
async fn burst(base: String, token: String, candidate: String, acked: Acked) {
    let url = format!(
        "{}/ws/candidate?token={token}",
        base.replace("http://", "ws://")
    );
    let Ok((socket, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let (mut sink, mut stream) = socket.split();
    if sink
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await
        .is_err()
    {
        return;
    }
    let mut cseq = 0_i64;
    let mut in_flight = 0;
    loop {
        while in_flight < 8 {
            cseq += 1;
            let frame = json!({"t": "answer", "q": format!("q{}", cseq % 20 + 1), "value": format!("answer {cseq}"), "cseq": cseq});
            if sink.send(Message::text(frame.to_string())).await.is_err() {
                return;
            }
            in_flight += 1;
        }
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if frame["t"] == "ack" {
                    let mut acked = acked.lock().unwrap();
                    acked.entry(candidate.clone()).or_default().insert(
                        frame["cseq"].as_i64().unwrap(),
                        frame["version"].as_i64().unwrap(),
                    );
                    in_flight -= 1;
                } else if frame["t"] == "error" {
                    in_flight -= 1;
                }
            }
            Some(Ok(_)) => {}
            // The node died.
            _ => return,
        }
    }
}

async fn kill_mid_burst_and_restart(database_url: &str) {
    let client = reqwest::Client::new();
    let node = start_node(database_url);
    wait_ready(&client, &node.base).await;
    let base = node.base.clone();
    let admin = |path: &str| format!("{base}/api/v1/admin/plans/crash{path}");
    assert!(
        client
            .put(admin(""))
            .header("X-Api-Key", API_KEY)
            .json(&plan())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
    for action in ["open", "start"] {
        let response = client
            .post(admin("/commands"))
            .header("X-Api-Key", API_KEY)
            .json(&json!({"action": action}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{action}: {}",
            response.text().await.unwrap()
        );
    }
    let acked: Acked = Arc::default();
    let mut bursts = Vec::new();
    for n in 1..=CANDIDATES {
        let login: Value = client
            .post(format!("{base}/api/v1/auth/candidate"))
            .json(&json!({"plan_id": "crash", "reg_no": format!("R{n}"), "access_code": format!("access-code-{n}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a token").to_string();
        bursts.push(tokio::spawn(burst(
            base.clone(),
            token,
            format!("c{n}"),
            acked.clone(),
        )));
    }
    // Let the burst run, then kill the node without warning.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked
        .lock()
        .unwrap()
        .values()
        .map(HashMap::len)
        .sum::<usize>()
        < 300
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut node = node;
    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
    for burst in bursts {
        let _ = burst.await;
    }
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.values().map(HashMap::len).sum();
    assert!(
        total >= 300,
        "the burst was running when the node died ({total} acks)"
    );

    // Restart on the same data: the new incarnation takes over at once.
    let restarted = start_node(database_url);
    wait_ready(&client, &restarted.base).await;
    let store = invigil_store::SqlStore::connect(&invigil_store::SqlOptions::new(database_url))
        .await
        .unwrap();
    let plan_id = "crash".parse().unwrap();
    let mut missing = Vec::new();
    for (candidate, answers) in &acked {
        let candidate_id = candidate.parse().unwrap();
        for (&cseq, &version) in answers {
            match store
                .journaled_answer(&plan_id, &candidate_id, cseq)
                .await
                .unwrap()
            {
                Some(saved) if saved.version == version => {}
                other => missing.push((candidate.clone(), cseq, version, other)),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {total} acked answers are missing or differ: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );

    // The restarted node serves the same candidates, who resume where they were.
    let login: Value = client
        .post(format!("{}/api/v1/auth/candidate", restarted.base))
        .json(&json!({"plan_id": "crash", "reg_no": "R1", "access_code": "access-code-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me: Value = client
        .get(format!("{}/api/v1/candidate/me", restarted.base))
        .bearer_auth(login["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let highest_acked = acked
        .get("c1")
        .and_then(|answers| answers.keys().max().copied())
        .unwrap_or(0);
    assert!(me["last_cseq"].as_i64().unwrap() >= highest_acked, "{me}");
    assert_eq!(me["state"], "testing");
    store.close().await;
    println!("{total} acked answers, all durable after SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acked_answer_across_a_sigkill() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("crash.db").display());
    kill_mid_burst_and_restart(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acked_answer_across_a_sigkill() {
    let server = std::env::var("INVIGIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/invigil_test".to_string());
    let schema = format!("crash_{}", uuid::Uuid::now_v7().simple());
    let admin = sqlx::PgPool::connect(&server)
        .await
        .expect("Postgres is reachable (scripts/ensure-services.sh)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{separator}options=-c%20search_path%3D{schema}");
    kill_mid_burst_and_restart(&url).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await;
}
