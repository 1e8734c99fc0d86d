//! Criterion micro-benchmarks of the peer's hot paths, with the real code and the real crypto:
//!
//! - `gossip`: signing an alive message as `Discovery` does (payload and secret, two ECDSA P-256
//!   signatures) and verifying it (two verifications); `Discovery` handling an alive message from
//!   a member it knows (the steady state: a newer sequence number, signatures verified, stored,
//!   queued for gossip) and from a member it does not (the identity is validated by its MSP too).
//! - `ledger`: appending a block to a channel ledger on disk (redb under a temp directory, the
//!   real Env: number, previous-hash and data-hash checks, indexes, a durable commit) for a
//!   small block and a 100 KB one; the hash-chain check of one block (data hash, link to the
//!   previous header).
//! - `config`: loading and validating `sampleconfig/core.yaml` as the CLI does (`config::load`).
//!
//! Short runs (1 s warm-up, 3 s measurement, 20 samples), so the whole suite takes about a
//! minute: `cargo bench -p peer-core --bench micro`. Results land in
//! `target/criterion/<group>/<id>/new/estimates.json`. Not measured here: the protocol at scale,
//! which `sim protosim` simulates without crypto.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use peer_core::config::{self, Config, EnvVars};
use peer_core::env::Instant;
use peer_core::gossip::discovery::{Discovery, DiscoveryConfig, SelfInfo};
use peer_core::gossip::identity::Identities;
use peer_core::gossip::message::{SignedMessage, Signer, empty_tag};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{data_hash, envelope, header_hash, new_block};
use peer_core::msp::{LocalMsp, Msp};
use peer_core::testkit::{self, epoch};
use proto::common::{Block, HeaderType};
use proto::gossip::gossip_message::Content;
use proto::gossip::{AliveMessage, Member, PeerTime};
use rand_core::SeedableRng;

fn sampleconfig() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").join("sampleconfig")
}

/// Two orgs of four peers each, generated from a fixed seed.
struct World {
    msps: Vec<Msp>,
    /// `peers[org][i]`.
    peers: Vec<Vec<LocalMsp>>,
}

fn world() -> World {
    let mut msps = Vec::new();
    let mut peers = Vec::new();
    for org in 1..=2 {
        let msp_id = format!("Org{org}MSP");
        let generated = testkit::org_with_peers(&msp_id, &format!("org{org}.example.com"), 4);
        msps.push(Msp::from_files(&generated.msp, &msp_id).expect("the org MSP loads"));
        peers.push(generated.peers.iter().map(|p| testkit::local_msp(p, &msp_id)).collect());
    }
    World { msps, peers }
}

fn endpoint(msp: &LocalMsp) -> String {
    format!("{}.example.com:7051", &hex::encode(&msp.pki_id().0[..4]))
}

/// An alive message as `Discovery` signs its own: payload and secret (internal endpoint).
fn alive(msp: &LocalMsp, seq_num: u64, with_identity: bool) -> SignedMessage {
    let alive = AliveMessage {
        membership: Some(Member { endpoint: endpoint(msp), metadata: Vec::new(), pki_id: msp.pki_id().0.to_vec() }),
        timestamp: Some(PeerTime { inc_num: 1_748_736_000_000_000_000, seq_num }),
        identity: if with_identity { msp.identity.serialize() } else { Vec::new() },
    };
    SignedMessage::sign(empty_tag(Content::AliveMsg(alive), 0), msp).with_internal_endpoint(&endpoint(msp), msp)
}

/// Fabric's default membership settings, from the sample core.yaml.
fn settings() -> DiscoveryConfig {
    let path = sampleconfig().join("core.yaml");
    let text = std::fs::read_to_string(&path).expect("the sample core.yaml reads");
    let loaded = Config::from_yaml(&text, &path, &EnvVars::new()).expect("the sample core.yaml loads");
    DiscoveryConfig::from_config(&loaded.config.gossip, Vec::new(), Vec::new())
}

/// Org1's peer0, knowing nobody yet.
fn receiver(world: &World, settings: &DiscoveryConfig) -> Discovery {
    let me = &world.peers[0][0];
    let settings = settings.clone();
    let identities = Identities::new(me, world.msps[1..].iter().cloned());
    let self_info =
        SelfInfo { pki_id: me.pki_id(), org: me.msp.id.clone(), external_endpoint: endpoint(me), internal_endpoint: endpoint(me) };
    let signer: Arc<dyn Signer> = Arc::new(me.clone());
    Discovery::new(settings, self_info, signer, identities, rand_chacha::ChaCha20Rng::seed_from_u64(1), Instant(0), epoch())
}

fn drain(discovery: &mut Discovery) {
    while discovery.poll_transmit().is_some() {}
    while discovery.poll_event().is_some() {}
}

fn gossip(c: &mut Criterion) {
    let world = world();
    let settings = settings();
    let sender = &world.peers[0][1];
    let mut group = c.benchmark_group("gossip");
    group.bench_function("sign_alive", |b| b.iter(|| alive(black_box(sender), 1, false)));
    let signed = alive(sender, 1, false);
    group.bench_function("verify_alive", |b| b.iter(|| black_box(&signed).verify(&sender.identity).expect("verifies")));

    // Steady state: a known member's next alive message. The receiver knows six members, so the
    // message is also queued for gossip to some of them.
    let mut discovery = receiver(&world, &settings);
    let now = Instant(1_000_000_000);
    let members = [&world.peers[0][1], &world.peers[0][2], &world.peers[0][3], &world.peers[1][0], &world.peers[1][1], &world.peers[1][2]];
    for member in members {
        let first = if member.msp.id == "Org1MSP" { alive(member, 1, true) } else { alive(member, 1, true).without_secret() };
        discovery.handle_message(now, member.pki_id(), first).expect("a first alive message is accepted");
    }
    drain(&mut discovery);
    let mut seq = 1;
    group.bench_function("discovery_alive_known", |b| {
        b.iter_batched(
            || {
                seq += 1;
                alive(sender, seq, false)
            },
            |message| {
                discovery.handle_message(now, sender.pki_id(), message).expect("a newer alive message is accepted");
                drain(&mut discovery);
            },
            BatchSize::SmallInput,
        )
    });

    // A member not seen before (another org's, with its certificate): identity validated by the
    // MSP, signatures verified, member learned.
    let stranger = &world.peers[1][3];
    let first = alive(stranger, 1, true).without_secret();
    group.bench_function("discovery_alive_new", |b| {
        b.iter_batched(
            || (receiver(&world, &settings), first.clone()),
            |(mut discovery, message)| {
                discovery.handle_message(now, stranger.pki_id(), message).expect("a new member's alive message is accepted");
                drain(&mut discovery);
                discovery
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The block after `previous` with `txs` transactions of `tx_bytes` each.
fn next_block(previous: &Block, txs: usize, tx_bytes: usize) -> Block {
    let header = previous.header.as_ref().expect("a header");
    let number = header.number + 1;
    let data = vec![0x5a; tx_bytes];
    let envelopes = (0..txs).map(|i| envelope(HeaderType::EndorserTransaction, "bench", &format!("tx-{number}-{i}"), &data)).collect();
    new_block(number, &header_hash(header), envelopes)
}

/// The hash-chain check of one block: its data hash, and its link to the previous header.
fn check_link(previous: &Block, block: &Block) -> bool {
    let (Some(previous), Some(header), Some(data)) = (previous.header.as_ref(), block.header.as_ref(), block.data.as_ref()) else {
        return false;
    };
    header.number == previous.number + 1 && header.previous_hash == header_hash(previous) && header.data_hash == data_hash(data)
}

fn ledger(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let env = peer_core::env::real::env().expect("the real env");
    let mgr = LedgerMgr::open(&env, dir.path(), "bench").expect("the ledger opens");
    let mut group = c.benchmark_group("ledger");
    // (id, transactions, bytes each): one small transaction; 100 KB in ten transactions.
    for (id, txs, tx_bytes) in [("small", 1, 200), ("100k", 10, 10 * 1024)] {
        let channel = format!("bench{id}");
        let genesis = new_block(0, &[], vec![envelope(HeaderType::Config, &channel, "", b"config")]);
        let channel_ledger = mgr.create_from_genesis(&genesis).expect("the channel is created");
        let mut tip = genesis;
        group.bench_function(format!("append_{id}"), |b| {
            b.iter_batched(
                || {
                    tip = next_block(&tip, txs, tx_bytes);
                    tip.clone()
                },
                |block| channel_ledger.append(&block).expect("the next block appends"),
                BatchSize::SmallInput,
            )
        });
        let previous = next_block(&tip, txs, tx_bytes);
        let block = next_block(&previous, txs, tx_bytes);
        group.bench_function(format!("hash_chain_{id}"), |b| b.iter(|| assert!(check_link(black_box(&previous), black_box(&block)))));
    }
    group.finish();
}

fn config_load(c: &mut Criterion) {
    let env = EnvVars::new().with("FABRIC_CFG_PATH", &sampleconfig().display().to_string());
    let cwd = sampleconfig();
    let mut group = c.benchmark_group("config");
    group.bench_function("load_sampleconfig", |b| b.iter(|| config::load(black_box(&env), &cwd).expect("the sample config loads")));
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = gossip, ledger, config_load
}
criterion_main!(micro);
