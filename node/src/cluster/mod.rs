//! The cluster: gossip membership (chitchat), the inter-node transport
//! (ractor_cluster), shard placement over the ready members, and the
//! forwarding of requests and sockets to a shard's owner. See docs/cluster.md.
//!
//! # Layout
//! - `membership`: who is in the cluster, alive and ready (chitchat)
//! - `transport`: node-to-node calls (ractor_cluster, one region per node)
//! - `node`: placement, leases, hand-off, majority, forwarding and tunnels

pub mod membership;
pub mod node;
pub mod transport;
