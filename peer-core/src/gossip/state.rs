//! The channel layer of gossip and Fabric's state provider, as one **state machine** (inner
//! ring): block dissemination (DataMessage push and forwarding with a store of seen blocks),
//! StateInfo (each peer's ledger height per channel), the per-channel payload buffer that hands
//! blocks to the ledger strictly in order, and state transfer (anti-entropy: RemoteStateRequest /
//! RemoteStateResponse). Fabric: `gossip/gossip/channel/channel.go`, `gossip/state/state.go`,
//! `gossip/state/payloads_buffer.go`.
//!
//! Call order (as quinn's `Connection`): feed `handle_channels` / `handle_membership` whenever
//! they may have changed, then any `handle_*` with the current `now`; after each, drain
//! [`GossipState::poll_transmit`], [`GossipState::poll_commit`] (the driver appends the block and
//! answers with [`GossipState::handle_committed`]), [`GossipState::poll_serve`] (the driver reads
//! the ledger and sends [`state_response`]) and [`GossipState::poll_event`]; sleep until
//! [`GossipState::poll_timeout`].
//!
//! Deliberately not here: I/O (ledger reads and appends, connections) — the driver does it;
//! block verification is behind [`BlockVerifier`] (the driver's checks the channel's orderer
//! signatures); the emitter's batching and private data are not implemented (see ARCHITECTURE.md).
//!
//! StateInfo travels both ways Fabric's does: pushed every `publishStateInfoInterval` (to
//! `propagatePeerNum` peers, forwarded once by each receiver) and pulled every
//! `requestStateInfoInterval` (a StateInfoPullRequest to `pullPeerNum` channel members, answered
//! with a StateInfoSnapshot of the newest signed StateInfo per peer). Fabric pushes only after a
//! height change and relies on the pull for newcomers; peer-core also republishes unchanged
//! heights, which costs one small message per interval and makes a restarted peer known sooner.
//!
//! With `peer.gossip.useLeaderElection`, each joined channel also runs an [`Election`]: this
//! module carries its LeadershipMessages (signed, org-only) and reports the outcome as
//! [`StateEvent::Leadership`], which the driver turns into the deliver client's leadership watch.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use proto::common::Block;
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{
    DataMessage, GossipMessage, LeadershipMessage, Payload, PeerTime, Properties, RemoteStateRequest, RemoteStateResponse, StateInfo,
    StateInfoPullRequest, StateInfoSnapshot,
};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use super::discovery::Transmit;
use super::election::{Action, Election, ElectionConfig};
use super::identity::Identities;
use super::message::{BadMessage, SignedMessage, Signer};
use crate::env::Instant;
use crate::msp::identity::PkiId;

/// Fabric's `gossip.state` logger.
pub const GOSSIP_STATE: &str = "gossip.state";
/// Fabric's `gossip.channel` logger.
pub const GOSSIP_CHANNEL: &str = "gossip.channel";

/// Fabric's `stragglerWarningThreshold`: a block this far ahead of our height, with state
/// transfer off, means this peer cannot catch up by gossip alone.
const STRAGGLER_WARNING_THRESHOLD: u64 = 100;

/// Settings: `peer.gossip.state.*` as the config has them, plus `publishStateInfoInterval`,
/// `propagatePeerNum`, `maxBlockCountToStore` and the leadership keys.
#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    /// `peer.gossip.state.*` (`enabled` turns anti-entropy requests on; answering them is always on).
    pub state: crate::config::StateConfig,
    pub publish_state_info_interval: Duration,
    /// `requestStateInfoInterval` and `pullPeerNum`: the StateInfo pull.
    pub request_state_info_interval: Duration,
    pub pull_peer_num: usize,
    pub propagate_peer_num: usize,
    /// Blocks kept in the seen-message store (Fabric's block message store window).
    pub max_block_count_to_store: u64,
    /// Whether this peer publishes an external endpoint (StateInfo then also goes to other orgs).
    pub has_external_endpoint: bool,
    /// `peer.gossip.useLeaderElection`: run an [`Election`] per channel (and the straggler
    /// warning's "does this peer depend on others for blocks").
    pub use_leader_election: bool,
    /// `peer.gossip.orgLeader`: only for the straggler warning.
    pub org_leader: bool,
    /// `peer.gossip.election.*`.
    pub election: ElectionConfig,
}

impl StateConfig {
    pub fn from_config(config: &crate::config::Config) -> StateConfig {
        let gossip = &config.gossip;
        StateConfig {
            state: gossip.state.clone(),
            publish_state_info_interval: gossip.publish_state_info_interval,
            request_state_info_interval: gossip.request_state_info_interval,
            pull_peer_num: usize::try_from(gossip.pull_peer_num).unwrap_or(usize::MAX),
            propagate_peer_num: usize::try_from(gossip.propagate_peer_num).unwrap_or(usize::MAX),
            max_block_count_to_store: gossip.max_block_count_to_store,
            has_external_endpoint: gossip.external_endpoint.is_some(),
            use_leader_election: gossip.use_leader_election,
            org_leader: gossip.org_leader,
            election: ElectionConfig::from(&gossip.election),
        }
    }
}

/// Verifies a block received from a peer before it is buffered or forwarded (Fabric's
/// `MessageCryptoService.VerifyBlock`): `seq` is the number the payload claims.
pub trait BlockVerifier: Send {
    fn verify(&self, channel: &str, seq: u64, block: &Block) -> Result<(), String>;
}

/// A joined channel as the state machine needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    pub id: String,
    /// The ledger's height now.
    pub height: u64,
    /// The MSP IDs of the channel's application organizations.
    pub orgs: BTreeSet<String>,
}

/// An alive member of the membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub pki_id: PkiId,
    pub org: String,
    /// Where to dial it (internal endpoint for our org when known, else the external one).
    pub endpoint: String,
    /// Whether it publishes an external endpoint.
    pub has_external_endpoint: bool,
}

/// Something the driver should know (metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateEvent {
    /// A block from a peer failed verification and was dropped.
    InvalidBlock { channel: String, seq: u64 },
    /// With leader election: this peer became (`true`) or stopped being (`false`) its org's
    /// leader for the channel. Also sent once (`false`) when the channel's election starts.
    Leadership { channel: String, leader: bool },
}

/// A state request to answer: read blocks `start..=end` and send [`state_response`] to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serve {
    pub channel: String,
    pub to: PkiId,
    pub endpoint: String,
    pub nonce: u64,
    pub start: u64,
    pub end: u64,
}

/// What one peer last published for a channel.
#[derive(Clone, Debug, PartialEq)]
struct PeerState {
    timestamp: (u64, u64),
    height: u64,
    left_channel: bool,
    /// The signed StateInfo itself, for StateInfo snapshots.
    message: SignedMessage,
}

/// A state transfer in progress (Fabric's `requestBlocksInRange` loop).
#[derive(Clone, Debug)]
struct Transfer {
    /// Next block wanted.
    prev: u64,
    /// Last block wanted (inclusive).
    end: u64,
    /// The request in flight: its last block, nonce, attempts so far and deadline.
    next: u64,
    nonce: u64,
    tries: u64,
    deadline: Instant,
}

#[derive(Debug)]
struct ChannelState {
    orgs: BTreeSet<String>,
    /// The ledger height: the next block to commit (the payload buffer's `next`).
    height: u64,
    /// Block handed to the driver and not yet confirmed.
    committing: Option<u64>,
    /// Out-of-order blocks waiting for their turn.
    buffer: BTreeMap<u64, Block>,
    /// Sequence numbers of data messages seen (the block message store).
    seen: BTreeSet<u64>,
    peers: BTreeMap<PkiId, PeerState>,
    /// Our own last StateInfo for the channel (part of every snapshot we give).
    own_state_info: Option<SignedMessage>,
    next_publish: Instant,
    next_pull: Instant,
    next_check: Instant,
    transfer: Option<Transfer>,
    /// With leader election: the channel's election, and the newest LeadershipMessage
    /// timestamp seen from each org peer (Fabric's leader message store).
    election: Option<Election>,
    leadership_seen: BTreeMap<PkiId, (u64, u64)>,
}

/// The channel-level gossip state machine. See the module docs for the call order.
pub struct GossipState {
    config: StateConfig,
    me: PkiId,
    my_org: String,
    signer: Arc<dyn Signer>,
    verifier: Box<dyn BlockVerifier>,
    rng: ChaCha20Rng,
    start: Instant,
    /// Wall-clock nanoseconds at start: the StateInfo incarnation number, and the base of
    /// its sequence numbers.
    inc_num: u64,
    /// Sequence number of the last LeadershipMessage sent (Fabric's adapter counts from 1).
    leadership_seq: u64,
    /// The alive members, by PKI-ID.
    members: BTreeMap<PkiId, Member>,
    channels: BTreeMap<String, ChannelState>,
    transmits: VecDeque<Transmit>,
    serves: VecDeque<Serve>,
    events: VecDeque<StateEvent>,
}

impl std::fmt::Debug for GossipState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipState").field("me", &self.me).field("channels", &self.channels.keys()).finish_non_exhaustive()
    }
}

/// Fabric's `GenerateMAC`: SHA-256(PKI-ID ‖ channel ID).
pub fn channel_mac(pki_id: &[u8], channel: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(pki_id);
    hasher.update(channel.as_bytes());
    hasher.finalize().to_vec()
}

/// The DataMessage a leader gossips for a block it committed (Fabric's deliver client
/// `createGossipMsg`: nonce 0, CHAN_AND_ORG, the channel ID; data messages are noop-signed).
pub fn data_message(channel: &str, block: &Block) -> SignedMessage {
    let seq_num = block.header.as_ref().map_or(0, |h| h.number);
    let payload = Payload { seq_num, data: block.encode_to_vec(), private_data: Vec::new() };
    SignedMessage::noop_sign(GossipMessage {
        nonce: 0,
        channel: channel.as_bytes().to_vec(),
        tag: Tag::ChanAndOrg as i32,
        content: Some(Content::DataMsg(DataMessage { payload: Some(payload) })),
    })
}

/// Builds the RemoteStateResponse for `serve` from blocks `read` returns, stopping before the
/// message would exceed `max_bytes` (at least one block is always included, so a peer asking
/// for one big block still gets it if the transport allows it).
pub fn state_response(serve: &Serve, height: u64, max_bytes: usize, mut read: impl FnMut(u64) -> Option<Block>) -> SignedMessage {
    let mut payloads = Vec::new();
    let mut size = 0usize;
    let last = serve.end.min(height.saturating_sub(1));
    if height < serve.end {
        warn!(target: GOSSIP_STATE, func = "handleStateRequest", "Received state request to transfer blocks with sequence numbers higher  [{}...{}] than available in ledger ({height})", serve.start, serve.end);
    }
    for seq in serve.start..=last {
        if height == 0 {
            break;
        }
        let Some(block) = read(seq) else {
            tracing::error!(target: GOSSIP_STATE, func = "handleStateRequest", "Wasn't able to read block with sequence number {seq} from ledger, skipping....");
            continue;
        };
        let data = block.encode_to_vec();
        if !payloads.is_empty() && size + data.len() + 64 > max_bytes {
            break;
        }
        size += data.len() + 16;
        payloads.push(Payload { seq_num: seq, data, private_data: Vec::new() });
    }
    SignedMessage::noop_sign(GossipMessage {
        nonce: serve.nonce,
        channel: serve.channel.as_bytes().to_vec(),
        tag: Tag::ChanOrOrg as i32,
        content: Some(Content::StateResponse(RemoteStateResponse { payloads })),
    })
}

/// Decodes a payload's block (bounded by the message size already checked).
fn decode_block(data: &[u8]) -> Result<Block, String> {
    Block::decode(data).map_err(|e| e.to_string())
}

impl GossipState {
    /// Creates the state machine at `now`, when the wall clock reads `wall` (StateInfo
    /// timestamps are `{incarnation = wall at start, seq = wall now}` in nanoseconds, as Fabric's).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: StateConfig,
        signer: Arc<dyn Signer>,
        verifier: Box<dyn BlockVerifier>,
        rng: ChaCha20Rng,
        now: Instant,
        wall: SystemTime,
    ) -> GossipState {
        let nanos = u64::try_from(wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()).unwrap_or(u64::MAX);
        GossipState {
            me: signer.pki_id(),
            my_org: signer.msp_id(),
            config,
            signer,
            verifier,
            rng,
            start: now,
            inc_num: nanos,
            leadership_seq: 0,
            members: BTreeMap::new(),
            channels: BTreeMap::new(),
            transmits: VecDeque::new(),
            serves: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn wall_nanos(&self, now: Instant) -> u64 {
        let since = u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.inc_num.saturating_add(since)
    }

    /// The joined channels and their heights. New channels start publishing StateInfo; a
    /// height that moved (blocks from the ordering service) is taken over.
    pub fn handle_channels(&mut self, now: Instant, channels: Vec<ChannelInfo>) {
        for info in channels {
            match self.channels.get_mut(&info.id) {
                Some(state) => {
                    state.orgs = info.orgs;
                    if info.height > state.height && state.committing.is_none() {
                        state.height = info.height;
                        let height = state.height;
                        state.buffer.retain(|seq, _| *seq >= height);
                    } else if info.height < state.height && state.committing.is_none() {
                        // The ledger lost blocks (a damaged store was rebuilt shorter): take
                        // them again from peers as any missing block.
                        warn!(target: GOSSIP_STATE, func = "UpdateLedgerHeight", "[{}] The ledger height went down from {} to {} (its store was rebuilt); fetching the missing blocks again", info.id, state.height, info.height);
                        state.height = info.height;
                        let height = state.height;
                        state.seen.retain(|seq| *seq < height);
                    }
                }
                None => {
                    debug!(target: GOSSIP_CHANNEL, func = "JoinChannel", "Joined channel {} with organizations {:?}", info.id, info.orgs);
                    let election = self.config.use_leader_election.then(|| {
                        self.events.push_back(StateEvent::Leadership { channel: info.id.clone(), leader: false });
                        Election::new(self.me, self.config.election, now, 0)
                    });
                    self.channels.insert(
                        info.id,
                        ChannelState {
                            orgs: info.orgs,
                            height: info.height,
                            committing: None,
                            buffer: BTreeMap::new(),
                            seen: BTreeSet::new(),
                            peers: BTreeMap::new(),
                            own_state_info: None,
                            // The first StateInfo goes out (and is asked for) as soon as there is
                            // someone to tell or ask.
                            next_publish: now,
                            next_pull: now,
                            next_check: now + self.config.state.check_interval,
                            transfer: None,
                            election,
                            leadership_seen: BTreeMap::new(),
                        },
                    );
                }
            }
        }
        self.check_invariants();
    }

    /// The alive members (with their organizations).
    pub fn handle_membership(&mut self, members: Vec<Member>) {
        self.members = members.into_iter().map(|m| (m.pki_id, m)).collect();
        self.check_invariants();
    }

    /// Whether any channel is joined.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Whether `channel` is one of the channels this layer was told of.
    pub fn has_channel(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The alive members as last told, by PKI-ID.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// A member is alive (newly, again, or at a new endpoint).
    pub fn handle_member_up(&mut self, member: Member) {
        self.members.insert(member.pki_id, member);
        self.check_invariants();
    }

    /// A member is dead or forgotten.
    pub fn handle_member_down(&mut self, pki_id: &PkiId) {
        self.members.remove(pki_id);
        self.check_invariants();
    }

    /// A block this peer committed from the ordering service (it is the leader): gossip it to
    /// `propagatePeerNum` peers of our org in the channel.
    pub fn handle_local_block(&mut self, _now: Instant, channel: &str, block: &Block) {
        let Some(seq) = block.header.as_ref().map(|h| h.number) else { return };
        let Some(state) = self.channels.get_mut(channel) else {
            warn!(target: GOSSIP_CHANNEL, func = "Gossip", "Failed obtaining gossipChannel of {channel} aborting");
            return;
        };
        remember(&mut state.seen, seq, self.config.max_block_count_to_store);
        if seq + 1 > state.height && state.committing.is_none() {
            state.height = seq + 1;
            let height = state.height;
            state.buffer.retain(|s, _| *s >= height);
        }
        let message = data_message(channel, block);
        self.push_data(channel, message, None);
        self.check_invariants();
    }

    /// A message from `from` that is not a membership message. `ids` (the gossip aggregate's
    /// identity store) gives senders' organizations and checks signatures.
    pub fn handle_message(&mut self, now: Instant, from: PkiId, message: SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let result = match message.content() {
            Some(Content::DataMsg(_)) => self.on_data(from, message, ids),
            Some(Content::StateInfo(_)) => self.on_state_info(now, from, message, ids),
            Some(Content::StateInfoPullReq(request)) => {
                let mac = request.channel_mac.clone();
                self.on_state_info_pull(from, &mac, ids)
            }
            Some(Content::StateSnapshot(_)) => self.on_state_info_snapshot(now, from, &message, ids),
            Some(Content::StateRequest(_)) => self.on_state_request(from, &message, ids),
            Some(Content::StateResponse(_)) => self.on_state_response(now, from, &message, ids),
            Some(Content::LeadershipMsg(_)) => self.on_leadership(now, from, &message, ids),
            _ => {
                debug!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Ignoring a message from {from} peer-core does not handle yet");
                Ok(())
            }
        };
        self.check_invariants();
        result
    }

    /// The driver committed (or failed to commit) the block [`Self::poll_commit`] handed out.
    pub fn handle_committed(&mut self, now: Instant, channel: &str, result: Result<u64, String>) {
        let Some(state) = self.channels.get_mut(channel) else { return };
        let Some(seq) = state.committing.take() else { return };
        match result {
            Ok(height) => {
                assert!(height > seq, "a committed block raises the height");
                state.height = height;
                debug!(target: GOSSIP_STATE, func = "commitBlock", "[{channel}] Committed block [{seq}]");
            }
            Err(err) => {
                // Verified before buffering, so this is the ledger refusing it: drop it; state
                // transfer fetches it again.
                warn!(target: GOSSIP_STATE, func = "deliverPayloads", "[{channel}] Cannot commit block [{seq}] to the ledger: {err}");
                state.seen.remove(&seq);
            }
        }
        let height = state.height;
        state.buffer.retain(|s, _| *s >= height);
        let _ = now;
        self.check_invariants();
    }

    /// Periodic work: StateInfo publishing, anti-entropy, state request timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<String> = self.channels.keys().cloned().collect();
        for id in ids {
            self.publish_if_due(now, &id);
            self.pull_state_info_if_due(now, &id);
            self.anti_entropy_if_due(now, &id);
            self.election_if_due(now, &id);
        }
        self.check_invariants();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next block to commit, in order (at most one per channel in flight).
    pub fn poll_commit(&mut self) -> Option<(String, Block)> {
        for (id, state) in &mut self.channels {
            if state.committing.is_some() {
                continue;
            }
            if let Some(block) = state.buffer.remove(&state.height) {
                debug!(target: GOSSIP_STATE, func = "deliverPayloads", "[{id}] Ready to transfer payloads (blocks) to the ledger, next block number is = [{}]", state.height);
                state.committing = Some(state.height);
                return Some((id.clone(), block));
            }
        }
        None
    }

    pub fn poll_serve(&mut self) -> Option<Serve> {
        self.serves.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<StateEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Instant {
        let mut next = Instant(u64::MAX);
        for state in self.channels.values() {
            next = next.min(state.next_publish).min(state.next_pull);
            if self.config.state.enabled {
                next = next.min(state.next_check);
            }
            if let Some(transfer) = &state.transfer {
                next = next.min(transfer.deadline);
            }
            if let Some(election) = &state.election {
                next = next.min(election.poll_timeout());
            }
        }
        next
    }

    /// This peer's organization.
    pub fn org(&self) -> &str {
        &self.my_org
    }

    /// Blocks waiting in a channel's payload buffer.
    pub fn buffer_size(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |s| s.buffer.len())
    }

    /// The height this state machine believes the channel's ledger has.
    pub fn height(&self, channel: &str) -> Option<u64> {
        self.channels.get(channel).map(|s| s.height)
    }

    /// The channel's peers (alive, org in the channel, published StateInfo, not left) with the
    /// height each published, sorted by PKI-ID.
    pub fn peers_of_channel(&self, channel: &str) -> Vec<(PkiId, u64)> {
        let Some(state) = self.channels.get(channel) else { return Vec::new() };
        self.members
            .values()
            .filter(|m| state.orgs.contains(&m.org))
            .filter_map(|m| state.peers.get(&m.pki_id).filter(|p| !p.left_channel).map(|p| (m.pki_id, p.height)))
            .collect()
    }

    /// The signed StateInfo of each of [`Self::peers_of_channel`]'s peers, in the same order.
    pub fn state_infos_of_channel(&self, channel: &str) -> Vec<(PkiId, SignedMessage)> {
        let Some(state) = self.channels.get(channel) else { return Vec::new() };
        self.members
            .values()
            .filter(|m| state.orgs.contains(&m.org))
            .filter_map(|m| state.peers.get(&m.pki_id).filter(|p| !p.left_channel).map(|p| (m.pki_id, p.message.clone())))
            .collect()
    }

    /// Our own last StateInfo for the channel, once one was published.
    pub fn own_state_info(&self, channel: &str) -> Option<&SignedMessage> {
        self.channels.get(channel)?.own_state_info.as_ref()
    }

    // -----------------------------------------------------------------------------------------
    // Data messages.

    fn on_data(&mut self, from: PkiId, message: SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let channel = String::from_utf8_lossy(&message.message().channel).into_owned();
        let Some(state) = self.channels.get(&channel) else {
            debug!(target: GOSSIP_CHANNEL, func = "handleMessage", "No such channel {channel} discarding message");
            return Ok(());
        };
        let Some(from_org) = org_of(ids, &from) else {
            debug!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Couldn't find org identity of peer {from}");
            return Ok(());
        };
        if !state.orgs.contains(&from_org) {
            warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Point to point message came from {from}, org({from_org}) but it's not eligible for the channel {channel}");
            return Ok(());
        }
        let Some(Content::DataMsg(DataMessage { payload: Some(payload) })) = message.content() else {
            warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Payload is empty, got it from {from}");
            return Err(BadMessage::Unexpected("data message without a payload".into()));
        };
        let seq = payload.seq_num;
        // Would the block go into the message store? (Cheap check before verifying.)
        if !fits_store(&state.seen, seq, self.config.max_block_count_to_store) {
            return Err(BadMessage::Stale);
        }
        let block = match decode_block(&payload.data) {
            Ok(block) => block,
            Err(err) => {
                warn!(target: GOSSIP_CHANNEL, func = "verifyBlock", "Received improperly encoded block from {from} in DataUpdate: {err}");
                self.events.push_back(StateEvent::InvalidBlock { channel, seq });
                return Ok(());
            }
        };
        if let Err(err) = self.verifier.verify(&channel, seq, &block) {
            warn!(target: GOSSIP_CHANNEL, func = "verifyBlock", "Received fabricated block from {from} in DataUpdate: {err}");
            warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Failed verifying block {seq}");
            self.events.push_back(StateEvent::InvalidBlock { channel, seq });
            return Ok(());
        }
        let state = self.channels.get_mut(&channel).expect("looked up above");
        remember(&mut state.seen, seq, self.config.max_block_count_to_store);
        // Forward once (only a message new to the store gets here), then hand to the state
        // provider.
        self.push_data(&channel, message, Some(from));
        self.add_payload(&channel, seq, block, false);
        Ok(())
    }

    /// Sends a data message to `propagatePeerNum` random peers of our org in the channel
    /// (Fabric's gossipInChan routing for blocks: EligibleForChannel ∧ IsMemberInChan ∧ IsInMyOrg),
    /// never back to `except`.
    fn push_data(&mut self, channel: &str, message: SignedMessage, except: Option<PkiId>) {
        let my_org = self.my_org.clone();
        let candidates: Vec<Member> = self.channel_members(channel).into_iter().filter(|m| m.org == my_org).collect();
        let chosen = self.pick(candidates, self.config.propagate_peer_num);
        for member in chosen {
            if Some(member.pki_id) == except {
                continue;
            }
            self.transmits.push_back(Transmit::Send { to: member.pki_id, endpoint: member.endpoint, message: message.clone() });
        }
    }

    /// Fabric's `addPayload`: non-blocking (gossip) drops blocks too far ahead; blocking
    /// (state transfer) is bounded at twice the buffer size, since nothing here can wait.
    fn add_payload(&mut self, channel: &str, seq: u64, block: Block, blocking: bool) -> bool {
        let config = &self.config;
        let Some(state) = self.channels.get_mut(channel) else { return false };
        let height = state.height;
        debug!(target: GOSSIP_STATE, func = "addPayload", "[{channel}] Adding payload to local buffer, blockNum = [{seq}]");
        if !blocking && seq.wrapping_sub(height) >= config.state.block_buffer_size {
            let peer_dependent = config.use_leader_election || !config.org_leader;
            if !config.state.enabled && height + STRAGGLER_WARNING_THRESHOLD < seq && peer_dependent {
                warn!(target: GOSSIP_STATE, func = "addPayload", "[{channel}] Current block height ({height}) is too far behind other peers at height ({}) to be able to receive blocks without state transfer which is disabled in the configuration (peer.gossip.state.enabled = false). Consider enabling it or setting the peer explicitly to be a leader (peer.gossip.orgLeader = true) in order to pull blocks directly from the ordering service.", seq + 1);
            }
            warn!(target: GOSSIP_STATE, func = "receiveAndQueueGossipMessages", "Block [{seq}] received from gossip wasn't added to payload buffer: Ledger height is at {height}, cannot enqueue block with sequence of {seq}");
            return false;
        }
        // The block at the ledger height is always taken: it is the one commits wait for. A buffer
        // full of later blocks must never shut it out (that stalled catch-up for good in the
        // simulator's crash-restart-ledger scenario); the farthest block makes room instead.
        if blocking
            && seq != height
            && (state.buffer.len() as u64 >= config.state.block_buffer_size * 2
                || seq.wrapping_sub(height) >= config.state.block_buffer_size * 2)
        {
            warn!(target: GOSSIP_STATE, func = "handleStateResponse", "Block [{seq}] received from block transfer wasn't added to payload buffer: the buffer is full");
            return false;
        }
        if seq == height && state.buffer.len() as u64 >= config.state.block_buffer_size * 2 {
            state.buffer.pop_last();
        }
        if seq < height || state.committing == Some(seq) || state.buffer.contains_key(&seq) {
            debug!(target: GOSSIP_STATE, func = "Push", "Payload with sequence number = {seq} has been already processed");
            return false;
        }
        state.buffer.insert(seq, block);
        debug!(target: GOSSIP_STATE, func = "addPayload", "Blocks payloads buffer size for channel [{channel}] is {} blocks", state.buffer.len());
        true
    }

    // -----------------------------------------------------------------------------------------
    // StateInfo.

    /// A pushed StateInfo: stored if newest, then forwarded once (not back to the sender).
    fn on_state_info(&mut self, now: Instant, from: PkiId, message: SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let Some((channel, origin)) = self.accept_state_info(from, &message, ids)? else { return Ok(()) };
        let selector_all_orgs = self.members.get(&origin).is_some_and(|m| m.has_external_endpoint);
        self.push_state_info(&channel, message, selector_all_orgs, Some(from));
        let _ = now;
        Ok(())
    }

    /// Validates a StateInfo (Fabric's validateStateInfoMsg: a joined channel by its MAC, an
    /// origin in the channel's orgs, newer than what we hold, signed by the origin's identity)
    /// and stores it. Returns the channel and origin when it was new.
    fn accept_state_info(&mut self, from: PkiId, message: &SignedMessage, ids: &Identities) -> Result<Option<(String, PkiId)>, BadMessage> {
        let Some(Content::StateInfo(info)) = message.content() else { return Ok(None) };
        let Some(origin) = PkiId::from_slice(&info.pki_id) else {
            return Err(BadMessage::Unexpected("StateInfo with a malformed PKI-ID".into()));
        };
        if origin == self.me {
            return Err(BadMessage::Stale);
        }
        let Some(channel) = self.channels.keys().find(|id| channel_mac(&info.pki_id, id) == info.channel_mac).cloned() else {
            debug!(target: GOSSIP_CHANNEL, func = "handleMessage", "No such channel for StateInfo of {origin}, discarding message");
            return Ok(None);
        };
        let timestamp = info.timestamp.as_ref().map_or((0, 0), |t| (t.inc_num, t.seq_num));
        // Staleness first: a signature check costs far more, and repeats are the common case.
        if self.channels[&channel].peers.get(&origin).is_some_and(|p| p.timestamp >= timestamp) {
            return Err(BadMessage::Stale);
        }
        let origin_org = {
            let Some(identity) = ids.get(&origin) else {
                return Err(BadMessage::BadIdentity(format!("PKI-ID {origin} not found in identity mapper")));
            };
            ids.verify(identity, message)?;
            identity.msp_id.clone()
        };
        let state = self.channels.get_mut(&channel).expect("found above");
        if !state.orgs.contains(&origin_org) {
            warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Point to point message came from {from}, org({origin_org}) but it's not eligible for the channel {channel}");
            return Ok(None);
        }
        let properties = info.properties.clone().unwrap_or_default();
        state.peers.insert(
            origin,
            PeerState { timestamp, height: properties.ledger_height, left_channel: properties.left_channel, message: message.clone() },
        );
        Ok(Some((channel, origin)))
    }

    /// Every `requestStateInfoInterval`: ask `pullPeerNum` members of the channel's orgs for
    /// their StateInfo snapshot (Fabric's `requestStateInfo`; noop-signed, identified by the MAC
    /// of our PKI-ID and the channel).
    fn pull_state_info_if_due(&mut self, now: Instant, channel: &str) {
        let Some(state) = self.channels.get_mut(channel) else { return };
        if now < state.next_pull {
            return;
        }
        state.next_pull = now + self.config.request_state_info_interval;
        let orgs = state.orgs.clone();
        let candidates: Vec<Member> = self.members.values().filter(|m| orgs.contains(&m.org)).cloned().collect();
        let request = GossipMessage {
            nonce: 0,
            channel: Vec::new(),
            tag: Tag::ChanOrOrg as i32,
            content: Some(Content::StateInfoPullReq(StateInfoPullRequest { channel_mac: channel_mac(&self.me.0, channel) })),
        };
        let request = SignedMessage::noop_sign(request);
        for member in self.pick(candidates, self.config.pull_peer_num) {
            self.transmits.push_back(Transmit::Send { to: member.pki_id, endpoint: member.endpoint, message: request.clone() });
        }
    }

    /// A StateInfo pull request: answer a member of the channel's orgs with the snapshot
    /// (Fabric's `createStateInfoSnapshot`). To another org we disclose our org's StateInfo
    /// only for peers with an external endpoint.
    fn on_state_info_pull(&mut self, from: PkiId, mac: &[u8], ids: &Identities) -> Result<(), BadMessage> {
        let Some(channel) = self.channels.keys().find(|id| channel_mac(&from.0, id) == mac).cloned() else {
            debug!(target: GOSSIP_CHANNEL, func = "handleMessage", "StateInfo pull request from {from} for no channel we joined, discarding it");
            return Ok(());
        };
        if !self.sender_in_channel(&from, &channel, ids) {
            return Ok(());
        }
        let Some(requester) = self.members.get(&from).cloned() else {
            debug!(target: GOSSIP_CHANNEL, func = "handleMessage", "StateInfo pull request from {from}, which is not an alive member");
            return Ok(());
        };
        let same_org = requester.org == self.my_org;
        let state = &self.channels[&channel];
        let mut elements = Vec::new();
        if let Some(own) = &state.own_state_info
            && (same_org || self.config.has_external_endpoint)
        {
            elements.push(own.envelope().clone());
        }
        for (origin, peer) in &state.peers {
            let member = self.members.get(origin);
            let discloseable = same_org || member.is_some_and(|m| m.org != self.my_org || m.has_external_endpoint);
            if discloseable {
                elements.push(if same_org { peer.message.envelope().clone() } else { peer.message.without_secret().envelope().clone() });
            }
        }
        let snapshot = GossipMessage {
            nonce: 0,
            channel: channel.as_bytes().to_vec(),
            tag: Tag::ChanOrOrg as i32,
            content: Some(Content::StateSnapshot(StateInfoSnapshot { elements })),
        };
        self.transmits.push_back(Transmit::Send { to: from, endpoint: requester.endpoint, message: SignedMessage::noop_sign(snapshot) });
        Ok(())
    }

    /// A StateInfo snapshot (Fabric's `handleStateInfSnapshot`): each element is a StateInfo,
    /// validated and stored as a pushed one but not forwarded; the first bad element ends it.
    /// Elements of peers that are not alive members are skipped.
    fn on_state_info_snapshot(&mut self, now: Instant, from: PkiId, message: &SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let Some(Content::StateSnapshot(snapshot)) = message.content() else { return Ok(()) };
        let channel = String::from_utf8_lossy(&message.message().channel).into_owned();
        if !self.channels.contains_key(&channel) || !self.sender_in_channel(&from, &channel, ids) {
            return Ok(());
        }
        for envelope in &snapshot.elements {
            let element = SignedMessage::from_envelope(envelope.clone())?;
            let Some(Content::StateInfo(info)) = element.content() else {
                warn!(target: GOSSIP_CHANNEL, func = "handleStateInfSnapshot", "Channel {channel} : Element of StateInfoSnapshot isn't a StateInfoMessage, message sent from {from}");
                return Err(BadMessage::Unexpected("a StateInfoSnapshot element that is not a StateInfo".into()));
            };
            if channel_mac(&info.pki_id, &channel) != info.channel_mac {
                warn!(target: GOSSIP_CHANNEL, func = "handleStateInfSnapshot", "Channel {channel} : StateInfo message has an invalid MAC, sent from {from}");
                return Err(BadMessage::Unexpected("a StateInfoSnapshot element with a wrong channel MAC".into()));
            }
            if !PkiId::from_slice(&info.pki_id).is_some_and(|pki_id| self.members.contains_key(&pki_id)) {
                continue;
            }
            match self.accept_state_info(from, &element, ids) {
                Ok(_) | Err(BadMessage::Stale) => {}
                Err(err) => {
                    warn!(target: GOSSIP_CHANNEL, func = "handleStateInfSnapshot", "Channel {channel}: Failed validating state info message sent from {from} : {err}");
                    return Err(err);
                }
            }
        }
        let _ = now;
        Ok(())
    }

    fn publish_if_due(&mut self, now: Instant, channel: &str) {
        let interval = self.config.publish_state_info_interval;
        let Some(state) = self.channels.get_mut(channel) else { return };
        if now < state.next_publish {
            return;
        }
        state.next_publish = now + interval;
        let height = state.height;
        if self.members.is_empty() {
            debug!(target: GOSSIP_CHANNEL, func = "publishStateInfo", "Empty membership, no one to publish state info to");
            return;
        }
        // Fabric publishes only after a height change and relies on the StateInfo pull for
        // newcomers; without the pull, peer-core republishes every interval so a restarted peer
        // learns its channel peers' heights.
        let info = StateInfo {
            timestamp: Some(PeerTime { inc_num: self.inc_num, seq_num: self.wall_nanos(now) }),
            pki_id: self.me.0.to_vec(),
            channel_mac: channel_mac(&self.me.0, channel),
            properties: Some(Properties { ledger_height: height, left_channel: false, chaincodes: Vec::new() }),
        };
        let message = GossipMessage { nonce: 0, channel: Vec::new(), tag: Tag::ChanOrOrg as i32, content: Some(Content::StateInfo(info)) };
        let signed = SignedMessage::sign(message, self.signer.as_ref());
        if let Some(state) = self.channels.get_mut(channel) {
            state.own_state_info = Some(signed.clone());
        }
        let all_orgs = self.config.has_external_endpoint;
        self.push_state_info(channel, signed, all_orgs, None);
    }

    /// StateInfo routing (Fabric's gossipBatch): `propagatePeerNum` peers of our org, or of the
    /// channel's orgs when the origin has an external endpoint.
    fn push_state_info(&mut self, channel: &str, message: SignedMessage, all_channel_orgs: bool, except: Option<PkiId>) {
        let Some(state) = self.channels.get(channel) else { return };
        let candidates: Vec<Member> = self
            .members
            .values()
            .filter(|m| if all_channel_orgs { state.orgs.contains(&m.org) } else { m.org == self.my_org })
            .filter(|m| Some(m.pki_id) != except)
            .cloned()
            .collect();
        for member in self.pick(candidates, self.config.propagate_peer_num) {
            let message = if member.org == self.my_org { message.clone() } else { message.without_secret() };
            self.transmits.push_back(Transmit::Send { to: member.pki_id, endpoint: member.endpoint, message });
        }
    }

    // -----------------------------------------------------------------------------------------
    // Leader election.

    /// The deliver client of `channel` gave up on the ordering service: the election yields.
    pub fn handle_yield(&mut self, now: Instant, channel: &str) {
        if let Some(election) = self.channels.get_mut(channel).and_then(|s| s.election.as_mut()) {
            election.handle_yield(now);
        }
        self.carry_out_election(channel);
        self.check_invariants();
    }

    /// Whether this peer leads `channel` for its org (false without leader election).
    pub fn is_leader(&self, channel: &str) -> bool {
        self.channels.get(channel).and_then(|s| s.election.as_ref()).is_some_and(Election::is_leader)
    }

    fn election_if_due(&mut self, now: Instant, channel: &str) {
        let view = self.org_view(channel).len();
        let Some(election) = self.channels.get_mut(channel).and_then(|s| s.election.as_mut()) else { return };
        if now >= election.poll_timeout() {
            election.handle_timeout(now, view);
        }
        self.carry_out_election(channel);
    }

    /// The election's view (Fabric's adapter `Peers`): alive peers of our org in the channel.
    fn org_view(&self, channel: &str) -> Vec<Member> {
        self.channel_members(channel).into_iter().filter(|m| m.org == self.my_org).collect()
    }

    /// A LeadershipMessage (Fabric's `gossipChannel.HandleMessage` and the election adapter):
    /// from a peer of our org, created by a peer of our org, newer than the last from its
    /// creator, signed by it; it counts only if the creator is in the view. Not forwarded
    /// (as in Fabric: leaders reach the org by their own pushes).
    fn on_leadership(&mut self, now: Instant, from: PkiId, message: &SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let Some(Content::LeadershipMsg(leadership)) = message.content() else { return Ok(()) };
        let channel = String::from_utf8_lossy(&message.message().channel).into_owned();
        let Some(state) = self.channels.get(&channel) else {
            debug!(target: GOSSIP_CHANNEL, func = "handleMessage", "No such channel {channel} discarding message");
            return Ok(());
        };
        if state.election.is_none() {
            return Ok(());
        }
        let sender_org = org_of(ids, &from).unwrap_or_default();
        if sender_org != self.my_org {
            warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Received leadership message from {from} that belongs to a foreign organization {sender_org}");
            return Ok(());
        }
        let Some(creator) = PkiId::from_slice(&leadership.pki_id) else {
            return Err(BadMessage::Unexpected("LeadershipMessage with a malformed PKI-ID".into()));
        };
        if creator == self.me {
            return Err(BadMessage::Stale);
        }
        let timestamp = leadership.timestamp.as_ref().map_or((0, 0), |t| (t.inc_num, t.seq_num));
        if state.leadership_seen.get(&creator).is_some_and(|seen| *seen >= timestamp) {
            return Err(BadMessage::Stale);
        }
        // Checked after staleness: verifying costs a signature check, and repeats are common.
        {
            let Some(identity) = ids.get(&creator) else {
                return Err(BadMessage::BadIdentity(format!("PKI-ID {creator} not found in identity mapper")));
            };
            if identity.msp_id != self.my_org {
                warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Received leadership message created by a foreign organization {}", identity.msp_id);
                return Ok(());
            }
            ids.verify(identity, message)?;
        }
        let in_view = self.org_view(&channel).iter().any(|m| m.pki_id == creator);
        let state = self.channels.get_mut(&channel).expect("found above");
        state.leadership_seen.insert(creator, timestamp);
        if !in_view {
            debug!(target: super::election::GOSSIP_ELECTION, func = "handleMessages", "{}: Got message from {creator} but it is not in the view", self.me);
            return Ok(());
        }
        if let Some(election) = state.election.as_mut() {
            election.handle_message(now, creator, leadership.is_declaration);
        }
        self.carry_out_election(&channel);
        Ok(())
    }

    /// Drains the channel's election: LeadershipMessages to the org, leadership changes to events.
    fn carry_out_election(&mut self, channel: &str) {
        loop {
            let Some(action) = self.channels.get_mut(channel).and_then(|s| s.election.as_mut()).and_then(Election::poll_action) else {
                return;
            };
            match action {
                Action::Leadership(leader) => {
                    if leader {
                        info!(target: "gossip.service", func = "onStatusChange", "Elected as a leader, starting delivery service for channel {channel}");
                    } else {
                        info!(target: "gossip.service", func = "onStatusChange", "Renounced leadership, stopping delivery service for channel {channel}");
                    }
                    self.events.push_back(StateEvent::Leadership { channel: channel.to_string(), leader });
                }
                Action::Gossip { declaration } => {
                    self.leadership_seq += 1;
                    let leadership = LeadershipMessage {
                        pki_id: self.me.0.to_vec(),
                        timestamp: Some(PeerTime { inc_num: self.inc_num, seq_num: self.leadership_seq }),
                        is_declaration: declaration,
                    };
                    let message = GossipMessage {
                        nonce: 0,
                        channel: channel.as_bytes().to_vec(),
                        tag: Tag::ChanAndOrg as i32,
                        content: Some(Content::LeadershipMsg(leadership)),
                    };
                    let signed = SignedMessage::sign(message, self.signer.as_ref());
                    let view = self.org_view(channel);
                    for member in self.pick(view, self.config.propagate_peer_num) {
                        self.transmits.push_back(Transmit::Send { to: member.pki_id, endpoint: member.endpoint, message: signed.clone() });
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // State transfer.

    fn anti_entropy_if_due(&mut self, now: Instant, channel: &str) {
        let config = self.config.clone();
        let Some(state) = self.channels.get_mut(channel) else { return };
        // A request whose response did not come: retry or give up.
        if let Some(transfer) = &state.transfer
            && now >= transfer.deadline
        {
            self.send_state_request(now, channel);
        }
        let Some(state) = self.channels.get_mut(channel) else { return };
        if !config.state.enabled || now < state.next_check {
            return;
        }
        state.next_check = now + config.state.check_interval;
        if state.transfer.is_some() {
            return;
        }
        let ours = state.height;
        if ours == 0 {
            tracing::error!(target: GOSSIP_STATE, func = "antiEntropy", "Ledger reported block height of 0 but this should be impossible");
            return;
        }
        let max = self.peers_of_channel(channel).into_iter().map(|(_, h)| h).max().unwrap_or(0);
        if ours >= max {
            return;
        }
        let state = self.channels.get_mut(channel).expect("checked above");
        let end = max - 1;
        let next = end.min(ours + config.state.batch_size);
        state.transfer = Some(Transfer { prev: ours, end, next, nonce: 0, tries: 0, deadline: now });
        self.send_state_request(now, channel);
    }

    /// Sends (or re-sends) the request for the current batch, or gives up after maxRetries.
    fn send_state_request(&mut self, now: Instant, channel: &str) {
        let config = self.config.clone();
        let Some(transfer) = self.channels.get(channel).and_then(|s| s.transfer.clone()) else { return };
        if transfer.tries > config.state.max_retries {
            warn!(target: GOSSIP_STATE, func = "requestBlocksInRange", "Wasn't  able to get blocks in range [{}...{}), after {} retries", transfer.prev, transfer.next, transfer.tries);
            self.channels.get_mut(channel).expect("has a transfer").transfer = None;
            return;
        }
        let candidates: Vec<Member> = self
            .peers_of_channel(channel)
            .into_iter()
            .filter(|(_, height)| *height >= transfer.next)
            .filter_map(|(pki_id, _)| self.members.get(&pki_id).cloned())
            .collect();
        if candidates.is_empty() {
            warn!(target: GOSSIP_STATE, func = "requestBlocksInRange", "Cannot send state request for blocks in range [{}...{}), due to there are no peers to ask for missing blocks from", transfer.prev, transfer.next);
            self.channels.get_mut(channel).expect("has a transfer").transfer = None;
            return;
        }
        let peer = candidates[(self.rng.next_u64() % candidates.len() as u64) as usize].clone();
        let nonce = self.rng.next_u64();
        info!(target: GOSSIP_STATE, func = "requestBlocksInRange", "Requesting blocks in range [{}, {}] from {}", transfer.prev, transfer.next, peer.endpoint);
        debug!(target: GOSSIP_STATE, func = "requestBlocksInRange", "State transfer, with peer {}, requesting blocks in range [{}...{}), for chainID {channel}", peer.endpoint, transfer.prev, transfer.next);
        let message = SignedMessage::noop_sign(GossipMessage {
            nonce,
            channel: channel.as_bytes().to_vec(),
            tag: Tag::ChanOrOrg as i32,
            content: Some(Content::StateRequest(RemoteStateRequest { start_seq_num: transfer.prev, end_seq_num: transfer.next })),
        });
        self.transmits.push_back(Transmit::Send { to: peer.pki_id, endpoint: peer.endpoint, message });
        let state = self.channels.get_mut(channel).expect("has a transfer");
        state.transfer = Some(Transfer { nonce, tries: transfer.tries + 1, deadline: now + config.state.response_timeout, ..transfer });
    }

    fn on_state_request(&mut self, from: PkiId, message: &SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let Some(Content::StateRequest(request)) = message.content() else { return Ok(()) };
        let channel = String::from_utf8_lossy(&message.message().channel).into_owned();
        if !self.sender_in_channel(&from, &channel, ids) {
            return Ok(());
        }
        if request.start_seq_num > request.end_seq_num {
            tracing::error!(target: GOSSIP_STATE, func = "handleStateRequest", "State request validation failed, Invalid sequence interval [{}...{}).. Ignoring request...", request.start_seq_num, request.end_seq_num);
            return Err(BadMessage::Unexpected("invalid state request range".into()));
        }
        if request.end_seq_num > self.config.state.batch_size.saturating_add(request.start_seq_num) {
            tracing::error!(target: GOSSIP_STATE, func = "handleStateRequest", "State request validation failed, Requesting blocks range [{}-{}) greater than configured allowed ({}) batching size for anti-entropy.. Ignoring request...", request.start_seq_num, request.end_seq_num, self.config.state.batch_size);
            return Err(BadMessage::Unexpected("state request over the batch size".into()));
        }
        // Fabric bounds the queue of requests (state.channelSize); the driver answers each
        // right after this call, so a small bound suffices.
        if self.serves.len() >= 100 {
            return Ok(());
        }
        let endpoint = self.members.get(&from).map(|m| m.endpoint.clone()).unwrap_or_default();
        self.serves.push_back(Serve {
            channel,
            to: from,
            endpoint,
            nonce: message.message().nonce,
            start: request.start_seq_num,
            end: request.end_seq_num,
        });
        Ok(())
    }

    fn on_state_response(&mut self, now: Instant, from: PkiId, message: &SignedMessage, ids: &Identities) -> Result<(), BadMessage> {
        let Some(Content::StateResponse(response)) = message.content() else { return Ok(()) };
        let channel = String::from_utf8_lossy(&message.message().channel).into_owned();
        if !self.sender_in_channel(&from, &channel, ids) {
            return Ok(());
        }
        // Only the response to the request in flight counts (Fabric matches the nonce).
        let Some(transfer) = self.channels.get(&channel).and_then(|s| s.transfer.clone()) else { return Ok(()) };
        if message.message().nonce != transfer.nonce {
            return Ok(());
        }
        if response.payloads.is_empty() {
            warn!(target: GOSSIP_STATE, func = "requestBlocksInRange", "Wasn't able to process state response for blocks [{}...{}], due to Received state transfer response without payload", transfer.prev, transfer.next);
            return Ok(());
        }
        let mut verified = Vec::with_capacity(response.payloads.len());
        let mut max = 0;
        for payload in &response.payloads {
            let block = match decode_block(&payload.data) {
                Ok(block) => block,
                Err(err) => {
                    warn!(target: GOSSIP_STATE, func = "handleStateResponse", "Error unmarshalling payload to block for sequence number {}, due to {err}", payload.seq_num);
                    self.events.push_back(StateEvent::InvalidBlock { channel: channel.clone(), seq: payload.seq_num });
                    return Ok(());
                }
            };
            if let Err(err) = self.verifier.verify(&channel, payload.seq_num, &block) {
                warn!(target: GOSSIP_STATE, func = "handleStateResponse", "Error verifying block with sequence number {}, due to {err}", payload.seq_num);
                self.events.push_back(StateEvent::InvalidBlock { channel: channel.clone(), seq: payload.seq_num });
                // Fabric keeps waiting for a good response until the timeout, then retries.
                return Ok(());
            }
            max = max.max(payload.seq_num);
            verified.push((payload.seq_num, block));
        }
        for (seq, block) in verified {
            self.add_payload(&channel, seq, block, true);
        }
        let state = self.channels.get_mut(&channel).expect("has a transfer");
        let prev = max + 1;
        if prev > transfer.end {
            state.transfer = None;
        } else {
            let next = transfer.end.min(prev + self.config.state.batch_size);
            state.transfer = Some(Transfer { prev, next, tries: 0, ..transfer });
            self.send_state_request(now, &channel);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Helpers.

    fn sender_in_channel(&self, from: &PkiId, channel: &str, ids: &Identities) -> bool {
        let Some(state) = self.channels.get(channel) else {
            warn!(target: GOSSIP_STATE, func = "directMessage", "Received state transfer request for channel {channel} while expecting a joined channel, skipping request...");
            return false;
        };
        match org_of(ids, from) {
            Some(org) if state.orgs.contains(&org) => true,
            Some(org) => {
                warn!(target: GOSSIP_CHANNEL, func = "HandleMessage", "Point to point message came from {from}, org({org}) but it's not eligible for the channel {channel}");
                false
            }
            None => false,
        }
    }

    /// Alive members of the channel's orgs that published StateInfo for it (and did not leave).
    fn channel_members(&self, channel: &str) -> Vec<Member> {
        let Some(state) = self.channels.get(channel) else { return Vec::new() };
        self.members
            .values()
            .filter(|m| state.orgs.contains(&m.org) && state.peers.get(&m.pki_id).is_some_and(|p| !p.left_channel))
            .cloned()
            .collect()
    }

    /// Up to `k` of `candidates`, uniformly at random (a partial Fisher–Yates shuffle).
    fn pick(&mut self, mut candidates: Vec<Member>, k: usize) -> Vec<Member> {
        let n = candidates.len();
        let k = k.min(n);
        for i in 0..k {
            let j = i + (self.rng.next_u64() % (n - i) as u64) as usize;
            candidates.swap(i, j);
        }
        candidates.truncate(k);
        candidates
    }

    fn check_invariants(&self) {
        for (id, state) in &self.channels {
            assert!(state.buffer.keys().all(|seq| *seq >= state.height), "channel {id}: buffered blocks are above the height");
            assert!(state.buffer.len() as u64 <= self.config.state.block_buffer_size * 2, "channel {id}: the payload buffer is bounded");
            assert!(state.seen.len() as u64 <= self.config.max_block_count_to_store + 1, "channel {id}: the block store is bounded");
            if let Some(seq) = state.committing {
                assert_eq!(seq, state.height, "channel {id}: only the next block is committed");
            }
            if let Some(election) = &state.election {
                election.check_invariants();
            }
        }
    }
}

/// Whether a data message with `seq` would enter the block store: not seen, and not older than
/// the store's window behind the newest (Fabric's data invalidation policy).
fn fits_store(seen: &BTreeSet<u64>, seq: u64, window: u64) -> bool {
    if seen.contains(&seq) {
        return false;
    }
    match seen.last() {
        Some(newest) => seq.saturating_add(window) >= *newest,
        None => true,
    }
}

fn remember(seen: &mut BTreeSet<u64>, seq: u64, window: u64) {
    seen.insert(seq);
    if let Some(newest) = seen.last().copied() {
        seen.retain(|s| s.saturating_add(window) >= newest);
    }
    while seen.len() as u64 > window + 1 {
        seen.pop_first();
    }
}

/// The organization of a known identity.
fn org_of(ids: &Identities, pki_id: &PkiId) -> Option<String> {
    ids.org_of(pki_id).map(str::to_string)
}
