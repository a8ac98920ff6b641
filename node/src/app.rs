//! Wiring: store, leases, journal writer, exam service, HTTP. Built from a
//! [`Config`], run until a shutdown signal, then stopped in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use invigil_actors::exam::Exam;
use invigil_actors::journal_writer::{JournalWriter, JournalWriterConfig, WriteMode};
use invigil_actors::live::directory::Directory;
use invigil_actors::live::{LiveConfig, LiveDeps};
use invigil_actors::ports::{Clock, SystemClock, owner_id};
use invigil_actors::ports::{HotState, WorkQueue};
use invigil_actors::shard::ShardId;
use invigil_actors::shard::leases::LeaseKeeper;
use invigil_actors::workers::Outbox;
use invigil_api::auth::{AdminKeys, Argon2Cost, CredentialHasher, LoginLimiter, TokenIssuer};
use invigil_api::body::BodyLimits;
use invigil_api::files::FileSettings;
use invigil_api::{ApiSettings, AppInner, AppState, Check, Readiness};
use invigil_store::{
    MemoryHotState, MemoryWorkQueue, RedisConnection, RedisHotState, RedisOptions, RedisWorkQueue,
    SqlOptions, SqlStore, redact_url,
};
use poem::EndpointExt;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::membership::{Membership, MembershipConfig};
use crate::cluster::node::{ClusterNode, Region, RemoteRooms};
use crate::cluster::transport::{TlsFiles, Transport, TransportConfig};
use crate::config::Config;
use crate::listener::NoDelayAcceptor;
use crate::workers::{Workers, flush_outbox};

/// A built node, bound to its listen address, not yet serving.
pub struct Application {
    config: Config,
    store: SqlStore,
    state: AppState,
    directory: Arc<Directory>,
    leases: Arc<LeaseKeeper>,
    cluster: Option<Arc<ClusterNode>>,
    journal_task: tokio::task::JoinHandle<()>,
    workers: Workers,
    outbox: Outbox,
    outbox_task: tokio::task::JoinHandle<()>,
    acceptor: NoDelayAcceptor,
    local_addr: SocketAddr,
}

/// Store reachable and every shard lease held (in a cluster: ready, with
/// a majority, holding every shard placed here).
struct NodeReadiness {
    store: SqlStore,
    leases: Arc<LeaseKeeper>,
    cluster: Arc<std::sync::OnceLock<Arc<ClusterNode>>>,
}

#[async_trait]
impl Readiness for NodeReadiness {
    async fn checks(&self) -> Vec<Check> {
        let store = match tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await {
            Ok(Ok(())) => Check {
                name: "store",
                ok: true,
                detail: self.store.backend_name().to_string(),
            },
            Ok(Err(error)) => Check {
                name: "store",
                ok: false,
                detail: error.to_string(),
            },
            Err(_) => Check {
                name: "store",
                ok: false,
                detail: "no answer within 2 s".into(),
            },
        };
        let held = self.leases.held_count();
        let leases = match self.cluster.get() {
            None => Check {
                name: "shard_leases",
                ok: held == usize::from(invigil_actors::shard::SHARD_COUNT),
                detail: format!(
                    "{held} of {} shards held",
                    invigil_actors::shard::SHARD_COUNT
                ),
            },
            Some(cluster) => Check {
                name: "cluster",
                ok: cluster.settled(),
                detail: format!(
                    "{held} of {} placed shards held",
                    self.leases.desired().len()
                ),
            },
        };
        vec![store, leases]
    }
}

impl Application {
    /// Binds the listener, connects, migrates and takes the shard leases.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] with another clock (tests move time).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // Bind first: a second process on a taken port must fail before it
        // touches shard leases (taking them would fence the running node).
        let acceptor = TcpListener::bind(config.node.listen)
            .into_acceptor()
            .await
            .map(NoDelayAcceptor::new)
            .with_context(|| format!("binding {}", config.node.listen))?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .context("the listener has no address")?;
        let url = config.store.url.expose();
        let mut options = SqlOptions::new(url);
        options.max_connections = config.store.max_connections;
        options.acquire_timeout = Duration::from_millis(config.store.acquire_timeout_ms);
        options.idle_in_transaction_timeout =
            Duration::from_millis(config.store.idle_in_transaction_timeout_ms);
        options.sqlite_full_sync = config.store.sqlite_full_sync;
        let store = SqlStore::connect(&options)
            .await
            .with_context(|| format!("opening {}", redact_url(url)))?;
        if config.store.migrate_on_start {
            store.migrate().await.context("migrating the database")?;
        }

        // A restarted node is a new incarnation: its owner id changes, and
        // taking its old leases bumps their epochs.
        let started = clock.now();
        let owner = owner_id(&config.node.id, started);
        let leases = Arc::new(LeaseKeeper::new(
            owner.clone(),
            Arc::new(store.clone()),
            clock.clone(),
            Duration::from_millis(config.shards.lease_ttl_ms),
        ));
        // Alone, the node hosts every shard; in a cluster, the shards its
        // placement gives it, once it is a ready member.
        if !config.cluster.enabled {
            let all_shards: Vec<ShardId> = ShardId::all().collect();
            let held = leases
                .host(all_shards.clone())
                .await
                .context("acquiring shard leases")?;
            if held < all_shards.len() {
                warn!(
                    held,
                    "another node holds some shards; they are taken over when their leases expire"
                );
            }
        }

        let (journal, journal_task) = JournalWriter::spawn(
            Arc::new(store.clone()),
            JournalWriterConfig {
                max_batch: config.journal.max_batch,
                linger: Duration::from_millis(config.journal.linger_ms),
                queue_capacity: config.journal.queue_capacity,
                max_attempts: 3,
                lanes: config.journal.lanes.clamp(1, 64),
                mode: match config.journal.mode {
                    crate::config::JournalMode::Group => WriteMode::Group,
                    crate::config::JournalMode::PerEntry => WriteMode::PerEntry,
                },
            },
        );
        let (hot, queue) = hot_state_and_queue(&config)?;
        let (outbox, outbox_task) = Outbox::start(queue.clone(), config.workers.outbox_capacity);
        let directory = Directory::new(Arc::new(LiveDeps {
            node_id: config.node.id.clone(),
            plans: Arc::new(store.clone()),
            journal: Arc::new(store.clone()),
            writer: journal,
            hot: hot.clone(),
            leases: leases.clone(),
            clock: clock.clone(),
            config: LiveConfig {
                tick: Duration::from_millis(config.live.tick_ms),
                resume_buffer: config.live.resume_buffer,
                socket_queue: config.live.socket_queue,
                events_per_minute: config.live.events_per_minute,
                call_timeout: Duration::from_millis(config.live.call_timeout_ms),
            },
            outbox: outbox.clone(),
            webhooks: !config.webhook.url.is_empty(),
            remote: std::sync::OnceLock::new(),
        }));
        let workers = Workers::start(
            &config,
            &owner,
            &directory,
            &store,
            hot.clone(),
            queue.clone(),
            clock.clone(),
        )
        .await
        .context("starting the queue workers")?;
        let exam = Arc::new(Exam::new(directory.clone()));
        let cluster_slot: Arc<std::sync::OnceLock<Arc<ClusterNode>>> = Arc::default();
        let auth = &config.auth;
        let hasher = CredentialHasher::new(
            auth.access_code_secret.expose().as_bytes(),
            Argon2Cost {
                memory_kib: auth.argon2_memory_kib,
                iterations: auth.argon2_iterations,
                parallelism: auth.argon2_parallelism,
            },
        )?;
        let mut login_limiter = LoginLimiter::new(auth.login_max_failures, auth.login_window_s);
        if config.redis.url_opt().is_some() {
            // Failures count across the cluster.
            login_limiter = login_limiter.with_shared(hot.clone());
        }
        let state = AppState::new(AppInner {
            node_id: config.node.id.clone(),
            plans: Arc::new(store.clone()),
            files: Arc::new(store.clone()),
            statistics: Arc::new(store.clone()),
            hot,
            queue,
            exam,
            clock,
            hasher,
            tokens: TokenIssuer::new(auth.jwt_secret.expose().as_bytes()),
            admin_keys: AdminKeys::new(auth.api_keys.iter().map(|key| key.expose())),
            readiness: Arc::new(NodeReadiness {
                store: store.clone(),
                leases: leases.clone(),
                cluster: cluster_slot.clone(),
            }),
            settings: ApiSettings {
                candidate_token_ttl_s: auth.candidate_token_ttl_s,
                proctor_token_ttl_s: auth.proctor_token_ttl_s,
                login_max_failures: auth.login_max_failures,
                login_window_s: auth.login_window_s,
                body_limits: BodyLimits {
                    default_bytes: config.limits.body_bytes,
                    import_bytes: config.limits.import_body_bytes,
                },
                ws_max_message_bytes: config.limits.ws_message_bytes,
                ws_hello_timeout: Duration::from_millis(config.limits.ws_hello_timeout_ms),
                ws_frames_per_second: config.limits.ws_frames_per_second.max(1),
                files: FileSettings {
                    max_bytes: config.files.max_bytes,
                    cache_max_age: Duration::from_secs(config.files.cache_max_age_s),
                },
            },
            login_limiter,
            cluster: std::sync::OnceLock::new(),
        });
        if config.cluster.enabled {
            let node = join_cluster(
                &config, &owner, local_addr, started, &store, &leases, &directory,
            )
            .await?;
            node.attach(
                state.clone(),
                invigil_api::app::build(state.clone()).boxed(),
            );
            let port: Arc<dyn invigil_api::cluster::ClusterPort> = node.clone();
            let _ = state.cluster.set(port);
            let _ = cluster_slot.set(node);
        }
        Ok(Self {
            config,
            store,
            state,
            directory,
            leases,
            cluster: cluster_slot.get().cloned(),
            journal_task,
            workers,
            outbox,
            outbox_task,
            acceptor,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then: stops accepting, lets
    /// requests finish (up to the grace period), flushes the journal, gives
    /// the shard leases back and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            store,
            state,
            directory,
            leases,
            cluster,
            journal_task,
            workers,
            outbox,
            outbox_task,
            acceptor,
            local_addr,
        } = self;
        let (stop_background, background_stopped) = watch::channel(false);
        let renewal = tokio::spawn(leases.clone().run_renewal(background_stopped.clone()));
        let keeper = tokio::spawn(keep_live_plans(
            directory.clone(),
            background_stopped.clone(),
        ));
        let control = cluster
            .clone()
            .map(|node| tokio::spawn(node.run(background_stopped)));
        info!(node_id = %config.node.id, addr = %local_addr, store = store.backend_name(), "serving");

        let app = invigil_api::app::build(state);
        let grace = Duration::from_secs(config.node.shutdown_grace_s);
        // On the signal, rooms first tell their sockets to reconnect (to
        // another node, or to this one once it is back), so the HTTP server
        // is not left waiting for long-lived sockets.
        // In a cluster, SIGTERM and `POST /api/v1/cluster/drain` drain
        // first: every shard is handed off (its rooms flushed, its sockets
        // told to reconnect) before the node stops.
        let retiring = directory.clone();
        let draining = cluster.clone();
        let shutdown = async move {
            match &draining {
                Some(node) => {
                    tokio::select! {
                        () = shutdown => node.start_drain().await,
                        () = node.wait_drained() => {}
                    }
                    if tokio::time::timeout(grace, node.wait_drained())
                        .await
                        .is_err()
                    {
                        warn!("the drain did not hand every shard off within the grace period");
                    }
                    info!("drained: stopping");
                }
                None => shutdown.await,
            }
            info!("shutting down: retiring live rooms");
            retiring.retire_all("the node is shutting down");
        };
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(grace))
            .await
            .context("http server")?;
        info!("http stopped; flushing");
        let _ = stop_background.send(true);
        let _ = keeper.await;
        if let Some(control) = control {
            let _ = control.await;
        }
        // The cluster is left (shards handed off); its transport stops and
        // it lets go of the app, so the journal's last handles drop.
        if let Some(node) = cluster {
            node.shutdown().await;
        }
        drop(directory);

        // Log lines and rule inputs of the last moments go to the queue;
        // the workers stop (what they had not acknowledged is redelivered
        // to another node's workers, or to this node's next process). The
        // rules worker holds live actors' handles, so it stops first.
        flush_outbox(&outbox, Duration::from_secs(2)).await;
        outbox_task.abort();
        workers.stop(grace).await;
        // The app, the workers and the cluster (and with them the last
        // journal handles) are gone: the writer commits what is queued and ends.
        if tokio::time::timeout(grace, journal_task).await.is_err() {
            warn!("journal writer did not finish within the grace period");
        }
        let _ = renewal.await;
        if let Err(error) = leases.release_all().await {
            warn!(%error, "could not release shard leases; they expire on their own");
        }
        store.close().await;
        info!("stopped");
        Ok(())
    }
}

/// The hot state and the work queue: on Redis when `redis.url` is set (one
/// connection shared by both), in process otherwise. Nothing connects here:
/// a node starts while Redis is down — the hot state is a cache and the
/// queue's producers hold their work — and the adapters connect (and
/// reconnect) on their own. A background ping tells the log how it went.
fn hot_state_and_queue(config: &Config) -> anyhow::Result<(Arc<dyn HotState>, Arc<dyn WorkQueue>)> {
    let Some(url) = config.redis.url_opt() else {
        return Ok((
            Arc::new(MemoryHotState::default()),
            Arc::new(MemoryWorkQueue::default()),
        ));
    };
    let mut options = RedisOptions::new(url);
    options.key_prefix = config.redis.key_prefix.clone();
    options.op_timeout = Duration::from_millis(config.redis.op_timeout_ms);
    options.buffer_ttl = Duration::from_secs(config.redis.resume_ttl_s);
    let connection = RedisConnection::new(options).context("redis.url")?;
    let probe = connection.clone();
    tokio::spawn(async move {
        match probe.ping().await {
            Ok(()) => info!(url = probe.redacted_url(), "redis connected"),
            Err(error) => warn!(
                url = probe.redacted_url(),
                %error,
                "redis unreachable at start; resume buffers and the work queue degrade until it answers"
            ),
        }
    });
    Ok((
        Arc::new(RedisHotState::new(connection.clone())),
        Arc::new(RedisWorkQueue::new(connection)),
    ))
}

/// Starts membership and the transport and builds this node's part of the
/// cluster (docs/cluster.md).
async fn join_cluster(
    config: &Config,
    owner: &str,
    local_addr: SocketAddr,
    started: invigil_actors::domain::Timestamp,
    store: &SqlStore,
    leases: &Arc<LeaseKeeper>,
    directory: &Arc<Directory>,
) -> anyhow::Result<Arc<ClusterNode>> {
    let cluster = &config.cluster;
    let region = Region::default();
    let slot = region.0.clone();
    let transport = Transport::start(
        TransportConfig {
            node_id: config.node.id.clone(),
            listen: cluster.actor_listen,
            cookie: cluster.cookie.expose().to_string(),
            call_timeout: Duration::from_millis(cluster.call_timeout_ms),
            call_attempts: cluster.call_attempts,
            tls: match (&cluster.tls_cert, &cluster.tls_key, &cluster.tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                    ca: ca.into(),
                }),
                _ => None,
            },
        },
        Arc::new(region),
    )
    .await
    .context("starting the cluster transport")?;
    let membership = Membership::start(MembershipConfig {
        cluster_id: cluster.cluster_id.clone(),
        node_id: config.node.id.clone(),
        generation: u64::try_from(started.as_millis()).unwrap_or(0),
        gossip_listen: cluster.gossip_listen,
        gossip_advertise: cluster.gossip_advertise.unwrap_or(cluster.gossip_listen),
        seeds: cluster.seeds.clone(),
        gossip_interval: Duration::from_millis(cluster.gossip_interval_ms),
        phi_threshold: cluster.phi_threshold,
        http_addr: cluster.http_advertise.unwrap_or(local_addr).to_string(),
        actor_addr: cluster
            .actor_advertise
            .unwrap_or(cluster.actor_listen)
            .to_string(),
    })
    .await
    .context("starting cluster membership")?;
    info!(node_id = %config.node.id, owner, gossip = %cluster.gossip_listen, actor = %cluster.actor_listen, "joined the cluster gossip");
    let node = ClusterNode::new(
        config.node.id.clone(),
        membership,
        transport,
        leases.clone(),
        Arc::new(store.clone()),
        directory.clone(),
    );
    let _ = slot.set(Arc::downgrade(&node));
    directory.set_remote(Arc::new(RemoteRooms(Arc::downgrade(&node))));
    Ok(node)
}

/// Activates the live plans held here now and every few seconds (a plan
/// whose coordinator stopped is brought back), until `stopped`.
async fn keep_live_plans(directory: Arc<Directory>, mut stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if let Err(error) = directory.activate_active_plans().await {
                    warn!(%error, "activating live plans failed");
                }
            }
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => info!("SIGINT received"),
        _ = terminate => info!("SIGTERM received"),
    }
}
