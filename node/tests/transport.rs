//! The node-to-node transport between two real processes. ractor's registry
//! and process groups are global to a process, so the second node is a
//! process of its own: the `invigil-transport-peer` binary
//! (node/src/bin/transport_peer.rs), which dials the test's node when told
//! to on stdin and stops when stdin closes (or it is killed).
//!
//! With TLS, each test makes its own CA and node certificates (rcgen) in a
//! temporary directory, which the peer process reads by path.
//!
//! The peer echoes calls (`echo:` + payload; `slow:<ms>:…` first sleeps,
//! `hold` tells the caller it started and never answers) and answers each cast
//! by calling the sender back with the cast's payload, so the sender sees the
//! order the casts arrived in.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use invigil_node::cluster::transport::{
    RegionHandler, TLS_SERVER_NAME, TlsFiles, Transport, TransportConfig, TransportError,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::AsyncReadExt;

/// The peer binary, built by cargo for this test.
const PEER_BIN: &str = env!("CARGO_BIN_EXE_invigil-transport-peer");
/// What the peer process prints, alone on its line, once it listens.
const READY_MARKER: &str = "invigil-transport-peer-ready";
const COOKIE: &str = "transport-test-cookie-0123456789";
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
const CALL_ATTEMPTS: u32 = 3;
/// How long a call may take at most, plus scheduling slack.
const CALL_BOUND: Duration =
    Duration::from_millis(CALL_TIMEOUT.as_millis() as u64 * CALL_ATTEMPTS as u64 + 750);
const CONNECT_WAIT: Duration = Duration::from_secs(20);

fn config(
    node_id: &str,
    listen: SocketAddr,
    cookie: &str,
    tls: Option<TlsFiles>,
) -> TransportConfig {
    TransportConfig {
        node_id: node_id.to_owned(),
        listen,
        cookie: cookie.to_owned(),
        call_timeout: CALL_TIMEOUT,
        call_attempts: CALL_ATTEMPTS,
        tls,
    }
}

/// Logs to stderr as `RUST_LOG` says (nothing by default).
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}

fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn wait_until<F, Fut>(timeout: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Certificates.

/// A CA in a temporary directory of its own, which issues node certificates
/// into that directory.
struct TestCa {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test ca"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).unwrap();
        Self { dir, issuer }
    }

    fn path(&self, file_name: &str) -> PathBuf {
        self.dir.path().join(file_name)
    }

    fn ca_path(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A node certificate as every node needs one: the DNS name
    /// `TLS_SERVER_NAME`, server and client auth.
    fn node(&self, name: &str) -> TlsFiles {
        self.issue(name, &[TLS_SERVER_NAME])
    }

    /// A certificate for `name` with the DNS names `dns_names`, written as
    /// `<name>.pem` and `<name>.key`; the CA file is this CA's.
    fn issue(&self, name: &str, dns_names: &[&str]) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let dns_names: Vec<String> = dns_names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(dns_names).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
            ca: self.ca_path(),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// Writes a file holding the PEM of every CA in `cas`, in `cas[0]`'s directory.
fn ca_bundle(cas: &[&TestCa]) -> PathBuf {
    let bundle: String = cas
        .iter()
        .map(|ca| std::fs::read_to_string(ca.ca_path()).unwrap())
        .collect();
    let path = cas[0].path("bundle.pem");
    std::fs::write(&path, bundle).unwrap();
    path
}

// ---------------------------------------------------------------------------
// The peer process.

/// What the peer process is told: where it listens, who it is, its cookie,
/// and the node that started it.
struct PeerSpec {
    listen: SocketAddr,
    node_id: String,
    cookie: String,
    driver_id: String,
    driver_addr: SocketAddr,
    tls: Option<TlsFiles>,
}

impl PeerSpec {
    /// The peer binary with this spec as its arguments (the cookie in its
    /// environment, as the binary takes it).
    fn command(&self) -> Command {
        let mut command = Command::new(PEER_BIN);
        command
            .args(["--node-id", &self.node_id])
            .args(["--listen", &self.listen.to_string()])
            .args(["--dial-node-id", &self.driver_id])
            .args(["--dial-addr", &self.driver_addr.to_string()])
            .args(["--call-timeout-ms", &CALL_TIMEOUT.as_millis().to_string()])
            .args(["--call-attempts", &CALL_ATTEMPTS.to_string()])
            .env("INVIGIL_TRANSPORT_PEER_COOKIE", &self.cookie);
        if let Some(tls) = &self.tls {
            command
                .arg("--tls-cert")
                .arg(&tls.cert)
                .arg("--tls-key")
                .arg(&tls.key)
                .arg("--tls-ca")
                .arg(&tls.ca);
        }
        command
    }
}

/// A peer process, killed when dropped (a failing test included).
struct PeerProcess {
    child: Child,
    commands: ChildStdin,
    /// Kept open once read: the peer's stdout must not break while it runs.
    output: Option<BufReader<ChildStdout>>,
}

impl PeerProcess {
    /// Starts a peer and waits until it listens. It does not dial until told.
    async fn spawn(spec: &PeerSpec) -> Self {
        let mut child = spec
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let commands = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        // Killed by the drop if the wait below fails, which ends the read.
        let mut peer = Self {
            child,
            commands,
            output: None,
        };
        let read_ready = tokio::task::spawn_blocking(move || {
            let mut output = output;
            let mut line = String::new();
            while line.trim_end() != READY_MARKER {
                line.clear();
                if output.read_line(&mut line).unwrap_or(0) == 0 {
                    return None;
                }
            }
            Some(output)
        });
        let output = tokio::time::timeout(CONNECT_WAIT, read_ready).await;
        let Ok(Ok(Some(output))) = output else {
            panic!("the peer process did not start listening");
        };
        peer.output = Some(output);
        peer
    }

    /// Tells the peer to dial the test's node.
    fn dial(&mut self) {
        writeln!(self.commands, "dial").unwrap();
        self.commands.flush().unwrap();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
        drop(self.output.take());
    }
}

// ---------------------------------------------------------------------------
// The test's own node.

/// Records every payload this node receives; calls are answered `ok`.
#[derive(Default)]
struct Recorder {
    received: Mutex<Vec<Vec<u8>>>,
}

impl Recorder {
    fn count_with_prefix(&self, prefix: &[u8]) -> usize {
        self.with_prefix(prefix).len()
    }

    /// The payloads received that start with `prefix`, in arrival order.
    fn with_prefix(&self, prefix: &[u8]) -> Vec<String> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|payload| payload.starts_with(prefix))
            .map(|payload| String::from_utf8_lossy(payload).into_owned())
            .collect()
    }
}

#[async_trait]
impl RegionHandler for Recorder {
    async fn call(&self, _from: String, payload: Vec<u8>) -> Vec<u8> {
        self.received.lock().unwrap().push(payload);
        b"ok".to_vec()
    }

    async fn cast(&self, _from: String, payload: Vec<u8>) {
        self.received.lock().unwrap().push(payload);
    }
}

/// This test's node and one peer process that knows it.
struct Pair {
    transport: Transport,
    recorder: Arc<Recorder>,
    peer: PeerProcess,
    peer_spec: PeerSpec,
    /// A TCP connection to this test's node that never says a word, held
    /// open from before the peer dials (`PairSetup::silent_connection`).
    silent_connection_opt: Option<tokio::net::TcpStream>,
}

/// How a [`Pair`] starts.
struct PairSetup<'a> {
    driver_id: &'a str,
    peer_id: &'a str,
    peer_cookie: &'a str,
    driver_tls: Option<TlsFiles>,
    peer_tls: Option<TlsFiles>,
    /// Whether this test's node lists the peer, and so dials it too.
    driver_dials: bool,
    /// Whether to open a silent connection to this test's node before the
    /// peer dials it.
    silent_connection: bool,
}

impl<'a> PairSetup<'a> {
    /// Plain TCP, both sides dialing.
    fn new(driver_id: &'a str, peer_id: &'a str) -> Self {
        Self {
            driver_id,
            peer_id,
            peer_cookie: COOKIE,
            driver_tls: None,
            peer_tls: None,
            driver_dials: true,
            silent_connection: false,
        }
    }
}

impl Pair {
    /// Starts `driver_id` here and `peer_id` (with `peer_cookie`) in another
    /// process; each lists the other and both dial at the same moment, so
    /// two sessions race (ractor_cluster keeps one).
    async fn start(driver_id: &str, peer_id: &str, peer_cookie: &str) -> Self {
        Self::start_with(PairSetup {
            peer_cookie,
            ..PairSetup::new(driver_id, peer_id)
        })
        .await
    }

    async fn start_with(setup: PairSetup<'_>) -> Self {
        init_logs();
        let driver_addr = free_addr();
        let recorder = Arc::new(Recorder::default());
        let driver_config = config(setup.driver_id, driver_addr, COOKIE, setup.driver_tls);
        let transport = Transport::start(driver_config, recorder.clone())
            .await
            .unwrap();
        let silent_connection_opt = if setup.silent_connection {
            Some(tokio::net::TcpStream::connect(driver_addr).await.unwrap())
        } else {
            None
        };
        let peer_spec = PeerSpec {
            listen: free_addr(),
            node_id: setup.peer_id.to_owned(),
            cookie: setup.peer_cookie.to_owned(),
            driver_id: setup.driver_id.to_owned(),
            driver_addr,
            tls: setup.peer_tls,
        };
        let mut peer = PeerProcess::spawn(&peer_spec).await;
        peer.dial();
        if setup.driver_dials {
            transport.set_peers(&[peer_spec.peer()]).await;
        }
        Self {
            transport,
            recorder,
            peer,
            peer_spec,
            silent_connection_opt,
        }
    }

    /// Kills the peer (if it still runs) and starts a new one on the same
    /// address with the same node id; the new one does not dial.
    async fn restart_peer(&mut self) {
        self.peer.kill();
        self.peer = PeerProcess::spawn(&self.peer_spec).await;
    }

    /// Whether a call to the peer comes back within `CONNECT_WAIT`.
    async fn wait_for_echo(&self) -> bool {
        let peer_id = &self.peer_spec.node_id;
        wait_until(CONNECT_WAIT, || async {
            self.transport.call(peer_id, b"ping".to_vec()).await.ok() == Some(b"echo:ping".to_vec())
        })
        .await
    }

    async fn wait_for_no_session(&self) -> bool {
        wait_until(Duration::from_secs(5), || async {
            self.transport.connected_peers().is_empty()
        })
        .await
    }
}

impl PeerSpec {
    fn peer(&self) -> (String, String) {
        (self.node_id.clone(), self.listen.to_string())
    }
}

fn is_delivery_failure(result: &Result<Vec<u8>, TransportError>) -> bool {
    matches!(
        result,
        Err(TransportError::Timeout | TransportError::Closed(_) | TransportError::NoRoute(_))
    )
}

// ---------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_casts_cross_processes_in_order_and_concurrently() {
    let pair = Pair::start("node-1", "node-2", COOKIE).await;
    let transport = &pair.transport;
    assert!(pair.wait_for_echo().await, "node-2 never answered");
    assert_eq!(transport.connected_peers(), vec!["node-2".to_owned()]);

    // A call to this node itself reaches its own handler.
    assert_eq!(
        transport.call("node-1", b"self".to_vec()).await.unwrap(),
        b"ok"
    );
    assert_eq!(pair.recorder.count_with_prefix(b"self"), 1);

    // 1000 sequential calls: latency.
    let started = Instant::now();
    for i in 0..1000 {
        let payload = format!(r#"{{"seq":{i},"kind":"latency"}}"#).into_bytes();
        let reply = transport.call("node-2", payload.clone()).await.unwrap();
        assert_eq!(reply, [b"echo:".as_slice(), &payload].concat());
    }
    let mean = started.elapsed() / 1000;
    eprintln!("1000 sequential calls: mean {mean:?}");
    assert!(
        mean < Duration::from_millis(50),
        "mean call latency {mean:?}"
    );

    // 1000 casts arrive in the order sent (the peer calls each one back).
    for i in 0..1000 {
        transport
            .cast("node-2", format!("cast-{i:04}").into_bytes())
            .await
            .unwrap();
    }
    let all_back = wait_until(Duration::from_secs(60), || async {
        pair.recorder.count_with_prefix(b"cast-") >= 1000
    })
    .await;
    let echoed = pair.recorder.with_prefix(b"cast-");
    assert!(all_back, "{} of 1000 casts came back", echoed.len());
    let expected: Vec<String> = (0..1000).map(|i| format!("cast-{i:04}")).collect();
    assert_eq!(echoed, expected, "casts arrived out of order");

    // 200 concurrent calls of 300 ms each are handled side by side: one at
    // a time they would take a minute, and time out.
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200 {
        let transport = transport.clone();
        calls.spawn(async move {
            let payload = format!("slow:300:{i}").into_bytes();
            let reply = transport.call("node-2", payload.clone()).await;
            (payload, reply)
        });
    }
    let mut answered = 0;
    while let Some(joined) = calls.join_next().await {
        let (payload, reply) = joined.unwrap();
        assert_eq!(reply.unwrap(), [b"echo:".as_slice(), &payload].concat());
        answered += 1;
    }
    assert_eq!(answered, 200);
    let elapsed = started.elapsed();
    eprintln!("200 concurrent calls of 300 ms: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");

    // A node nobody knows: NoRoute, at once.
    let started = Instant::now();
    let unknown = transport.call("node-404", b"x".to_vec()).await;
    assert_eq!(unknown, Err(TransportError::NoRoute("node-404".to_owned())));
    assert_eq!(
        transport.cast("node-404", b"x".to_vec()).await,
        Err(TransportError::NoRoute("node-404".to_owned()))
    );
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "took {:?}",
        started.elapsed()
    );

    transport.shutdown().await;
    assert!(matches!(
        transport.call("node-2", b"late".to_vec()).await,
        Err(TransportError::Closed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_fails_calls_in_bounded_time_and_a_restarted_one_is_reached_again() {
    let mut pair = Pair::start("node-3", "node-4", COOKIE).await;
    assert!(pair.wait_for_echo().await, "node-4 never answered");

    // The peer dies in the middle of a call.
    let transport = pair.transport.clone();
    let started = Instant::now();
    let held = tokio::spawn(async move { transport.call("node-4", b"hold".to_vec()).await });
    let holding = wait_until(Duration::from_secs(5), || async {
        pair.recorder.count_with_prefix(b"holding") > 0
    })
    .await;
    assert!(holding, "node-4 never started the held call");
    pair.peer.kill();
    let held = held.await.unwrap();
    assert!(is_delivery_failure(&held), "{held:?}");
    assert!(
        started.elapsed() < CALL_BOUND,
        "held call took {:?}",
        started.elapsed()
    );

    // A new call fails too, in bounded time, and the session is gone.
    let started = Instant::now();
    let after = pair.transport.call("node-4", b"ping".to_vec()).await;
    assert!(is_delivery_failure(&after), "{after:?}");
    assert!(
        started.elapsed() < CALL_BOUND,
        "call took {:?}",
        started.elapsed()
    );
    assert!(
        pair.wait_for_no_session().await,
        "{:?}",
        pair.transport.connected_peers()
    );

    // Same address, same node id, a new process that does not dial: set_peers
    // reconnects.
    pair.restart_peer().await;
    pair.transport.set_peers(&[pair.peer_spec.peer()]).await;
    assert!(
        pair.wait_for_echo().await,
        "the restarted node-4 never answered"
    );
    assert_eq!(pair.transport.connected_peers(), vec!["node-4".to_owned()]);

    // Again, without set_peers: a call to the still listed peer redials.
    pair.restart_peer().await;
    assert!(pair.wait_for_echo().await, "node-4 was not redialed lazily");

    // Membership drops the peer: its session goes, and it is unknown.
    pair.transport.set_peers(&[]).await;
    assert!(
        pair.wait_for_no_session().await,
        "{:?}",
        pair.transport.connected_peers()
    );
    let started = Instant::now();
    let forgotten = pair.transport.call("node-4", b"ping".to_vec()).await;
    assert_eq!(forgotten, Err(TransportError::NoRoute("node-4".to_owned())));
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "took {:?}",
        started.elapsed()
    );

    // And lists it again.
    pair.transport.set_peers(&[pair.peer_spec.peer()]).await;
    assert!(pair.wait_for_echo().await, "node-4 was not reconnected");
    pair.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_another_cookie_is_never_reached() {
    let mut pair = Pair::start("node-5", "node-6", "another-cookie-0123456789").await;
    assert_never_reached(&mut pair).await;
}

/// Asserts that the pair's peer never becomes reachable while both sides
/// keep dialing: calls fail in bounded time with `NoRoute` or `Timeout`, no
/// session comes up, and the peer process lives on. Shuts the pair down.
async fn assert_never_reached(pair: &mut Pair) {
    let peer_id = pair.peer_spec.node_id.clone();
    // Long enough for both sides to have dialed, and failed, a few times.
    for _ in 0..3 {
        let started = Instant::now();
        let result = pair.transport.call(&peer_id, b"ping".to_vec()).await;
        assert!(
            matches!(
                result,
                Err(TransportError::NoRoute(_) | TransportError::Timeout)
            ),
            "{result:?}"
        );
        assert!(
            started.elapsed() < CALL_BOUND,
            "call took {:?}",
            started.elapsed()
        );
        pair.peer.dial();
        pair.transport.set_peers(&[pair.peer_spec.peer()]).await;
    }
    assert!(pair.transport.connected_peers().is_empty());
    assert!(pair.peer.is_running(), "the peer process died");
    // This node still works.
    assert_eq!(
        pair.transport
            .call(&pair.peer_spec.driver_id, b"self".to_vec())
            .await,
        Ok(b"ok".to_vec())
    );
    pair.transport.shutdown().await;
}

// ---------------------------------------------------------------------------
// TLS.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_peers_answer_calls_and_keep_casts_in_order() {
    let ca = TestCa::new("cluster");
    let pair = Pair::start_with(PairSetup {
        driver_tls: Some(ca.node("node-7")),
        peer_tls: Some(ca.node("node-8")),
        ..PairSetup::new("node-7", "node-8")
    })
    .await;
    let transport = &pair.transport;
    assert!(pair.wait_for_echo().await, "node-8 never answered over TLS");
    assert_eq!(transport.connected_peers(), vec!["node-8".to_owned()]);

    for i in 0..300 {
        let payload = format!("tls-call-{i}").into_bytes();
        let reply = transport.call("node-8", payload.clone()).await.unwrap();
        assert_eq!(reply, [b"echo:".as_slice(), &payload].concat());
    }

    // The peer calls each cast back, so the order here is the order there.
    for i in 0..500 {
        transport
            .cast("node-8", format!("tls-cast-{i:04}").into_bytes())
            .await
            .unwrap();
    }
    let all_back = wait_until(Duration::from_secs(60), || async {
        pair.recorder.count_with_prefix(b"tls-cast-") >= 500
    })
    .await;
    let echoed = pair.recorder.with_prefix(b"tls-cast-");
    assert!(all_back, "{} of 500 casts came back", echoed.len());
    let expected: Vec<String> = (0..500).map(|i| format!("tls-cast-{i:04}")).collect();
    assert_eq!(echoed, expected, "casts arrived out of order");

    transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_neither_blocks_tls_peers_dialing_in_nor_stays_open() {
    let ca = TestCa::new("cluster");
    let mut pair = Pair::start_with(PairSetup {
        driver_tls: Some(ca.node("node-9")),
        peer_tls: Some(ca.node("node-10")),
        driver_dials: false,
        silent_connection: true,
        ..PairSetup::new("node-9", "node-10")
    })
    .await;

    // Only node-10 dials (again on each probe, should a dial fail), so its
    // session is one this node accepted, silent connection or not.
    let transport = pair.transport.clone();
    let peer = &mut pair.peer;
    let reached = wait_until(CONNECT_WAIT, || {
        peer.dial();
        let transport = transport.clone();
        async move {
            transport.call("node-10", b"ping".to_vec()).await.ok() == Some(b"echo:ping".to_vec())
        }
    })
    .await;
    assert!(reached, "node-10 never got a session by dialing in");

    // The silent connection is closed once its handshake times out.
    let mut silent = pair.silent_connection_opt.take().unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(CALL_TIMEOUT * 5, silent.read(&mut buffer)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    pair.transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_cert_from_another_ca_is_never_reached() {
    let ca = TestCa::new("cluster");
    let other_ca = TestCa::new("other");
    // The peer trusts this cluster's CA as well as its own: only this node's
    // checks can keep it out, whichever side dials.
    let mut peer_tls = other_ca.node("node-12");
    peer_tls.ca = ca_bundle(&[&other_ca, &ca]);
    let mut pair = Pair::start_with(PairSetup {
        driver_tls: Some(ca.node("node-11")),
        peer_tls: Some(peer_tls),
        ..PairSetup::new("node-11", "node-12")
    })
    .await;
    assert_never_reached(&mut pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_peer_never_talks_to_a_tls_node() {
    let ca = TestCa::new("cluster");
    let mut pair = Pair::start_with(PairSetup {
        driver_tls: Some(ca.node("node-13")),
        ..PairSetup::new("node-13", "node-14")
    })
    .await;
    assert_never_reached(&mut pair).await;
}

/// Starts a TLS node with `tls` and returns why it failed to start.
async fn tls_start_error(tls: TlsFiles) -> String {
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let started = Transport::start(
        config("node-15", listen, COOKIE, Some(tls)),
        Arc::new(Recorder::default()),
    )
    .await;
    match started {
        Ok(transport) => {
            transport.shutdown().await;
            panic!("the transport started");
        }
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn bad_tls_files_fail_the_start_naming_the_file() {
    init_logs();
    let ca = TestCa::new("cluster");
    let other_ca = TestCa::new("other");
    let good = ca.node("node-15");
    let not_pem = ca.path("not-pem.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let bad_base64 = ca.path("bad-base64.pem");
    std::fs::write(
        &bad_base64,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let shown = |path: &Path| path.display().to_string();

    // The good files start.
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let config_good = config("node-15", listen, COOKIE, Some(good.clone()));
    let transport = Transport::start(config_good, Arc::new(Recorder::default()))
        .await
        .unwrap();
    transport.shutdown().await;

    let missing = ca.path("missing.pem");
    let another_nodes_key = ca.node("node-16").key;
    let from_other_ca = TlsFiles {
        ca: ca.ca_path(),
        ..other_ca.node("node-17")
    };
    let without_server_name = ca.issue("node-18", &["node-18.example"]);
    let cases = [
        (
            TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            },
            format!("reading transport TLS cert {}", shown(&missing)),
        ),
        (
            TlsFiles {
                cert: not_pem.clone(),
                ..good.clone()
            },
            format!(
                "transport TLS cert {} holds no PEM certificate",
                shown(&not_pem)
            ),
        ),
        (
            TlsFiles {
                cert: bad_base64.clone(),
                ..good.clone()
            },
            format!("transport TLS cert {} is not valid PEM", shown(&bad_base64)),
        ),
        (
            TlsFiles {
                key: good.cert.clone(),
                ..good.clone()
            },
            format!(
                "transport TLS key {} holds no usable PEM private key",
                shown(&good.cert)
            ),
        ),
        (
            TlsFiles {
                key: another_nodes_key.clone(),
                ..good.clone()
            },
            format!(
                "transport TLS key {} does not fit cert {}",
                shown(&another_nodes_key),
                shown(&good.cert)
            ),
        ),
        (
            from_other_ca.clone(),
            format!(
                "transport TLS cert {} is not valid",
                shown(&from_other_ca.cert)
            ),
        ),
        (
            without_server_name.clone(),
            format!(
                "transport TLS cert {} is not valid",
                shown(&without_server_name.cert)
            ),
        ),
        (
            TlsFiles {
                ca: not_pem.clone(),
                ..good.clone()
            },
            format!(
                "transport TLS ca {} holds no PEM certificate",
                shown(&not_pem)
            ),
        ),
    ];
    for (files, expected) in cases {
        let error = tls_start_error(files).await;
        assert!(
            error.contains(&expected),
            "expected {expected:?} in {error:?}"
        );
    }
}
