//! `protos.Deliver` on the real binary: a channel is made through the library while the peer is
//! stopped (joined from a generated genesis block, then blocks signed by a generated orderer
//! org), the peer is started, and a tonic client built here fetches the blocks over TCP. Then the
//! concurrency limit under load: twice `peer.limits.concurrency.deliverService` streams held open.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::channels::Channels;
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::Org;
use peer_core::testkit::{epoch, org};
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{SeekInfo, SeekOldest, SeekPosition, SeekSpecified, seek_position};
use proto::protos::deliver_client::DeliverClient;
use proto::protos::deliver_response;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::peer::{Peer, Ports, data_dir, http, sample_env};

const CHANNEL: &str = "mychannel";
const LIMIT: Duration = Duration::from_secs(30);

fn admin(org: &Org, now: SystemTime) -> LocalMsp {
    LocalMsp::from_files(&org.admin.msp, &org.spec.msp_id, now).unwrap()
}

/// Joins `mychannel` (Org1) in `data` and appends `height - 1` signed blocks; returns them all.
fn make_channel(data: &Path, orderer: &Org, org1: &Org, height: u64, now: SystemTime) -> Vec<Block> {
    let env = peer_core::env::real::env().unwrap();
    let mgr = LedgerMgr::open(&env, data, "e2e setup").unwrap();
    let channels = Channels::open(mgr).unwrap();
    let mut spec = GenesisSpec::new(CHANNEL, epoch());
    let org_entry = |org| GenesisOrg { name: String::new(), org, anchor_peers: Vec::new(), orderer_endpoints: Vec::new() };
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        orderer_endpoints: vec!["orderer.example.com:7050".into()],
        ..org_entry(orderer)
    });
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
    seek_request_with(signer, now, start, stop, SeekBehavior::FailIfNotReady)
}

fn seek_request_with(signer: &LocalMsp, now: SystemTime, start: SeekPosition, stop: SeekPosition, behavior: SeekBehavior) -> Envelope {
    let since = now.duration_since(UNIX_EPOCH).unwrap();
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        channel_id: CHANNEL.into(),
        timestamp: Some(prost_types::Timestamp { seconds: i64::try_from(since.as_secs()).unwrap(), nanos: 0 }),
        ..ChannelHeader::default()
    };
    let seek_info = SeekInfo { start: Some(start), stop: Some(stop), behavior: behavior as i32, ..SeekInfo::default() };
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

/// The resident set size of a process, in kB (`VmRSS` in /proc/<pid>/status).
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Deliver under load: with `peer.limits.concurrency.deliverService` = 4, eight streams are
/// opened and held (each waiting for blocks past the tip). The first four are served; the other
/// four are refused at once with RESOURCE_EXHAUSTED (Fabric sends the same text with status
/// Unknown, spec §4.3; peer-core uses the code that says what happened). Meanwhile the peer
/// answers `/healthz`, and its memory stays bounded. Closing the streams frees the slots.
#[test]
fn deliver_streams_over_the_concurrency_limit_are_refused_and_the_peer_stays_responsive() {
    const LIMIT_STREAMS: usize = 4;
    let tmp = tempfile::tempdir().unwrap();
    let data = data_dir(tmp.path());
    let now = peer_core::env::real::env().unwrap().clock.wall_clock();
    let (orderer, org1) = (org("OrdererMSP", "example.com"), org("Org1MSP", "org1.example.com"));
    make_channel(&data, &orderer, &org1, 3, now);

    let ports = Ports::free();
    let mut env = sample_env(ports, &data);
    env.push(("CORE_PEER_LIMITS_CONCURRENCY_DELIVERSERVICE".into(), LIMIT_STREAMS.to_string()));
    let mut peer = Peer::spawn(tmp.path(), &env, ports);
    peer.wait_for("concurrency limit for deliver service is 4", LIMIT);
    peer.wait_for("Started peer with ID=", LIMIT);
    let rss_before = rss_kb(peer.pid());

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let signer = admin(&org1, now);
    let oldest = || SeekPosition { r#type: Some(seek_position::Type::Oldest(SeekOldest {})) };
    let forever = || SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number: u64::MAX })) };
    // Opens a Deliver stream on its own connection: blocks from 0, then waiting for more. Ok
    // holds the stream (and its sender: dropping it would end the request side).
    let open = || {
        let request = seek_request_with(&signer, now, oldest(), forever(), SeekBehavior::BlockUntilReady);
        async move {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", ports.peer)).unwrap();
            let mut client = DeliverClient::new(endpoint.connect().await.unwrap());
            let (send, receive) = tokio::sync::mpsc::channel(1);
            send.send(request).await.unwrap();
            let mut responses = client.deliver(tokio_stream::wrappers::ReceiverStream::new(receive)).await?.into_inner();
            // Served: the first block arrives.
            match responses.message().await?.and_then(|r| r.r#type) {
                Some(deliver_response::Type::Block(block)) => assert_eq!(block.header.unwrap().number, 0),
                other => panic!("expected block 0, got {other:?}"),
            }
            Ok::<_, tonic::Status>((client, send, responses))
        }
    };
    runtime.block_on(async {
        let deadline = Duration::from_secs(30);
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..2 * LIMIT_STREAMS {
            match tokio::time::timeout(deadline, open()).await.expect("a stream neither served nor refused") {
                Ok(stream) => held.push(stream),
                Err(status) => refused.push(status),
            }
        }
        assert_eq!(held.len(), LIMIT_STREAMS, "served streams");
        assert_eq!(refused.len(), LIMIT_STREAMS, "refused streams");
        for status in &refused {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert_eq!(status.message(), "too many requests for /protos.Deliver, exceeding concurrency limit (4)");
        }

        // While the four are held: the held streams are still live (their second block comes),
        // the operations server answers, and memory has not grown much.
        for (_, _, responses) in held.iter_mut() {
            match responses.message().await.unwrap().and_then(|r| r.r#type) {
                Some(deliver_response::Type::Block(block)) => assert_eq!(block.header.unwrap().number, 1),
                other => panic!("expected block 1, got {other:?}"),
            }
        }
        // A blocking HTTP call on this runtime is fine: the peer is another process.
        let (status, body) = http(ports.operations, "GET", "/healthz", "");
        assert_eq!(status, 200, "{body}");
        let rss_after = rss_kb(peer.pid());
        eprintln!(
            "deliver limit: VmRSS {rss_before} kB before, {rss_after} kB with {} streams held and {} refused",
            held.len(),
            refused.len()
        );
        assert!(rss_after < rss_before + 64 * 1024, "VmRSS grew from {rss_before} kB to {rss_after} kB");

        // Closing the held streams frees their slots: polled until a new stream is served.
        drop(held);
        let again = async {
            loop {
                match open().await {
                    Ok(stream) => return stream,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(status) => panic!("{status:?}"),
                }
            }
        };
        let stream = tokio::time::timeout(deadline, again).await.expect("a slot was never freed");
        drop(stream);
    });
    let refusals =
        peer.seen.iter().filter(|l| l.contains("Too many requests for /protos.Deliver, exceeding concurrency limit (4)")).count();
    let (code, _) = peer.signal_and_wait("TERM", LIMIT);
    assert_eq!(code, 0, "{}", peer.seen.join("\n"));
    let refusals = refusals
        .max(peer.seen.iter().filter(|l| l.contains("Too many requests for /protos.Deliver, exceeding concurrency limit (4)")).count());
    assert!(refusals >= LIMIT_STREAMS, "the peer logs each refusal (Fabric's ERROR line); saw {refusals}:\n{}", peer.seen.join("\n"));
    assert!(peer.seen.iter().all(|l| !l.contains("panicked")), "{}", peer.seen.join("\n"));
}
