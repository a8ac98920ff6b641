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
//! - `types`: the configuration, the inbound handler, the errors
//! - `peers`: what the transport knows of its peers and their sessions
//! - `link`: reaching a peer: routes, dials, one call attempt, casts
//! - `region`: the region actor and the encoding of its messages
//! - `tls`: the TLS configuration from [`TlsFiles`] and the TLS accept loop

mod link;
mod peers;
mod region;
mod tls;
mod types;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use ractor::{Actor, ActorRef, MessagingErr};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{IncomingEncryptionMode, NodeServer, NodeServerMessage, NodeSessionMessage};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::link::{Inner, ROUTE_POLL_INTERVAL, messaging_error_reason};
use self::peers::{PeerBook, SessionEvents, lock};
use self::region::{RegionMessage, ShardRegion};
use self::tls::NodeTls;
pub use self::tls::TLS_SERVER_NAME;
pub use self::types::{RegionHandler, TlsFiles, TransportConfig, TransportError};

/// The id of this transport's subscription to the node server's session events.
const SESSION_SUBSCRIPTION_ID: &str = "invigil.transport";
/// How long shutdown waits for each actor to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Bounds of the call settings, far above sensible values; they keep
/// deadline arithmetic from overflowing.
const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_CALL_ATTEMPTS: u32 = 100;
/// Longest node id; it travels in every message.
const MAX_NODE_ID_LEN: usize = 255;

/// A node's transport: its region, its node server and what it knows of its
/// peers. Clones share all of it; dropping them does not stop the actors,
/// [`Transport::shutdown`] does.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use async_trait::async_trait;

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
