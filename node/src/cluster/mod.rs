//! The cluster: gossip membership (chitchat), the inter-node transport
//! (ractor_cluster), shard placement over the ready members, and the
//! forwarding of requests and sockets to a shard's owner. See docs/cluster.md.
//!
//! Built in dependency order: the transport (its inbound messages queue in
//! an inbox) and membership, then [`node::ClusterNode`] — the shared state,
//! which the api and the live exam use as their ports — then, once the app
//! exists, the control loop and the inbound server.
//!
//! # Layout
//! - `membership`: who is in the cluster, alive and ready (chitchat)
//! - `transport`: node-to-node calls (ractor_cluster, one region per node)
//! - `wire`: the messages between nodes
//! - `node`: this node's part: routes, the cluster view, drain, reaching other nodes
//! - `majority`: the majority rule over the last stable membership
//! - `control`: the control loop: placement, leases, hand-off, take-over
//! - `tunnels`: socket tunnels through this node, both sides
//! - `inbound`: what other nodes send, served with the app

pub mod control;
pub mod inbound;
mod majority;
pub mod membership;
pub mod node;
pub mod transport;
mod tunnels;
mod wire;
