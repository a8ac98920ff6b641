//! What the transport knows of its peers: the ones membership lists, the
//! sessions ractor_cluster has up (kept in step by its session events),
//! when to dial again, and the sequence of casts to each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::{ActorId, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeSessionMessage};
use tokio::time::Instant;
use tracing::{debug, info};

/// What the transport knows about its peers.
#[derive(Default)]
pub(super) struct PeerBook {
    /// Node id → actor address of every peer membership lists.
    pub(super) listed: HashMap<String, String>,
    /// Ready sessions by their `NodeSession` actor.
    pub(super) sessions: HashMap<ActorId, LiveSession>,
    /// Node id → the earliest time to dial it again (a dial in flight or
    /// just failed).
    pub(super) next_dial: HashMap<String, Instant>,
    /// Node id → the sequence number of the last cast sent to it.
    pub(super) cast_seq: HashMap<String, u64>,
}

pub(super) struct LiveSession {
    pub(super) peer_node_id: String,
    /// ractor_cluster's number of the session: the `node()` of the ids of the
    /// remote actors it carries.
    pub(super) cluster_node_id: u64,
    pub(super) actor: ActorRef<NodeSessionMessage>,
}

impl PeerBook {
    pub(super) fn has_session(&self, node_id: &str) -> bool {
        self.sessions.values().any(|s| s.peer_node_id == node_id)
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the book consistent; a panic elsewhere
    // does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the peer book's sessions in step with the node server, and logs
/// sessions going up and down.
pub(super) struct SessionEvents {
    pub(super) book: Arc<Mutex<PeerBook>>,
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
