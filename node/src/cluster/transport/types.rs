//! What the transport is configured with, what it hands inbound messages
//! to, and how a call or cast fails.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

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
