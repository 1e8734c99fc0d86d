//! The gossip driver: the async middle ring between the gossip state machines and comm.
//!
//! One task owns the [`Discovery`] state machine and the channel-level [`GossipState`]; inbound
//! messages go to one or the other by content (membership messages to discovery; data,
//! StateInfo and state transfer messages to the channel layer). For the channel layer it also
//! does the I/O: committing ready blocks through [`Channels::append`], reading blocks to answer
//! state requests, and taking blocks the leader published. The task It waits on a closed set of things (a comm
//! event, the result of a dial it started, the state machine's next deadline, shutdown), feeds
//! each to the state machine with the env clock's `now`, then carries out every transmit:
//! sending on an existing connection, or starting a bounded number of dial tasks (handshake,
//! probe, connect) whose results come back to it. It also keeps the operations view of the
//! membership and the gossip metrics up to date.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use prometheus_client::metrics::histogram::Histogram;
use proto::common::Block;

use super::comm::{Comm, CommEvent};
use super::discovery::{self, Discovery, MemberInfo, Transmit};
use super::message::{BadMessage, SignedMessage};
use super::publish::Leadership;
use super::state::{BlockVerifier, ChannelInfo, GossipState, Member, StateEvent, state_response};
use crate::channel::{AnchorPeer, ChannelConfig};
use crate::channels::Channels;
use crate::config::HostPort;
use crate::env::Env;
use crate::metrics::default_histogram;
use crate::msp::identity::PkiId;

/// Dials in flight at once; beyond this a transmit needing a new connection waits for the next
/// round (the state machine retries on its own timers).
const MAX_DIALS: usize = 64;

type Labels = Vec<(String, String)>;

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

fn channel_label(channel: &str) -> Labels {
    vec![("channel".to_string(), channel.to_string())]
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

/// What `/membership` shows.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub pki_id: String,
    pub org: String,
    pub endpoint: String,
    pub internal_endpoint: String,
    pub inc_num: u64,
    pub members: Vec<MemberInfo>,
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
}

/// The channel layer the driver runs next to membership.
pub struct ChannelGossip {
    pub state: GossipState,
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

/// Runs membership and the channel layer until `stop` turns true.
#[allow(clippy::too_many_arguments)]
pub async fn drive(
    env: Env,
    mut discovery: Discovery,
    comm: Comm,
    mut comm_events: mpsc::Receiver<CommEvent>,
    view: Arc<Mutex<View>>,
    metrics: GossipMetrics,
    mut channel: ChannelGossip,
    mut stop: watch::Receiver<bool>,
) {
    let (dial_tx, mut dial_rx) = mpsc::channel::<DialOutcome>(MAX_DIALS);
    let mut dials: JoinSet<()> = JoinSet::new();
    let mut anchors = AnchorTracker::default();
    loop {
        anchors.learn(&env, &channel.channels, &mut discovery);
        let members = carry_out(&mut discovery, &comm, &dial_tx, &mut dials, &view, &metrics);
        sync_state(&env, &mut channel, members);
        carry_out_state(&env, &mut channel, &comm, &dial_tx, &mut dials, &metrics);
        let deadline = discovery.poll_timeout().min(channel.state.poll_timeout());
        let sleep = env.clock.sleep_until(deadline);
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            event = comm_events.recv() => {
                let Some(event) = event else { break };
                let now = env.clock.now();
                match event {
                    CommEvent::Message { from, message } if message.is_channel_message() => {
                        if let Err(error) = channel.state.handle_message(now, from, message)
                            && error != BadMessage::Stale
                        {
                            metrics.bad(&error);
                            debug!(target: "gossip.channel", func = "HandleMessage", "rejected a message from {from}: {error}");
                        }
                    }
                    CommEvent::Message { from, message } => {
                        // Duplicates are normal in epidemic gossip; only real rejections count.
                        if let Err(error) = discovery.handle_message(now, from, message)
                            && error != BadMessage::Stale
                        {
                            metrics.bad(&error);
                            debug!(target: "gossip.discovery", func = "handleMsgFromComm", "rejected a message from {from}: {error}");
                        }
                    }
                    CommEvent::PresumedDead { pki_id } => discovery.handle_presumed_dead(now, pki_id),
                    CommEvent::Rejected { error, .. } => metrics.bad(&error),
                    CommEvent::ConnectionUp { .. } | CommEvent::ConnectionDown { .. } => {}
                }
            }
            Some((id, block)) = channel.published.recv() => {
                channel.state.handle_local_block(env.clock.now(), &id, &block);
            }
            Some(id) = channel.yields.recv() => {
                channel.state.handle_yield(env.clock.now(), &id);
            }
            Some(outcome) = dial_rx.recv() => {
                let now = env.clock.now();
                match outcome {
                    DialOutcome::Contact(endpoint, result) => discovery.handle_dial_result(now, &endpoint, result),
                    DialOutcome::Unreachable(pki_id) => discovery.handle_presumed_dead(now, pki_id),
                }
            }
            Some(_) = dials.join_next(), if !dials.is_empty() => {}
            _ = sleep => {
                let now = env.clock.now();
                if now >= discovery.poll_timeout() {
                    discovery.handle_timeout(now);
                }
                if now >= channel.state.poll_timeout() {
                    channel.state.handle_timeout(now);
                }
            }
        }
    }
    dials.shutdown().await;
    comm.stop();
}

/// The anchor peers each joined channel's config names, as last learned: a channel's first
/// config, and every later one whose orgs or anchor peers differ, is learned from (Fabric's
/// `updateAnchors`, then `learnAnchorPeers` per org).
#[derive(Default)]
struct AnchorTracker {
    /// Per channel: the config last looked at, and the anchors learned from it.
    seen: BTreeMap<String, (Arc<ChannelConfig>, AnchorsByOrg)>,
}

/// A channel's application orgs (MSP IDs) and their anchor peers.
type AnchorsByOrg = BTreeMap<String, Vec<AnchorPeer>>;

impl AnchorTracker {
    fn learn(&mut self, env: &Env, channels: &Channels, discovery: &mut Discovery) {
        for id in channels.ids() {
            let Some(config) = channels.config(&id) else { continue };
            if self.seen.get(&id).is_some_and(|(seen, _)| Arc::ptr_eq(seen, &config)) {
                continue;
            }
            let orgs: AnchorsByOrg = config.application.orgs.values().map(|org| (org.msp_id.clone(), org.anchor_peers.clone())).collect();
            let changed = self.seen.get(&id).is_none_or(|(_, learned)| *learned != orgs);
            if changed {
                let mut contacts = Vec::new();
                for (org, anchors) in &orgs {
                    if anchors.is_empty() {
                        info!(target: "gossip.gossip", func = "learnAnchorPeers", "No configured anchor peers of {org} for channel {id} to learn about");
                        continue;
                    }
                    let shown: Vec<String> = anchors.iter().map(|a| format!("{{{} {}}}", a.host, a.port)).collect();
                    info!(target: "gossip.gossip", func = "learnAnchorPeers", "Learning about the configured anchor peers of {org} for channel {id}: [{}]", shown.join(" "));
                    for anchor in anchors {
                        match discovery::anchor_skip(discovery.me(), &id, org, &anchor.host, anchor.port) {
                            Some((tracing::Level::WARN, line)) => warn!(target: "gossip.gossip", func = "learnAnchorPeers", "{line}"),
                            Some((_, line)) => info!(target: "gossip.gossip", func = "learnAnchorPeers", "{line}"),
                            None => contacts.push((HostPort::new(anchor.host.clone(), anchor.port).to_string(), org.clone())),
                        }
                    }
                }
                discovery.learn_anchors(env.clock.now(), &contacts);
            }
            self.seen.insert(id, (config, orgs));
        }
    }
}

/// Tells the channel layer the joined channels (with heights and orgs) and the alive members.
fn sync_state(env: &Env, channel: &mut ChannelGossip, members: Vec<MemberInfo>) {
    let infos: Vec<ChannelInfo> = channel
        .channels
        .ids()
        .into_iter()
        .filter_map(|id| {
            let height = channel.channels.ledger(&id)?.height();
            let orgs = channel.channels.config(&id)?.msps().keys().cloned().collect();
            Some(ChannelInfo { id, height, orgs })
        })
        .collect();
    channel.state.handle_channels(env.clock.now(), infos);
    let my_org = channel.state_org();
    let alive: Vec<Member> = members
        .into_iter()
        .filter(|m| m.alive)
        .map(|m| {
            let endpoint =
                if m.org == my_org && !m.internal_endpoint.is_empty() { m.internal_endpoint.clone() } else { m.endpoint.clone() };
            Member { pki_id: m.pki_id, has_external_endpoint: !m.endpoint.is_empty(), org: m.org, endpoint }
        })
        .collect();
    channel.state.handle_membership(alive);
}

impl ChannelGossip {
    fn state_org(&self) -> String {
        self.state.org().to_string()
    }
}

/// Carries out the channel layer's outputs: transmits, commits, state responses, events.
fn carry_out_state(
    env: &Env,
    channel: &mut ChannelGossip,
    comm: &Comm,
    dial_tx: &mpsc::Sender<DialOutcome>,
    dials: &mut JoinSet<()>,
    metrics: &GossipMetrics,
) {
    loop {
        let mut progressed = false;
        while let Some((id, block)) = channel.state.poll_commit() {
            progressed = true;
            let started = env.clock.now();
            let result = channel.channels.append(&id, &block).map_err(|e| e.to_string());
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
            let height = channel.channels.ledger(&id).map_or(0, |l| l.height());
            metrics.state_height.get_or_create(&channel_label(&id)).set(i64::try_from(height).unwrap_or(i64::MAX));
            channel.state.handle_committed(now, &id, result.map(|()| height));
            metrics.payload_buffer_size.get_or_create(&channel_label(&id)).set(channel.state.buffer_size(&id) as i64);
        }
        while let Some(serve) = channel.state.poll_serve() {
            progressed = true;
            let Some(ledger) = channel.channels.ledger(&serve.channel) else { continue };
            let limit = channel.max_send_msg_size.saturating_sub(1024);
            let response = state_response(&serve, ledger.height(), limit, |seq| ledger.block(seq).ok().flatten());
            send(comm, dial_tx, dials, serve.to, serve.endpoint, response);
        }
        while let Some(transmit) = channel.state.poll_transmit() {
            progressed = true;
            if let Transmit::Send { to, endpoint, message } = transmit {
                send(comm, dial_tx, dials, to, endpoint, message);
            }
        }
        while let Some(event) = channel.state.poll_event() {
            match event {
                StateEvent::InvalidBlock { channel: id, .. } => {
                    metrics.invalid_blocks.get_or_create(&channel_label(&id)).inc();
                }
                StateEvent::Leadership { channel: id, leader } => {
                    metrics.leader.get_or_create(&channel_label(&id)).set(i64::from(leader));
                    channel.leadership.set(&id, leader);
                }
            };
        }
        for id in channel.channels.ids() {
            metrics.payload_buffer_size.get_or_create(&channel_label(&id)).set(channel.state.buffer_size(&id) as i64);
        }
        if !progressed {
            break;
        }
    }
    // Fabric samples this every few seconds; here it is kept current (a read of the state machine).
    for id in channel.channels.ids() {
        let known = channel.state.peers_of_channel(&id).len();
        metrics.total_peers_known.get_or_create(&channel_label(&id)).set(i64::try_from(known).unwrap_or(i64::MAX));
    }
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

/// Drains the state machine's outputs: transmits go to comm, events to the view and metrics.
fn carry_out(
    discovery: &mut Discovery,
    comm: &Comm,
    dial_tx: &mpsc::Sender<DialOutcome>,
    dials: &mut JoinSet<()>,
    view: &Arc<Mutex<View>>,
    metrics: &GossipMetrics,
) -> Vec<MemberInfo> {
    while let Some(transmit) = discovery.poll_transmit() {
        match transmit {
            Transmit::Send { to, endpoint, message } => send(comm, dial_tx, dials, to, endpoint, message),
            Transmit::Contact { endpoint, org, message } => {
                let Some(address) = parse_endpoint(&endpoint) else {
                    let _ = dial_tx.try_send(DialOutcome::Contact(endpoint.clone(), Err(format!("{endpoint} is not host:port"))));
                    continue;
                };
                let (comm, tx) = (comm.clone(), dial_tx.clone());
                dials.spawn(async move {
                    let result = contact(&comm, &address, &org, message).await;
                    let _ = tx.send(DialOutcome::Contact(endpoint, result)).await;
                });
            }
            Transmit::ProbeDead { to, endpoint, message } => {
                let Some(address) = parse_endpoint(&endpoint) else { continue };
                if dials.len() >= MAX_DIALS {
                    continue;
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
    let mut changed = false;
    while discovery.poll_event().is_some() {
        changed = true;
    }
    let members = discovery.members();
    if changed {
        let alive = members.iter().filter(|m| m.alive).count() as i64;
        metrics.members.get_or_create(&vec![("state".to_string(), "alive".to_string())]).set(alive);
        metrics.members.get_or_create(&vec![("state".to_string(), "dead".to_string())]).set(members.len() as i64 - alive);
    }
    view.lock().unwrap_or_else(|p| p.into_inner()).members = members.clone();
    members
}

/// Handshake, org check, connect, send the membership request.
async fn contact(comm: &Comm, address: &HostPort, org: &str, message: super::message::SignedMessage) -> Result<PkiId, String> {
    let (pki_id, identity) = comm.handshake(address).await.map_err(|e| e.to_string())?;
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
