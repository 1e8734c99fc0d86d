//! The gossip comm layer over an in-memory network and a manual clock: connections,
//! messages both ways, the one-connection-per-PKI-ID rule, self connections, probes, and every
//! way a handshake is refused. Deterministic: one thread, no sockets, time moves only when a
//! test advances it.

use peer_core::testkit::{ManualClock, MemNetwork, epoch};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use peer_core::config::{HostPort, KeepaliveConfig};
use peer_core::env::{DirLock, Env, LockError, Network, Storage};
use peer_core::gossip::comm::{Comm, CommConfig, CommError, CommEvent, CommMetrics, CommSetup};
use peer_core::gossip::identity::{MspVerifier, TrustedMsps};
use peer_core::gossip::message::{self, SignedMessage, Signer};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::msp::{LocalMsp, Msp, PkiId};
use proto::gossip::gossip_client::GossipClient;
use proto::gossip::gossip_message::Content;
use proto::gossip::{AliveMessage, ConnEstablish, Envelope, Member, PeerTime};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

// ---------------------------------------------------------------------------------------------
// Test doubles: the kit's manual clock and in-memory network; no storage.

/// The comm touches no storage.
struct NoStorage;

impl Storage for NoStorage {
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Err(io::Error::other("no storage in this test"))
    }
    fn remove_dir_all(&self, _path: &Path) -> io::Result<()> {
        Err(io::Error::other("no storage in this test"))
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Err(io::Error::other("no storage in this test"))
    }
    fn exists(&self, _path: &Path) -> bool {
        false
    }
    fn list_dir(&self, _dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        Err(io::Error::other("no storage in this test"))
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(io::Error::other("no storage in this test"))
    }
    fn lock(&self, path: &Path, _holder: &str) -> Result<Box<dyn DirLock>, LockError> {
        Err(LockError::Io { path: path.to_path_buf(), source: io::Error::other("no storage in this test") })
    }
    fn open_db(&self, _path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        Err(io::Error::other("no storage in this test"))
    }
}

// ---------------------------------------------------------------------------------------------
// A small world of peers.

pub(crate) struct Orgs {
    pub(crate) org1: generate::Org,
    pub(crate) org2: generate::Org,
    /// Nobody trusts Org3.
    pub(crate) org3: generate::Org,
}

pub(crate) fn orgs() -> &'static Orgs {
    static ORGS: std::sync::OnceLock<Orgs> = std::sync::OnceLock::new();
    ORGS.get_or_init(|| {
        let org = |msp_id: &str, domain: &str, peers, seed| {
            let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers };
            generate::generate_org(&spec, &mut generate::org_rng(seed, &spec), ValidityWindow::fixed()).unwrap()
        };
        Orgs {
            org1: org("Org1MSP", "org1.example.com", 3, 1),
            org2: org("Org2MSP", "org2.example.com", 1, 2),
            org3: org("Org3MSP", "org3.example.com", 1, 3),
        }
    })
}

pub(crate) fn local_msp(org: &generate::Org, peer: usize) -> LocalMsp {
    LocalMsp::from_files(&org.peers[peer].msp, &org.spec.msp_id, epoch()).unwrap()
}

fn org_msp(org: &generate::Org) -> Msp {
    Msp::from_files(&org.msp, &org.spec.msp_id).unwrap()
}

pub(crate) struct World {
    clock: Arc<ManualClock>,
    network: Arc<MemNetwork>,
    pub(crate) logs: MemorySink,
    _log_guard: tracing::subscriber::DefaultGuard,
    servers: Vec<watch::Sender<bool>>,
}

pub(crate) struct Peer {
    pub(crate) comm: Comm,
    pub(crate) events: mpsc::Receiver<CommEvent>,
    /// Fabric's gossip comm counters of this peer's comm.
    metrics: CommMetrics,
    endpoint: HostPort,
    pki: PkiId,
    msp: LocalMsp,
}

impl World {
    pub(crate) fn new() -> World {
        let logs = MemorySink::new();
        let config = LoggingConfig { spec: "gossip.comm=debug:info".into(), format: "%{level} [%{module}] %{shortfunc} %{message}".into() };
        let (layer, _handle) = logging::layer(&config, Arc::new(epoch), logs.sink()).unwrap();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
        let guard = tracing::subscriber::set_default(subscriber);
        World { clock: ManualClock::new(), network: Arc::new(MemNetwork::default()), logs, _log_guard: guard, servers: Vec::new() }
    }

    fn env(&self, seed: u8) -> Env {
        Env::new(self.clock.clone(), self.network.clone(), Arc::new(NoStorage), [seed; 32])
    }

    /// A peer serving its comm on `port`, trusting its own org and `trusted`.
    pub(crate) async fn peer(&mut self, msp: LocalMsp, trusted: &[&generate::Org], port: u16, config: CommConfig) -> Peer {
        let trusted = TrustedMsps::new(&msp, trusted.iter().map(|org| org_msp(org)), Arc::new(MspVerifier));
        let metrics = CommMetrics::default();
        let setup = CommSetup { metrics: metrics.clone(), ..CommSetup::new(Arc::new(msp.clone()), trusted, config) };
        let (comm, events) = Comm::new(self.env(port as u8), setup);
        let endpoint = HostPort::new("peer", port);
        let listener = self.network.bind(&endpoint).await.unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let keepalive = KeepaliveConfig::default();
        let routes = tonic::service::Routes::new(comm.server());
        tokio::spawn(peer_core::net::serve::serve_grpc(listener, self.clock.clone(), routes, keepalive, crate::serve::limits(), stop_rx));
        self.servers.push(stop);
        Peer { pki: msp.pki_id(), comm, events, endpoint, msp, metrics }
    }

    fn log(&self) -> String {
        self.logs.lines().join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.comm.stop();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for server in &self.servers {
            let _ = server.send(true);
        }
    }
}

/// Lets every task run until nothing is left to do (everything is in memory, on this thread).
async fn settle() {
    for _ in 0..500 {
        tokio::task::yield_now().await;
    }
}

/// The next event; a wall-clock guard turns a hang into a failure (it never fires when green).
pub(crate) async fn next_event(events: &mut mpsc::Receiver<CommEvent>) -> CommEvent {
    tokio::time::timeout(Duration::from_secs(20), events.recv()).await.expect("no event within 20 s").expect("event channel closed")
}

/// The `ConnectionUp` of `pki_id`, dialed at `endpoint` (`None`: it dialed us), checking the
/// identity it carries.
fn is_up(event: &CommEvent, pki_id: PkiId, endpoint: Option<&HostPort>) -> bool {
    matches!(event, CommEvent::ConnectionUp { pki_id: p, endpoint: e, identity } if *p == pki_id && e.as_ref() == endpoint && identity.pki_id() == pki_id)
}

/// The next `Message` event, skipping connection events.
async fn next_message(events: &mut mpsc::Receiver<CommEvent>) -> (PkiId, SignedMessage) {
    loop {
        match next_event(events).await {
            CommEvent::Message { from, message } => return (from, message),
            CommEvent::ConnectionUp { .. } | CommEvent::ConnectionDown { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// Everything already in the channel.
fn drain(events: &mut mpsc::Receiver<CommEvent>) -> Vec<CommEvent> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

/// ConnectionUp minus ConnectionDown for `pki` in `events`.
fn net_up(events: &[CommEvent], pki: PkiId) -> i32 {
    events
        .iter()
        .map(|event| match event {
            CommEvent::ConnectionUp { pki_id, .. } if *pki_id == pki => 1,
            CommEvent::ConnectionDown { pki_id } if *pki_id == pki => -1,
            _ => 0,
        })
        .sum()
}

/// A signed alive message from `signer`, distinguishable by `seq`.
fn alive(signer: &LocalMsp, seq: u64) -> SignedMessage {
    let content = Content::AliveMsg(AliveMessage {
        membership: Some(Member { endpoint: String::new(), metadata: Vec::new(), pki_id: signer.pki_id().0.to_vec() }),
        timestamp: Some(PeerTime { inc_num: 1, seq_num: seq }),
        identity: Vec::new(),
    });
    SignedMessage::sign(message::empty_tag(content, 0), signer)
}

// ---------------------------------------------------------------------------------------------
// Connections and messages.

/// Comm keeps no identity store: each side reports the other's validated identity with the
/// connection, for the gossip aggregate to store.
#[tokio::test]
async fn connection_up_carries_the_remotes_identity() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[&orgs.org2], 7051, CommConfig::default()).await;
    let mut b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, CommConfig::default()).await;

    assert_eq!(a.comm.connect(&b.endpoint, None).await.unwrap(), b.pki);
    for (events, remote, msp_id) in [(&mut a.events, b.pki, "Org2MSP"), (&mut b.events, a.pki, "Org1MSP")] {
        match next_event(events).await {
            CommEvent::ConnectionUp { pki_id, identity, .. } => {
                assert_eq!((pki_id, identity.pki_id(), identity.msp_id.as_str()), (remote, remote, msp_id));
            }
            other => panic!("expected the connection first, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_connects_to_b_and_messages_flow_both_ways() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[&orgs.org2], 7051, CommConfig::default()).await;
    let mut b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, CommConfig::default()).await;

    assert_eq!(a.comm.connect(&b.endpoint, None).await.unwrap(), b.pki);
    assert!(is_up(&next_event(&mut a.events).await, b.pki, Some(&b.endpoint)));
    assert!(is_up(&next_event(&mut b.events).await, a.pki, None));
    assert!(a.comm.is_connected(&b.pki) && b.comm.is_connected(&a.pki));

    let to_b = alive(&a.msp, 1);
    assert!(a.comm.send(&b.pki, to_b.clone()));
    assert_eq!(next_event(&mut b.events).await, CommEvent::Message { from: a.pki, message: to_b });
    let to_a = alive(&b.msp, 1);
    assert!(b.comm.send(&a.pki, to_a.clone()));
    assert_eq!(next_event(&mut a.events).await, CommEvent::Message { from: b.pki, message: to_a });

    // No connection: nothing is sent.
    assert!(!a.comm.send(&PkiId([9; 32]), alive(&a.msp, 2)));
    assert!(world.log().contains("No connection to 0909"), "{}", world.log());

    // With the PKI-ID already connected, `expected` makes connect a no-op.
    assert_eq!(a.comm.connect(&b.endpoint, Some(b.pki)).await.unwrap(), b.pki);
    settle().await;
    assert!(drain(&mut a.events).is_empty() && drain(&mut b.events).is_empty());
}

#[tokio::test]
async fn a_second_connection_to_the_same_peer_leaves_exactly_one() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[&orgs.org2], 7051, CommConfig::default()).await;
    let mut b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, CommConfig::default()).await;

    // Sequential: the same dialer twice (rule 1: the newer connection replaces the older).
    a.comm.connect(&b.endpoint, None).await.unwrap();
    a.comm.connect(&b.endpoint, None).await.unwrap();
    // And the other way round (rule 2: the connection dialed by the lower PKI-ID wins).
    b.comm.connect(&a.endpoint, None).await.unwrap();
    settle().await;
    assert_eq!(a.comm.connected_peers(), [b.pki]);
    assert_eq!(b.comm.connected_peers(), [a.pki]);
    let (a_events, b_events) = (drain(&mut a.events), drain(&mut b.events));
    assert_eq!(net_up(&a_events, b.pki), 1, "{a_events:?}");
    assert_eq!(net_up(&b_events, a.pki), 1, "{b_events:?}");

    // Both ends kept the same connection: messages still flow both ways.
    let to_b = alive(&a.msp, 7);
    assert!(a.comm.send(&b.pki, to_b.clone()));
    assert_eq!(next_message(&mut b.events).await, (a.pki, to_b));
    let to_a = alive(&b.msp, 7);
    assert!(b.comm.send(&a.pki, to_a.clone()));
    assert_eq!(next_message(&mut a.events).await, (b.pki, to_a));
}

#[tokio::test]
async fn peers_dialing_each_other_at_once_converge_on_one_connection() {
    for (a_index, b_index) in [(0, 1), (1, 0), (0, 2), (2, 1)] {
        let mut world = World::new();
        let orgs = orgs();
        let mut a = world.peer(local_msp(&orgs.org1, a_index), &[], 7051, CommConfig::default()).await;
        let mut b = world.peer(local_msp(&orgs.org1, b_index), &[], 8051, CommConfig::default()).await;
        let (to_b, to_a) = tokio::join!(a.comm.connect(&b.endpoint, None), b.comm.connect(&a.endpoint, None));
        assert_eq!((to_b.unwrap(), to_a.unwrap()), (b.pki, a.pki));
        settle().await;
        assert_eq!(a.comm.connected_peers(), [b.pki], "pair {a_index},{b_index}");
        assert_eq!(b.comm.connected_peers(), [a.pki], "pair {a_index},{b_index}");
        let (a_events, b_events) = (drain(&mut a.events), drain(&mut b.events));
        assert_eq!(net_up(&a_events, b.pki), 1, "{a_events:?}");
        assert_eq!(net_up(&b_events, a.pki), 1, "{b_events:?}");
        let to_b = alive(&a.msp, 3);
        assert!(a.comm.send(&b.pki, to_b.clone()));
        assert_eq!(next_message(&mut b.events).await, (a.pki, to_b));
        let to_a = alive(&b.msp, 3);
        assert!(b.comm.send(&a.pki, to_a.clone()));
        assert_eq!(next_message(&mut a.events).await, (b.pki, to_a));
    }
}

#[tokio::test]
async fn connecting_to_yourself_is_refused() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[], 7051, CommConfig::default()).await;
    let err = a.comm.connect(&a.endpoint, None).await.unwrap_err();
    assert_eq!(err, CommError::SelfConnection { endpoint: a.endpoint.clone(), pki_id: a.pki });
    let err = a.comm.handshake(&a.endpoint).await.unwrap_err();
    assert!(matches!(err, CommError::SelfConnection { .. }), "{err}");
    settle().await;
    assert!(a.comm.connected_peers().is_empty());
    assert!(drain(&mut a.events).is_empty());
    assert!(world.log().contains("Got a connection from ourselves"), "{}", world.log());
}

#[tokio::test]
async fn handshake_returns_the_remote_identity_and_keeps_no_connection() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[&orgs.org2], 7051, CommConfig::default()).await;
    let mut b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, CommConfig::default()).await;

    let (pki, identity) = a.comm.handshake(&b.endpoint).await.unwrap();
    assert_eq!(pki, b.pki);
    assert_eq!(*identity, b.msp.identity);
    settle().await;
    assert!(a.comm.connected_peers().is_empty() && b.comm.connected_peers().is_empty());
    assert!(drain(&mut a.events).is_empty() && drain(&mut b.events).is_empty());
    let log = world.log();
    assert!(log.contains(&format!("INFO [gossip.comm] GossipStream Peer {} (10.0.0.1:40000) probed us", a.pki)), "{log}");

    // Probe: dial and ping only.
    a.comm.probe(&b.endpoint).await.unwrap();
    let err = a.comm.probe(&HostPort::new("peer", 9999)).await.unwrap_err();
    assert!(matches!(&err, CommError::Dial { endpoint, .. } if endpoint.port == 9999), "{err}");
    assert!(err.to_string().starts_with("failed dialing peer:9999: "), "{err}");
}

#[tokio::test]
async fn a_remote_other_than_the_expected_one_is_refused() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[&orgs.org2], 7051, CommConfig::default()).await;
    let b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, CommConfig::default()).await;
    let expected = local_msp(&orgs.org1, 1).pki_id();
    let err = a.comm.connect(&b.endpoint, Some(expected)).await.unwrap_err();
    assert_eq!(err, CommError::WrongPeer { endpoint: b.endpoint.clone(), expected, got: b.pki });
    assert!(!a.comm.is_connected(&b.pki));
    settle().await;
    assert!(drain(&mut a.events).is_empty());
    let log = world.log();
    assert!(
        log.contains(&format!(
            "WARN [gossip.comm] createConnection Remote endpoint claims to be a different peer, expected {expected} but got {}",
            b.pki
        )),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Handshakes that must fail, from a raw gRPC client.

/// Opens a raw `GossipStream` to `port` and sends `first` (if any).
pub(crate) async fn raw_stream(world: &World, port: u16, first: Option<Envelope>) -> (tonic::Streaming<Envelope>, mpsc::Sender<Envelope>) {
    let network = world.network.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = network.connect(&HostPort::new("peer", port), Duration::from_secs(1));
        async move { connect.await.map(hyper_util::rt::TokioIo::new) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://peer").connect_with_connector(connector).await.unwrap();
    let mut client = GossipClient::new(channel);
    let (sink, outbound) = mpsc::channel(4);
    if let Some(first) = first {
        sink.send(first).await.unwrap();
    }
    let inbound = client.gossip_stream(ReceiverStream::new(outbound)).await.unwrap().into_inner();
    (inbound, sink)
}

/// A raw handshake: sends `first` (if any), reads the responder's first envelope (its
/// ConnEstablish), advances the clock by `advance`, and returns what came next.
async fn raw_handshake(
    world: &World,
    port: u16,
    first: Option<Envelope>,
    advance: Option<Duration>,
) -> (Envelope, Result<Option<Envelope>, tonic::Status>) {
    let (mut inbound, sink) = raw_stream(world, port, first).await;
    let theirs = inbound.message().await.unwrap().unwrap();
    if let Some(by) = advance {
        world.clock.advance(by);
    }
    let next = inbound.message().await;
    drop(sink);
    (theirs, next)
}

pub(crate) fn conn_envelope(signer: &LocalMsp, pki_id: PkiId) -> SignedMessage {
    let conn = ConnEstablish { pki_id: pki_id.0.to_vec(), identity: signer.serialized_identity(), tls_cert_hash: Vec::new(), probe: false };
    SignedMessage::sign(message::empty_tag(Content::Conn(conn), 0), signer)
}

/// The same signature with S replaced by n − S (still valid ECDSA, but high-S).
pub(crate) fn high_s(der: &[u8]) -> Vec<u8> {
    use p256::ecdsa::Signature;
    let signature = Signature::from_der(der).unwrap();
    let (r, s) = signature.split_scalars();
    let negated = -*s.as_ref();
    Signature::from_scalars(r.to_bytes(), negated.to_bytes()).unwrap().to_der().as_bytes().to_vec()
}

#[tokio::test]
async fn bad_handshakes_are_rejected_for_the_right_reason() {
    let mut world = World::new();
    let orgs = orgs();
    let config = CommConfig::default();
    let mut b = world.peer(local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, config.clone()).await;
    let x = local_msp(&orgs.org1, 0);
    let good = conn_envelope(&x, x.pki_id());

    let mut bad_signature = good.envelope().clone();
    bad_signature.signature = x.sign(b"another payload");
    let mut high = good.envelope().clone();
    high.signature = high_s(&good.envelope().signature);
    let mismatch = conn_envelope(&x, local_msp(&orgs.org1, 1).pki_id()).into_envelope();
    let stranger = local_msp(&orgs.org3, 0);
    let untrusted = conn_envelope(&stranger, stranger.pki_id()).into_envelope();
    let not_conn = SignedMessage::sign(message::empty_tag(Content::Empty(proto::gossip::Empty {}), 0), &x).into_envelope();

    // (case, first envelope, clock advance, rejection reason, log text)
    type Case = (&'static str, Option<Envelope>, Option<Duration>, &'static str, &'static str);
    let cases: [Case; 6] = [
        (
            "bad signature",
            Some(bad_signature),
            None,
            "bad_signature",
            "Failed verifying signature from 10.0.0.1:40000 : Failed verifying signature",
        ),
        (
            "high S",
            Some(high),
            None,
            "high_s",
            "Failed verifying signature from 10.0.0.1:40000 : Invalid S. Must be smaller than half the order",
        ),
        ("PKI-ID of someone else", Some(mismatch), None, "pki_id_mismatch", "identity doesn't match the computed pkiID"),
        ("untrusted MSP", Some(untrusted), None, "bad_identity", "cannot be validated. No MSP found able to do that."),
        ("not a ConnEstablish", Some(not_conn), None, "unexpected", "Authentication failed: Wrong type"),
        (
            "nothing at all",
            None,
            Some(config.conn_timeout),
            "unexpected",
            "Authentication failed: timed out waiting for connection message from 10.0.0.1:40000",
        ),
    ];
    for (case, first, advance, reason, log_text) in cases {
        let (theirs, next) = raw_handshake(&world, 8051, first, advance).await;
        // The responder sends first: its own ConnEstablish, signed and verifiable.
        let theirs = SignedMessage::from_envelope(theirs).unwrap();
        let Some(Content::Conn(conn)) = theirs.content() else { panic!("{case}: {theirs:?}") };
        assert_eq!(conn.pki_id, b.pki.0.to_vec(), "{case}");
        theirs.verify(&b.msp.identity).unwrap();
        // Then it closes the stream with an error and reports the rejection.
        let status = next.expect_err(case);
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{case}: {status:?}");
        match next_event(&mut b.events).await {
            CommEvent::Rejected { from: None, error } => assert_eq!(error.reason(), reason, "{case}: {error}"),
            other => panic!("{case}: {other:?}"),
        }
        let log = world.log();
        assert!(log.contains(log_text), "{case}: {log_text:?} missing from\n{log}");
    }
    let log = world.log();
    assert!(log.contains(&format!("WARN [gossip.comm] authenticateRemotePeer Identity store rejected {} : ", stranger.pki_id())), "{log}");
    assert!(b.comm.connected_peers().is_empty());

    // The same raw client with a proper ConnEstablish is accepted, and B talks to it.
    let (mut inbound, _sink) = raw_stream(&world, 8051, Some(good.into_envelope())).await;
    inbound.message().await.unwrap().unwrap();
    assert!(is_up(&next_event(&mut b.events).await, x.pki_id(), None));
    let hello = alive(&b.msp, 1);
    assert!(b.comm.send(&x.pki_id(), hello.clone()));
    assert_eq!(inbound.message().await.unwrap(), Some(hello.into_envelope()));
}

#[tokio::test]
async fn the_dialer_refuses_bad_responders_too() {
    let mut world = World::new();
    let orgs = orgs();
    let config = CommConfig::default();
    // A trusts nobody else: B's identity is refused on A's side of the handshake.
    let a = world.peer(local_msp(&orgs.org1, 0), &[], 7051, config.clone()).await;
    let b = world.peer(local_msp(&orgs.org3, 0), &[&orgs.org1], 8051, config.clone()).await;
    let err = a.comm.connect(&b.endpoint, None).await.unwrap_err();
    match &err {
        CommError::Auth { endpoint, error } => {
            assert_eq!(endpoint, &b.endpoint);
            assert_eq!(error.reason(), "bad_identity");
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.bad_message().map(|e| e.reason()), Some("bad_identity"));
    assert!(err.to_string().starts_with("authentication of peer:8051 failed: "), "{err}");
    assert!(!a.comm.is_connected(&b.pki));
}

// ---------------------------------------------------------------------------------------------
// Queues and shutdown.

#[tokio::test]
async fn a_full_send_queue_drops_instead_of_blocking() {
    let mut world = World::new();
    let orgs = orgs();
    let config = CommConfig { send_buff_size: 3, ..CommConfig::default() };
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[], 7051, config.clone()).await;
    let mut b = world.peer(local_msp(&orgs.org1, 1), &[], 8051, config).await;
    a.comm.connect(&b.endpoint, None).await.unwrap();
    assert!(matches!(next_event(&mut a.events).await, CommEvent::ConnectionUp { .. }));

    // `send` does not yield, so the connection's writer cannot drain the queue in between.
    let sent: Vec<bool> = (0..6).map(|seq| a.comm.send(&b.pki, alive(&a.msp, seq))).collect();
    assert_eq!(sent, [true, true, true, false, false, false]);
    let log = world.log();
    assert!(
        log.contains(&format!(
            "DEBUG [gossip.comm] send Buffer to {} overflowed, dropping message AliveMessage (tag Empty, nonce 0)",
            b.pki
        )),
        "{log}"
    );
    for seq in 0..3 {
        assert_eq!(next_message(&mut b.events).await, (a.pki, alive(&a.msp, seq)));
    }
    settle().await;
    assert!(drain(&mut b.events).is_empty());
    // Fabric's counters: three dropped on overflow, three written to the stream and read from it
    // (the handshake's ConnEstablish messages are not counted).
    assert_eq!((a.metrics.overflow.get(), a.metrics.messages_sent.get(), b.metrics.messages_received.get()), (3, 3, 3));
    assert_eq!((b.metrics.overflow.get(), b.metrics.messages_sent.get(), a.metrics.messages_received.get()), (0, 0, 0));
    // The queue drained: sending works again.
    assert!(a.comm.send(&b.pki, alive(&a.msp, 10)));
    assert_eq!(next_message(&mut b.events).await, (a.pki, alive(&a.msp, 10)));
    assert_eq!((a.metrics.messages_sent.get(), b.metrics.messages_received.get()), (4, 4));
}

#[tokio::test]
async fn close_and_stop_end_connections() {
    let mut world = World::new();
    let orgs = orgs();
    let mut a = world.peer(local_msp(&orgs.org1, 0), &[], 7051, CommConfig::default()).await;
    let mut b = world.peer(local_msp(&orgs.org1, 1), &[], 8051, CommConfig::default()).await;
    let mut c = world.peer(local_msp(&orgs.org1, 2), &[], 9051, CommConfig::default()).await;

    // close: a ConnectionDown on both sides; reconnecting works.
    a.comm.connect(&b.endpoint, None).await.unwrap();
    assert!(matches!(next_event(&mut b.events).await, CommEvent::ConnectionUp { .. }));
    a.comm.close(&b.pki);
    assert!(!a.comm.is_connected(&b.pki));
    assert!(matches!(next_event(&mut a.events).await, CommEvent::ConnectionUp { .. }));
    assert_eq!(next_event(&mut a.events).await, CommEvent::ConnectionDown { pki_id: b.pki });
    assert_eq!(next_event(&mut b.events).await, CommEvent::ConnectionDown { pki_id: a.pki });
    a.comm.connect(&b.endpoint, None).await.unwrap();
    c.comm.connect(&a.endpoint, None).await.unwrap();
    settle().await;
    assert_eq!(a.comm.connected_peers().len(), 2);
    drain(&mut a.events);
    assert_eq!(net_up(&drain(&mut b.events), a.pki), 1);
    assert_eq!(net_up(&drain(&mut c.events), a.pki), 1);

    // stop: every connection closes; the others see ConnectionDown; nothing new is accepted.
    a.comm.stop();
    assert!(a.comm.connected_peers().is_empty());
    assert_eq!(next_event(&mut b.events).await, CommEvent::ConnectionDown { pki_id: a.pki });
    assert_eq!(next_event(&mut c.events).await, CommEvent::ConnectionDown { pki_id: a.pki });
    assert_eq!(a.comm.connect(&b.endpoint, None).await.unwrap_err(), CommError::Stopped);
    assert!(!a.comm.send(&b.pki, alive(&a.msp, 1)));
    let err = b.comm.connect(&a.endpoint, None).await.unwrap_err();
    assert!(err.to_string().contains("Shutting down"), "{err}");
    settle().await;
    assert!(drain(&mut a.events).is_empty(), "a stopped comm emits nothing");
    a.comm.stop();
}
