//! The cluster a drill runs on. Usually a local one: N `invigil serve`
//! processes on loopback ports, one Postgres schema of their own (dropped
//! afterwards) and a Redis key prefix of their own; each node's log goes to
//! a file. The faults are real: SIGKILL, SIGSTOP/SIGCONT, the drain
//! endpoint. Or an existing fleet ([`Cluster::attach`]): its nodes named by
//! URL, the faults done by the commands of a control file
//! ([`super::fleet`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

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

/// An existing fleet's nodes and how to inject faults into them.
struct Remote {
    nodes: Vec<super::fleet::Node>,
    control: super::fleet::ControlFile,
    /// Nodes not killed or drained by the drill.
    up: Vec<bool>,
}

/// The running cluster.
pub struct Cluster {
    spec: ClusterSpec,
    /// Set for an existing fleet (`--target`): no process is the drill's.
    remote: Option<Remote>,
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

impl Cluster {
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
            remote: None,
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

    /// An existing fleet: every node's base URL in `targets`, the faults
    /// by `control`'s commands, the checker reading `control.store_url`.
    pub async fn attach(
        spec: ClusterSpec,
        targets: &[String],
        control: super::fleet::ControlFile,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let key = control.api_key.clone().unwrap_or_default();
        let nodes = super::fleet::discover(&client, targets, &key).await?;
        let admin = sqlx::PgPool::connect(&control.store_url)
            .await
            .context("the control file's store_url")?;
        let count = nodes.len();
        let cluster = Self {
            spec: ClusterSpec {
                nodes: count,
                spare: 0,
                ..spec
            },
            remote: Some(Remote {
                nodes,
                up: vec![true; count],
                control: control.clone(),
            }),
            id: uuid::Uuid::now_v7().simple().to_string()[20..].to_string(),
            schema: String::new(),
            store_url: control.store_url,
            ports: Vec::new(),
            children: (0..count).map(|_| None).collect(),
            stopped: vec![false; count],
            client,
            admin,
        };
        cluster
            .wait_agreed(Duration::from_secs(30))
            .await
            .context("the fleet before the drill")?;
        Ok(cluster)
    }

    /// The fleet's control file, when drilling an existing fleet.
    pub fn control(&self) -> Option<&super::fleet::ControlFile> {
        self.remote.as_ref().map(|remote| &remote.control)
    }

    /// A name for the drill's plans, unique to this drill.
    pub fn plan_id(&self) -> String {
        format!("drill-{}", self.id)
    }

    /// The admin key of the nodes.
    pub fn api_key(&self) -> &str {
        self.control()
            .and_then(|control| control.api_key.as_deref())
            .unwrap_or(API_KEY)
    }

    /// Runs the control file's command `name` on node `index`.
    fn command(&self, name: &str, index: usize) -> anyhow::Result<()> {
        let remote = self.remote.as_ref().context("not a fleet")?;
        let control = &remote.control;
        let command = match name {
            "kill" => control.kill.as_ref(),
            "stop" => control.stop.as_ref(),
            "cont" => control.cont.as_ref(),
            "start" => control.start.as_ref(),
            "cut" => control.cut.as_ref(),
            _ => None,
        };
        control.run(name, command, Some(&remote.nodes[index]))
    }

    /// Nodes there may be (started or not): the first `nodes` start, the
    /// spares when added.
    pub fn size(&self) -> usize {
        self.spec.nodes + self.spec.spare
    }

    pub fn node_id(&self, index: usize) -> String {
        match &self.remote {
            Some(remote) => remote.nodes[index].id.clone(),
            None => format!("node-{}", index + 1),
        }
    }

    pub fn base(&self, index: usize) -> String {
        match &self.remote {
            Some(remote) => remote.nodes[index].url.clone(),
            None => format!("http://127.0.0.1:{}", self.ports[index].http),
        }
    }

    pub fn bases(&self) -> Vec<String> {
        (0..self.size()).map(|index| self.base(index)).collect()
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.spec
            .log_dir
            .join(format!("{}.log", self.node_id(index)))
    }

    /// Starts (or restarts) node `index`.
    pub fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        if self.remote.is_some() {
            self.command("start", index)?;
            if let Some(remote) = &mut self.remote {
                remote.up[index] = true;
            }
            self.stopped[index] = false;
            return Ok(());
        }
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
            .env("INVIGIL_NODE__ID", self.node_id(index))
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
            .filter(|&index| {
                let up = match &self.remote {
                    Some(remote) => remote.up[index],
                    None => self.children[index].is_some(),
                };
                up && !self.stopped[index]
            })
            .collect()
    }

    /// SIGKILL.
    pub fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        if self.remote.is_some() {
            self.command("kill", index)?;
            if let Some(remote) = &mut self.remote {
                remote.up[index] = false;
            }
            return Ok(());
        }
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
        if let Some(remote) = &self.remote {
            self.command("cut", index)?;
            return Ok(super::faults::Partition::by_command(
                remote.control.clone(),
                remote.nodes[index].clone(),
            ));
        }
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

    /// SIGSTOP (`stop`) or SIGCONT.
    pub fn signal(&mut self, index: usize, stop: bool) -> anyhow::Result<()> {
        if self.remote.is_some() {
            self.command(if stop { "stop" } else { "cont" }, index)?;
            self.stopped[index] = stop;
            return Ok(());
        }
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
            .header("X-Api-Key", self.api_key())
            .send()
            .await?
            .error_for_status()?;
        if self.remote.is_some() {
            // Gone when its HTTP port no longer answers.
            for _ in 0..600 {
                let answered = self
                    .client
                    .get(format!("{}/healthz", self.base(index)))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok();
                if !answered {
                    if let Some(remote) = &mut self.remote {
                        remote.up[index] = false;
                    }
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::bail!("{} still answers 60 s after its drain", self.node_id(index));
        }
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

    /// Stops every node and drops the schema; on a fleet, resumes what it
    /// stopped and starts what it killed (when the control file can), and
    /// ends the drill's plans.
    pub async fn stop(mut self) {
        if self.remote.is_some() {
            self.restore();
            self.admin.close().await;
            return;
        }
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

impl Drop for Cluster {
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

impl Cluster {
    /// Leaves a fleet as the drill found it, as far as it can (the plans
    /// the drill made are ended by the drill).
    fn restore(&mut self) {
        for index in 0..self.size() {
            let node = self.node_id(index);
            if self.stopped[index]
                && let Err(error) = self.signal(index, false)
            {
                eprintln!("the drill could not resume {node}: {error:#}");
            }
            let down = self.remote.as_ref().is_some_and(|remote| !remote.up[index]);
            let can_start = self
                .control()
                .is_some_and(|control| control.start.is_some());
            if down && !can_start {
                eprintln!("{node} is down after the drill: the control file has no `start`");
            } else if down && let Err(error) = self.spawn(index) {
                eprintln!("the drill could not start {node} again: {error:#}");
            }
        }
    }
}
