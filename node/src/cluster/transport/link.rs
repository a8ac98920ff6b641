//! Reaching a peer: finding its region through a session (dialing when
//! there is none), one attempt of a call, sending a cast, and the retry
//! budget.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, MessagingErr, pg};
use ractor_cluster::NodeServerMessage;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::debug;

use super::peers::{PeerBook, lock};
use super::region::{RegionCall, RegionCast, RegionMessage, region_group};
use super::tls::NodeTls;
use super::types::{RegionHandler, TransportError};

/// How often a caller waiting for a route looks at the process group again.
pub(super) const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The pause before redialing a peer whose connect failed.
const REDIAL_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// The first retry backoff; it doubles, up to a tenth of the call timeout.
const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(20);

pub(super) struct Inner {
    pub(super) node_id: String,
    pub(super) call_timeout: Duration,
    pub(super) call_attempts: u32,
    /// Tells this process's casts from an earlier run's (see `RegionCast`).
    pub(super) incarnation: u64,
    pub(super) handler: Arc<dyn RegionHandler>,
    pub(super) region: ActorRef<RegionMessage>,
    pub(super) server: ActorRef<NodeServerMessage>,
    /// What dials peers over TLS; `None` dials plain TCP.
    pub(super) tls_opt: Option<NodeTls>,
    /// The TLS accept loop, aborted at shutdown.
    pub(super) tls_accept_loop_opt: Option<AbortHandle>,
    /// Shared with the session subscription; a std mutex: nothing awaits
    /// while holding it.
    pub(super) book: Arc<Mutex<PeerBook>>,
    pub(super) shut_down: AtomicBool,
}

impl Inner {
    /// One attempt of a call, ending by `deadline`.
    pub(super) async fn call_once(
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
    pub(super) async fn resolve(
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
    pub(super) fn route(&self, node_id: &str) -> Option<ActorRef<RegionMessage>> {
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
    pub(super) fn is_known(&self, node_id: &str) -> bool {
        lock(&self.book).listed.contains_key(node_id) || self.route(node_id).is_some()
    }

    /// Dials `addr` unless `node_id` has a session or a dial in flight. A
    /// dial's handshake gets `call_timeout` before the next dial.
    pub(super) async fn dial(&self, node_id: &str, addr: &str, deadline: Instant) {
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
    pub(super) fn send_cast(
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
    pub(super) fn budget(&self) -> Duration {
        self.call_timeout.saturating_mul(self.call_attempts)
    }

    pub(super) fn retry_backoff(&self, attempt: u32) -> Duration {
        let doubled = FIRST_RETRY_BACKOFF.saturating_mul(1 << (attempt - 1).min(16));
        doubled.min(self.call_timeout / 10)
    }
}

pub(super) fn messaging_error_reason(error: &MessagingErr<RegionMessage>) -> &'static str {
    match error {
        MessagingErr::SendErr(_) => "the session is closing",
        MessagingErr::ChannelClosed => "the session closed",
        MessagingErr::InvalidActorType => "the route is not a region",
    }
}
