//! The bad-input catalog, wire half: every case file under the repository's
//! `tests/catalog/wire/` is one gossip message the peer must refuse. The runner builds it (a
//! good message, then the case's mutations), feeds it to the entry point the peer uses, and
//! compares the rejection (the `peer_core_gossip_bad_messages_total{reason}` label and the error) with the case's
//! snapshot in `tests/catalog/snapshots/`. The process half (config, env, MSP, CLI, genesis
//! blocks) is `tests/e2e/catalog.rs`; the format is in `tests/catalog/README.md`.
//!
//! Entry points, each the one the peer's own code path uses:
//! - `decode`: `SignedMessage::from_envelope_with_block_limit`, what the comm reader runs on every
//!   envelope (block limit as for `peer.maxRecvMsgSize` = 2 MiB);
//! - `discovery`: decode, then `Discovery::handle_message` on org1p0 (which trusts Org1MSP and
//!   Org2MSP); the message must not change its membership view;
//! - `state`: decode, then `GossipState::handle_message` on p0 of `gossip_state.rs`'s world
//!   (with leader election on for `leadership` messages); the message must not be committed nor
//!   forwarded;
//! - `comm`: a raw gRPC `GossipStream` to a peer (org2p0, trusting Org1, `peer.maxRecvMsgSize` of
//!   64 KiB) that handshakes as org1p0 and then sends the message; the comm must report it as
//!   rejected and not hand it on.
//!
//! Senders: `org1p0`…`org1p2`, `org2p0`…`org2p2` (trusted), `org3p0` (an MSP nobody trusts),
//! `org1expired` (an Org1 identity whose certificate expired in 2021) for `decode`/`discovery`;
//! `p0`…`p3` (Org1), `q0` (Org2), `r0` (Org3, not in the channel) for `state`; `org1p0` (its
//! handshake identity) for `comm`.
//!
//! Messages (`message:`): `alive` (an AliveMessage of the sender with its identity, timestamp
//! 10/5), `mem-req` (a MembershipRequest carrying the sender's alive message), `mem-res` (a
//! MembershipResponse), `conn` (a ConnEstablish), `empty` (Empty content), `state-info` (height
//! 5, seq 2), `leadership` (a declaration, seq 2), `data` (block 1, as the leader gossips it),
//! `state-response` (blocks 1 and 2), `data-large` (a 100 KiB block).
//!
//! Mutations (`mutate:`, in order; those that change the message re-sign it with the sender's
//! key when it was signed, so later signature mutations apply to the new payload):
//! `high-s`, `forge NAME` (signed by NAME's key), `unsigned`, `garbage-payload`,
//! `empty-payload`, `raw-payload BYTES` (BYTES bytes of 0x01, not a message), `truncate N` (payload cut to N bytes), `truncate-half`, `tag TAG`,
//! `no-content`, `pki-id NAME`, `no-identity`, `no-membership`, `timestamp INC/SEQ`,
//! `pad BYTES` (alive metadata: a valid but oversized message), `secret-forged NAME`,
//! `secret-unsigned`, `self-info NAME` (a mem-req carrying NAME's alive message), `seq N` (a data
//! message whose payload number is not its block's), `mac-garbage` (state info channel MAC),
//! `non-alive` (a mem-res carrying an Empty message).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use peer_core::env::Instant;
use peer_core::gossip::comm::{CommConfig, CommEvent};
use peer_core::gossip::discovery::{Discovery, SelfInfo};
use peer_core::gossip::identity::Identities;
use peer_core::gossip::message::{BadMessage, SignedMessage, Signer, block_message_limit, empty_tag};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use prost::Message;
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{
    AliveMessage, ConnEstablish, Envelope, GossipMessage, Member, MembershipRequest, MembershipResponse, PeerTime, SecretEnvelope,
};
use rand_core::SeedableRng;
use serde::Deserialize;

use crate::gossip_discovery::{self as discovery_world};
use crate::gossip_state;
use peer_core::testkit::epoch;

/// `peer.maxRecvMsgSize` for the `decode` entry (the block limit it implies).
const DECODE_MAX_RECV: usize = 2 << 20;
/// `peer.maxRecvMsgSize` of the `comm` entry's peer (gRPC refuses bigger frames).
const COMM_MAX_RECV: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    entry: String,
    message: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    mutate: Vec<String>,
    /// Messages delivered first and accepted: `good` is the message before its mutations.
    #[serde(default)]
    before: Vec<String>,
}

/// The keys a case may name.
struct Keys(BTreeMap<String, LocalMsp>);

impl Keys {
    fn get(&self, name: &str) -> &LocalMsp {
        self.0.get(name).unwrap_or_else(|| panic!("unknown sender {name}; known: {:?}", self.0.keys().collect::<Vec<_>>()))
    }

    /// The discovery/decode senders: the membership world's orgs, Org3 (untrusted) and an
    /// expired Org1 identity (same CA key as Org1, validity 2020 only).
    fn discovery(orgs: &discovery_world::Orgs) -> Keys {
        let mut keys: BTreeMap<String, LocalMsp> = orgs.peers.clone();
        let spec = OrgSpec { msp_id: "Org3MSP".into(), domain: "org3.example.com".into(), peers: 1 };
        let org3 = generate::generate_org(&spec, &mut generate::org_rng(3, &spec), ValidityWindow::fixed()).unwrap();
        keys.insert("org3p0".into(), LocalMsp::from_files(&org3.peers[0].msp, "Org3MSP", epoch()).unwrap());
        let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers: 3 };
        let expired = ValidityWindow {
            not_before: UNIX_EPOCH + Duration::from_secs(1_577_836_800),
            not_after: UNIX_EPOCH + Duration::from_secs(1_609_459_200),
        };
        let org1_2020 = generate::generate_org(&spec, &mut generate::org_rng(3, &spec), expired).unwrap();
        let mid_2020 = UNIX_EPOCH + Duration::from_secs(1_590_969_600);
        keys.insert("org1expired".into(), LocalMsp::from_files(&org1_2020.peers[2].msp, "Org1MSP", mid_2020).unwrap());
        Keys(keys)
    }
}

/// A message being built: its envelope, its decoded message, and whether it is signed.
struct Built {
    message: GossipMessage,
    envelope: Envelope,
    signed: bool,
}

impl Built {
    fn signed(message: GossipMessage, signer: &LocalMsp) -> Built {
        let (envelope, message) = SignedMessage::sign(message, signer).into_parts();
        Built { message, envelope, signed: true }
    }

    fn from(signed: SignedMessage, is_signed: bool) -> Built {
        let (envelope, message) = signed.into_parts();
        Built { message, envelope, signed: is_signed }
    }

    /// Re-encodes the payload after a change to the message (re-signing if it was signed).
    fn reencode(&mut self, signer: &LocalMsp) {
        self.envelope.payload = self.message.encode_to_vec();
        self.envelope.signature = if self.signed { signer.sign(&self.envelope.payload) } else { Vec::new() };
    }

    fn signed_message(&self) -> SignedMessage {
        SignedMessage::from_parts(self.envelope.clone(), self.message.clone())
    }
}

fn alive_message(sender: &LocalMsp, timestamp: (u64, u64), with_identity: bool) -> GossipMessage {
    empty_tag(
        Content::AliveMsg(AliveMessage {
            membership: Some(Member { endpoint: "x:7051".into(), metadata: Vec::new(), pki_id: sender.pki_id().0.to_vec() }),
            timestamp: Some(PeerTime { inc_num: timestamp.0, seq_num: timestamp.1 }),
            identity: if with_identity { sender.identity.serialize() } else { Vec::new() },
        }),
        0,
    )
}

/// The base message for the `decode`, `discovery` and `comm` entries.
fn base_membership(name: &str, keys: &Keys, sender: &LocalMsp) -> Built {
    match name {
        "alive" => Built::signed(alive_message(sender, (10, 5), true), sender),
        "mem-req" => {
            let self_information = SignedMessage::sign(alive_message(sender, (10, 5), true), sender).into_envelope();
            Built::from(
                SignedMessage::noop_sign(empty_tag(
                    Content::MemReq(MembershipRequest { self_information: Some(self_information), known: Vec::new() }),
                    7,
                )),
                false,
            )
        }
        "mem-res" => {
            let alive = SignedMessage::sign(alive_message(sender, (10, 5), true), sender).into_envelope();
            Built::from(
                SignedMessage::noop_sign(empty_tag(Content::MemRes(MembershipResponse { alive: vec![alive], dead: Vec::new() }), 9)),
                false,
            )
        }
        "conn" => {
            let conn = ConnEstablish {
                pki_id: sender.pki_id().0.to_vec(),
                identity: sender.serialized_identity(),
                tls_cert_hash: Vec::new(),
                probe: false,
            };
            Built::signed(empty_tag(Content::Conn(conn), 0), sender)
        }
        "empty" => Built::signed(empty_tag(Content::Empty(proto::gossip::Empty {}), 0), sender),
        "data" => Built::from(gossip_state::data(1), false),
        "data-large" => {
            let mut block = gossip_state::block(1);
            block.data = Some(proto::common::BlockData { data: vec![vec![7; 100 << 10]] });
            Built::from(peer_core::gossip::state::data_message(gossip_state::CH, &block), false)
        }
        other => {
            let _ = keys;
            panic!("message {other:?} is not one of the membership entries' messages")
        }
    }
}

/// The base message for the `state` entry.
fn base_state(name: &str, world: &gossip_state::World, from: &str) -> Built {
    match name {
        "state-info" => Built::from(world.state_info(from, 5, 2), true),
        "leadership" => Built::from(world.leadership(from, from, 2, true), true),
        "data" => Built::from(gossip_state::data(1), false),
        "state-response" => Built::from(gossip_state::response(77, 1..=2), false),
        other => panic!("message {other:?} is not one of the state entry's messages"),
    }
}

fn parse_tag(name: &str) -> Tag {
    Tag::from_str_name(name).unwrap_or_else(|| panic!("unknown tag {name}"))
}

/// Applies one mutation. `keys` resolves names; `sender` re-signs.
fn mutate(built: &mut Built, mutation: &str, keys: &dyn Fn(&str) -> LocalMsp, sender: &LocalMsp) {
    let words: Vec<&str> = mutation.split_whitespace().collect();
    fn alive<'b>(built: &'b mut Built, mutation: &str) -> &'b mut AliveMessage {
        match built.message.content.as_mut() {
            Some(Content::AliveMsg(alive)) => alive,
            other => panic!("{mutation} needs an alive message, not {other:?}"),
        }
    }
    match words.as_slice() {
        ["high-s"] => built.envelope.signature = crate::gossip_comm::high_s(&built.envelope.signature),
        ["forge", name] => built.envelope.signature = keys(name).sign(&built.envelope.payload),
        ["unsigned"] => built.envelope.signature.clear(),
        ["garbage-payload"] => built.envelope.payload = vec![0xff, 0xff, 0xff],
        ["empty-payload"] => built.envelope.payload.clear(),
        ["raw-payload", bytes] => built.envelope.payload = vec![1; bytes.parse().unwrap()],
        ["truncate", bytes] => built.envelope.payload.truncate(bytes.parse().unwrap()),
        ["truncate-half"] => {
            let half = built.envelope.payload.len() / 2;
            built.envelope.payload.truncate(half);
        }
        ["tag", tag] => {
            built.message.tag = parse_tag(tag) as i32;
            built.reencode(sender);
        }
        ["no-content"] => {
            built.message.content = None;
            built.reencode(sender);
        }
        ["pki-id", name] => {
            alive(built, mutation).membership.as_mut().unwrap().pki_id = keys(name).pki_id().0.to_vec();
            built.reencode(sender);
        }
        ["no-identity"] => {
            alive(built, mutation).identity.clear();
            built.reencode(sender);
        }
        ["no-membership"] => {
            alive(built, mutation).membership = None;
            built.reencode(sender);
        }
        ["timestamp", ts] => {
            let (inc, seq) = ts.split_once('/').expect("timestamp INC/SEQ");
            let timestamp = Some(PeerTime { inc_num: inc.parse().unwrap(), seq_num: seq.parse().unwrap() });
            match built.message.content.as_mut() {
                Some(Content::AliveMsg(m)) => m.timestamp = timestamp,
                Some(Content::StateInfo(m)) => m.timestamp = timestamp,
                Some(Content::LeadershipMsg(m)) => m.timestamp = timestamp,
                other => panic!("{mutation}: no timestamp in {other:?}"),
            }
            built.reencode(sender);
        }
        ["pad", bytes] => {
            alive(built, mutation).membership.as_mut().unwrap().metadata = vec![0x5a; bytes.parse().unwrap()];
            built.reencode(sender);
        }
        ["secret-forged", name] => {
            let signed = built.signed_message().with_internal_endpoint("evil:1", &keys(name));
            built.envelope = signed.into_envelope();
        }
        ["secret-unsigned"] => {
            let signed = built.signed_message().with_internal_endpoint("evil:1", sender);
            built.envelope.secret_envelope =
                Some(SecretEnvelope { signature: Vec::new(), ..signed.into_envelope().secret_envelope.unwrap() });
        }
        ["self-info", name] => {
            let other = keys(name);
            let envelope = SignedMessage::sign(alive_message(&other, (3, 1), true), &other).into_envelope();
            match built.message.content.as_mut() {
                Some(Content::MemReq(request)) => request.self_information = Some(envelope),
                other => panic!("{mutation} needs a mem-req, not {other:?}"),
            }
            built.reencode(sender);
        }
        ["non-alive"] => {
            let empty = SignedMessage::noop_sign(empty_tag(Content::Empty(proto::gossip::Empty {}), 0)).into_envelope();
            match built.message.content.as_mut() {
                Some(Content::MemRes(response)) => response.alive = vec![empty],
                other => panic!("{mutation} needs a mem-res, not {other:?}"),
            }
            built.reencode(sender);
        }
        ["seq", n] => {
            match built.message.content.as_mut() {
                Some(Content::DataMsg(data)) => data.payload.as_mut().unwrap().seq_num = n.parse().unwrap(),
                other => panic!("{mutation} needs a data message, not {other:?}"),
            }
            built.reencode(sender);
        }
        ["mac-garbage"] => {
            match built.message.content.as_mut() {
                Some(Content::StateInfo(info)) => info.channel_mac = vec![0; 32],
                other => panic!("{mutation} needs state info, not {other:?}"),
            }
            built.reencode(sender);
        }
        other => panic!("unknown mutation {other:?}"),
    }
}

/// What became of the message.
enum Outcome {
    /// Refused with a reason (`peer_core_gossip_bad_messages_total{reason}`).
    Rejected(BadMessage),
    /// A data message whose block failed verification: dropped and counted in
    /// `peer_core_gossip_state_invalid_blocks_total`, as the state machine does (not a malformed message).
    InvalidBlock(u64),
    /// Discarded without a reason, as Fabric does for e.g. a StateInfo of no channel we know
    /// (debug log only), and without any effect (checked by the runner).
    Discarded,
    /// Taken: a failure for a catalog case.
    Accepted,
}

impl Outcome {
    fn from_result(result: Result<(), BadMessage>) -> Outcome {
        match result {
            Ok(()) => Outcome::Accepted,
            Err(err) => Outcome::Rejected(err),
        }
    }

    fn text(&self) -> String {
        match self {
            Outcome::Rejected(err) => format!("outcome: rejected\nreason: {}\nerror: {err}\n", err.reason()),
            Outcome::InvalidBlock(seq) => {
                format!("outcome: dropped as an invalid block (block {seq}, counted in peer_core_gossip_state_invalid_blocks_total)\n")
            }
            Outcome::Discarded => "outcome: discarded without effect (nothing stored, committed, forwarded or signalled)\n".to_string(),
            Outcome::Accepted => "outcome: ACCEPTED (a bad message must be refused)\n".to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points.

fn run_decode(case: &Case) -> (Outcome, String) {
    let orgs = discovery_world::orgs();
    let keys = Keys::discovery(&orgs);
    let from = case.from.as_deref().unwrap_or("org1p1");
    let sender = keys.get(from).clone();
    let mut built = base_membership(&case.message, &keys, &sender);
    for mutation in &case.mutate {
        mutate(&mut built, mutation, &|name| keys.get(name).clone(), &sender);
    }
    assert!(case.before.is_empty(), "decode has no state: `before` means nothing");
    let result = SignedMessage::from_envelope_with_block_limit(built.envelope, block_message_limit(DECODE_MAX_RECV)).map(drop);
    (Outcome::from_result(result), String::new())
}

/// org1p0's membership state machine, trusting Org1MSP and Org2MSP.
fn receiver(orgs: &discovery_world::Orgs) -> Discovery {
    let msp = Arc::new(orgs.peers["org1p0"].clone());
    let identities = Identities::new(&msp, orgs.msps.values().cloned());
    let me = SelfInfo {
        pki_id: msp.pki_id(),
        org: "Org1MSP".into(),
        external_endpoint: "org1p0.ext:7051".into(),
        internal_endpoint: "org1p0:7051".into(),
    };
    let signer: Arc<dyn Signer> = msp;
    Discovery::new(
        discovery_world::config(&[], &[]),
        me,
        signer,
        identities,
        rand_chacha::ChaCha20Rng::seed_from_u64(1),
        Instant(0),
        epoch(),
    )
}

fn run_discovery(case: &Case) -> (Outcome, String) {
    let orgs = discovery_world::orgs();
    let keys = Keys::discovery(&orgs);
    let from = case.from.as_deref().unwrap_or("org1p1");
    let sender = keys.get(from).clone();
    let mut d = receiver(&orgs);
    let now = Instant(1_000_000);
    let good = base_membership(&case.message, &keys, &sender);
    for before in &case.before {
        assert_eq!(before, "good", "only `good` can come before");
        let message = SignedMessage::from_envelope(good.envelope.clone()).unwrap();
        d.handle_message(now, sender.pki_id(), message).unwrap_or_else(|e| panic!("the good message was refused: {e}"));
    }
    let members_before = format!("{:?}", d.members());
    let mut built = good;
    for mutation in &case.mutate {
        mutate(&mut built, mutation, &|name| keys.get(name).clone(), &sender);
    }
    // As the comm reader does: decode first; only a decoded message reaches the state machine.
    let result = SignedMessage::from_envelope(built.envelope).and_then(|message| d.handle_message(now, sender.pki_id(), message));
    assert_eq!(format!("{:?}", d.members()), members_before, "{}: the refused message changed the membership view", case.description);
    (Outcome::from_result(result), String::new())
}

fn run_state(case: &Case) -> (Outcome, String) {
    // Leadership messages matter only with leader election on (otherwise they are ignored).
    let config = if case.message == "leadership" { gossip_state::electing() } else { gossip_state::config() };
    let mut world = gossip_state::World::new(config, 1);
    let from = case.from.as_deref().unwrap_or("p1");
    let sender = world.peers[from].clone();
    let good = base_state(&case.message, &world, from);
    for before in &case.before {
        assert_eq!(before, "good", "only `good` can come before");
        let message = SignedMessage::from_envelope(good.envelope.clone()).unwrap();
        world.receive(from, message).unwrap_or_else(|e| panic!("the good message was refused: {e}"));
    }
    let (committed, sent, events) = (world.committed.clone(), world.sent.len(), world.events.len());
    let peers_before = world.state.peers_of_channel(gossip_state::CH);
    let mut built = good;
    let peers = world.peers.clone();
    for mutation in &case.mutate {
        mutate(&mut built, mutation, &|name| peers[name].clone(), &sender);
    }
    let block_limit = block_message_limit(DECODE_MAX_RECV);
    let result =
        SignedMessage::from_envelope_with_block_limit(built.envelope, block_limit).and_then(|message| world.receive(from, message));
    assert_eq!(world.committed, committed, "{}: the refused message was committed", case.description);
    assert_eq!(world.sent.len(), sent, "{}: the refused message made the peer send something", case.description);
    let invalid = world.events[events..].iter().find_map(|event| match event {
        peer_core::gossip::state::StateEvent::InvalidBlock { seq, .. } => Some(*seq),
        _ => None,
    });
    let unchanged = world.state.peers_of_channel(gossip_state::CH) == peers_before && world.events.len() == events;
    let outcome = match (result, invalid) {
        (Ok(()), Some(seq)) => Outcome::InvalidBlock(seq),
        (Ok(()), None) if unchanged => Outcome::Discarded,
        (result, _) => Outcome::from_result(result),
    };
    (outcome, String::new())
}

fn run_comm(case: &Case) -> (Outcome, String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut world = crate::gossip_comm::World::new();
        let orgs = crate::gossip_comm::orgs();
        let config = CommConfig { max_recv_msg_size: COMM_MAX_RECV, ..CommConfig::default() };
        let mut b = world.peer(crate::gossip_comm::local_msp(&orgs.org2, 0), &[&orgs.org1], 8051, config).await;
        let x = crate::gossip_comm::local_msp(&orgs.org1, 0);
        assert_eq!(case.from.as_deref().unwrap_or("org1p0"), "org1p0", "the comm entry's sender is its handshake identity");
        let keys =
            Keys(BTreeMap::from([("org1p0".to_string(), x.clone()), ("org1p1".to_string(), crate::gossip_comm::local_msp(&orgs.org1, 1))]));
        let (mut inbound, sink) =
            crate::gossip_comm::raw_stream(&world, 8051, Some(crate::gossip_comm::conn_envelope(&x, x.pki_id()).into_envelope())).await;
        inbound.message().await.unwrap().unwrap();
        match crate::gossip_comm::next_event(&mut b.events).await {
            CommEvent::ConnectionUp { pki_id, .. } => assert_eq!(pki_id, x.pki_id()),
            other => panic!("{other:?}"),
        }
        let log_mark = world.logs.lines().len();
        let mut built = base_membership(&case.message, &keys, &x);
        for mutation in &case.mutate {
            mutate(&mut built, mutation, &|name| keys.get(name).clone(), &x);
        }
        sink.send(built.envelope).await.unwrap();
        let result = loop {
            match crate::gossip_comm::next_event(&mut b.events).await {
                CommEvent::Rejected { from, error } => {
                    assert_eq!(from, Some(x.pki_id()));
                    break Err(error);
                }
                CommEvent::Message { .. } => break Ok(()),
                CommEvent::ConnectionDown { .. } => panic!("{}: the connection ended without a rejection", case.description),
                _ => {}
            }
        };
        // What the comm logged about it (after the handshake), at WARN and above.
        let log: String = world.logs.lines()[log_mark..]
            .iter()
            .filter(|line| !line.starts_with("DEBUG") && !line.starts_with("INFO"))
            .map(|line| format!("log: {line}\n"))
            .collect();
        drop(sink);
        (Outcome::from_result(result), log)
    })
}

fn run_case(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let case: Case = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (result, extra) = match case.entry.as_str() {
        "decode" => run_decode(&case),
        "discovery" => run_discovery(&case),
        "state" => run_state(&case),
        "comm" => run_comm(&case),
        other => panic!("{}: unknown entry {other}", path.display()),
    };
    assert!(!matches!(result, Outcome::Accepted), "{}: the message was accepted", path.display());
    let mut out = format!("{}\n", case.description.trim());
    out.push_str(&format!("entry: {}\nmessage: {}", case.entry, case.message));
    if let Some(from) = &case.from {
        out.push_str(&format!(" from {from}"));
    }
    if !case.mutate.is_empty() {
        out.push_str(&format!(", mutated: {}", case.mutate.join(", ")));
    }
    if !case.before.is_empty() {
        out.push_str(&format!(", after: {}", case.before.join(", ")));
    }
    out.push('\n');
    out.push_str(&result.text());
    out.push_str(&extra);
    out
}

#[test]
fn wire() {
    let count = std::cell::Cell::new(0);
    insta::with_settings!({
        snapshot_path => "../../../tests/catalog/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("../../../tests/catalog", "wire/*.yaml", |path| {
            count.set(count.get() + 1);
            insta::assert_snapshot!("wire", run_case(path));
        });
    });
    assert!(count.get() > 0, "no cases in tests/catalog/wire");
}
