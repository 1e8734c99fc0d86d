//! The gossip driver: the async middle ring between the [`Gossip`] state machine and comm, and
//! [`start`], which builds both and spawns the driver.
//!
//! One task owns the [`Gossip`] aggregate (which routes inbound messages, keeps membership and
//! runs the channel layer) and does all of its I/O. Each round it reads the joined channels
//! (heights and configurations) from [`Channels`], hands them in, and carries out every output
//! in order: sending on an existing connection or starting a bounded number of dial tasks
//! (handshake, probe, connect) whose results come back to it, committing blocks through
//! [`Channels::append`], reading blocks to answer state requests, and passing leadership on to
//! the deliver client. Then it waits on a closed set of things (a comm event, a dial result, a
//! block the leader published, a yield, the next deadline, shutdown) and feeds the one that
//! happened to the state machine with the env clock's `now`. It also keeps the operations view
//! of the membership and the gossip metrics up to date.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use prometheus_client::metrics::histogram::Histogram;
use proto::common::Block;

use super::comm::{Comm, CommConfig, CommEvent, CommMetrics, CommSetup, CommTls, MessageFaults};
use super::discovery::{self, Discovery, DiscoveryConfig, MemberInfo, SelfInfo, Transmit};
use super::identity::{Identities, IdentityVerifier};
use super::instance::{ChannelSnapshot, Gossip, Output};
use super::message::{BadMessage, SignedMessage};
use super::publish::{GossipBlockPublisher, Leadership};
use super::state::{BlockVerifier, GossipState, StateConfig, StateEvent, state_response};
use crate::channels::Channels;
use crate::config::{Config, HostPort};
use crate::env::Env;
use crate::metrics::{Labels, channel_label, default_histogram};
use crate::msp::identity::{Identity, PkiId};
use crate::msp::{LocalMsp, Msp};

/// Dials in flight at once; beyond this a transmit needing a new connection waits for the next
/// round (the state machine retries on its own timers).
const MAX_DIALS: usize = 64;

/// Gossip metrics, registered with the operations registry. Fabric's names, types, labels and
/// buckets where Fabric has the metric; ours start with `peer_core_`. Recording never logs, sleeps
/// or draws randomness, so it cannot change what a simulated peer does.
#[derive(Clone)]
pub struct GossipMetrics {
    /// `peer_core_gossip_bad_messages_total{reason}` (ours): messages rejected, by reason.
    pub bad_messages: Family<Labels, Counter>,
    /// `peer_core_gossip_membership_members{state="alive"|"dead"}` (ours): the whole membership.
    pub members: Family<Labels, Gauge>,
    /// `gossip_membership_total_peers_known{channel}`: the channel's peers this peer knows (alive,
    /// of the channel's orgs, having published their StateInfo), itself not included.
    pub total_peers_known: Family<Labels, Gauge>,
    /// `gossip_state_height{channel}`: the ledger height after each commit by gossip.
    pub state_height: Family<Labels, Gauge>,
    /// `gossip_state_commit_duration{channel}`, in seconds.
    pub commit_duration: Family<Labels, Histogram, fn() -> Histogram>,
    /// `gossip_payload_buffer_size{channel}`: blocks waiting in the payload buffer.
    pub payload_buffer_size: Family<Labels, Gauge>,
    /// `peer_core_gossip_state_invalid_blocks_total{channel}` (ours): blocks from peers that
    /// failed verification and were dropped.
    pub invalid_blocks: Family<Labels, Counter>,
    /// `gossip_leader_election_leader{channel}`: 1 while elected, else 0.
    pub leader: Family<Labels, Gauge>,
}

impl Default for GossipMetrics {
    fn default() -> GossipMetrics {
        GossipMetrics {
            bad_messages: Family::default(),
            members: Family::default(),
            total_peers_known: Family::default(),
            state_height: Family::default(),
            commit_duration: Family::new_with_constructor(default_histogram as fn() -> Histogram),
            payload_buffer_size: Family::default(),
            invalid_blocks: Family::default(),
            leader: Family::default(),
        }
    }
}

impl std::fmt::Debug for GossipMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipMetrics").finish_non_exhaustive()
    }
}

impl GossipMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        // A counter's exposition name is its family name (see `services::operations`): ours end in `_total`.
        registry.register("peer_core_gossip_bad_messages_total", "Gossip messages rejected, by reason", self.bad_messages.clone());
        registry.register(
            "peer_core_gossip_membership_members",
            "Members in this peer's gossip membership, by state",
            self.members.clone(),
        );
        registry.register("gossip_membership_total_peers_known", "Peers of the channel this peer knows of", self.total_peers_known.clone());
        registry.register("gossip_state_height", "Ledger height after the last block gossip committed", self.state_height.clone());
        registry.register("gossip_state_commit_duration", "Seconds gossip took to commit a block", self.commit_duration.clone());
        registry.register("gossip_payload_buffer_size", "Blocks waiting in the channel's payload buffer", self.payload_buffer_size.clone());
        registry.register(
            "peer_core_gossip_state_invalid_blocks_total",
            "Blocks from peers that failed verification",
            self.invalid_blocks.clone(),
        );
        registry.register(
            "gossip_leader_election_leader",
            "1 while this peer leads the channel for its organization, else 0",
            self.leader.clone(),
        );
    }

    fn bad(&self, error: &BadMessage) {
        self.bad_messages.get_or_create(&vec![("reason".to_string(), error.reason().to_string())]).inc();
    }
}

/// Gossip as the rest of the peer reads it, kept current by the driver after every round:
/// what `/membership` shows, and what [`GossipHandle`] answers.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub pki_id: String,
    pub org: String,
    pub endpoint: String,
    pub internal_endpoint: String,
    pub inc_num: u64,
    pub members: Vec<MemberInfo>,
    /// Per joined channel: the channel's peers this peer knows (alive, of the channel's orgs,
    /// having published their StateInfo) with their ledger heights, by PKI-ID.
    pub channel_peers: BTreeMap<String, Vec<(PkiId, u64)>>,
    /// The sequence number of this peer's last alive message.
    pub seq_num: u64,
    /// The alive members' last alive messages as they arrived, by PKI-ID (what the Discovery
    /// service answers membership from).
    pub alive_messages: Vec<(PkiId, SignedMessage)>,
    /// The gossip identity store (this peer's identity included), by PKI-ID.
    pub identities: Vec<(PkiId, Arc<Identity>)>,
    /// Per joined channel: the signed StateInfo of each of `channel_peers`, and this peer's own.
    pub state_infos: BTreeMap<String, ChannelStateInfos>,
}

/// The StateInfo messages of one channel as the driver last recorded them.
#[derive(Clone, Debug, Default)]
pub struct ChannelStateInfos {
    /// The channel's peers (as in [`View::channel_peers`]) with their signed StateInfo, by PKI-ID.
    pub peers: Vec<(PkiId, SignedMessage)>,
    /// This peer's last published StateInfo, once there was one (published only while the
    /// membership is not empty).
    pub own: Option<SignedMessage>,
}

/// A shared [`View`]: the driver writes it after each round; readers copy what they need.
#[derive(Clone, Debug, Default)]
pub struct GossipView(Arc<Mutex<View>>);

impl GossipView {
    fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the whole view.
    pub fn snapshot(&self) -> View {
        self.lock().clone()
    }

    /// What `/membership` shows.
    pub fn to_json(&self) -> serde_json::Value {
        self.lock().to_json()
    }

    /// Every member this peer knows, alive or dead, by PKI-ID.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.lock().members.clone()
    }

    /// The peers of `channel` this peer knows (alive, of the channel's orgs, having published
    /// their StateInfo), with their heights, by PKI-ID; empty for a channel not joined.
    pub fn channel_peers(&self, channel: &str) -> Vec<ChannelPeer> {
        let view = self.lock();
        let Some(peers) = view.channel_peers.get(channel) else { return Vec::new() };
        let members: BTreeMap<PkiId, &MemberInfo> = view.members.iter().map(|m| (m.pki_id, m)).collect();
        peers
            .iter()
            .filter_map(|(pki_id, height)| members.get(pki_id).map(|m| ChannelPeer { member: MemberInfo::clone(m), height: *height }))
            .collect()
    }
}

/// One peer of a channel as this peer knows it: its membership record and its ledger height.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPeer {
    pub member: MemberInfo,
    pub height: u64,
}

impl View {
    pub fn to_json(&self) -> serde_json::Value {
        let members: Vec<serde_json::Value> = self
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "pki_id": m.pki_id.to_string(), "org": m.org, "endpoint": m.endpoint,
                    "internal_endpoint": m.internal_endpoint, "alive": m.alive, "inc_num": m.inc_num, "seq_num": m.seq_num,
                })
            })
            .collect();
        serde_json::json!({
            "self": {"pki_id": self.pki_id, "org": self.org, "endpoint": self.endpoint, "internal_endpoint": self.internal_endpoint, "inc_num": self.inc_num},
            "members": members,
        })
    }
}

/// How a dial task ended.
enum DialOutcome {
    /// A bootstrap/anchor contact: the remote's PKI-ID, or why not.
    Contact(String, Result<PkiId, String>),
    /// A member could not be reached: Fabric calls it "presumed dead".
    Unreachable(PkiId),
    /// A contact's handshake authenticated this identity (stored at once, as Fabric's
    /// handshake does, before the connection that follows is up).
    Authenticated(PkiId, Arc<Identity>),
}

/// What the driver reads and writes for the channel layer.
pub struct ChannelIo {
    pub channels: Arc<Channels>,
    /// Blocks the leader committed from the ordering service (see `publish.rs`).
    pub published: mpsc::Receiver<(String, Block)>,
    /// `peer.maxSendMsgSize`: state responses stay under it.
    pub max_send_msg_size: usize,
    /// With leader election: where the election's outcome goes (the deliver client's watch)...
    pub leadership: Leadership,
    /// ...and the channels whose deliver client gave up (the election yields).
    pub yields: mpsc::UnboundedReceiver<String>,
}

impl ChannelIo {
    /// The joined channels with their heights and current configs.
    fn snapshot(&self) -> Vec<ChannelSnapshot> {
        self.channels
            .ids()
            .into_iter()
            .filter_map(|id| {
                let height = self.channels.ledger(&id)?.height();
                let config = self.channels.config(&id)?;
                Some(ChannelSnapshot { id, height, config })
            })
            .collect()
    }
}

/// Verifies blocks from peers as Fabric's MCS does: the claimed number, then the channel's
/// BlockValidation policy over the orderer signatures (with the header's data hash and channel).
pub struct ChannelsVerifier(pub Arc<Channels>);

impl BlockVerifier for ChannelsVerifier {
    fn verify(&self, channel: &str, seq: u64, block: &Block) -> Result<(), String> {
        let number = block.header.as_ref().map(|h| h.number).ok_or("the block has no header")?;
        if number != seq {
            return Err(format!("Claimed seqNum is [{seq}] but actual seqNum inside block is [{number}]"));
        }
        let config = self.0.config(channel).ok_or_else(|| format!("channel [{channel}] not found"))?;
        crate::channel::signatures::verify_block_signatures(block, &config).map_err(|e| e.to_string())
    }
}

/// Runs gossip until `stop` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    env: Env,
    mut gossip: Gossip,
    comm: Comm,
    mut comm_events: mpsc::Receiver<CommEvent>,
    view: GossipView,
    metrics: GossipMetrics,
    mut io: ChannelIo,
    mut stop: watch::Receiver<bool>,
) {
    let (dial_tx, mut dial_rx) = mpsc::channel::<DialOutcome>(MAX_DIALS);
    let mut dials: JoinSet<()> = JoinSet::new();
    loop {
        let snapshot = io.snapshot();
        gossip.handle_channels(env.clock.now(), &snapshot);
        let membership_changed = carry_out(&env, &mut gossip, &mut io, &comm, &dial_tx, &mut dials, &metrics);
        record(&gossip, &snapshot, membership_changed, &view, &metrics);
        let sleep = env.clock.sleep_until(gossip.poll_timeout());
        // Every input starts a new round, which reads the channels (new configurations included).
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            event = comm_events.recv() => {
                let Some(event) = event else { break };
                let now = env.clock.now();
                match event {
                    CommEvent::Message { from, message } => {
                        // Duplicates are normal in epidemic gossip; only real rejections count.
                        if let Err(error) = gossip.handle_message(now, from, message)
                            && error != BadMessage::Stale
                        {
                            metrics.bad(&error);
                        }
                    }
                    CommEvent::ConnectionUp { pki_id, identity, .. } => gossip.handle_authenticated(pki_id, identity),
                    CommEvent::PresumedDead { pki_id } => gossip.handle_presumed_dead(now, pki_id),
                    CommEvent::Rejected { error, .. } => metrics.bad(&error),
                    CommEvent::ConnectionDown { .. } => {}
                }
            }
            Some((id, block)) = io.published.recv() => {
                // A channel joined a moment ago can have its first block from the orderer before
                // the round that would read it: gossip joins it first (as Fabric joins a channel's
                // gossip before its deliver client starts).
                if !gossip.has_channel(&id) {
                    gossip.handle_channels(env.clock.now(), &io.snapshot());
                }
                gossip.handle_local_block(env.clock.now(), &id, &block);
            }
            Some(id) = io.yields.recv() => {
                gossip.handle_yield(env.clock.now(), &id);
            }
            Some(outcome) = dial_rx.recv() => {
                let now = env.clock.now();
                match outcome {
                    DialOutcome::Contact(endpoint, result) => gossip.handle_dial_result(now, &endpoint, result),
                    DialOutcome::Unreachable(pki_id) => gossip.handle_presumed_dead(now, pki_id),
                    DialOutcome::Authenticated(pki_id, identity) => gossip.handle_authenticated(pki_id, identity),
                }
            }
            Some(_) = dials.join_next(), if !dials.is_empty() => {}
            _ = sleep => gossip.handle_timeout(env.clock.now()),
        }
    }
    dials.shutdown().await;
    comm.stop();
}

/// Carries out every output of the state machine, in its order. True if membership changed.
fn carry_out(
    env: &Env,
    gossip: &mut Gossip,
    io: &mut ChannelIo,
    comm: &Comm,
    dial_tx: &mpsc::Sender<DialOutcome>,
    dials: &mut JoinSet<()>,
    metrics: &GossipMetrics,
) -> bool {
    let mut membership_changed = false;
    while let Some(output) = gossip.poll_output() {
        match output {
            Output::Membership(_) => membership_changed = true,
            Output::Trust(trusted) => comm.trust(trusted),
            Output::Transmit(transmit) => transmit_one(comm, dial_tx, dials, transmit),
            Output::Commit { channel: id, block } => {
                let started = env.clock.now();
                let result = io.channels.append(&id, &block).map_err(|e| e.to_string());
                let now = env.clock.now();
                match &result {
                    Ok(()) => {
                        let seconds = now.saturating_duration_since(started).as_secs_f64();
                        metrics.commit_duration.get_or_create(&channel_label(&id)).observe(seconds);
                    }
                    Err(err) => {
                        tracing::error!(target: "gossip.state", func = "commitBlock", "Got error while committing({err})");
                    }
                }
                let height = io.channels.ledger(&id).map_or(0, |l| l.height());
                metrics.state_height.get_or_create(&channel_label(&id)).set(i64::try_from(height).unwrap_or(i64::MAX));
                gossip.handle_committed(now, &id, result.map(|()| height));
            }
            Output::Serve(serve) => {
                let Some(ledger) = io.channels.ledger(&serve.channel) else { continue };
                let limit = io.max_send_msg_size.saturating_sub(1024);
                let response = state_response(&serve, ledger.height(), limit, |seq| ledger.block(seq).ok().flatten());
                send(comm, dial_tx, dials, serve.to, serve.endpoint, response);
            }
            Output::Channel(StateEvent::InvalidBlock { channel: id, .. }) => {
                metrics.invalid_blocks.get_or_create(&channel_label(&id)).inc();
            }
            Output::Channel(StateEvent::Leadership { channel: id, leader }) => {
                metrics.leader.get_or_create(&channel_label(&id)).set(i64::from(leader));
                io.leadership.set(&id, leader);
            }
        }
    }
    membership_changed
}

/// Keeps the view and the gauges current (reads of the state machine).
fn record(gossip: &Gossip, channels: &[ChannelSnapshot], membership_changed: bool, view: &GossipView, metrics: &GossipMetrics) {
    let members = gossip.members();
    if membership_changed {
        let alive = members.iter().filter(|m| m.alive).count() as i64;
        metrics.members.get_or_create(&vec![("state".to_string(), "alive".to_string())]).set(alive);
        metrics.members.get_or_create(&vec![("state".to_string(), "dead".to_string())]).set(members.len() as i64 - alive);
    }
    let mut channel_peers = BTreeMap::new();
    let mut state_infos = BTreeMap::new();
    for channel in channels {
        let id = &channel.id;
        metrics.payload_buffer_size.get_or_create(&channel_label(id)).set(gossip.buffer_size(id) as i64);
        // Fabric samples this every few seconds; here it is kept current.
        let known = gossip.peers_of_channel(id);
        metrics.total_peers_known.get_or_create(&channel_label(id)).set(i64::try_from(known.len()).unwrap_or(i64::MAX));
        channel_peers.insert(id.clone(), known);
        let infos = ChannelStateInfos { peers: gossip.state_infos_of_channel(id), own: gossip.own_state_info(id).cloned() };
        state_infos.insert(id.clone(), infos);
    }
    // Messages and identities are shared, not copied (reference counts).
    let alive_messages = gossip.alive_messages();
    let identities = gossip.identities().known().map(|(pki_id, identity)| (*pki_id, identity.clone())).collect();
    let mut view = view.lock();
    view.members = members;
    view.channel_peers = channel_peers;
    view.seq_num = gossip.seq_num();
    view.alive_messages = alive_messages;
    view.identities = identities;
    view.state_infos = state_infos;
}

/// Sends on an existing connection, or dials first (bounded), as membership transmits.
fn send(comm: &Comm, dial_tx: &mpsc::Sender<DialOutcome>, dials: &mut JoinSet<()>, to: PkiId, endpoint: String, message: SignedMessage) {
    if comm.is_connected(&to) {
        comm.send(&to, message);
        return;
    }
    let Some(address) = parse_endpoint(&endpoint) else { return };
    if dials.len() >= MAX_DIALS {
        return;
    }
    let (comm, tx) = (comm.clone(), dial_tx.clone());
    dials.spawn(async move {
        match comm.connect(&address, Some(to)).await {
            Ok(pki_id) => {
                comm.send(&pki_id, message);
            }
            Err(err) => {
                warn!(target: "gossip.comm", func = "SendToPeer", "Failed obtaining connection for {endpoint} reason: {err}");
                let _ = tx.send(DialOutcome::Unreachable(to)).await;
            }
        }
    });
}

/// Carries out one transmit: a send (dialing first if needed), a contact, a probe or a close.
fn transmit_one(comm: &Comm, dial_tx: &mpsc::Sender<DialOutcome>, dials: &mut JoinSet<()>, transmit: Transmit) {
    match transmit {
        Transmit::Send { to, endpoint, message } => send(comm, dial_tx, dials, to, endpoint, message),
        Transmit::Contact { endpoint, org, message } => {
            let Some(address) = parse_endpoint(&endpoint) else {
                let _ = dial_tx.try_send(DialOutcome::Contact(endpoint.clone(), Err(format!("{endpoint} is not host:port"))));
                return;
            };
            let (comm, tx) = (comm.clone(), dial_tx.clone());
            dials.spawn(async move {
                let result = contact(&comm, &address, &org, message, &tx).await;
                let _ = tx.send(DialOutcome::Contact(endpoint, result)).await;
            });
        }
        Transmit::ProbeDead { to, endpoint, message } => {
            let Some(address) = parse_endpoint(&endpoint) else { return };
            if dials.len() >= MAX_DIALS {
                return;
            }
            let comm = comm.clone();
            dials.spawn(async move {
                if comm.probe(&address).await.is_ok()
                    && let Ok(pki_id) = comm.connect(&address, Some(to)).await
                {
                    comm.send(&pki_id, message);
                }
            });
        }
        Transmit::Close { to } => comm.close(&to),
    }
}

/// Handshake, org check, connect, send the membership request.
async fn contact(
    comm: &Comm,
    address: &HostPort,
    org: &str,
    message: SignedMessage,
    outcomes: &mpsc::Sender<DialOutcome>,
) -> Result<PkiId, String> {
    let (pki_id, identity) = comm.handshake(address).await.map_err(|e| e.to_string())?;
    let _ = outcomes.send(DialOutcome::Authenticated(pki_id, identity.clone())).await;
    if identity.msp_id != org {
        return Err(format!("{address} isn't in our organization, cannot be a bootstrap peer (it is in {})", identity.msp_id));
    }
    let pki_id = comm.connect(address, Some(pki_id)).await.map_err(|e| e.to_string())?;
    if !comm.send(&pki_id, message) {
        return Err(format!("could not queue the membership request to {address}"));
    }
    Ok(pki_id)
}

fn parse_endpoint(endpoint: &str) -> Option<HostPort> {
    if endpoint.is_empty() {
        return None;
    }
    match HostPort::parse(endpoint) {
        Ok(address) => Some(address),
        Err(err) => {
            debug!(target: "gossip.discovery", func = "createConnection", "cannot dial member endpoint: {err}");
            None
        }
    }
}

/// What gossip starts from.
pub struct GossipSetup {
    pub config: Arc<Config>,
    pub msp: LocalMsp,
    /// The MSPs of `peer.gossip.trustedMSPs`; the joined channels' orgs are learned from `channels`.
    pub trusted_msps: Vec<Msp>,
    /// How identities and signatures are checked ([`super::identity::MspVerifier`] on a real
    /// peer; the simulator shares one memo of checked signatures between its peers).
    pub verifier: Arc<dyn IdentityVerifier>,
    /// The endpoint the peer is reached at inside its org (`peer.gossip.endpoint`, else the peer
    /// address) and outside it (`peer.gossip.externalEndpoint`, empty if none).
    pub internal_endpoint: HostPort,
    pub external_endpoint: String,
    pub channels: Arc<Channels>,
    /// Where `/membership` reads the view from (created before the operations server starts).
    pub view: GossipView,
    pub metrics: GossipMetrics,
    pub comm_metrics: CommMetrics,
    /// Faults applied to every message comm decodes (the simulator's); `None` on a real peer.
    pub message_faults: Option<Arc<dyn MessageFaults>>,
    /// TLS for gossip's connections (`peer.tls.enabled`).
    pub tls: Option<CommTls>,
    pub stop: watch::Receiver<bool>,
}

/// A started gossip: what the rest of the peer uses it through.
pub struct GossipHandle {
    /// Serves `gossip.Gossip` on the peer port.
    pub comm: Comm,
    /// Gossips blocks this peer committed from the ordering service.
    pub publisher: GossipBlockPublisher,
    /// The elections' outcomes per channel, for the deliver client.
    pub leadership: Leadership,
    /// Membership and the channels' peers as of the driver's last round (read without waking it).
    pub view: GossipView,
}

/// Starts gossip: comm, membership (bootstrap peers, anchors of trusted orgs and of joined
/// channels), the channel layer, and the driver task (in `tasks`, until `setup.stop`). Outbound
/// contacts start at once; inbound streams arrive once the caller serves [`GossipHandle::comm`].
pub fn start(env: &Env, setup: GossipSetup, tasks: &mut JoinSet<()>) -> GossipHandle {
    let GossipSetup {
        config,
        msp,
        trusted_msps,
        verifier,
        internal_endpoint,
        external_endpoint,
        channels,
        view,
        metrics,
        comm_metrics,
        message_faults,
        tls,
        stop,
    } = setup;
    let identities = Identities::with_verifier(&msp, trusted_msps, verifier);
    let signer = Arc::new(msp.clone());
    let me = SelfInfo {
        pki_id: msp.pki_id(),
        org: msp.msp.id.clone(),
        external_endpoint: external_endpoint.clone(),
        internal_endpoint: internal_endpoint.to_string(),
    };
    let bootstrap: Vec<String> = config.gossip.bootstrap.iter().map(ToString::to_string).collect();
    let bootstrap = discovery::bootstrap_without_self(&bootstrap, &me.internal_endpoint, &me.external_endpoint);
    let anchors: Vec<(String, String)> =
        config.gossip.trusted_msps.iter().flat_map(|org| org.anchor_peers.iter().map(|a| (a.to_string(), org.id.clone()))).collect();
    let discovery = Discovery::new(
        DiscoveryConfig::from_config(&config.gossip, bootstrap, anchors),
        me.clone(),
        signer.clone(),
        identities,
        env.fork_rng(),
        env.clock.now(),
        env.clock.wall_clock(),
    );
    *view.lock() = View {
        pki_id: me.pki_id.to_string(),
        org: me.org.clone(),
        endpoint: me.external_endpoint.clone(),
        internal_endpoint: me.internal_endpoint.clone(),
        inc_num: discovery.inc_num(),
        ..View::default()
    };
    let (publisher, published) = GossipBlockPublisher::new();
    let (leadership, yields) = Leadership::new();
    let state = GossipState::new(
        StateConfig::from_config(&config),
        signer.clone(),
        Box::new(ChannelsVerifier(channels.clone())),
        env.fork_rng(),
        env.clock.now(),
        env.clock.wall_clock(),
    );
    let pull = super::pull::PullTiming::from_config(&config.gossip);
    let mut gossip = Gossip::new(discovery, state, pull, env.clock.now());
    let io = ChannelIo { channels, published, max_send_msg_size: config.peer.max_send_msg_size, leadership: leadership.clone(), yields };
    // The joined channels' orgs are known before any identity is checked.
    gossip.handle_channel_orgs(env.clock.now(), &io.snapshot());
    let trusted = gossip.identities().trusted().clone();
    let comm_setup = CommSetup {
        metrics: comm_metrics,
        faults: message_faults,
        tls,
        ..CommSetup::new(signer, trusted, CommConfig::from_config(&config))
    };
    let (comm, comm_events) = Comm::new(env.clone(), comm_setup);
    tasks.spawn(drive(env.clone(), gossip, comm.clone(), comm_events, view.clone(), metrics, io, stop));
    GossipHandle { comm, publisher, leadership, view }
}
