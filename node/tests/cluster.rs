//! The cluster with real node processes on one Postgres and one Redis:
//! agreement on members and owners, candidates on one node in rooms owned
//! by another, SIGKILL failover and SIGSTOP fencing with every acked answer
//! kept, drain and join under traffic. Small here (6 rooms × 2 candidates);
//! `scripts/bench-cluster.sh` runs the same scenarios larger, in release,
//! through `INVIGIL_CLUSTER_ROOMS` and `INVIGIL_CLUSTER_PER_ROOM`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use invigil_actors::domain::{PlanId, RoomId};
use invigil_actors::ports::Journal;
use invigil_actors::shard::ShardId;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const API_KEY: &str = "cluster-admin-key-0123456789";

/// Polls `predicate` every 50 ms until it holds; returns how long it took.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut predicate: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if predicate().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port below the kernel's ephemeral range (32768–60999 by default) that
/// is free for TCP and UDP now. Ports from `bind(":0")` come from the
/// ephemeral range, where any outgoing connection (to Postgres, to Redis, a
/// client's) may take one between picking it and the node binding it, which
/// can be seconds later for a node started mid-test. Random, so parallel test
/// processes rarely pick the same one; checked, so a port in use is skipped.
fn free_port() -> u16 {
    let seed = uuid::Uuid::now_v7().as_u128() ^ u128::from(std::process::id());
    let mut state = (seed as u64) ^ ((seed >> 64) as u64);
    for _ in 0..1_000 {
        // xorshift: cheap, and different per process and call.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = 20_000 + (state % 12_000) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if tcp && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000")
}

struct Ports {
    http: u16,
    gossip: u16,
    actor: u16,
}

struct NodeProcess {
    child: Child,
    /// When the node logged "serving".
    serving_at: Instant,
    /// Every line the node wrote to its log.
    log: Arc<Mutex<Vec<String>>>,
}

/// A private cluster: its own Postgres schema, Redis key prefix, cluster id
/// and ports. Nodes are `invigil serve` processes.
struct Sandbox {
    id: String,
    url: String,
    schema: String,
    admin: sqlx::PgPool,
    ports: Vec<Ports>,
    nodes: Vec<Option<NodeProcess>>,
    /// Nodes stopped with SIGSTOP.
    paused: Vec<bool>,
    client: reqwest::Client,
    /// More environment for the nodes started from now on.
    env: Vec<(String, String)>,
}

impl Sandbox {
    async fn new(capacity: usize) -> Self {
        let server = std::env::var("INVIGIL_TEST_PG_URL").unwrap_or_else(|_| {
            "postgres://postgres:postgres@127.0.0.1:5432/invigil_test".to_string()
        });
        let id = format!("c{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
        let schema = format!("cluster_{id}");
        let admin = sqlx::PgPool::connect(&server)
            .await
            .expect("Postgres is reachable (scripts/ensure-services.sh)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{schema}");
        let ports = (0..capacity)
            .map(|_| Ports {
                http: free_port(),
                gossip: free_port(),
                actor: free_port(),
            })
            .collect();
        Self {
            id,
            url,
            schema,
            admin,
            ports,
            nodes: (0..capacity).map(|_| None).collect(),
            paused: vec![false; capacity],
            env: Vec::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn base(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[index].http)
    }

    fn node_id(index: usize) -> String {
        format!("node-{}", index + 1)
    }

    /// Starts node `index` and waits until it serves HTTP.
    fn start(&mut self, index: usize) {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .take(3)
            .map(|ports| format!("127.0.0.1:{}", ports.gossip))
            .collect();
        let ports = &self.ports[index];
        let mut child = Command::new(env!("CARGO_BIN_EXE_invigil"))
            .arg("serve")
            .env("INVIGIL_NODE__ID", Self::node_id(index))
            .env("INVIGIL_NODE__LISTEN", format!("127.0.0.1:{}", ports.http))
            .env("INVIGIL_NODE__SHUTDOWN_GRACE_S", "5")
            .env("INVIGIL_STORE__URL", &self.url)
            .env("INVIGIL_STORE__MAX_CONNECTIONS", "6")
            .env("INVIGIL_REDIS__URL", "redis://127.0.0.1:6379")
            .env("INVIGIL_REDIS__KEY_PREFIX", format!("invigil-{}:", self.id))
            .env("INVIGIL_AUTH__API_KEYS", format!("[\"{API_KEY}\"]"))
            .env(
                "INVIGIL_AUTH__JWT_SECRET",
                "cluster-jwt-secret-0123456789-0123456789",
            )
            .env(
                "INVIGIL_AUTH__ACCESS_CODE_SECRET",
                "cluster-code-secret-0123456789-01234567",
            )
            .env("INVIGIL_AUTH__ARGON2_MEMORY_KIB", "64")
            .env("INVIGIL_AUTH__ARGON2_ITERATIONS", "1")
            .env("INVIGIL_SHARDS__LEASE_TTL_MS", "3000")
            .env("INVIGIL_CLUSTER__ENABLED", "true")
            .env("INVIGIL_CLUSTER__CLUSTER_ID", &self.id)
            .env(
                "INVIGIL_CLUSTER__GOSSIP_LISTEN",
                format!("127.0.0.1:{}", ports.gossip),
            )
            .env(
                "INVIGIL_CLUSTER__ACTOR_LISTEN",
                format!("127.0.0.1:{}", ports.actor),
            )
            .env("INVIGIL_CLUSTER__SEEDS", format!("{seeds:?}"))
            .env("INVIGIL_CLUSTER__COOKIE", "cluster-test-cookie-0123456789")
            .env("INVIGIL_TELEMETRY__LOG_FORMAT", "json")
            .env("RUST_LOG", "info,chitchat=warn,ractor_cluster=warn")
            // Startup errors in a line, not under a backtrace (see `tail`).
            .env("RUST_BACKTRACE", "0")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the node starts");
        let stderr = child.stderr.take().expect("stderr");
        let (found, serving) = std::sync::mpsc::channel();
        let name = Self::node_id(index);
        let echo = std::env::var_os("INVIGIL_TEST_NODE_LOGS").is_some();
        // The last lines the node wrote: why it stopped, if it does not serve.
        let tail = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let kept = tail.clone();
        let log = Arc::new(Mutex::new(Vec::new()));
        let all = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[{name}] {line}");
                }
                all.lock().unwrap().push(line.clone());
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() == 20 {
                        kept.pop_front();
                    }
                    kept.push_back(line.clone());
                }
                if let Ok(log) = serde_json::from_str::<Value>(&line)
                    && log["message"] == "serving"
                {
                    let _ = found.send(());
                }
            }
        });
        if let Err(error) = serving.recv_timeout(Duration::from_secs(60)) {
            // Not left running past the test; the reader then takes the
            // last lines in.
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(200));
            let tail = tail.lock().unwrap();
            panic!(
                "node {} did not serve ({error}); its last log lines:\n{}",
                Self::node_id(index),
                tail.iter().cloned().collect::<Vec<_>>().join("\n")
            );
        }
        self.nodes[index] = Some(NodeProcess {
            child,
            serving_at: Instant::now(),
            log,
        });
    }

    /// The lines node `index` has written to its log so far.
    fn log_lines(&self, index: usize) -> Vec<String> {
        let node = self.nodes[index].as_ref().expect("running");
        node.log.lock().unwrap().clone()
    }

    fn signal(&mut self, index: usize, signal: &str) {
        self.paused[index] = signal == "STOP";
        let node = self.nodes[index].as_ref().expect("running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(node.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill(&mut self, index: usize) {
        let mut node = self.nodes[index].take().expect("running");
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }

    /// Nodes running and not stopped.
    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some() && !self.paused[i])
            .collect()
    }

    async fn view(&self, index: usize) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/cluster", self.base(index)))
            .header("X-Api-Key", API_KEY)
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())?;
        response.json().await.ok()
    }

    /// Every running node sees the same ready members (exactly the running
    /// ones) and the same owner for every shard, and each shard's lease is
    /// held by its owner.
    async fn agreed(&self) -> bool {
        let running: Vec<String> = self.running().into_iter().map(Self::node_id).collect();
        let mut owners = None;
        for index in self.running() {
            let Some(view) = self.view(index).await else {
                return false;
            };
            let ready: Vec<String> = view["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|member| member["status"] == "ready")
                .map(|member| member["node_id"].as_str().unwrap().to_string())
                .collect();
            if ready != running {
                return false;
            }
            let shards = view["shards"].as_array().unwrap();
            if shards.len() != 1024
                || shards
                    .iter()
                    .any(|shard| shard["held_by"] != shard["owner"])
            {
                return false;
            }
            let these: Vec<Value> = shards.iter().map(|shard| shard["owner"].clone()).collect();
            match &owners {
                None => owners = Some(these),
                Some(first) if *first != these => return false,
                Some(_) => {}
            }
        }
        true
    }

    async fn admin(
        &self,
        index: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}/api/v1/admin{path}", self.base(index)))
            .header("X-Api-Key", API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn candidate_token(&self, index: usize, plan: &str, n: usize) -> String {
        let login: Value = self
            .client
            .post(format!("{}/api/v1/auth/candidate", self.base(index)))
            .json(&json!({"plan_id": plan, "reg_no": format!("R{n:04}"), "access_code": format!("code-{n:04}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["token"]
            .as_str()
            .expect("a candidate token")
            .to_string()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(node.child.id().to_string())
                .status();
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        let (admin, schema) = (self.admin.clone(), self.schema.clone());
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                            .execute(&admin)
                            .await;
                });
        })
        .join();
    }
}

fn plan(rooms: usize, per_room: usize) -> Value {
    json!({
        "title": "Cluster test", "starts_at": "2026-12-01T09:00:00Z", "duration_s": 3600,
        "settings": {"heartbeat_s": 10, "late_entry_s": 600},
        "questions": (1..=10).map(|q| json!({"id": format!("q{q}"), "kind": "text"})).collect::<Vec<_>>(),
        "rooms": (1..=rooms).map(|r| json!({"id": format!("room-{r}"), "name": format!("Room {r}"), "capacity": per_room + 1})).collect::<Vec<_>>(),
        "proctors": (1..=rooms).map(|r| json!({
            "id": format!("proctor-{r}"), "name": format!("Proctor {r}"), "login": format!("proctor-{r}"),
            "password": format!("password-{r}"), "room_ids": [format!("room-{r}")]
        })).chain(std::iter::once(json!({
            // A proctor of every room: its rooms live on every node.
            "id": "proctor-all", "name": "Head proctor", "login": "proctor-all",
            "password": "password-all", "room_ids": (1..=rooms).map(|r| format!("room-{r}")).collect::<Vec<_>>()
        }))).collect::<Vec<_>>(),
        "candidates": (1..=rooms * per_room).map(|n| json!({
            "id": format!("cand-{n:04}"), "reg_no": format!("R{n:04}"), "name": format!("Candidate {n}"),
            "room_id": format!("room-{}", (n - 1) / per_room + 1), "seat": (n - 1) % per_room + 1,
            "access_code": format!("code-{n:04}")
        })).chain((1..=rooms).map(|r| json!({
            // One spare candidate per room, outside the simulated traffic.
            "id": format!("spare-{r}"), "reg_no": format!("S{r:03}"), "name": format!("Spare {r}"),
            "room_id": format!("room-{r}"), "seat": per_room + 1, "access_code": format!("spare-code-{r}")
        }))).collect::<Vec<_>>()
    })
}

/// The owner of a room's shard as node 0 sees it.
async fn room_owner(sandbox: &Sandbox, index: usize, plan: &str, room: &str) -> String {
    let shard = ShardId::of_room(&PlanId::parse(plan).unwrap(), &RoomId::parse(room).unwrap());
    let view = sandbox.view(index).await.expect("a cluster view");
    view["shards"][usize::from(shard.get())]["owner"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What one simulated candidate saw.
#[derive(Default)]
struct Seen {
    /// cseq → version of every ack.
    acked: BTreeMap<i64, i64>,
    /// When each ack arrived.
    acked_at: Vec<Instant>,
    controls: Vec<String>,
    /// Answers refused with an error frame (code, cseq).
    refused: Vec<(String, i64)>,
    /// Connection errors (no cseq): a greeting refused, for instance.
    greeting_refused: Vec<String>,
    reconnects: usize,
}

/// A candidate that answers one question at a time, resends what was not
/// acked after a reconnect, and reconnects (resuming) through the nodes in
/// `bases` in turn whenever its socket ends, until `stop`.
async fn candidate(
    bases: Arc<Mutex<Vec<String>>>,
    token: String,
    seen: Arc<Mutex<Seen>>,
    stop: Instant,
) {
    let mut cseq = 1_i64;
    let mut session: Option<(String, u64)> = None;
    // docs/protocol.md, "Reconnecting": the same node again after a socket
    // closed with a close frame; the next one after a silence, a broken
    // socket or a failed attempt; a jittered backoff that grows while
    // attempts fail.
    let mut node = 0_usize;
    let mut failures = 0_u32;
    while Instant::now() < stop {
        if failures > 0 {
            tokio::time::sleep(backoff(failures)).await;
        }
        let base = {
            let bases = bases.lock().unwrap();
            bases[node % bases.len()].clone()
        };
        let url = format!(
            "{}/ws/candidate?token={token}",
            base.replace("http://", "ws://")
        );
        let Ok(Ok((socket, _))) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(url),
        )
        .await
        else {
            failures += 1;
            node += 1;
            continue;
        };
        let (mut sink, mut stream) = socket.split();
        let hello = match &session {
            Some((id, last_seq)) => {
                json!({"t": "hello", "resume": {"session": id, "last_seq": last_seq}})
            }
            None => json!({"t": "hello"}),
        };
        if sink.send(Message::text(hello.to_string())).await.is_err() {
            failures += 1;
            node += 1;
            continue;
        }
        let mut welcomed = false;
        let mut retry_after = None;
        let mut cleanly = false;
        let mut in_flight: Option<Instant> = None;
        loop {
            if Instant::now() >= stop {
                return;
            }
            if welcomed && in_flight.is_none() {
                let frame = json!({"t": "answer", "q": format!("q{}", cseq % 10 + 1), "value": format!("answer {cseq}"), "cseq": cseq});
                if sink.send(Message::text(frame.to_string())).await.is_err() {
                    break;
                }
                in_flight = Some(Instant::now());
            }
            // A greeting may be held while the room moves (up to 5 s).
            let patience = Duration::from_secs(if welcomed { 2 } else { 7 });
            let next = tokio::time::timeout(patience, stream.next()).await;
            let text = match next {
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)))) => {
                    cleanly = true;
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                // Broken, or silent: reconnect.
                _ => break,
            };
            let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if let Some(seq) = frame["seq"].as_u64()
                && let Some((_, last_seq)) = session.as_mut()
            {
                *last_seq = (*last_seq).max(seq);
            }
            match frame["t"].as_str() {
                Some("welcome") => {
                    session = Some((
                        frame["session"].as_str().unwrap_or_default().to_string(),
                        frame["seq"].as_u64().unwrap_or(0),
                    ));
                    welcomed = true;
                    failures = 0;
                }
                Some("ack") => {
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.acked.insert(
                            frame["cseq"].as_i64().unwrap(),
                            frame["version"].as_i64().unwrap(),
                        );
                        seen.acked_at.push(Instant::now());
                    }
                    cseq += 1;
                    in_flight = None;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Some("control") => {
                    let action = frame["action"].as_str().unwrap_or_default().to_string();
                    seen.lock().unwrap().controls.push(action);
                }
                Some("error") if frame["cseq"].is_null() => {
                    let code = frame["code"].as_str().unwrap_or_default().to_string();
                    seen.lock().unwrap().greeting_refused.push(code);
                    retry_after = frame["retry_after_ms"].as_u64().map(Duration::from_millis);
                }
                Some("error") => {
                    // Refused (e.g. the room was moving): resend after a pause.
                    if let Some(refused) = frame["cseq"].as_i64() {
                        let code = frame["code"].as_str().unwrap_or_default().to_string();
                        seen.lock().unwrap().refused.push((code, refused));
                    }
                    in_flight = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {}
            }
        }
        seen.lock().unwrap().reconnects += 1;
        if !welcomed {
            failures += 1;
            node += 1;
        } else if !cleanly {
            // Silent or broken: the node may be gone; the next one first.
            node += 1;
        }
        if let Some(wait) = retry_after {
            tokio::time::sleep(wait).await;
        }
    }
}

/// docs/protocol.md's backoff before attempt `failures` + 1: full jitter
/// over 100 ms × 2^(failures − 1), capped at 2 s.
fn backoff(failures: u32) -> Duration {
    let ceiling = (100_u64 << failures.saturating_sub(1).min(5)).min(2_000);
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(u64::from(noise) % (ceiling + 1))
}

/// One simulated candidate: number, room owner, the nodes it may use, what it saw.
type Rider = (usize, String, Arc<Mutex<Vec<String>>>, Arc<Mutex<Seen>>);

/// An exam with candidates answering through nodes that do not own their
/// rooms, none through the `victim` (a node that owns a room).
struct Traffic {
    seen: Vec<Rider>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    victim: usize,
    /// Owner of each room (`room-1` first).
    owners: Vec<String>,
}

impl Traffic {
    /// `everywhere`: candidates connect round robin to every node (the
    /// victim and their room's owner included), not only through others.
    async fn start(sandbox: &Sandbox, plan_id: &str, run_for: Duration, everywhere: bool) -> Self {
        // Rooms spread over the nodes (6 × 2 candidates here; the benchmark
        // sets more); the plan goes in through node 1.
        let size = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        let (rooms, per_room) = (
            size("INVIGIL_CLUSTER_ROOMS", 6),
            size("INVIGIL_CLUSTER_PER_ROOM", 2),
        );
        sandbox
            .admin(
                0,
                reqwest::Method::PUT,
                &format!("/plans/{plan_id}"),
                Some(plan(rooms, per_room)),
            )
            .await;
        for action in ["open", "start"] {
            sandbox
                .admin(
                    1,
                    reqwest::Method::POST,
                    &format!("/plans/{plan_id}/commands"),
                    Some(json!({"action": action})),
                )
                .await;
        }
        let mut owners = Vec::new();
        for room in 1..=rooms {
            owners.push(room_owner(sandbox, 0, plan_id, &format!("room-{room}")).await);
        }
        println!("room owners: {owners:?}");
        let victim = (0..3)
            .find(|&i| owners.contains(&Sandbox::node_id(i)))
            .expect("some node owns a room");
        let stop = Instant::now() + run_for;
        let mut seen = Vec::new();
        let mut tasks = Vec::new();
        for n in 1..=rooms * per_room {
            let owner = &owners[(n - 1) / per_room];
            let gateway = if everywhere {
                (n - 1) % 3
            } else {
                (0..3)
                    .find(|&i| &Sandbox::node_id(i) != owner && i != victim)
                    .unwrap_or_else(|| (0..3).find(|&i| &Sandbox::node_id(i) != owner).unwrap())
            };
            let token = sandbox.candidate_token(gateway, plan_id, n).await;
            let others: Vec<String> = (0..3)
                .filter(|&i| i != gateway)
                .map(|i| sandbox.base(i))
                .collect();
            let bases = Arc::new(Mutex::new(
                std::iter::once(sandbox.base(gateway))
                    .chain(others)
                    .collect::<Vec<_>>(),
            ));
            let record = Arc::new(Mutex::new(Seen::default()));
            seen.push((n, owner.clone(), bases.clone(), record.clone()));
            tasks.push(tokio::spawn(candidate(bases, token, record, stop)));
        }
        Self {
            seen,
            tasks,
            victim,
            owners,
        }
    }
}

/// Three of `capacity` nodes in agreement, with candidates answering
/// through nodes that do not own their rooms, each acked a few times.
async fn cluster_with_traffic(
    capacity: usize,
    plan_id: &str,
    run_for: Duration,
    everywhere: bool,
) -> (Sandbox, Traffic) {
    let mut sandbox = Sandbox::new(capacity).await;
    for index in 0..3 {
        sandbox.start(index);
    }
    wait_until("three nodes in agreement", Duration::from_secs(30), || {
        sandbox.agreed()
    })
    .await;
    let traffic = Traffic::start(&sandbox, plan_id, run_for, everywhere).await;
    let none = vec![0; traffic.seen.len()];
    wait_saved(
        &traffic.seen,
        &none,
        5,
        "every candidate acked through another node",
        Duration::from_secs(20),
    )
    .await;
    (sandbox, traffic)
}

/// Every acked answer is in the journal with its version.
async fn assert_every_ack_durable(sandbox: &Sandbox, plan_id: &str, seen: &[Rider]) -> usize {
    let store = invigil_store::SqlStore::connect(&invigil_store::SqlOptions::new(&sandbox.url))
        .await
        .unwrap();
    let plan = PlanId::parse(plan_id).unwrap();
    let mut missing = Vec::new();
    let mut total = 0;
    for (n, _, _, record) in seen {
        let candidate_id = format!("cand-{n:04}").parse().unwrap();
        let acked = record.lock().unwrap().acked.clone();
        for (cseq, version) in acked {
            total += 1;
            match store
                .journaled_answer(&plan, &candidate_id, cseq)
                .await
                .unwrap()
            {
                Some(saved) if saved.version == version => {}
                other => missing.push((*n, cseq, version, other.map(|saved| saved.version))),
            }
        }
    }
    store.close().await;
    assert!(
        missing.is_empty(),
        "{} of {total} acked answers lost: {missing:?}",
        missing.len()
    );
    total
}

/// Kill (or stop) → the ack that ends the outage, for the candidates
/// `affected` picks: p50, p99. Acks already on their way when the node
/// died arrive just after `since`; the outage ends with the first ack after
/// a silence of more than half a second (or the first ack at all when the
/// candidate never went silent).
fn recoveries(
    seen: &[Rider],
    affected: impl Fn(&Rider) -> bool,
    since: Instant,
) -> (Duration, Duration) {
    const SILENCE: Duration = Duration::from_millis(500);
    let mut times: Vec<Duration> = seen
        .iter()
        .filter(|rider| affected(rider))
        .map(|(_, _, _, record)| {
            let record = record.lock().unwrap();
            let mut previous = record
                .acked_at
                .iter()
                .rev()
                .find(|at| **at <= since)
                .copied()
                .unwrap_or(since);
            let mut first = None;
            for at in record.acked_at.iter().filter(|at| **at > since) {
                first.get_or_insert(*at);
                if at.duration_since(previous) > SILENCE {
                    return at.duration_since(since);
                }
                previous = *at;
            }
            first.expect("acked again").duration_since(since)
        })
        .collect();
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    (p50, p99)
}

/// The longest time any candidate went without an ack after `since`: how
/// long saves were interrupted.
fn longest_gap(seen: &[Rider], since: Instant) -> Duration {
    seen.iter()
        .map(|(_, _, _, record)| {
            let record = record.lock().unwrap();
            let mut last = since;
            let mut longest = Duration::ZERO;
            for at in record.acked_at.iter().filter(|at| **at > since) {
                longest = longest.max(at.duration_since(last));
                last = *at;
            }
            longest
        })
        .max()
        .unwrap_or_default()
}

/// Waits until every candidate got at least `more` acks beyond `before`.
async fn wait_saved(seen: &[Rider], before: &[usize], more: usize, what: &str, timeout: Duration) {
    wait_until(what, timeout, || {
        let ok = all_saved_again(seen, before, more);
        async move { ok }
    })
    .await;
}

/// Every candidate got at least `more` acks beyond `before`.
fn all_saved_again(seen: &[Rider], before: &[usize], more: usize) -> bool {
    seen.iter()
        .zip(before)
        .all(|((_, _, _, record), before)| record.lock().unwrap().acked.len() >= before + more)
}

fn ack_counts(seen: &[Rider]) -> Vec<usize> {
    seen.iter()
        .map(|(_, _, _, record)| record.lock().unwrap().acked.len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_on_members_and_owners_and_share_the_shards() {
    let mut sandbox = Sandbox::new(3).await;
    for index in 0..3 {
        sandbox.start(index);
    }
    let last_start = sandbox.nodes[2].as_ref().unwrap().serving_at;
    wait_until("three nodes in agreement", Duration::from_secs(30), || {
        sandbox.agreed()
    })
    .await;
    let agreed_after = last_start.elapsed();
    println!("agreement {agreed_after:?} after the last node started serving");
    assert!(
        agreed_after <= Duration::from_secs(3),
        "agreement took {agreed_after:?}"
    );

    let view = sandbox.view(0).await.unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for shard in view["shards"].as_array().unwrap() {
        *counts
            .entry(shard["owner"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let mean = 1024.0 / 3.0;
    for (node, count) in &counts {
        assert!(
            (*count as f64 - mean).abs() <= 0.2 * mean,
            "{node} owns {count} shards: {counts:?}"
        );
    }
    println!("shards per node: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_behind_another_node_save_get_controls_and_survive_the_owner_dying() {
    let (mut sandbox, traffic) = cluster_with_traffic(3, "cl", Duration::from_secs(60), true).await;
    let (seen, tasks, victim, traffic_owners) =
        (traffic.seen, traffic.tasks, traffic.victim, traffic.owners);

    // Any node's plan status counts the connections of every room, wherever
    // the room is hosted.
    let online = seen.len() as i64;
    for index in 0..3 {
        let status = sandbox
            .admin(index, reqwest::Method::GET, "/plans/cl/status", None)
            .await;
        assert_eq!(
            status["connection"]["online"].as_i64(),
            Some(online),
            "node {index}: {status}"
        );
    }

    // A proctor on yet another node warns a candidate of room 1.
    let proctor: Value = sandbox
        .client
        .post(format!("{}/api/v1/auth/proctor", sandbox.base(2)))
        .json(&json!({"plan_id": "cl", "login": "proctor-1", "password": "password-1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = sandbox
        .client
        .post(format!(
            "{}/api/v1/proctor/candidates/cand-0001/commands",
            sandbox.base(2)
        ))
        .bearer_auth(proctor["token"].as_str().unwrap())
        .json(&json!({"action": "warn", "reason": "eyes on your own screen"}))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let warned = seen[0].3.clone();
    wait_until(
        "the warning reached the candidate",
        Duration::from_secs(5),
        || {
            let got = warned
                .lock()
                .unwrap()
                .controls
                .iter()
                .any(|action| action == "warn");
            async move { got }
        },
    )
    .await;

    // A proctor of every room, on one node, sees every room's snapshot
    // (rooms hosted elsewhere stream through feeds) and commands a
    // candidate whose room another node hosts.
    let head: Value = sandbox
        .client
        .post(format!("{}/api/v1/auth/proctor", sandbox.base(victim)))
        .json(&json!({"plan_id": "cl", "login": "proctor-all", "password": "password-all"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proctor_node = (victim + 1) % 3;
    let url = format!(
        "{}/ws/proctor?token={}",
        sandbox.base(proctor_node).replace("http://", "ws://"),
        head["token"].as_str().unwrap()
    );
    let (mut dashboard, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    dashboard
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await
        .unwrap();
    let snapshots = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let acks = Arc::new(Mutex::new(Vec::<Value>::new()));
    let (mut dashboard_sink, mut dashboard_stream) = dashboard.split();
    let reader = {
        let (snapshots, acks) = (snapshots.clone(), acks.clone());
        tokio::spawn(async move {
            while let Some(Ok(message)) = dashboard_stream.next().await {
                if let Message::Text(text) = message {
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    match frame["t"].as_str() {
                        Some("room") => snapshots.lock().unwrap().push((
                            frame["room_id"].as_str().unwrap_or_default().to_string(),
                            Instant::now(),
                        )),
                        Some("command_ack") => acks.lock().unwrap().push(frame),
                        _ => {}
                    }
                }
            }
        })
    };
    let rooms_seen = |snapshots: &Arc<Mutex<Vec<(String, Instant)>>>, since: Instant| {
        let mut rooms: Vec<String> = snapshots
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at >= since)
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    };
    let connected_at = Instant::now() - Duration::from_secs(1);
    let rooms = traffic_owners.len();
    wait_until(
        "the head proctor sees every room",
        Duration::from_secs(10),
        || {
            let count = rooms_seen(&snapshots, connected_at).len();
            async move { count == rooms }
        },
    )
    .await;
    let remote_candidate = seen
        .iter()
        .find(|(_, owner, _, _)| *owner != Sandbox::node_id(proctor_node))
        .map(|(n, _, _, _)| format!("cand-{n:04}"))
        .unwrap();
    dashboard_sink
        .send(Message::text(
            json!({"t": "command", "id": "w1", "target": {"candidate_id": remote_candidate}, "action": "warn", "reason": "head proctor"}).to_string(),
        ))
        .await
        .unwrap();
    wait_until(
        "the cross-node socket command is acknowledged",
        Duration::from_secs(10),
        || {
            let delivered = acks
                .lock()
                .unwrap()
                .iter()
                .any(|ack| ack["id"] == "w1" && ack["delivered"] == true);
            async move { delivered }
        },
    )
    .await;

    // SIGKILL the victim while everyone is answering.
    // As on exam day, the membership has been stable for a while (the
    // survivors may then take a dead member's leases at once).
    wait_until(
        "a stable membership of three",
        Duration::from_secs(10),
        || async {
            let mut stable = true;
            for index in 0..3 {
                let view = sandbox.view(index).await;
                stable &= view.is_some_and(|view| view["stable_members"] == 3);
            }
            stable
        },
    )
    .await;
    // The clients are not told: those on the victim find out as a plain
    // client does (the socket ends) and follow docs/protocol.md's rule.
    let before = ack_counts(&seen);
    let victim_base = sandbox.base(victim);
    let on_victim = seen
        .iter()
        .filter(|(_, _, bases, _)| bases.lock().unwrap()[0] == victim_base)
        .count();
    let killed_at = Instant::now();
    sandbox.kill(victim);
    wait_saved(
        &seen,
        &before,
        2,
        "every candidate saves again after the kill",
        Duration::from_secs(30),
    )
    .await;
    let victim_id = Sandbox::node_id(victim);
    let affected = |(_, owner, bases, _): &Rider| {
        *owner == victim_id || bases.lock().unwrap()[0] == victim_base
    };
    let hit = seen.iter().filter(|rider| affected(rider)).count();
    let (p50, p99) = recoveries(&seen, affected, killed_at);
    let (all_p50, all_p99) = recoveries(&seen, |_| true, killed_at);
    println!(
        "kill → next acked answer: {hit} candidates in the victim's rooms or on its sockets \
         ({on_victim} on its sockets): p50 {p50:?}, p99 {p99:?}; all {}: p50 {all_p50:?}, p99 {all_p99:?}",
        seen.len()
    );
    assert!(
        on_victim > 0 && hit > on_victim,
        "the drill has unlucky clients of both kinds"
    );
    assert!(p99 <= Duration::from_secs(10), "failover took {p99:?}");
    // Greetings during the move were held, not bounced.
    let bounced: Vec<String> = seen
        .iter()
        .flat_map(|(_, _, _, record)| record.lock().unwrap().greeting_refused.clone())
        .collect();
    assert!(bounced.is_empty(), "greetings refused: {bounced:?}");
    // The head proctor's dashboard follows the moved rooms to their new owners.
    let moved: Vec<String> = traffic_owners
        .iter()
        .enumerate()
        .filter(|(_, owner)| **owner == Sandbox::node_id(victim))
        .map(|(index, _)| format!("room-{}", index + 1))
        .collect();
    wait_until(
        "the dashboard gets the moved rooms again",
        Duration::from_secs(15),
        || {
            let rooms = rooms_seen(&snapshots, killed_at);
            let all = moved.iter().all(|room| rooms.contains(room));
            async move { all }
        },
    )
    .await;
    reader.abort();
    for task in tasks {
        task.abort();
    }
    let total = assert_every_ack_durable(&sandbox, "cl", &seen).await;
    println!("{total} acked answers, all durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_past_its_lease_is_fenced_and_rejoins() {
    let (mut sandbox, traffic) =
        cluster_with_traffic(3, "st", Duration::from_secs(60), false).await;
    let (seen, tasks, victim, owners) =
        (traffic.seen, traffic.tasks, traffic.victim, traffic.owners);
    let epochs_before = sandbox.view((victim + 1) % 3).await.unwrap()["shards"].clone();

    // A spare candidate of one of the victim's rooms, connected straight to
    // the victim: what it sends while the victim is stopped must never be
    // acknowledged or stored.
    let room = owners
        .iter()
        .position(|owner| *owner == Sandbox::node_id(victim))
        .unwrap()
        + 1;
    let login: Value = sandbox
        .client
        .post(format!("{}/api/v1/auth/candidate", sandbox.base(victim)))
        .json(&json!({"plan_id": "st", "reg_no": format!("S{room:03}"), "access_code": format!("spare-code-{room}")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}/ws/candidate?token={}",
        sandbox.base(victim).replace("http://", "ws://"),
        login["token"].as_str().unwrap()
    );
    let (mut direct, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    direct
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await
        .unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = direct.next().await else {
            panic!("the direct socket closed before its welcome");
        };
        if serde_json::from_str::<Value>(&text).unwrap()["t"] == "welcome" {
            break;
        }
    }

    // Stop the victim mid-traffic, past its lease; the others take over.
    let before = ack_counts(&seen);
    let stopped_at = Instant::now();
    sandbox.signal(victim, "STOP");
    wait_until(
        "the others own and hold every shard",
        Duration::from_secs(30),
        || sandbox.agreed(),
    )
    .await;
    wait_saved(
        &seen,
        &before,
        2,
        "every candidate saves again",
        Duration::from_secs(30),
    )
    .await;
    let victim_id = Sandbox::node_id(victim);
    let (p50, p99) = recoveries(&seen, |(_, owner, _, _)| *owner == victim_id, stopped_at);
    println!("SIGSTOP → next acked answer: p50 {p50:?}, p99 {p99:?}");
    let survivor = (victim + 1) % 3;
    let during = sandbox.view(survivor).await.unwrap();
    let victim_id = Sandbox::node_id(victim);
    let moved: Vec<(u64, i64, i64)> = epochs_before
        .as_array()
        .unwrap()
        .iter()
        .zip(during["shards"].as_array().unwrap())
        .filter(|(old, _)| old["owner"] == victim_id.as_str())
        .map(|(old, new)| {
            (
                old["shard"].as_u64().unwrap(),
                old["epoch"].as_i64().unwrap(),
                new["epoch"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|(_, old, new)| new > old),
        "every taken shard has a new epoch: {moved:?}"
    );

    // Sent while it sleeps; it reads it when it wakes.
    direct
        .send(Message::text(
            json!({"t": "answer", "q": "q1", "value": "written while stopped", "cseq": 1})
                .to_string(),
        ))
        .await
        .unwrap();

    // Wake it up: what it was sent meanwhile is refused under the old epoch,
    // it stops hosting those shards and rejoins.
    let before = ack_counts(&seen);
    sandbox.signal(victim, "CONT");
    let mut outcome = String::from("closed");
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(10), direct.next()).await
    {
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_ne!(
                frame["t"], "ack",
                "an answer sent to a stopped node was acknowledged after its lease moved: {frame}"
            );
            if frame["t"] == "error" || frame["t"] == "control" {
                outcome = frame.to_string();
            }
        }
    }
    println!("the stopped node's answer: {outcome}");
    wait_until(
        "three nodes in agreement again",
        Duration::from_secs(30),
        || sandbox.agreed(),
    )
    .await;
    let view = sandbox.view(victim).await.unwrap();
    let refused =
        view["stale_epoch_writes"].as_u64().unwrap() + view["self_fenced_writes"].as_u64().unwrap();
    println!(
        "after SIGCONT: {} writes refused by the store for a stale epoch, {} refused by the node itself",
        view["stale_epoch_writes"], view["self_fenced_writes"]
    );
    // How many old-epoch writes the woken node attempted depends on what
    // it had in flight when it stopped (a journal batch: refused by the
    // store); the answer sent while it slept never becomes a write (above).
    println!("old-epoch writes refused and counted on the woken node: {refused}");
    wait_saved(
        &seen,
        &before,
        2,
        "every candidate saves after the rejoin",
        Duration::from_secs(30),
    )
    .await;
    for task in tasks {
        task.abort();
    }
    let total = assert_every_ack_durable(&sandbox, "st", &seen).await;
    let stored: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {}.answer_journal WHERE candidate_id = 'spare-{room}'",
        sandbox.schema
    )))
    .fetch_optional(&sandbox.admin)
    .await
    .unwrap();
    assert!(
        stored.is_none(),
        "the answer sent to the stopped node was stored"
    );
    // One accepted writer per epoch: every journal row of a shard was written
    // under an epoch that shard had while its owner held it, and no epoch
    // was ever reused (each take-over bumped it).
    let rows: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT shard, epoch FROM {}.answer_journal",
        sandbox.schema
    )))
    .fetch_all(&sandbox.admin)
    .await
    .unwrap();
    let current = sandbox.view(survivor).await.unwrap();
    for (shard, epoch) in rows {
        let now = current["shards"][usize::try_from(shard).unwrap()]["epoch"]
            .as_i64()
            .unwrap();
        assert!(
            epoch <= now,
            "shard {shard}: a row with epoch {epoch} above the lease's {now}"
        );
    }
    println!("{total} acked answers, all durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_takes_a_quarter_and_a_drained_node_hands_off_without_failed_saves() {
    let (mut sandbox, traffic) =
        cluster_with_traffic(4, "dr", Duration::from_secs(90), false).await;
    let (seen, tasks, drained) = (traffic.seen, traffic.tasks, traffic.victim);

    // A fourth node joins the three: it takes about a quarter of the shards,
    // handed off by their owners while candidates keep answering.
    let before = ack_counts(&seen);
    sandbox.start(3);
    wait_until(
        "the joiner is in agreement",
        Duration::from_secs(30),
        || sandbox.agreed(),
    )
    .await;
    let view = sandbox.view(3).await.unwrap();
    let taken = view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|shard| shard["owner"] == "node-4")
        .count();
    println!("the joining node owns {taken} shards (a quarter: 256)");
    assert!(
        (taken as f64 - 256.0).abs() <= 0.2 * 256.0,
        "joiner owns {taken}"
    );
    wait_saved(
        &seen,
        &before,
        2,
        "every candidate saves after the join",
        Duration::from_secs(30),
    )
    .await;

    // Drain one node during answer traffic: it hands its shards off and exits.
    let before = ack_counts(&seen);
    let drained_base = sandbox.base(drained);
    let response = sandbox
        .client
        .post(format!("{drained_base}/api/v1/cluster/drain"))
        .header("X-Api-Key", API_KEY)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let drain_started = Instant::now();
    let process = sandbox.nodes[drained].as_mut().unwrap();
    wait_until("the drained node exits", Duration::from_secs(30), || {
        let exited = process.child.try_wait().unwrap().is_some();
        async move { exited }
    })
    .await;
    let status = process.child.wait().unwrap();
    assert!(status.success(), "a drained node exits cleanly: {status}");
    sandbox.nodes[drained] = None;
    println!(
        "drain: the node exited {:?} after the request",
        drain_started.elapsed()
    );
    for (_, _, bases, _) in &seen {
        bases.lock().unwrap().retain(|base| *base != drained_base);
    }
    wait_until(
        "the three others own and hold every shard",
        Duration::from_secs(30),
        || sandbox.agreed(),
    )
    .await;
    wait_saved(
        &seen,
        &before,
        2,
        "every candidate saves again",
        Duration::from_secs(30),
    )
    .await;
    let gap = longest_gap(&seen, drain_started);
    println!("drain: longest pause between acks of any candidate {gap:?}");
    for task in tasks {
        task.abort();
    }
    let refused: Vec<(String, i64)> = seen
        .iter()
        .flat_map(|(_, _, _, record)| record.lock().unwrap().refused.clone())
        .collect();
    assert!(
        refused.is_empty(),
        "answers refused during the drain or the join: {refused:?}"
    );
    let total = assert_every_ack_durable(&sandbox, "dr", &seen).await;
    println!("{total} acked answers, all durable; no answer refused");
}

/// An OTLP/HTTP collector that keeps what it is sent (JSON bodies of
/// `POST /v1/traces`).
async fn otlp_collector() -> (u16, Arc<Mutex<Vec<Value>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut connection = tokio::io::BufReader::new(connection);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    // Request line and headers.
                    loop {
                        line.clear();
                        if connection.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if connection.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                        kept.lock().unwrap().push(json);
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if connection
                        .get_mut()
                        .write_all(reply.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// The next text frame of a test socket, as JSON.
async fn next_json(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        if let Message::Text(text) = socket.next().await.expect("a frame").unwrap() {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// A span as the collector got it: (node, trace id, span id, parent, name).
type SpanSeen = (String, String, String, String, String);

fn spans_seen(received: &Arc<Mutex<Vec<Value>>>) -> Vec<SpanSeen> {
    let mut spans = Vec::new();
    for body in received.lock().unwrap().iter() {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            let node = resource["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|attribute| attribute["key"] == "service.instance.id")
                .and_then(|attribute| attribute["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
                    spans.push((
                        node.clone(),
                        text("traceId"),
                        text("spanId"),
                        text("parentSpanId"),
                        text("name"),
                    ));
                }
            }
        }
    }
    spans
}

/// Whether one trace holds `gateway_span` on `gateway` and `owner_spans`
/// on `owner`.
fn one_trace_across(
    spans: &[SpanSeen],
    gateway: &str,
    gateway_span: &str,
    owner: &str,
    owner_spans: &[&str],
) -> bool {
    spans
        .iter()
        .filter(|(node, _, _, _, name)| node == gateway && name == gateway_span)
        .any(|(_, trace, _, _, _)| {
            owner_spans.iter().all(|wanted| {
                spans
                    .iter()
                    .any(|(node, t, _, _, name)| node == owner && t == trace && name == wanted)
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_answer_is_one_trace_across_two_nodes() {
    let (port, received) = otlp_collector().await;
    let mut sandbox = Sandbox::new(2).await;
    sandbox.env = vec![
        (
            "INVIGIL_TELEMETRY__OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into()),
    ];
    sandbox.start(0);
    sandbox.start(1);
    wait_until("two nodes in agreement", Duration::from_secs(30), || {
        sandbox.agreed()
    })
    .await;
    let plan_id = "traced";
    sandbox
        .admin(
            0,
            reqwest::Method::PUT,
            &format!("/plans/{plan_id}"),
            Some(plan(6, 1)),
        )
        .await;
    for action in ["open", "start"] {
        sandbox
            .admin(
                0,
                reqwest::Method::POST,
                &format!("/plans/{plan_id}/commands"),
                Some(json!({"action": action})),
            )
            .await;
    }
    // A room node-2 owns, reached through node-1.
    let mut room = None;
    for r in 1..=6 {
        if room_owner(&sandbox, 0, plan_id, &format!("room-{r}")).await == "node-2" {
            room = Some(r);
            break;
        }
    }
    let room = room.expect("node-2 owns one of six rooms");
    let token = sandbox.candidate_token(0, plan_id, room).await;

    // Over REST: node-1 forwards to node-2.
    let saved = sandbox
        .client
        .put(format!("{}/api/v1/candidate/answers/q1", sandbox.base(0)))
        .bearer_auth(&token)
        .json(&json!({"value": "traced", "cseq": 1}))
        .send()
        .await
        .unwrap();
    assert!(saved.status().is_success(), "{}", saved.status());

    // Over a socket: node-1 tunnels it to node-2.
    let url = format!(
        "{}/ws/candidate?token={token}",
        sandbox.base(0).replace("http://", "ws://")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::text(json!({"t": "hello"}).to_string()))
        .await
        .unwrap();
    while next_json(&mut socket).await["t"] != "welcome" {}
    socket
        .send(Message::text(
            json!({"t": "answer", "q": "q2", "value": "by socket", "cseq": 2}).to_string(),
        ))
        .await
        .unwrap();
    while next_json(&mut socket).await["t"] != "ack" {}
    let _ = socket.close(None).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = spans_seen(&received);
        let rest = one_trace_across(
            &spans,
            "node-1",
            "http.forward",
            "node-2",
            &["http.request", "answer"],
        );
        let socket = one_trace_across(
            &spans,
            "node-1",
            "ws.tunnel",
            "node-2",
            &["ws.socket", "answer"],
        );
        if rest && socket {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trace across both nodes (rest {rest}, socket {socket}); spans seen: {:?}",
            spans
                .iter()
                .map(|(node, _, _, _, name)| format!("{node}:{name}"))
                .collect::<std::collections::BTreeSet<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The log lines written inside a request carry its trace id, on the
    // node the client reached and on the one it forwarded to.
    let login = sandbox
        .client
        .post(format!("{}/api/v1/auth/proctor", sandbox.base(1)))
        .json(&json!({"plan_id": plan_id, "login": "proctor-1", "password": "password-1"}))
        .send()
        .await
        .unwrap();
    assert!(login.status().is_success(), "{}", login.status());
    for (node, message) in [(0, "plan imported"), (1, "proctor logged in")] {
        let wait = Instant::now() + Duration::from_secs(5);
        loop {
            let traced = sandbox.log_lines(node).iter().any(|line| {
                serde_json::from_str::<Value>(line).is_ok_and(|log| {
                    log["message"] == message
                        && log["span"]["trace_id"]
                            .as_str()
                            .is_some_and(|id| id.len() == 32)
                })
            });
            if traced {
                break;
            }
            assert!(
                Instant::now() < wait,
                "node-{} logged no {message:?} with a trace id",
                node + 1
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
