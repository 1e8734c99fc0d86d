//! Running one scenario with one seed.
//!
//! Every peer is a turmoil host whose body calls the same `peer_core::node::start` as the CLI,
//! with a simulated Env (clock, network, disk) and a seed derived from the run seed. All hosts
//! log into one capture with simulated timestamps; that trace is the run's record, and its
//! SHA-256 is what the determinism check compares.
//!
//! A scenario with an `orderer:` section also has a host named `orderer` running
//! `sim::orderer::Orderer` on its own disk; its ledger is sampled like the peers' (height and
//! block hashes, which must only ever grow, across crashes too) and recorded in
//! [`Outcome::orderer_blocks`]. With `nodes: N`, hosts `orderer2` … `ordererN` replicate its
//! chain, each on its own disk; every sample checks that a replica's chain only grows and is a
//! prefix of the cutter's (no fork).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peer_core::channel::config::AnchorPeer;
use peer_core::channel::genesis::{GenesisOrg, GenesisSpec, genesis_block};
use peer_core::channels::Channels;
use peer_core::config::{Config, EnvVars};
use peer_core::env::Env;
use peer_core::gossip::driver::{GossipView, View};
use peer_core::gossip::publish::Leadership;
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::{self, OrgSpec as GenSpec, ValidityWindow};
use peer_core::node;
use peer_core::services::operations::LogControl;
use peer_core::testkit::epoch;
use proto::common::Block;
use sha2::{Digest, Sha256};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use crate::env::{MessageFaults, NetFaults, SignatureMemo, SimClock, SimDisk, SimNetwork, SimStorage};
use crate::orderer::{ConfigUpdate, Orderer, OrdererSpec, OrdererTls};
use crate::scenario::{Bootstrap, Event, NewBlocks, ORDERER, PeerSpec, QuietWindow, Scenario, Step, TlsMode};
use peer_core::net::tls::PemFile;
use peer_core::node::tls::TlsFiles;

/// The simulated wall clock starts here (inside the generated certificates' validity): the test
/// kit's epoch, 2025-06-01T00:00:00Z.
pub use peer_core::testkit::EPOCH_SECS;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Log lines without colours, stamped with simulated time.
const TRACE_FORMAT: &str = "%{time:15:04:05.000} [%{module}] %{shortfunc} -> %{level:.4s} %{message}";

/// What one run produced.
#[derive(Debug)]
pub struct Outcome {
    pub scenario: String,
    pub seed: u64,
    /// Every log line of every peer, in order.
    pub trace: String,
    /// SHA-256 of the trace, hex.
    pub hash: String,
    /// Checks that failed, first first.
    pub violations: Vec<String>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Milestones reached, by kind (see [`Scenario::expected_milestones`]).
    pub milestones: BTreeMap<&'static str, u64>,
    /// How long after the last fault membership converged for good: from this sample on every
    /// running peer saw exactly the members it should, to the end of the run (see `diverged`).
    pub converged_after: Option<Duration>,
    /// A compact, readable timeline: the faults as they are injected (one line per moment, see
    /// `Scenario::describe_events`; disk faults per peer), membership views as they change, and
    /// key lines (blocks, failovers, convergence).
    pub summary: String,
    /// Per sample: for each peer, whether it runs and how many of the running peers that should
    /// see it alive do (seen, should), for the timeline picture.
    pub samples: Vec<(Duration, BTreeMap<String, Visibility>)>,
    /// For each restart of a peer with an orderer running: how long (simulated) until the peer
    /// held every block the orderer had when it restarted.
    pub catch_up: Vec<(String, Duration)>,
    /// With an orderer, per sample: the ledger height of each peer and ordering-service node
    /// whose ledger is open (a crashed one is missing), for the timeline picture.
    pub heights: Vec<(Duration, BTreeMap<String, u64>)>,
    /// With several orderer nodes: each time a peer's deliver client connected to an
    /// ordering-service node, in time order (see [`Delivery`]).
    pub deliveries: Vec<Delivery>,
    /// Each time membership had converged after the last fault and then diverged again (with
    /// no fault in between): when it had converged, and when it diverged. `converged_after`
    /// counts from the last convergence, the one that held to the end.
    pub diverged: Vec<(Duration, Duration)>,
    /// The orderer's chain as last sampled (header hashes, hex, by block number); empty without
    /// an orderer. Later checks compare peers' blocks with these.
    pub orderer_blocks: Vec<String>,
}

/// A peer's deliver client pulling blocks from an ordering-service node (from its `Pulling next
/// blocks from ordering service` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub at: Duration,
    pub peer: String,
    /// The node's host name (`orderer2`).
    pub node: String,
    /// The peer pulled from another node before: it failed over.
    pub moved: bool,
}

/// How visible a peer is at one sample. For a crashed peer, `seen` counts the peers that still
/// see it alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Visibility {
    pub running: bool,
    pub seen: usize,
    pub should: usize,
}

struct NoLogControl;

impl LogControl for NoLogControl {
    fn spec(&self) -> String {
        "info".into()
    }
    fn set_spec(&self, _spec: &str) -> Result<(), String> {
        Err("log levels cannot change inside the simulator".into())
    }
}

/// The generated crypto of a run: each peer's local MSP, and the genesis block of the channel
/// every peer joins (the only way peers learn the other orgs).
struct Crypto {
    peers: BTreeMap<String, LocalMsp>,
    genesis: Block,
    /// The orderer's signing identity (OrdererMSP's admin) and the creator of its synthetic
    /// transactions (the first org's admin).
    orderer_signer: LocalMsp,
    client: LocalMsp,
    /// With TLS: each peer's files (by peer name) and each orderer node's TLS (by node name).
    peer_tls: BTreeMap<String, TlsFiles>,
    orderer_tls: BTreeMap<String, OrdererTls>,
}

/// Where a simulated peer's TLS files "are" (the sample config's relative paths, from the
/// config's directory): only errors ever show them.
const TLS_DIR: &str = "/etc/peer/tls";

/// The channel every simulated peer joins at its first start.
pub const CHANNEL: &str = "simchannel";
/// Where every ordering-service node serves `orderer.AtomicBroadcast`.
const ORDERER_PORT: u16 = 7050;

fn crypto(scenario: &Scenario, foreign_tls: bool) -> Crypto {
    let mut peers = BTreeMap::new();
    let mut generated_orgs = Vec::new();
    let specs = scenario.peers();
    // Crypto depends on the scenario only, not the run seed: key generation is not what we test.
    let generate = |spec: &GenSpec| {
        generate::generate_org(spec, &mut generate::org_rng(1, spec), ValidityWindow::fixed()).expect("generating a scenario org")
    };
    for org in &scenario.orgs {
        let msp_id = specs.iter().find(|p| p.org == org.name).map(|p| p.msp_id.clone()).unwrap_or_default();
        let spec = GenSpec { msp_id: msp_id.clone(), domain: format!("{}.example.com", org.name), peers: org.peers };
        let generated = generate(&spec);
        for (index, node) in generated.peers.iter().enumerate() {
            let msp = LocalMsp::from_files(&node.msp, &msp_id, epoch()).expect("a generated peer MSP loads");
            peers.insert(format!("{}-peer{index}", org.name), msp);
        }
        generated_orgs.push((org.name.clone(), generated));
    }
    let orderer = generate(&GenSpec { msp_id: "OrdererMSP".into(), domain: "example.com".into(), peers: 0 });
    let (mut peer_tls, orderer_tls) = tls_material(scenario, &generated_orgs, &orderer);
    if foreign_tls && let Some(last) = scenario.peers().last() {
        // An impostor CA of the same name issues the last peer's TLS pair.
        let impostor = generate(&GenSpec { msp_id: last.msp_id.clone(), domain: format!("{}.impostor.example.com", last.org), peers: 0 });
        let mut rng = generate::org_rng(3, &impostor.spec);
        let pair = impostor.issue_tls(&[last.name.as_str()], &mut rng, ValidityWindow::fixed()).expect("issuing the impostor's TLS pair");
        if let Some(files) = peer_tls.get_mut(&last.name) {
            files.cert.bytes = pair.cert;
            files.key.bytes = pair.key;
        }
    }
    let mut spec = GenesisSpec::new(CHANNEL, epoch());
    // Every ordering-service node's endpoint, so peers' deliver clients can fail over between
    // them (`orderer:7050` alone without a section: the genesis block is the same either way).
    let orderer_endpoints = match scenario.orderer_nodes() {
        nodes if nodes.is_empty() => vec![format!("{ORDERER}:{ORDERER_PORT}")],
        nodes => nodes.iter().map(|node| format!("{node}:{ORDERER_PORT}")).collect(),
    };
    spec.orderer_orgs.push(GenesisOrg { name: "OrdererOrg".into(), org: &orderer, anchor_peers: Vec::new(), orderer_endpoints });
    for (name, org) in &generated_orgs {
        let anchor_peers =
            if scenario.is_anchor_org(name) { vec![AnchorPeer { host: format!("{name}-peer0"), port: 7051 }] } else { Vec::new() };
        spec.application_orgs.push(GenesisOrg { name: org.spec.msp_id.clone(), org, anchor_peers, orderer_endpoints: Vec::new() });
    }
    let genesis = genesis_block(&spec).expect("the scenario's genesis block builds");
    let orderer_signer = LocalMsp::from_files(&orderer.admin.msp, "OrdererMSP", epoch()).expect("the generated orderer identity loads");
    let client = match generated_orgs.first() {
        Some((_, org)) => LocalMsp::from_files(&org.admin.msp, &org.spec.msp_id, epoch()).expect("a generated admin identity loads"),
        None => orderer_signer.clone(),
    };
    Crypto { peers, genesis, orderer_signer, client, peer_tls, orderer_tls }
}

/// TLS pairs for every peer and orderer node under its simulated host name (the certificates'
/// only DNS name), issued by its org's TLS CA, from a stream of their own (the scenario's, not
/// the run's). Nothing without `tls`.
fn tls_material(
    scenario: &Scenario,
    orgs: &[(String, generate::Org)],
    orderer: &generate::Org,
) -> (BTreeMap<String, TlsFiles>, BTreeMap<String, OrdererTls>) {
    let (mut peers, mut orderers) = (BTreeMap::new(), BTreeMap::new());
    if scenario.tls.is_off() {
        return (peers, orderers);
    }
    let mutual = scenario.tls == TlsMode::Mutual;
    let file = |dir: &str, name: &str, bytes: &[u8]| PemFile { path: format!("{dir}/{name}").into(), bytes: bytes.to_vec() };
    let issue = |org: &generate::Org, host: &str| {
        let mut rng = generate::org_rng(2, &GenSpec { msp_id: org.spec.msp_id.clone(), domain: host.into(), peers: 0 });
        org.issue_tls(&[host], &mut rng, ValidityWindow::fixed()).expect("issuing a scenario TLS pair")
    };
    for (name, org) in orgs {
        for index in 0..org.spec.peers {
            let host = format!("{name}-peer{index}");
            let pair = issue(org, &host);
            let ca = file(TLS_DIR, "ca.crt", &pair.ca_crt);
            let files = TlsFiles {
                cert: file(TLS_DIR, "server.crt", &pair.cert),
                key: file(TLS_DIR, "server.key", &pair.key),
                root_cert: Some(ca.clone()),
                client_root_cas: if mutual { vec![ca] } else { Vec::new() },
                client: None,
                orderer_override_cas: Vec::new(),
            };
            peers.insert(host, files);
        }
    }
    // An orderer verifies clients of every org (and its fellow nodes).
    let client_roots: Vec<PemFile> = orgs
        .iter()
        .map(|(_, org)| &org.tls_ca.cert_pem)
        .chain([&orderer.tls_ca.cert_pem])
        .enumerate()
        .map(|(i, pem)| file("/etc/orderer/tls", &format!("client-ca-{i}.crt"), pem))
        .collect();
    let mut nodes = scenario.orderer_nodes();
    if nodes.is_empty() {
        nodes.push(ORDERER.to_string());
    }
    for node in nodes {
        let pair = issue(orderer, &node);
        let tls = OrdererTls {
            cert: file("/etc/orderer/tls", "server.crt", &pair.cert),
            key: file("/etc/orderer/tls", "server.key", &pair.key),
            client_auth_required: mutual,
            client_roots: if mutual { client_roots.clone() } else { Vec::new() },
        };
        orderers.insert(node, tls);
    }
    (peers, orderers)
}

/// The CORE_* settings that make a peer out of the sample config.
fn peer_env(scenario: &Scenario, peer: &PeerSpec) -> EnvVars {
    let mut env = EnvVars::new()
        .with("CORE_PEER_ID", &peer.name)
        .with("CORE_PEER_LISTENADDRESS", "0.0.0.0:7051")
        .with("CORE_PEER_ADDRESS", &format!("{}:7051", peer.name))
        .with("CORE_PEER_CHAINCODELISTENADDRESS", "0.0.0.0:7052")
        .with("CORE_OPERATIONS_LISTENADDRESS", "0.0.0.0:9443")
        .with("CORE_PEER_FILESYSTEMPATH", "/var/peer")
        .with("CORE_PEER_LOCALMSPID", &peer.msp_id)
        .with("CORE_METRICS_PROVIDER", "disabled")
        // Each org's peer0 is its static leader (pulls from the orderer and gossips blocks to the
        // org); the others get blocks by gossip and catch up by state transfer. Without an
        // orderer nobody pulls. Scenario `env` can override all of this.
        .with("CORE_PEER_GOSSIP_USELEADERELECTION", "false")
        .with("CORE_PEER_GOSSIP_ORGLEADER", if scenario.orderer.is_some() && peer.index == 0 { "true" } else { "false" })
        .with("CORE_PEER_GOSSIP_STATE_ENABLED", "true");
    let bootstrap = match (scenario.bootstrap, peer.index) {
        (_, 0) => String::new(),
        (Bootstrap::First, _) => format!("{}-peer0:7051", peer.org),
        (Bootstrap::Chain, i) => format!("{}-peer{}:7051", peer.org, i - 1),
    };
    env = env.with("CORE_PEER_GOSSIP_BOOTSTRAP", &bootstrap);
    if !scenario.tls.is_off() {
        // The sample config's file paths stand (the files come from `Crypto::peer_tls`).
        env = env
            .with("CORE_PEER_TLS_ENABLED", "true")
            .with("CORE_PEER_TLS_CLIENTAUTHREQUIRED", &(scenario.tls == TlsMode::Mutual).to_string());
    }
    if peer.external {
        env = env.with("CORE_PEER_GOSSIP_EXTERNALENDPOINT", &format!("{}:7051", peer.name));
    }
    for (key, value) in scenario.env.iter().chain(scenario.peer_env.get(&peer.name).into_iter().flatten()) {
        env = env.with(key, value);
    }
    env
}

const SAMPLE_CONFIG: &str = include_str!("../../sampleconfig/core.yaml");

/// The trace without what says which build ran it: the version block's commit and compiler lines
/// (each peer logs the block at start) read `(build)`, so a trace hash changes only when what the
/// peers do changes, not with every commit (a reshaping change proves itself by equal hashes).
fn without_build_stamp(trace: &str) -> String {
    let mut out = String::with_capacity(trace.len());
    for line in trace.split_inclusive('\n') {
        match [" Commit SHA: ", " Rust version: "].iter().find(|prefix| line.starts_with(*prefix)) {
            Some(prefix) => {
                out.push_str(prefix);
                out.push_str("(build)");
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Outcome {
    run_broken(scenario, seed, None)
}

/// Runs `scenario` with `seed`, optionally with an invariant deliberately broken (tests only).
pub fn run_broken(scenario: &Scenario, seed: u64, broken: Option<Breakage>) -> Outcome {
    let sink = MemorySink::new();
    let clock: logging::WallClockFn = Arc::new(|| epoch() + turmoil::sim_elapsed().unwrap_or_default());
    // With an orderer, its per-block line ("Wrote block", DEBUG in Fabric) is in the trace too.
    let spec = if scenario.orderer.is_some() { "info:orderer.common.multichannel=debug" } else { "info" };
    let config = LoggingConfig { spec: spec.into(), format: TRACE_FORMAT.into() };
    let (layer, _handle) = logging::layer(&config, clock, sink.sink()).expect("the trace format is valid");
    let subscriber = tracing_subscriber::registry().with(layer);
    let mut outcome = tracing::subscriber::with_default(subscriber, || simulate(scenario, seed, broken));
    outcome.trace = without_build_stamp(&sink.contents());
    outcome.hash = hex::encode(Sha256::digest(outcome.trace.as_bytes()));
    check_logs(scenario, &mut outcome);
    if scenario.orderer_nodes().len() > 1 {
        trace_failovers(scenario, &mut outcome);
    }
    outcome
}

type Views = Arc<Mutex<BTreeMap<String, GossipView>>>;
/// Each running peer's channels, and which peers' joins were acknowledged (and so must survive
/// any crash).
type Ledgers = Arc<Mutex<BTreeMap<String, Arc<Channels>>>>;
type Joined = Arc<Mutex<BTreeSet<String>>>;
/// Each running peer's leadership handle (whom its election made leader).
type Leaders = Arc<Mutex<BTreeMap<String, Leadership>>>;
/// The running ordering-service nodes' ledgers, by host name (a node is absent while it is down).
pub type OrdererLedgers = Arc<Mutex<BTreeMap<String, Arc<Channels>>>>;

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn simulate(scenario: &Scenario, seed: u64, broken: Option<Breakage>) -> Outcome {
    let peers = scenario.peers();
    let crypto = Arc::new(crypto(scenario, broken == Some(Breakage::ForeignTls)));
    // Power cuts tear unsynced writes (each kept, lost or cut at a sector boundary), seeded per
    // peer: only what was synced is safe, as on a real disk.
    let mut disks: BTreeMap<String, SimDisk> = peers
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let disk = SimDisk::default();
            disk.set_torn_writes(Some(seed ^ ((index as u64 + 1) << 32)));
            if let Some(section) = &scenario.disk {
                disk.set_faults(Some((disk_rates(section), seed ^ ((index as u64 + 1) << 40))));
            }
            (p.name.clone(), disk)
        })
        .collect();
    let mut disk_faults_on = scenario.disk.as_ref().is_some_and(|d| d.rates().iter().any(|(_, p)| *p > 0.0));
    let orderer_ledgers: OrdererLedgers = Arc::default();
    let views: Views = Arc::default();
    let ledgers: Ledgers = Arc::default();
    let joined: Joined = Arc::default();
    let leaders: Leaders = Arc::default();
    let delays_fired = Arc::new(AtomicU64::new(0));
    // Deliver streams opened at any ordering-service node (the quiet-window check).
    let deliver_streams = Arc::new(AtomicU64::new(0));
    // One memo of checked gossip signatures for the whole run (see `SignatureMemo`).
    let signatures = Arc::new(SignatureMemo::new());
    let network = scenario.network.clone().unwrap_or_default();
    // Message faults are on when the scenario can ever lose or repeat a message.
    let message_faults =
        network.loss > 0.0 || network.duplicate > 0.0 || scenario.timeline.iter().any(|s| matches!(s.event, Event::Loss(_)));
    let loss = Arc::new(AtomicU64::new(network.loss.to_bits()));
    let (lost, duplicated) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Peers the timeline starts later wait behind a gate until their start event.
    let gates: BTreeMap<String, tokio::sync::watch::Sender<bool>> =
        peers.iter().filter(|p| scenario.starts_late(&p.name)).map(|p| (p.name.clone(), tokio::sync::watch::Sender::new(false))).collect();
    let mut sim = turmoil::Builder::new()
        .simulation_duration(scenario.duration + Duration::from_secs(60))
        .tick_duration(scenario.tick.unwrap_or(crate::scenario::DEFAULT_TICK))
        .epoch(epoch())
        .rng_seed(seed)
        .build();
    let sample_path = std::path::Path::new("/etc/peer/core.yaml");
    for (index, peer) in peers.iter().enumerate() {
        let config = Config::from_yaml(SAMPLE_CONFIG, sample_path, &peer_env(scenario, peer)).expect("scenario config is valid").config;
        let disk = disks[&peer.name].clone();
        let (crypto, views, name) = (crypto.clone(), views.clone(), peer.name.clone());
        let (ledgers, joined, leaders) = (ledgers.clone(), joined.clone(), leaders.clone());
        let (network, delays_fired) = (network.clone(), delays_fired.clone());
        let (loss, lost, duplicated) = (loss.clone(), lost.clone(), duplicated.clone());
        let signatures = signatures.clone();
        let disk_faults = scenario.disk.as_ref().is_some_and(|d| d.rates().iter().any(|(_, p)| *p > 0.0));
        let gate = gates.get(&peer.name).map(|g| g.subscribe());
        // Each start of the host gets its own seed (a restart is a new process).
        let starts = Arc::new(Mutex::new(0u64));
        sim.host(peer.name.as_str(), move || {
            let mut start = starts.lock().unwrap_or_else(|p| p.into_inner());
            *start += 1;
            let mut env_seed = [0u8; 32];
            env_seed[..8].copy_from_slice(&seed.to_le_bytes());
            env_seed[8..16].copy_from_slice(&(index as u64).to_le_bytes());
            env_seed[16..24].copy_from_slice(&start.to_le_bytes());
            let (disk, views, name) = (disk.clone(), views.clone(), name.clone());
            let (ledgers, joined, leaders, genesis) = (ledgers.clone(), joined.clone(), leaders.clone(), crypto.genesis.clone());
            // Fault streams of their own, apart from the peer's Env.
            let stream = |tag: u8| {
                use rand_core::SeedableRng;
                let mut seed = env_seed;
                seed[31] ^= tag;
                Arc::new(Mutex::new(rand_chacha::ChaCha8Rng::from_seed(seed)))
            };
            let faults = (network.delay_probability > 0.0).then(|| NetFaults {
                probability: network.delay_probability,
                max_delay: network.max_delay,
                rng: stream(0x4e),
                fired: delays_fired.clone(),
            });
            let messages = message_faults.then(|| MessageFaults {
                loss: loss.clone(),
                duplicate: network.duplicate,
                rng: stream(0x6d),
                lost: lost.clone(),
                duplicated: duplicated.clone(),
            });
            let setup = node::Setup {
                tls_files: crypto.peer_tls.get(&name).cloned(),
                identity_verifier: signatures.clone(),
                message_faults: messages.map(|m| Arc::new(m) as Arc<dyn peer_core::gossip::comm::MessageFaults>),
                ..node::Setup::new(config.clone(), crypto.peers[&name].clone(), Arc::new(NoLogControl), name.clone())
            };
            let mut gate = gate.clone();
            let span = tracing::info_span!("peer", name = %name);
            async move {
                if let Some(gate) = gate.as_mut() {
                    // The sender lives as long as the run; a closed gate just never opens.
                    let _ = gate.wait_for(|open| *open).await;
                }
                let env = Env::new(
                    Arc::new(SimClock::new(epoch())),
                    Arc::new(SimNetwork { host: name.clone(), faults }),
                    Arc::new(SimStorage(disk)),
                    env_seed,
                );
                let running = node::start(env, setup).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error>)?;
                views.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), running.gossip_view.clone());
                // Join the channel once; after an acknowledged join, the disk must keep it (the
                // checker looks), so a restart never joins again.
                let acknowledged = locked(&joined).contains(&name);
                if !acknowledged && running.channels.ledger(CHANNEL).is_none() {
                    // As an operator would, a join that fails on a faulty disk is tried again.
                    let mut attempts = 0;
                    while let Err(err) = running.channels.join(&genesis) {
                        attempts += 1;
                        if !disk_faults || attempts >= 20 {
                            return Err(Box::new(err) as Box<dyn std::error::Error>);
                        }
                        tracing::warn!(target: "sim", "channel join failed ({err}); trying again");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    locked(&joined).insert(name.clone());
                }
                locked(&leaders).insert(name.clone(), running.leadership.clone());
                locked(&ledgers).insert(name, running.channels.clone());
                std::future::pending::<()>().await;
                drop(running);
                Ok(())
            }
            .instrument(span)
        });
    }

    if let Some(section) = &scenario.orderer {
        // Seeds and torn-write streams continue the peers' numbering, node 0 first (as before
        // there were replicas).
        for (node, name) in scenario.orderer_nodes().into_iter().enumerate() {
            let index = (peers.len() + node) as u64;
            let disk = SimDisk::default();
            disk.set_torn_writes(Some(seed ^ ((index + 1) << 32)));
            disks.insert(name.clone(), disk.clone());
            let split_brain = broken == Some(Breakage::SplitBrain);
            let replicate_from = (node > 0 && !split_brain).then(|| format!("{ORDERER}:{ORDERER_PORT}"));
            let node =
                OrdererNode { name, index, replicate_from, deliver_streams: deliver_streams.clone(), timeline: scenario.timeline.clone() };
            add_orderer(&mut sim, seed, node, section.clone(), disk, crypto.clone(), orderer_ledgers.clone());
        }
    }

    let mut outcome = Outcome {
        scenario: scenario.name.clone(),
        seed,
        trace: String::new(),
        hash: String::new(),
        violations: Vec::new(),
        faults: BTreeMap::new(),
        milestones: BTreeMap::new(),
        converged_after: None,
        summary: String::new(),
        samples: Vec::new(),
        orderer_blocks: Vec::new(),
        catch_up: Vec::new(),
        heights: Vec::new(),
        deliveries: Vec::new(),
        diverged: Vec::new(),
    };
    let mut timeline = scenario.timeline.clone();
    timeline.sort_by_key(|s| s.at);
    let mut timeline = timeline.into_iter().peekable();
    let mut running: BTreeSet<String> = peers.iter().map(|p| p.name.clone()).filter(|p| !gates.contains_key(p)).collect();
    let mut checker = Checker::new(scenario, &crypto);
    checker.disk_faults = disk_faults_on;
    // Since when each peer has been crashed, and each (a, b) pair cut off both ways.
    let mut down_since: BTreeMap<String, Duration> = BTreeMap::new();
    let mut cut_since: BTreeMap<(String, String), Duration> = BTreeMap::new();
    let mut next_sample = SAMPLE_EVERY;
    let last_fault = scenario.last_fault();
    // Convergence counts only once every timeline event has been applied, and only if it holds
    // from then to the end: views can match after a partition heals only because nobody has
    // expired the members it hid yet (their last alive messages are not old enough), and
    // diverge a moment later with no fault in between (swarm seed 7). `converged_since` is the
    // sample from which every sample so far matched.
    let mut all_applied = timeline.peek().is_none();
    let mut converged_since: Option<Duration> = None;
    // The peers' disk faults as last counted, to show new ones in the timeline.
    let mut disk_faults_seen: BTreeMap<String, crate::env::DiskFaultStats> = BTreeMap::new();
    if disk_faults_on && let Some(section) = &scenario.disk {
        let names = ["read corruption", "misdirected write", "latent sector error", "fsync failure", "out of space"];
        let rates: Vec<String> =
            section.rates().iter().zip(names).filter(|((_, p), _)| *p > 0.0).map(|((_, p), name)| format!("{name} {p}")).collect();
        let until = section.until.map(|u| format!(" until {:.2}s", u.as_secs_f64())).unwrap_or_default();
        outcome.summary.push_str(&format!(
            "{} disk faults on every peer's disk{until} (per operation: {})\n",
            stamp(Duration::ZERO),
            rates.join(", ")
        ));
    }
    while sim.elapsed() < scenario.duration {
        // The disks are sound again from `disk.until` (bad sectors stay bad until rewritten: the
        // peer must heal around them).
        if disk_faults_on && scenario.disk.as_ref().and_then(|d| d.until).is_some_and(|until| sim.elapsed() >= until) {
            disk_faults_on = false;
            for (name, disk) in &disks {
                if !scenario.is_orderer(name) {
                    disk.set_faults(None);
                }
            }
            tracing::info!(target: "sim", "timeline: disk faults end");
            outcome
                .summary
                .push_str(&format!("{} disk faults end\n", stamp(scenario.disk.as_ref().and_then(|d| d.until).unwrap_or_default())));
        }
        // The events applied now, for the timeline (one moment's partitions on one line).
        let mut applied: Vec<Step> = Vec::new();
        while let Some(step) = timeline.next_if(|s| s.at <= sim.elapsed()) {
            *outcome.faults.entry(step.event.kind()).or_default() += 1;
            tracing::info!(target: "sim", "timeline: {:?}", step.event);
            let faults =
                Faults { scenario, disks: &disks, gates: &gates, loss: &loss, ledgers: &ledgers, orderers: &orderer_ledgers, broken };
            apply(&mut sim, &step.event, &faults, &views, &mut running);
            all_applied = timeline.peek().is_none();
            let now = sim.elapsed();
            match &step.event {
                // Orderer nodes are no gossip members: their crashes are not membership faults.
                Event::Crash(name) | Event::Kill(name) | Event::Restart(name) if scenario.is_orderer(name) => {}
                Event::Crash(peer) | Event::Kill(peer) => {
                    down_since.insert(peer.clone(), now);
                }
                Event::Restart(peer) => {
                    down_since.remove(peer);
                    checker.restarted.insert(peer.clone());
                    if scenario.orderer.is_some() {
                        checker.catching_up.insert(peer.clone(), (now, checker.orderer_blocks.len() as u64));
                    }
                }
                Event::Partition([a, b]) => {
                    cut_since.insert((a.clone(), b.clone()), now);
                    cut_since.insert((b.clone(), a.clone()), now);
                }
                Event::Heal([a, b]) => {
                    cut_since.remove(&(a.clone(), b.clone()));
                    cut_since.remove(&(b.clone(), a.clone()));
                }
                Event::RemoveOrg(org) => {
                    checker.removed.insert(org.clone(), now);
                }
                _ => {}
            }
            applied.push(step);
        }
        let mut moments = applied.iter().peekable();
        while let Some(step) = moments.next() {
            let mut events = vec![&step.event];
            while let Some(same) = moments.next_if(|s| s.at == step.at) {
                events.push(&same.event);
            }
            for line in scenario.describe_events(&events) {
                outcome.summary.push_str(&format!("{} {line}\n", stamp(step.at)));
            }
        }
        if let Err(err) = sim.step() {
            outcome.violations.push(format!("at {:?}: a host failed: {err}", sim.elapsed()));
            break;
        }
        if sim.elapsed() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let snapshot = snapshot(&views, broken);
            checker.sample(sim.elapsed(), &snapshot, &running, &mut outcome);
            checker.check_ledgers(sim.elapsed(), &ledgers, &joined, &mut outcome);
            checker.check_orderer(sim.elapsed(), &orderer_ledgers, &mut outcome);
            checker.check_peer_blocks(sim.elapsed(), &ledgers, &orderer_ledgers, &mut outcome);
            let heights = std::mem::take(&mut checker.sample_heights);
            if scenario.orderer.is_some() {
                outcome.heights.push((sim.elapsed(), heights));
            }
            // Peers of an org removed from the channel get no blocks any more: block and leader
            // liveness is about the channel's members.
            let members: BTreeSet<String> =
                running.iter().filter(|p| !checker.removed.contains_key(&checker.spec(p).org)).cloned().collect();
            if let Some(within) = scenario.checks.blocks_within {
                checker.check_caught_up(sim.elapsed(), last_fault, within, &ledgers, &orderer_ledgers, &members, &mut outcome);
            }
            if let Some(within) = scenario.checks.leaders_within {
                checker.check_leaders(sim.elapsed(), last_fault + within, &leaders, &members, &mut outcome);
            }
            checker.check_new_blocks(sim.elapsed(), &ledgers, &members, &mut outcome);
            checker.check_quiet(sim.elapsed(), deliver_streams.load(Ordering::Relaxed), &mut outcome);
            checker.check_removed(sim.elapsed(), scenario.checks.converge_within, &snapshot, &mut outcome);
            let visibility = checker.visibility(&snapshot, &running);
            outcome.samples.push((sim.elapsed(), visibility));
            if let Some(within) = scenario.checks.dead_within {
                checker.check_dead(sim.elapsed(), within, &snapshot, &running, &down_since, &cut_since, &mut outcome);
            }
            if scenario.disk.is_some() {
                note_disk_faults(sim.elapsed(), scenario, &disks, &mut disk_faults_seen, &mut outcome);
            }
            if all_applied && sim.elapsed() > last_fault {
                let now = sim.elapsed();
                match (converged_since, checker.converged(&snapshot, &running)) {
                    (None, true) => {
                        converged_since = Some(now);
                        outcome.summary.push_str(&format!("{} converged\n", stamp(now)));
                    }
                    (Some(since), false) => {
                        converged_since = None;
                        outcome.diverged.push((since, now));
                        let off: Vec<&str> = running
                            .iter()
                            .filter(|p| snapshot.get(*p).is_none_or(|v| checker.actual(v) != checker.expected(p, &running)))
                            .map(String::as_str)
                            .collect();
                        outcome.summary.push_str(&format!(
                            "{} diverged again with no fault since {:.2}s: {} see{} other members than {} should\n",
                            stamp(now),
                            last_fault.as_secs_f64(),
                            off.join(" "),
                            if off.len() == 1 { "s" } else { "" },
                            if off.len() == 1 { "it" } else { "they" }
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(since) = converged_since {
        outcome.converged_after = Some(since - last_fault);
        *outcome.milestones.entry("converged").or_default() += 1;
    }
    if scenario.orderer.is_some() {
        checker.check_orderer(sim.elapsed(), &orderer_ledgers, &mut outcome);
        outcome.orderer_blocks = checker.orderer_blocks.clone();
        let tip = outcome.orderer_blocks.last().map(|h| &h[..16]).unwrap_or("none");
        outcome.summary.push_str(&format!(
            "{:>8} orderer at height {}, tip {tip}\n",
            format!("{:.2}s", sim.elapsed().as_secs_f64()),
            outcome.orderer_blocks.len()
        ));
        for (node, height) in &checker.replica_heights {
            outcome
                .summary
                .push_str(&format!("{:>8} {node} (replica) at height {height}\n", format!("{:.2}s", sim.elapsed().as_secs_f64())));
        }
        let heights: Vec<String> = checker.peer_heights.iter().map(|(peer, h)| format!("{peer} {h}")).collect();
        outcome.summary.push_str(&format!("{:>8} peer heights: {}\n", format!("{:.2}s", sim.elapsed().as_secs_f64()), heights.join(", ")));
        if checker.peer_heights.values().any(|h| *h > 1) {
            *outcome.milestones.entry("blocks_committed").or_default() += 1;
        }
    }
    if network.delay_probability > 0.0 {
        outcome.faults.insert("delay", delays_fired.load(Ordering::Relaxed));
    }
    if let Some(section) = &scenario.disk {
        let mut totals = crate::env::DiskFaultStats::default();
        for (name, disk) in &disks {
            if scenario.is_orderer(name) {
                continue;
            }
            let stats = disk.fault_stats();
            totals.read_corruption += stats.read_corruption;
            totals.misdirected_write += stats.misdirected_write;
            totals.latent_error += stats.latent_error;
            totals.fsync_failure += stats.fsync_failure;
            totals.full += stats.full;
        }
        let counts = [totals.read_corruption, totals.misdirected_write, totals.latent_error, totals.fsync_failure, totals.full];
        for ((kind, rate), count) in section.rates().into_iter().zip(counts) {
            if rate > 0.0 {
                outcome.faults.insert(kind, count);
            }
        }
        checker.check_healed_at_end(sim.elapsed(), &mut outcome);
    }
    if message_faults {
        outcome.faults.insert("message_loss", lost.load(Ordering::Relaxed));
        outcome.faults.insert("message_duplicate", duplicated.load(Ordering::Relaxed));
    }
    match outcome.converged_after {
        Some(after) if after <= scenario.checks.converge_within => {}
        Some(after) => outcome.violations.push(format!(
            "liveness: membership converged {:.2}s after the last fault, later than the {:?} allowed",
            after.as_secs_f64(),
            scenario.checks.converge_within
        )),
        None => outcome.violations.push(format!(
            "liveness: membership {} after the last fault (at {:?}); at the end: {}",
            match outcome.diverged.last() {
                Some((_, diverged)) => format!("converged but diverged again at {diverged:?}, and was not converged at the end,"),
                None => "never converged".to_string(),
            },
            last_fault,
            checker.diff(&snapshot(&views, broken), &running)
        )),
    }
    outcome
}

/// A summary line's time column: `   4.25s`.
fn stamp(at: Duration) -> String {
    format!("{:>8}", format!("{:.2}s", at.as_secs_f64()))
}

/// Disk faults that fired on a peer's disk since the last sample, as timeline lines:
/// `org1-peer2's disk: 1 read corruption, 2 fsync failures`.
fn note_disk_faults(
    at: Duration,
    scenario: &Scenario,
    disks: &BTreeMap<String, SimDisk>,
    seen: &mut BTreeMap<String, crate::env::DiskFaultStats>,
    outcome: &mut Outcome,
) {
    for (name, disk) in disks.iter().filter(|(name, _)| !scenario.is_orderer(name)) {
        let now = disk.fault_stats();
        let before = seen.insert(name.clone(), now).unwrap_or_default();
        let fired = [
            (now.read_corruption - before.read_corruption, "read corruption", "read corruptions"),
            (now.misdirected_write - before.misdirected_write, "misdirected write", "misdirected writes"),
            (now.latent_error - before.latent_error, "latent sector error", "latent sector errors"),
            (now.fsync_failure - before.fsync_failure, "fsync failure", "fsync failures"),
            (now.full - before.full, "out-of-space error", "out-of-space errors"),
        ];
        let parts: Vec<String> =
            fired.iter().filter(|(n, _, _)| *n > 0).map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many })).collect();
        if !parts.is_empty() {
            outcome.summary.push_str(&format!("{} {name}'s disk: {}\n", stamp(at), parts.join(", ")));
        }
    }
}

/// What the timeline acts on besides turmoil itself.
struct Faults<'a> {
    scenario: &'a Scenario,
    disks: &'a BTreeMap<String, SimDisk>,
    gates: &'a BTreeMap<String, tokio::sync::watch::Sender<bool>>,
    loss: &'a AtomicU64,
    ledgers: &'a Ledgers,
    orderers: &'a OrdererLedgers,
    broken: Option<Breakage>,
}

fn apply(sim: &mut turmoil::Sim<'_>, event: &Event, faults: &Faults<'_>, views: &Views, running: &mut BTreeSet<String>) {
    let disks = faults.disks;
    match event {
        // An orderer node: its disk and turmoil host, nothing of the peers' bookkeeping.
        Event::Crash(name) | Event::Kill(name) if faults.scenario.is_orderer(name) => {
            if matches!(event, Event::Crash(_)) {
                disks[name].power_cut();
            } else {
                disks[name].process_kill();
            }
            locked(faults.orderers).remove(name);
            sim.crash(name.as_str());
        }
        Event::Restart(name) if faults.scenario.is_orderer(name) => {
            disks[name].power_on();
            sim.bounce(name.as_str());
        }
        Event::Start(peer) => {
            faults.gates[peer].send_replace(true);
            running.insert(peer.clone());
        }
        Event::Loss(probability) => MessageFaults::set_loss(faults.loss, *probability),
        // The orderer cuts the config block at this time itself (`OrdererSpec::config_updates`).
        Event::AddAnchor(_) | Event::RemoveOrg(_) => {}
        Event::Crash(peer) | Event::Kill(peer) => {
            if matches!(event, Event::Crash(_)) {
                disks[peer].power_cut();
            } else {
                disks[peer].process_kill();
            }
            views.lock().unwrap_or_else(|p| p.into_inner()).remove(peer);
            // The dead process's ledger handle goes with it (the power is already off, so
            // closing it writes nothing).
            locked(faults.ledgers).remove(peer);
            sim.crash(peer.as_str());
            if faults.broken == Some(Breakage::LostDisk) {
                disks[peer].wipe();
            }

            running.remove(peer);
        }
        Event::Restart(peer) => {
            disks[peer].power_on();
            if faults.broken == Some(Breakage::CorruptBlock) {
                corrupt_block_one(&disks[peer], faults.orderers);
            }
            sim.bounce(peer.as_str());
            running.insert(peer.clone());
        }
        Event::Partition([a, b]) => sim.partition(a.as_str(), b.as_str()),
        Event::PartitionOneway([a, b]) => sim.partition_oneway(a.as_str(), b.as_str()),
        Event::Heal([a, b]) => sim.repair(a.as_str(), b.as_str()),
        Event::Hold([a, b]) => sim.hold(a.as_str(), b.as_str()),
        Event::Release([a, b]) => sim.release(a.as_str(), b.as_str()),
    }
}

/// `--break-invariant corrupt-block`: on `disk` (powered, before its peer restarts), block 1 is
/// replaced through redb itself (so every page checksum is right) by a copy whose header differs,
/// stored with a checksum that matches: the store is sound, only its block is not the orderer's.
/// A peer whose chain is long enough that block 1 is below the tail it checks at open serves it.
fn corrupt_block_one(disk: &SimDisk, orderers: &OrdererLedgers) {
    use peer_core::env::Storage;
    use peer_core::ledger::channel::encode_record;
    let Some(block) = locked(orderers).get(ORDERER).and_then(|c| c.ledger(CHANNEL)).and_then(|l| l.block(1).ok().flatten()) else { return };
    let mut altered = block;
    if let Some(byte) = altered.header.as_mut().and_then(|header| header.data_hash.first_mut()) {
        *byte ^= 0x01;
    }
    let path = std::path::Path::new("/var/peer/ledgersData/chains").join(format!("{CHANNEL}.redb"));
    let storage = SimStorage(disk.clone());
    if !storage.exists(&path) {
        return;
    }
    let rewrite = || -> Result<(), Box<dyn std::error::Error>> {
        let db = redb::Builder::new().create_with_backend(peer_core::env::DynBackend(storage.open_db(&path)?))?;
        let write = db.begin_write()?;
        write.open_table(redb::TableDefinition::<u64, &[u8]>::new("blocks"))?.insert(1, encode_record(&altered).as_slice())?;
        write.commit()?;
        Ok(())
    };
    let result = rewrite();
    tracing::info!(target: "sim", "sabotage: block 1 replaced: {result:?}");
}

fn disk_rates(section: &crate::scenario::DiskSection) -> crate::env::DiskFaultRates {
    crate::env::DiskFaultRates {
        read_corruption: section.read_corruption,
        misdirected_write: section.misdirected_write,
        latent_error: section.latent_error,
        fsync_failure: section.fsync_failure,
        full: section.full,
    }
}

/// Each peer's current view, by peer name.
fn snapshot(views: &Views, broken: Option<Breakage>) -> BTreeMap<String, View> {
    let mut views: BTreeMap<String, View> =
        views.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(name, view)| (name.clone(), view.snapshot())).collect();
    if broken == Some(Breakage::Disclosure) {
        // Test-only: pretend every member's internal endpoint leaked, as a disclosure bug would.
        for view in views.values_mut() {
            for member in &mut view.members {
                if member.internal_endpoint.is_empty() {
                    member.internal_endpoint = "leaked:7051".into();
                }
            }
        }
    }
    views
}

/// A deliberately broken invariant, to prove the checks catch it (`--break-invariant NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// Every member's internal endpoint appears to leak across orgs.
    Disclosure,
    /// A crashed peer's disk comes back empty, losing its acknowledged channel join.
    LostDisk,
    /// Every orderer node cuts blocks of its own instead of replicating the cutter's (two Raft
    /// leaders at once): the replicas' chains fork from the cutter's.
    SplitBrain,
    /// A crashed peer's disk comes back with block 1 altered, consistently (checksums match): a
    /// bug that stored the wrong block. The peer serves a block that is not the orderer's.
    CorruptBlock,
    /// With TLS, the last peer presents a TLS certificate from a CA nobody trusts (its signing
    /// identity is its own): every handshake with it must fail, so it never becomes a member.
    ForeignTls,
}

impl Breakage {
    pub fn parse(text: &str) -> Option<Breakage> {
        match text {
            "disclosure" => Some(Breakage::Disclosure),
            "lost-disk" => Some(Breakage::LostDisk),
            "split-brain" => Some(Breakage::SplitBrain),
            "corrupt-block" => Some(Breakage::CorruptBlock),
            "foreign-tls" => Some(Breakage::ForeignTls),
            _ => None,
        }
    }
}

/// The invariants, checked on every sample, and the expected final membership.
struct Checker {
    peers: Vec<PeerSpec>,
    /// PKI-ID hex → peer name.
    names: BTreeMap<String, String>,
    /// (observer, member) → newest (inc, seq) seen.
    newest: BTreeMap<(String, String), (u64, u64)>,
    /// The last summary line per observer, to print views only when they change.
    last_line: BTreeMap<String, String>,
    /// Whom each observer saw alive at the previous sample.
    last_alive: BTreeMap<String, BTreeSet<String>>,
    /// Peers restarted since their ledger was last checked.
    restarted: BTreeSet<String>,
    /// The orderer's chain as far as it was seen (header hashes, hex).
    orderer_blocks: Vec<String>,
    /// The orderer's height at each sample, for the catch-up check.
    orderer_heights: Vec<(Duration, u64)>,
    /// Per peer: the highest height seen (a committed block is acknowledged: it must never go),
    /// and how many of its blocks were compared with the orderer's.
    peer_heights: BTreeMap<String, u64>,
    peer_checked: BTreeMap<String, u64>,
    /// Restarted peers not yet caught up: since when, and the orderer's height at the restart.
    catching_up: BTreeMap<String, (Duration, u64)>,
    /// Per org: the running peers that lead the channel, as last sampled.
    org_leaders: BTreeMap<String, BTreeSet<String>>,
    /// Per org: every peer that ever led it.
    led: BTreeMap<String, BTreeSet<String>>,
    /// Per replica orderer node: the highest height seen, and how many of its blocks were
    /// compared with the cutter's.
    replica_heights: BTreeMap<String, u64>,
    replica_checked: BTreeMap<String, u64>,
    /// The `new_blocks` windows: each with the orderer's height at its start once reached, and
    /// whether its end was checked.
    new_blocks: Vec<(NewBlocks, Option<u64>, bool)>,
    /// Orgs removed from the channel by a config update, with when.
    removed: BTreeMap<String, Duration>,
    /// The orderer's quiet windows, each with when its check starts (see [`Checker::check_quiet`]),
    /// the count of Deliver streams opened by then once reached, and whether its end was checked.
    quiet: Vec<(QuietWindow, Duration, Option<u64>, bool)>,
    /// The peers' disks have faults (scenario `disk:`, now or earlier): a peer may then lose
    /// blocks its disk lost, and must heal them from the network.
    disk_faults: bool,
    /// Whether the scenario has disk faults at all (see `disk_faults`).
    disk_scenario: bool,
    /// The heals each peer's node had done when last sampled (by node instance).
    heals_seen: BTreeMap<String, (usize, u64)>,
    /// Peers that lost blocks to their disk: since when, and the height they must get back to.
    healing: BTreeMap<String, (Duration, u64)>,
    /// How long a healing peer has (the scenario's `blocks_within`, else `converge_within`).
    heal_within: Duration,
    /// The heights `check_peer_blocks` read at the last sample (peers and orderer nodes whose
    /// ledgers are open), for [`Outcome::heights`].
    sample_heights: BTreeMap<String, u64>,
}

impl Checker {
    fn new(scenario: &Scenario, crypto: &Crypto) -> Checker {
        let names = crypto.peers.iter().map(|(name, msp)| (msp.pki_id().to_string(), name.clone())).collect();
        Checker {
            peers: scenario.peers(),
            names,
            newest: BTreeMap::new(),
            last_line: BTreeMap::new(),
            last_alive: BTreeMap::new(),
            restarted: BTreeSet::new(),
            orderer_blocks: Vec::new(),
            orderer_heights: Vec::new(),
            peer_heights: BTreeMap::new(),
            peer_checked: BTreeMap::new(),
            catching_up: BTreeMap::new(),
            replica_heights: BTreeMap::new(),
            replica_checked: BTreeMap::new(),
            org_leaders: BTreeMap::new(),
            led: BTreeMap::new(),
            new_blocks: scenario.checks.new_blocks.iter().map(|window| (*window, None, false)).collect(),
            removed: BTreeMap::new(),
            quiet: scenario
                .orderer
                .iter()
                .flat_map(|o| &o.quiet)
                .map(|w| {
                    let settle =
                        scenario.checks.leaders_within.or(scenario.checks.blocks_within).unwrap_or(scenario.checks.converge_within);
                    let last_fault = scenario.timeline.iter().map(|s| s.at).filter(|at| (w.from..=w.until).contains(at)).max();
                    (*w, last_fault.map_or(w.from, |at| (at + settle).max(w.from)), None, false)
                })
                .collect(),
            disk_faults: false,
            disk_scenario: scenario.disk.as_ref().is_some_and(|d| d.rates().iter().any(|(_, p)| *p > 0.0)),
            heals_seen: BTreeMap::new(),
            healing: BTreeMap::new(),
            heal_within: scenario.checks.blocks_within.unwrap_or(scenario.checks.converge_within),
            sample_heights: BTreeMap::new(),
        }
    }

    /// A peer that lost blocks (its disk lost them, or a damaged store was rebuilt shorter) must
    /// be back at the height it had within `heal_within`.
    fn note_heals(&mut self, at: Duration, peer: &str, channels: &Arc<Channels>, height: u64, outcome: &mut Outcome) {
        let instance = Arc::as_ptr(channels) as usize;
        let heals = channels.heals();
        let previous = self.heals_seen.insert(peer.to_string(), (instance, heals));
        let seen = match previous {
            Some((same, count)) if same == instance => count,
            _ => 0,
        };
        let highest = self.peer_heights.get(peer).copied().unwrap_or(0);
        if heals > seen || (self.disk_scenario && height < highest) {
            self.healing.entry(peer.to_string()).or_insert((at, highest));
            if heals > seen {
                outcome.summary.push_str(&format!(
                    "{:>8} {peer} rebuilt a damaged block store (height {height}, had {highest})\n",
                    format!("{:.2}s", at.as_secs_f64())
                ));
            }
        }
    }

    /// A healing peer back at its height: the `healed_from_network` milestone.
    fn check_healing(&mut self, at: Duration, peer: &str, height: u64, outcome: &mut Outcome) {
        if let Some(&(since, target)) = self.healing.get(peer)
            && height >= target
        {
            self.healing.remove(peer);
            *outcome.milestones.entry("healed_from_network").or_default() += 1;
            outcome.summary.push_str(&format!(
                "{:>8} {peer} healed back to height {target} from the network {:.2}s after losing blocks\n",
                format!("{:.2}s", at.as_secs_f64()),
                at.saturating_sub(since).as_secs_f64()
            ));
        }
    }

    /// At the end: every peer that lost blocks to its disk got them back in time.
    fn check_healed_at_end(&self, at: Duration, outcome: &mut Outcome) {
        for (peer, (since, target)) in &self.healing {
            if at.saturating_sub(*since) > self.heal_within {
                outcome.violations.push(format!(
                    "liveness: {peer} lost blocks to its disk at {since:?} and was not back at height {target} within {:?}",
                    self.heal_within
                ));
            }
        }
    }

    fn spec(&self, name: &str) -> &PeerSpec {
        self.peers.iter().find(|p| p.name == name).expect("a scenario peer")
    }

    fn sample(&mut self, at: Duration, snapshot: &BTreeMap<String, View>, running: &BTreeSet<String>, outcome: &mut Outcome) {
        for (observer, view) in snapshot {
            if !running.contains(observer) {
                continue;
            }
            let observer_org = self.spec(observer).org.clone();
            let mut alive = Vec::new();
            for member in &view.members {
                let Some(name) = self.names.get(&member.pki_id.to_string()).cloned() else {
                    outcome.violations.push(format!("at {at:?}: {observer} has a member no scenario peer is: {}", member.pki_id));
                    continue;
                };
                if self.spec(&name).org != observer_org && !member.internal_endpoint.is_empty() {
                    outcome.violations.push(format!(
                        "at {at:?}: {observer} knows the internal endpoint {} of {name}, a peer of another org",
                        member.internal_endpoint
                    ));
                }
                let ts = (member.inc_num, member.seq_num);
                let key = (observer.clone(), name.clone());
                if let Some(previous) = self.newest.get(&key)
                    && ts < *previous
                {
                    outcome.violations.push(format!("at {at:?}: {observer} saw {name}'s timestamp go back from {previous:?} to {ts:?}"));
                }
                match self.newest.insert(key, ts) {
                    None if member.alive => {
                        *outcome.milestones.entry("learned").or_default() += 1;
                        if self.spec(&name).org != observer_org {
                            *outcome.milestones.entry("learned_across_orgs").or_default() += 1;
                        }
                    }
                    // A higher incarnation: the member restarted and was admitted again.
                    Some((inc, _)) if member.alive && ts.0 > inc => *outcome.milestones.entry("readmitted").or_default() += 1,
                    _ => {}
                }
                if member.alive {
                    alive.push(name);
                }
            }
            alive.sort();
            let now_alive: BTreeSet<String> = alive.iter().cloned().collect();
            let was_alive = self.last_alive.insert(observer.clone(), now_alive.clone()).unwrap_or_default();
            for gone in was_alive.difference(&now_alive) {
                // Still in the view, no longer alive: the observer declared it dead.
                if view.members.iter().any(|m| !m.alive && self.names.get(&m.pki_id.to_string()) == Some(gone)) {
                    *outcome.milestones.entry("declared_dead").or_default() += 1;
                }
            }
            let line = format!("{observer} sees {}", if alive.is_empty() { "nobody".to_string() } else { alive.join(" ") });
            if self.last_line.get(observer) != Some(&line) {
                outcome.summary.push_str(&format!("{:>8} {line}\n", format!("{:.2}s", at.as_secs_f64())));
                self.last_line.insert(observer.clone(), line);
            }
        }
    }

    /// Whom `observer` should see alive: running peers of its org, and running peers of other
    /// orgs when both have external endpoints.
    fn expected(&self, observer: &str, running: &BTreeSet<String>) -> BTreeSet<String> {
        let me = self.spec(observer);
        // A removed org and the others no longer meet (the others stop trusting it; its peers
        // keep the config they had, but nobody answers them).
        let apart = |org: &str| self.removed.contains_key(org) || self.removed.contains_key(&me.org);
        self.peers
            .iter()
            .filter(|p| p.name != me.name && running.contains(&p.name))
            .filter(|p| p.org == me.org || (p.external && me.external && !apart(&p.org)))
            .map(|p| p.name.clone())
            .collect()
    }

    /// A peer whose join was acknowledged keeps the channel through every crash: after a
    /// restart its ledger must still have it, genesis block included.
    fn check_ledgers(&mut self, at: Duration, ledgers: &Ledgers, joined: &Joined, outcome: &mut Outcome) {
        let joined = locked(joined).clone();
        for (peer, channels) in locked(ledgers).iter() {
            if !joined.contains(peer) {
                continue;
            }
            match channels.ledger(CHANNEL) {
                Some(ledger) if ledger.height() >= 1 => {
                    if self.restarted.remove(peer) {
                        *outcome.milestones.entry("ledger_survived_restart").or_default() += 1;
                        // A restarted peer's whole chain is compared with the orderer's again.
                        self.peer_checked.insert(peer.clone(), 0);
                    }
                }
                Some(ledger) => outcome
                    .violations
                    .push(format!("at {at:?}: {peer}'s channel {CHANNEL} has height {}, below its genesis block", ledger.height())),
                // A faulty disk may leave the channel out at a start until it is rebuilt: that is
                // healing (it must be back in time), not a lost join.
                None if self.disk_scenario => {
                    let highest = self.peer_heights.get(peer).copied().unwrap_or(0);
                    self.healing.entry(peer.clone()).or_insert((at, highest));
                }
                None => outcome.violations.push(format!("at {at:?}: {peer} lost the channel {CHANNEL} it had joined")),
            }
        }
    }

    /// The orderer's chain only grows: the blocks seen before (also before a crash) are still
    /// there with the same hashes; new ones are recorded.
    fn check_orderer(&mut self, at: Duration, orderers: &OrdererLedgers, outcome: &mut Outcome) {
        let Some(channels) = locked(orderers).get(ORDERER).cloned() else { return };
        let Some(ledger) = channels.ledger(CHANNEL) else {
            outcome.violations.push(format!("at {at:?}: the orderer has no channel {CHANNEL}"));
            return;
        };
        let known = self.orderer_blocks.len() as u64;
        let height = ledger.height();
        if height < known {
            outcome.violations.push(format!("at {at:?}: the orderer's height went back from {known} to {height}"));
            return;
        }
        let hash_of = |number: u64| match ledger.block(number) {
            Ok(Some(block)) => Some(hex::encode(peer_core::ledger::block::header_hash(&block.header.unwrap_or_default()))),
            _ => None,
        };
        if let Some(last) = known.checked_sub(1)
            && hash_of(last).as_deref() != self.orderer_blocks.last().map(String::as_str)
        {
            outcome.violations.push(format!("at {at:?}: the orderer's block [{last}] changed (a fork)"));
            return;
        }
        for number in known..height {
            match hash_of(number) {
                Some(hash) => self.orderer_blocks.push(hash),
                None => {
                    outcome.violations.push(format!("at {at:?}: the orderer cannot read its block [{number}] below its height {height}"));
                    return;
                }
            }
        }
    }

    /// Blocks on peers and on replica orderer nodes (see [`check_chain`]), after `check_orderer`
    /// at the same instant; for peers also when a restarted one has caught up.
    fn check_peer_blocks(&mut self, at: Duration, ledgers: &Ledgers, orderers: &OrdererLedgers, outcome: &mut Outcome) {
        let cutter_up = locked(orderers).contains_key(ORDERER);
        let peers: Vec<(String, Arc<Channels>)> = locked(ledgers).iter().map(|(peer, channels)| (peer.clone(), channels.clone())).collect();
        for (peer, channels) in &peers {
            let Some(ledger) = channels.ledger(CHANNEL) else { continue };
            self.note_heals(at, peer, channels, ledger.height(), outcome);
            let disk_may_lose = self.disk_scenario;
            let highest = self.peer_heights.entry(peer.clone()).or_default();
            if disk_may_lose {
                // Blocks its disk lost are not "acknowledged and lost" but must come back (healing).
                *highest = (*highest).min(ledger.height());
            }
            let checked = self.peer_checked.entry(peer.clone()).or_default();
            let height = check_chain(at, peer, &ledger, &self.orderer_blocks, cutter_up, highest, checked, disk_may_lose, outcome);
            self.sample_heights.insert(peer.clone(), height);
            self.check_healing(at, peer, height, outcome);
            if let Some(&(since, target)) = self.catching_up.get(peer)
                && height >= target
            {
                self.catching_up.remove(peer);
                let after = at.saturating_sub(since);
                outcome.catch_up.push((peer.clone(), after));
                outcome.summary.push_str(&format!(
                    "{:>8} {peer} caught up to height {target} {:.2}s after its restart\n",
                    format!("{:.2}s", at.as_secs_f64()),
                    after.as_secs_f64()
                ));
            }
        }
        for (node, channels) in locked(orderers).iter().filter(|(node, _)| *node != ORDERER) {
            let Some(ledger) = channels.ledger(CHANNEL) else {
                outcome.violations.push(format!("at {at:?}: {node} has no channel {CHANNEL}"));
                continue;
            };
            let highest = self.replica_heights.entry(node.clone()).or_default();
            let checked = self.replica_checked.entry(node.clone()).or_default();
            let height = check_chain(at, node, &ledger, &self.orderer_blocks, cutter_up, highest, checked, false, outcome);
            self.sample_heights.insert(node.clone(), height);
        }
        if cutter_up {
            self.sample_heights.insert(ORDERER.to_string(), self.orderer_blocks.len() as u64);
        }
        self.orderer_heights.push((at, self.orderer_blocks.len() as u64));
    }

    /// Liveness of block flow: from `since` on, every running peer and replica orderer node
    /// holds at least the blocks the orderer had `within` ago.
    #[allow(clippy::too_many_arguments)]
    fn check_caught_up(
        &self,
        at: Duration,
        since: Duration,
        within: Duration,
        ledgers: &Ledgers,
        orderers: &OrdererLedgers,
        running: &BTreeSet<String>,
        outcome: &mut Outcome,
    ) {
        if at < since + within {
            return;
        }
        let Some(&(_, target)) = self.orderer_heights.iter().rev().find(|(t, _)| *t + within <= at) else { return };
        let peers = locked(ledgers)
            .iter()
            .filter(|(peer, _)| running.contains(*peer))
            .map(|(peer, channels)| (peer.clone(), channels.clone()))
            .collect::<Vec<_>>();
        let replicas = locked(orderers)
            .iter()
            .filter(|(node, _)| *node != ORDERER)
            .map(|(node, channels)| (node.clone(), channels.clone()))
            .collect::<Vec<_>>();
        for (name, channels) in peers.into_iter().chain(replicas) {
            let height = channels.ledger(CHANNEL).map_or(0, |l| l.height());
            if height < target {
                outcome.violations.push(format!(
                    "at {at:?}: liveness: {name} is at height {height}, behind the {target} blocks the orderer had {within:?} earlier"
                ));
            }
        }
    }

    /// Leader election: logs each org's leaders when they change, counts elections and changes
    /// of leader, and from `from` on requires exactly one leader per org with running peers.
    fn check_leaders(&mut self, at: Duration, from: Duration, leaders: &Leaders, running: &BTreeSet<String>, outcome: &mut Outcome) {
        let leaders = locked(leaders);
        let orgs: BTreeSet<String> = self.peers.iter().map(|p| p.org.clone()).collect();
        for org in orgs {
            let members: Vec<&PeerSpec> = self.peers.iter().filter(|p| p.org == org && running.contains(&p.name)).collect();
            let now: BTreeSet<String> =
                members.iter().filter(|p| leaders.get(&p.name).is_some_and(|l| l.is_leader(CHANNEL))).map(|p| p.name.clone()).collect();
            let before = self.org_leaders.get(&org).cloned().unwrap_or_default();
            if now != before {
                let list: Vec<&str> = now.iter().map(String::as_str).collect();
                outcome.summary.push_str(&format!("{:>8} {org} leaders: [{}]\n", format!("{:.2}s", at.as_secs_f64()), list.join(", ")));
                for leader in now.difference(&before) {
                    *outcome.milestones.entry("elected").or_default() += 1;
                    if self.led.get(&org).is_some_and(|led| led.iter().any(|p| p != leader)) {
                        *outcome.milestones.entry("leader_changed").or_default() += 1;
                    }
                    self.led.entry(org.clone()).or_default().insert(leader.clone());
                }
                self.org_leaders.insert(org.clone(), now.clone());
            }
            if at >= from && !members.is_empty() && now.len() != 1 {
                outcome.violations.push(format!("at {at:?}: liveness: org {org} has {} leaders ({now:?}), not exactly one", now.len()));
            }
        }
    }

    /// The `new_blocks` windows: at the first sample from `after` on, the orderer's height is
    /// noted; at the first from `by` on, every running peer must be above it (it holds a block
    /// cut after `after`). Both moments go to the summary with the heights.
    fn check_new_blocks(&mut self, at: Duration, ledgers: &Ledgers, running: &BTreeSet<String>, outcome: &mut Outcome) {
        let stamp = format!("{:.2}s", at.as_secs_f64());
        for (window, base, done) in &mut self.new_blocks {
            if base.is_none() && at >= window.after {
                let height = self.orderer_blocks.len() as u64;
                *base = Some(height);
                outcome.summary.push_str(&format!(
                    "{stamp:>8} orderer at height {height}: new blocks must reach every peer by {:.2}s\n",
                    window.by.as_secs_f64()
                ));
            }
            let Some(base) = *base else { continue };
            if *done || at < window.by {
                continue;
            }
            *done = true;
            let mut heights = Vec::new();
            for (peer, channels) in locked(ledgers).iter().filter(|(peer, _)| running.contains(*peer)) {
                let height = channels.ledger(CHANNEL).map_or(0, |l| l.height());
                heights.push(format!("{peer} {height}"));
                if height <= base {
                    outcome.violations.push(format!(
                        "at {at:?}: {peer} is at height {height}: no block the orderer cut after {:?} (at height {base}) reached it by {:?}",
                        window.after, window.by
                    ));
                }
            }
            outcome.summary.push_str(&format!(
                "{stamp:>8} peer heights: {} (new blocks since {:.2}s)\n",
                heights.join(", "),
                window.after.as_secs_f64()
            ));
        }
    }

    /// A removed org's peers are never again members of the other orgs' views once the config
    /// block had `converge_within` to reach everyone (and nothing of the others reaches them).
    fn check_removed(&self, at: Duration, within: Duration, snapshot: &BTreeMap<String, View>, outcome: &mut Outcome) {
        for (org, since) in &self.removed {
            if at < *since + within {
                continue;
            }
            for (observer, view) in snapshot {
                let observer_org = &self.spec(observer).org;
                for member in view.members.iter().filter(|m| m.alive) {
                    let Some(name) = self.names.get(&member.pki_id.to_string()) else { continue };
                    let member_org = &self.spec(name).org;
                    if (member_org == org) != (observer_org == org) {
                        outcome.violations.push(format!(
                            "at {at:?}: {observer} sees {name} alive, {:?} after {org} was removed from the channel",
                            at - *since
                        ));
                    }
                }
            }
        }
    }

    /// An idle channel costs nothing: in a quiet window of the orderer, no Deliver stream is
    /// opened (a caught-up stream is silent, and must be kept as it is) from the window's start,
    /// or if the timeline has events in the window, from the last one plus the time the scenario
    /// gives leaders (else blocks, else membership) to settle: a new leader, or one whose orderer
    /// restarted, connects at the head of a quiet channel once and then keeps that stream.
    fn check_quiet(&mut self, at: Duration, deliver_streams: u64, outcome: &mut Outcome) {
        let stamp = format!("{:.2}s", at.as_secs_f64());
        for (window, check_from, base, done) in &mut self.quiet {
            if base.is_none() && at >= *check_from {
                *base = Some(deliver_streams);
                let since = if *check_from > window.from { " (streams checked from now: the faults in the window are over)" } else { "" };
                outcome.summary.push_str(&format!("{stamp:>8} orderer quiet until {:.2}s{since}\n", window.until.as_secs_f64()));
            }
            let Some(base) = *base else { continue };
            if *done || at < window.until {
                continue;
            }
            *done = true;
            let opened = deliver_streams - base;
            outcome.summary.push_str(&format!("{stamp:>8} orderer busy again; {opened} Deliver stream(s) opened while quiet\n"));
            if opened > 0 {
                outcome.violations.push(format!(
                    "at {at:?}: {opened} Deliver stream(s) were opened while the channel was quiet ({check_from:?} to {:?}) with nothing \
                     failing: a caught-up stream must be kept",
                    window.until
                ));
            }
        }
    }

    /// Lost peers (crashed, or cut off from the observer) must not stay alive in views.
    #[allow(clippy::too_many_arguments)]
    fn check_dead(
        &self,
        at: Duration,
        within: Duration,
        snapshot: &BTreeMap<String, View>,
        running: &BTreeSet<String>,
        down_since: &BTreeMap<String, Duration>,
        cut_since: &BTreeMap<(String, String), Duration>,
        outcome: &mut Outcome,
    ) {
        for observer in running {
            let Some(view) = snapshot.get(observer) else { continue };
            for seen in self.actual(view) {
                let lost = down_since.get(&seen).copied().or_else(|| cut_since.get(&(observer.clone(), seen.clone())).copied());
                if let Some(since) = lost
                    && at.saturating_sub(since) > within
                {
                    outcome.violations.push(format!(
                        "at {at:?}: {observer} still sees {seen} alive {:.2}s after losing it (allowed {within:?})",
                        (at - since).as_secs_f64()
                    ));
                }
            }
        }
    }

    /// For each peer: is it running, and how many running peers that should see it alive do.
    fn visibility(&self, snapshot: &BTreeMap<String, View>, running: &BTreeSet<String>) -> BTreeMap<String, Visibility> {
        let actual: BTreeMap<&String, BTreeSet<String>> =
            running.iter().filter_map(|o| snapshot.get(o).map(|v| (o, self.actual(v)))).collect();
        self.peers
            .iter()
            .map(|peer| {
                if !running.contains(&peer.name) {
                    // A crashed peer: who still sees it alive (not yet marked dead)?
                    let seen = actual.values().filter(|a| a.contains(&peer.name)).count();
                    return (peer.name.clone(), Visibility { running: false, seen, should: 0 });
                }
                let should: Vec<&String> = running.iter().filter(|o| self.expected(o, running).contains(&peer.name)).collect();
                let seen = should.iter().filter(|o| actual.get(*o).is_some_and(|a| a.contains(&peer.name))).count();
                (peer.name.clone(), Visibility { running: true, seen, should: should.len() })
            })
            .collect()
    }

    fn actual(&self, view: &View) -> BTreeSet<String> {
        view.members.iter().filter(|m| m.alive).filter_map(|m| self.names.get(&m.pki_id.to_string()).cloned()).collect()
    }

    fn converged(&self, snapshot: &BTreeMap<String, View>, running: &BTreeSet<String>) -> bool {
        running.iter().all(|peer| snapshot.get(peer).is_some_and(|view| self.actual(view) == self.expected(peer, running)))
    }

    fn diff(&self, snapshot: &BTreeMap<String, View>, running: &BTreeSet<String>) -> String {
        let mut out = Vec::new();
        for peer in running {
            let expected = self.expected(peer, running);
            let actual = snapshot.get(peer).map(|v| self.actual(v)).unwrap_or_default();
            if actual != expected {
                out.push(format!("{peer} sees {actual:?}, expected {expected:?}"));
            }
        }
        out.join("; ")
    }
}

/// One ledger (a peer's or a replica orderer node's) against the cutter's chain as far as it is
/// known (`cutter`, header hashes by number): its height never goes back (every block it held
/// was durable before it counted; `highest` is the most seen), and every block it holds is the
/// cutter's at that number (no fork, nothing made up; `checked` counts the blocks compared). It
/// may not be above the cutter while the cutter runs (its chain was just read); blocks above a
/// crashed cutter's last-known chain (cut just before its crash) are compared once it is back.
/// Returns the ledger's height.
#[allow(clippy::too_many_arguments)]
fn check_chain(
    at: Duration,
    who: &str,
    ledger: &peer_core::ledger::channel::ChannelLedger,
    cutter: &[String],
    cutter_up: bool,
    highest: &mut u64,
    checked: &mut u64,
    disk_faults: bool,
    outcome: &mut Outcome,
) -> u64 {
    let height = ledger.height();
    if height < *highest {
        outcome.violations.push(format!("at {at:?}: {who}'s height went back from {highest} to {height}: an acknowledged block was lost"));
    }
    *highest = height.max(*highest);
    if cutter.is_empty() {
        return height;
    }
    // A restarted node may be below what was checked before; start again from its height.
    let from = (*checked).min(height);
    let upto = height.min(cutter.len() as u64);
    for number in from..upto {
        let hash = match ledger.block(number) {
            Ok(Some(block)) => hex::encode(peer_core::ledger::block::header_hash(&block.header.unwrap_or_default())),
            // A faulty disk may make a block unreadable: the peer refuses to serve it (and
            // rebuilds its store); serving a wrong one is what must never happen.
            Err(err) if disk_faults && err.is_damage() => break,
            _ => {
                outcome.violations.push(format!("at {at:?}: {who} cannot read its block [{number}] below its height {height}"));
                break;
            }
        };
        if hash != cutter[number as usize] {
            outcome.violations.push(format!(
                "at {at:?}: {who}'s block [{number}] is not the orderer's (a fork): {} vs {}",
                &hash[..16],
                &cutter[number as usize][..16]
            ));
            break;
        }
    }
    *checked = upto.max(from);
    if cutter_up && height > cutter.len() as u64 {
        outcome.violations.push(format!("at {at:?}: {who} is at height {height}, above the orderer's {}", cutter.len()));
    }
    height
}

/// Expected log lines: the external-endpoint WARN exactly once per start of each peer without
/// an external endpoint, and never for the others; no panic anywhere.
fn check_logs(scenario: &Scenario, outcome: &mut Outcome) {
    for peer in scenario.peers() {
        let starts = 1 + scenario.timeline.iter().filter(|s| s.event == Event::Restart(peer.name.clone())).count();
        let tag = format!("name={}", peer.name);
        let warnings = outcome
            .trace
            .lines()
            .filter(|l| {
                l.contains("External endpoint is empty, peer will not be accessible outside of its organization") && l.contains(&tag)
            })
            .count();
        let expected = if peer.external { 0 } else { starts };
        if warnings != expected {
            outcome.violations.push(format!("{}: the external-endpoint WARN appeared {warnings} times, expected {expected}", peer.name));
        }
    }
    if outcome.trace.contains("panicked") {
        outcome.violations.push("a panic was logged".into());
    }
}

/// With several orderer nodes: where the peers' deliver clients pulled from, read from their
/// `Pulling next blocks from ordering service` lines (the only record of which endpoint a
/// connection went to). Each goes into the summary in time order; each move of a peer to
/// another endpoint than the one it pulled from last counts as the `failed_over` milestone.
fn trace_failovers(scenario: &Scenario, outcome: &mut Outcome) {
    let peers: BTreeSet<String> = scenario.peers().into_iter().map(|p| p.name).collect();
    let field = |line: &str, key: &str| line.split(' ').find_map(|word| word.strip_prefix(key)).map(str::to_string);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = Vec::new();
    for line in outcome.trace.lines().filter(|l| l.contains("Pulling next blocks from ordering service")) {
        let (Some(at), Some(peer), Some(address)) = (trace_time(line), field(line, "name="), field(line, "orderer-address=")) else {
            continue;
        };
        if !peers.contains(&peer) {
            continue;
        }
        let next = field(line, "nextBlock=").unwrap_or_default();
        let moved = last.insert(peer.clone(), address.clone()).is_some_and(|before| before != address);
        if moved {
            *outcome.milestones.entry("failed_over").or_default() += 1;
        }
        let node = address.split(':').next().unwrap_or_default().to_string();
        outcome.deliveries.push(Delivery { at, peer: peer.clone(), node, moved });
        let verb = if moved { "fails over to" } else { "pulls from" };
        lines.push((at, format!("{:>8} {peer} {verb} {address} from block {next}", format!("{:.2}s", at.as_secs_f64()))));
    }
    outcome.summary = merge_by_time(&outcome.summary, lines);
}

/// The simulated time a trace line starts with (`00:00:06.940`: the epoch is a midnight).
fn trace_time(line: &str) -> Option<Duration> {
    let stamp = line.split(' ').next()?;
    let mut parts = stamp.split(':');
    let (hours, minutes, seconds) =
        (parts.next()?.parse::<u64>().ok()?, parts.next()?.parse::<u64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    Some(Duration::from_secs(hours * 3600 + minutes * 60) + Duration::from_secs_f64(seconds))
}

/// The summary with `extra` lines (each with its time) put in time order among its own lines,
/// after those of the same time; a summary line without a leading time keeps its place.
fn merge_by_time(summary: &str, mut extra: Vec<(Duration, String)>) -> String {
    extra.sort_by_key(|(at, _)| *at);
    let mut extra = extra.into_iter().peekable();
    let mut merged = String::new();
    for line in summary.lines() {
        let at = line.trim_start().split('s').next().and_then(|t| t.parse::<f64>().ok()).map(Duration::from_secs_f64);
        if let Some(at) = at {
            while let Some((_, text)) = extra.next_if(|(t, _)| *t < at) {
                merged.push_str(&text);
                merged.push('\n');
            }
        }
        merged.push_str(line);
        merged.push('\n');
    }
    for (_, text) in extra {
        merged.push_str(&text);
        merged.push('\n');
    }
    merged
}

/// One ordering-service node of a run.
struct OrdererNode {
    /// Its turmoil host name (`orderer`, `orderer2`, …).
    name: String,
    /// Its place among the run's hosts, for its seeds.
    index: u64,
    /// The cutter's endpoint, for a replica; None for the cutter.
    replicate_from: Option<String>,
    /// Counts the Deliver streams it is asked to open (shared by every node of the run).
    deliver_streams: Arc<AtomicU64>,
    /// The scenario's timeline (the cutter makes its channel config updates).
    timeline: Vec<Step>,
}

/// Adds the turmoil host of one ordering-service node: `Orderer::start` on its own disk, with a
/// seed per start (a restart is a new process) and the section's schedule translated to times
/// after this start.
fn add_orderer(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    node: OrdererNode,
    section: crate::scenario::OrdererSection,
    disk: SimDisk,
    crypto: Arc<Crypto>,
    ledgers: OrdererLedgers,
) {
    let starts = Arc::new(Mutex::new(0u64));
    let host = node.name.clone();
    sim.host(host.as_str(), move || {
        let mut start = locked(&starts);
        *start += 1;
        let mut env_seed = [0u8; 32];
        env_seed[..8].copy_from_slice(&seed.to_le_bytes());
        env_seed[8..16].copy_from_slice(&node.index.to_le_bytes());
        env_seed[16..24].copy_from_slice(&start.to_le_bytes());
        let (disk, crypto, ledgers, section, timeline) =
            (disk.clone(), crypto.clone(), ledgers.clone(), section.clone(), node.timeline.clone());
        let (name, replicate_from, deliver_streams) = (node.name.clone(), node.replicate_from.clone(), node.deliver_streams.clone());
        let span = tracing::info_span!("orderer", name = %name);
        async move {
            let env = Env::new(
                Arc::new(SimClock::new(epoch())),
                Arc::new(SimNetwork { host: name.clone(), faults: None }),
                Arc::new(SimStorage(disk)),
                env_seed,
            );
            let elapsed = turmoil::sim_elapsed().unwrap_or_default();
            let listen = peer_core::config::HostPort::parse(&format!("0.0.0.0:{ORDERER_PORT}")).map_err(|e| e.to_string())?;
            let mut spec = OrdererSpec::new(
                listen,
                "/var/orderer".into(),
                crypto.genesis.clone(),
                crypto.orderer_signer.clone(),
                crypto.client.clone(),
            );
            spec.tx_per_second = section.tx_per_second;
            spec.batch_timeout = section.batch_timeout;
            spec.max_message_count = section.max_message_count;
            spec.start = section.start.saturating_sub(elapsed);
            spec.stop = section.stop.map(|stop| stop.saturating_sub(elapsed));
            spec.quiet =
                section.quiet.iter().filter(|w| w.until > elapsed).map(|w| (w.from.saturating_sub(elapsed), w.until - elapsed)).collect();
            spec.deliver_streams = deliver_streams;
            spec.config_updates = timeline_config_updates(&timeline, elapsed);
            spec.replicate_from = replicate_from;
            spec.tls = crypto.orderer_tls.get(&name).cloned();
            let running = Orderer::start(env, spec).await.map_err(|e| format!("{e:#}"))?;
            locked(&ledgers).insert(name, running.channels.clone());
            std::future::pending::<()>().await;
            drop(running);
            Ok(())
        }
        .instrument(span)
    });
}

/// The timeline's channel config updates, in order, as times after an orderer start at `elapsed`
/// (the cutter skips those its chain already has: update i makes config sequence i + 1).
fn timeline_config_updates(timeline: &[Step], elapsed: Duration) -> Vec<(Duration, ConfigUpdate)> {
    let mut steps: Vec<&Step> = timeline.iter().collect();
    steps.sort_by_key(|s| s.at);
    steps
        .into_iter()
        .filter_map(|step| match &step.event {
            Event::AddAnchor(org) => Some((
                step.at.saturating_sub(elapsed),
                ConfigUpdate::AddAnchor {
                    msp_id: crate::scenario::msp_id(org),
                    anchor: AnchorPeer { host: format!("{org}-peer0"), port: 7051 },
                },
            )),
            Event::RemoveOrg(org) => {
                Some((step.at.saturating_sub(elapsed), ConfigUpdate::RemoveOrg { msp_id: crate::scenario::msp_id(org) }))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod build_stamp_tests {
    #[test]
    fn the_build_stamp_is_left_out_of_traces() {
        let trace = "00:00:00.000 [nodeCmd] serve -> INFO Starting peer:\n Version: 0.1.0\n Commit SHA: 1a2b3c4\n Rust version: rustc 1.95.0\n OS/Arch: linux/x86_64\nnext\n";
        assert_eq!(
            super::without_build_stamp(trace),
            "00:00:00.000 [nodeCmd] serve -> INFO Starting peer:\n Version: 0.1.0\n Commit SHA: (build)\n Rust version: (build)\n OS/Arch: linux/x86_64\nnext\n"
        );
    }
}
