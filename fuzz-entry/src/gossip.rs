//! Gossip: `gossip_envelope` (one envelope off the wire, through the peer's receive path) and
//! `gossip_stream` (a sequence of messages, dial results and timeouts for the peer's [`Gossip`]
//! state machine, joined to one channel, checked after every step).
//!
//! The receive path is the one `gossip::comm` and `gossip::driver` run: bounded decoding
//! ([`SignedMessage::from_envelope_with_block_limit`]), then by content: a ConnEstablish is
//! authenticated (identity store, signature); membership messages go through [`Gossip`] itself;
//! channel messages go to a [`GossipState`] set up with two alive members (blocks are verified
//! against the channel's orderer signatures and committed through `Channels::append`, as the
//! driver does). The sender is an authenticated peer of the fixed world.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use peer_core::channel::ChannelConfig;
use peer_core::config::{Config, EnvVars};
use peer_core::env::Instant;
use peer_core::gossip::discovery::{Discovery, DiscoveryConfig, Event, SelfInfo, Transmit};
use peer_core::gossip::driver::ChannelsVerifier;
use peer_core::gossip::identity::Identities;
use peer_core::gossip::instance::{ChannelSnapshot, Gossip, Output};
use peer_core::gossip::message::{MAX_PAYLOAD_BYTES, SignedMessage, Signer, block_message_limit, empty_tag};
use peer_core::gossip::state::{self, ChannelInfo, GossipState, Member as StateMember, StateConfig};
use peer_core::msp::LocalMsp;
use peer_core::msp::identity::PkiId;
use prost::Message;
use proto::gossip::gossip_message::Content;
use proto::gossip::{AliveMessage, Envelope, Member, MembershipRequest, MembershipResponse, PeerTime};
use rand_core::SeedableRng;

use crate::Outcome;
use crate::config::SAMPLE_CORE_YAML;
use crate::world::{CHANNEL, Peer, world};
use peer_core::testkit::{NoBlocks, epoch};

/// The sample config, loaded once (the state machines' settings come from it).
static SAMPLE: LazyLock<Config> = LazyLock::new(|| {
    let path = std::path::Path::new("/etc/hyperledger/fabric/core.yaml");
    Config::from_yaml(SAMPLE_CORE_YAML, path, &EnvVars::new()).expect("the sample core.yaml loads").config
});

/// Membership settings as the tests use them (Fabric's defaults, faster pulls).
fn discovery_config(bootstrap: Vec<String>, anchors: Vec<(String, String)>) -> DiscoveryConfig {
    DiscoveryConfig::from_config(&SAMPLE.gossip, bootstrap, anchors)
}

fn identities_knowing(known: &[&LocalMsp]) -> Identities {
    let world = world();
    let mut identities = Identities::new(&world.peer, world.trusted_msps());
    for msp in known {
        identities.put(&msp.pki_id().0, &msp.identity.serialize(), epoch()).expect("a fixture identity validates");
    }
    identities
}

fn self_info(external: bool) -> SelfInfo {
    let peer = &world().peer;
    SelfInfo {
        pki_id: peer.pki_id(),
        org: peer.msp.id.clone(),
        external_endpoint: if external { "org1p0.ext:7051".into() } else { String::new() },
        internal_endpoint: "org1p0:7051".into(),
    }
}

// ---- gossip_envelope ----------------------------------------------------------------------

/// `gossip_envelope`: the input is one `gossip.Envelope` as it arrives on a stream from Org1's
/// peer1 (already authenticated, as every message after the handshake).
pub fn gossip_envelope(data: &[u8]) -> Outcome {
    let Ok(envelope) = Envelope::decode(data) else { return Outcome::rejected("not an Envelope") };
    let limit = block_message_limit(SAMPLE.peer.max_recv_msg_size);
    let decoded = SignedMessage::from_envelope_with_block_limit(envelope.clone(), limit);
    // Messages that carry no block get the same answer under the plain bound.
    let carries_blocks = decoded.as_ref().is_ok_and(|m| matches!(m.content(), Some(Content::DataMsg(_) | Content::StateResponse(_))));
    if !carries_blocks && data.len() <= MAX_PAYLOAD_BYTES {
        assert_eq!(SignedMessage::from_envelope(envelope), decoded, "the block limit changed the verdict on a message without blocks");
    }
    let message = match decoded {
        Ok(message) => message,
        Err(err) => {
            assert!(!err.reason().is_empty());
            return Outcome::Rejected(err.to_string());
        }
    };
    let world = world();
    let sender = &world.org1_peer1;
    let _ = message.internal_endpoint();
    // Signature checks: deterministic, and dropping the secret never makes a good message bad.
    let verified = message.verify(&sender.identity);
    assert_eq!(verified, message.verify(&sender.identity), "verification is not deterministic");
    if verified.is_ok() {
        assert!(!message.envelope().signature.is_empty(), "an unsigned message verified");
        assert_eq!(message.without_secret().verify(&sender.identity), Ok(()), "removing the secret broke the signature");
    }
    let result = match message.content() {
        Some(Content::Conn(_)) => authenticate(&message),
        _ if message.is_channel_message() => channel_layer(sender.pki_id(), message),
        _ => membership(sender.pki_id(), message),
    };
    match result {
        Ok(()) => Outcome::Accepted,
        Err(err) => Outcome::Rejected(err),
    }
}

/// The responder's half of comm's handshake (`authenticateRemotePeer`): validate the identity the
/// ConnEstablish carries against the trusted MSPs, then verify the message with it.
fn authenticate(message: &SignedMessage) -> Result<(), String> {
    let Some(Content::Conn(conn)) = message.content() else { return Err("not a ConnEstablish".into()) };
    if conn.pki_id.is_empty() {
        return Err("No PKI-ID".into());
    }
    let identities = identities_knowing(&[]);
    let validated = identities.trusted().validate(&conn.pki_id, &conn.identity, epoch());
    let (pki_id, identity) = validated.map_err(|e| e.to_string())?;
    assert_eq!(PkiId::from_slice(&conn.pki_id), Some(identity.pki_id()), "a PKI-ID that is not its identity's was accepted");
    assert_eq!(pki_id, identity.pki_id(), "the validated PKI-ID is not the identity's");
    let msp_id = identity.msp_id.clone();
    assert!(msp_id == "Org1MSP" || msp_id == "Org2MSP", "an identity of an untrusted MSP ({msp_id}) was accepted");
    identities.trusted().verify(&identity, message).map_err(|e| e.to_string())
}

/// Our peer's gossip state machine, its membership seeded with `seed`, its channel layer taking no
/// block.
fn peer_gossip(config: DiscoveryConfig, external: bool, identities: Identities, seed: u64) -> Gossip {
    let signer: Arc<dyn Signer> = Arc::new(world().peer.clone());
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let discovery = Discovery::new(config, self_info(external), signer.clone(), identities, rng, Instant(0), epoch());
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
    let state = GossipState::new(StateConfig::from_config(&SAMPLE), signer, Box::new(NoBlocks), rng, Instant(0), epoch());
    Gossip::new(discovery, state, peer_core::gossip::pull::PullTiming::from_config(&SAMPLE.gossip), Instant(0))
}

/// A membership message to a fresh membership state machine.
fn membership(from: PkiId, message: SignedMessage) -> Result<(), String> {
    let world = world();
    let identities = identities_knowing(&[&world.org1_peer1]);
    let bootstrap = vec!["org1p1:7051".to_string()];
    let config = discovery_config(bootstrap, vec![("org2p0.ext:7051".into(), "Org2MSP".into())]);
    let mut gossip = peer_gossip(config, true, identities, 3);
    let result = gossip.handle_message(Instant(1), from, message).map_err(|e| e.to_string());
    while gossip.poll_output().is_some() {}
    gossip.check_invariants();
    result
}

/// A channel message to a fresh channel layer on a peer that has joined [`CHANNEL`] (height 1),
/// with Org1's peer1 and Org2's peer0 alive. Blocks it hands out are committed as the driver
/// does; state requests are answered from the ledger.
fn channel_layer(from: PkiId, message: SignedMessage) -> Result<(), String> {
    let world = world();
    let peer = Peer::joined();
    let identities = identities_knowing(&[&world.org1_peer1, &world.org2_peer0]);
    let verifier = Box::new(ChannelsVerifier(peer.channels.clone()));
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
    let signer: Arc<dyn Signer> = Arc::new(world.peer.clone());
    let mut state = GossipState::new(StateConfig::from_config(&SAMPLE), signer, verifier, rng, Instant(0), epoch());
    let orgs: BTreeSet<String> = ["Org1MSP", "Org2MSP"].into_iter().map(String::from).collect();
    state.handle_channels(Instant(0), vec![ChannelInfo { id: CHANNEL.into(), height: 1, orgs }]);
    state.handle_membership(vec![
        StateMember {
            pki_id: world.org1_peer1.pki_id(),
            org: "Org1MSP".into(),
            endpoint: "org1p1:7051".into(),
            has_external_endpoint: true,
        },
        StateMember {
            pki_id: world.org2_peer0.pki_id(),
            org: "Org2MSP".into(),
            endpoint: "org2p0.ext:7051".into(),
            has_external_endpoint: true,
        },
    ]);
    let now = Instant(1);
    let result = state.handle_message(now, from, message, &identities).map_err(|e| e.to_string());
    let ledger = peer.channels.ledger(CHANNEL).expect("the joined channel has a ledger");
    loop {
        let mut progressed = false;
        while let Some((channel, block)) = state.poll_commit() {
            progressed = true;
            let before = ledger.height();
            let committed = peer.channels.append(&channel, &block).map_err(|e| e.to_string());
            let height = peer.channels.ledger(&channel).map_or(0, |l| l.height());
            assert_eq!(height, before + u64::from(committed.is_ok()), "an append moved the height by other than one block");
            state.handle_committed(now, &channel, committed.map(|()| height));
        }
        while let Some(serve) = state.poll_serve() {
            progressed = true;
            let Some(ledger) = peer.channels.ledger(&serve.channel) else { continue };
            let response = state::state_response(&serve, ledger.height(), SAMPLE.peer.max_send_msg_size.saturating_sub(1024), |seq| {
                ledger.block(seq).ok().flatten()
            });
            assert!(
                SignedMessage::from_envelope_with_block_limit(response.into_envelope(), usize::MAX).is_ok(),
                "our own state response does not decode"
            );
        }
        while state.poll_transmit().is_some() {
            progressed = true;
        }
        while state.poll_event().is_some() {}
        if !progressed {
            break;
        }
    }
    // Committed blocks are exactly what the ledger holds, and the chain is intact.
    assert_eq!(state.height(CHANNEL), Some(ledger.height()), "the channel layer and the ledger disagree on the height");
    ledger.verify_chain().expect("the ledger's chain is intact after gossip commits");
    result
}

// ---- gossip_stream ------------------------------------------------------------------------

/// The peers that can sign messages: index 0 is the peer under test itself; Org3 is trusted
/// by no one.
fn signers() -> [&'static LocalMsp; 7] {
    let w = world();
    [&w.peer, &w.org1_peer1, &w.org1_peer2, &w.org1_admin, &w.org2_peer0, &w.org2_peer1, &w.org3_peer0]
}

/// A node name for endpoints, by signer index.
const NAMES: [&str; 7] = ["org1p0", "org1p1", "org1p2", "org1admin", "org2p0", "org2p1", "org3p0"];

/// Incarnation numbers: a few values so that stale, equal and newer timestamps are common.
const INCARNATIONS: [u64; 4] = [1_748_000_000_000_000_000, 1_748_736_000_000_000_000, 1_748_736_000_000_000_001, u64::MAX];

/// An alive message to build and sign.
#[derive(Arbitrary, Debug, Clone)]
pub struct AliveSpec {
    /// Who signs (index into the signers).
    signer: u8,
    /// The PKI-ID it claims: its own, or another signer's (an impersonation).
    claim: Option<u8>,
    incarnation: u8,
    seq: u16,
    /// The external endpoint: none, the signer's, another node's, or junk.
    endpoint: u8,
    /// The internal endpoint in the secret envelope (none: no secret).
    internal: Option<u8>,
    /// Include the serialized identity (Fabric does during publishCertPeriod).
    identity: bool,
    tamper: Tamper,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tamper {
    None,
    /// Flip a bit of the signature.
    Signature,
    /// Flip a bit of the secret's signature.
    Secret,
    /// Remove the signature.
    Unsigned,
}

/// One input to the membership state machine.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// A gossiped alive message arriving on the connection of signer `via`.
    Alive { via: u8, alive: AliveSpec },
    /// A membership request from `via` carrying its alive message.
    Request { via: u8, nonce: u8, self_info: AliveSpec },
    /// A membership response; `nonce` picks one of the nonces we sent (or none).
    Response { via: u8, nonce: u8, alive: Vec<AliveSpec>, dead: Vec<AliveSpec> },
    /// Any envelope bytes from `via` (through the receive path's decoding first).
    Raw { via: u8, envelope: Vec<u8> },
    /// Time passes in steps, each timer firing at its deadline.
    Advance { millis: u16 },
    /// The driver was late: time jumps and the timers run once.
    Jump { minutes: u8 },
    /// The outcome of a contact (bootstrap or anchor) dial.
    Dial { contact: u8, ok: bool },
    /// Comm lost a member.
    PresumedDead { member: u8 },
}

/// The whole input: whether we publish an external endpoint, then the steps.
#[derive(Arbitrary, Debug, Clone)]
pub struct Stream {
    pub external: bool,
    pub steps: Vec<Step>,
}

/// Most steps per input (each may sign a few messages).
const MAX_STEPS: usize = 64;
/// Most alive messages in one membership response list.
const MAX_LIST: usize = 6;
/// Most timer rounds one `Advance` runs.
const MAX_TIMER_ROUNDS: usize = 64;

struct Harness {
    /// The peer's whole gossip state machine, joined to [`CHANNEL`] (height 1).
    gossip: Gossip,
    me: PkiId,
    now: Instant,
    /// Nonces of membership requests we sent (bounded), for responses to answer.
    nonces: Vec<u64>,
    /// The view as the events describe it: PKI-ID → alive.
    shadow: BTreeMap<PkiId, bool>,
    /// Each member's newest timestamp, while it stays a member.
    timestamps: BTreeMap<PkiId, (u64, u64)>,
    /// PKI-ID → (org, trusted) of every signer.
    orgs: BTreeMap<PkiId, String>,
    contacts: Vec<String>,
}

fn endpoint(choice: u8, signer: usize) -> String {
    match choice % 5 {
        0 => String::new(),
        1 => format!("{}.ext:7051", NAMES[signer]),
        2 => format!("{}:7051", NAMES[usize::from(choice / 5) % NAMES.len()]),
        3 => "localhost:7051".into(),
        _ => "not an endpoint".into(),
    }
}

fn alive(spec: &AliveSpec) -> SignedMessage {
    let signers = signers();
    let index = usize::from(spec.signer) % signers.len();
    let signer = signers[index];
    let claimed = spec.claim.map_or_else(|| signer.pki_id(), |i| signers[usize::from(i) % signers.len()].pki_id());
    let message = AliveMessage {
        membership: Some(Member { endpoint: endpoint(spec.endpoint, index), metadata: Vec::new(), pki_id: claimed.0.to_vec() }),
        timestamp: Some(PeerTime {
            inc_num: INCARNATIONS[usize::from(spec.incarnation) % INCARNATIONS.len()],
            seq_num: u64::from(spec.seq),
        }),
        identity: if spec.identity { signer.identity.serialize() } else { Vec::new() },
    };
    let mut signed = SignedMessage::sign(empty_tag(Content::AliveMsg(message), 0), signer);
    if let Some(internal) = spec.internal {
        signed = signed.with_internal_endpoint(&format!("{}:7051", NAMES[usize::from(internal) % NAMES.len()]), signer);
    }
    let (mut envelope, message) = signed.into_parts();
    match spec.tamper {
        Tamper::None => {}
        Tamper::Signature => {
            if let Some(byte) = envelope.signature.last_mut() {
                *byte ^= 1;
            }
        }
        Tamper::Secret => {
            if let Some(byte) = envelope.secret_envelope.as_mut().and_then(|s| s.signature.last_mut()) {
                *byte ^= 1;
            }
        }
        Tamper::Unsigned => envelope.signature.clear(),
    }
    SignedMessage::from_parts(envelope, message)
}

impl Harness {
    fn new(external: bool) -> Harness {
        let world = world();
        let signers = signers();
        let contacts = vec!["org1p1:7051".to_string(), "org1p2:7051".to_string(), "org2p0.ext:7051".to_string()];
        let config = discovery_config(contacts[..2].to_vec(), vec![(contacts[2].clone(), "Org2MSP".into())]);
        // The connections' identities are known (comm stored them at the handshake).
        let identities = identities_knowing(&[&world.org1_peer1, &world.org2_peer0]);
        let mut gossip = peer_gossip(config, external, identities, 5);
        gossip.handle_channels(Instant(0), &[channel_snapshot()]);
        let orgs = signers.iter().map(|s| (s.pki_id(), s.msp.id.clone())).collect();
        Harness {
            gossip,
            me: world.peer.pki_id(),
            now: Instant(0),
            nonces: Vec::new(),
            shadow: BTreeMap::new(),
            timestamps: BTreeMap::new(),
            orgs,
            contacts,
        }
    }

    /// The peer on whose connection a message arrives: any signer but ourselves (comm never
    /// connects a peer to itself).
    fn via(&self, via: u8) -> PkiId {
        let signers = signers();
        signers[1 + usize::from(via) % (signers.len() - 1)].pki_id()
    }

    fn step(&mut self, step: &Step) {
        let now = self.now;
        match step {
            Step::Alive { via, alive: spec } => {
                let _ = self.gossip.handle_message(now, self.via(*via), alive(spec));
            }
            Step::Request { via, nonce, self_info } => {
                let request = MembershipRequest { self_information: Some(alive(self_info).into_envelope()), known: Vec::new() };
                let message = SignedMessage::noop_sign(empty_tag(Content::MemReq(request), u64::from(*nonce)));
                let _ = self.gossip.handle_message(now, self.via(*via), message);
            }
            Step::Response { via, nonce, alive: alive_list, dead } => {
                let nonce = self.nonces.get(usize::from(*nonce)).copied().unwrap_or(u64::from(*nonce));
                let envelopes = |list: &[AliveSpec]| list.iter().take(MAX_LIST).map(|spec| alive(spec).into_envelope()).collect();
                let response = MembershipResponse { alive: envelopes(alive_list), dead: envelopes(dead) };
                let message = SignedMessage::noop_sign(empty_tag(Content::MemRes(response), nonce));
                let _ = self.gossip.handle_message(now, self.via(*via), message);
            }
            Step::Raw { via, envelope } => {
                if let Ok(envelope) = Envelope::decode(envelope.as_slice())
                    && let Ok(message) = SignedMessage::from_envelope(envelope)
                {
                    let _ = self.gossip.handle_message(now, self.via(*via), message);
                }
            }
            Step::Advance { millis } => {
                let target = now + Duration::from_millis(u64::from(*millis));
                for _ in 0..MAX_TIMER_ROUNDS {
                    let deadline = self.gossip.poll_timeout();
                    if deadline > target {
                        break;
                    }
                    self.now = self.now.max(deadline);
                    self.gossip.handle_timeout(self.now);
                    self.drain();
                }
                self.now = target;
            }
            Step::Jump { minutes } => {
                self.now = now + Duration::from_secs(60 * u64::from(*minutes));
                self.gossip.handle_timeout(self.now);
            }
            Step::Dial { contact, ok } => {
                let index = usize::from(*contact) % self.contacts.len();
                let endpoint = self.contacts[index].clone();
                // The contacts are org1 peer1, org1 peer2 and org2 peer0.
                let answered = signers()[[1, 2, 4][index]].pki_id();
                let result = if *ok { Ok(answered) } else { Err("connection refused".to_string()) };
                self.gossip.handle_dial_result(now, &endpoint, result);
            }
            Step::PresumedDead { member } => {
                let members = self.gossip.members();
                let pki_id = match members.len() {
                    0 => self.via(*member),
                    n => members[usize::from(*member) % n].pki_id,
                };
                self.gossip.handle_presumed_dead(now, pki_id);
            }
        }
        self.drain();
        self.check();
    }

    /// Drains the outputs, checking each transmit and replaying events on the shadow view.
    fn drain(&mut self) {
        while let Some(output) = self.gossip.poll_output() {
            let transmit = match output {
                Output::Transmit(transmit) => transmit,
                Output::Membership(event) => {
                    self.follow(event);
                    continue;
                }
                // No block passes `NoBlocks`, so nothing is committed; state requests are answered
                // by the driver from the ledger (the channel-layer target covers that).
                Output::Commit { .. } => panic!("a block was committed though no block verifies"),
                Output::Serve(_) | Output::Channel(_) | Output::Trust(_) => continue,
            };
            let (to, message) = match &transmit {
                Transmit::Send { to, message, .. } | Transmit::ProbeDead { to, message, .. } => (Some(*to), Some(message)),
                Transmit::Contact { message, org, .. } => {
                    if org != "Org1MSP" {
                        assert_no_secret(message);
                    }
                    (None, Some(message))
                }
                Transmit::Close { to } => (Some(*to), None),
            };
            assert_ne!(to, Some(self.me), "a transmit to ourselves: {transmit:?}");
            if let Some(message) = message {
                if let Some(Content::MemReq(_)) = message.content() {
                    if self.nonces.len() == 8 {
                        self.nonces.remove(0);
                    }
                    self.nonces.push(message.message().nonce);
                }
                // No internal endpoint leaves the organization (the secret envelope stays home).
                if let Some(to) = to
                    && self.orgs.get(&to).is_some_and(|org| org != "Org1MSP")
                {
                    assert_no_secret(message);
                }
            }
        }
    }

    /// Replays a membership event on the shadow view.
    fn follow(&mut self, event: Event) {
        match event {
            Event::Learned { pki_id, alive, .. } => {
                assert!(self.shadow.insert(pki_id, alive).is_none(), "learned a member already known: {pki_id}");
            }
            Event::Dead { pki_id } => {
                assert_eq!(self.shadow.insert(pki_id, false), Some(true), "a member died that was not alive: {pki_id}");
            }
            Event::Resurrected { pki_id } => {
                assert_eq!(self.shadow.insert(pki_id, true), Some(false), "a member came back that was not dead: {pki_id}");
            }
            Event::Purged { pki_id } => {
                assert!(self.shadow.remove(&pki_id).is_some(), "purged a member that was not known: {pki_id}");
            }
            Event::Moved { pki_id } => {
                assert_eq!(self.shadow.get(&pki_id), Some(&true), "a member moved that was not alive: {pki_id}");
            }
        }
    }

    /// The invariants after each step.
    fn check(&mut self) {
        self.gossip.check_invariants();
        let members = self.gossip.members();
        let view: BTreeMap<PkiId, bool> = members.iter().map(|m| (m.pki_id, m.alive)).collect();
        assert_eq!(view.len(), members.len(), "a member listed twice");
        assert!(!view.contains_key(&self.me), "we are a member of our own view");
        // The events describe the view exactly: alive and dead are disjoint and complete.
        assert_eq!(view, self.shadow, "the membership events do not add up to the view");
        let mut timestamps = BTreeMap::new();
        for member in &members {
            // Only validated identities of trusted organizations become members.
            let org = self.orgs.get(&member.pki_id).unwrap_or_else(|| panic!("a member with an unknown PKI-ID: {}", member.pki_id));
            assert!(org == "Org1MSP" || org == "Org2MSP", "a member of an untrusted organization: {org}");
            assert_eq!(&member.org, org, "a member filed under the wrong organization");
            let ts = (member.inc_num, member.seq_num);
            if let Some(previous) = self.timestamps.get(&member.pki_id) {
                assert!(ts >= *previous, "the timestamp of {} went back: {previous:?} -> {ts:?}", member.pki_id);
            }
            timestamps.insert(member.pki_id, ts);
        }
        // A member that was purged may come back with any timestamp later; forget it.
        self.timestamps = timestamps;
    }
}

/// [`CHANNEL`] as the driver reads it: the world's genesis configuration at height 1.
fn channel_snapshot() -> ChannelSnapshot {
    static CONFIG: LazyLock<Arc<ChannelConfig>> =
        LazyLock::new(|| Arc::new(ChannelConfig::from_block(&world().genesis).expect("the fixture genesis block has a config")));
    ChannelSnapshot { id: CHANNEL.into(), height: 1, config: CONFIG.clone() }
}

/// No envelope in `message` (itself, or alive messages inside membership messages) carries a
/// secret.
fn assert_no_secret(message: &SignedMessage) {
    assert!(message.envelope().secret_envelope.is_none(), "an internal endpoint sent to another organization");
    let inner: Vec<&Envelope> = match message.content() {
        Some(Content::MemReq(request)) => request.self_information.iter().collect(),
        Some(Content::MemRes(response)) => response.alive.iter().chain(&response.dead).collect(),
        _ => Vec::new(),
    };
    for envelope in inner {
        assert!(envelope.secret_envelope.is_none(), "an internal endpoint sent to another organization inside {message:?}");
    }
}

/// `gossip_stream`: the input is a [`Stream`] (through `arbitrary`).
pub fn gossip_stream(data: &[u8]) -> Outcome {
    let Ok(stream) = Stream::arbitrary_take_rest(Unstructured::new(data)) else { return Outcome::rejected("not a stream") };
    run_stream(&stream)
}

/// Runs a stream of steps (also used by the seed generator and the property tests).
pub fn run_stream(stream: &Stream) -> Outcome {
    let mut harness = Harness::new(stream.external);
    harness.drain();
    harness.check();
    for step in stream.steps.iter().take(MAX_STEPS) {
        harness.step(step);
    }
    Outcome::Accepted
}
