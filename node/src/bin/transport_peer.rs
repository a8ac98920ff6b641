//! `invigil-transport-peer`: the echo peer the transport tests start
//! (`node/tests/transport.rs`), one node of the node-to-node transport in a
//! process of its own (ractor's registry is global to a process, so two
//! nodes need two). By hand, it checks a transport link, its cookie and its
//! TLS files: start two, each naming the other with `--dial-node-id` and
//! `--dial-addr`, type `dial` into one, and with `RUST_LOG=info` both log
//! `transport session up` (or why not: a TLS handshake refused, no session
//! for a wrong cookie).
//!
//! It listens on `--listen`, prints `invigil-transport-peer-ready` on stdout
//! once it does, dials the `--dial-*` node on each `dial` line of stdin, and
//! stops when stdin closes (or it is killed). As a node it answers:
//! - a call `hold`: casts `holding` back to the caller, then never answers;
//! - a call `slow:<ms>:…`: sleeps `<ms>` milliseconds, then as below;
//! - any other call: replies `echo:` and the payload;
//! - a cast: calls the sender back with the cast's payload, one cast after
//!   the other, so the sender sees the order the casts arrived in.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use invigil_node::cluster::transport::{RegionHandler, TlsFiles, Transport, TransportConfig};
use tokio::sync::mpsc;

/// Printed on stdout, alone on its line, once the transport listens.
const READY_MARKER: &str = "invigil-transport-peer-ready";

#[derive(Parser)]
#[command(
    name = "invigil-transport-peer",
    about = "An echo node of the invigil transport, driven by stdin (`dial`)"
)]
struct Cli {
    /// This node's id (no `@`).
    #[arg(long)]
    node_id: String,
    /// Where this node's transport listens.
    #[arg(long)]
    listen: SocketAddr,
    /// The shared secret of the transport handshake; best given through the
    /// environment, which keeps it off the command line.
    #[arg(long, env = "INVIGIL_TRANSPORT_PEER_COOKIE", hide_env_values = true)]
    cookie: String,
    /// The id of the node dialed on each `dial` line of stdin.
    #[arg(long)]
    dial_node_id: String,
    /// The transport address of the node dialed on each `dial` line.
    #[arg(long)]
    dial_addr: SocketAddr,
    /// This node's certificate chain (PEM); with `--tls-key` and `--tls-ca`
    /// every connection is mutual TLS, without them plain TCP.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The certificates that sign every node's certificate (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Timeout of one attempt of a call (the peer's call-backs).
    #[arg(long, default_value_t = 1_000)]
    call_timeout_ms: u64,
    /// Attempts of a call, the first included.
    #[arg(long, default_value_t = 3)]
    call_attempts: u32,
}

impl Cli {
    fn transport_config(&self) -> TransportConfig {
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            // clap lets through all three or none.
            _ => None,
        };
        TransportConfig {
            node_id: self.node_id.clone(),
            listen: self.listen,
            cookie: self.cookie.clone(),
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            call_attempts: self.call_attempts,
            tls,
        }
    }
}

/// What the handler needs sent; the main loop, which holds the transport
/// (built after, and from, the handler), sends it.
enum Outgoing {
    /// Cast `holding` to `to`: its held call has started.
    Holding { to: String },
    /// Call `to` back with `payload`, a cast it sent.
    CallBack { to: String, payload: Vec<u8> },
}

struct EchoHandler {
    outgoing: mpsc::Sender<Outgoing>,
}

#[async_trait]
impl RegionHandler for EchoHandler {
    async fn call(&self, from: String, payload: Vec<u8>) -> Vec<u8> {
        if payload == b"hold" {
            let _ = self.outgoing.send(Outgoing::Holding { to: from }).await;
            std::future::pending::<()>().await;
        }
        if let Some(rest) = payload.strip_prefix(b"slow:") {
            // A malformed delay does not sleep.
            let millis = String::from_utf8_lossy(rest)
                .split(':')
                .next()
                .and_then(|millis| millis.parse::<u64>().ok());
            if let Some(millis) = millis {
                tokio::time::sleep(Duration::from_millis(millis)).await;
            }
        }
        [b"echo:".as_slice(), &payload].concat()
    }

    async fn cast(&self, from: String, payload: Vec<u8>) {
        // Waits for room, so a sender's casts queue in order.
        let _ = self
            .outgoing
            .send(Outgoing::CallBack { to: from, payload })
            .await;
    }
}

/// Logs to stderr as `RUST_LOG` says (errors only by default).
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs();
    let (outgoing, mut to_send) = mpsc::channel(64);
    let transport =
        Transport::start(cli.transport_config(), Arc::new(EchoHandler { outgoing })).await?;

    // stdin on a thread of its own: a blocking read must not hold up the
    // runtime's shutdown.
    let (lines, mut commands) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_MARKER}")?;
    stdout.flush()?;
    drop(stdout);

    let dial_target = [(cli.dial_node_id.clone(), cli.dial_addr.to_string())];
    loop {
        tokio::select! {
            command = commands.recv() => match command.as_deref() {
                Some("dial") => transport.set_peers(&dial_target).await,
                Some(_) => {}
                None => break,
            },
            Some(outgoing) = to_send.recv() => match outgoing {
                Outgoing::Holding { to } => {
                    let _ = transport.cast(&to, b"holding".to_vec()).await;
                }
                Outgoing::CallBack { to, payload } => {
                    let _ = transport.call(&to, payload).await;
                }
            },
        }
    }
    transport.shutdown().await;
    Ok(())
}
