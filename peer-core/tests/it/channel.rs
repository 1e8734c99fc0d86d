//! Channel configuration seen from outside: a genesis block made by Fabric's configtxgen and one
//! made by our builder read the same way; the channel's MSPs validate each org's identities;
//! policies accept and reject the signature sets Fabric would; orderer block signatures are
//! checked; malformed config blocks give errors, never panics.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use peer_core::channel::{
    AnchorPeer, BlockSignatureError, ChannelConfig, ConfigBlockError, GenesisOrg, GenesisSpec, PolicyError, SignedData, genesis_block,
    sign_block, verify_block_signatures,
};
use peer_core::ledger::block::{data_hash, header_hash};
use peer_core::msp::generate::{self, Org};
use peer_core::msp::{Identity, LocalMsp, Msp};
use peer_core::testkit::{epoch, local_msp, org};
use prost::Message;
use proto::common::{Block, BlockData, BlockHeader, ChannelHeader, Envelope, Header, HeaderType, Payload};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn blocks_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/blocks"))
}

struct Orgs {
    orderer: Org,
    apps: Vec<Org>,
}

fn orgs(app_count: usize) -> Orgs {
    let apps = (1..=app_count).map(|i| org(&format!("Org{i}MSP"), &format!("org{i}.example.com"))).collect();
    Orgs { orderer: org("OrdererMSP", "example.com"), apps }
}

/// The same channel as tests/data/blocks/configtx.yaml describes.
fn spec(orgs: &Orgs) -> GenesisSpec<'_> {
    let mut spec = GenesisSpec::new("mychannel", epoch());
    spec.orderer_addresses = vec!["orderer.example.com:7050".into()];
    spec.max_message_count = 10;
    spec.absolute_max_bytes = 99 << 20;
    spec.preferred_max_bytes = 512 << 10;
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        org: &orgs.orderer,
        anchor_peers: Vec::new(),
        orderer_endpoints: vec!["orderer.example.com:7050".into()],
    });
    for (i, app) in orgs.apps.iter().enumerate() {
        let port = 7051 + 2000 * u16::try_from(i).unwrap();
        spec.application_orgs.push(GenesisOrg {
            name: app.spec.msp_id.clone(),
            org: app,
            anchor_peers: vec![AnchorPeer { host: format!("peer0.{}", app.spec.domain), port }],
            orderer_endpoints: Vec::new(),
        });
    }
    spec
}

fn read_block(name: &str) -> Block {
    let bytes = std::fs::read(blocks_dir().join(name)).unwrap();
    Block::decode(bytes.as_slice()).unwrap()
}

/// What a peer needs from a channel config, as comparable text.
fn summary(config: &ChannelConfig) -> String {
    let mut out = format!(
        "channel {} seq {} addresses {:?} caps {:?}\n",
        config.channel_id, config.sequence, config.orderer_addresses, config.capabilities
    );
    let o = &config.orderer;
    out += &format!(
        "orderer {} {:?} {:?} max_channels {} caps {:?}\n",
        o.consensus_type, o.batch_size, o.batch_timeout, o.max_channels, o.capabilities
    );
    for (name, org) in &o.orgs {
        out += &format!("  orderer org {name} msp {} endpoints {:?}\n", org.msp_id, org.endpoints);
    }
    out += &format!("application caps {:?} acls {:?}\n", config.application.capabilities, config.application.acls);
    for (name, org) in &config.application.orgs {
        out += &format!("  app org {name} msp {} anchors {:?}\n", org.msp_id, org.anchor_peers);
    }
    out += &format!("policies {:#?}\n", config.policies);
    out
}

#[test]
fn configtxgen_genesis_block_is_read_with_its_orgs_endpoints_and_anchor_peers() {
    let block = read_block("configtxgen-mychannel.block");
    let config = ChannelConfig::from_block(&block).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.channel_id, "mychannel");
    assert_eq!(config.sequence, 0);
    assert_eq!(config.orderer_addresses, ["orderer.example.com:7050"]);
    assert_eq!(config.orderer_endpoints(), ["orderer.example.com:7050"]);
    assert_eq!(config.orderer.consensus_type, "solo");
    assert_eq!(config.orderer.batch_timeout, Some(Duration::from_secs(2)));
    assert_eq!(config.orderer.batch_size.map(|b| b.max_message_count), Some(10));
    assert!(config.capabilities.contains("V2_0"));
    assert!(config.application.capabilities.contains("V2_0"));
    assert!(config.orderer.capabilities.contains("V2_0"));
    let orderer_org = &config.orderer.orgs["OrdererOrg"];
    assert_eq!(orderer_org.msp_id, "OrdererMSP");
    assert_eq!(orderer_org.endpoints, ["orderer.example.com:7050"]);
    let anchors: BTreeMap<&str, &[AnchorPeer]> =
        config.application.orgs.iter().map(|(name, org)| (name.as_str(), org.anchor_peers.as_slice())).collect();
    assert_eq!(
        anchors,
        BTreeMap::from([
            ("Org1MSP", &[AnchorPeer { host: "peer0.org1.example.com".into(), port: 7051 }][..]),
            ("Org2MSP", &[AnchorPeer { host: "peer0.org2.example.com".into(), port: 9051 }][..]),
        ])
    );
    // Every org's own identities validate under the channel's MSP for that org, and only there.
    let orgs = orgs(2);
    for org in std::iter::once(&orgs.orderer).chain(&orgs.apps) {
        let msp_id = &org.spec.msp_id;
        let msp = config.msp(msp_id).unwrap();
        for node in org.peers.iter().chain([&org.admin]) {
            let identity = local_msp(node, msp_id).identity;
            msp.validate(&identity, epoch()).unwrap_or_else(|e| panic!("{msp_id} {}: {e}", node.name));
            assert_eq!(msp.is_admin(&identity), node.name.starts_with("Admin@"), "{}", node.name);
        }
        let stranger = local_msp(&orgs.apps[0].peers[0], "Org1MSP").identity;
        if msp_id != "Org1MSP" {
            assert!(msp.validate(&stranger, epoch()).is_err(), "{msp_id} must not accept an Org1MSP identity");
        }
    }
}

#[test]
fn our_genesis_block_is_deterministic_and_reads_like_configtxgens() {
    let orgs = orgs(2);
    let ours = genesis_block(&spec(&orgs)).unwrap();
    assert_eq!(ours.encode_to_vec(), genesis_block(&spec(&orgs)).unwrap().encode_to_vec(), "same input, same bytes");
    // The committed copy is what configtxlator decoded for the comparison in the README.
    let committed = std::fs::read(blocks_dir().join("peer-core-mychannel.block")).unwrap();
    assert_eq!(ours.encode_to_vec(), committed, "the builder's output changed; regenerate and re-compare with configtxgen");
    let header = ours.header.as_ref().unwrap();
    assert_eq!((header.number, header.previous_hash.as_slice()), (0, &[][..]));
    assert_eq!(header.data_hash, data_hash(ours.data.as_ref().unwrap()));
    let fabric = ChannelConfig::from_block(&read_block("configtxgen-mychannel.block")).unwrap();
    let ours = ChannelConfig::from_block(&ours).unwrap();
    assert_eq!(summary(&ours), summary(&fabric));
}

/// The local MSP's own org gives the same verifier whether read from its folder or from the
/// channel config built from that folder.
#[test]
fn msp_from_folder_and_from_channel_config_agree() {
    let orgs = orgs(2);
    let org1 = &orgs.apps[0];
    let from_files = Msp::from_files(&org1.msp, "Org1MSP").unwrap();
    let from_config = Msp::from_fabric_config(&org1.msp.verifying_config("Org1MSP").unwrap()).unwrap();
    let mut identities: Vec<Identity> = org1.peers.iter().chain([&org1.admin]).map(|n| local_msp(n, "Org1MSP").identity).collect();
    identities.push(local_msp(&orgs.apps[1].peers[0], "Org2MSP").identity);
    // Org2's peer relabelled as Org1MSP: right MSP ID, wrong CA.
    let mut impostor = identities.last().unwrap().clone();
    impostor.msp_id = "Org1MSP".into();
    identities.push(impostor);
    let far_future = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    for identity in &identities {
        for now in [epoch(), far_future] {
            assert_eq!(from_files.validate(identity, now), from_config.validate(identity, now), "{identity:?}");
        }
        assert_eq!(from_files.role(identity), from_config.role(identity), "{identity:?}");
        assert_eq!(from_files.is_admin(identity), from_config.is_admin(identity), "{identity:?}");
    }
    assert!(from_config.validate(&identities[0], epoch()).is_ok());
    assert!(from_config.validate(&identities[3], epoch()).is_err());
    assert_eq!(
        (from_files.tls_roots.clone(), from_files.tls_intermediates.clone()),
        (from_config.tls_roots, from_config.tls_intermediates)
    );
}

/// A channel with three application orgs, and signers for each.
struct Channel {
    config: ChannelConfig,
    orderer_peer: LocalMsp,
    peers: Vec<LocalMsp>,
    admins: Vec<LocalMsp>,
}

fn channel_of_three() -> Channel {
    let orgs = orgs(3);
    let config = ChannelConfig::from_block(&genesis_block(&spec(&orgs)).unwrap()).unwrap();
    let msp_id = |org: &Org| org.spec.msp_id.clone();
    Channel {
        orderer_peer: local_msp(&orgs.orderer.peers[0], "OrdererMSP"),
        peers: orgs.apps.iter().map(|o| local_msp(&o.peers[0], &msp_id(o))).collect(),
        admins: orgs.apps.iter().map(|o| local_msp(&o.admin, &msp_id(o))).collect(),
        config,
    }
}

fn signed(by: &LocalMsp, data: &[u8]) -> SignedData {
    SignedData { data: data.to_vec(), identity: by.identity.serialize(), signature: by.sign(data) }
}

/// Flips a low-S signature to its high-S twin (n - s), which plain ECDSA would accept.
fn high_s(der: &[u8]) -> Vec<u8> {
    let signature = p256::ecdsa::Signature::from_der(der).unwrap();
    let (r, s) = signature.split_scalars();
    p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap().to_der().as_bytes().to_vec()
}

#[test]
fn policy_truth_table() {
    let ch = channel_of_three();
    let data = b"proposal bytes";
    let (p1, p2, a1, a2, a3) = (&ch.peers[0], &ch.peers[1], &ch.admins[0], &ch.admins[1], &ch.admins[2]);
    let forged = SignedData { signature: p1.sign(b"other bytes"), ..signed(p1, data) };
    let high = SignedData { signature: high_s(&p1.sign(data)), ..signed(p1, data) };
    let garbage_identity = SignedData { identity: b"not an identity".to_vec(), ..signed(p1, data) };
    let orderer_member = signed(&ch.orderer_peer, data);
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<SignedData>, bool)> = vec![
        ("valid member reads",            "/Channel/Application/Readers", vec![signed(p1, data)], true),
        ("org reader: right org",         "/Channel/Application/Org1MSP/Readers", vec![signed(p1, data)], true),
        ("org reader: wrong org",         "/Channel/Application/Org1MSP/Readers", vec![signed(p2, data)], false),
        ("peer is no writer (admin|client)", "/Channel/Application/Org1MSP/Writers", vec![signed(p1, data)], false),
        ("admin required, peer signs",    "/Channel/Application/Org1MSP/Admins", vec![signed(p1, data)], false),
        ("admin required, admin signs",   "/Channel/Application/Org1MSP/Admins", vec![signed(a1, data)], true),
        ("endorsement needs a peer",      "/Channel/Application/Org1MSP/Endorsement", vec![signed(a1, data)], false),
        ("forged signature",              "/Channel/Application/Readers", vec![forged.clone()], false),
        ("high-S signature",              "/Channel/Application/Readers", vec![high], false),
        ("garbage identity",              "/Channel/Application/Readers", vec![garbage_identity], false),
        ("forged then valid",             "/Channel/Application/Readers", vec![forged, signed(p1, data)], true),
        ("no signatures",                 "/Channel/Application/Readers", vec![], false),
        ("orderer member is no app reader", "/Channel/Application/Readers", vec![orderer_member.clone()], false),
        ("orderer member reads the channel", "/Channel/Readers", vec![orderer_member], true),
        ("MAJORITY of 3: one admin",      "/Channel/Application/Admins", vec![signed(a1, data)], false),
        ("MAJORITY of 3: one admin twice", "/Channel/Application/Admins", vec![signed(a1, data), signed(a1, data)], false),
        ("MAJORITY of 3: two admins",     "/Channel/Application/Admins", vec![signed(a1, data), signed(a3, data)], true),
        ("MAJORITY of 3: all admins",     "/Channel/Application/Admins", vec![signed(a1, data), signed(a2, data), signed(a3, data)], true),
        ("MAJORITY endorsement: 2 peers", "/Channel/Application/Endorsement", vec![signed(p1, data), signed(p2, data)], true),
        ("MAJORITY endorsement: peer+admin", "/Channel/Application/Endorsement", vec![signed(p1, data), signed(a2, data)], false),
        ("channel admins need app and orderer majorities", "/Channel/Admins", vec![signed(a1, data), signed(a2, data)], false),
    ];
    for (what, path, set, want) in cases {
        let got = ch.config.evaluate(path, &set);
        assert_eq!(got.is_ok(), want, "{what}: {path}: {got:?}");
        if let Err(e) = got {
            assert!(matches!(e, PolicyError::NotSatisfied { .. }), "{what}: {e}");
        }
    }
    let missing = ch.config.evaluate("/Channel/Application/Nope", &[]).unwrap_err();
    assert_eq!(missing.to_string(), "policy /Channel/Application/Nope does not exist in channel [mychannel]");
}

#[test]
fn one_signature_counts_once_in_an_n_out_of_gate() {
    use proto::common::{
        MspPrincipal, MspRole, SignaturePolicy, SignaturePolicyEnvelope,
        signature_policy::{NOutOf, Type},
    };
    // 2-out-of [Org1MSP.member, Org1MSP.member]: one signer cannot fill both slots.
    let member =
        MspPrincipal { principal_classification: 0, principal: MspRole { msp_identifier: "Org1MSP".into(), role: 0 }.encode_to_vec() };
    let leaf = |i| SignaturePolicy { r#type: Some(Type::SignedBy(i)) };
    let envelope = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(SignaturePolicy { r#type: Some(Type::NOutOf(NOutOf { n: 2, rules: vec![leaf(0), leaf(1)] })) }),
        identities: vec![member.clone(), member],
    };
    let policy = proto::common::Policy { r#type: 1, value: envelope.encode_to_vec() };
    let orgs = orgs(1);
    let mut block = genesis_block(&spec(&orgs)).unwrap();
    replace_config(&mut block, |channel| {
        let org1 = channel.groups.get_mut("Application").unwrap().groups.get_mut("Org1MSP").unwrap();
        org1.policies.get_mut("Readers").unwrap().policy = Some(policy);
    });
    let config = ChannelConfig::from_block(&block).unwrap();
    let peer = local_msp(&orgs.apps[0].peers[0], "Org1MSP");
    let admin = local_msp(&orgs.apps[0].admin, "Org1MSP");
    let path = "/Channel/Application/Org1MSP/Readers";
    assert!(config.evaluate(path, &[signed(&peer, b"x")]).is_err());
    assert!(config.evaluate(path, &[signed(&peer, b"x"), signed(&peer, b"x")]).is_err());
    assert!(config.evaluate(path, &[signed(&peer, b"x"), signed(&admin, b"x")]).is_ok());
}

/// A block after genesis carrying one transaction of channel `channel`.
fn next_block(previous: &Block, channel: &str) -> Block {
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        channel_id: channel.into(),
        tx_id: "tx1".into(),
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(Header { channel_header: channel_header.encode_to_vec(), signature_header: Vec::new() }),
        data: b"tx".to_vec(),
    };
    let data = BlockData { data: vec![Envelope { payload: payload.encode_to_vec(), signature: Vec::new() }.encode_to_vec()] };
    let header = BlockHeader {
        number: previous.header.as_ref().unwrap().number + 1,
        previous_hash: header_hash(previous.header.as_ref().unwrap()).to_vec(),
        data_hash: data_hash(&data).to_vec(),
    };
    Block { header: Some(header), data: Some(data), metadata: None }
}

#[test]
fn orderer_block_signatures_are_verified() {
    let orgs = orgs(2);
    let genesis = genesis_block(&spec(&orgs)).unwrap();
    let config = ChannelConfig::from_block(&genesis).unwrap();
    let orderer = local_msp(&orgs.orderer.peers[0], "OrdererMSP");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut block = next_block(&genesis, "mychannel");
    sign_block(&mut block, &orderer, 0, &mut rng);
    verify_block_signatures(&block, &config).unwrap_or_else(|e| panic!("{e}"));
    // LAST_CONFIG as Fabric orderers write it.
    let metadata = &block.metadata.as_ref().unwrap().metadata;
    assert_eq!(metadata.len(), 5);
    let last_config = proto::common::Metadata::decode(metadata[1].as_slice()).unwrap();
    assert_eq!(proto::common::LastConfig::decode(last_config.value.as_slice()).unwrap().index, 0);
    // Same seed, same bytes.
    let mut again = next_block(&genesis, "mychannel");
    sign_block(&mut again, &orderer, 0, &mut ChaCha20Rng::seed_from_u64(1));
    assert_eq!(again, block);

    let rejects = |what: &str, tamper: &dyn Fn(&mut Block)| {
        let mut bad = block.clone();
        tamper(&mut bad);
        let err = verify_block_signatures(&bad, &config).expect_err(what);
        err.to_string()
    };
    let e = rejects("header number", &|b| b.header.as_mut().unwrap().number = 2);
    assert!(e.contains("signatures rejected"), "{e}");
    rejects("previous hash", &|b| b.header.as_mut().unwrap().previous_hash[0] ^= 1);
    let e = rejects("data", &|b| b.data.as_mut().unwrap().data.push(b"extra".to_vec()));
    assert!(e.contains("data hash"), "{e}");
    rejects("data and data hash", &|b| {
        b.data.as_mut().unwrap().data.push(b"extra".to_vec());
        b.header.as_mut().unwrap().data_hash = data_hash(b.data.as_ref().unwrap()).to_vec();
    });
    rejects("metadata value", &|b| {
        let slot = &mut b.metadata.as_mut().unwrap().metadata[0];
        let mut m = proto::common::Metadata::decode(slot.as_slice()).unwrap();
        m.value.push(0);
        *slot = m.encode_to_vec();
    });
    let e = rejects("garbage metadata", &|b| b.metadata.as_mut().unwrap().metadata[0] = vec![0xff, 0xff]);
    assert!(e.contains("unusable signature metadata"), "{e}");
    rejects("no metadata", &|b| b.metadata = None);
    let e = rejects("another channel", &|b| *b = next_block(&genesis, "otherchannel"));
    assert!(e.contains("otherchannel"), "{e}");

    // Signed by an application peer, or by nobody: not the orderer's BlockValidation.
    let mut by_peer = next_block(&genesis, "mychannel");
    sign_block(&mut by_peer, &local_msp(&orgs.apps[0].peers[0], "Org1MSP"), 0, &mut rng);
    let err = verify_block_signatures(&by_peer, &config).unwrap_err();
    assert!(matches!(err, BlockSignatureError::Policy { .. }), "{err}");
    assert!(verify_block_signatures(&genesis, &config).is_err(), "the genesis block carries no signature");
}

/// Applies `change` to the channel group inside a config block (and fixes the data hash).
fn replace_config(block: &mut Block, change: impl FnOnce(&mut proto::common::ConfigGroup)) {
    let data = block.data.as_mut().unwrap();
    let mut envelope = Envelope::decode(data.data[0].as_slice()).unwrap();
    let mut payload = Payload::decode(envelope.payload.as_slice()).unwrap();
    let mut config = proto::common::ConfigEnvelope::decode(payload.data.as_slice()).unwrap();
    change(config.config.as_mut().unwrap().channel_group.as_mut().unwrap());
    payload.data = config.encode_to_vec();
    envelope.payload = payload.encode_to_vec();
    data.data[0] = envelope.encode_to_vec();
    block.header.as_mut().unwrap().data_hash = data_hash(data).to_vec();
}

fn replace_channel_header(block: &mut Block, change: impl FnOnce(&mut ChannelHeader)) {
    let data = block.data.as_mut().unwrap();
    let mut envelope = Envelope::decode(data.data[0].as_slice()).unwrap();
    let mut payload = Payload::decode(envelope.payload.as_slice()).unwrap();
    let header = payload.header.as_mut().unwrap();
    let mut channel_header = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
    change(&mut channel_header);
    header.channel_header = channel_header.encode_to_vec();
    envelope.payload = payload.encode_to_vec();
    data.data[0] = envelope.encode_to_vec();
}

#[test]
fn malformed_config_blocks_are_named_errors() {
    let orgs = orgs(2);
    let good = genesis_block(&spec(&orgs)).unwrap();
    fn value(group: &mut proto::common::ConfigGroup, path: &[&str], key: &str, bytes: Vec<u8>) {
        let mut g = group;
        for p in path {
            g = g.groups.get_mut(*p).unwrap();
        }
        g.values.get_mut(key).unwrap().value = bytes;
    }
    type Tamper = Box<dyn Fn(&mut Block)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("not a config block: a config block holds exactly one transaction, this one holds 0", Box::new(|b| b.data = None)),
        ("not a config block: cannot decode the envelope", Box::new(|b| b.data.as_mut().unwrap().data[0] = vec![0x0a, 0x05, 1])),
        (
            "not a config block: the transaction has header type ENDORSER_TRANSACTION, expected CONFIG",
            Box::new(|b| replace_channel_header(b, |h| h.r#type = HeaderType::EndorserTransaction as i32)),
        ),
        ("not a config block: the channel header names no channel", Box::new(|b| replace_channel_header(b, |h| h.channel_id.clear()))),
        (
            "channel [mychannel] group Channel: missing group Application",
            Box::new(|b| replace_config(b, |c| drop(c.groups.remove("Application")))),
        ),
        ("channel [mychannel] group Channel: missing group Orderer", Box::new(|b| replace_config(b, |c| drop(c.groups.remove("Orderer"))))),
        (
            "channel [mychannel] group Channel value HashingAlgorithm: unsupported hashing algorithm \"SHA3_256\"",
            Box::new(|b| {
                replace_config(b, |c| {
                    value(c, &[], "HashingAlgorithm", proto::common::HashingAlgorithm { name: "SHA3_256".into() }.encode_to_vec())
                })
            }),
        ),
        (
            "channel [mychannel] group Channel value BlockDataHashingStructure: unsupported block data hashing width 5",
            Box::new(|b| {
                replace_config(b, |c| {
                    value(c, &[], "BlockDataHashingStructure", proto::common::BlockDataHashingStructure { width: 5 }.encode_to_vec())
                })
            }),
        ),
        (
            "channel [mychannel] group Application/Org1MSP value MSP: cannot decode",
            Box::new(|b| replace_config(b, |c| value(c, &["Application", "Org1MSP"], "MSP", vec![0x12, 0x09, 1]))),
        ),
        (
            "channel [mychannel] group Application/Org1MSP value MSP: root_certs[0]",
            Box::new(|b| {
                let config =
                    proto::msp::FabricMspConfig { name: "Org1MSP".into(), root_certs: vec![b"junk".to_vec()], ..Default::default() };
                let msp = proto::msp::MspConfig { r#type: 0, config: config.encode_to_vec() };
                replace_config(b, |c| value(c, &["Application", "Org1MSP"], "MSP", msp.encode_to_vec()))
            }),
        ),
        (
            "channel [mychannel] group Application/Org2MSP value AnchorPeers: anchor peer peer0.org2.example.com has invalid port 70000",
            Box::new(|b| {
                let anchors = proto::protos::AnchorPeers {
                    anchor_peers: vec![proto::protos::AnchorPeer { host: "peer0.org2.example.com".into(), port: 70000 }],
                };
                replace_config(b, |c| value(c, &["Application", "Org2MSP"], "AnchorPeers", anchors.encode_to_vec()))
            }),
        ),
        (
            "channel [mychannel] group Application/Org1MSP policy Readers: identity index out of range, requested 7",
            Box::new(|b| {
                use proto::common::{SignaturePolicy, SignaturePolicyEnvelope, signature_policy::Type};
                let envelope = SignaturePolicyEnvelope {
                    version: 0,
                    rule: Some(SignaturePolicy { r#type: Some(Type::SignedBy(7)) }),
                    identities: vec![],
                };
                replace_config(b, |c| {
                    let org = c.groups.get_mut("Application").unwrap().groups.get_mut("Org1MSP").unwrap();
                    org.policies.get_mut("Readers").unwrap().policy =
                        Some(proto::common::Policy { r#type: 1, value: envelope.encode_to_vec() });
                })
            }),
        ),
        (
            "channel [mychannel] group Orderer: missing value ConsensusType",
            Box::new(|b| replace_config(b, |c| drop(c.groups.get_mut("Orderer").unwrap().values.remove("ConsensusType")))),
        ),
    ];
    for (want, tamper) in cases {
        let mut block = good.clone();
        tamper(&mut block);
        let err: ConfigBlockError = ChannelConfig::from_block(&block).expect_err(want);
        assert!(err.to_string().starts_with(want), "want {want:?}\n got {:?}", err.to_string());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xC0FF1C),
        cases: 256,
        ..Default::default()
    })]

    /// Random bytes, and configtxgen's block with random bytes changed or cut off: an error or
    /// a config, never a panic.
    #[test]
    fn random_and_damaged_blocks_never_panic(
        random in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..8),
        cut in proptest::num::usize::ANY,
    ) {
        if let Ok(block) = Block::decode(random.as_slice()) {
            let _ = ChannelConfig::from_block(&block);
        }
        let mut bytes = std::fs::read(blocks_dir().join("configtxgen-mychannel.block")).unwrap();
        for (at, byte) in flips {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        let len = bytes.len();
        bytes.truncate(len - cut % (len / 4 + 1));
        if let Ok(block) = Block::decode(bytes.as_slice())
            && let Ok(config) = ChannelConfig::from_block(&block)
        {
            let _ = config.evaluate("/Channel/Application/Admins", &[]);
            let _ = verify_block_signatures(&block, &config);
        }
    }
}

/// A CRL (PEM) issued by `ca`, revoking the certificates with the given serials.
fn crl(ca: &generate::Issued, revoked_serials: &[Vec<u8>]) -> Vec<u8> {
    use der::{Decode, Encode, EncodePem};
    use p256::pkcs8::DecodePrivateKey;
    use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
    let (_, key_der) = der::pem::decode_vec(&ca.key_pem).unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(&key_der).unwrap();
    let (_, ca_der) = der::pem::decode_vec(&ca.cert_pem).unwrap();
    let ca_cert = x509_cert::Certificate::from_der(&ca_der).unwrap();
    let time = x509_cert::time::Time::try_from(epoch()).unwrap();
    let algorithm = spki::AlgorithmIdentifierOwned { oid: peer_core::msp::crypto::ECDSA_WITH_SHA256, parameters: None };
    let tbs: TbsCertList = TbsCertList {
        version: x509_cert::Version::V2,
        signature: algorithm.clone(),
        issuer: ca_cert.tbs_certificate().subject().clone(),
        this_update: time,
        next_update: None,
        revoked_certificates: Some(
            revoked_serials
                .iter()
                .map(|s| RevokedCert {
                    serial_number: x509_cert::serial_number::SerialNumber::new(s).unwrap(),
                    revocation_date: time,
                    crl_entry_extensions: None,
                })
                .collect(),
        ),
        crl_extensions: None,
    };
    let signature = peer_core::msp::crypto::sign(&key, &tbs.to_der().unwrap());
    let list = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: algorithm,
        signature: der::asn1::BitString::from_bytes(&signature).unwrap(),
    };
    list.to_pem(der::pem::LineEnding::LF).unwrap().into_bytes()
}

#[test]
fn revocation_lists_in_the_channel_msp_revoke_identities() {
    let orgs = orgs(2);
    let org1 = &orgs.apps[0];
    let peer = local_msp(&org1.peers[0], "Org1MSP").identity;
    let admin = local_msp(&org1.admin, "Org1MSP").identity;
    let serial = peer.cert.tbs_certificate().serial_number().as_bytes().to_vec();
    let mut config = org1.msp.verifying_config("Org1MSP").unwrap();
    // A CRL by another org's CA cannot revoke Org1's certificates.
    config.revocation_list = vec![crl(&orgs.apps[1].ca, std::slice::from_ref(&serial))];
    let msp = Msp::from_fabric_config(&config).unwrap();
    msp.validate(&peer, epoch()).unwrap();
    // Org1's CA revokes its peer: the peer is no longer valid, the admin still is.
    config.revocation_list = vec![crl(&org1.ca, &[serial])];
    let msp = Msp::from_fabric_config(&config).unwrap();
    assert_eq!(msp.validate(&peer, epoch()), Err("The certificate has been revoked".into()));
    msp.validate(&admin, epoch()).unwrap();
    config.revocation_list = vec![b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".to_vec()];
    let err = Msp::from_fabric_config(&config).unwrap_err();
    assert!(err.starts_with("revocation_list[0]: not an X.509 CRL"), "{err}");
}

#[test]
fn a_certificate_revoked_by_a_config_update_is_forgotten_by_gossip_and_refused_from_then_on() {
    use peer_core::gossip::identity::Identities;
    let orgs = orgs(2);
    let (org1, org2) = (&orgs.apps[0], &orgs.apps[1]);
    let me = local_msp(&org1.peers[0], "Org1MSP");
    let other = local_msp(&org2.peers[0], "Org2MSP");
    let (pki_id, serialized) = (other.pki_id(), other.identity.serialize());
    let org1_msp = Msp::from_fabric_config(&org1.msp.verifying_config("Org1MSP").unwrap()).unwrap();
    let mut org2_config = org2.msp.verifying_config("Org2MSP").unwrap();
    let mut identities = Identities::new(&me, []);
    let gone = identities.set_channel_msps("ch", [org1_msp.clone(), Msp::from_fabric_config(&org2_config).unwrap()], epoch());
    assert!(gone.is_empty());
    identities.put(&pki_id.0, &serialized, epoch()).unwrap();

    // The next config block's Org2 MSP carries a CRL revoking that peer.
    let serial = other.identity.cert.tbs_certificate().serial_number().as_bytes().to_vec();
    org2_config.revocation_list = vec![crl(&org2.ca, &[serial])];
    let gone = identities.set_channel_msps("ch", [org1_msp.clone(), Msp::from_fabric_config(&org2_config).unwrap()], epoch());
    assert_eq!(gone, [pki_id]);
    assert!(identities.get(&pki_id).is_none());
    let err = identities.put(&pki_id.0, &serialized, epoch()).unwrap_err().to_string();
    assert!(err.contains("The certificate has been revoked"), "{err}");

    // A config without Org2: its members cannot be validated at all.
    let org2_other = local_msp(&org2.admin, "Org2MSP");
    identities.set_channel_msps(
        "ch",
        [org1_msp.clone(), Msp::from_fabric_config(&org2.msp.verifying_config("Org2MSP").unwrap()).unwrap()],
        epoch(),
    );
    identities.put(&org2_other.pki_id().0, &org2_other.identity.serialize(), epoch()).unwrap();
    assert_eq!(identities.set_channel_msps("ch", [org1_msp], epoch()), [org2_other.pki_id()]);
    let err = identities.put(&org2_other.pki_id().0, &org2_other.identity.serialize(), epoch()).unwrap_err().to_string();
    assert!(err.contains("No MSP found"), "{err}");
    // Our own identity is never forgotten.
    assert!(identities.get(&me.pki_id()).is_some());
}
