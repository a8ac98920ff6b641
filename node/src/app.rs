//! Wiring: store, leases, journal writer, cluster, live exam, HTTP — built
//! in dependency order from a [`Config`], every part set once; run until a
//! shutdown signal, then stopped in order.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use invigil_actors::domain::Timestamp;
use invigil_actors::exam::Exam;
use invigil_actors::journal_writer::JournalWriter;
use invigil_actors::live::directory::Directory;
use invigil_actors::live::{LiveDeps, RemoteLive};
use invigil_actors::metrics::Metrics;
use invigil_actors::ports::{Clock, HotState, SystemClock, WorkQueue, owner_id};
use invigil_actors::shard::leases::LeaseKeeper;
use invigil_actors::shard::{SHARD_COUNT, ShardId};
use invigil_actors::workers::Outbox;
use invigil_api::auth::{AdminKeys, CredentialHasher, LoginLimiter, TokenIssuer};
use invigil_api::{AppInner, AppState, Check, Readiness};
use invigil_store::{
    MemoryHotState, MemoryWorkQueue, RedisConnection, RedisHotState, RedisWorkQueue, SqlStore,
    redact_url,
};
use poem::EndpointExt;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::cluster::control;
use crate::cluster::inbound::{Inbound, InboundServer, Inbox};
use crate::cluster::membership::Membership;
use crate::cluster::node::ClusterNode;
use crate::cluster::transport::Transport;
use crate::config::Config;
use crate::listener::NoDelayAcceptor;
use crate::metrics::MetricsPipeline;
use crate::workers::{WorkerPorts, Workers, flush_outbox};

/// A built node, bound to its listen address, not yet serving.
pub struct Application {
    config: Config,
    store: SqlStore,
    state: AppState,
    directory: Arc<Directory>,
    leases: Arc<LeaseKeeper>,
    cluster: Option<Joined>,
    journal_task: tokio::task::JoinHandle<()>,
    workers: Workers,
    outbox: Outbox,
    outbox_task: tokio::task::JoinHandle<()>,
    acceptor: NoDelayAcceptor,
    local_addr: SocketAddr,
    /// `GET /metrics` on its own address (`metrics.listen`).
    metrics_server: Option<(Arc<MetricsPipeline>, NoDelayAcceptor)>,
}

/// This node's part of the cluster, and what other nodes have sent it
/// while it was being built (served once it runs).
struct Joined {
    node: Arc<ClusterNode>,
    inbox: mpsc::Receiver<Inbound>,
}

/// Store reachable and every shard lease held (in a cluster: ready, with
/// a majority, holding every shard placed here).
struct NodeReadiness {
    store: SqlStore,
    leases: Arc<LeaseKeeper>,
    cluster: Option<Arc<ClusterNode>>,
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
        let leases = match &self.cluster {
            None => Check {
                name: "shard_leases",
                ok: held == usize::from(SHARD_COUNT),
                detail: format!("{held} of {SHARD_COUNT} shards held"),
            },
            Some(cluster) => Check {
                name: "cluster",
                ok: cluster.settled(),
                detail: if cluster.hosting() {
                    format!(
                        "{held} of {} placed shards held",
                        self.leases.desired().len()
                    )
                } else {
                    "cut off from most of the cluster: hosting nothing".into()
                },
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
        let (acceptor, local_addr) = bind(&config).await?;
        let pipeline = metrics_pipeline(&config)?;
        let metrics_server = match (&pipeline, config.metrics.listen) {
            (Some(pipeline), Some(listen)) => {
                let acceptor = TcpListener::bind(listen)
                    .into_acceptor()
                    .await
                    .map(NoDelayAcceptor::new)
                    .with_context(|| format!("binding metrics.listen {listen}"))?;
                Some((pipeline.clone(), acceptor))
            }
            _ => None,
        };
        let metrics = pipeline
            .as_ref()
            .map_or_else(Metrics::noop, |pipeline| pipeline.metrics().clone());
        let store = open_store(&config).await?;
        // A restarted node is a new incarnation: its owner id changes, and
        // taking its old leases bumps their epochs.
        let started = clock.now();
        let owner = owner_id(&config.node.id, started);
        let leases = take_leases(&config, &owner, &store, &clock, &metrics).await?;
        let (journal, journal_task) = JournalWriter::spawn(
            Arc::new(store.clone()),
            config.journal_writer(),
            metrics.clone(),
        );
        let (hot, queue) = hot_state_and_queue(&config)?;
        let (outbox, outbox_task) = Outbox::start(queue.clone(), config.workers.outbox_capacity);
        let cluster = if config.cluster.enabled {
            Some(
                join_cluster(
                    &config, &owner, started, local_addr, &store, &leases, &metrics,
                )
                .await?,
            )
        } else {
            None
        };
        let cluster_node = cluster.as_ref().map(|joined| joined.node.clone());
        let directory = Directory::new(Arc::new(LiveDeps {
            node_id: config.node.id.clone(),
            plans: Arc::new(store.clone()),
            journal: Arc::new(store.clone()),
            writer: journal,
            hot: hot.clone(),
            leases: leases.clone(),
            clock: clock.clone(),
            config: config.live(),
            outbox: outbox.clone(),
            webhooks: !config.webhook.url.is_empty(),
            remote: cluster_node.clone().map(|node| node as Arc<dyn RemoteLive>),
            metrics: metrics.clone(),
        }));
        let workers = Workers::start(
            &config,
            &owner,
            &directory,
            &store,
            WorkerPorts {
                hot: hot.clone(),
                queue: queue.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
            },
        )
        .await
        .context("starting the queue workers")?;
        let auth = &config.auth;
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
            exam: Arc::new(Exam::new(directory.clone())),
            clock,
            hasher: CredentialHasher::new(
                auth.access_code_secret.expose().as_bytes(),
                config.argon2_cost(),
            )?,
            tokens: TokenIssuer::new(auth.jwt_secret.expose().as_bytes()),
            admin_keys: AdminKeys::new(auth.api_keys.iter().map(|key| key.expose())),
            readiness: Arc::new(NodeReadiness {
                store: store.clone(),
                leases: leases.clone(),
                cluster: cluster_node.clone(),
            }),
            settings: config.api_settings(),
            login_limiter,
            cluster: cluster_node.map(|node| node as Arc<dyn invigil_api::cluster::ClusterPort>),
            metrics,
            // On the API's address unless `metrics.listen` gives it its own.
            exposition: pipeline
                .as_ref()
                .filter(|_| config.metrics.listen.is_none())
                .map(MetricsPipeline::exposition),
        });
        Ok(Self {
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
            metrics_server,
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
            metrics_server,
        } = self;
        let (stop_background, background_stopped) = watch::channel(false);
        let metrics_task = metrics_server.map(|(pipeline, acceptor)| {
            let mut stopped = background_stopped.clone();
            tokio::spawn(async move {
                let endpoint = invigil_api::metrics::endpoint(pipeline.exposition());
                let app = poem::Route::new().at("/metrics", endpoint);
                let stop = async move {
                    let _ = stopped.wait_for(|stopped| *stopped).await;
                };
                if let Err(error) = poem::Server::new_with_acceptor(acceptor)
                    .run_with_graceful_shutdown(app, stop, Some(Duration::from_secs(1)))
                    .await
                {
                    warn!(%error, "the metrics server stopped");
                }
            })
        });
        let renewal = tokio::spawn(leases.clone().run_renewal(background_stopped.clone()));
        let keeper = tokio::spawn(keep_live_plans(
            directory.clone(),
            background_stopped.clone(),
        ));
        // In a cluster: the control loop, and the server of what other
        // nodes send (it answers with the same app as clients get).
        let (node, cluster_tasks) = match cluster {
            Some(Joined { node, inbox }) => {
                let control = tokio::spawn(control::run(
                    node.clone(),
                    directory.clone(),
                    background_stopped.clone(),
                ));
                let inbound = InboundServer {
                    node: node.clone(),
                    directory: directory.clone(),
                    state: state.clone(),
                    endpoint: Arc::new(invigil_api::app::build(state.clone()).boxed()),
                };
                let inbound = tokio::spawn(inbound.run(inbox, background_stopped));
                (Some(node), vec![control, inbound])
            }
            None => (None, Vec::new()),
        };
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
        let draining = node.clone();
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
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        for task in cluster_tasks {
            let _ = task.await;
        }
        // The cluster is left (shards handed off): its transport stops, and
        // with the inbound server gone the journal's last handles can drop.
        if let Some(node) = node {
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

/// Binds the HTTP listener.
async fn bind(config: &Config) -> anyhow::Result<(NoDelayAcceptor, SocketAddr)> {
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
    Ok((acceptor, local_addr))
}

/// The metrics pipeline, unless `metrics.enabled` is false.
fn metrics_pipeline(config: &Config) -> anyhow::Result<Option<Arc<MetricsPipeline>>> {
    if !config.metrics.enabled {
        return Ok(None);
    }
    let pipeline =
        MetricsPipeline::new(&config.node.id).context("starting the metrics pipeline")?;
    Ok(Some(Arc::new(pipeline)))
}

/// Connects to the database and migrates it (unless told not to).
async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(&config.sql_options())
        .await
        .with_context(|| format!("opening {}", redact_url(config.store.url.expose())))?;
    if config.store.migrate_on_start {
        store.migrate().await.context("migrating the database")?;
    }
    Ok(store)
}

/// The lease keeper of this incarnation. Alone, the node takes every shard
/// now; in a cluster, the control loop takes the shards placement gives it
/// once it is a ready member.
async fn take_leases(
    config: &Config,
    owner: &str,
    store: &SqlStore,
    clock: &Arc<dyn Clock>,
    metrics: &Metrics,
) -> anyhow::Result<Arc<LeaseKeeper>> {
    let leases = Arc::new(
        LeaseKeeper::new(
            owner.to_string(),
            Arc::new(store.clone()),
            clock.clone(),
            config.lease_ttl(),
        )
        .with_metrics(metrics.clone()),
    );
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
    Ok(leases)
}

/// The hot state and the work queue: on Redis when `redis.url` is set (one
/// connection shared by both), in process otherwise. Nothing connects here:
/// a node starts while Redis is down — the hot state is a cache and the
/// queue's producers hold their work — and the adapters connect (and
/// reconnect) on their own. A background ping tells the log how it went.
fn hot_state_and_queue(config: &Config) -> anyhow::Result<(Arc<dyn HotState>, Arc<dyn WorkQueue>)> {
    let Some(options) = config.redis_options() else {
        return Ok((
            Arc::new(MemoryHotState::default()),
            Arc::new(MemoryWorkQueue::default()),
        ));
    };
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

/// Starts the transport (its inbound messages wait in the inbox until the
/// node runs) and membership, and builds this node's part of the cluster
/// (docs/cluster.md).
async fn join_cluster(
    config: &Config,
    owner: &str,
    started: Timestamp,
    local_addr: SocketAddr,
    store: &SqlStore,
    leases: &Arc<LeaseKeeper>,
    metrics: &Metrics,
) -> anyhow::Result<Joined> {
    let (inbox_handler, inbox) = Inbox::new();
    let transport = Transport::start(config.transport(), Arc::new(inbox_handler))
        .await
        .context("starting the cluster transport")?;
    let generation = u64::try_from(started.as_millis()).unwrap_or(0);
    let membership = Membership::start(config.membership(generation, local_addr))
        .await
        .context("starting cluster membership")?;
    let cluster = &config.cluster;
    info!(node_id = %config.node.id, owner, gossip = %cluster.gossip_listen, actor = %cluster.actor_listen, "joined the cluster gossip");
    let node = ClusterNode::new(
        config.node.id.clone(),
        membership,
        transport,
        leases.clone(),
        Arc::new(store.clone()),
        metrics.clone(),
    );
    Ok(Joined { node, inbox })
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
