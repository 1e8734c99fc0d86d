//! The channel-level gossip state machine driven with explicit time: no sockets, no ledger, no
//! async. One peer under test ("p0" of Org1) with its peers p1, p2 (Org1) and q0 (Org2) as
//! message sources; the ledger is the test's `committed` list, fed back through
//! `handle_committed` as the driver does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peer_core::env::Instant;
use peer_core::gossip::discovery::Transmit;
use peer_core::gossip::election::ElectionConfig;
use peer_core::gossip::identity::Identities;
use peer_core::gossip::message::{BadMessage, SignedMessage};
use peer_core::gossip::state::{self, BlockVerifier, ChannelInfo, GossipState, Member, Serve, StateConfig, StateEvent};
use peer_core::ledger::block::new_block;
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::msp::identity::PkiId;
use peer_core::msp::{LocalMsp, Msp};
use peer_core::testkit::epoch;
use proto::common::Block;
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{
    GossipMessage, LeadershipMessage, PeerTime, Properties, RemoteStateRequest, RemoteStateResponse, StateInfo, StateInfoPullRequest,
    StateInfoSnapshot,
};
use rand_core::SeedableRng;

pub(crate) const CH: &str = "mychannel";

pub(crate) fn config() -> StateConfig {
    StateConfig {
        state: peer_core::config::StateConfig {
            enabled: true,
            check_interval: Duration::from_secs(10),
            response_timeout: Duration::from_secs(3),
            batch_size: 10,
            block_buffer_size: 20,
            max_retries: 3,
            channel_size: 100,
        },
        publish_state_info_interval: Duration::from_secs(4),
        request_state_info_interval: Duration::from_secs(4),
        pull_peer_num: 3,
        propagate_peer_num: 3,
        max_block_count_to_store: 10,
        has_external_endpoint: false,
        use_leader_election: false,
        org_leader: false,
        election: ElectionConfig {
            startup_grace_period: Duration::from_secs(15),
            membership_sample_interval: Duration::from_secs(1),
            leader_alive_threshold: Duration::from_secs(10),
            leader_election_duration: Duration::from_secs(5),
        },
    }
}

pub(crate) fn electing() -> StateConfig {
    StateConfig { use_leader_election: true, ..config() }
}

/// Accepts every block except those whose number is in `forged`.
struct FakeVerifier(Arc<Mutex<BTreeSet<u64>>>);

impl BlockVerifier for FakeVerifier {
    fn verify(&self, _channel: &str, seq: u64, block: &Block) -> Result<(), String> {
        if block.header.as_ref().map(|h| h.number) != Some(seq) {
            return Err("wrong number".into());
        }
        if self.0.lock().unwrap().contains(&seq) { Err("forged".into()) } else { Ok(()) }
    }
}

pub(crate) struct World {
    pub(crate) peers: BTreeMap<String, LocalMsp>,
    pub(crate) state: GossipState,
    /// The identity store the aggregate would lend the channel layer: every peer is known.
    identities: Identities,
    now: Instant,
    forged: Arc<Mutex<BTreeSet<u64>>>,
    /// The "ledger": committed block numbers in commit order.
    pub(crate) committed: Vec<u64>,
    pub(crate) sent: Vec<(PkiId, SignedMessage)>,
    serves: Vec<Serve>,
    pub(crate) events: Vec<StateEvent>,
}

impl World {
    pub(crate) fn new(config: StateConfig, height: u64) -> World {
        let mut msps = Vec::new();
        let mut peers = BTreeMap::new();
        for (msp_id, domain, prefix, count) in [("Org1MSP", "org1", "p", 4), ("Org2MSP", "org2", "q", 1), ("Org3MSP", "org3", "r", 1)] {
            let spec = OrgSpec { msp_id: msp_id.into(), domain: format!("{domain}.example.com"), peers: count };
            let org = generate::generate_org(&spec, &mut generate::org_rng(5, &spec), ValidityWindow::fixed()).unwrap();
            msps.push(Msp::from_files(&org.msp, msp_id).unwrap());
            for (i, peer) in org.peers.iter().enumerate() {
                peers.insert(format!("{prefix}{i}"), LocalMsp::from_files(&peer.msp, msp_id, epoch()).unwrap());
            }
        }
        let me = peers["p0"].clone();
        let mut identities = Identities::new(&me, msps);
        for msp in peers.values() {
            identities.put(&msp.pki_id().0, &msp.identity.serialize(), epoch()).unwrap();
        }
        let forged = Arc::new(Mutex::new(BTreeSet::new()));
        let state = GossipState::new(
            config,
            Arc::new(me),
            Box::new(FakeVerifier(forged.clone())),
            rand_chacha::ChaCha20Rng::seed_from_u64(9),
            Instant(0),
            epoch(),
        );
        let mut world = World {
            peers,
            state,
            identities,
            now: Instant(0),
            forged,
            committed: Vec::new(),
            sent: Vec::new(),
            serves: Vec::new(),
            events: Vec::new(),
        };
        world.committed = (0..height).collect();
        world.sync();
        world
    }

    pub(crate) fn pki(&self, name: &str) -> PkiId {
        self.peers[name].pki_id()
    }

    fn height(&self) -> u64 {
        self.committed.len() as u64
    }

    /// Channel (Org1, Org2), alive members p1, p2, p3, q0, r0.
    fn sync(&mut self) {
        let orgs = ["Org1MSP", "Org2MSP"].into_iter().map(String::from).collect();
        self.state.handle_channels(self.now, vec![ChannelInfo { id: CH.into(), height: self.height(), orgs }]);
        let members = ["p1", "p2", "p3", "q0", "r0"]
            .into_iter()
            .map(|n| Member {
                pki_id: self.pki(n),
                org: self.peers[n].identity.msp_id.clone(),
                endpoint: format!("{n}:7051"),
                has_external_endpoint: true,
            })
            .collect();
        self.state.handle_membership(members);
        self.drain();
    }

    /// Carries out outputs as the driver does: commits go to the "ledger" in order.
    fn drain(&mut self) {
        while let Some((channel, block)) = self.state.poll_commit() {
            let number = block.header.unwrap().number;
            assert_eq!(number, self.height(), "never committed out of order");
            self.committed.push(number);
            self.state.handle_committed(self.now, &channel, Ok(self.height()));
        }
        while let Some(Transmit::Send { to, message, .. }) = self.state.poll_transmit() {
            self.sent.push((to, message));
        }
        while let Some(serve) = self.state.poll_serve() {
            self.serves.push(serve);
        }
        while let Some(event) = self.state.poll_event() {
            self.events.push(event);
        }
    }

    pub(crate) fn receive(&mut self, from: &str, message: SignedMessage) -> Result<(), BadMessage> {
        let result = self.state.handle_message(self.now, self.pki(from), message, &self.identities);
        self.drain();
        result
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            let next = self.state.poll_timeout();
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            self.state.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// StateInfo signed by `name` at `height`, timestamp `seq`.
    pub(crate) fn state_info(&self, name: &str, height: u64, seq: u64) -> SignedMessage {
        let pki = self.pki(name);
        let info = StateInfo {
            timestamp: Some(PeerTime { inc_num: 1, seq_num: seq }),
            pki_id: pki.0.to_vec(),
            channel_mac: state::channel_mac(&pki.0, CH),
            properties: Some(Properties { ledger_height: height, left_channel: false, chaincodes: Vec::new() }),
        };
        let message = GossipMessage { nonce: 0, channel: Vec::new(), tag: Tag::ChanOrOrg as i32, content: Some(Content::StateInfo(info)) };
        SignedMessage::sign(message, &self.peers[name])
    }

    /// A LeadershipMessage created by `creator`, signed by `signer`.
    pub(crate) fn leadership(&self, creator: &str, signer: &str, seq: u64, declaration: bool) -> SignedMessage {
        let message = GossipMessage {
            nonce: 0,
            channel: CH.as_bytes().to_vec(),
            tag: Tag::ChanAndOrg as i32,
            content: Some(Content::LeadershipMsg(LeadershipMessage {
                pki_id: self.pki(creator).0.to_vec(),
                timestamp: Some(PeerTime { inc_num: 1, seq_num: seq }),
                is_declaration: declaration,
            })),
        };
        SignedMessage::sign(message, &self.peers[signer])
    }

    /// LeadershipMessages sent, as (recipient, is_declaration).
    fn leadership_sent(&self) -> Vec<(PkiId, bool)> {
        self.sent
            .iter()
            .filter_map(|(to, m)| match m.content() {
                Some(Content::LeadershipMsg(l)) => Some((*to, l.is_declaration)),
                _ => None,
            })
            .collect()
    }

    fn leadership_events(&self) -> Vec<bool> {
        self.events.iter().filter_map(|e| if let StateEvent::Leadership { leader, .. } = e { Some(*leader) } else { None }).collect()
    }

    /// Data messages sent, as (recipient, seq).
    fn data_sent(&self) -> Vec<(PkiId, u64)> {
        self.sent
            .iter()
            .filter_map(|(to, m)| match m.content() {
                Some(Content::DataMsg(d)) => Some((*to, d.payload.as_ref().unwrap().seq_num)),
                _ => None,
            })
            .collect()
    }

    fn requests(&self) -> Vec<(PkiId, u64, u64, u64)> {
        self.sent
            .iter()
            .filter_map(|(to, m)| match m.content() {
                Some(Content::StateRequest(r)) => Some((*to, r.start_seq_num, r.end_seq_num, m.message().nonce)),
                _ => None,
            })
            .collect()
    }
}

pub(crate) fn block(n: u64) -> Block {
    new_block(n, &[], Vec::new())
}

pub(crate) fn data(n: u64) -> SignedMessage {
    state::data_message(CH, &block(n))
}

pub(crate) fn response(nonce: u64, range: std::ops::RangeInclusive<u64>) -> SignedMessage {
    let payloads = range
        .map(|n| proto::gossip::Payload { seq_num: n, data: prost::Message::encode_to_vec(&block(n)), private_data: Vec::new() })
        .collect();
    SignedMessage::noop_sign(GossipMessage {
        nonce,
        channel: CH.as_bytes().to_vec(),
        tag: Tag::ChanOrOrg as i32,
        content: Some(Content::StateResponse(RemoteStateResponse { payloads })),
    })
}

#[test]
fn out_of_order_blocks_are_buffered_and_committed_in_order_once() {
    let mut world = World::new(config(), 1);
    for n in [3, 2] {
        world.receive("p1", data(n)).unwrap();
    }
    assert_eq!(world.committed, vec![0]);
    assert_eq!(world.state.buffer_size(CH), 2);
    world.receive("p1", data(1)).unwrap();
    assert_eq!(world.committed, vec![0, 1, 2, 3]);
    assert_eq!(world.state.buffer_size(CH), 0);
    // The same block again is a duplicate: not buffered, not forwarded.
    let sent = world.sent.len();
    assert_eq!(world.receive("p2", data(2)), Err(BadMessage::Stale));
    assert_eq!(world.sent.len(), sent);
    assert_eq!(world.committed, vec![0, 1, 2, 3]);
}

#[test]
fn blocks_beyond_the_buffer_are_dropped() {
    let mut world = World::new(config(), 1);
    // height 1, blockBufferSize 20: 20 is the last that fits (20 - 1 < 20), 21 does not.
    world.receive("p1", data(20)).unwrap();
    world.receive("p1", data(21)).unwrap();
    assert_eq!(world.state.buffer_size(CH), 1);
}

#[test]
fn a_new_block_is_forwarded_to_our_org_peers_in_the_channel_but_not_the_sender() {
    let mut world = World::new(config(), 1);
    // Only peers that published StateInfo are in the channel.
    for name in ["p1", "p2", "q0"] {
        let info = world.state_info(name, 1, 1);
        world.receive(name, info).unwrap();
    }
    world.sent.clear();
    world.receive("p1", data(1)).unwrap();
    let recipients: BTreeSet<PkiId> = world.data_sent().into_iter().map(|(to, _)| to).collect();
    assert_eq!(recipients, BTreeSet::from([world.pki("p2")]), "p3 has no StateInfo, q0 is another org, p1 sent it");
    // A leader's own block goes to up to three of them.
    world.sent.clear();
    world.state.handle_local_block(world.now, CH, &block(2));
    world.drain();
    let recipients: BTreeSet<PkiId> = world.data_sent().into_iter().map(|(to, _)| to).collect();
    assert_eq!(recipients, BTreeSet::from([world.pki("p1"), world.pki("p2")]));
    // The leader's block is in the store: hearing it back is a duplicate.
    assert_eq!(world.receive("p1", data(2)), Err(BadMessage::Stale));
}

#[test]
fn a_forged_block_is_dropped_not_forwarded_and_not_committed() {
    let mut world = World::new(config(), 1);
    world.forged.lock().unwrap().insert(1);
    let info = world.state_info("p2", 1, 1);
    world.receive("p2", info).unwrap();
    world.sent.clear();
    world.receive("p1", data(1)).unwrap();
    assert_eq!(world.committed, vec![0]);
    assert!(world.data_sent().is_empty());
    assert_eq!(world.events, vec![StateEvent::InvalidBlock { channel: CH.into(), seq: 1 }]);
    // A data message from a peer of an org outside the channel is ignored.
    world.forged.lock().unwrap().clear();
    world.receive("r0", data(1)).unwrap();
    assert_eq!(world.committed, vec![0]);
}

#[test]
fn state_info_keeps_the_newest_per_peer_and_rejects_forgeries() {
    let mut world = World::new(config(), 1);
    let newer = world.state_info("q0", 7, 2);
    let older = world.state_info("q0", 5, 1);
    world.receive("q0", newer).unwrap();
    assert_eq!(world.receive("p1", older), Err(BadMessage::Stale));
    assert_eq!(world.state.peers_of_channel(CH), vec![(world.pki("q0"), 7)]);
    // Signed by someone else than its PKI-ID.
    let (mut envelope, message) = world.state_info("q0", 9, 3).into_parts();
    envelope.signature = world.state_info("p1", 9, 3).envelope().signature.clone();
    let forged = SignedMessage::from_parts(envelope, message);
    assert!(matches!(world.receive("p1", forged), Err(BadMessage::BadSignature(_) | BadMessage::HighS)));
    assert_eq!(world.state.peers_of_channel(CH), vec![(world.pki("q0"), 7)]);
}

#[test]
fn state_info_is_published_with_our_height() {
    let mut world = World::new(config(), 3);
    world.advance(Duration::from_secs(1));
    let infos: Vec<u64> = world
        .sent
        .iter()
        .filter_map(|(_, m)| match m.content() {
            Some(Content::StateInfo(i)) => Some(i.properties.as_ref().unwrap().ledger_height),
            _ => None,
        })
        .collect();
    assert!(!infos.is_empty() && infos.iter().all(|h| *h == 3), "{infos:?}");
    // Signed (unlike data messages), for our org's peers only (no external endpoint).
    let (to, message) = world.sent.iter().find(|(_, m)| matches!(m.content(), Some(Content::StateInfo(_)))).unwrap();
    assert!(!message.envelope().signature.is_empty());
    assert_eq!(world.peers.values().find(|p| p.pki_id() == *to).unwrap().identity.msp_id, "Org1MSP");
}

#[test]
fn anti_entropy_asks_a_peer_ahead_retries_then_gives_up() {
    let mut world = World::new(config(), 2);
    let info = world.state_info("q0", 30, 1);
    world.receive("q0", info).unwrap();
    let info = world.state_info("p1", 2, 1);
    world.receive("p1", info).unwrap();
    world.sent.clear();
    world.advance(Duration::from_secs(10));
    // Only q0 is ahead; the first batch is [2, 12] (batchSize 10 past our height).
    let requests = world.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, world.pki("q0"));
    assert_eq!((requests[0].1, requests[0].2), (2, 12));
    // No answer: asked again every responseTimeout, 1 + maxRetries times in all.
    world.advance(Duration::from_secs(3 * 5));
    assert_eq!(world.requests().len(), 4);
    assert!(world.requests().iter().all(|r| (r.1, r.2) == (2, 12)));
    assert_eq!(world.height(), 2);
}

#[test]
fn a_state_response_is_committed_in_order_and_the_next_batch_requested() {
    let mut world = World::new(config(), 2);
    let info = world.state_info("p1", 16, 1);
    world.receive("p1", info).unwrap();
    world.sent.clear();
    world.advance(Duration::from_secs(10));
    let (_, start, end, nonce) = world.requests()[0];
    assert_eq!((start, end), (2, 12));
    // A response with another nonce is not for us.
    world.receive("p1", response(nonce.wrapping_add(1), 2..=12)).unwrap();
    assert_eq!(world.height(), 2);
    // Blocks out of order in the response are still committed in order.
    let (envelope, mut message) = response(nonce, 2..=12).into_parts();
    if let Some(Content::StateResponse(r)) = &mut message.content {
        r.payloads.reverse();
    }
    let reply = SignedMessage::from_parts(envelope, message);
    world.receive("p1", reply).unwrap();
    assert_eq!(world.height(), 13);
    let (_, start, end, nonce) = *world.requests().last().unwrap();
    assert_eq!((start, end), (13, 15));
    // A forged block in a response: nothing from it is taken.
    world.forged.lock().unwrap().insert(14);
    world.receive("p1", response(nonce, 13..=15)).unwrap();
    assert_eq!(world.height(), 13);
    world.forged.lock().unwrap().clear();
    world.receive("p1", response(nonce, 13..=15)).unwrap();
    assert_eq!(world.height(), 16);
}

#[test]
fn state_requests_from_channel_members_are_served_within_the_batch_size() {
    let mut world = World::new(config(), 5);
    let request = |start, end| {
        SignedMessage::noop_sign(GossipMessage {
            nonce: 77,
            channel: CH.as_bytes().to_vec(),
            tag: Tag::ChanOrOrg as i32,
            content: Some(Content::StateRequest(RemoteStateRequest { start_seq_num: start, end_seq_num: end })),
        })
    };
    world.receive("q0", request(1, 4)).unwrap();
    assert!(world.receive("q0", request(4, 1)).is_err());
    assert!(world.receive("q0", request(0, 11)).is_err());
    world.receive("r0", request(1, 2)).unwrap();
    assert_eq!(world.serves.len(), 1);
    let serve = &world.serves[0];
    assert_eq!((serve.to, serve.nonce, serve.start, serve.end), (world.pki("q0"), 77, 1, 4));
    // The response: blocks up to our height, bounded in size.
    let reply = state::state_response(serve, 3, 1 << 20, |n| Some(block(n)));
    let Some(Content::StateResponse(r)) = reply.content() else { panic!() };
    assert_eq!(r.payloads.iter().map(|p| p.seq_num).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(reply.message().nonce, 77);
    let reply = state::state_response(serve, 5, 10, |n| Some(block(n)));
    let Some(Content::StateResponse(r)) = reply.content() else { panic!() };
    assert_eq!(r.payloads.len(), 1, "at least one block, then the size bound");
}

// ---------------------------------------------------------------------------------------------
// Leader election over the channel layer.

/// p1, p2 and p3 (Org1) publish StateInfo, so they are in p0's election view.
fn org_view(world: &mut World) {
    for (i, name) in ["p1", "p2", "p3", "q0"].into_iter().enumerate() {
        let info = world.state_info(name, 1, 10 + i as u64);
        world.receive(name, info).unwrap();
    }
}

#[test]
fn with_election_a_lone_candidate_proposes_to_its_org_and_then_declares() {
    let mut world = World::new(electing(), 1);
    assert_eq!(world.leadership_events(), vec![false], "the election starts as a follower");
    org_view(&mut world);
    world.sent.clear();
    world.advance(Duration::from_secs(2));
    // The view stopped changing: a proposal to the org's peers in the channel (never Org2's).
    let org1: BTreeSet<PkiId> = ["p1", "p2", "p3"].into_iter().map(|n| world.pki(n)).collect();
    let sent = world.leadership_sent();
    assert!(!sent.is_empty() && sent.iter().all(|(to, declaration)| org1.contains(to) && !declaration), "{sent:?}");
    world.sent.clear();
    world.advance(Duration::from_secs(5));
    assert_eq!(world.leadership_events(), vec![false, true]);
    assert!(world.state.is_leader(CH));
    assert!(world.leadership_sent().iter().all(|(to, declaration)| org1.contains(to) && *declaration));
}

#[test]
fn with_election_a_smaller_declaring_id_takes_leadership_and_yielding_steps_down() {
    let mut world = World::new(electing(), 1);
    org_view(&mut world);
    world.advance(Duration::from_secs(7));
    assert!(world.state.is_leader(CH));
    // Whichever Org1 peer has a smaller PKI-ID than p0 wins a declaration; a larger one does not.
    let (smaller, larger): (Vec<&str>, Vec<&str>) = ["p1", "p2", "p3"].into_iter().partition(|n| world.pki(n) < world.pki("p0"));
    for name in &larger {
        let message = world.leadership(name, name, 1, true);
        world.receive(name, message).unwrap();
        assert!(world.state.is_leader(CH), "a larger ID ({name}) does not take over");
    }
    if let Some(name) = smaller.first() {
        let message = world.leadership(name, name, 1, true);
        world.receive(name, message).unwrap();
        assert!(!world.state.is_leader(CH), "a smaller ID ({name}) takes over");
        assert_eq!(world.leadership_events().last(), Some(&false));
    } else {
        // p0 has the smallest ID: it keeps leading until its deliver client gives up.
        world.state.handle_yield(world.now, CH);
        world.drain();
        assert!(!world.state.is_leader(CH));
        assert_eq!(world.leadership_events().last(), Some(&false));
    }
}

#[test]
fn leadership_messages_from_other_orgs_forged_or_stale_are_refused() {
    let mut world = World::new(electing(), 1);
    org_view(&mut world);
    world.advance(Duration::from_secs(7));
    assert!(world.state.is_leader(CH));
    let smallest = ["p1", "p2", "p3"].into_iter().min_by_key(|n| world.pki(n)).unwrap();
    // Created by Org2's q0: ignored, whatever its ID.
    let foreign = world.leadership("q0", "q0", 1, true);
    assert_eq!(world.receive("q0", foreign), Ok(()));
    let relayed = world.leadership("q0", "q0", 2, true);
    assert_eq!(world.receive("p1", relayed), Ok(()));
    // Claims to be from an Org1 peer but signed by another: a bad signature.
    let forged = world.leadership(smallest, "p2", 1, true);
    let forged = if smallest == "p2" { world.leadership(smallest, "p3", 1, true) } else { forged };
    assert!(matches!(world.receive("p1", forged), Err(BadMessage::BadSignature(_))), "forged declaration accepted");
    let before = world.state.is_leader(CH);
    // A genuine one, then the same again (stale).
    let genuine = world.leadership(smallest, smallest, 5, false);
    assert_eq!(world.receive(smallest, genuine.clone()), Ok(()));
    assert_eq!(world.receive(smallest, genuine), Err(BadMessage::Stale));
    assert_eq!(world.state.is_leader(CH), before, "proposals never change a leader");
}

// ---------------------------------------------------------------------------------------------
// StateInfo pull.

fn pull_request(world: &World, name: &str) -> SignedMessage {
    let mac = state::channel_mac(&world.pki(name).0, CH);
    SignedMessage::noop_sign(GossipMessage {
        nonce: 0,
        channel: Vec::new(),
        tag: Tag::ChanOrOrg as i32,
        content: Some(Content::StateInfoPullReq(StateInfoPullRequest { channel_mac: mac })),
    })
}

fn snapshot_sent_to(world: &World, to: PkiId) -> Option<Vec<PkiId>> {
    world.sent.iter().rev().find_map(|(recipient, m)| match m.content() {
        Some(Content::StateSnapshot(s)) if *recipient == to => Some(
            s.elements
                .iter()
                .map(|e| match SignedMessage::from_envelope(e.clone()).unwrap().content() {
                    Some(Content::StateInfo(i)) => PkiId::from_slice(&i.pki_id).unwrap(),
                    other => panic!("not a StateInfo: {other:?}"),
                })
                .collect(),
        ),
        _ => None,
    })
}

fn snapshot(world: &World, of: &[(&str, u64, u64)]) -> SignedMessage {
    let elements = of.iter().map(|(name, height, seq)| world.state_info(name, *height, *seq).into_envelope()).collect();
    SignedMessage::noop_sign(GossipMessage {
        nonce: 0,
        channel: CH.as_bytes().to_vec(),
        tag: Tag::ChanOrOrg as i32,
        content: Some(Content::StateSnapshot(StateInfoSnapshot { elements })),
    })
}

#[test]
fn state_info_is_pulled_from_channel_members_every_request_interval() {
    let mut world = World::new(config(), 1);
    let pulls = |world: &World| world.sent.iter().filter(|(_, m)| matches!(m.content(), Some(Content::StateInfoPullReq(_)))).count();
    world.advance(Duration::ZERO);
    let first = pulls(&world);
    assert!(first > 0 && first <= 3, "pullPeerNum requests at join, got {first}");
    world.advance(Duration::from_secs(4));
    assert_eq!(pulls(&world), first * 2, "and again after requestStateInfoInterval");
    // Never to r0: Org3 is not in the channel.
    assert!(world.sent.iter().all(|(to, m)| !matches!(m.content(), Some(Content::StateInfoPullReq(_))) || *to != world.pki("r0")));
}

#[test]
fn a_pull_request_is_answered_with_the_newest_state_info_of_each_peer() {
    let mut world = World::new(config(), 3);
    world.advance(Duration::from_secs(1));
    for (name, seq) in [("p1", 5), ("p2", 5), ("q0", 5)] {
        let info = world.state_info(name, 7, seq);
        world.receive(name, info).unwrap();
    }
    // Our org: everything we hold, our own StateInfo included.
    let request = pull_request(&world, "p3");
    world.receive("p3", request).unwrap();
    let mut got = snapshot_sent_to(&world, world.pki("p3")).expect("a snapshot for p3");
    got.sort();
    let mut want: Vec<PkiId> = ["p0", "p1", "p2", "q0"].into_iter().map(|n| world.pki(n)).collect();
    want.sort();
    assert_eq!(got, want);
    // Another org's peer: Org1's StateInfo only for members with an external endpoint (all of
    // them here, except p0 itself, which has none).
    let request = pull_request(&world, "q0");
    world.receive("q0", request).unwrap();
    let got = snapshot_sent_to(&world, world.pki("q0")).expect("a snapshot for q0");
    assert!(!got.contains(&world.pki("p0")), "p0 has no external endpoint: not disclosed to Org2");
    assert!(got.contains(&world.pki("p1")));
    // A request whose MAC is not the sender's for a joined channel gets nothing.
    let before = world.sent.len();
    let forged = pull_request(&world, "p1");
    world.receive("p2", forged).unwrap();
    assert!(world.sent[before..].iter().all(|(_, m)| !matches!(m.content(), Some(Content::StateSnapshot(_)))));
}

#[test]
fn a_snapshot_teaches_heights_without_forwarding_and_stops_at_a_forgery() {
    let mut world = World::new(config(), 1);
    let before = world.sent.len();
    let message = snapshot(&world, &[("p1", 9, 5), ("q0", 4, 5)]);
    world.receive("p2", message).unwrap();
    let heights: BTreeMap<PkiId, u64> = world.state.peers_of_channel(CH).into_iter().collect();
    assert_eq!(heights.get(&world.pki("p1")), Some(&9));
    assert_eq!(heights.get(&world.pki("q0")), Some(&4));
    assert!(world.sent[before..].iter().all(|(_, m)| !matches!(m.content(), Some(Content::StateInfo(_)))), "snapshots are not forwarded");
    // An element signed by someone else than its origin: refused, and nothing after it is taken.
    let mut forged = world.state_info("p2", 50, 9).into_envelope();
    forged.signature = world.state_info("p3", 50, 9).envelope().signature.clone();
    let (_, mut message) = snapshot(&world, &[("p3", 11, 9)]).into_parts();
    if let Some(Content::StateSnapshot(s)) = &mut message.content {
        s.elements.insert(0, forged);
    }
    let message = SignedMessage::noop_sign(message);
    assert!(matches!(world.receive("p1", message), Err(BadMessage::BadSignature(_))));
    let heights: BTreeMap<PkiId, u64> = world.state.peers_of_channel(CH).into_iter().collect();
    assert_eq!(heights.get(&world.pki("p2")), None);
    assert_eq!(heights.get(&world.pki("p3")), None);
}
