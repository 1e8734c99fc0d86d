//! `protos.Deliver` on the real binary: a channel is made through the library while the peer is
//! stopped (joined from a generated genesis block, then blocks signed by a generated orderer
//! org), the peer is started, and a tonic client built here fetches the blocks over TCP.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::gossip::identity::Identities;
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::{self, Org, OrgSpec, ValidityWindow};
use peer_core::node::channels::Channels;
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{SeekInfo, SeekOldest, SeekPosition, SeekSpecified, seek_position};
use proto::protos::deliver_client::DeliverClient;
use proto::protos::deliver_response;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::peer::{Peer, Ports, data_dir, sample_env};
use crate::support::repo_root;

const CHANNEL: &str = "mychannel";
const LIMIT: Duration = Duration::from_secs(30);

fn org(msp_id: &str, domain: &str) -> Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers: 1 };
    generate::generate_org(&spec, &mut generate::org_rng(7, &spec), ValidityWindow::fixed()).unwrap()
}

fn admin(org: &Org, now: SystemTime) -> LocalMsp {
    LocalMsp::from_files(&org.admin.msp, &org.spec.msp_id, now).unwrap()
}

/// Joins `mychannel` (Org1) in `data` and appends `height - 1` signed blocks; returns them all.
fn make_channel(data: &Path, orderer: &Org, org1: &Org, height: u64, now: SystemTime) -> Vec<Block> {
    let env = peer_core::env::real::env().unwrap();
    let sample = repo_root().join("sampleconfig");
    let local = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, now).unwrap();
    let mgr = LedgerMgr::open(&env, data, "e2e setup").unwrap();
    let channels = Channels::open(mgr, Arc::new(Mutex::new(Identities::new(&local, Vec::new())))).unwrap();
    let mut spec = GenesisSpec::new(CHANNEL, UNIX_EPOCH + Duration::from_secs(1_748_736_000));
    let org_entry = |org| GenesisOrg { name: String::new(), org, anchor_peers: Vec::new(), orderer_endpoints: Vec::new() };
    spec.orderer_orgs.push(GenesisOrg { name: "OrdererOrg".into(), orderer_endpoints: vec!["orderer.example.com:7050".into()], ..org_entry(orderer) });
    spec.application_orgs.push(GenesisOrg { name: "Org1MSP".into(), ..org_entry(org1) });
    let genesis = genesis_block(&spec).unwrap();
    channels.join(&genesis).unwrap();
    let signer = admin(orderer, now);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut blocks = vec![genesis];
    for number in 1..height {
        let tx = envelope(HeaderType::EndorserTransaction, CHANNEL, &format!("tx-{number}"), b"");
        let mut block = new_block(number, &header_hash(blocks.last().unwrap().header.as_ref().unwrap()), vec![tx]);
        sign_block(&mut block, &signer, 0, &mut rng);
        channels.append(CHANNEL, &block).unwrap();
        blocks.push(block);
    }
    blocks
}

fn seek_request(signer: &LocalMsp, now: SystemTime, start: SeekPosition, stop: SeekPosition) -> Envelope {
    let since = now.duration_since(UNIX_EPOCH).unwrap();
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        channel_id: CHANNEL.into(),
        timestamp: Some(prost_types::Timestamp { seconds: i64::try_from(since.as_secs()).unwrap(), nanos: 0 }),
        ..ChannelHeader::default()
    };
    let seek_info = SeekInfo { start: Some(start), stop: Some(stop), behavior: SeekBehavior::FailIfNotReady as i32, ..SeekInfo::default() };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader { creator: signer.identity.serialize(), nonce: vec![7; 24] }.encode_to_vec(),
        }),
        data: seek_info.encode_to_vec(),
    }
    .encode_to_vec();
    Envelope { signature: signer.sign(&payload), payload }
}

#[test]
fn a_started_peer_delivers_the_blocks_of_a_channel_made_while_it_was_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let now = peer_core::env::real::env().unwrap().clock.wall_clock();
    let (orderer, org1, org2) = (org("OrdererMSP", "example.com"), org("Org1MSP", "org1.example.com"), org("Org2MSP", "org2.example.com"));
    let blocks = make_channel(&data, &orderer, &org1, 4, now);

    let ports = Ports::free();
    let mut peer = Peer::spawn(tmp.path(), &sample_env(ports, &data), ports);
    peer.wait_for("Started peer with ID=", LIMIT);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports.peer)).unwrap();
        let mut client = DeliverClient::new(endpoint.connect().await.unwrap());
        let oldest = SeekPosition { r#type: Some(seek_position::Type::Oldest(SeekOldest {})) };
        let at = |number| SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number })) };

        // Every block, byte for byte as appended, then SUCCESS.
        let request = seek_request(&admin(&org1, now), now, oldest, at(3));
        let mut responses = client.deliver(tokio_stream::iter([request])).await.unwrap().into_inner();
        let mut received = Vec::new();
        let status = loop {
            match responses.message().await.unwrap().unwrap().r#type.unwrap() {
                deliver_response::Type::Block(block) => received.push(block),
                deliver_response::Type::Status(status) => break status,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(status, FabricStatus::Success as i32);
        assert_eq!(received, blocks);

        // An org outside the channel: FORBIDDEN.
        let request = seek_request(&admin(&org2, now), now, at(0), at(0));
        let mut responses = client.deliver(tokio_stream::iter([request])).await.unwrap().into_inner();
        let response = responses.message().await.unwrap().unwrap();
        assert_eq!(response.r#type, Some(deliver_response::Type::Status(FabricStatus::Forbidden as i32)));
    });

    let (code, _) = peer.signal_and_wait("TERM", LIMIT);
    assert_eq!(code, 0, "{}", peer.seen.join("\n"));
}
