//! Node-to-node transport: opaque byte payloads between nodes named by their
//! node id, carried by ractor_cluster.
//!
//! # How it works
//! Each node runs one ractor_cluster `NodeServer` (a TCP listener plus one
//! `NodeSession` actor per connected node) and one `ShardRegion` actor, the
//! node's inbound endpoint. The region joins the process group
//! `invigil.region.<node_id>`; when a session between two nodes is up,
//! ractor_cluster copies each side's groups to the other, so the peer's region
//! appears locally as a remote member of its group. Sending to a node is
//! looking up that group and messaging the member: a `call` is a ractor RPC
//! whose reply port comes back over the session, a `cast` a plain send.
//! Messages are encoded by hand (see `RegionMessage`): the payload, then the
//! sender's node id, then a fixed trailer, so the receiver takes the payload
//! without copying it.
//!
//! The `NodeServer` is named after the node id (`<node_id>@<node_id>`), so
//! every session, whichever side dialed, maps to a node id. The host part is
//! the node id rather than an address: ractor_cluster treats a peer whose
//! `host:port` equals its own as a connection to itself, and nodes listening
//! on `0.0.0.0` at the same port would all look alike. Node ids therefore
//! must not contain `@`.
//!
//! # Connections
//! The membership layer calls [`Transport::set_peers`] with every live peer;
//! the transport dials each listed peer without a session and stops the
//! sessions of peers no longer listed (a forgotten peer that dials in again is
//! still accepted: the cookie, not the list, admits a node). ractor_cluster
//! does not redial a dropped session, so this layer does: on the next
//! `set_peers`, and lazily when a call or cast finds no route to a listed
//! peer. Both sides may dial at once; ractor_cluster's session election keeps
//! one connection per pair, and a call only needs one route either way.
//!
//! # Ordering and delivery
//! - Casts from one node to another reach the handler in the order they were
//!   sent, at most once. A session that drops can lose casts in flight (a
//!   gap), never reorder them: each cast carries a per-destination sequence
//!   number and the sender's incarnation, and the receiving region drops a
//!   cast older than one it has already accepted (which can only happen while
//!   two sessions briefly coexist). Casts from one sender run one after the
//!   other; casts from different senders run concurrently.
//! - Calls run concurrently (one task each) and have no order among
//!   themselves or with casts. An attempt waits `call_timeout` at most; a
//!   failed attempt is retried, with a short backoff, up to `call_attempts`
//!   attempts, and the whole call never takes longer than
//!   `call_timeout × call_attempts`. A retried call may run twice on the
//!   peer (at-least-once): handlers must tolerate a repeated call.
//! - If the peer dies mid-call, its session closes and the pending reply port
//!   is dropped: the attempt fails with `Closed`; if the death goes unnoticed
//!   (a silent network), with `Timeout`. Further attempts find no route and
//!   end in `NoRoute`. A call to a node that is neither listed nor connected
//!   fails with `NoRoute` at once, without retries.
//! - A call or cast to this node's own id goes straight to the handler (a
//!   cast through the local region, keeping the cast order), never the network.
//! - Frames are limited by ractor_cluster to 16 MiB.
//!
//! # Security
//! Sessions are authenticated by ractor_cluster's challenge over the shared
//! cookie; a node with another cookie never gets a session. The cookie does not
//! encrypt: traffic is plain TCP. TLS is not supported yet:
//! `IncomingEncryptionMode::Tls` takes a `tokio_rustls::TlsAcceptor` that
//! ractor_cluster does not re-export, and invigil-node does not depend on
//! tokio-rustls or a PEM parser, so a configured [`TlsFiles`] makes
//! [`Transport::start`] fail instead of silently running without encryption.
//! A session's claimed node id (and a message's `from`) is trusted once the
//! cookie is proven.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort, pg};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, NodeSessionMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Process-group prefix of the regions; the node id completes the name.
const REGION_GROUP_PREFIX: &str = "invigil.region.";
/// Wire names of the two region messages; a new encoding gets a new name, so
/// mismatched nodes drop each other's messages instead of misreading them.
const CALL_VARIANT: &str = "invigil.region.call.v1";
const CAST_VARIANT: &str = "invigil.region.cast.v1";
/// The id of this transport's subscription to the node server's session events.
const SESSION_SUBSCRIPTION_ID: &str = "invigil.transport";
/// How often a caller waiting for a route looks at the process group again.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The pause before redialing a peer whose TCP connect failed.
const REDIAL_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// The first retry backoff; it doubles, up to a tenth of the call timeout.
const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(20);
/// How long shutdown waits for each actor to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Bounds of the call settings, far above sensible values; they keep
/// deadline arithmetic from overflowing.
const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_CALL_ATTEMPTS: u32 = 100;
/// Longest node id; it travels in every message.
const MAX_NODE_ID_LEN: usize = 255;

/// PEM files of the transport's TLS: this node's certificate and key, and the
/// CA that signs every node's certificate. Not supported yet (module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Settings of one node's transport.
#[derive(Clone)]
pub struct TransportConfig {
    /// This node's stable id, e.g. `node-1`; no `@`, at most 255 bytes.
    pub node_id: String,
    /// Where the ractor_cluster node server listens (TCP).
    pub listen: SocketAddr,
    /// The shared secret of ractor_cluster's handshake.
    pub cookie: String,
    /// Timeout of one attempt of a call (and of waiting for a route); at
    /// most 10 minutes.
    pub call_timeout: Duration,
    /// Attempts of a call, the first included (0 counts as 1; at most 100).
    pub call_attempts: u32,
    /// TLS for the transport; `Some` is refused at start (module doc).
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("node_id", &self.node_id)
            .field("listen", &self.listen)
            .field("cookie", &"<redacted>")
            .field("call_timeout", &self.call_timeout)
            .field("call_attempts", &self.call_attempts)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The application's side of a node's region: what to do with what other
/// nodes send.
#[async_trait]
pub trait RegionHandler: Send + Sync + 'static {
    /// A call from `from` (node id); the returned bytes are the reply.
    async fn call(&self, from: String, payload: Vec<u8>) -> Vec<u8>;
    /// A one-way message from `from`. Messages from one node to another arrive in the order sent.
    async fn cast(&self, from: String, payload: Vec<u8>);
}

/// Why a call or cast did not reach its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No session to the node: unknown, unreachable, or not yet connected.
    NoRoute(String),
    /// The node did not answer in time.
    Timeout,
    /// The session closed before the answer, or the transport is shut down.
    Closed(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute(node_id) => write!(f, "no route to node {node_id}"),
            Self::Timeout => write!(f, "remote call timed out"),
            Self::Closed(reason) => write!(f, "connection closed: {reason}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// A node's transport: its region, its node server and what it knows of its
/// peers. Clones share all of it; dropping them does not stop the actors,
/// [`Transport::shutdown`] does.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    call_timeout: Duration,
    call_attempts: u32,
    /// Tells this process's casts from an earlier run's (see `RegionCast`).
    incarnation: u64,
    handler: Arc<dyn RegionHandler>,
    region: ActorRef<RegionMessage>,
    server: ActorRef<NodeServerMessage>,
    /// Shared with the session subscription; a std mutex: nothing awaits
    /// while holding it.
    book: Arc<Mutex<PeerBook>>,
    shut_down: AtomicBool,
}

/// What the transport knows about its peers.
#[derive(Default)]
struct PeerBook {
    /// Node id → actor address of every peer membership lists.
    listed: HashMap<String, String>,
    /// Ready sessions by their `NodeSession` actor.
    sessions: HashMap<ActorId, LiveSession>,
    /// Node id → the earliest time to dial it again (a dial in flight or
    /// just failed).
    next_dial: HashMap<String, Instant>,
    /// Node id → the sequence number of the last cast sent to it.
    cast_seq: HashMap<String, u64>,
}

struct LiveSession {
    peer_node_id: String,
    /// ractor_cluster's number of the session: the `node()` of the ids of the
    /// remote actors it carries.
    cluster_node_id: u64,
    actor: ActorRef<NodeSessionMessage>,
}

impl PeerBook {
    fn has_session(&self, node_id: &str) -> bool {
        self.sessions.values().any(|s| s.peer_node_id == node_id)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the book consistent; a panic elsewhere
    // does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn region_group(node_id: &str) -> String {
    format!("{REGION_GROUP_PREFIX}{node_id}")
}

impl Transport {
    /// Starts the node server on `config.listen` and this node's region.
    pub async fn start(
        config: TransportConfig,
        handler: Arc<dyn RegionHandler>,
    ) -> anyhow::Result<Self> {
        let TransportConfig {
            node_id,
            listen,
            cookie,
            call_timeout,
            call_attempts,
            tls,
        } = config;
        ensure!(
            !node_id.is_empty() && node_id.len() <= MAX_NODE_ID_LEN && !node_id.contains('@'),
            "transport node id {node_id:?} must be 1 to {MAX_NODE_ID_LEN} bytes without '@'"
        );
        ensure!(!cookie.is_empty(), "transport cookie is empty");
        ensure!(
            !call_timeout.is_zero() && call_timeout <= MAX_CALL_TIMEOUT,
            "transport call timeout {call_timeout:?} must be above zero and at most {MAX_CALL_TIMEOUT:?}"
        );
        ensure!(
            call_attempts <= MAX_CALL_ATTEMPTS,
            "transport call attempts {call_attempts} must be at most {MAX_CALL_ATTEMPTS}"
        );
        if let Some(tls) = tls {
            bail!(
                "transport TLS is not supported yet (cert {}): unset the TLS files",
                tls.cert.display()
            );
        }

        let (region, _) = Actor::spawn(
            None,
            ShardRegion {
                node_id: node_id.clone(),
                handler: Arc::clone(&handler),
            },
            (),
        )
        .await
        .context("starting the shard region")?;

        let server = NodeServer::new(
            listen.port(),
            cookie,
            node_id.clone(),
            node_id.clone(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(listen.ip());
        let spawned = Actor::spawn(None, server, ())
            .await
            .with_context(|| format!("starting the transport listener on {listen}"));
        let server = match spawned {
            Ok((server, _)) => server,
            Err(error) => {
                region.stop(None);
                return Err(error);
            }
        };

        let book = Arc::new(Mutex::new(PeerBook::default()));
        let subscribed = server.cast(NodeServerMessage::SubscribeToEvents {
            id: SESSION_SUBSCRIPTION_ID.to_owned(),
            subscription: Box::new(SessionEvents {
                book: Arc::clone(&book),
            }),
        });
        if subscribed.is_err() {
            region.stop(None);
            server.stop(None);
            bail!("the transport node server stopped at start");
        }
        info!(node_id = %node_id, %listen, "transport listening");

        Ok(Self {
            inner: Arc::new(Inner {
                node_id,
                call_timeout,
                call_attempts: call_attempts.max(1),
                incarnation: rand::random(),
                handler,
                region,
                server,
                book,
                shut_down: AtomicBool::new(false),
            }),
        })
    }

    /// Called by the membership layer with every live peer (node id, actor
    /// address `host:port`) whenever membership changes: dials the peers
    /// without a session and disconnects the peers no longer listed. This is
    /// where a dropped session comes back (ractor_cluster does not redial);
    /// a call or cast to a listed peer without a route also dials it.
    ///
    /// Returns once the TCP connects are done (at most `call_timeout`); the
    /// handshakes finish in the background.
    pub async fn set_peers(&self, peers: &[(String, String)]) {
        if self.is_shut_down() {
            return;
        }
        let inner = &self.inner;
        let (forgotten, to_dial) = {
            let mut book = lock(&inner.book);
            let listed: HashMap<String, String> = peers
                .iter()
                .filter(|(node_id, _)| *node_id != inner.node_id)
                .cloned()
                .collect();
            let forgotten: Vec<(String, ActorRef<NodeSessionMessage>)> = book
                .sessions
                .values()
                .filter(|s| {
                    book.listed.contains_key(&s.peer_node_id)
                        && !listed.contains_key(&s.peer_node_id)
                })
                .map(|s| (s.peer_node_id.clone(), s.actor.clone()))
                .collect();
            book.next_dial
                .retain(|node_id, _| listed.contains_key(node_id));
            book.listed = listed;
            let to_dial: Vec<(String, String)> = book
                .listed
                .iter()
                .filter(|(node_id, _)| !book.has_session(node_id))
                .map(|(node_id, addr)| (node_id.clone(), addr.clone()))
                .collect();
            (forgotten, to_dial)
        };

        for (peer_node_id, session) in forgotten {
            info!(peer_node_id = %peer_node_id, "transport disconnecting a peer that left membership");
            session.stop(Some("peer left membership".to_owned()));
        }

        let deadline = Instant::now() + inner.call_timeout;
        let mut dials = tokio::task::JoinSet::new();
        for (node_id, addr) in to_dial {
            let inner = Arc::clone(inner);
            dials.spawn(async move { inner.dial(&node_id, &addr, deadline).await });
        }
        while dials.join_next().await.is_some() {}
    }

    /// Calls `node_id`'s region with `payload` and returns its reply (module
    /// doc: timeouts, retries, what a peer's death does).
    pub async fn call(&self, node_id: &str, payload: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self.ensure_running()?;
        let inner = &self.inner;
        let budget = inner.budget();
        if node_id == inner.node_id {
            let local = inner.handler.call(node_id.to_owned(), payload);
            return tokio::time::timeout(budget, local)
                .await
                .map_err(|_| TransportError::Timeout);
        }

        let deadline = Instant::now() + budget;
        let mut payload = payload;
        let mut last_error = TransportError::NoRoute(node_id.to_owned());
        for attempt in 1..=inner.call_attempts {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let body = if attempt == inner.call_attempts {
                std::mem::take(&mut payload)
            } else {
                payload.clone()
            };
            let attempt_deadline = (now + inner.call_timeout).min(deadline);
            match inner.call_once(node_id, body, attempt_deadline).await {
                Ok(reply) => return Ok(reply),
                Err(TransportError::NoRoute(_)) if !inner.is_known(node_id) => {
                    return Err(TransportError::NoRoute(node_id.to_owned()));
                }
                Err(error) => {
                    debug!(peer_node_id = %node_id, attempt, %error, "transport call attempt failed");
                    last_error = error;
                }
            }
            if attempt < inner.call_attempts {
                let backoff = inner.retry_backoff(attempt);
                tokio::time::sleep_until((Instant::now() + backoff).min(deadline)).await;
            }
        }
        Err(last_error)
    }

    /// Sends `payload` one way to `node_id`'s region: `Ok` once it is on its
    /// way (module doc: order, loss). Waits at most `call_timeout × call_attempts`
    /// for a route.
    pub async fn cast(&self, node_id: &str, payload: Vec<u8>) -> Result<(), TransportError> {
        self.ensure_running()?;
        let inner = &self.inner;
        if node_id == inner.node_id {
            return inner
                .send_cast(node_id, &inner.region, payload)
                .map_err(|_| TransportError::Closed("this node's region stopped".to_owned()));
        }

        let deadline = Instant::now() + inner.budget();
        let mut payload = payload;
        loop {
            let region = inner.resolve(node_id, deadline).await?;
            match inner.send_cast(node_id, &region, payload) {
                Ok(()) => return Ok(()),
                // The route's session is closing; the message comes back.
                Err(MessagingErr::SendErr(RegionMessage::Cast(cast))) => payload = cast.payload,
                Err(error) => {
                    return Err(TransportError::Closed(format!(
                        "session to {node_id} failed: {}",
                        messaging_error_reason(&error)
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Closed(format!(
                    "session to {node_id} is closing"
                )));
            }
            tokio::time::sleep_until((Instant::now() + ROUTE_POLL_INTERVAL).min(deadline)).await;
        }
    }

    /// Returns the node ids with a ready session, sorted.
    pub fn connected_peers(&self) -> Vec<String> {
        let book = lock(&self.inner.book);
        let mut peers: Vec<String> = book
            .sessions
            .values()
            .map(|s| s.peer_node_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        peers.sort();
        peers
    }

    /// Stops the region (peers see it leave its group) and the node server
    /// with every session. Later calls and casts fail with `Closed`.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        if inner.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = inner.server.cast(NodeServerMessage::UnsubscribeToEvents(
            SESSION_SUBSCRIPTION_ID.to_owned(),
        ));
        let reason = Some("transport shutdown".to_owned());
        if let Err(error) = inner
            .region
            .stop_and_wait(reason.clone(), Some(SHUTDOWN_WAIT))
            .await
        {
            warn!(%error, "shard region did not stop in time");
        }
        if let Err(error) = inner
            .server
            .stop_and_wait(reason, Some(SHUTDOWN_WAIT))
            .await
        {
            warn!(%error, "transport node server did not stop in time");
        }
        lock(&inner.book).sessions.clear();
        info!(node_id = %inner.node_id, "transport stopped");
    }

    fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::SeqCst)
    }

    fn ensure_running(&self) -> Result<(), TransportError> {
        if self.is_shut_down() {
            return Err(TransportError::Closed("transport is shut down".to_owned()));
        }
        Ok(())
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.inner.node_id)
            .field("connected_peers", &self.connected_peers())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// One attempt of a call, ending by `deadline`.
    async fn call_once(
        &self,
        node_id: &str,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, TransportError> {
        let region = self.resolve(node_id, deadline).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(TransportError::Timeout);
        }
        let from = self.node_id.clone();
        let sent = region
            .call(
                |reply| {
                    RegionMessage::Call(RegionCall {
                        from,
                        payload,
                        reply,
                    })
                },
                Some(remaining),
            )
            .await;
        match sent {
            Ok(CallResult::Success(reply)) => Ok(reply),
            Ok(CallResult::Timeout) => Err(TransportError::Timeout),
            Ok(CallResult::SenderError) => Err(TransportError::Closed(format!(
                "session to {node_id} closed before the reply"
            ))),
            Err(error) => Err(TransportError::Closed(format!(
                "session to {node_id} failed: {}",
                messaging_error_reason(&error)
            ))),
        }
    }

    /// Returns `node_id`'s region. Waits (dialing a listed peer) until
    /// `deadline` for one to appear; a node neither listed nor connected has
    /// none at once.
    async fn resolve(
        &self,
        node_id: &str,
        deadline: Instant,
    ) -> Result<ActorRef<RegionMessage>, TransportError> {
        loop {
            if let Some(region) = self.route(node_id) {
                return Ok(region);
            }
            let Some(addr) = lock(&self.book).listed.get(node_id).cloned() else {
                return Err(TransportError::NoRoute(node_id.to_owned()));
            };
            self.dial(node_id, &addr, deadline).await;
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::NoRoute(node_id.to_owned()));
            }
            tokio::time::sleep_until((now + ROUTE_POLL_INTERVAL).min(deadline)).await;
        }
    }

    /// The remote member of `node_id`'s region group, preferring one carried
    /// by a ready session, then the newest session.
    fn route(&self, node_id: &str) -> Option<ActorRef<RegionMessage>> {
        let members = pg::get_members(&region_group(node_id));
        if members.is_empty() {
            return None;
        }
        let ready: HashSet<u64> = lock(&self.book)
            .sessions
            .values()
            .filter(|s| s.peer_node_id == node_id)
            .map(|s| s.cluster_node_id)
            .collect();
        members
            .into_iter()
            .filter(|member| !member.get_id().is_local())
            .max_by_key(|member| {
                let session = member.get_id().node();
                (ready.contains(&session), session)
            })
            .map(ActorRef::from)
    }

    /// Whether `node_id` is listed or has a route: whether waiting for it
    /// can help.
    fn is_known(&self, node_id: &str) -> bool {
        lock(&self.book).listed.contains_key(node_id) || self.route(node_id).is_some()
    }

    /// Dials `addr` unless `node_id` has a session or a dial in flight. A
    /// dial's handshake gets `call_timeout` before the next dial.
    async fn dial(&self, node_id: &str, addr: &str, deadline: Instant) {
        {
            let mut book = lock(&self.book);
            let now = Instant::now();
            if book.has_session(node_id) || book.next_dial.get(node_id).is_some_and(|at| *at > now)
            {
                return;
            }
            book.next_dial
                .insert(node_id.to_owned(), now + self.call_timeout);
        }
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .min(self.call_timeout);
        let connect = ractor_cluster::client_connect(&self.server, addr);
        let failure = match tokio::time::timeout(limit, connect).await {
            Ok(Ok(())) => {
                debug!(peer_node_id = %node_id, %addr, "transport dialed");
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "connect timed out".to_owned(),
        };
        debug!(peer_node_id = %node_id, %addr, error = %failure, "transport dial failed");
        lock(&self.book)
            .next_dial
            .insert(node_id.to_owned(), Instant::now() + REDIAL_AFTER_FAILURE);
    }

    /// Sends a cast to `region`, numbered in the order of sending (the number
    /// is taken and the message queued under one lock).
    fn send_cast(
        &self,
        node_id: &str,
        region: &ActorRef<RegionMessage>,
        payload: Vec<u8>,
    ) -> Result<(), MessagingErr<RegionMessage>> {
        let mut book = lock(&self.book);
        let seq = book.cast_seq.entry(node_id.to_owned()).or_insert(0);
        *seq += 1;
        region.cast(RegionMessage::Cast(RegionCast {
            from: self.node_id.clone(),
            incarnation: self.incarnation,
            seq: *seq,
            payload,
        }))
    }

    /// The longest a call or cast may take: every attempt's timeout.
    fn budget(&self) -> Duration {
        self.call_timeout.saturating_mul(self.call_attempts)
    }

    fn retry_backoff(&self, attempt: u32) -> Duration {
        let doubled = FIRST_RETRY_BACKOFF.saturating_mul(1 << (attempt - 1).min(16));
        doubled.min(self.call_timeout / 10)
    }
}

fn messaging_error_reason(error: &MessagingErr<RegionMessage>) -> &'static str {
    match error {
        MessagingErr::SendErr(_) => "the session is closing",
        MessagingErr::ChannelClosed => "the session closed",
        MessagingErr::InvalidActorType => "the route is not a region",
    }
}

/// Keeps the peer book's sessions in step with the node server, and logs
/// sessions going up and down.
struct SessionEvents {
    book: Arc<Mutex<PeerBook>>,
}

/// The node id in a ractor_cluster node name (`<node_id>@<host>`).
fn peer_node_id(session: &NodeServerSessionInformation) -> Option<String> {
    let name = &session.peer_name.as_ref()?.name;
    Some(
        name.split_once('@')
            .map_or(name.as_str(), |(id, _)| id)
            .to_owned(),
    )
}

impl NodeEventSubscription for SessionEvents {
    fn node_session_opened(&self, session: NodeServerSessionInformation) {
        debug!(peer_addr = %session.peer_addr, inbound = session.is_server, "transport connection opened");
    }

    fn node_session_authenticated(&self, session: NodeServerSessionInformation) {
        debug!(peer_addr = %session.peer_addr, "transport connection authenticated");
    }

    fn node_session_ready(&self, session: NodeServerSessionInformation) {
        let Some(peer_node_id) = peer_node_id(&session) else {
            return;
        };
        let mut book = lock(&self.book);
        let first = !book.has_session(&peer_node_id);
        book.next_dial.remove(&peer_node_id);
        book.sessions.insert(
            session.actor.get_id(),
            LiveSession {
                peer_node_id: peer_node_id.clone(),
                cluster_node_id: session.node_id,
                actor: session.actor.clone(),
            },
        );
        drop(book);
        if first {
            info!(peer_node_id = %peer_node_id, peer_addr = %session.peer_addr, inbound = session.is_server, "transport session up");
        }
    }

    fn node_session_disconnected(&self, session: NodeServerSessionInformation) {
        let mut book = lock(&self.book);
        let Some(gone) = book.sessions.remove(&session.actor.get_id()) else {
            // Never ready: a failed handshake or a lost session election.
            debug!(peer_addr = %session.peer_addr, "transport connection closed before ready");
            return;
        };
        let last = !book.has_session(&gone.peer_node_id);
        if last {
            book.next_dial.remove(&gone.peer_node_id);
        }
        drop(book);
        if last {
            info!(peer_node_id = %gone.peer_node_id, peer_addr = %session.peer_addr, "transport session down");
        }
    }
}

// ---------------------------------------------------------------------------
// The region: this node's inbound endpoint.

/// A message to a node's region. Encoded by hand (no serde, no derive) as
/// `payload ‖ from ‖ len(from): u16` for a call and
/// `payload ‖ from ‖ len(from): u16 ‖ incarnation: u64 ‖ seq: u64` for a
/// cast, integers big-endian; a call's reply is the handler's bytes as they
/// are.
enum RegionMessage {
    Call(RegionCall),
    Cast(RegionCast),
}

/// A call from another node (or this one).
struct RegionCall {
    from: String,
    payload: Vec<u8>,
    reply: RpcReplyPort<Vec<u8>>,
}

/// A one-way message. `seq` counts the sender's casts to this node, from 1;
/// `incarnation` is random per sender process, so a restarted sender starts
/// a new count.
struct RegionCast {
    from: String,
    incarnation: u64,
    seq: u64,
    payload: Vec<u8>,
}

impl fmt::Debug for RegionMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Call(call) => f
                .debug_struct("RegionCall")
                .field("from", &call.from)
                .field("payload_len", &call.payload.len())
                .finish_non_exhaustive(),
            Self::Cast(cast) => f
                .debug_struct("RegionCast")
                .field("from", &cast.from)
                .field("seq", &cast.seq)
                .field("payload_len", &cast.payload.len())
                .finish_non_exhaustive(),
        }
    }
}

impl ractor::Message for RegionMessage {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        match self {
            Self::Call(RegionCall {
                from,
                payload,
                reply,
            }) => Ok(SerializedMessage::Call {
                variant: CALL_VARIANT.to_owned(),
                args: seal(payload, &from, &[])?,
                reply,
                metadata: None,
            }),
            Self::Cast(RegionCast {
                from,
                incarnation,
                seq,
                payload,
            }) => {
                let mut counters = [0u8; 16];
                counters[..8].copy_from_slice(&incarnation.to_be_bytes());
                counters[8..].copy_from_slice(&seq.to_be_bytes());
                Ok(SerializedMessage::Cast {
                    variant: CAST_VARIANT.to_owned(),
                    args: seal(payload, &from, &counters)?,
                    metadata: None,
                })
            }
        }
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match message {
            SerializedMessage::Call {
                variant,
                args,
                reply,
                ..
            } if variant == CALL_VARIANT => {
                let (from, payload, _) = unseal::<0>(args)?;
                Ok(Self::Call(RegionCall {
                    from,
                    payload,
                    reply,
                }))
            }
            SerializedMessage::Cast { variant, args, .. } if variant == CAST_VARIANT => {
                let (from, payload, counters) = unseal::<16>(args)?;
                let (incarnation, seq) = counters.split_at(8);
                Ok(Self::Cast(RegionCast {
                    from,
                    incarnation: u64::from_be_bytes(
                        incarnation.try_into().map_err(|_| BoxedDowncastErr)?,
                    ),
                    seq: u64::from_be_bytes(seq.try_into().map_err(|_| BoxedDowncastErr)?),
                    payload,
                }))
            }
            _ => Err(BoxedDowncastErr),
        }
    }
}

/// Appends `from`, its length and `trailer` to `payload`.
fn seal(mut payload: Vec<u8>, from: &str, trailer: &[u8]) -> Result<Vec<u8>, BoxedDowncastErr> {
    let from_len = u16::try_from(from.len()).map_err(|_| BoxedDowncastErr)?;
    payload.reserve(from.len() + 2 + trailer.len());
    payload.extend_from_slice(from.as_bytes());
    payload.extend_from_slice(&from_len.to_be_bytes());
    payload.extend_from_slice(trailer);
    Ok(payload)
}

/// Splits what [`seal`] built into `from`, the payload and the trailer of
/// `N` bytes; the payload keeps the buffer.
fn unseal<const N: usize>(
    mut args: Vec<u8>,
) -> Result<(String, Vec<u8>, [u8; N]), BoxedDowncastErr> {
    let trailer_at = args.len().checked_sub(N).ok_or(BoxedDowncastErr)?;
    let trailer: [u8; N] = args[trailer_at..]
        .try_into()
        .map_err(|_| BoxedDowncastErr)?;
    let len_at = trailer_at.checked_sub(2).ok_or(BoxedDowncastErr)?;
    let from_len = u16::from_be_bytes([args[len_at], args[len_at + 1]]);
    let from_at = len_at
        .checked_sub(usize::from(from_len))
        .ok_or(BoxedDowncastErr)?;
    let from = std::str::from_utf8(&args[from_at..len_at])
        .map_err(|_| BoxedDowncastErr)?
        .to_owned();
    args.truncate(from_at);
    Ok((from, args, trailer))
}

/// The node's inbound endpoint: runs calls concurrently and casts in order
/// per sender.
struct ShardRegion {
    node_id: String,
    handler: Arc<dyn RegionHandler>,
}

struct RegionState {
    /// Sender node id → its casts' queue.
    lanes: HashMap<String, CastLane>,
}

/// One sender's casts, handled one after the other by a task of their own.
/// Unbounded like the region's own mailbox: a lane holds what the mailbox
/// would have held.
struct CastLane {
    incarnation: u64,
    last_seq: u64,
    queue: mpsc::UnboundedSender<Vec<u8>>,
}

impl CastLane {
    fn open(from: &str, incarnation: u64, handler: &Arc<dyn RegionHandler>) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<Vec<u8>>();
        let from = from.to_owned();
        let handler = Arc::clone(handler);
        tokio::spawn(async move {
            while let Some(payload) = pending.recv().await {
                handler.cast(from.clone(), payload).await;
            }
        });
        Self {
            incarnation,
            last_seq: 0,
            queue,
        }
    }
}

impl ShardRegion {
    fn admit_cast(&self, state: &mut RegionState, cast: RegionCast) {
        let lane = state
            .lanes
            .entry(cast.from.clone())
            .or_insert_with(|| CastLane::open(&cast.from, cast.incarnation, &self.handler));
        if lane.incarnation != cast.incarnation {
            lane.incarnation = cast.incarnation;
            lane.last_seq = 0;
        }
        if cast.seq <= lane.last_seq {
            debug!(from = %cast.from, seq = cast.seq, last_seq = lane.last_seq, "stale cast dropped");
            return;
        }
        lane.last_seq = cast.seq;
        if let Err(mpsc::error::SendError(payload)) = lane.queue.send(cast.payload) {
            // The lane's task died with a panicking handler; start another.
            warn!(from = %cast.from, "cast lane restarted after a handler panic");
            let mut fresh = CastLane::open(&cast.from, cast.incarnation, &self.handler);
            fresh.last_seq = cast.seq;
            let _ = fresh.queue.send(payload);
            *lane = fresh;
        }
    }
}

impl Actor for ShardRegion {
    type Msg = RegionMessage;
    type State = RegionState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<RegionMessage>,
        _args: (),
    ) -> Result<RegionState, ActorProcessingErr> {
        Ok(RegionState {
            lanes: HashMap::new(),
        })
    }

    /// Joins the region group; sessions copy it to every peer.
    async fn post_start(
        &self,
        myself: ActorRef<RegionMessage>,
        _state: &mut RegionState,
    ) -> Result<(), ActorProcessingErr> {
        pg::join(region_group(&self.node_id), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<RegionMessage>,
        message: RegionMessage,
        state: &mut RegionState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RegionMessage::Call(RegionCall {
                from,
                payload,
                reply,
            }) => {
                let handler = Arc::clone(&self.handler);
                tokio::spawn(async move {
                    if reply.is_closed() {
                        return; // the caller gave up already
                    }
                    let answer = handler.call(from, payload).await;
                    let _ = reply.send(answer);
                });
            }
            RegionMessage::Cast(cast) => self.admit_cast(state, cast),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ractor::Message;

    use super::*;

    fn cast(from: &str, seq: u64, payload: &[u8]) -> RegionMessage {
        RegionMessage::Cast(RegionCast {
            from: from.to_owned(),
            incarnation: 0xfeed_beef,
            seq,
            payload: payload.to_vec(),
        })
    }

    #[test]
    fn a_cast_survives_its_encoding() {
        let serialized = cast("node-7", 42, br#"{"a":1}"#).serialize().unwrap();
        let RegionMessage::Cast(decoded) = RegionMessage::deserialize(serialized).unwrap() else {
            panic!("not a cast");
        };
        assert_eq!(decoded.from, "node-7");
        assert_eq!(decoded.incarnation, 0xfeed_beef);
        assert_eq!(decoded.seq, 42);
        assert_eq!(decoded.payload, br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn a_call_survives_its_encoding_and_keeps_its_reply_port() {
        let (reply, answer) = ractor::concurrency::oneshot();
        let call = RegionMessage::Call(RegionCall {
            from: "node-1".to_owned(),
            payload: Vec::new(),
            reply: reply.into(),
        });
        let RegionMessage::Call(decoded) =
            RegionMessage::deserialize(call.serialize().unwrap()).unwrap()
        else {
            panic!("not a call");
        };
        assert_eq!(decoded.from, "node-1");
        assert!(decoded.payload.is_empty());
        decoded.reply.send(b"pong".to_vec()).unwrap();
        assert_eq!(answer.await.unwrap(), b"pong");
    }

    #[test]
    fn short_or_foreign_messages_are_refused_without_panicking() {
        let SerializedMessage::Cast { args, .. } = cast("node-2", 1, b"xyz").serialize().unwrap()
        else {
            panic!("not a cast");
        };
        for len in 0..args.len() {
            let shortened = SerializedMessage::Cast {
                variant: CAST_VARIANT.to_owned(),
                args: args[..len].to_vec(),
                metadata: None,
            };
            let decoded = RegionMessage::deserialize(shortened);
            // Below the trailer there is nothing to decode.
            assert!(len >= 18 || decoded.is_err(), "{len} bytes decoded");
        }
        let foreign = SerializedMessage::Cast {
            variant: "invigil.region.cast.v0".to_owned(),
            args,
            metadata: None,
        };
        assert!(RegionMessage::deserialize(foreign).is_err());
    }

    /// Records casts; calls are not expected.
    #[derive(Default)]
    struct CastLog {
        casts: Mutex<Vec<(String, Vec<u8>)>>,
    }

    #[async_trait]
    impl RegionHandler for CastLog {
        async fn call(&self, _from: String, payload: Vec<u8>) -> Vec<u8> {
            payload
        }

        async fn cast(&self, from: String, payload: Vec<u8>) {
            lock(&self.casts).push((from, payload));
        }
    }

    #[tokio::test]
    async fn a_region_never_delivers_a_cast_older_than_one_it_delivered() {
        let log = Arc::new(CastLog::default());
        let region = ShardRegion {
            node_id: "node-1".to_owned(),
            handler: log.clone(),
        };
        let mut state = RegionState {
            lanes: HashMap::new(),
        };
        let cast = |from: &str, incarnation: u64, seq: u64| RegionCast {
            from: from.to_owned(),
            incarnation,
            seq,
            payload: format!("{from}/{incarnation}/{seq}").into_bytes(),
        };
        for (from, incarnation, seq) in [
            ("node-2", 7, 1),
            ("node-2", 7, 2),
            ("node-2", 7, 2), // a duplicate
            ("node-2", 7, 4), // 3 was lost: a gap
            ("node-2", 7, 3), // late: dropped, not reordered
            ("node-3", 1, 1), // another sender counts on its own
            ("node-2", 8, 1), // node-2 restarted: a new count
        ] {
            region.admit_cast(&mut state, cast(from, incarnation, seq));
        }
        let delivered = |log: &CastLog| {
            lock(&log.casts)
                .iter()
                .map(|(_, payload)| String::from_utf8(payload.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while delivered(&log).len() < 5 && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let mut from_node_2: Vec<String> = delivered(&log)
            .into_iter()
            .filter(|cast| cast.starts_with("node-2"))
            .collect();
        assert_eq!(
            from_node_2,
            ["node-2/7/1", "node-2/7/2", "node-2/7/4", "node-2/8/1"]
        );
        from_node_2.clear();
        assert!(delivered(&log).contains(&"node-3/1/1".to_owned()));
    }

    #[tokio::test]
    async fn tls_files_and_bad_node_ids_are_refused_at_start() {
        let config = |node_id: &str, tls: Option<TlsFiles>| TransportConfig {
            node_id: node_id.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cookie: "cookie-0123456789".to_owned(),
            call_timeout: Duration::from_secs(1),
            call_attempts: 3,
            tls,
        };
        let tls = TlsFiles {
            cert: "node.pem".into(),
            key: "node.key".into(),
            ca: "ca.pem".into(),
        };
        let handler = Arc::new(CastLog::default());
        let refused = Transport::start(config("node-1", Some(tls)), handler.clone()).await;
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("TLS is not supported")
        );
        for bad in ["", "node@1"] {
            assert!(
                Transport::start(config(bad, None), handler.clone())
                    .await
                    .is_err()
            );
        }
    }

    #[test]
    fn errors_read_well_in_logs() {
        assert_eq!(
            TransportError::NoRoute("node-9".into()).to_string(),
            "no route to node node-9"
        );
        assert_eq!(TransportError::Timeout.to_string(), "remote call timed out");
    }
}
