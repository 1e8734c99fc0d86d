//! An ordering-service host: a deterministic, solo-style block producer serving
//! `orderer.AtomicBroadcast`, for the simulator (a turmoil host named `orderer`) and for
//! real-process tests (`sim orderer`).
//!
//! It is built from peer-core's parts, not beside them: its ledger is a `Channels` over a
//! `LedgerMgr` on the Env's storage (appends verify the block signatures like a peer's), Deliver
//! is peer-core's deliver session ([`OrdererDeliver`], access by `/Channel/Readers`), blocks are
//! made with `new_block` and signed with `sign_block`, and gRPC is served by `serve_grpc` over
//! the Env's network. Time comes only from the Env's clock and randomness only from the Env's
//! seeded stream, so a simulated run repeats byte for byte.
//!
//! Block cutting follows Fabric's solo consenter and block cutter: a transaction joins the
//! pending batch; the first one of a batch starts the batch timer; the batch is cut when it
//! holds `max_message_count` transactions or when the timer fires. Transactions are synthetic
//! ENDORSER_TRANSACTIONs made at `tx_per_second` by a generated client identity, plus whatever
//! clients broadcast: Broadcast accepts ENDORSER_TRANSACTION envelopes whose signature satisfies
//! `/Channel/Writers` into the next block (as a solo orderer does), with Fabric's statuses.
//!
//! A node can instead be a **replica** (`OrdererSpec::replicate_from`): what a Raft follower
//! looks like from the outside, with the cutter as the Raft leader. It cuts nothing; it pulls the
//! leader's chain through `orderer.AtomicBroadcast/Deliver` into its own ledger with peer-core's
//! deliver client (a signed seek from its own height, every block verified by
//! `Channels::append`, Fabric's backoff between attempts), and serves Deliver from that ledger
//! like the leader does. Restarted, it resumes from the height on its disk. Broadcast on a
//! replica answers SERVICE_UNAVAILABLE after the usual checks: a Raft follower would forward the
//! transaction to the leader, but forwarding is cluster RPC this simulator does not model, and
//! SERVICE_UNAVAILABLE is what a Raft follower answers when it has no leader to forward to, so
//! clients already handle it by trying another orderer.
//!
//! Deliberately not done: config updates (CONFIG_UPDATE is refused with BAD_REQUEST), the size
//! limits of BatchSize (PreferredMaxBytes/AbsoluteMaxBytes; a message limit of 10 MiB only),
//! TLS, the orderer's operations server, and consensus itself (no election: the cutter is the
//! leader for good, and a replica follows it only).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use peer_core::blocks::NoPublisher;
use peer_core::blocks::deliverclient::DeliverTls;
use peer_core::blocks::deliverclient::{DeliverClient, DeliverClientConfig};
use peer_core::channel::config::AnchorPeer;
use peer_core::channel::signatures::sign_block;
use peer_core::channel::{ChannelConfig, SignedData};
use peer_core::channels::{Channels, last_config_index};
use peer_core::config::{HostPort, KeepaliveConfig};
use peer_core::env::{Env, Instant};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{channel_id_of, header_hash, new_block};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::Org;
use peer_core::net::serve::{ConnectionLimits, GrpcServer, serve_grpc_with};
use peer_core::net::tls::{ClientAuth, ClientRoots, KeyPair, PemFile, TlsContext, certificates_of};
use peer_core::proposal::{NONCE_SIZE, compute_tx_id, timestamp};
use peer_core::services::deliver::{BoxStream, OrdererDeliver};
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::BroadcastResponse;
use proto::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, warn};

/// Fabric's orderer loggers.
const SOLO: &str = "orderer.consensus.solo";
const BLOCKCUTTER: &str = "orderer.common.blockcutter";
const MULTICHANNEL: &str = "orderer.common.multichannel";
const BROADCAST: &str = "orderer.common.broadcast";
const SERVER: &str = "orderer.common.server";
const REPLICATION: &str = "orderer.common.cluster.replication";

/// The largest message the orderer takes (Fabric's sample AbsoluteMaxBytes is 10 MB).
const MAX_MESSAGE_BYTES: usize = 10 << 20;
/// Broadcast envelopes waiting for the block cutter; beyond this Broadcast answers
/// SERVICE_UNAVAILABLE (Fabric's solo queue is a channel of the same kind).
const BROADCAST_QUEUE: usize = 1000;

/// How long a replica's dial of the leader may take, and its longest pause between attempts:
/// Fabric's `General.Cluster.DialTimeout` and `ReplicationRetryTimeout` defaults.
const REPLICATION_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
const REPLICATION_RETRY_TIMEOUT: Duration = Duration::from_secs(5);
/// The replica's keepalive on its stream from the leader: a ping after 2.5s without traffic,
/// 2.5s to answer, so a silent leader (a partition) is noticed in about 5s, Raft's default
/// election timeout (ElectionTick 10 × TickInterval 500ms), instead of the 80s of Fabric's
/// cluster-client defaults (60s + 20s).
const REPLICATION_KEEPALIVE: Duration = Duration::from_millis(2500);

/// What an orderer runs with. Times are relative to this start of the process (the simulator
/// translates its global schedule into them at every restart).
#[derive(Clone, Debug)]
pub struct OrdererSpec {
    /// Where `orderer.AtomicBroadcast` is served (`0.0.0.0:7050`; port 0 picks one).
    pub listen: HostPort,
    /// The orderer's data directory on the Env's storage (the ledger is under `ledgersData`).
    pub data_dir: PathBuf,
    /// The channel's genesis block: joined when the ledger does not have the channel yet.
    pub genesis: Block,
    /// The orderer's signing identity (a member of the channel's orderer org).
    pub signer: LocalMsp,
    /// The creator of the synthetic transactions (any identity; nobody validates them).
    pub client: LocalMsp,
    /// Synthetic transactions per second (0: none; blocks then come from Broadcast only).
    pub tx_per_second: f64,
    /// Fabric's `BatchTimeout`: how long the first transaction of a batch waits for others.
    pub batch_timeout: Duration,
    /// Fabric's `BatchSize.MaxMessageCount`: a batch this full is cut at once.
    pub max_message_count: u32,
    /// Synthetic transactions start this long after start.
    pub start: Duration,
    /// ... and stop this long after start (None: never). Broadcast keeps working.
    pub stop: Option<Duration>,
    /// Windows `[from, until)` after start without synthetic transactions (an idle channel).
    pub quiet: Vec<(Duration, Duration)>,
    /// Counts the Deliver streams this node is asked to open (the simulator checks that an idle
    /// channel costs its peers no reconnects). Shared across restarts by whoever made the spec.
    pub deliver_streams: Arc<AtomicU64>,
    /// Channel config updates the cutter makes, each at a time after start, in order: update i
    /// brings the config to sequence i + 1, so after a restart those the chain has are skipped.
    pub config_updates: Vec<(Duration, ConfigUpdate)>,
    /// Synthetic transactions also stop once the chain is this high (None: never), so a
    /// benchmark can fill a ledger with an exact number of blocks.
    pub max_height: Option<u64>,
    /// `General.Authentication.TimeWindow`: how far a Deliver request's timestamp may be from now.
    pub time_window: Duration,
    /// None: this node cuts blocks (solo, or the leader of a simulated cluster). Some(endpoint):
    /// it is a replica of the leader at that endpoint (`orderer:7050`): it pulls and serves the
    /// leader's chain and cuts nothing (the transaction fields above are unused).
    pub replicate_from: Option<String>,
    /// TLS on `orderer.AtomicBroadcast` (and on a replica's pulls from its leader).
    pub tls: Option<OrdererTls>,
}

/// An orderer's TLS, as Fabric's `General.TLS`: its server pair, and with `client_auth_required`
/// (`General.TLS.ClientAuthRequired`) client certificates verified against `client_roots` and
/// Deliver requests bound to them.
#[derive(Clone, Debug)]
pub struct OrdererTls {
    pub cert: PemFile,
    pub key: PemFile,
    pub client_auth_required: bool,
    pub client_roots: Vec<PemFile>,
}

impl OrdererSpec {
    /// Fabric's sample orderer values (BatchTimeout 2s, MaxMessageCount 10, TimeWindow 15m), no
    /// synthetic transactions.
    pub fn new(listen: HostPort, data_dir: PathBuf, genesis: Block, signer: LocalMsp, client: LocalMsp) -> OrdererSpec {
        OrdererSpec {
            listen,
            data_dir,
            genesis,
            signer,
            client,
            tx_per_second: 0.0,
            batch_timeout: Duration::from_secs(2),
            max_message_count: 10,
            start: Duration::ZERO,
            stop: None,
            quiet: Vec::new(),
            deliver_streams: Arc::default(),
            config_updates: Vec::new(),
            max_height: None,
            time_window: Duration::from_secs(15 * 60),
            replicate_from: None,
            tls: None,
        }
    }
}

/// The orderer's server configuration, and how its replica pulls (the same pair as client).
/// Client certificates are verified, as Fabric's orderer does, against the given client roots
/// and the TLS CAs of every org of the channel (`genesis`'s config).
fn server_tls(env: &Env, tls: &OrdererTls, genesis: &Block) -> anyhow::Result<(Arc<rustls::ServerConfig>, DeliverTls)> {
    let context = TlsContext::new(&peer_core::net::tls::provider(env), env.clock.clone());
    let pair = KeyPair::from_files(&tls.cert, &tls.key).context("the orderer's TLS pair")?;
    let auth = if tls.client_auth_required {
        let mut roots = certificates_of(&tls.client_roots).context("the orderer's client root CAs")?;
        let config = ChannelConfig::from_block(genesis).context("the channel's config")?;
        roots.extend(config.msps().values().flat_map(peer_core::net::tls::msp_tls_cas));
        ClientAuth::Require(ClientRoots::trusting(&context, &roots).context("the orderer's client root CAs")?)
    } else {
        ClientAuth::Request
    };
    let server = context.server(&pair, auth).context("the orderer's TLS server")?;
    let client_pair = tls.client_auth_required.then(|| pair.clone());
    Ok((server, DeliverTls::new(context, client_pair)))
}

/// A running orderer. Dropping it aborts its tasks; [`RunningOrderer::stop`] ends them in order.
pub struct RunningOrderer {
    /// Where the service is bound.
    pub listen_address: std::net::SocketAddr,
    /// The orderer's ledger (the one channel), for checkers and tests.
    pub channels: Arc<Channels>,
    /// The channel it orders.
    pub channel_id: String,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningOrderer {
    /// Stops producing and serving; the ledger closes when the last handle goes.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        info!(target: SERVER, func = "Main", "Orderer stopped");
    }
}

pub struct Orderer;

impl Orderer {
    /// Opens the ledger, joins the channel if needed, serves `orderer.AtomicBroadcast` on
    /// `spec.listen` and starts cutting blocks. Returns once the listener is bound.
    pub async fn start(env: Env, spec: OrdererSpec) -> anyhow::Result<RunningOrderer> {
        Orderer::start_on(env, spec, None).await
    }

    /// [`Orderer::start`] on a listener already bound (by a caller that had to know the bound
    /// address first, e.g. to name it in the genesis block); `None` binds `spec.listen`.
    pub async fn start_on(env: Env, spec: OrdererSpec, bound: Option<Box<dyn peer_core::env::Listener>>) -> anyhow::Result<RunningOrderer> {
        let channel_id = channel_id_of(&spec.genesis).context("the genesis block names no channel")?;
        match &spec.replicate_from {
            None => info!(target: SERVER, func = "Main", "Starting orderer: peer-core simulated solo orderer for channel {channel_id}"),
            Some(leader) => {
                info!(target: SERVER, func = "Main", "Starting orderer: peer-core simulated replica of {leader} for channel {channel_id}")
            }
        }
        let ledger = LedgerMgr::open(&env, &spec.data_dir, "orderer").context("opening the orderer's ledger")?;
        let channels = Arc::new(Channels::open(ledger).context("opening the orderer's channels")?);
        if channels.ledger(&channel_id).is_none() {
            channels.create_channel(&spec.genesis).with_context(|| format!("creating channel {channel_id} from its genesis block"))?;
            info!(target: MULTICHANNEL, func = "CreateChain", "Created and started new channel {channel_id}");
        }
        let ledger = channels.ledger(&channel_id).context("the channel's ledger is not open")?;
        if spec.replicate_from.is_none() {
            warn!(target: SOLO, func = "New", "Use of the Solo orderer is deprecated and remains only for use in test environments but may be removed in the future.");
        }

        let listener = match bound {
            Some(listener) => listener,
            None => env.network.bind(&spec.listen).await.with_context(|| format!("binding {}", spec.listen))?,
        };
        let listen_address = listener.local_addr().context("reading the listen address")?;
        let (stop, stop_rx) = watch::channel(false);
        let (queue_tx, queue_rx) = mpsc::channel(BROADCAST_QUEUE);
        let role = match &spec.replicate_from {
            None => Role::Cutter(queue_tx),
            Some(leader) => Role::Replica { leader: leader.clone() },
        };
        let tls = spec.tls.as_ref().map(|tls| server_tls(&env, tls, &spec.genesis)).transpose()?;
        let binding = spec.tls.as_ref().is_some_and(|tls| tls.client_auth_required);
        let service = BroadcastService {
            channels: channels.clone(),
            channel_id: channel_id.clone(),
            deliver: OrdererDeliver::new(channels.clone(), env.clock.clone(), spec.time_window).with_binding(binding),
            role: Arc::new(role),
            deliver_streams: spec.deliver_streams.clone(),
        };
        let routes = peer_core::net::serve::answering_unknown_services(tonic::service::Routes::new(
            AtomicBroadcastServer::new(service).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(usize::MAX),
        ));
        // Fabric's orderer keepalive defaults (General.Keepalive: ServerInterval 2h, ServerTimeout 20s),
        // the peer's server defaults too.
        let keepalive = KeepaliveConfig::default();
        let mut tasks = JoinSet::new();
        // The peer's defaults: a 5 s handshake (grpc-go's ConnectionTimeout) and a generous bound.
        let limits = ConnectionLimits {
            max_connections: peer_core::config::DEFAULT_PEER_MAX_CONNECTIONS,
            bound_by: "the simulated orderer's bound".into(),
            handshake_timeout: Duration::from_secs(5),
        };
        let server =
            GrpcServer { name: "OrdererServer", keepalive, limits, counters: None, tls: tls.as_ref().map(|(server, _)| server.clone()) };
        tasks.spawn(serve_grpc_with(listener, env.clock.clone(), routes, server, stop_rx.clone()));
        match &spec.replicate_from {
            None => {
                let cutter = Cutter {
                    channels: channels.clone(),
                    channel_id: channel_id.clone(),
                    signer: spec.signer.clone(),
                    client: spec.client.clone(),
                    rng: env.fork_rng(),
                    pending: Vec::new(),
                    max_message_count: spec.max_message_count.max(1) as usize,
                };
                tasks.spawn(cutter.run(env, spec.clone(), queue_rx, stop_rx));
            }
            Some(leader) => {
                info!(target: REPLICATION, func = "ReplicateChains", "Replicating channel {channel_id} from the leader {leader}, starting at block [{}]", ledger.height());
                let client_tls = tls.map(|(_, deliver)| deliver);
                tasks.spawn(replicate(env, channels.clone(), &channel_id, &spec.signer, leader, client_tls, stop_rx));
            }
        }
        info!(target: SERVER, func = "Main", "Beginning to serve requests on {listen_address} (channel {channel_id} at height {})", ledger.height());
        Ok(RunningOrderer { listen_address, channels, channel_id, stop, tasks })
    }
}

/// A change an admin makes to the channel's configuration (the orderer cuts it as a config block).
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigUpdate {
    /// The org (by MSP ID) names this peer as an anchor peer, besides any it names.
    AddAnchor { msp_id: String, anchor: AnchorPeer },
    /// The application org (by MSP ID) leaves the channel.
    RemoveOrg { msp_id: String },
}

/// The block cutter and block writer of the one channel.
struct Cutter {
    channels: Arc<Channels>,
    channel_id: String,
    signer: LocalMsp,
    client: LocalMsp,
    rng: ChaCha20Rng,
    /// Fabric's pending batch: serialized envelopes.
    pending: Vec<Vec<u8>>,
    max_message_count: usize,
}

impl Cutter {
    /// Fabric's solo `main` loop: messages in, the batch timer, blocks out.
    async fn run(mut self, env: Env, spec: OrdererSpec, mut queue: mpsc::Receiver<Vec<u8>>, mut stop: watch::Receiver<bool>) {
        let clock = env.clock.clone();
        let started = clock.now();
        let interval = (spec.tx_per_second > 0.0 && spec.tx_per_second.is_finite())
            .then(|| Duration::from_secs_f64((1.0 / spec.tx_per_second).max(1e-6)));
        let stop_at = spec.stop.map(|stop| started + stop);
        let quiet: Vec<(Instant, Instant)> = spec.quiet.iter().map(|(from, until)| (started + *from, started + *until)).collect();
        // A transaction due inside a quiet window waits for its end.
        let outside_quiet = |at: Instant| quiet.iter().find(|(from, until)| *from <= at && at < *until).map_or(at, |(_, until)| *until);
        let mut next_tx: Option<Instant> = interval.map(|_| outside_quiet(started + spec.start));
        let mut batch_deadline: Option<Instant> = None;
        // The updates the chain does not have yet (its config sequence counts those it has).
        let applied = self.channels.config(&self.channel_id).map_or(0, |c| c.sequence);
        let mut updates = spec.config_updates.iter().skip(usize::try_from(applied).unwrap_or(usize::MAX)).peekable();
        loop {
            let update_due = updates.peek().map(|(at, _)| clock.sleep_until(started + *at));
            if let (Some(at), Some(end)) = (next_tx, stop_at)
                && at >= end
            {
                next_tx = None;
            }
            let tx_due = next_tx.map(|at| clock.sleep_until(at));
            let timer = batch_deadline.map(|at| clock.sleep_until(at));
            let incoming = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => return,
                Some(envelope) = queue.recv() => Some(envelope),
                _ = async { if let Some(due) = tx_due { due.await } }, if next_tx.is_some() => {
                    next_tx = next_tx.zip(interval).map(|(at, every)| outside_quiet(at + every));
                    Some(self.synthetic_transaction(clock.wall_clock()))
                }
                _ = async { if let Some(timer) = timer { timer.await } }, if batch_deadline.is_some() => None,
                _ = async { if let Some(due) = update_due { due.await } }, if updates.peek().is_some() => {
                    let Some((_, update)) = updates.next() else { continue };
                    // A config transaction is cut alone: the pending batch goes first.
                    if !self.pending.is_empty() {
                        batch_deadline = None;
                        self.write_block();
                    }
                    self.write_config_block(update, clock.wall_clock());
                    continue;
                }
            };
            match incoming {
                Some(envelope) => {
                    debug!(target: BLOCKCUTTER, func = "Ordered", "Enqueuing message into batch");
                    self.pending.push(envelope);
                    if self.pending.len() >= self.max_message_count {
                        debug!(target: BLOCKCUTTER, func = "Ordered", "Batch size met, cutting batch");
                        batch_deadline = None;
                        self.write_block();
                        if self.reached(spec.max_height) {
                            next_tx = None;
                        }
                    } else if batch_deadline.is_none() {
                        debug!(target: SOLO, func = "main", "Just began {:?} batch timer", spec.batch_timeout);
                        batch_deadline = Some(clock.now() + spec.batch_timeout);
                    }
                }
                None => {
                    batch_deadline = None;
                    if self.pending.is_empty() {
                        warn!(target: SOLO, func = "main", "Batch timer expired with no pending requests, this might indicate a bug");
                    } else {
                        debug!(target: SOLO, func = "main", "Batch timer expired, creating block");
                        self.write_block();
                        if self.reached(spec.max_height) {
                            next_tx = None;
                        }
                    }
                }
            }
        }
    }

    /// A synthetic ENDORSER_TRANSACTION by the client identity: Fabric's tx ID rule, a
    /// one-action transaction whose chaincode action carries a counter as its results.
    fn synthetic_transaction(&mut self, now: std::time::SystemTime) -> Vec<u8> {
        use proto::protos::{
            ChaincodeAction, ChaincodeActionPayload, ChaincodeEndorsedAction, ProposalResponsePayload, Transaction, TransactionAction,
        };
        let mut nonce = [0u8; NONCE_SIZE];
        self.rng.fill_bytes(&mut nonce);
        let creator = self.client.identity.serialize();
        let tx_id = compute_tx_id(&nonce, &creator);
        let signature_header = SignatureHeader { creator, nonce: nonce.to_vec() }.encode_to_vec();
        let channel_header = ChannelHeader {
            r#type: HeaderType::EndorserTransaction as i32,
            timestamp: Some(timestamp(now)),
            channel_id: self.channel_id.clone(),
            tx_id: tx_id.clone(),
            ..ChannelHeader::default()
        };
        let action = ChaincodeAction {
            results: tx_id.as_bytes().to_vec(),
            response: Some(proto::protos::Response { status: 200, ..Default::default() }),
            ..ChaincodeAction::default()
        };
        let response_payload = ProposalResponsePayload { proposal_hash: nonce.to_vec(), extension: action.encode_to_vec() };
        let payload = ChaincodeActionPayload {
            chaincode_proposal_payload: Vec::new(),
            action: Some(ChaincodeEndorsedAction { proposal_response_payload: response_payload.encode_to_vec(), endorsements: Vec::new() }),
        };
        let transaction =
            Transaction { actions: vec![TransactionAction { header: signature_header.clone(), payload: payload.encode_to_vec() }] };
        let payload = Payload {
            header: Some(Header { channel_header: channel_header.encode_to_vec(), signature_header }),
            data: transaction.encode_to_vec(),
        }
        .encode_to_vec();
        let signature = self.client.sign(&payload);
        Envelope { payload, signature }.encode_to_vec()
    }

    /// Fabric's `CreateNextBlock` + `WriteBlock`: the pending batch as the block at the tip,
    /// signed, appended through `Channels::append` (which checks what a peer checks).
    /// Whether the chain is at least `max_height` blocks high.
    fn reached(&self, max_height: Option<u64>) -> bool {
        max_height.is_some_and(|max| self.channels.ledger(&self.channel_id).is_some_and(|ledger| ledger.height() >= max))
    }

    /// Fabric's config path: the channel's current config with `update` applied and the
    /// sequence one higher, in a CONFIG envelope the orderer signs, cut alone into a block that
    /// names itself as the last config. The envelope's `last_update` carries the changed config
    /// as a write set; nobody here checks it against the modification policies.
    fn write_config_block(&mut self, update: &ConfigUpdate, now: std::time::SystemTime) {
        let Some(current) = self.current_config() else {
            error!(target: MULTICHANNEL, func = "ProcessConfigMsg", "[channel: {}] cannot read the current config; dropping {update:?}", self.channel_id);
            return;
        };
        let mut config = current;
        config.sequence += 1;
        let Some(channel_group) = config.channel_group.as_mut() else { return };
        let Some(application) = channel_group.groups.get_mut("Application") else { return };
        let msp_id = match update {
            ConfigUpdate::AddAnchor { msp_id, .. } | ConfigUpdate::RemoveOrg { msp_id } => msp_id,
        };
        let is_org = |org: &proto::common::ConfigGroup| {
            org.values
                .get("MSP")
                .and_then(|v| proto::msp::MspConfig::decode(v.value.as_slice()).ok())
                .is_some_and(|msp| proto::msp::FabricMspConfig::decode(msp.config.as_slice()).is_ok_and(|fabric| fabric.name == *msp_id))
        };
        let Some(name) = application.groups.iter().find(|(_, org)| is_org(org)).map(|(name, _)| name.clone()) else {
            error!(target: MULTICHANNEL, func = "ProcessConfigMsg", "[channel: {}] no application org {msp_id}; dropping {update:?}", self.channel_id);
            return;
        };
        match update {
            ConfigUpdate::RemoveOrg { .. } => {
                application.groups.remove(&name);
                application.version += 1;
            }
            ConfigUpdate::AddAnchor { anchor, .. } => {
                let Some(org) = application.groups.get_mut(&name) else { return };
                let value = org
                    .values
                    .entry("AnchorPeers".to_string())
                    .or_insert_with(|| proto::common::ConfigValue { mod_policy: "Admins".into(), ..Default::default() });
                let mut anchors = proto::protos::AnchorPeers::decode(value.value.as_slice()).unwrap_or_default();
                anchors.anchor_peers.push(proto::protos::AnchorPeer { host: anchor.host.clone(), port: i32::from(anchor.port) });
                value.value = anchors.encode_to_vec();
                value.version += 1;
                org.version += 1;
            }
        }
        let update_envelope = proto::common::ConfigUpdateEnvelope {
            config_update: proto::common::ConfigUpdate {
                channel_id: self.channel_id.clone(),
                write_set: config.channel_group.clone(),
                ..Default::default()
            }
            .encode_to_vec(),
            signatures: Vec::new(),
        };
        let last_update = self.signed_envelope(HeaderType::ConfigUpdate, update_envelope.encode_to_vec(), now);
        let envelope = proto::common::ConfigEnvelope { config: Some(config), last_update: Some(last_update) };
        let envelope = self.signed_envelope(HeaderType::Config, envelope.encode_to_vec(), now);
        self.pending.push(envelope.encode_to_vec());
        self.write_block();
        info!(target: MULTICHANNEL, func = "ProcessConfigMsg", "[channel: {}] wrote config block for {update:?}", self.channel_id);
    }

    /// The config in force at the tip (the block its last-config index names).
    fn current_config(&self) -> Option<proto::common::Config> {
        let ledger = self.channels.ledger(&self.channel_id)?;
        let tip = ledger.block(ledger.height().checked_sub(1)?).ok()??;
        let block = ledger.block(last_config_index(&tip).unwrap_or(0)).ok()??;
        let envelope = Envelope::decode(block.data?.data.first()?.as_slice()).ok()?;
        let payload = Payload::decode(envelope.payload.as_slice()).ok()?;
        proto::common::ConfigEnvelope::decode(payload.data.as_slice()).ok()?.config
    }

    /// An envelope of `kind` on the channel, created and signed by the orderer.
    fn signed_envelope(&mut self, kind: HeaderType, data: Vec<u8>, now: std::time::SystemTime) -> Envelope {
        let mut nonce = [0u8; NONCE_SIZE];
        self.rng.fill_bytes(&mut nonce);
        let creator = self.signer.identity.serialize();
        let tx_id = compute_tx_id(&nonce, &creator);
        let channel_header = ChannelHeader {
            r#type: kind as i32,
            timestamp: Some(timestamp(now)),
            channel_id: self.channel_id.clone(),
            tx_id,
            ..ChannelHeader::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: channel_header.encode_to_vec(),
                signature_header: SignatureHeader { creator, nonce: nonce.to_vec() }.encode_to_vec(),
            }),
            data,
        }
        .encode_to_vec();
        let signature = self.signer.sign(&payload);
        Envelope { payload, signature }
    }

    fn write_block(&mut self) {
        let envelopes = std::mem::take(&mut self.pending);
        let count = envelopes.len();
        let Some(ledger) = self.channels.ledger(&self.channel_id) else {
            error!(target: MULTICHANNEL, func = "WriteBlock", "[channel: {}] the channel's ledger is gone; dropping {count} messages", self.channel_id);
            return;
        };
        let height = ledger.height();
        let tip = match height.checked_sub(1).map(|n| ledger.block(n)) {
            Some(Ok(Some(block))) => block,
            other => {
                error!(target: MULTICHANNEL, func = "CreateNextBlock", "[channel: {}] cannot read the tip at height {height}: {other:?}", self.channel_id);
                return;
            }
        };
        let previous = header_hash(&tip.header.clone().unwrap_or_default());
        let is_config = envelopes.first().is_some_and(|e| header_type(e).is_some_and(|t| t == HeaderType::Config as i32));
        let last_config = if is_config { height } else { last_config_index(&tip).unwrap_or(0) };
        let mut block = new_block(height, &previous, envelopes);
        sign_block(&mut block, &self.signer, last_config, &mut self.rng);
        if let Err(err) = self.channels.append(&self.channel_id, &block) {
            // Fabric panics here; we drop the batch and keep serving (a crashed host's disk
            // fails this way on its way down).
            error!(target: MULTICHANNEL, func = "WriteBlock", "[channel: {}] Could not append block [{height}]: {err}", self.channel_id);
            return;
        }
        debug!(target: MULTICHANNEL, func = "commitBlock", "[channel: {}] Wrote block [{height}] with {count} transactions, hash {}", self.channel_id, hex::encode(header_hash(&block.header.clone().unwrap_or_default())));
    }
}

/// The header type of a serialized envelope.
fn header_type(envelope: &[u8]) -> Option<i32> {
    let envelope = Envelope::decode(envelope).ok()?;
    let payload = Payload::decode(envelope.payload.as_slice()).ok()?;
    Some(ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()?.r#type)
}

/// A replica's pull of the leader's chain: peer-core's deliver client as a static leader that
/// never gives up and gossips nothing, signing its seeks as this orderer. Its address overrides
/// send every other endpoint of the channel configuration to the leader's, so it pulls from the
/// leader only: never from itself (it would wait on its own height forever) nor from another
/// replica. Ends when `stop` turns true.
fn replicate(
    env: Env,
    channels: Arc<Channels>,
    channel_id: &str,
    signer: &LocalMsp,
    leader: &str,
    tls: Option<DeliverTls>,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let endpoints = channels.config(channel_id).map(|config| config.orderer_endpoints()).unwrap_or_default();
    let config = DeliverClientConfig {
        static_leader: true,
        block_gossip_enabled: false,
        conn_timeout: REPLICATION_DIAL_TIMEOUT,
        reconnect_backoff_threshold: REPLICATION_RETRY_TIMEOUT,
        reconnect_total_time_threshold: Duration::MAX,
        address_overrides: endpoints.into_iter().filter(|e| e != leader).map(|e| (e, leader.to_string())).collect(),
        keepalive_interval: REPLICATION_KEEPALIVE,
        keepalive_timeout: REPLICATION_KEEPALIVE,
        max_recv_msg_size: MAX_MESSAGE_BYTES,
        max_send_msg_size: MAX_MESSAGE_BYTES,
    };
    let client = Arc::new(DeliverClient::new(env, channels, Arc::new(signer.clone()), Arc::new(NoPublisher), config).with_tls(tls));
    let channel_id = channel_id.to_string();
    // A leadership watch whose sender is gone keeps `true`: always pulling. (`run`'s future
    // borrows the client, so the client moves in with it.)
    async move { client.run(channel_id, watch::channel(true).1, stop).await }
}

/// What a node does with the transactions Broadcast accepts.
enum Role {
    /// Hands them to the block cutter.
    Cutter(mpsc::Sender<Vec<u8>>),
    /// Turns them away (see the module documentation): this node replicates `leader`.
    Replica { leader: String },
}

/// `orderer.AtomicBroadcast`.
struct BroadcastService {
    channels: Arc<Channels>,
    channel_id: String,
    deliver: OrdererDeliver,
    role: Arc<Role>,
    deliver_streams: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl AtomicBroadcast for BroadcastService {
    type BroadcastStream = BoxStream<BroadcastResponse>;
    type DeliverStream = BoxStream<proto::orderer::DeliverResponse>;

    async fn broadcast(&self, request: Request<Streaming<Envelope>>) -> Result<Response<Self::BroadcastStream>, Status> {
        let address = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        debug!(target: BROADCAST, func = "Handle", "Starting new broadcast loop for {address}");
        let (channels, channel_id, role) = (self.channels.clone(), self.channel_id.clone(), self.role.clone());
        // One response per envelope, in order, computed as the client's stream is read (the
        // response stream owns this work: a client that leaves ends it).
        let responses =
            request.into_inner().map(move |item| item.map(|envelope| process_message(&channels, &channel_id, &role, &envelope, &address)));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn deliver(&self, request: Request<Streaming<Envelope>>) -> Result<Response<Self::DeliverStream>, Status> {
        debug!(target: SERVER, func = "Deliver", "Starting new Deliver handler");
        self.deliver_streams.fetch_add(1, Ordering::Relaxed);
        Ok(self.deliver.deliver(request).await)
    }
}

/// Fabric's `ProcessMessage` for a standard channel on a solo orderer (a replica checks the same,
/// then turns the transaction away).
fn process_message(channels: &Channels, channel_id: &str, role: &Role, envelope: &Envelope, address: &str) -> BroadcastResponse {
    let reply = |status: FabricStatus, info: String| BroadcastResponse { status: status as i32, info };
    let header = Payload::decode(envelope.payload.as_slice())
        .map_err(|e| format!("error unmarshalling Payload: {e}"))
        .and_then(|p| p.header.ok_or_else(|| "no header was set".to_string()))
        .and_then(|h| ChannelHeader::decode(h.channel_header.as_slice()).map_err(|e| format!("error unmarshalling ChannelHeader: {e}")));
    let channel_header = match header {
        Ok(header) => header,
        Err(err) => {
            let err = format!("could not determine channel ID: {err}");
            warn!(target: BROADCAST, func = "ProcessMessage", "[channel: unknown] Could not get message processor for serving {address}: {err}");
            return reply(FabricStatus::BadRequest, err);
        }
    };
    let channel = channel_header.channel_id.clone();
    let config: Option<Arc<ChannelConfig>> = (channel == channel_id).then(|| channels.config(&channel)).flatten();
    let Some(config) = config else {
        let err = "channel creation request not allowed because the orderer system channel is not defined".to_string();
        warn!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Could not get message processor for serving {address}: {err}");
        return reply(FabricStatus::BadRequest, err);
    };
    match HeaderType::try_from(channel_header.r#type) {
        Ok(HeaderType::Config) => {
            let err = "message is of type that cannot be processed directly".to_string();
            warn!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Could not get message processor for serving {address}: {err}");
            return reply(FabricStatus::BadRequest, err);
        }
        Ok(HeaderType::ConfigUpdate) => {
            let err = "config updates are not supported by this orderer".to_string();
            warn!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Rejecting broadcast of config message from {address} because of error: {err}");
            return reply(FabricStatus::BadRequest, err);
        }
        _ => {}
    }
    debug!(
        target: BROADCAST,
        func = "ProcessMessage",
        "[channel: {channel}] Broadcast is processing normal message from {address} with txid '{}' of type {}",
        channel_header.tx_id,
        HeaderType::try_from(channel_header.r#type).map(|t| t.as_str_name().to_string()).unwrap_or_else(|_| channel_header.r#type.to_string())
    );
    // Fabric's SigFilter: the envelope's signature against /Channel/Writers.
    let creator = Payload::decode(envelope.payload.as_slice())
        .ok()
        .and_then(|p| p.header)
        .and_then(|h| SignatureHeader::decode(h.signature_header.as_slice()).ok())
        .map(|s| s.creator)
        .unwrap_or_default();
    let signed = SignedData { data: envelope.payload.clone(), identity: creator, signature: envelope.signature.clone() };
    if let Err(err) = config.evaluate("/Channel/Writers", std::slice::from_ref(&signed)) {
        let err = format!("{err}: permission denied");
        warn!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Rejecting broadcast of normal message from {address} because of error: {err}");
        return reply(FabricStatus::Forbidden, err);
    }
    let rejected = match role {
        Role::Cutter(queue) => queue.try_send(envelope.encode_to_vec()).err().map(|_| "the orderer's queue is full".to_string()),
        Role::Replica { leader } => Some(format!("this node replicates the leader {leader} and orders nothing; broadcast to the leader")),
    };
    if let Some(err) = rejected {
        warn!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Rejecting broadcast of normal message from {address} with SERVICE_UNAVAILABLE: rejected by Order: {err}");
        return reply(FabricStatus::ServiceUnavailable, err);
    }
    debug!(target: BROADCAST, func = "ProcessMessage", "[channel: {channel}] Broadcast has successfully enqueued message of type ENDORSER_TRANSACTION from {address}");
    reply(FabricStatus::Success, String::new())
}

/// The generated world of a real-process orderer: the orderer org (one node,
/// `orderer.example.com`, which signs the blocks), the application orgs (MSP IDs `Org<N>MSP` for
/// `org<N>`, each with `peer0..peer<n-1>` and an admin) and the channel's genesis block, all from a
/// fixed seed (the same files every time).
pub struct World {
    pub orderer_org: Org,
    pub application_orgs: Vec<Org>,
    pub genesis: Block,
    /// The orderer's signing identity and the synthetic transactions' creator.
    pub signer: LocalMsp,
    pub client: LocalMsp,
}

/// Generates the orgs (`peers_per_org` peers each) and the genesis block of `channel_id`, whose
/// orderer endpoint is `orderer_endpoint` and whose anchor peers are `anchor_peers`
/// (`MSPID=HOST:PORT`, none by default: a name like `peer0.org1.example.com` would not resolve
/// on a workstation). The peer count does not change the genesis block or the other identities:
/// each org's keys are drawn from its own seeded stream in order (CA, nodes, then users), so with
/// more peers only the admin's key moves, and the channel config holds only CA certificates.
pub fn generate_world(
    channel_id: &str,
    orgs: &[String],
    peers_per_org: usize,
    orderer_endpoint: &str,
    anchor_peers: &[String],
    now: std::time::SystemTime,
) -> anyhow::Result<World> {
    anyhow::ensure!(peers_per_org >= 1, "each org needs at least one peer");
    use peer_core::channel::config::AnchorPeer;
    use peer_core::channel::genesis::{GenesisOrg, GenesisSpec, genesis_block};
    use peer_core::msp::generate::{OrgKind, OrgSpec, ValidityWindow, generate, org_rng};
    let generate = |spec: &OrgSpec, kind| generate(spec, kind, &mut org_rng(1, spec), ValidityWindow::fixed()).map_err(anyhow::Error::msg);
    let orderer_org = generate(&OrgSpec { msp_id: "OrdererMSP".into(), domain: "example.com".into(), peers: 1 }, OrgKind::Orderer)?;
    let mut application_orgs = Vec::new();
    for name in orgs {
        let digits: String = name.chars().filter(char::is_ascii_digit).collect();
        anyhow::ensure!(!digits.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "org name {name:?} must be like org1");
        let spec = OrgSpec { msp_id: format!("Org{digits}MSP"), domain: format!("{name}.example.com"), peers: peers_per_org };
        application_orgs.push(generate(&spec, OrgKind::Peer)?);
    }
    let mut anchors: Vec<Vec<AnchorPeer>> = vec![Vec::new(); application_orgs.len()];
    for arg in anchor_peers {
        let (msp_id, anchor) = peer_core::channel::folders::parse_anchor_peer(arg).map_err(anyhow::Error::msg)?;
        let index = application_orgs
            .iter()
            .position(|o| o.spec.msp_id == msp_id)
            .with_context(|| format!("--anchor-peer {arg:?}: {msp_id} is not one of the generated orgs' MSP IDs"))?;
        anchors[index].push(anchor);
    }
    let mut spec = GenesisSpec::new(channel_id, now);
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        org: &orderer_org,
        anchor_peers: Vec::new(),
        orderer_endpoints: vec![orderer_endpoint.to_string()],
    });
    for (org, anchor_peers) in application_orgs.iter().zip(anchors) {
        spec.application_orgs.push(GenesisOrg { name: org.spec.msp_id.clone(), org, anchor_peers, orderer_endpoints: Vec::new() });
    }
    let genesis = genesis_block(&spec).context("building the genesis block")?;
    let node = orderer_org.peers.first().context("the orderer org has no node")?;
    let signer = LocalMsp::from_files(&node.msp, "OrdererMSP", now).context("loading the orderer identity")?;
    let client = match application_orgs.first() {
        Some(org) => LocalMsp::from_files(&org.admin.msp, &org.spec.msp_id, now).context("loading the client identity")?,
        None => signer.clone(),
    };
    Ok(World { orderer_org, application_orgs, genesis, signer, client })
}
