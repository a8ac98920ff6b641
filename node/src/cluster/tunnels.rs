//! The socket tunnels through this node, both sides: as a gateway (a
//! client's socket here, its room on another node) and as an owner (the
//! socket served here for a client connected elsewhere). Frames travel as
//! casts, in order; either end closing closes the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use invigil_api::cluster::TunnelFrame;
use tokio::sync::mpsc;
use tracing::debug;

use super::membership::MembershipView;
use super::transport::Transport;
use super::wire::{Wire, encode};

/// Frames queued per tunnel before it is closed as too slow.
pub(super) const TUNNEL_QUEUE: usize = 1024;

#[derive(Default)]
struct Table {
    /// Gateway side: tunnel id → (owner node, frames from the owner).
    gateway: HashMap<u64, (String, mpsc::Sender<TunnelFrame>)>,
    /// Owner side: (gateway node, tunnel id) → frames from the client.
    owner: HashMap<(String, u64), mpsc::Sender<TunnelFrame>>,
}

/// Every tunnel's inbound queue, by side. A std mutex: never held across
/// an await.
#[derive(Default)]
pub(super) struct Tunnels {
    table: Mutex<Table>,
    next_id: AtomicU64,
}

impl Tunnels {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new gateway-side tunnel to `node`; returns its id and
    /// the queue of frames the owner sends.
    pub(super) fn open_gateway(&self, node: &str) -> (u64, mpsc::Receiver<TunnelFrame>) {
        let tunnel = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (down_tx, down_rx) = mpsc::channel(TUNNEL_QUEUE);
        self.table()
            .gateway
            .insert(tunnel, (node.to_string(), down_tx));
        (tunnel, down_rx)
    }

    pub(super) fn forget_gateway(&self, tunnel: u64) {
        self.table().gateway.remove(&tunnel);
    }

    /// Registers the owner side of `gateway`'s tunnel; `None` when it is
    /// open already (a retried open: calls are at-least-once).
    pub(super) fn open_owner(
        &self,
        gateway: &str,
        tunnel: u64,
    ) -> Option<mpsc::Receiver<TunnelFrame>> {
        let mut table = self.table();
        let key = (gateway.to_string(), tunnel);
        if table.owner.contains_key(&key) {
            return None;
        }
        let (incoming_tx, incoming_rx) = mpsc::channel(TUNNEL_QUEUE);
        table.owner.insert(key, incoming_tx);
        Some(incoming_rx)
    }

    /// A client frame for the socket served here; a tunnel whose socket
    /// does not keep up (or that closes) is forgotten.
    pub(super) fn to_owner_side(&self, gateway: String, tunnel: u64, frame: TunnelFrame) {
        let mut table = self.table();
        let key = (gateway, tunnel);
        let closing = matches!(frame, TunnelFrame::Close { .. });
        if let Some(sender) = table.owner.get(&key)
            && (sender.try_send(frame).is_err() || closing)
        {
            debug!(gateway = %key.0, tunnel, closing, "owner side of a tunnel closed");
            table.owner.remove(&key);
        }
    }

    /// A frame from the owner for a client connected here.
    pub(super) fn to_gateway_side(&self, tunnel: u64, frame: TunnelFrame) {
        let mut table = self.table();
        let closing = matches!(frame, TunnelFrame::Close { .. });
        if let Some((_, sender)) = table.gateway.get(&tunnel)
            && (sender.try_send(frame).is_err() || closing)
        {
            debug!(tunnel, closing, "gateway side of a tunnel closed");
            table.gateway.remove(&tunnel);
        }
    }

    /// Tunnels to or from a node that left are over: dropping their queues
    /// tells both ends.
    pub(super) fn close_departed(&self, this_node: &str, view: &MembershipView) {
        let live = |node: &str| node == this_node || view.get(node).is_some();
        let mut table = self.table();
        table.gateway.retain(|_, (node, _)| live(node));
        table.owner.retain(|(node, _), _| live(node));
    }

    /// Open tunnels, both sides (the load this node gossips).
    pub(super) fn count(&self) -> usize {
        let table = self.table();
        table.gateway.len() + table.owner.len()
    }

    /// Forgets every tunnel (shutdown).
    pub(super) fn clear(&self) {
        *self.table() = Table::default();
    }
}

/// Casts one side's tunnel frames to `peer`, in order, until a close frame
/// or the channel ends; an end without a close sends `close`, so the other
/// side always learns the tunnel is over (unless `peer` is unreachable).
pub(super) async fn pump(
    transport: Transport,
    peer: String,
    mut frames: mpsc::Receiver<TunnelFrame>,
    wrap: impl Fn(TunnelFrame) -> Wire,
    close: TunnelFrame,
) {
    while let Some(frame) = frames.recv().await {
        let closing = matches!(frame, TunnelFrame::Close { .. });
        if let Err(error) = transport.cast(&peer, encode(&wrap(frame))).await {
            debug!(peer = %peer, %error, "a tunnel frame did not reach its node; the tunnel ends");
            return;
        }
        if closing {
            return;
        }
    }
    if let Err(error) = transport.cast(&peer, encode(&wrap(close))).await {
        debug!(peer = %peer, %error, "the end of a tunnel was not told");
    }
}
