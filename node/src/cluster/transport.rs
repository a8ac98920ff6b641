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
//! cookie; a node with another cookie never gets a session. The cookie does
//! not encrypt: without [`TlsFiles`] traffic is plain TCP.
//!
//! With [`TlsFiles`] every connection is mutual TLS 1.3 (rustls with the
//! aws-lc-rs provider), and the cookie challenge still runs inside it:
//! - `cert` is this node's certificate chain (PEM, leaf first) and `key` its
//!   private key (PEM: PKCS#8, PKCS#1 or SEC1); the node presents them both
//!   when it accepts and when it dials.
//! - `ca` holds the PEM certificates that sign node certificates (more than
//!   one while a CA rotates). A peer is accepted, either way, only with a
//!   certificate chaining to one of them.
//! - A node dials every peer under one fixed server name, [`TLS_SERVER_NAME`]
//!   (`invigil-node`): every node certificate carries it as a DNS subject
//!   alternative name, and allows server and client auth. The certificate
//!   does not bind a node id: a certificate the CA signed and the cookie
//!   admit a node, and its node id is taken on trust as without TLS.
//! - [`Transport::start`] reads the files once (no reload) and fails, naming
//!   the file, when one is unreadable or holds no PEM of its kind, when the
//!   key does not fit the certificate, or when the CA does not accept the
//!   node's own certificate as above.
//! - A plain-TCP node and a TLS node never get a session with each other.
//!
//! Inbound TLS connections are accepted by this module's own loop on
//! `listen` (the `tls` submodule), each handshake on a task of its own with
//! `call_timeout` to finish: ractor_cluster's listener would run them one at
//! a time without a timeout, so one silent connection would stop every
//! inbound session. The node server's own listener, which cannot be turned
//! off, then sits on an ephemeral loopback port and demands the same TLS.
//!
//! A session's claimed node id (and a message's `from`) is trusted once the
//! cookie is proven.
//!
//! # Layout
//! - `region`: the region actor and the encoding of its messages.
//! - `tls`: the TLS configuration from [`TlsFiles`] and the TLS accept loop.

mod region;
mod tls;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use async_trait::async_trait;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorRef, MessagingErr, pg};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
    NodeSessionMessage,
};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::region::{RegionCall, RegionCast, RegionMessage, ShardRegion, region_group};
use self::tls::NodeTls;
pub use self::tls::TLS_SERVER_NAME;

/// The id of this transport's subscription to the node server's session events.
const SESSION_SUBSCRIPTION_ID: &str = "invigil.transport";
/// How often a caller waiting for a route looks at the process group again.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The pause before redialing a peer whose connect failed.
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

/// PEM files of the transport's mutual TLS (module doc, Security).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain, leaf first; it carries the DNS name
    /// [`TLS_SERVER_NAME`].
    pub cert: PathBuf,
    /// The private key of `cert`.
    pub key: PathBuf,
    /// The certificates that sign every node's certificate.
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
    /// Mutual TLS for every connection; `None` is plain TCP (module doc,
    /// Security).
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
    /// What dials peers over TLS; `None` dials plain TCP.
    tls_opt: Option<NodeTls>,
    /// The TLS accept loop, aborted at shutdown.
    tls_accept_loop_opt: Option<AbortHandle>,
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
        let tls_opt = match &tls {
            Some(files) => Some(NodeTls::load(files).await?),
            None => None,
        };

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

        // With TLS this module accepts on `listen`, and the node server's
        // listener moves out of the way (module doc, Security).
        let (server, tls_listener_opt) = match &tls_opt {
            Some(node_tls) => {
                let listener = match tls::bind(listen).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        region.stop(None);
                        return Err(error);
                    }
                };
                let server = NodeServer::new(
                    0,
                    cookie,
                    node_id.clone(),
                    node_id.clone(),
                    Some(IncomingEncryptionMode::Tls(node_tls.acceptor.clone())),
                    Some(NodeConnectionMode::Isolated),
                )
                .with_listen_addr(Ipv4Addr::LOCALHOST.into());
                (server, Some(listener))
            }
            None => {
                let server = NodeServer::new(
                    listen.port(),
                    cookie,
                    node_id.clone(),
                    node_id.clone(),
                    None,
                    Some(NodeConnectionMode::Isolated),
                )
                .with_listen_addr(listen.ip());
                (server, None)
            }
        };
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
        let tls_accept_loop_opt = match (tls_listener_opt, &tls_opt) {
            (Some(listener), Some(node_tls)) => {
                let accept_loop = tls::accept_loop(
                    listener,
                    node_tls.acceptor.clone(),
                    server.clone(),
                    call_timeout,
                );
                Some(tokio::spawn(accept_loop).abort_handle())
            }
            _ => None,
        };
        info!(node_id = %node_id, %listen, tls = tls_opt.is_some(), "transport listening");

        Ok(Self {
            inner: Arc::new(Inner {
                node_id,
                call_timeout,
                call_attempts: call_attempts.max(1),
                incarnation: rand::random(),
                handler,
                region,
                server,
                tls_opt,
                tls_accept_loop_opt,
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
    /// Returns once the TCP connects (and TLS handshakes) are done (at most
    /// `call_timeout`); the cookie handshakes finish in the background.
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
        if let Some(accept_loop) = &inner.tls_accept_loop_opt {
            accept_loop.abort();
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
        let connect = async {
            match &self.tls_opt {
                Some(node_tls) => {
                    ractor_cluster::client_connect_enc(
                        &self.server,
                        addr,
                        node_tls.connector.clone(),
                        node_tls.server_name.clone(),
                    )
                    .await
                }
                None => ractor_cluster::client_connect(&self.server, addr).await,
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers calls with their payload and ignores casts.
    struct Echo;

    #[async_trait]
    impl RegionHandler for Echo {
        async fn call(&self, _from: String, payload: Vec<u8>) -> Vec<u8> {
            payload
        }

        async fn cast(&self, _from: String, _payload: Vec<u8>) {}
    }

    fn config(node_id: &str, tls: Option<TlsFiles>) -> TransportConfig {
        TransportConfig {
            node_id: node_id.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cookie: "cookie-0123456789".to_owned(),
            call_timeout: Duration::from_secs(1),
            call_attempts: 3,
            tls,
        }
    }

    #[tokio::test]
    async fn missing_tls_files_and_bad_node_ids_are_refused_at_start() {
        let dir =
            std::env::temp_dir().join(format!("invigil-no-such-dir-{}", rand::random::<u64>()));
        let tls = TlsFiles {
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
            ca: dir.join("ca.pem"),
        };
        let refused = Transport::start(config("node-1", Some(tls)), Arc::new(Echo))
            .await
            .unwrap_err();
        let message = format!("{refused:#}");
        assert!(
            message.contains("transport TLS cert") && message.contains("node.pem"),
            "{message}"
        );
        for bad in ["", "node@1"] {
            assert!(
                Transport::start(config(bad, None), Arc::new(Echo))
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
