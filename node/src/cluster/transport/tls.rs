//! Mutual TLS for the transport: [`TlsFiles`] made into a rustls acceptor
//! and connector, and the accept loop that hands each encrypted inbound
//! connection to the node server (module doc of `transport`, Security).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use ractor::ActorRef;
use ractor_cluster::{NetworkStream, NodeServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, version};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::types::TlsFiles;

/// The DNS name (subject alternative name) every node certificate carries;
/// a dialing node expects it from whichever node it dials.
pub const TLS_SERVER_NAME: &str = "invigil-node";
/// The most TLS handshakes of inbound connections running at once; a
/// connection beyond that is closed at once.
const MAX_PENDING_HANDSHAKES: usize = 64;
/// The pause after a failed accept (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// This node's side of mutual TLS: it presents its certificate both ways and
/// accepts only peers whose certificate the CA signed.
#[derive(Clone)]
pub(super) struct NodeTls {
    pub(super) acceptor: TlsAcceptor,
    pub(super) connector: TlsConnector,
    pub(super) server_name: ServerName<'static>,
}

impl NodeTls {
    /// Reads the PEM files and checks them against each other: the key fits
    /// the certificate, and the CA accepts the certificate both as a server
    /// named [`TLS_SERVER_NAME`] and as a client. Each error names its file.
    pub(super) async fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        // Explicit: rustls here has two providers (aws-lc-rs and ring), so
        // it picks no process default, and `builder()` would panic.
        let provider = Arc::new(aws_lc_rs::default_provider());
        let chain = read_certs(&files.cert, "cert").await?;
        let key = read_key(&files.key).await?;
        let roots = Arc::new(read_roots(&files.ca).await?);
        let server_name = ServerName::try_from(TLS_SERVER_NAME)
            .with_context(|| format!("{TLS_SERVER_NAME:?} is not a DNS name"))?;

        let ca = files.ca.display();
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|error| anyhow!("transport TLS ca {ca} is not usable: {error}"))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|error| anyhow!("transport TLS ca {ca} is not usable: {error}"))?;

        let key_misfit = |error| {
            anyhow!(
                "transport TLS key {} does not fit cert {}: {error}",
                files.key.display(),
                files.cert.display()
            )
        };
        let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&version::TLS13])
            .context("the TLS 1.3 protocol is not available")?
            .with_client_cert_verifier(Arc::clone(&client_verifier))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_misfit)?;

        check_own_cert(
            files,
            &chain,
            &server_name,
            server_verifier.as_ref(),
            client_verifier.as_ref(),
        )?;

        let client_config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13])
            .context("the TLS 1.3 protocol is not available")?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(key_misfit)?;

        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server_config)),
            connector: TlsConnector::from(Arc::new(client_config)),
            server_name,
        })
    }
}

/// Fails unless the CA accepts this node's own certificate the way peers
/// will check it, so a wrong file shows at start, not as refused sessions.
fn check_own_cert(
    files: &TlsFiles,
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
    server_verifier: &dyn ServerCertVerifier,
    client_verifier: &dyn ClientCertVerifier,
) -> anyhow::Result<()> {
    let invalid = |role: &str, error| {
        anyhow!(
            "transport TLS cert {} is not valid as a node's {role} certificate under ca {}: \
             {error} (it must be signed by the ca, carry the DNS name {TLS_SERVER_NAME} and \
             allow server and client auth)",
            files.cert.display(),
            files.ca.display()
        )
    };
    let (end_entity, intermediates) = chain
        .split_first()
        .context("a certificate chain read from PEM is never empty")?;
    let now = UnixTime::now();
    server_verifier
        .verify_server_cert(end_entity, intermediates, server_name, &[], now)
        .map_err(|error| invalid("server", error))?;
    client_verifier
        .verify_client_cert(end_entity, intermediates, now)
        .map_err(|error| invalid("client", error))?;
    Ok(())
}

async fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .with_context(|| format!("reading transport TLS {what} {}", path.display()))
}

/// The certificates in the PEM file at `path`, in order; at least one.
async fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path, what).await?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            anyhow!(
                "transport TLS {what} {} is not valid PEM: {error}",
                path.display()
            )
        })?;
    ensure!(
        !certs.is_empty(),
        "transport TLS {what} {} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
async fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_file(path, "key").await?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        anyhow!(
            "transport TLS key {} holds no usable PEM private key: {error}",
            path.display()
        )
    })
}

/// Every certificate of the CA file as a trust anchor.
async fn read_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "ca").await? {
        roots.add(cert).map_err(|error| {
            anyhow!(
                "transport TLS ca {} holds a certificate that is no trust anchor: {error}",
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// Binds the transport's TLS listener.
pub(super) async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen)
        .await
        .with_context(|| format!("starting the transport TLS listener on {listen}"))
}

/// Accepts connections for ever (the transport aborts it at shutdown): each
/// gets its TLS handshake on a task of its own, bounded by
/// `handshake_timeout`, and then goes to `server` as an inbound connection.
/// ractor_cluster's own TLS listener runs handshakes one at a time without
/// a timeout, so one silent connection would stop every inbound session.
pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    server: ActorRef<NodeServerMessage>,
    handshake_timeout: Duration,
) {
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer_addr)) => {
                    if handshakes.len() >= MAX_PENDING_HANDSHAKES {
                        warn!(%peer_addr, "transport connection refused: too many tls handshakes in progress");
                        continue;
                    }
                    handshakes.spawn(handshake(
                        stream,
                        peer_addr,
                        acceptor.clone(),
                        server.clone(),
                        handshake_timeout,
                    ));
                }
                Err(error) => {
                    warn!(%error, "transport accept failed");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

/// Runs the server side of one handshake; a peer without a certificate the
/// CA signed ends here, before ractor_cluster sees the connection.
async fn handshake(
    stream: TcpStream,
    peer_addr: SocketAddr,
    acceptor: TlsAcceptor,
    server: ActorRef<NodeServerMessage>,
    handshake_timeout: Duration,
) {
    let local_addr = match stream.set_nodelay(true).and_then(|()| stream.local_addr()) {
        Ok(local_addr) => local_addr,
        Err(error) => {
            debug!(%peer_addr, %error, "transport connection lost before its tls handshake");
            return;
        }
    };
    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            warn!(%peer_addr, %error, "transport tls handshake refused");
            return;
        }
        Err(_) => {
            warn!(%peer_addr, "transport tls handshake timed out");
            return;
        }
    };
    let opened = server.cast(NodeServerMessage::ConnectionOpened {
        stream: Box::new(NetworkStream::TlsServer {
            peer_addr,
            local_addr,
            stream,
        }),
        is_server: true,
    });
    if opened.is_err() {
        debug!(%peer_addr, "transport connection dropped: the node server stopped");
    }
}
