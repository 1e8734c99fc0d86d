//! The simulator's orderer host under turmoil: a host named `orderer` producing blocks and a
//! client host fetching them over `orderer.AtomicBroadcast/Deliver`.
//!
//! - Blocks fetched oldest→newest, and one waited for with BLOCK_UNTIL_READY, verify: each is
//!   appended to a scratch ledger through `Channels::append` (orderer signatures against the
//!   channel's BlockValidation policy, then number, previous hash and data hash).
//! - The same seed gives the same block hashes; another seed gives other ones (the signature
//!   nonces and transaction nonces come from the seeded stream).
//! - A power cut and restart of the orderer continues its chain: every block it had before the
//!   crash is still there, unchanged, and new blocks follow them.
//! - Broadcast: a client's signed transaction is accepted (SUCCESS) into a later block; one
//!   signed by an identity outside the channel is FORBIDDEN.
//! - A replica (`orderer2`, `replicate_from: orderer:7050`) serves the leader's chain, verified
//!   block by block; after a power cut it restarts from the height on its disk and catches up;
//!   Broadcast on it is SERVICE_UNAVAILABLE (FORBIDDEN first for an outsider).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use peer_core::channels::Channels;
use peer_core::config::HostPort;
use peer_core::env::{Env, Network, StoppedClock};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::header_hash;
use peer_core::msp::LocalMsp;
use peer_core::proposal::seek_info_envelope;
use peer_core::testkit::epoch;
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{SeekInfo, SeekNewest, SeekOldest, SeekPosition, SeekSpecified, deliver_response, seek_position};
use sim::env::{SimClock, SimDisk, SimNetwork, SimStorage};
use sim::orderer::{Orderer, OrdererSpec, World, generate_world};

const CHANNEL: &str = "simchannel";

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| generate_world(CHANNEL, &["org1".into()], 1, "orderer:7050", &[], epoch()).unwrap())
}

fn network(host: &str) -> SimNetwork {
    SimNetwork { host: host.into(), faults: None }
}

/// A client of the orderer node on `host` (port 7050).
async fn client(host: &str) -> AtomicBroadcastClient<tonic::transport::Channel> {
    let target = HostPort::new(host, 7050);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = network("client").connect(&target, Duration::from_secs(1));
        async move { connect.await.map(hyper_util::rt::TokioIo::new) }
    });
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{host}:7050")).unwrap().connect_with_connector(connector).await.unwrap();
    AtomicBroadcastClient::new(channel)
}

fn position(kind: seek_position::Type) -> Option<SeekPosition> {
    Some(SeekPosition { r#type: Some(kind) })
}

/// One SeekInfo on its own stream to the orderer node on `host`: the blocks, then the final
/// status.
async fn fetch(host: &str, signer: &LocalMsp, seek: SeekInfo, nonce: u8) -> (Vec<Block>, i32) {
    let envelope = seek_info_envelope(signer, CHANNEL, &seek, [nonce; 24], sim_now());
    let mut stream = client(host).await.deliver(tokio_stream::iter([envelope])).await.unwrap().into_inner();
    let mut blocks = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        match response.r#type {
            Some(deliver_response::Type::Block(block)) => blocks.push(block),
            Some(deliver_response::Type::Status(status)) => return (blocks, status),
            None => panic!("an empty deliver response"),
        }
    }
    panic!("the stream ended without a status");
}

fn sim_now() -> SystemTime {
    epoch() + turmoil::sim_elapsed().unwrap_or_default()
}

/// Appends `blocks` (from genesis on) to a fresh ledger: signatures, hash chain and data hashes
/// are checked by `Channels::append` as on a peer.
fn verify(blocks: &[Block]) {
    assert_eq!(blocks.first(), Some(&world().genesis), "the chain starts with the genesis block");
    let disk = SimDisk::default();
    let env = Env::new(Arc::new(StoppedClock), Arc::new(network("verify")), Arc::new(SimStorage(disk)), [9; 32]);
    let ledger = LedgerMgr::open(&env, Path::new("/verify"), "verify").unwrap();
    let channels = Channels::open(ledger).unwrap();
    channels.join(&blocks[0]).unwrap();
    for block in &blocks[1..] {
        channels
            .append(CHANNEL, block)
            .unwrap_or_else(|e| panic!("block {:?} does not verify: {e}", block.header.as_ref().map(|h| h.number)));
        let transactions = &block.data.as_ref().unwrap().data;
        assert!(!transactions.is_empty() && transactions.len() <= 10, "a block holds 1..=max_message_count transactions");
    }
}

fn hashes(blocks: &[Block]) -> Vec<String> {
    blocks.iter().map(|b| hex::encode(header_hash(b.header.as_ref().unwrap()))).collect()
}

/// An orderer node's turmoil host, as the test sees it from outside.
struct OrdererHost {
    disk: SimDisk,
    /// The running node's ledger (None before its start; the test takes it at a crash).
    ledger: Arc<Mutex<Option<Arc<Channels>>>>,
    /// Its ledger height right after each start (what its disk held).
    start_heights: Arc<Mutex<Vec<u64>>>,
}

/// Adds the orderer node `name` (20 tx/s, batches of at most 10 or 500ms when it cuts), on a
/// disk with torn writes, with a seed per start and node (`index`); a replica when
/// `replicate_from` names the leader's endpoint.
fn orderer_host(sim: &mut turmoil::Sim<'_>, name: &'static str, index: u64, seed: u64, replicate_from: Option<&str>) -> OrdererHost {
    let host = OrdererHost { disk: SimDisk::default(), ledger: Arc::default(), start_heights: Arc::default() };
    host.disk.set_torn_writes(Some(seed ^ (index << 32)));
    let starts = Arc::new(Mutex::new(0u64));
    let (disk, ledger, start_heights) = (host.disk.clone(), host.ledger.clone(), host.start_heights.clone());
    let replicate_from = replicate_from.map(str::to_string);
    sim.host(name, move || {
        let mut start = starts.lock().unwrap();
        *start += 1;
        let mut env_seed = [0u8; 32];
        env_seed[..8].copy_from_slice(&seed.to_le_bytes());
        env_seed[8..16].copy_from_slice(&start.to_le_bytes());
        env_seed[16..24].copy_from_slice(&index.to_le_bytes());
        let (disk, ledger, start_heights, replicate_from) = (disk.clone(), ledger.clone(), start_heights.clone(), replicate_from.clone());
        async move {
            let world = world();
            let env = Env::new(Arc::new(SimClock::new(epoch())), Arc::new(network(name)), Arc::new(SimStorage(disk)), env_seed);
            let mut spec = OrdererSpec::new(
                HostPort::parse("0.0.0.0:7050").unwrap(),
                "/var/orderer".into(),
                world.genesis.clone(),
                world.signer.clone(),
                world.client.clone(),
            );
            spec.tx_per_second = 20.0;
            spec.batch_timeout = Duration::from_millis(500);
            spec.max_message_count = 10;
            spec.replicate_from = replicate_from;
            let running = Orderer::start(env, spec).await.map_err(|e| e.to_string())?;
            start_heights.lock().unwrap().push(running.channels.ledger(CHANNEL).unwrap().height());
            *ledger.lock().unwrap() = Some(running.channels.clone());
            std::future::pending::<()>().await;
            drop(running);
            Ok(())
        }
    });
    host
}

/// The chain in `channels`' ledger, oldest first.
fn chain_of(channels: &Channels) -> Vec<Block> {
    let ledger = channels.ledger(CHANNEL).unwrap();
    (0..ledger.height()).map(|n| ledger.block(n).unwrap().unwrap()).collect()
}

/// What the client host saw.
#[derive(Default)]
struct Seen {
    /// Oldest to newest at the end.
    chain: Vec<Block>,
    /// The block waited for with BLOCK_UNTIL_READY (the one at the height when the wait began).
    waited: Option<(u64, Block)>,
    broadcast: Vec<i32>,
}

/// Runs an orderer (20 tx/s, batches of at most 10 or 500ms) for `duration`, optionally with a
/// power cut at `crash.0` and a restart at `crash.1`, and a client that broadcasts at 1s, waits
/// for a future block at 2s and fetches the whole chain at the end. Returns what the client saw
/// and the orderer's block hashes just before the crash.
fn run(seed: u64, duration: Duration, crash: Option<(Duration, Duration)>) -> (Seen, Vec<String>) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(duration + Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .epoch(epoch())
        .rng_seed(seed)
        .build();
    let orderer = orderer_host(&mut sim, "orderer", 0, seed, None);
    let (disk, ledger) = (orderer.disk.clone(), orderer.ledger.clone());
    let seen: Arc<Mutex<Seen>> = Arc::default();
    {
        let seen = seen.clone();
        let end = duration;
        sim.client("client", async move {
            let world = world();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let responses = broadcast("orderer", &world.client, &outsider()).await;
            seen.lock().unwrap().broadcast = responses;

            tokio::time::sleep(Duration::from_secs(1)).await;
            // The newest block, then the next one, waited for (Fabric refuses a start beyond the
            // height with NOT_FOUND, so the next block is as far as a wait reaches).
            let newest = SeekInfo {
                start: position(seek_position::Type::Newest(SeekNewest {})),
                stop: position(seek_position::Type::Newest(SeekNewest {})),
                ..SeekInfo::default()
            };
            let (blocks, status) = fetch("orderer", &world.client, newest, 1).await;
            assert_eq!(status, FabricStatus::Success as i32);
            let height = blocks[0].header.as_ref().unwrap().number + 1;
            let ahead = position(seek_position::Type::Specified(SeekSpecified { number: height }));
            let wait = SeekInfo { start: ahead, stop: ahead, behavior: SeekBehavior::BlockUntilReady as i32, ..SeekInfo::default() };
            let (blocks, status) = fetch("orderer", &world.client, wait, 2).await;
            assert_eq!((blocks.len(), status), (1, FabricStatus::Success as i32));
            seen.lock().unwrap().waited = Some((height, blocks[0].clone()));

            // Not there yet and not waited for: NOT_FOUND.
            let far = position(seek_position::Type::Specified(SeekSpecified { number: 1_000_000 }));
            let fail = SeekInfo { start: far, stop: far, behavior: SeekBehavior::FailIfNotReady as i32, ..SeekInfo::default() };
            assert_eq!(fetch("orderer", &world.client, fail, 3).await.1, FabricStatus::NotFound as i32);
            // An identity outside the channel may not read.
            let all = SeekInfo {
                start: position(seek_position::Type::Oldest(SeekOldest {})),
                stop: position(seek_position::Type::Newest(SeekNewest {})),
                ..SeekInfo::default()
            };
            assert_eq!(fetch("orderer", &outsider(), all, 4).await.1, FabricStatus::Forbidden as i32);

            let at = turmoil::sim_elapsed().unwrap_or_default();
            tokio::time::sleep(end.saturating_sub(at)).await;
            let (chain, status) = fetch("orderer", &world.client, all, 5).await;
            assert_eq!(status, FabricStatus::Success as i32);
            seen.lock().unwrap().chain = chain;
            Ok(())
        });
    }
    let mut before_crash = Vec::new();
    let mut restarted = false;
    loop {
        if let Some((at, restart)) = crash {
            if sim.elapsed() >= at && before_crash.is_empty() {
                let channels = ledger.lock().unwrap().take().expect("the orderer runs");
                before_crash = hashes(&chain_of(&channels));
                drop(channels);
                disk.power_cut();
                sim.crash("orderer");
            }
            if sim.elapsed() >= restart && !before_crash.is_empty() && !restarted {
                restarted = true;
                disk.power_on();
                sim.bounce("orderer");
            }
        }
        if sim.step().unwrap() {
            break;
        }
    }
    drop(sim);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (seen, before_crash)
}

/// An admin of an org that is not in the channel.
fn outsider() -> LocalMsp {
    use peer_core::msp::generate::{OrgSpec, ValidityWindow, generate_org, org_rng};
    let spec = OrgSpec { msp_id: "Org9MSP".into(), domain: "org9.example.com".into(), peers: 0 };
    let org = generate_org(&spec, &mut org_rng(1, &spec), ValidityWindow::fixed()).unwrap();
    LocalMsp::from_files(&org.admin.msp, "Org9MSP", epoch()).unwrap()
}

/// Broadcasts a transaction by `member` and one by `outsider` to `host`; returns their statuses.
async fn broadcast(host: &str, member: &LocalMsp, outsider: &LocalMsp) -> Vec<i32> {
    let transaction = |signer: &LocalMsp, nonce: u8| {
        let creator = signer.identity.serialize();
        let tx_id = peer_core::proposal::compute_tx_id(&[nonce; 24], &creator);
        let channel_header = ChannelHeader {
            r#type: HeaderType::EndorserTransaction as i32,
            channel_id: CHANNEL.into(),
            tx_id,
            timestamp: Some(peer_core::proposal::timestamp(sim_now())),
            ..ChannelHeader::default()
        };
        let header = Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader { creator, nonce: vec![nonce; 24] }.encode_to_vec(),
        };
        let payload = Payload { header: Some(header), data: b"broadcast".to_vec() }.encode_to_vec();
        Envelope { signature: signer.sign(&payload), payload }
    };
    let envelopes = [transaction(member, 7), transaction(outsider, 8)];
    let mut stream = client(host).await.broadcast(tokio_stream::iter(envelopes)).await.unwrap().into_inner();
    let mut statuses = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        statuses.push(response.status);
    }
    statuses
}

#[test]
fn blocks_verify_and_arrive_oldest_to_newest_and_when_ready() {
    let (seen, _) = run(1, Duration::from_secs(6), None);
    verify(&seen.chain);
    let numbers: Vec<u64> = seen.chain.iter().map(|b| b.header.as_ref().unwrap().number).collect();
    assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
    // 20 tx/s cut at 10 per block for ~5.5s: about 11 blocks.
    assert!((9..=14).contains(&numbers.len()), "{} blocks", numbers.len());
    let (height, waited) = seen.waited.unwrap();
    assert_eq!(waited.header.as_ref().unwrap().number, height);
    assert_eq!(seen.chain[height as usize], waited);
    assert_eq!(seen.broadcast, vec![FabricStatus::Success as i32, FabricStatus::Forbidden as i32]);
    let broadcast_in_chain = seen.chain.iter().flat_map(|b| b.data.as_ref().unwrap().data.iter()).any(|tx| {
        let payload = Payload::decode(Envelope::decode(tx.as_slice()).unwrap().payload.as_slice()).unwrap();
        payload.data == b"broadcast"
    });
    assert!(broadcast_in_chain, "the accepted broadcast is in a block");
}

#[test]
fn the_same_seed_gives_the_same_blocks() {
    let first = hashes(&run(2, Duration::from_secs(4), None).0.chain);
    let second = hashes(&run(2, Duration::from_secs(4), None).0.chain);
    let other = hashes(&run(3, Duration::from_secs(4), None).0.chain);
    assert_eq!(first, second);
    assert_eq!(first[0], other[0], "the genesis block is the same");
    assert_ne!(first[1..], other[1..]);
}

#[test]
fn a_crashed_orderer_continues_its_chain_after_restart() {
    let (seen, before) = run(4, Duration::from_secs(8), Some((Duration::from_millis(3300), Duration::from_secs(4))));
    verify(&seen.chain);
    let after = hashes(&seen.chain);
    assert!(before.len() > 3, "blocks before the crash: {}", before.len());
    assert!(after.len() > before.len() + 3, "the chain grew after the restart: {} -> {}", before.len(), after.len());
    assert_eq!(after[..before.len()], before[..], "every block from before the crash is kept unchanged");
}

#[test]
fn a_replica_serves_the_leaders_chain_and_resumes_from_its_disk_after_a_crash() {
    let seed = 5;
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(40))
        .tick_duration(Duration::from_millis(1))
        .epoch(epoch())
        .rng_seed(seed)
        .build();
    let leader = orderer_host(&mut sim, "orderer", 0, seed, None);
    let replica = orderer_host(&mut sim, "orderer2", 1, seed, Some("orderer:7050"));
    let served: Arc<Mutex<(Vec<Block>, Vec<i32>)>> = Arc::default();
    {
        let served = served.clone();
        sim.client("client", async move {
            let world = world();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let statuses = broadcast("orderer2", &world.client, &outsider()).await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            let all = SeekInfo {
                start: position(seek_position::Type::Oldest(SeekOldest {})),
                stop: position(seek_position::Type::Newest(SeekNewest {})),
                ..SeekInfo::default()
            };
            let (chain, status) = fetch("orderer2", &world.client, all, 1).await;
            assert_eq!(status, FabricStatus::Success as i32);
            *served.lock().unwrap() = (chain, statuses);
            Ok(())
        });
    }
    // A power cut of the replica at 3.3s, a restart at 4s; the client is done at about 7s.
    let mut before_crash = 0;
    let mut restarted = false;
    loop {
        if sim.elapsed() >= Duration::from_millis(3300) && before_crash == 0 {
            let channels = replica.ledger.lock().unwrap().take().expect("the replica runs");
            before_crash = channels.ledger(CHANNEL).unwrap().height();
            drop(channels);
            replica.disk.power_cut();
            sim.crash("orderer2");
        }
        if sim.elapsed() >= Duration::from_secs(4) && !restarted {
            restarted = true;
            replica.disk.power_on();
            sim.bounce("orderer2");
        }
        if sim.step().unwrap() {
            break;
        }
    }
    let (chain, statuses) = std::mem::take(&mut *served.lock().unwrap());
    assert_eq!(statuses, vec![FabricStatus::ServiceUnavailable as i32, FabricStatus::Forbidden as i32]);
    assert!(before_crash > 3, "the replica had pulled blocks before its crash: {before_crash}");
    let start_heights = replica.start_heights.lock().unwrap().clone();
    assert_eq!(start_heights.len(), 2);
    assert!(start_heights[1] >= before_crash, "the restart resumed from its disk: {start_heights:?} after {before_crash}");
    // What the replica served verifies block by block and is the leader's chain (a prefix: it
    // may be a block behind).
    verify(&chain);
    let leader_chain = hashes(&chain_of(&leader.ledger.lock().unwrap().clone().unwrap()));
    let served = hashes(&chain);
    assert!(served.len() > before_crash as usize + 3, "the replica caught up after its restart: {} blocks", served.len());
    assert!(leader_chain.len() <= served.len() + 1, "at most a block behind: {} vs {}", served.len(), leader_chain.len());
    assert_eq!(served[..], leader_chain[..served.len()], "the replica's chain is the leader's");
}
