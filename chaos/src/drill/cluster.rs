//! A local cluster for a drill: N `invigil serve` processes on loopback
//! ports, one Postgres schema of their own (dropped afterwards) and a Redis
//! key prefix of their own; each node's log goes to a file. The faults are
//! real: SIGKILL, SIGSTOP/SIGCONT, the drain endpoint.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// The admin key of a drill's nodes.
pub const API_KEY: &str = "drill-admin-key-0123456789";

/// How the nodes are started.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `invigil` binary.
    pub bin: PathBuf,
    pub nodes: usize,
    /// The Postgres server (a schema of the drill's own is made in it).
    pub pg_url: String,
    pub redis_url: String,
    /// `shards.lease_ttl_ms` (the node's default when `None`).
    pub lease_ttl_ms: Option<u64>,
    /// Where the nodes' logs go.
    pub log_dir: PathBuf,
    /// Nodes that may be added later (`scale-out`): ports are kept for
    /// them, and clients know their addresses from the start.
    pub spare: usize,
}

struct Ports {
    http: u16,
    gossip: u16,
    actor: u16,
}

/// The running cluster.
pub struct LocalCluster {
    spec: ClusterSpec,
    id: String,
    schema: String,
    /// The node's URL to the schema (what the nodes and the checker use).
    pub store_url: String,
    ports: Vec<Ports>,
    children: Vec<Option<Child>>,
    stopped: Vec<bool>,
    pub client: reqwest::Client,
    admin: sqlx::PgPool,
}

fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

impl LocalCluster {
    /// Makes the schema and starts every node; returns once all are ready
    /// and agree on members and owners.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string()[20..].to_string();
        let schema = format!("drill_{id}");
        let admin = sqlx::PgPool::connect(&spec.pg_url)
            .await
            .with_context(|| {
                format!(
                    "Postgres at {} (scripts/ensure-services.sh starts Postgres and creates the database)",
                    spec.pg_url
                )
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await?;
        let separator = if spec.pg_url.contains('?') { '&' } else { '?' };
        let store_url = format!(
            "{}{separator}options=-c%20search_path%3D{schema}",
            spec.pg_url
        );
        std::fs::create_dir_all(&spec.log_dir)?;
        let mut ports = Vec::new();
        for _ in 0..spec.nodes + spec.spare {
            ports.push(Ports {
                http: free_port()?,
                gossip: free_port()?,
                actor: free_port()?,
            });
        }
        let mut cluster = Self {
            children: (0..spec.nodes + spec.spare).map(|_| None).collect(),
            stopped: vec![false; spec.nodes + spec.spare],
            spec,
            id,
            schema,
            store_url,
            ports,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            admin,
        };
        for index in 0..cluster.spec.nodes {
            cluster.spawn(index)?;
        }
        cluster.wait_agreed(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Nodes there may be (started or not): the first `nodes` start, the
    /// spares when added.
    pub fn size(&self) -> usize {
        self.spec.nodes + self.spec.spare
    }

    pub fn node_id(index: usize) -> String {
        format!("node-{}", index + 1)
    }

    pub fn base(&self, index: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[index].http)
    }

    pub fn bases(&self) -> Vec<String> {
        (0..self.size()).map(|index| self.base(index)).collect()
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.spec
            .log_dir
            .join(format!("{}.log", Self::node_id(index)))
    }

    /// Starts (or restarts) node `index`.
    pub fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .take(self.spec.nodes)
            .map(|ports| format!("127.0.0.1:{}", ports.gossip))
            .collect();
        let ports = &self.ports[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(index))?;
        let mut command = Command::new(&self.spec.bin);
        command
            .arg("serve")
            .env("INVIGIL_NODE__ID", Self::node_id(index))
            .env("INVIGIL_NODE__LISTEN", format!("127.0.0.1:{}", ports.http))
            .env("INVIGIL_NODE__SHUTDOWN_GRACE_S", "5")
            .env("INVIGIL_STORE__URL", &self.store_url)
            .env("INVIGIL_STORE__MAX_CONNECTIONS", "8")
            .env("INVIGIL_REDIS__URL", &self.spec.redis_url)
            .env(
                "INVIGIL_REDIS__KEY_PREFIX",
                format!("invigil-drill-{}:", self.id),
            )
            .env("INVIGIL_AUTH__API_KEYS", format!("[\"{API_KEY}\"]"))
            .env(
                "INVIGIL_AUTH__JWT_SECRET",
                "drill-jwt-secret-0123456789-0123456789",
            )
            .env(
                "INVIGIL_AUTH__ACCESS_CODE_SECRET",
                "drill-code-secret-0123456789-012345678",
            )
            .env("INVIGIL_AUTH__ARGON2_MEMORY_KIB", "64")
            .env("INVIGIL_AUTH__ARGON2_ITERATIONS", "1")
            .env("INVIGIL_CLUSTER__ENABLED", "true")
            .env("INVIGIL_CLUSTER__CLUSTER_ID", format!("drill-{}", self.id))
            .env(
                "INVIGIL_CLUSTER__GOSSIP_LISTEN",
                format!("127.0.0.1:{}", ports.gossip),
            )
            .env(
                "INVIGIL_CLUSTER__ACTOR_LISTEN",
                format!("127.0.0.1:{}", ports.actor),
            )
            .env("INVIGIL_CLUSTER__SEEDS", format!("{seeds:?}"))
            .env("INVIGIL_CLUSTER__COOKIE", "drill-cluster-cookie-0123456789")
            .env("INVIGIL_TELEMETRY__LOG_FORMAT", "json")
            .env("INVIGIL_METRICS__ENABLED", "false")
            .env("RUST_LOG", "info,chitchat=warn,ractor_cluster=warn")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(ttl) = self.spec.lease_ttl_ms {
            command.env("INVIGIL_SHARDS__LEASE_TTL_MS", ttl.to_string());
        }
        if super::faults::can_partition().is_ok() {
            // A group of its own, so a partition can single out its packets.
            std::os::unix::process::CommandExt::gid(&mut command, super::faults::node_gid(index));
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.spec.bin.display()))?;
        self.children[index] = Some(child);
        self.stopped[index] = false;
        Ok(())
    }

    /// Nodes started and not killed or stopped.
    pub fn running(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|&index| self.children[index].is_some() && !self.stopped[index])
            .collect()
    }

    /// SIGKILL.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.children[index].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Cuts node `index` off from the others, Postgres and Redis (its HTTP
    /// port still answers); healed by [`super::faults::Partition::heal`],
    /// on drop, or at the latest after `at_most`.
    pub fn partition(
        &self,
        index: usize,
        at_most: Duration,
    ) -> anyhow::Result<super::faults::Partition> {
        let ports = &self.ports[index];
        super::faults::Partition::cut(
            &self.id,
            super::faults::node_gid(index),
            &super::faults::CutPorts {
                http: ports.http,
                actor: ports.actor,
                gossip: ports.gossip,
            },
            at_most,
        )
    }

    /// Node `index`'s readiness check of the cluster (`/readyz`): its
    /// detail, `None` when it does not answer.
    pub async fn readiness(&self, index: usize) -> Option<String> {
        let response = self
            .client
            .get(format!("{}/readyz", self.base(index)))
            .timeout(Duration::from_secs(4))
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["checks"]
            .as_array()?
            .iter()
            .find(|check| check["name"] == "cluster")
            .and_then(|check| check["detail"].as_str())
            .map(str::to_string)
    }

    /// SIGSTOP (`stop`) or SIGCONT.
    pub fn signal(&mut self, index: usize, stop: bool) -> anyhow::Result<()> {
        let child = self.children[index].as_ref().context("not running")?;
        let status = Command::new("kill")
            .arg(if stop { "-STOP" } else { "-CONT" })
            .arg(child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill failed");
        self.stopped[index] = stop;
        Ok(())
    }

    /// Asks node `index` to drain, and waits (bounded) until it has exited.
    pub async fn drain(&mut self, index: usize) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/api/v1/cluster/drain", self.base(index)))
            .header("X-Api-Key", API_KEY)
            .send()
            .await?
            .error_for_status()?;
        let child = self.children[index].as_mut().context("not running")?;
        for _ in 0..300 {
            if child.try_wait()?.is_some() {
                self.children[index] = None;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("node {} did not exit within 30 s of its drain", index + 1)
    }

    /// Node `index`'s view of the cluster.
    pub async fn view(&self, index: usize) -> Option<Value> {
        let response = self
            .client
            .get(format!("{}/api/v1/cluster", self.base(index)))
            .header("X-Api-Key", API_KEY)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Every running node sees the running nodes ready and the same owner
    /// holding every shard.
    pub async fn agreed(&self) -> bool {
        let running: Vec<String> = self.running().into_iter().map(Self::node_id).collect();
        let mut owners: Option<Vec<Value>> = None;
        for index in self.running() {
            let Some(view) = self.view(index).await else {
                return false;
            };
            let mut ready: Vec<String> = view["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|member| member["status"] == "ready")
                .filter_map(|member| member["node_id"].as_str().map(str::to_string))
                .collect();
            ready.sort();
            if ready != running {
                return false;
            }
            let Some(shards) = view["shards"].as_array() else {
                return false;
            };
            if shards
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

    /// Waits until [`Self::agreed`], and the membership is stable (the
    /// majority rule counts against it), or fails after `timeout`.
    pub async fn wait_agreed(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.agreed().await {
                let running = self.running().len();
                let mut stable = true;
                for index in self.running() {
                    let view = self.view(index).await;
                    stable &= view.is_some_and(|view| {
                        view["stable_members"].as_u64() == Some(running as u64)
                    });
                }
                if stable {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the nodes did not agree within {timeout:?} (logs in {})",
                self.spec.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The owner of every shard as node `index` sees it.
    pub async fn owners(&self, index: usize) -> anyhow::Result<Vec<String>> {
        let view = self.view(index).await.context("no cluster view")?;
        Ok(view["shards"]
            .as_array()
            .context("no shards")?
            .iter()
            .map(|shard| shard["owner"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// A pool on the drill's schema, for the checker.
    pub async fn store(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.store_url)
            .await?)
    }

    pub fn log_dir(&self) -> &Path {
        &self.spec.log_dir
    }

    /// Stops every node and drops the schema.
    pub async fn stop(mut self) {
        for index in 0..self.size() {
            if self.stopped[index] {
                let _ = self.signal(index, false);
            }
            let _ = self.kill(index);
        }
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.admin)
        .await;
        self.admin.close().await;
    }
}

impl Drop for LocalCluster {
    /// No node outlives the drill, whatever happened.
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
