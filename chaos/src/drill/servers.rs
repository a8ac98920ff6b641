//! Data stores of a drill's own, for the faults that restart them: a
//! `redis-server` and a Postgres server (initdb into a temporary directory),
//! each on a free loopback port, so restarting one disturbs nothing else on
//! the machine. A detached watchdog stops them if the drill dies without
//! cleaning up.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

fn free_port() -> anyhow::Result<u16> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits (bounded) until something listens on `port`.
async fn listening(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("nothing listened on 127.0.0.1:{port} within {within:?}")
}

/// Runs `script` in a detached shell that outlives this process: once this
/// process is gone it runs `cleanup`.
fn watchdog(cleanup: &str) -> anyhow::Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 2; done; {cleanup}",
            std::process::id()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("the watchdog that stops the drill's own server")?;
    Ok(())
}

/// A `redis-server` of the drill's own, without persistence: a restart
/// loses everything it held, like a crashed cache.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Whether this machine can run one.
    pub fn available() -> anyhow::Result<()> {
        anyhow::ensure!(
            found("redis-server"),
            "the redis-restart drill runs a redis-server of its own (Debian: apt-get install redis-server)"
        );
        Ok(())
    }

    pub async fn start() -> anyhow::Result<Self> {
        Self::available()?;
        let port = free_port()?;
        let mut redis = Self { port, child: None };
        redis.launch().await?;
        watchdog(&format!(
            "redis-cli -p {port} shutdown nosave >/dev/null 2>&1"
        ))?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port, empty.
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        listening(self.port, Duration::from_secs(10)).await
    }

    /// SIGKILL: everything it held is gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A Postgres server of the drill's own: `initdb` into a temporary
/// directory, trust authentication on 127.0.0.1 only, `fsync` and
/// synchronous commit on (as in production: a crash must not lose a
/// committed row). As root, its programs run as the `postgres` user.
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

impl PrivatePostgres {
    /// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`,
    /// else the newest `/usr/lib/postgresql/*/bin`.
    fn bindir() -> anyhow::Result<PathBuf> {
        let configured = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
        let mut candidates: Vec<PathBuf> = configured.into_iter().collect();
        let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .collect();
        debian.sort_by_key(|path| {
            path.parent()
                .and_then(Path::file_name)
                .and_then(|name| name.to_str())
                .and_then(|name| name.parse::<u32>().ok())
                .unwrap_or(0)
        });
        candidates.extend(debian.into_iter().rev());
        candidates
            .into_iter()
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
            .context(
                "the postgres-restart drill runs a Postgres server of its own and found no initdb (Debian: apt-get install postgresql)",
            )
    }

    fn as_root() -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
    }

    /// Whether this machine can run one.
    pub fn available() -> anyhow::Result<()> {
        Self::bindir()?;
        if Self::as_root() {
            anyhow::ensure!(
                Command::new("id")
                    .arg("postgres")
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success()),
                "as root, the postgres-restart drill runs its server as the postgres user, and there is none"
            );
        }
        Ok(())
    }

    /// One of its programs, as the `postgres` user when this process is root.
    fn program(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if Self::as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, mut command: Command, what: &str) -> anyhow::Result<()> {
        let output = command
            .stdin(Stdio::null())
            .output()
            .with_context(|| what.to_string())?;
        anyhow::ensure!(
            output.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub async fn start() -> anyhow::Result<Self> {
        Self::available()?;
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("invigil-drill-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut server = Self {
            port,
            dir,
            bin: Self::bindir()?,
            running: false,
        };
        if Self::as_root() {
            let status = Command::new("chown")
                .args(["postgres:", &server.dir.display().to_string()])
                .status()?;
            anyhow::ensure!(status.success(), "chown of {}", server.dir.display());
        }
        let mut initdb = server.program("initdb");
        initdb.arg("-D").arg(server.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        server.run(initdb, "initdb")?;
        let settings = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 64MB\n",
            server.dir.display()
        );
        let conf = server.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).context("postgresql.conf")?;
        text.push_str(&settings);
        std::fs::write(&conf, text)?;
        watchdog(&format!(
            "{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            if Self::as_root() {
                format!(
                    "runuser -u postgres -- {}",
                    server.bin.join("pg_ctl").display()
                )
            } else {
                server.bin.join("pg_ctl").display().to_string()
            },
            server.data().display(),
            server.dir.display()
        ))?;
        server.launch().await?;
        Ok(server)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (after initdb, or after a crash: WAL recovery).
    pub async fn launch(&mut self) -> anyhow::Result<()> {
        let mut start = self.program("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"]);
        self.run(start, "pg_ctl start")?;
        self.running = true;
        listening(self.port, Duration::from_secs(10)).await
    }

    /// `pg_ctl stop -m immediate`: every process ends at once without a
    /// checkpoint (a crash); the next start recovers from the WAL.
    pub fn crash(&mut self) -> anyhow::Result<()> {
        let mut stop = self.program("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(stop, "pg_ctl stop -m immediate")?;
        self.running = false;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.crash();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The drill's own data stores, for the scenarios that restart one.
#[derive(Default)]
pub struct Stores {
    pub redis: Option<PrivateRedis>,
    pub postgres: Option<PrivatePostgres>,
}

impl Stores {
    /// Points the cluster at the stores of the drill's own, where it has any.
    pub fn apply(&self, spec: &mut super::cluster::ClusterSpec) {
        if let Some(redis) = &self.redis {
            spec.redis_url = redis.url();
        }
        if let Some(postgres) = &self.postgres {
            spec.pg_url = postgres.url();
        }
    }
}
