//! Seed inputs for every target, generated deterministically from the fixed world: signed
//! gossip messages, orderer-signed blocks, genesis blocks, signed proposals, and fixed-seed
//! random bytes for the targets that read their input through `arbitrary`.
//!
//! A seed's name says what it must do: `ok-*` is accepted, `bad-*` is refused, anything else
//! may go either way. The corpus tests hold every seed (generated here, and the committed
//! files in `fuzz/corpus/`) to that. `cargo run -p fuzz-entry --bin fuzz-seeds` writes these
//! seeds, plus copies of the repository's own example files, into `fuzz/corpus/<target>/`.

use std::time::Duration;

use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::gossip::message::{SignedMessage, empty_tag};
use peer_core::gossip::state::{channel_mac, data_message};
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::LocalMsp;
use peer_core::proposal::{Invocation, signed_proposal};
use prost::Message;
use proto::common::{Block, HeaderType};
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{
    AliveMessage, ConnEstablish, GossipMessage, LeadershipMessage, Member, MembershipRequest, MembershipResponse, PeerTime, Properties,
    RemoteStateRequest, RemoteStateResponse, StateInfo,
};
use rand_core::{Rng, SeedableRng};

use crate::world::{CHANNEL, World, next_block, transaction, world};
use peer_core::testkit::epoch;

/// One seed input of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &str, bytes: Vec<u8>) -> Seed {
    Seed { target, name: name.to_string(), bytes }
}

/// Every generated seed, in a fixed order.
pub fn seeds() -> Vec<Seed> {
    let mut all = Vec::new();
    all.extend(config_seeds());
    all.extend(random_seeds("env_overrides", 0xE1, 24));
    all.extend(gossip_envelope_seeds());
    all.extend(random_seeds("gossip_stream", 0x57, 24));
    all.extend(block_seeds());
    all.extend(genesis_seeds());
    all.extend(proposal_seeds());
    all.extend(scenario_seeds());
    all
}

/// `count` byte strings of 16 to 1024 bytes from a fixed-seed stream: every such string is a
/// meaningful input to a target that reads through `arbitrary`.
fn random_seeds(target: &'static str, stream: u64, count: usize) -> Vec<Seed> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(stream);
    (0..count)
        .map(|i| {
            let len = 16 + (rng.next_u32() as usize % 1009);
            let mut bytes = vec![0; len];
            rng.fill_bytes(&mut bytes);
            seed(target, &format!("random-{i:02}"), bytes)
        })
        .collect()
}

fn config_seeds() -> Vec<Seed> {
    let t = "config_yaml";
    vec![
        seed(t, "ok-empty.yaml", Vec::new()),
        seed(t, "ok-minimal.yaml", b"peer:\n    id: peer0\n    listenAddress: 0.0.0.0:7051\n    address: 0.0.0.0:7051\n".to_vec()),
        seed(
            t,
            "ok-gossip.yaml",
            b"peer:\n  gossip:\n    bootstrap: [a:7051, 'b:7051']\n    aliveTimeInterval: 1500ms\n    externalEndpoint: p.ext:7051\n    trustedMSPs:\n      - id: Org2MSP\n        dir: ../org2/msp\n        anchorPeers: [peer0.org2:9051]\nchaincode:\n  mode: dev\n"
                .to_vec(),
        ),
        seed(t, "ok-json.yaml", br#"{"peer": {"id": "p", "gossip": {"pullInterval": "4s"}}, "ledger": {}}"#.to_vec()),
        seed(t, "bad-duration.yaml", b"peer:\n  gossip:\n    pullInterval: 5\n".to_vec()),
        seed(t, "bad-not-a-map.yaml", b"- just\n- a list\n".to_vec()),
        seed(t, "bad-syntax.yaml", b"peer: [unclosed\n".to_vec()),
        seed(t, "bad-anchors.yaml", b"a: &x [*x]\n".to_vec()),
    ]
}

/// An alive message as a peer sends it (identity and internal endpoint included).
fn alive(signer: &LocalMsp, name: &str, seq: u64, identity: bool) -> SignedMessage {
    let message = AliveMessage {
        membership: Some(Member { endpoint: format!("{name}.ext:7051"), metadata: Vec::new(), pki_id: signer.pki_id().0.to_vec() }),
        timestamp: Some(PeerTime { inc_num: 1_748_736_000_000_000_000, seq_num: seq }),
        identity: if identity { signer.identity.serialize() } else { Vec::new() },
    };
    SignedMessage::sign(empty_tag(Content::AliveMsg(message), 0), signer).with_internal_endpoint(&format!("{name}:7051"), signer)
}

fn channel_message(content: Content, tag: Tag) -> GossipMessage {
    GossipMessage { nonce: 0, channel: CHANNEL.as_bytes().to_vec(), tag: tag as i32, content: Some(content) }
}

fn gossip_envelope_seeds() -> Vec<Seed> {
    let t = "gossip_envelope";
    let w = world();
    let encode = |message: SignedMessage| message.envelope().encode_to_vec();
    let peer1 = &w.org1_peer1;
    let conn = |signer: &LocalMsp| {
        let conn = ConnEstablish {
            pki_id: signer.pki_id().0.to_vec(),
            identity: signer.identity.serialize(),
            tls_cert_hash: Vec::new(),
            probe: false,
        };
        SignedMessage::sign(empty_tag(Content::Conn(conn), 0), signer)
    };
    let request = MembershipRequest { self_information: Some(alive(peer1, "org1p1", 3, true).into_envelope()), known: Vec::new() };
    let response = MembershipResponse {
        alive: vec![
            alive(&w.org1_peer2, "org1p2", 1, true).into_envelope(),
            alive(&w.org2_peer0, "org2p0", 9, true).without_secret().into_envelope(),
        ],
        dead: vec![alive(&w.org2_peer1, "org2p1", 2, true).without_secret().into_envelope()],
    };
    let state_info = |height: u64| {
        let info = StateInfo {
            timestamp: Some(PeerTime { inc_num: 1_748_736_000_000_000_000, seq_num: 5 }),
            pki_id: peer1.pki_id().0.to_vec(),
            channel_mac: channel_mac(&peer1.pki_id().0, CHANNEL),
            properties: Some(Properties { ledger_height: height, left_channel: false, chaincodes: Vec::new() }),
        };
        SignedMessage::sign(channel_message(Content::StateInfo(info), Tag::ChanOrOrg), peer1)
    };
    let leadership = LeadershipMessage {
        pki_id: peer1.pki_id().0.to_vec(),
        timestamp: Some(PeerTime { inc_num: 1_748_736_000_000_000_000, seq_num: 1 }),
        is_declaration: true,
    };
    let state_request = RemoteStateRequest { start_seq_num: 0, end_seq_num: 0 };
    let payloads = w
        .chain
        .iter()
        .map(|b| proto::gossip::Payload { seq_num: header_number(b), data: b.encode_to_vec(), private_data: Vec::new() })
        .collect();
    let state_response = RemoteStateResponse { payloads };
    let mut forged = alive(peer1, "org1p1", 4, true).into_envelope();
    if let Some(byte) = forged.signature.last_mut() {
        *byte ^= 1;
    }
    vec![
        seed(t, "ok-alive-with-identity", encode(alive(peer1, "org1p1", 1, true))),
        seed(t, "ok-alive-known-identity", encode(alive(peer1, "org1p1", 2, false))),
        seed(t, "ok-alive-other-org", encode(alive(&w.org2_peer0, "org2p0", 1, true).without_secret())),
        seed(t, "bad-alive-untrusted-org", encode(alive(&w.org3_peer0, "org3p0", 1, true))),
        seed(t, "bad-alive-forged-signature", forged.encode_to_vec()),
        seed(t, "ok-membership-request", encode(SignedMessage::noop_sign(empty_tag(Content::MemReq(request), 42)))),
        seed(t, "ok-membership-response", encode(SignedMessage::noop_sign(empty_tag(Content::MemRes(response), 43)))),
        seed(t, "ok-conn-establish", encode(conn(peer1))),
        seed(t, "bad-conn-untrusted-org", encode(conn(&w.org3_peer0))),
        seed(t, "ok-data-block-1", encode(data_message(CHANNEL, &w.chain[0]))),
        seed(t, "ok-data-block-3", encode(data_message(CHANNEL, &w.chain[2]))),
        seed(t, "ok-state-info", encode(state_info(4))),
        seed(t, "ok-leadership", encode(SignedMessage::sign(channel_message(Content::LeadershipMsg(leadership), Tag::ChanAndOrg), peer1))),
        seed(
            t,
            "ok-state-request",
            encode(SignedMessage::noop_sign(channel_message(Content::StateRequest(state_request), Tag::ChanOrOrg))),
        ),
        seed(
            t,
            "ok-state-response",
            encode(SignedMessage::noop_sign(channel_message(Content::StateResponse(state_response), Tag::ChanOrOrg))),
        ),
        seed(
            t,
            "bad-illegal-tag",
            encode(SignedMessage::noop_sign(GossipMessage {
                tag: Tag::OrgOnly as i32,
                ..alive(peer1, "org1p1", 5, false).message().clone()
            })),
        ),
        seed(t, "bad-empty", Vec::new()),
    ]
}

fn header_number(block: &Block) -> u64 {
    block.header.as_ref().map_or(0, |h| h.number)
}

fn block_seeds() -> Vec<Seed> {
    let t = "block";
    let w = world();
    let encode = |block: &Block| block.encode_to_vec();
    // A config block (the channel's configuration again) as block 1.
    let config_tx = w.genesis.data.as_ref().map(|d| d.data.clone()).unwrap_or_default();
    let config_block = next_block(&w.genesis, config_tx, &w.orderer);
    let mut unsigned = w.chain[0].clone();
    unsigned.metadata = None;
    let peer_signed = next_block(&w.genesis, vec![transaction("tx-1-0", b"x")], &w.peer);
    let garbage_second = next_block(&w.genesis, vec![transaction("tx-g", b""), b"\xff\x01garbage".to_vec(), Vec::new()], &w.orderer);
    let duplicate_tx = next_block(&w.genesis, vec![transaction("tx-d", b"1"), transaction("tx-d", b"2")], &w.orderer);
    let other_channel = {
        let tip = w.genesis.header.clone().unwrap_or_default();
        let mut block = new_block(1, &header_hash(&tip), vec![envelope(HeaderType::EndorserTransaction, "otherchannel", "tx-o", b"")]);
        sign_block(&mut block, &w.orderer, 0, &mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        block
    };
    let mut bad_data_hash = w.chain[0].clone();
    if let Some(data) = bad_data_hash.data.as_mut() {
        data.data.push(b"one more".to_vec());
    }
    vec![
        seed(t, "ok-block-1", encode(&w.chain[0])),
        seed(t, "ok-config-block-1", encode(&config_block)),
        seed(t, "ok-garbage-second-tx", encode(&garbage_second)),
        seed(t, "ok-duplicate-tx-id", encode(&duplicate_tx)),
        seed(t, "bad-block-2-too-early", encode(&w.chain[1])),
        seed(t, "bad-unsigned", encode(&unsigned)),
        seed(t, "bad-signed-by-a-peer", encode(&peer_signed)),
        seed(t, "bad-other-channel", encode(&other_channel)),
        seed(t, "bad-data-hash", encode(&bad_data_hash)),
        seed(t, "bad-genesis-again", encode(&w.genesis)),
    ]
}

/// `otherchannel`: the orderer org and Org1 only.
fn otherchannel(w: &'static World) -> GenesisSpec<'static> {
    let mut spec = GenesisSpec::new("otherchannel", epoch());
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        org: &w.orderer_org,
        anchor_peers: Vec::new(),
        orderer_endpoints: vec!["orderer.example.com:7050".into()],
    });
    spec.application_orgs.push(GenesisOrg {
        name: "Org1MSP".into(),
        org: &w.org1,
        anchor_peers: Vec::new(),
        orderer_endpoints: Vec::new(),
    });
    spec
}

fn genesis_seeds() -> Vec<Seed> {
    let t = "genesis_block";
    let w = world();
    let org1_only = {
        let mut spec = otherchannel(w);
        spec.acls.insert("qscc/GetChainInfo".into(), "/Channel/Application/Writers".into());
        spec.batch_timeout = Duration::from_millis(250);
        genesis_block(&spec).expect("building a genesis block")
    };
    let mut numbered = w.genesis.clone();
    if let Some(header) = numbered.header.as_mut() {
        header.number = 5;
    }
    let mut bad_id = org1_only.clone();
    // The channel ID in the envelope's channel header, rewritten to one the ledger refuses.
    if let Some(data) = bad_id.data.as_mut() {
        let text = "otherchannel".as_bytes();
        for tx in &mut data.data {
            if let Some(at) = tx.windows(text.len()).position(|w| w == text) {
                tx[at..at + text.len()].copy_from_slice(b"OTHERCHANNEL");
            }
        }
    }
    vec![
        seed(t, "ok-mychannel", w.genesis.encode_to_vec()),
        seed(t, "ok-org1-only-with-acls", org1_only.encode_to_vec()),
        seed(t, "bad-not-block-0", numbered.encode_to_vec()),
        seed(t, "bad-uppercase-channel-id", bad_id.encode_to_vec()),
        seed(t, "bad-data-block", w.chain[0].encode_to_vec()),
        seed(t, "bad-empty", Vec::new()),
    ]
}

fn proposal_seeds() -> Vec<Seed> {
    let t = "signed_proposal";
    let w = world();
    let other_genesis = {
        let spec = otherchannel(w);
        genesis_block(&spec).expect("building a genesis block")
    };
    let block2_hash = header_hash(w.chain[1].header.as_ref().expect("fixture blocks have headers")).to_vec();
    let mut n = 0u8;
    let mut proposal = |signer: &LocalMsp, header_type: HeaderType, channel: &str, chaincode: &str, args: &[&[u8]]| {
        n += 1;
        let invocation = Invocation { header_type, channel_id: channel, chaincode, args: args.iter().map(|a| a.to_vec()).collect() };
        signed_proposal(signer, &invocation, [n; 24], epoch()).0.encode_to_vec()
    };
    let admin = &w.org1_admin;
    let peer = &w.peer;
    let mut seeds = vec![
        seed(t, "ok-cscc-getchannels", proposal(admin, HeaderType::EndorserTransaction, "", "cscc", &[b"GetChannels"])),
        seed(t, "ok-cscc-joinchain", proposal(admin, HeaderType::Config, "", "cscc", &[b"JoinChain", &other_genesis.encode_to_vec()])),
        seed(t, "bad-cscc-joinchain-joined", proposal(admin, HeaderType::Config, "", "cscc", &[b"JoinChain", &w.genesis.encode_to_vec()])),
        seed(
            t,
            "bad-cscc-joinchain-not-admin",
            proposal(peer, HeaderType::Config, "", "cscc", &[b"JoinChain", &other_genesis.encode_to_vec()]),
        ),
        seed(
            t,
            "ok-qscc-getchaininfo",
            proposal(peer, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetChainInfo", CHANNEL.as_bytes()]),
        ),
        seed(
            t,
            "ok-qscc-getblockbynumber",
            proposal(admin, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetBlockByNumber", CHANNEL.as_bytes(), b"2"]),
        ),
        seed(
            t,
            "ok-qscc-getblockbyhash",
            proposal(peer, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetBlockByHash", CHANNEL.as_bytes(), &block2_hash]),
        ),
        seed(
            t,
            "ok-qscc-gettransactionbyid",
            proposal(
                &w.org2_peer0,
                HeaderType::EndorserTransaction,
                CHANNEL,
                "qscc",
                &[b"GetTransactionByID", CHANNEL.as_bytes(), b"tx-1-0"],
            ),
        ),
        seed(
            t,
            "ok-qscc-getblockbytxid",
            proposal(peer, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetBlockByTxID", CHANNEL.as_bytes(), b"tx-3-1"]),
        ),
        seed(
            t,
            "bad-qscc-unknown-block",
            proposal(peer, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetBlockByNumber", CHANNEL.as_bytes(), b"99"]),
        ),
        seed(t, "bad-application-chaincode", proposal(peer, HeaderType::EndorserTransaction, CHANNEL, "mycc", &[b"invoke", b"a"])),
        seed(
            t,
            "bad-unknown-channel",
            proposal(peer, HeaderType::EndorserTransaction, "nochannel", "qscc", &[b"GetChainInfo", b"nochannel"]),
        ),
        seed(
            t,
            "bad-untrusted-org",
            proposal(&w.org3_peer0, HeaderType::EndorserTransaction, CHANNEL, "qscc", &[b"GetChainInfo", CHANNEL.as_bytes()]),
        ),
    ];
    // A good proposal with a broken signature, and one from long ago (outside the time window).
    let mut broken = proto::protos::SignedProposal::decode(seeds[4].bytes.as_slice()).expect("a seed decodes");
    if let Some(byte) = broken.signature.last_mut() {
        *byte ^= 1;
    }
    seeds.push(seed(t, "bad-broken-signature", broken.encode_to_vec()));
    let invocation = Invocation {
        header_type: HeaderType::EndorserTransaction,
        channel_id: CHANNEL,
        chaincode: "qscc",
        args: vec![b"GetChainInfo".to_vec(), CHANNEL.as_bytes().to_vec()],
    };
    let old = signed_proposal(peer, &invocation, [99; 24], epoch() - Duration::from_secs(3600)).0;
    seeds.push(seed(t, "bad-old-timestamp", old.encode_to_vec()));
    seeds
}

fn scenario_seeds() -> Vec<Seed> {
    let t = "scenario_file";
    let head = "name: t\nduration: 10s\norgs: [{name: org1, peers: 2}, {name: org2, peers: 2}]\nchecks: {converge_within: 5s}\n";
    vec![
        seed(t, "ok-small.yaml", head.as_bytes().to_vec()),
        seed(
            t,
            "ok-everything.yaml",
            format!(
                "{head}no_external_endpoint: [org1-peer1]\nbootstrap: first\nenv: {{CORE_PEER_GOSSIP_ALIVETIMEINTERVAL: 500ms}}\npeer_env: {{org2-peer1: {{CORE_PEER_GOSSIP_PULLINTERVAL: 2s}}}}\ntimeline:\n  - {{at: 1s, crash: org1-peer1}}\n  - {{at: 2s, restart: org1-peer1}}\n  - {{at: 3s, partition: [org1-peer0, org2-peer0]}}\n  - {{at: 4s, heal: [org1-peer0, org2-peer0]}}\n  - {{at: 5s, loss: 0.5}}\n  - {{at: 6s, kill: orderer}}\nnetwork: {{delay_probability: 0.1, max_delay: 100ms, duplicate: 0.1}}\norderer: {{tx_per_second: 5, batch_timeout: 500ms, max_message_count: 10, start: 1s, stop: 8s}}\n"
            )
            .into_bytes(),
        ),
        seed(t, "bad-unknown-peer.yaml", format!("{head}timeline: [{{at: 1s, crash: org3-peer0}}]\n").into_bytes()),
        seed(t, "bad-not-yaml.yaml", b"name: [unclosed\n".to_vec()),
    ]
}
