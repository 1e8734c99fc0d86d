//! The gossip comm layer (Fabric's `gossip/comm`): authenticated, long-lived `gossip.Gossip`
//! streams to other peers, one per remote PKI-ID, reached only through the [`Env`] network so
//! the same code runs on sockets and in the simulator.
//!
//! - **Dialing** ([`Comm::connect`]): dial (`dial_timeout`), `Ping` (`conn_timeout`), open
//!   `GossipStream`, authenticate, keep the stream. [`Comm::handshake`] does the same with
//!   `probe = true` and keeps nothing; [`Comm::probe`] only dials and pings.
//! - **Serving** ([`Comm::service`] / [`Comm::server`]): the `gossip.Gossip` service for the
//!   peer port. An inbound stream is authenticated the same way and then kept.
//! - **Authentication** (spec §5.3, both sides send first, then read): each side sends a
//!   ConnEstablish signed by its [`Signer`] and reads one envelope within `conn_timeout`; the
//!   claimed identity is validated against the [`TrustedMsps`] (MSP validation, PKI-ID match)
//!   and the envelope signature must verify with it. Comm keeps no identity store: a new
//!   connection's identity goes to the gossip aggregate in its [`CommEvent::ConnectionUp`].
//! - **TLS** ([`CommTls`], spec §2.2): dials use the peer's client pair and trust pool; each
//!   ConnEstablish carries SHA-256 of our certificate on that connection (the client one when we
//!   dialed, the server one when we answer), and the remote's must equal the hash of the
//!   certificate it presented, checked after its identity and before its signature; an answering
//!   peer refuses a remote that presented no certificate before sending anything. Without TLS
//!   `tls_cert_hash` is sent empty and not checked (as Fabric).
//! - **After authentication** every envelope goes through [`SignedMessage::from_envelope`] and
//!   comes out as a [`CommEvent`]. Signatures of those messages are *not* verified here: the
//!   membership layer does that per message type.
//!
//! # One connection per PKI-ID
//!
//! At most one connection per remote PKI-ID is registered. Two connections to the same peer
//! appear when both peers dial each other at about the same time, or when one dials a peer it is
//! already connected to. Fabric's rule (the responder always replaces, the dialer keeps an
//! existing connection) can leave both peers with *zero* connections when they dial each other
//! concurrently: each replaces its outbound connection by the inbound one and then closes the
//! outbound one the other side just kept. Here both ends apply the same, symmetric rule whenever
//! a new connection meets a registered one:
//!
//! 1. If both were dialed by the same peer, the newer one wins (a restarted dialer's new stream
//!    replaces its stale one, as in Fabric).
//! 2. Otherwise the connection dialed by the peer with the **lower PKI-ID** (byte order) wins.
//!
//! Both ends know who dialed each connection and both PKI-IDs, so they reach the same verdict
//! whichever order the connections arrive in, and converge on the same single connection.
//! A losing new connection is closed at once (the dialer's [`Comm::connect`] still succeeds: it
//! is connected, over the winner). A replaced connection is closed without a
//! [`CommEvent::ConnectionDown`]. Caveat: rule 2 keeps an existing connection that is in fact
//! dead (the remote crashed without closing its socket) until the stream fails, which HTTP/2
//! keepalive bounds. Two *concurrent* [`Comm::connect`] calls to the same peer can race on rule 1;
//! pass `expected` (an already connected PKI-ID is not dialed again) or serialize them.
//!
//! # Events
//!
//! For each PKI-ID, `ConnectionUp` and `ConnectionDown` strictly alternate, and a connection's
//! `Message`s come after its `ConnectionUp`, which carries the identity it authenticated with. Replacing a connection emits nothing (the peer stays
//! up) and the replacement takes over the old one's send queue. The event channel holds
//! `recv_buff_size` events; when it is full, connection readers wait (back-pressure reaches the
//! remote through HTTP/2 flow control) rather than drop. Events are only emitted from tasks
//! owned by the comm, never from the caller of [`Comm::connect`], so a caller that also drains
//! the events cannot deadlock itself. Handshake failures of [`Comm::connect`] are returned as
//! [`CommError`]s (with the [`BadMessage`] inside, for metrics), not as events; handshake
//! failures of inbound streams become [`CommEvent::Rejected`].
//!
//! # Tasks
//!
//! Every connection is one task (reader and writer polled together) in a `JoinSet` owned by the
//! comm; [`Comm::stop`] aborts them all and refuses new connections. A dialed connection's
//! tonic `Channel` runs tonic's own helper tasks, which end when the channel (owned by the
//! connection task) is dropped. Tasks hold the comm's shared state, so a comm lives until
//! [`Comm::stop`] is called.
//!
//! Not yet: TLS (see `TLS binding` in `authenticate`), client-side HTTP/2 keepalive
//! (`peer.keepalive.client.*`; the server side has the peer server's keepalive), Fabric's
//! "changed its PKI-ID" identity switch for an `expected` peer of the same org, and
//! acknowledgement routing by nonce (the layer above matches nonces on `Message` events).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prost::Message as _;
use proto::gossip::gossip_client::GossipClient;
use proto::gossip::gossip_message::Content;
use proto::gossip::gossip_server::{Gossip, GossipServer};
use proto::gossip::{ConnEstablish, Empty, Envelope, GossipMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, warn};

use super::identity::TrustedMsps;
use super::message::{self, BadMessage, SignedMessage, Signer};
use crate::config::{Config, HostPort};
use crate::env::Env;
use crate::msp::identity::{Identity, PkiId};
use crate::net::dial::{ClientOptions, ClientTls, DialError, dial};
use crate::net::tls::{RemoteTls, go_bytes};

/// Fabric's hard-coded handshake window (`handshakeTimeout`): stream plus authentication.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What happens to a gossip message comm has decoded, before it is handed on: a real peer
/// delivers every one. The simulator's fault injection loses or repeats whole messages (what a
/// peer sees when a sender's bounded queue overflows, or a message reaches it along two paths),
/// given in [`super::GossipSetup`].
pub trait MessageFaults: Send + Sync + 'static {
    fn next(&self) -> MessageFault;
}

/// See [`MessageFaults`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageFault {
    Deliver,
    Drop,
    Duplicate,
}

/// Comm settings (`peer.gossip.dialTimeout`, `connTimeout`, `sendBuffSize`, `recvBuffSize`,
/// `peer.maxRecvMsgSize`, `peer.maxSendMsgSize`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommConfig {
    /// Opening the network connection and the HTTP/2 handshake.
    pub dial_timeout: Duration,
    /// `Ping`, opening the stream, and waiting for the remote's ConnEstablish.
    pub conn_timeout: Duration,
    /// Messages queued per peer before [`Comm::send`] drops.
    pub send_buff_size: usize,
    /// Capacity of the event channel [`Comm::new`] returns.
    pub recv_buff_size: usize,
    /// gRPC decoding limit (server and client).
    pub max_recv_msg_size: usize,
    /// gRPC encoding limit (server and client); bigger messages are not sent.
    pub max_send_msg_size: usize,
}

impl Default for CommConfig {
    /// Fabric's defaults (code defaults; the sample core.yaml sets `sendBuffSize: 200`).
    fn default() -> CommConfig {
        CommConfig {
            dial_timeout: Duration::from_secs(3),
            conn_timeout: Duration::from_secs(2),
            send_buff_size: 20,
            recv_buff_size: 20,
            max_recv_msg_size: 100 << 20,
            max_send_msg_size: 100 << 20,
        }
    }
}

impl CommConfig {
    /// The settings from a loaded core.yaml.
    pub fn from_config(config: &Config) -> CommConfig {
        CommConfig {
            dial_timeout: config.gossip.dial_timeout,
            conn_timeout: config.gossip.conn_timeout,
            send_buff_size: usize::try_from(config.gossip.send_buff_size).unwrap_or(usize::MAX),
            recv_buff_size: usize::try_from(config.gossip.recv_buff_size).unwrap_or(usize::MAX),
            max_recv_msg_size: config.peer.max_recv_msg_size,
            max_send_msg_size: config.peer.max_send_msg_size,
        }
    }
}

/// Fabric's gossip comm counters: `gossip_comm_messages_sent` (an envelope written to a peer's
/// stream), `gossip_comm_messages_received` (an envelope read from an authenticated stream) and
/// `gossip_comm_overflow_count` (a message dropped because the peer's send queue was full).
/// Handshake messages are not counted (Fabric's are not either). Cheap to clone: clones share
/// their values. Counting never logs, sleeps or draws randomness.
#[derive(Clone, Debug, Default)]
pub struct CommMetrics {
    pub messages_sent: Counter,
    pub messages_received: Counter,
    pub overflow: Counter,
}

impl CommMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("gossip_comm_messages_sent", "Gossip messages sent to other peers", self.messages_sent.clone());
        registry.register("gossip_comm_messages_received", "Gossip messages received from other peers", self.messages_received.clone());
        registry.register(
            "gossip_comm_overflow_count",
            "Gossip messages dropped because a peer's send queue was full",
            self.overflow.clone(),
        );
    }
}

/// What the comm reports to the layer above (membership).
// Most events are messages, so boxing the big variant would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum CommEvent {
    /// A decoded, tag-checked message from an authenticated peer (signatures of the message
    /// itself are NOT verified here; the membership layer does that per message type).
    Message { from: PkiId, message: SignedMessage },
    /// A peer became connected. `endpoint` is where we dialed it; `None` when it dialed us.
    /// `identity` is the one it authenticated with (validated against the trusted MSPs, its
    /// signature checked): comm keeps no identity store, the gossip aggregate stores it.
    ConnectionUp { pki_id: PkiId, endpoint: Option<HostPort>, identity: Arc<Identity> },
    /// The connection to a peer ended (stream closed or failed, or [`Comm::close`]).
    ConnectionDown { pki_id: PkiId },
    /// Sending to this peer failed: Fabric reports it "presumed dead". Followed by
    /// `ConnectionDown`.
    PresumedDead { pki_id: PkiId },
    /// A message or an inbound handshake was rejected; `error.reason()` is the metric label.
    /// `from` is the authenticated sender (`None` during a handshake, where the claimed identity
    /// is not trusted yet).
    Rejected { from: Option<PkiId>, error: BadMessage },
}

/// Why a dial, handshake or probe failed. Every message names the endpoint.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CommError {
    /// [`Comm::stop`] was called.
    #[error("gossip comm is stopped")]
    Stopped,
    #[error("failed dialing {endpoint}: {cause}")]
    Dial { endpoint: HostPort, cause: String },
    #[error("failed dialing {endpoint}: dial timeout after {timeout:?}")]
    DialTimeout { endpoint: HostPort, timeout: Duration },
    #[error("ping to {endpoint} failed: {cause}")]
    Ping { endpoint: HostPort, cause: String },
    #[error("failed opening a gossip stream to {endpoint}: {cause}")]
    Stream { endpoint: HostPort, cause: String },
    #[error("timed out waiting for connection message from {endpoint}")]
    NoConnMessage { endpoint: HostPort },
    #[error("{endpoint} closed the stream before authenticating: {cause}")]
    Closed { endpoint: HostPort, cause: String },
    #[error("authentication of {endpoint} failed: {error}")]
    Auth { endpoint: HostPort, error: BadMessage },
    #[error("handshake with {endpoint} did not complete within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout { endpoint: HostPort },
    /// The endpoint is this peer (same PKI-ID); the connection was dropped.
    #[error("{endpoint} is this peer itself (PKI-ID {pki_id})")]
    SelfConnection { endpoint: HostPort, pki_id: PkiId },
    /// Fabric's text; Fabric's error is `authentication failure`.
    #[error("authentication failure: Remote endpoint claims to be a different peer, expected {expected} but got {got}")]
    WrongPeer { endpoint: HostPort, expected: PkiId, got: PkiId },
}

impl CommError {
    /// The handshake rejection inside, if any (for `peer_core_gossip_bad_messages_total`).
    pub fn bad_message(&self) -> Option<&BadMessage> {
        match self {
            CommError::Auth { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What a comm is built from.
pub struct CommSetup {
    /// Signs our ConnEstablish messages.
    pub signer: Arc<dyn Signer>,
    /// The MSPs remote identities are validated against.
    pub trusted: TrustedMsps,
    pub config: CommConfig,
    pub metrics: CommMetrics,
    /// Faults applied to every decoded message (the simulator's); `None`: every message is
    /// delivered.
    pub faults: Option<Arc<dyn MessageFaults>>,
    /// TLS (`peer.tls.enabled`); `None`: plaintext, and `tls_cert_hash` is sent empty.
    pub tls: Option<CommTls>,
}

impl CommSetup {
    /// No metrics registered, no faults, no TLS.
    pub fn new(signer: Arc<dyn Signer>, trusted: TrustedMsps, config: CommConfig) -> CommSetup {
        CommSetup { signer, trusted, config, metrics: CommMetrics::default(), faults: None, tls: None }
    }
}

/// Gossip over TLS: how dials are made, and the certificate hashes our ConnEstablish messages
/// carry (spec §2.2: the client certificate's when we dial, the server certificate's when we
/// answer).
#[derive(Clone)]
pub struct CommTls {
    /// The configuration dials use now (its trust pool follows the joined channels).
    pub client: Arc<std::sync::RwLock<Arc<rustls::ClientConfig>>>,
    pub client_cert_hash: [u8; 32],
    pub server_cert_hash: [u8; 32],
}

/// The comm. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct Comm {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Comm").field("self", &self.shared.self_pki).finish_non_exhaustive()
    }
}

struct Shared {
    env: Env,
    signer: Arc<dyn Signer>,
    self_pki: PkiId,
    /// The MSPs handshakes are validated against (a snapshot, replaced by [`Comm::trust`]).
    trusted: Mutex<TrustedMsps>,
    config: CommConfig,
    /// Faults applied to decoded messages (the simulator's); `None`: every message is delivered.
    faults: Option<Arc<dyn MessageFaults>>,
    tls: Option<CommTls>,
    events: mpsc::Sender<CommEvent>,
    metrics: CommMetrics,
    /// Never held across an `.await`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stopped: bool,
    next_conn_id: u64,
    peers: BTreeMap<PkiId, Peer>,
    tasks: JoinSet<()>,
}

/// The registered connection to one PKI-ID.
struct Peer {
    conn_id: u64,
    dialed_by_us: bool,
    /// Set when the connection is going away (closed by us, or its stream ended) but its task
    /// has not yet emitted `ConnectionDown`. Such an entry counts as not connected.
    closing: bool,
    /// The send queue: drained by the connection's task, handed over on replacement.
    queue: mpsc::Sender<Envelope>,
    /// Tells the task to end; taken when used.
    close: Option<oneshot::Sender<CloseReason>>,
    /// Where the task hands its queue back when it ends (for a replacement).
    handback: oneshot::Receiver<mpsc::Receiver<Envelope>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseReason {
    /// [`Comm::close`]: emit `ConnectionDown`.
    Closed,
    /// Another connection to the same PKI-ID took over: emit nothing.
    Replaced,
}

/// What a newly registered connection's task starts with.
struct Slot {
    conn_id: u64,
    queue: QueueSource,
    close: oneshot::Receiver<CloseReason>,
    handback: oneshot::Sender<mpsc::Receiver<Envelope>>,
    /// Emit `ConnectionUp` (no connection to this PKI-ID was up before).
    announce: bool,
}

enum QueueSource {
    Fresh(mpsc::Receiver<Envelope>),
    /// The replaced connection's queue, once its task has ended (and emitted what it had to).
    Inherited(oneshot::Receiver<mpsc::Receiver<Envelope>>),
}

/// An authenticated stream: what we write to, what we read from, and (dialed streams) the
/// client that must outlive them.
struct Link {
    sink: mpsc::Sender<Result<Envelope, Status>>,
    inbound: Streaming<Envelope>,
    _client: Option<GossipClient<Channel>>,
}

/// The remote's ConnEstablish, authenticated.
struct Remote {
    pki_id: PkiId,
    identity: Arc<Identity>,
    probe: bool,
}

enum HandshakeError {
    /// Nothing arrived within `conn_timeout`.
    Timeout,
    /// The stream ended or failed before a message arrived.
    Closed(String),
    Bad(BadMessage),
}

/// How a connection's serving loop ended.
enum End {
    Closed(CloseReason),
    /// The inbound stream ended or failed.
    RecvEnded(String),
    /// The outbound stream is gone ("isn't responsive").
    SendFailed(String),
    /// The remote sent something that is not a gossip message at all (Fabric aborts too).
    Malformed(BadMessage),
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Of two connections between us and `remote`, does the new one win? (module docs)
fn new_connection_wins(us: PkiId, remote: PkiId, old_dialed_by_us: bool, new_dialed_by_us: bool) -> bool {
    if old_dialed_by_us == new_dialed_by_us {
        return true;
    }
    let dialer = |by_us: bool| if by_us { us } else { remote };
    dialer(new_dialed_by_us) < dialer(old_dialed_by_us)
}

impl Comm {
    /// A comm as `setup` says. Returns the receiver of its events (capacity `recv_buff_size`).
    pub fn new(env: Env, setup: CommSetup) -> (Comm, mpsc::Receiver<CommEvent>) {
        let CommSetup { signer, trusted, config, metrics, faults, tls } = setup;
        let (events, receiver) = mpsc::channel(config.recv_buff_size.max(1));
        let self_pki = signer.pki_id();
        let state = Mutex::new(State::default());
        let trusted = Mutex::new(trusted);
        let shared = Shared { env, signer, self_pki, trusted, config, faults, tls, events, metrics, state };
        (Comm { shared: Arc::new(shared) }, receiver)
    }

    /// From now on, remote identities are validated against `trusted` (the gossip aggregate
    /// hands over each new set, [`super::instance::Output::Trust`]).
    pub fn trust(&self, trusted: TrustedMsps) {
        *self.shared.trusted.lock().unwrap_or_else(PoisonError::into_inner) = trusted;
    }

    fn trusted(&self) -> TrustedMsps {
        self.shared.trusted.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Our own PKI-ID.
    pub fn self_pki_id(&self) -> PkiId {
        self.shared.self_pki
    }

    /// The `gossip.Gossip` service, to register on the peer port:
    /// `GossipServer::new(comm.service())` (or [`Comm::server`], which sets the size limits).
    pub fn service(&self) -> GossipService {
        GossipService { comm: self.clone() }
    }

    /// The service wrapped in its tonic server with the configured message size limits.
    pub fn server(&self) -> GossipServer<GossipService> {
        GossipServer::new(self.service())
            .max_decoding_message_size(self.shared.config.max_recv_msg_size)
            .max_encoding_message_size(self.shared.config.max_send_msg_size)
    }

    /// Dials `endpoint`, pings, opens a stream, authenticates (probe = false) and keeps the
    /// connection. Returns the remote PKI-ID. With `expected` already connected, returns at once
    /// without dialing. A remote other than `expected` is refused (Fabric's WARN
    /// `Remote endpoint claims to be a different peer, …`); so is this peer itself.
    pub async fn connect(&self, endpoint: &HostPort, expected: Option<PkiId>) -> Result<PkiId, CommError> {
        self.check_running()?;
        if let Some(pki_id) = expected
            && self.is_connected(&pki_id)
        {
            return Ok(pki_id);
        }
        let (mut client, server_cert) = self.dial(endpoint).await?;
        self.ping(&mut client, endpoint).await?;
        let (sink, mut inbound) = self.open_stream(&mut client, endpoint, false).await?;
        let remote = self.authenticate(&mut inbound, &endpoint.to_string(), server_cert).await.map_err(|e| initiator_error(endpoint, e))?;
        let pki_id = remote.pki_id;
        if pki_id == self.shared.self_pki {
            debug!(target: "gossip.comm", func = "createConnection", "{endpoint} is ourselves (PKI-ID {pki_id}), not connecting");
            return Err(CommError::SelfConnection { endpoint: endpoint.clone(), pki_id });
        }
        if let Some(expected) = expected
            && expected != pki_id
        {
            warn!(target: "gossip.comm", func = "createConnection", "Remote endpoint claims to be a different peer, expected {expected} but got {pki_id}");
            return Err(CommError::WrongPeer { endpoint: endpoint.clone(), expected, got: pki_id });
        }
        let link = Link { sink, inbound, _client: Some(client) };
        let mut state = lock(&self.shared.state);
        match self.register(&mut state, pki_id, true)? {
            None => {
                debug!(target: "gossip.comm", func = "createConnection", "Already connected to {pki_id}; keeping that connection, closing the new one to {endpoint}");
            }
            Some(slot) => {
                debug!(target: "gossip.comm", func = "createConnection", "Connected to {pki_id} at {endpoint}");
                reap(&mut state.tasks);
                let comm = self.clone();
                let endpoint = Some(endpoint.clone());
                state.tasks.spawn(async move { comm.run_connection(remote, link, slot, endpoint).await });
            }
        }
        Ok(pki_id)
    }

    /// Fabric's `Handshake`: dial, ping, then open a stream and authenticate with probe = true
    /// within [`HANDSHAKE_TIMEOUT`]. Returns the remote's validated identity and PKI-ID and
    /// keeps no connection (the stream ends when the remote closes it after "probed us", or
    /// after `conn_timeout`). Handshaking with this peer itself is refused.
    pub async fn handshake(&self, endpoint: &HostPort) -> Result<(PkiId, Arc<Identity>), CommError> {
        self.check_running()?;
        let (mut client, server_cert) = self.dial(endpoint).await?;
        self.ping(&mut client, endpoint).await?;
        let clock = self.shared.env.clock.clone();
        let work = async {
            let (sink, mut inbound) = self.open_stream(&mut client, endpoint, true).await?;
            let remote =
                self.authenticate(&mut inbound, &endpoint.to_string(), server_cert).await.map_err(|e| initiator_error(endpoint, e))?;
            // End our side and let the responder close (so it sees the whole probe).
            drop(sink);
            let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
            tokio::select! {
                biased;
                () = drain => {}
                () = clock.sleep(self.shared.config.conn_timeout) => {}
            }
            Ok::<Remote, CommError>(remote)
        };
        let remote = tokio::select! {
            biased;
            result = work => result?,
            () = clock.sleep(HANDSHAKE_TIMEOUT) => return Err(CommError::HandshakeTimeout { endpoint: endpoint.clone() }),
        };
        if remote.pki_id == self.shared.self_pki {
            debug!(target: "gossip.comm", func = "Handshake", "{endpoint} is ourselves (PKI-ID {})", remote.pki_id);
            return Err(CommError::SelfConnection { endpoint: endpoint.clone(), pki_id: remote.pki_id });
        }
        Ok((remote.pki_id, remote.identity))
    }

    /// Fabric's `Probe`: dial and ping only.
    pub async fn probe(&self, endpoint: &HostPort) -> Result<(), CommError> {
        self.check_running()?;
        let (mut client, _) = self.dial(endpoint).await?;
        self.ping(&mut client, endpoint).await
    }

    /// Queues a message to a connected peer. Never blocks: with the queue full
    /// (`send_buff_size`) the message is dropped (DEBUG `Buffer to <pki> overflowed, dropping
    /// message …`); without a connection it is dropped too (the caller connects first), as is a
    /// message over `max_send_msg_size`. Returns whether it was queued.
    pub fn send(&self, to: &PkiId, message: SignedMessage) -> bool {
        let size = message.envelope().encoded_len();
        if size > self.shared.config.max_send_msg_size {
            warn!(target: "gossip.comm", func = "Send", "Message {} of {size} bytes to {to} is over the {} bytes limit, dropping it", summary(message.message()), self.shared.config.max_send_msg_size);
            return false;
        }
        let state = lock(&self.shared.state);
        let Some(peer) = state.peers.get(to).filter(|peer| !peer.closing) else {
            debug!(target: "gossip.comm", func = "Send", "No connection to {to}, dropping message {}", summary(message.message()));
            return false;
        };
        // The envelope goes to the queue; the message stays for the log lines below.
        let (envelope, message) = message.into_parts();
        match peer.queue.try_send(envelope) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.metrics.overflow.inc();
                debug!(target: "gossip.comm", func = "send", "Buffer to {to} overflowed, dropping message {}", summary(&message));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(target: "gossip.comm", func = "send", "Connection to {to} is closing, dropping message {}", summary(&message));
                false
            }
        }
    }

    /// Whether a connection to `pki_id` is up (and not being closed).
    pub fn is_connected(&self, pki_id: &PkiId) -> bool {
        lock(&self.shared.state).peers.get(pki_id).is_some_and(|peer| !peer.closing)
    }

    /// The PKI-IDs with a connection up, in order.
    pub fn connected_peers(&self) -> Vec<PkiId> {
        lock(&self.shared.state).peers.iter().filter(|(_, peer)| !peer.closing).map(|(pki_id, _)| *pki_id).collect()
    }

    /// Closes the connection to `pki_id`, if any; its task emits `ConnectionDown`. Messages
    /// still queued are dropped unless a new connection to the peer takes the queue over first.
    pub fn close(&self, pki_id: &PkiId) {
        let mut state = lock(&self.shared.state);
        if let Some(peer) = state.peers.get_mut(pki_id)
            && !peer.closing
        {
            debug!(target: "gossip.comm", func = "closeConn", "Closing connection to {pki_id}");
            peer.closing = true;
            if let Some(close) = peer.close.take() {
                let _ = close.send(CloseReason::Closed);
            }
        }
    }

    /// Closes every connection (aborting their tasks: no further events) and refuses new ones.
    /// Idempotent. (Fabric's `Stopping`/`Stopped` lines are logged by the node.)
    pub fn stop(&self) {
        let (tasks, peers) = {
            let mut state = lock(&self.shared.state);
            state.stopped = true;
            (std::mem::take(&mut state.tasks), std::mem::take(&mut state.peers))
        };
        // Dropping the JoinSet aborts every task; drop outside the lock.
        drop(peers);
        drop(tasks);
    }

    fn check_running(&self) -> Result<(), CommError> {
        if lock(&self.shared.state).stopped { Err(CommError::Stopped) } else { Ok(()) }
    }

    /// Our ConnEstablish, signed (spec §5.3). TLS binding: with TLS, `tls_cert_hash` becomes
    /// SHA-256 of our leaf TLS certificate (client cert when dialing, server cert when
    /// responding).
    fn conn_message(&self, probe: bool, dialing: bool) -> SignedMessage {
        let signer = &*self.shared.signer;
        let conn = ConnEstablish {
            pki_id: self.shared.self_pki.0.to_vec(),
            identity: signer.serialized_identity(),
            tls_cert_hash: self
                .shared
                .tls
                .as_ref()
                .map(|tls| if dialing { tls.client_cert_hash } else { tls.server_cert_hash }.to_vec())
                .unwrap_or_default(),
            probe,
        };
        SignedMessage::sign(message::empty_tag(Content::Conn(conn), 0), signer)
    }

    /// Opens the network connection (with TLS, the handshake) and the HTTP/2 channel within
    /// `dial_timeout`. With TLS, also returns the hash of the server's certificate.
    async fn dial(&self, endpoint: &HostPort) -> Result<(GossipClient<Channel>, Option<[u8; 32]>), CommError> {
        let config = &self.shared.config;
        let tls = self.shared.tls.as_ref().map(|tls| ClientTls {
            config: tls.client.read().unwrap_or_else(PoisonError::into_inner).clone(),
            server_name: None,
            log_failures: false,
        });
        let options = ClientOptions { timeout: config.dial_timeout, keepalive: None, tls };
        let dialed = dial(&self.shared.env, endpoint, &options).await.map_err(|e| match e {
            failed @ (DialError::Failed(_) | DialError::Handshake(_)) => {
                CommError::Dial { endpoint: endpoint.clone(), cause: failed.to_string() }
            }
            DialError::TimedOut(timeout) => CommError::DialTimeout { endpoint: endpoint.clone(), timeout },
        })?;
        let client = GossipClient::new(dialed.channel)
            .max_decoding_message_size(config.max_recv_msg_size)
            .max_encoding_message_size(config.max_send_msg_size);
        Ok((client, dialed.server_cert_hash))
    }

    async fn ping(&self, client: &mut GossipClient<Channel>, endpoint: &HostPort) -> Result<(), CommError> {
        let ping_error = |cause: String| CommError::Ping { endpoint: endpoint.clone(), cause };
        tokio::select! {
            biased;
            result = client.ping(Empty {}) => result.map(|_| ()).map_err(|status| ping_error(status.to_string())),
            () = self.shared.env.clock.sleep(self.shared.config.conn_timeout) => {
                Err(ping_error(format!("timed out after {:?}", self.shared.config.conn_timeout)))
            }
        }
    }

    /// Opens `GossipStream` with our ConnEstablish already queued (we send first), within
    /// `conn_timeout`.
    async fn open_stream(
        &self,
        client: &mut GossipClient<Channel>,
        endpoint: &HostPort,
        probe: bool,
    ) -> Result<(mpsc::Sender<Result<Envelope, Status>>, Streaming<Envelope>), CommError> {
        let (sink, outbound) = mpsc::channel(1);
        // A fresh channel of capacity 1 always has room.
        let _ = sink.try_send(Ok(self.conn_message(probe, true).into_envelope()));
        let outbound = ReceiverStream::new(outbound).map_while(Result::ok);
        let stream_error = |cause: String| CommError::Stream { endpoint: endpoint.clone(), cause };
        let response = tokio::select! {
            biased;
            response = client.gossip_stream(outbound) => response.map_err(|status| stream_error(status.to_string()))?,
            () = self.shared.env.clock.sleep(self.shared.config.conn_timeout) => {
                return Err(stream_error(format!("timed out after {:?}", self.shared.config.conn_timeout)));
            }
        };
        Ok((sink, response.into_inner()))
    }

    /// Fabric's `authenticateRemotePeer`, after our own ConnEstablish was sent: reads the
    /// remote's within `conn_timeout`, validates its identity, checks (with TLS) that its
    /// `tls_cert_hash` is `remote_cert`, the certificate seen on the connection, and verifies its
    /// signature.
    async fn authenticate(
        &self,
        inbound: &mut Streaming<Envelope>,
        addr: &str,
        remote_cert: Option<[u8; 32]>,
    ) -> Result<Remote, HandshakeError> {
        let envelope = tokio::select! {
            biased;
            received = inbound.message() => match received {
                Ok(Some(envelope)) => envelope,
                Ok(None) => return Err(HandshakeError::Closed("stream ended".into())),
                Err(status) => return Err(HandshakeError::Closed(status.to_string())),
            },
            () = self.shared.env.clock.sleep(self.shared.config.conn_timeout) => return Err(HandshakeError::Timeout),
        };
        let message = SignedMessage::from_envelope(envelope).map_err(HandshakeError::Bad)?;
        let Some(Content::Conn(conn)) = message.content() else {
            return Err(HandshakeError::Bad(BadMessage::Unexpected("Wrong type".into())));
        };
        if conn.pki_id.is_empty() {
            return Err(HandshakeError::Bad(BadMessage::Unexpected("No PKI-ID".into())));
        }
        let now = self.shared.env.clock.wall_clock();
        let trusted = self.trusted();
        let (pki_id, identity) = match trusted.validate(&conn.pki_id, &conn.identity, now) {
            Ok(validated) => validated,
            Err(err) => {
                warn!(target: "gossip.comm", func = "authenticateRemotePeer", "Identity store rejected {} : {err}", hex::encode(&conn.pki_id));
                return Err(HandshakeError::Bad(err));
            }
        };
        if self.shared.tls.is_some() {
            let actual = remote_cert.map(|hash| hash.to_vec()).unwrap_or_default();
            if actual != conn.tls_cert_hash {
                let err = BadMessage::TlsBinding(format!(
                    "Expected {} in remote hash of TLS cert, but got {}",
                    go_bytes(&actual),
                    go_bytes(&conn.tls_cert_hash)
                ));
                warn!(target: "gossip.comm", func = "authenticateRemotePeer", "{addr}: {err}");
                return Err(HandshakeError::Bad(err));
            }
        }
        if let Err(err) = trusted.verify(&identity, &message) {
            error!(target: "gossip.comm", func = "authenticateRemotePeer", "Failed verifying signature from {addr} : {err}");
            return Err(HandshakeError::Bad(err));
        }
        debug!(target: "gossip.comm", func = "authenticateRemotePeer", "Authenticated {addr}");
        Ok(Remote { pki_id, identity, probe: conn.probe })
    }

    /// Registers a new connection to `pki_id` under the one-connection rule (module docs).
    /// `Ok(None)`: an existing connection wins and the new one must be dropped.
    fn register(&self, state: &mut State, pki_id: PkiId, dialed_by_us: bool) -> Result<Option<Slot>, CommError> {
        if state.stopped {
            return Err(CommError::Stopped);
        }
        state.next_conn_id += 1;
        let conn_id = state.next_conn_id;
        let (close_tx, close) = oneshot::channel();
        let (handback, handback_rx) = oneshot::channel();
        let (queue_tx, queue, announce) = match state.peers.remove(&pki_id) {
            None => {
                let (queue_tx, queue_rx) = mpsc::channel(self.shared.config.send_buff_size.max(1));
                (queue_tx, QueueSource::Fresh(queue_rx), true)
            }
            Some(mut old) => {
                if !old.closing && !new_connection_wins(self.shared.self_pki, pki_id, old.dialed_by_us, dialed_by_us) {
                    state.peers.insert(pki_id, old);
                    return Ok(None);
                }
                if !old.closing {
                    debug!(target: "gossip.comm", func = "onConnected", "Replacing the connection to {pki_id} by a new one");
                    if let Some(close) = old.close.take() {
                        let _ = close.send(CloseReason::Replaced);
                    }
                }
                // A closing predecessor emits ConnectionDown before handing its queue back, so
                // the new connection announces itself afterwards.
                (old.queue, QueueSource::Inherited(old.handback), old.closing)
            }
        };
        let peer = Peer { conn_id, dialed_by_us, closing: false, queue: queue_tx, close: Some(close_tx), handback: handback_rx };
        state.peers.insert(pki_id, peer);
        Ok(Some(Slot { conn_id, queue, close, handback, announce }))
    }

    async fn emit(&self, event: CommEvent) {
        // A dropped receiver means nobody listens any more; nothing to do.
        let _ = self.shared.events.send(event).await;
    }

    /// One registered connection, from `ConnectionUp` to `ConnectionDown` (or replacement).
    async fn run_connection(self, remote: Remote, link: Link, slot: Slot, endpoint: Option<HostPort>) {
        let Slot { conn_id, queue, close, handback, announce } = slot;
        let pki_id = remote.pki_id;
        let queue = match queue {
            QueueSource::Fresh(queue) => queue,
            QueueSource::Inherited(previous) => match previous.await {
                Ok(queue) => queue,
                // The previous task was aborted: only `stop` does that, which aborts us too.
                Err(_) => return,
            },
        };
        if announce {
            self.emit(CommEvent::ConnectionUp { pki_id, endpoint, identity: remote.identity }).await;
        }
        let (end, queue) = self.serve(pki_id, link, queue, close).await;
        let (down, presumed_dead) = match &end {
            End::Closed(CloseReason::Replaced) => (false, false),
            End::Closed(CloseReason::Closed) => (true, false),
            End::RecvEnded(cause) => {
                debug!(target: "gossip.comm", func = "readFromStream", "Connection to {pki_id} ended: {cause}");
                (true, false)
            }
            End::Malformed(err) => {
                warn!(target: "gossip.comm", func = "readFromStream", "Got error, aborting: {err}");
                (true, false)
            }
            End::SendFailed(cause) => {
                warn!(target: "gossip.comm", func = "writeToStream", "{pki_id} isn't responsive: {cause}");
                (true, true)
            }
        };
        // Still ours? Then mark it closing (not connected any more, a replacement will announce
        // itself after our ConnectionDown), report, and remove it.
        let registered = {
            let mut state = lock(&self.shared.state);
            match state.peers.get_mut(&pki_id) {
                Some(peer) if peer.conn_id == conn_id => {
                    peer.closing = true;
                    true
                }
                _ => false,
            }
        };
        if registered && down {
            if presumed_dead {
                self.emit(CommEvent::PresumedDead { pki_id }).await;
            }
            self.emit(CommEvent::ConnectionDown { pki_id }).await;
        }
        if registered {
            let mut state = lock(&self.shared.state);
            if state.peers.get(&pki_id).is_some_and(|peer| peer.conn_id == conn_id) {
                state.peers.remove(&pki_id);
            }
        }
        let _ = handback.send(queue);
    }

    /// Reads and writes until the connection ends; returns why, and the queue.
    async fn serve(
        &self,
        pki_id: PkiId,
        link: Link,
        mut queue: mpsc::Receiver<Envelope>,
        close: oneshot::Receiver<CloseReason>,
    ) -> (End, mpsc::Receiver<Envelope>) {
        let Link { sink, mut inbound, _client } = link;
        let end = {
            let reader = async {
                loop {
                    let envelope = match inbound.message().await {
                        Ok(Some(envelope)) => {
                            self.shared.metrics.messages_received.inc();
                            envelope
                        }
                        Ok(None) => return End::RecvEnded("stream closed by the remote".into()),
                        // Over `max_recv_msg_size`: the stream cannot go on (the frame was not
                        // read), but it is a bad message like any other, counted as too_large.
                        Err(status) if status.code() == tonic::Code::OutOfRange => {
                            let err = too_large(&status);
                            self.emit(CommEvent::Rejected { from: Some(pki_id), error: err.clone() }).await;
                            return End::Malformed(err);
                        }
                        Err(status) => return End::RecvEnded(status.to_string()),
                    };
                    let block_limit = super::message::block_message_limit(self.shared.config.max_recv_msg_size);
                    match SignedMessage::from_envelope_with_block_limit(envelope, block_limit) {
                        Ok(message) => match self.shared.faults.as_ref().map_or(MessageFault::Deliver, |faults| faults.next()) {
                            MessageFault::Deliver => self.emit(CommEvent::Message { from: pki_id, message }).await,
                            MessageFault::Drop => {}
                            MessageFault::Duplicate => {
                                self.emit(CommEvent::Message { from: pki_id, message: message.clone() }).await;
                                self.emit(CommEvent::Message { from: pki_id, message }).await;
                            }
                        },
                        // Not a GossipMessage at all: Fabric aborts the connection.
                        Err(err @ (BadMessage::EmptyPayload | BadMessage::Decode(_))) => {
                            self.emit(CommEvent::Rejected { from: Some(pki_id), error: err.clone() }).await;
                            return End::Malformed(err);
                        }
                        // A well-formed message that breaks a rule (tag, size): dropped, the
                        // connection stays.
                        Err(err) => {
                            warn!(target: "gossip.comm", func = "readFromStream", "Dropping a message from {pki_id}: {err}");
                            self.emit(CommEvent::Rejected { from: Some(pki_id), error: err }).await;
                        }
                    }
                }
            };
            let writer = async {
                while let Some(envelope) = queue.recv().await {
                    if sink.send(Ok(envelope)).await.is_err() {
                        return End::SendFailed("the stream is closed".into());
                    }
                    self.shared.metrics.messages_sent.inc();
                }
                // Every sender is gone: the entry was dropped (stop).
                End::Closed(CloseReason::Closed)
            };
            tokio::select! {
                biased;
                reason = close => End::Closed(reason.unwrap_or(CloseReason::Closed)),
                end = reader => end,
                end = writer => end,
            }
        };
        (end, queue)
    }

    /// Starts serving an inbound `GossipStream` (the responder side).
    fn accept(
        &self,
        inbound: Streaming<Envelope>,
        sink: mpsc::Sender<Result<Envelope, Status>>,
        addr: String,
        client_cert: Option<[u8; 32]>,
    ) -> Result<(), Status> {
        let mut state = lock(&self.shared.state);
        if state.stopped {
            return Err(Status::unavailable("Shutting down"));
        }
        reap(&mut state.tasks);
        let comm = self.clone();
        state.tasks.spawn(async move { comm.respond(inbound, sink, addr, client_cert).await });
        Ok(())
    }

    /// The responder: send our ConnEstablish, authenticate the remote, then keep the
    /// connection (unless it probed us, is ourselves, or loses to an existing connection).
    async fn respond(
        self,
        mut inbound: Streaming<Envelope>,
        sink: mpsc::Sender<Result<Envelope, Status>>,
        addr: String,
        client_cert: Option<[u8; 32]>,
    ) {
        if self.shared.tls.is_some() && client_cert.is_none() {
            // Fabric checks this before sending anything.
            warn!(target: "gossip.comm", func = "authenticateRemotePeer", "{addr} didn't send TLS certificate");
            let err = BadMessage::TlsBinding("No TLS certificate".into());
            error!(target: "gossip.comm", func = "GossipStream", "Authentication failed: {err}");
            let _ = sink.try_send(Err(Status::unauthenticated(format!("authentication failed: {err}"))));
            self.emit(CommEvent::Rejected { from: None, error: err }).await;
            return;
        }
        if sink.send(Ok(self.conn_message(false, false).into_envelope())).await.is_err() {
            return;
        }
        let remote = match self.authenticate(&mut inbound, &addr, client_cert).await {
            Ok(remote) => remote,
            Err(HandshakeError::Closed(cause)) => {
                debug!(target: "gossip.comm", func = "GossipStream", "{addr} closed the stream before authenticating: {cause}");
                return;
            }
            Err(err) => {
                let err = match err {
                    HandshakeError::Timeout => BadMessage::Unexpected(format!("timed out waiting for connection message from {addr}")),
                    HandshakeError::Bad(err) => err,
                    HandshakeError::Closed(cause) => BadMessage::Unexpected(cause),
                };
                error!(target: "gossip.comm", func = "GossipStream", "Authentication failed: {err}");
                // The channel has room for this second item (see `gossip_stream`).
                let _ = sink.try_send(Err(Status::unauthenticated(format!("authentication failed: {err}"))));
                self.emit(CommEvent::Rejected { from: None, error: err }).await;
                return;
            }
        };
        let pki_id = remote.pki_id;
        if pki_id == self.shared.self_pki {
            debug!(target: "gossip.comm", func = "GossipStream", "Got a connection from ourselves ({addr}), closing it");
            return;
        }
        if remote.probe {
            info!(target: "gossip.comm", func = "GossipStream", "Peer {pki_id} ({addr}) probed us");
            return;
        }
        let registered = self.register(&mut lock(&self.shared.state), pki_id, false);
        match registered {
            Ok(Some(slot)) => {
                debug!(target: "gossip.comm", func = "GossipStream", "Accepted a connection from {pki_id} ({addr})");
                let link = Link { sink, inbound, _client: None };
                self.run_connection(remote, link, slot, None).await;
            }
            Ok(None) => {
                debug!(target: "gossip.comm", func = "GossipStream", "Already connected to {pki_id}; closing the new connection from {addr}");
            }
            Err(_) => {}
        }
    }
}

/// The size and limit from tonic's "decoded message length too large: found N bytes, the limit
/// is: M bytes" (0 for a number it did not give).
fn too_large(status: &Status) -> BadMessage {
    let numbers: Vec<usize> = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect();
    BadMessage::TooLarge { size: numbers.first().copied().unwrap_or(0), limit: numbers.get(1).copied().unwrap_or(0) }
}

fn initiator_error(endpoint: &HostPort, err: HandshakeError) -> CommError {
    let endpoint = endpoint.clone();
    match err {
        HandshakeError::Timeout => CommError::NoConnMessage { endpoint },
        HandshakeError::Closed(cause) => CommError::Closed { endpoint, cause },
        HandshakeError::Bad(error) => CommError::Auth { endpoint, error },
    }
}

/// Drops the results of finished tasks so the JoinSet does not grow.
fn reap(tasks: &mut JoinSet<()>) {
    while tasks.try_join_next().is_some() {}
}

/// A short description of a message for logs: its kind, tag and nonce.
fn summary(message: &GossipMessage) -> String {
    let kind = match &message.content {
        None => "no content",
        Some(content) => match content {
            Content::AliveMsg(_) => "AliveMessage",
            Content::MemReq(_) => "MembershipRequest",
            Content::MemRes(_) => "MembershipResponse",
            Content::DataMsg(_) => "DataMessage",
            Content::Hello(_) => "GossipHello",
            Content::DataDig(_) => "DataDigest",
            Content::DataReq(_) => "DataRequest",
            Content::DataUpdate(_) => "DataUpdate",
            Content::Empty(_) => "Empty",
            Content::Conn(_) => "ConnEstablish",
            Content::StateInfo(_) => "StateInfo",
            Content::StateSnapshot(_) => "StateInfoSnapshot",
            Content::StateInfoPullReq(_) => "StateInfoPullRequest",
            Content::StateRequest(_) => "RemoteStateRequest",
            Content::StateResponse(_) => "RemoteStateResponse",
            Content::LeadershipMsg(_) => "LeadershipMessage",
            Content::PeerIdentity(_) => "PeerIdentity",
            Content::Ack(_) => "Acknowledgement",
            Content::PrivateReq(_) => "RemotePvtDataRequest",
            Content::PrivateRes(_) => "RemotePvtDataResponse",
            Content::PrivateData(_) => "PrivateDataMessage",
        },
    };
    let tag = proto::gossip::gossip_message::Tag::try_from(message.tag).map_or_else(|_| message.tag.to_string(), |t| format!("{t:?}"));
    format!("{kind} (tag {tag}, nonce {})", message.nonce)
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, Status>> + Send + 'static>>;

/// The `gossip.Gossip` service of a [`Comm`].
#[derive(Clone, Debug)]
pub struct GossipService {
    comm: Comm,
}

#[tonic::async_trait]
impl Gossip for GossipService {
    type GossipStreamStream = EnvelopeStream;

    /// Answers at once with the outbound stream; the handshake and the connection run in a
    /// task owned by the comm. The remote address (for logs) is known only when the server
    /// puts tonic's `TcpConnectInfo` into the request.
    async fn gossip_stream(&self, request: Request<Streaming<Envelope>>) -> Result<Response<Self::GossipStreamStream>, Status> {
        let addr = request.remote_addr().map_or_else(|| "unknown address".to_string(), |addr| addr.to_string());
        let client_cert = request.extensions().get::<RemoteTls>().and_then(|tls| tls.cert_hash);
        // Room for our ConnEstablish and, if authentication fails, the error status after it.
        let (sink, outbound) = mpsc::channel(2);
        self.comm.accept(request.into_inner(), sink, addr, client_cert)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }

    async fn ping(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ends of a pair judge every two connections between them the same way, whichever
    /// one they saw first.
    #[test]
    fn both_ends_agree_on_the_winning_connection() {
        let low = PkiId([1; 32]);
        let high = PkiId([2; 32]);
        for (us, them) in [(low, high), (high, low)] {
            // Connections are named by their dialer; at `us`, "dialed by us" means dialer == us.
            for (first, second) in [(us, them), (them, us)] {
                let winner_here = if new_connection_wins(us, them, first == us, second == us) { second } else { first };
                // The other end may have registered them in either order.
                for (other_first, other_second) in [(first, second), (second, first)] {
                    let winner_there =
                        if new_connection_wins(them, us, other_first == them, other_second == them) { other_second } else { other_first };
                    assert_eq!(winner_here, winner_there);
                }
                assert_eq!(winner_here, low, "the connection dialed by the lower PKI-ID wins");
            }
        }
        // Same dialer: the newer connection replaces the older one.
        assert!(new_connection_wins(low, high, true, true));
        assert!(new_connection_wins(low, high, false, false));
    }
}
