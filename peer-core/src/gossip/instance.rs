//! [`Gossip`]: every gossip decision of one peer in one sans-IO state machine.
//!
//! It owns membership ([`Discovery`], which holds the identity store: comm reports the
//! identity of each new connection, and the MSPs of joined channels are added as their configs
//! arrive, then handed to comm as [`Output::Trust`]), the channel layer ([`GossipState`], with the leader
//! elections), the anchor peers learned from channel configs, and the routing of inbound
//! messages by content (membership messages to discovery; data, StateInfo, leadership and state
//! transfer messages to the channel layer). Inputs arrive through `handle_*` with the caller's
//! `now`; outputs leave through [`Gossip::poll_output`] in the order they must be carried out;
//! [`Gossip::poll_timeout`] says when to call [`Gossip::handle_timeout`] next. Nothing here
//! reads a clock, draws OS randomness or does I/O: the driver (`driver.rs`) does the I/O, the
//! fuzz targets and the membership simulator drive the same type.
//!
//! # Output order
//! Membership changes come first (each is passed on to the channel layer as it leaves, so the
//! channel layer's membership follows discovery's by deltas, never by recomputing it), then
//! membership transmits, then the channel layer's outputs in rounds (every commit, every state
//! response to serve, every transmit, every event) until a round produces nothing.
//! A commit's result must be reported ([`Gossip::handle_committed`]) before the next poll, since
//! it can produce more outputs in the same round.

use std::collections::BTreeMap;
use std::sync::Arc;

use proto::common::Block;
use tracing::{debug, info, warn};

use super::certstore::{CertStore, is_identity_pull};
use super::discovery::{self, Discovery, Event, MemberInfo, Transmit};
use super::identity::{Identities, TrustedMsps};
use super::message::{BadMessage, SignedMessage};
use super::pull::PullTiming;
use super::state::{ChannelInfo, GossipState, Member, Serve, StateEvent};
use crate::channel::{AnchorPeer, ChannelConfig};
use crate::config::HostPort;
use crate::env::Instant;
use crate::msp::identity::Identity;
use crate::msp::identity::PkiId;

/// One joined channel as the driver reads it from the ledger before each round of outputs.
#[derive(Clone, Debug)]
pub struct ChannelSnapshot {
    pub id: String,
    pub height: u64,
    pub config: Arc<ChannelConfig>,
}

/// What the driver must carry out, in order.
#[derive(Debug)]
pub enum Output {
    /// Send, contact, probe or close (see [`Transmit`]).
    Transmit(Transmit),
    /// Commit this block to the channel's ledger, then report with [`Gossip::handle_committed`].
    Commit { channel: String, block: Block },
    /// Answer a state request with blocks read from the ledger.
    Serve(Serve),
    /// A channel-layer event (leadership, an invalid block).
    Channel(StateEvent),
    /// A membership change (already passed on to the channel layer), for logs, metrics and views.
    Membership(Event),
    /// Validate handshakes against these MSPs from now on (a joined channel brought new orgs).
    Trust(TrustedMsps),
}

/// Which of the channel layer's queues [`Gossip::poll_output`] drains next.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Commits,
    Serves,
    Transmits,
    Events,
}

/// One peer's gossip: membership, channels, anchors and routing.
pub struct Gossip {
    discovery: Discovery,
    /// The identity pull (Fabric's certStore).
    certs: CertStore,
    state: GossipState,
    anchors: AnchorTracker,
    /// The channel layer's queue being drained, and whether this round produced anything.
    phase: Phase,
    progressed: bool,
    /// The identity pull's messages waiting to go out.
    pull_transmits: std::collections::VecDeque<Transmit>,
    /// The channel config whose organizations were last added to the identity store, per
    /// channel, and whether comm has yet to hear of new MSPs.
    orgs_seen: BTreeMap<String, Arc<ChannelConfig>>,
    trust_changed: bool,
}

impl std::fmt::Debug for Gossip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gossip").field("me", self.discovery.me()).finish_non_exhaustive()
    }
}

impl Gossip {
    /// The aggregate of `discovery` (which holds the identity store) and `state`, with the
    /// identity pull on `pull`'s timings (its random choices from a stream forked off
    /// `discovery`'s seed stream at `now`).
    pub fn new(mut discovery: Discovery, state: GossipState, pull: PullTiming, now: Instant) -> Gossip {
        let rng = discovery.fork_rng();
        let certs = CertStore::new(&discovery, pull, rng, now);
        Gossip {
            certs,
            orgs_seen: BTreeMap::new(),
            trust_changed: false,
            discovery,
            state,
            anchors: AnchorTracker::default(),
            phase: Phase::Commits,
            progressed: false,
            pull_transmits: std::collections::VecDeque::new(),
        }
    }

    /// A message from an authenticated peer, routed by its content. Duplicates and stale
    /// messages come back as [`BadMessage::Stale`] (normal in epidemic gossip).
    pub fn handle_message(&mut self, now: Instant, from: PkiId, message: SignedMessage) -> Result<(), BadMessage> {
        if is_identity_pull(&message) {
            let result = self.certs.handle_message(now, from, &message, &mut self.discovery);
            return result.map(|sends| self.pull_transmits.extend(sends));
        }
        if message.is_channel_message() {
            let result = self.state.handle_message(now, from, message, self.discovery.identities());
            if let Err(error) = &result
                && *error != BadMessage::Stale
            {
                debug!(target: "gossip.channel", func = "HandleMessage", "rejected a message from {from}: {error}");
            }
            result
        } else {
            let result = self.discovery.handle_message(now, from, message);
            if let Err(error) = &result
                && *error != BadMessage::Stale
            {
                debug!(target: "gossip.discovery", func = "handleMsgFromComm", "rejected a message from {from}: {error}");
            }
            result
        }
    }

    /// Comm connected to `pki_id`, which authenticated with `identity` (validated against the
    /// MSPs of the last [`Output::Trust`]).
    pub fn handle_authenticated(&mut self, pki_id: PkiId, identity: Arc<Identity>) {
        self.discovery.identities_mut().insert_validated(pki_id, identity);
    }

    /// A member could not be reached (comm gave up on it, or a dial to it failed).
    pub fn handle_presumed_dead(&mut self, now: Instant, pki_id: PkiId) {
        self.discovery.handle_presumed_dead(now, pki_id);
    }

    /// How a [`Transmit::Contact`] ended.
    pub fn handle_dial_result(&mut self, now: Instant, endpoint: &str, result: Result<PkiId, String>) {
        self.discovery.handle_dial_result(now, endpoint, result);
    }

    /// Whether the channel layer knows `channel` (from the last [`Gossip::handle_channels`]).
    pub fn has_channel(&self, channel: &str) -> bool {
        self.state.has_channel(channel)
    }

    /// A block this peer committed from the ordering service (it leads the channel).
    pub fn handle_local_block(&mut self, now: Instant, channel: &str, block: &Block) {
        self.state.handle_local_block(now, channel, block);
    }

    /// The deliver client of `channel` gave up on the orderers: the election yields.
    pub fn handle_yield(&mut self, now: Instant, channel: &str) {
        self.state.handle_yield(now, channel);
    }

    /// The joined channels, read before each round of outputs: anchor peers are learned from a
    /// channel's first config and from every later one whose orgs or anchors differ; the channel
    /// layer gets the heights and orgs, and the alive members.
    pub fn handle_channels(&mut self, now: Instant, channels: &[ChannelSnapshot]) {
        self.handle_channel_orgs(now, channels);
        // A channel's orgs in gossip are its application orgs (Fabric's join message).
        let infos = channels
            .iter()
            .map(|c| ChannelInfo {
                id: c.id.clone(),
                height: c.height,
                orgs: c.config.application.orgs.values().map(|org| org.msp_id.clone()).collect(),
            })
            .collect();
        let had_channels = self.state.has_channels();
        self.state.handle_channels(now, infos);
        if !had_channels && self.state.has_channels() {
            // The channel layer keeps a membership only while it has channels (a peer of no
            // channel, like the membership simulator's, holds one copy of it, not two).
            let alive = self.alive_members();
            self.state.handle_membership(alive);
        }
        // After the join (Fabric logs joining the channel, then learning its anchors).
        self.anchors.learn(now, channels, &mut self.discovery);
    }

    /// Tells the channel layer about one membership change.
    fn pass_on(&mut self, event: &Event) {
        if !self.state.has_channels() {
            return;
        }
        match event {
            Event::Learned { pki_id, alive: true, .. } | Event::Resurrected { pki_id } | Event::Moved { pki_id } => {
                if let Some(info) = self.discovery.member(pki_id).filter(|m| m.alive) {
                    let member = channel_member(info, self.state.org());
                    self.state.handle_member_up(member);
                }
            }
            Event::Learned { alive: false, .. } => {}
            Event::Dead { pki_id } | Event::Purged { pki_id } => self.state.handle_member_down(pki_id),
        }
    }

    /// Discovery's invariants, and: the channel layer's membership is discovery's alive members
    /// (kept by the membership changes passed on, never recomputed on the way), or nothing while
    /// it has no channel.
    pub fn check_invariants(&self) {
        self.discovery.check_invariants();
        if !self.state.has_channels() {
            assert!(self.state.members().next().is_none(), "the channel layer keeps a membership without channels");
            return;
        }
        let alive = self.alive_members();
        let told: Vec<&Member> = self.state.members().collect();
        assert!(told.iter().copied().eq(alive.iter()), "the channel layer's membership drifted from discovery's: {told:?} != {alive:?}");
    }

    /// Members of the joined channels' organizations become verifiable: each channel's newest
    /// config replaces its MSPs in the identity store (Fabric learns other orgs from channel
    /// configs, and follows their updates: a new CA or CRL, an org removed), every stored identity
    /// is checked again, members no longer valid are purged, and comm gets the new trust.
    pub fn handle_channel_orgs(&mut self, now: Instant, channels: &[ChannelSnapshot]) {
        for ChannelSnapshot { id, config, .. } in channels {
            if self.orgs_seen.get(id).is_some_and(|seen| Arc::ptr_eq(seen, config)) {
                continue;
            }
            for forgotten in self.discovery.handle_channel_msps(now, id, config.msps().values().cloned()) {
                self.certs.forget(&forgotten);
            }
            self.trust_changed = true;
            self.orgs_seen.insert(id.clone(), config.clone());
        }
    }

    /// The result of an [`Output::Commit`]: the new height, or why the block was not committed.
    pub fn handle_committed(&mut self, now: Instant, channel: &str, result: Result<u64, String>) {
        self.state.handle_committed(now, channel, result);
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.discovery.poll_timeout() {
            self.discovery.handle_timeout(now);
            for expired in self.discovery.take_forgotten() {
                self.certs.forget(&expired);
            }
        }
        if now >= self.state.poll_timeout() {
            self.state.handle_timeout(now);
        }
        if now >= self.certs.poll_timeout() {
            let sends = self.certs.handle_timeout(now, &self.discovery);
            self.pull_transmits.extend(sends);
        }
    }

    /// The next thing to carry out (see the module doc for the order).
    pub fn poll_output(&mut self) -> Option<Output> {
        if std::mem::take(&mut self.trust_changed) {
            return Some(Output::Trust(self.discovery.identities().trusted().clone()));
        }
        if let Some(event) = self.discovery.poll_event() {
            self.pass_on(&event);
            return Some(Output::Membership(event));
        }
        if let Some(transmit) = self.discovery.poll_transmit() {
            return Some(Output::Transmit(transmit));
        }
        if let Some(transmit) = self.pull_transmits.pop_front() {
            return Some(Output::Transmit(transmit));
        }
        loop {
            let output = match self.phase {
                Phase::Commits => self.state.poll_commit().map(|(channel, block)| Output::Commit { channel, block }),
                Phase::Serves => self.state.poll_serve().map(Output::Serve),
                Phase::Transmits => self.state.poll_transmit().map(Output::Transmit),
                Phase::Events => self.state.poll_event().map(Output::Channel),
            };
            if let Some(output) = output {
                // Events alone do not start another round.
                self.progressed |= self.phase != Phase::Events;
                return Some(output);
            }
            self.phase = match self.phase {
                Phase::Commits => Phase::Serves,
                Phase::Serves => Phase::Transmits,
                Phase::Transmits => Phase::Events,
                Phase::Events => {
                    self.phase = Phase::Commits;
                    if !std::mem::take(&mut self.progressed) {
                        if cfg!(debug_assertions) {
                            self.check_invariants();
                        }
                        return None;
                    }
                    Phase::Commits
                }
            };
        }
    }

    /// When [`Gossip::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Instant {
        self.discovery.poll_timeout().min(self.state.poll_timeout()).min(self.certs.poll_timeout())
    }

    /// How many identities the identity pull holds (ours included).
    pub fn pulled_identities(&self) -> usize {
        self.certs.len()
    }

    /// Every known member, alive or dead, by PKI-ID.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.discovery.members()
    }

    /// The identity store.
    pub fn identities(&self) -> &Identities {
        self.discovery.identities()
    }

    /// This peer's incarnation number.
    pub fn inc_num(&self) -> u64 {
        self.discovery.inc_num()
    }

    /// The sequence number of this peer's last alive message.
    pub fn seq_num(&self) -> u64 {
        self.discovery.seq_num()
    }

    /// Every alive member with its last alive message, in PKI-ID order.
    pub fn alive_messages(&self) -> Vec<(PkiId, SignedMessage)> {
        self.discovery.alive_messages()
    }

    /// The signed StateInfo of each of [`Self::peers_of_channel`]'s peers, in the same order.
    pub fn state_infos_of_channel(&self, channel: &str) -> Vec<(PkiId, SignedMessage)> {
        self.state.state_infos_of_channel(channel)
    }

    /// This peer's last published StateInfo for `channel`, if any yet.
    pub fn own_state_info(&self, channel: &str) -> Option<&SignedMessage> {
        self.state.own_state_info(channel)
    }

    /// Blocks waiting in `channel`'s payload buffer.
    pub fn buffer_size(&self, channel: &str) -> usize {
        self.state.buffer_size(channel)
    }

    /// The channel's peers this peer knows (alive, of the channel's orgs, with a StateInfo), with
    /// their heights.
    pub fn peers_of_channel(&self, channel: &str) -> Vec<(PkiId, u64)> {
        self.state.peers_of_channel(channel)
    }

    /// Membership as the channel layer sees it: alive members, each with the endpoint to reach it
    /// by (a member of our org by its internal endpoint when it has one, others by the external).
    fn alive_members(&self) -> Vec<Member> {
        let my_org = self.state.org();
        self.discovery.members().into_iter().filter(|m| m.alive).map(|m| channel_member(m, my_org)).collect()
    }
}

/// A member as the channel layer sees it: a member of our org is reached by its internal
/// endpoint when it has one, others by the external one.
fn channel_member(info: MemberInfo, my_org: &str) -> Member {
    let endpoint = if info.org == my_org && !info.internal_endpoint.is_empty() { info.internal_endpoint } else { info.endpoint.clone() };
    Member { pki_id: info.pki_id, has_external_endpoint: !info.endpoint.is_empty(), org: info.org, endpoint }
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
    fn learn(&mut self, now: Instant, channels: &[ChannelSnapshot], discovery: &mut Discovery) {
        for ChannelSnapshot { id, config, .. } in channels {
            if self.seen.get(id).is_some_and(|(seen, _)| Arc::ptr_eq(seen, config)) {
                continue;
            }
            let orgs: AnchorsByOrg = config.application.orgs.values().map(|org| (org.msp_id.clone(), org.anchor_peers.clone())).collect();
            let changed = self.seen.get(id).is_none_or(|(_, learned)| *learned != orgs);
            if changed {
                // Fabric's JoinChan, for a channel's first config and every one that changes its
                // orgs or anchors: the join line (application orgs), then the anchors per org.
                info!(target: "gossip.gossip", func = "JoinChan", "Joining gossip network of channel {id} with {} organizations", orgs.len());
                let mut contacts = Vec::new();
                for (org, anchors) in &orgs {
                    if anchors.is_empty() {
                        info!(target: "gossip.gossip", func = "learnAnchorPeers", "No configured anchor peers of {org} for channel {id} to learn about");
                        continue;
                    }
                    let shown: Vec<String> = anchors.iter().map(|a| format!("{{{} {}}}", a.host, a.port)).collect();
                    info!(target: "gossip.gossip", func = "learnAnchorPeers", "Learning about the configured anchor peers of {org} for channel {id}: [{}]", shown.join(" "));
                    for anchor in anchors {
                        match discovery::anchor_skip(discovery.me(), id, org, &anchor.host, anchor.port) {
                            Some((tracing::Level::WARN, line)) => warn!(target: "gossip.gossip", func = "learnAnchorPeers", "{line}"),
                            Some((_, line)) => info!(target: "gossip.gossip", func = "learnAnchorPeers", "{line}"),
                            None => contacts.push((HostPort::new(anchor.host.clone(), anchor.port).to_string(), org.clone())),
                        }
                    }
                }
                discovery.learn_anchors(now, &contacts);
            }
            self.seen.insert(id.clone(), (config.clone(), orgs));
        }
    }
}
