//! What other nodes send this one. The transport's region hands every
//! call and cast to the [`Inbox`], a channel; the inbound server takes them
//! from there and serves them with the app: a forwarded request through the
//! HTTP endpoint, a plan change or a room's "done" through the directory, a
//! tunnel's socket through the same socket code as a local client.
//!
//! The channel is what lets the node be built in dependency order: the
//! transport exists before the app, and the app before the server that
//! answers from it. Casts are served in the order they arrive (a tunnel's
//! frames stay in order); each call runs on a task of its own.

use std::sync::Arc;

use async_trait::async_trait;
use invigil_actors::live::directory::Directory;
use invigil_actors::live::wire::close;
use invigil_api::AppState;
use invigil_api::cluster::{TunnelFrame, TunnelOpen, serve_forwarded};
use invigil_api::ws::tunnel;
use poem::endpoint::BoxEndpoint;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::node::ClusterNode;
use super::transport::RegionHandler;
use super::tunnels::{TUNNEL_QUEUE, pump};
use super::wire::{Wire, encode_reply};

/// Messages waiting for the inbound server; beyond, the region waits.
const INBOX_CAPACITY: usize = 4096;

/// A message from another node.
pub enum Inbound {
    Call {
        from: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    Cast {
        from: String,
        payload: Vec<u8>,
    },
}

/// The transport's inbound side: everything goes to the inbound server.
pub struct Inbox {
    sender: mpsc::Sender<Inbound>,
}

impl Inbox {
    /// The handler for the transport, and the queue the server reads.
    pub fn new() -> (Self, mpsc::Receiver<Inbound>) {
        let (sender, receiver) = mpsc::channel(INBOX_CAPACITY);
        (Self { sender }, receiver)
    }
}

#[async_trait]
impl RegionHandler for Inbox {
    async fn call(&self, from: String, payload: Vec<u8>) -> Vec<u8> {
        let (reply, answer) = oneshot::channel();
        let call = Inbound::Call {
            from: from.clone(),
            payload,
            reply,
        };
        if self.sender.send(call).await.is_err() {
            debug!(from = %from, "a call arrived after this node stopped serving; not answered");
            return Vec::new();
        }
        answer.await.unwrap_or_else(|_| {
            // The call's task ended without answering (it panicked): the
            // caller gets empty bytes and reports them as malformed.
            warn!(from = %from, "a call from another node was not answered");
            Vec::new()
        })
    }

    async fn cast(&self, from: String, payload: Vec<u8>) {
        if self
            .sender
            .send(Inbound::Cast { from, payload })
            .await
            .is_err()
        {
            debug!("a cast arrived after this node stopped serving; dropped");
        }
    }
}

/// Serves what other nodes send, with the app this node serves clients with.
pub struct InboundServer {
    pub node: Arc<ClusterNode>,
    pub directory: Arc<Directory>,
    pub state: AppState,
    pub endpoint: Arc<BoxEndpoint<'static>>,
}

impl InboundServer {
    /// Serves the inbox until the transport stops (the inbox ends) or `stopped`.
    pub async fn run(self, mut inbox: mpsc::Receiver<Inbound>, mut stopped: watch::Receiver<bool>) {
        let server = Arc::new(self);
        loop {
            let inbound = tokio::select! {
                inbound = inbox.recv() => match inbound {
                    Some(inbound) => inbound,
                    None => break,
                },
                changed = stopped.changed() => {
                    if changed.is_err() || *stopped.borrow() {
                        break;
                    }
                    continue;
                }
            };
            match inbound {
                Inbound::Call {
                    from,
                    payload,
                    reply,
                } => {
                    let server = server.clone();
                    tokio::spawn(async move {
                        let answer = match decode(&from, &payload) {
                            Some(wire) => server.call(from, wire).await,
                            None => Vec::new(),
                        };
                        let _ = reply.send(answer);
                    });
                }
                Inbound::Cast { from, payload } => {
                    if let Some(wire) = decode(&from, &payload) {
                        server.cast(from, wire);
                    }
                }
            }
        }
    }

    async fn call(&self, from: String, wire: Wire) -> Vec<u8> {
        match wire {
            Wire::Http(request) => {
                let endpoint = self.endpoint.as_ref().as_ref();
                encode_reply(&serve_forwarded(endpoint, self.node.node_id(), request).await)
            }
            Wire::PlanChanged {
                plan_id,
                room_id,
                runtime,
                events,
            } => {
                let result = self
                    .directory
                    .deliver_plan_change_here(&plan_id, &room_id, &runtime, &events)
                    .await
                    .map_err(|error| error.to_string());
                encode_reply(&result)
            }
            Wire::RoomDone { plan_id, room_id } => {
                let result = self
                    .directory
                    .room_done_here(&plan_id, &room_id)
                    .await
                    .map_err(|error| error.to_string());
                encode_reply(&result)
            }
            Wire::TunnelOpen { tunnel, open } => {
                self.open_owner_side(from, tunnel, open);
                encode_reply(&Ok::<(), String>(()))
            }
            // Only a room live here answers: never asked onwards.
            Wire::Presence { plan_id, room_id } => {
                encode_reply(&self.state.exam.presence_here(&plan_id, &room_id).await)
            }
            cast
            @ (Wire::PlanReplaced { .. } | Wire::TunnelUp { .. } | Wire::TunnelDown { .. }) => {
                self.cast(from, cast);
                Vec::new()
            }
        }
    }

    fn cast(&self, from: String, wire: Wire) {
        match wire {
            Wire::PlanReplaced { plan_id } => self.directory.forget_plan(&plan_id),
            Wire::TunnelUp { tunnel, frame } => {
                self.node.tunnels.to_owner_side(from, tunnel, frame)
            }
            Wire::TunnelDown { tunnel, frame } => self.node.tunnels.to_gateway_side(tunnel, frame),
            // A node of the previous version still casts it (during a
            // rolling upgrade): recorded all the same, nobody to confirm to.
            Wire::RoomDone { plan_id, room_id } => {
                let directory = self.directory.clone();
                tokio::spawn(async move {
                    if let Err(error) = directory.room_done_here(&plan_id, &room_id).await {
                        debug!(from = %from, %error, "a room's done report (cast) not recorded");
                    }
                });
            }
            Wire::Http(_)
            | Wire::PlanChanged { .. }
            | Wire::TunnelOpen { .. }
            | Wire::Presence { .. } => {
                warn!(from = %from, "a call arrived as a cast; dropped");
            }
        }
    }

    /// Owner side of a tunnel: runs the socket here, its output cast back.
    /// A repeated open (calls are at-least-once) finds it running.
    fn open_owner_side(&self, from: String, tunnel: u64, open: TunnelOpen) {
        let Some(incoming) = self.node.tunnels.open_owner(&from, tunnel) else {
            return;
        };
        let (outgoing_tx, outgoing_rx) = mpsc::channel::<TunnelFrame>(TUNNEL_QUEUE);
        tokio::spawn(tunnel::serve(
            self.state.clone(),
            open,
            incoming,
            outgoing_tx,
        ));
        let reconnect = TunnelFrame::Close {
            code: close::RECONNECT,
            reason: "reconnect".into(),
        };
        tokio::spawn(pump(
            self.node.transport().clone(),
            from,
            outgoing_rx,
            move |frame| Wire::TunnelDown { tunnel, frame },
            reconnect,
        ));
    }
}

/// Decodes a message; a malformed one is logged and dropped.
fn decode(from: &str, payload: &[u8]) -> Option<Wire> {
    match serde_json::from_slice::<Wire>(payload) {
        Ok(wire) => Some(wire),
        Err(error) => {
            warn!(from = %from, %error, "malformed cluster message");
            None
        }
    }
}
