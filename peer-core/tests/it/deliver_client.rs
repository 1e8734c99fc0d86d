//! The deliver client (`blocks::deliverclient`) against a fake orderer: a tonic
//! `AtomicBroadcast` server on the in-memory network serving pre-signed blocks. Time is a manual
//! clock: the test lets every task run until nothing moves, then jumps to the next sleeper's
//! deadline, so backoffs are exact and nothing waits on the wall clock.

use peer_core::testkit::{ManualClock, MemNetwork, MemStorage, admin, epoch, org};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peer_core::blocks::BlockPublisher;
use peer_core::blocks::deliverclient::{DeliverClient, DeliverClientConfig, DeliverTls, retry_delay};
use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::config::{Config, EnvVars, HostPort};
use peer_core::env::{Clock, Env, Instant, Network};
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::ValidityWindow;
use peer_core::net::serve::GrpcServer;
use peer_core::net::tls::{ClientAuth, KeyPair, PemFile, TlsContext, certificates};
use peer_core::node::{self, RunningNode};
use prost::Message;
use proto::common::{Block, HeaderType, Payload};
use proto::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use proto::orderer::{BroadcastResponse, DeliverResponse, SeekInfo, deliver_response, seek_position};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const CHANNEL: &str = "mychannel";

/// Lets every task run until none is ready (bounded).
async fn settle() {
    for _ in 0..300 {
        tokio::task::yield_now().await;
    }
}

/// Runs tasks and moves the clock from deadline to deadline until `done` holds.
async fn run_until(clock: &ManualClock, what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        settle().await;
        if done() {
            return;
        }
        if !clock.advance_to_next_deadline() {
            settle().await;
            assert!(done(), "{what}: nothing left to wake and still not done");
            return;
        }
    }
    panic!("{what}: not done after 5000 clock steps ({:?} elapsed)", clock.elapsed());
}

/// Runs tasks and moves the clock until `duration` has passed.
async fn run_for(clock: &ManualClock, duration: Duration) {
    let until = clock.elapsed() + duration;
    let (wake, mut woken) = oneshot::channel::<()>();
    let sleep = clock.sleep_until(Instant(u64::try_from(until.as_nanos()).unwrap()));
    let wait = tokio::spawn(async move {
        sleep.await;
        let _ = wake.send(());
    });
    run_until(clock, "run_for", || woken.try_recv().is_ok()).await;
    wait.await.unwrap();
}

/// The channel's blocks as the ordering service has them: genesis naming `endpoints`, then
/// signed blocks on demand.
struct Chain {
    blocks: Vec<Block>,
    orderer: LocalMsp,
    /// Not an orderer: its signatures do not satisfy BlockValidation.
    outsider: LocalMsp,
    rng: ChaCha20Rng,
}

impl Chain {
    fn new(endpoints: &[&str]) -> Chain {
        let orderer_org = org("OrdererMSP", "example.com");
        let org1 = org("Org1MSP", "org1.example.com");
        let mut spec = GenesisSpec::new(CHANNEL, epoch());
        spec.orderer_orgs.push(GenesisOrg {
            name: "OrdererMSP".into(),
            org: &orderer_org,
            anchor_peers: Vec::new(),
            orderer_endpoints: endpoints.iter().map(ToString::to_string).collect(),
        });
        spec.application_orgs.push(GenesisOrg {
            name: "Org1MSP".into(),
            org: &org1,
            anchor_peers: Vec::new(),
            orderer_endpoints: Vec::new(),
        });
        let genesis = genesis_block(&spec).unwrap();
        Chain { blocks: vec![genesis], orderer: admin(&orderer_org), outsider: admin(&org1), rng: ChaCha20Rng::seed_from_u64(5) }
    }

    /// The next block, signed by `signer`, on top of `previous`.
    fn block_on(&mut self, number: u64, previous: &Block, outsider: bool) -> Block {
        let tx = envelope(HeaderType::EndorserTransaction, CHANNEL, &format!("tx-{number}"), b"");
        let mut block = new_block(number, &header_hash(previous.header.as_ref().unwrap()), vec![tx]);
        let signer = if outsider { &self.outsider } else { &self.orderer };
        sign_block(&mut block, signer, 0, &mut self.rng);
        block
    }

    fn grow(&mut self) -> Block {
        let number = self.blocks.len() as u64;
        let block = self.block_on(number, &self.blocks[self.blocks.len() - 1].clone(), false);
        self.blocks.push(block.clone());
        block
    }
}

/// What the fake orderer serves and saw. Shared by all its listeners.
#[derive(Clone)]
struct Orderer {
    blocks: watch::Sender<Vec<Block>>,
    /// By (stream index, block number): served on that stream instead of the chain's block.
    tampered: Arc<Mutex<BTreeMap<(usize, u64), Block>>>,
    /// The start of each seek, in order, with the port it came in on.
    seeks: Arc<Mutex<Vec<(u16, u64)>>>,
    /// Deliver streams currently open.
    open_streams: Arc<AtomicUsize>,
}

impl Orderer {
    fn new(chain: &Chain) -> Orderer {
        Orderer {
            blocks: watch::channel(chain.blocks.clone()).0,
            tampered: Arc::default(),
            seeks: Arc::default(),
            open_streams: Arc::default(),
        }
    }

    fn publish(&self, chain: &Chain) {
        self.blocks.send_replace(chain.blocks.clone());
    }

    fn seeks(&self) -> Vec<(u16, u64)> {
        self.seeks.lock().unwrap().clone()
    }

    /// Serves `orderer.AtomicBroadcast` on `port` (over TLS with `tls`) until the returned
    /// sender says stop.
    async fn listen(
        &self,
        network: &Arc<MemNetwork>,
        clock: Arc<dyn Clock>,
        keepalive: peer_core::config::KeepaliveConfig,
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Listening {
        let listener = network.bind(&HostPort::new("orderer", port)).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let service = AtomicBroadcastServer::new(OrdererService { orderer: self.clone(), port });
        let routes = tonic::service::Routes::new(service);
        let server = GrpcServer { name: "OrdererServer", keepalive, limits: crate::serve::limits(), counters: None, tls };
        let task = tokio::spawn(peer_core::net::serve::serve_grpc_with(listener, clock, routes, server, stopped));
        Listening { stop, task }
    }
}

struct Listening {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// The orderer goes away: its listener closes and every connection is dropped.
    async fn close(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

struct OrdererService {
    orderer: Orderer,
    port: u16,
}

#[tonic::async_trait]
impl AtomicBroadcast for OrdererService {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<DeliverResponse, Status>> + Send>>;

    async fn broadcast(&self, _request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::BroadcastStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn deliver(&self, request: Request<Streaming<proto::common::Envelope>>) -> Result<Response<Self::DeliverStream>, Status> {
        let mut requests = request.into_inner();
        let envelope = requests.message().await?.ok_or_else(|| Status::invalid_argument("no seek"))?;
        let payload = Payload::decode(envelope.payload.as_slice()).unwrap();
        let seek = SeekInfo::decode(payload.data.as_slice()).unwrap();
        let Some(seek_position::Type::Specified(start)) = seek.start.unwrap().r#type else { panic!("the peer seeks a number") };
        let Some(seek_position::Type::Specified(stop)) = seek.stop.unwrap().r#type else { panic!("the peer seeks a number") };
        assert_eq!(stop.number, u64::MAX);
        assert_eq!(seek.behavior, 0, "BLOCK_UNTIL_READY");
        let stream_index = {
            let mut seeks = self.orderer.seeks.lock().unwrap();
            seeks.push((self.port, start.number));
            seeks.len() - 1
        };
        let (responses, queue) = tokio::sync::mpsc::channel(4);
        let orderer = self.orderer.clone();
        let mut blocks = orderer.blocks.subscribe();
        orderer.open_streams.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut next = start.number;
            loop {
                let block = {
                    let chain = blocks.borrow_and_update();
                    usize::try_from(next).ok().and_then(|n| chain.get(n).cloned())
                };
                let sent = match block {
                    Some(block) => {
                        let block = orderer.tampered.lock().unwrap().remove(&(stream_index, next)).unwrap_or(block);
                        next += 1;
                        let response = DeliverResponse { r#type: Some(deliver_response::Type::Block(block)) };
                        tokio::select! {
                            sent = responses.send(Ok(response)) => sent.is_ok(),
                            () = responses.closed() => false,
                        }
                    }
                    None => tokio::select! {
                        changed = blocks.changed() => changed.is_ok(),
                        () = responses.closed() => false,
                    },
                };
                if !sent {
                    break;
                }
            }
            orderer.open_streams.fetch_sub(1, Ordering::SeqCst);
        });
        // As a Go orderer: the response headers go out with the first message, so on a quiet
        // channel the call is answered only when the next block is cut.
        let mut queue = queue;
        let first = queue.recv().await;
        Ok(Response::new(Box::pin(tokio_stream::iter(first).chain(ReceiverStream::new(queue)))))
    }
}

/// Blocks the publisher saw, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, u64)>>);

impl BlockPublisher for Recorder {
    fn publish(&self, channel: &str, block: &Block) {
        self.0.lock().unwrap().push((channel.to_string(), block.header.as_ref().unwrap().number));
    }
}

struct Peer {
    network: Arc<MemNetwork>,
    clock: Arc<ManualClock>,
    env: Env,
    running: RunningNode,
    config: Config,
    msp: LocalMsp,
    logs: MemorySink,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl Peer {
    async fn start(env_vars: &[(&str, &str)]) -> Peer {
        let network = Arc::new(MemNetwork::default());
        let clock = Arc::new(ManualClock::default());
        let env = Env::new(clock.clone(), network.clone(), Arc::new(MemStorage::default()), [4; 32]);
        let logs = MemorySink::new();
        let log_config = LoggingConfig { spec: "peer.blocksprovider=debug:info".into(), format: "%{module} %{level} %{message}".into() };
        let (layer, handle) = logging::layer(&log_config, Arc::new(epoch), logs.sink()).unwrap();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
        let log_guard = tracing::subscriber::set_default(subscriber);
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
        let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
        let mut vars = EnvVars::new().with("CORE_PEER_FILESYSTEMPATH", "/mem/data");
        for (name, value) in env_vars {
            vars = vars.with(name, value);
        }
        let config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &vars).unwrap().config;
        let msp = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, epoch()).unwrap();
        let setup = node::Setup::new(config.clone(), msp.clone(), Arc::new(handle), "deliver client test");
        let running = node::start(env.clone(), setup).await.unwrap();
        Peer { network, clock, env, running, config, msp, logs, _log_guard: log_guard }
    }

    fn height(&self) -> u64 {
        self.running.channels.ledger(CHANNEL).map_or(0, |l| l.height())
    }

    fn logs(&self) -> String {
        self.logs.lines().join("\n")
    }

    async fn orderer_at(&self, orderer: &Orderer, port: u16) -> Listening {
        orderer.listen(&self.network, self.clock.clone(), self.config.peer.keepalive.clone(), port, None).await
    }

    async fn tls_orderer_at(&self, orderer: &Orderer, port: u16, tls: Arc<rustls::ServerConfig>) -> Listening {
        orderer.listen(&self.network, self.clock.clone(), self.config.peer.keepalive.clone(), port, Some(tls)).await
    }

    /// A deliver client of our own on the node's channels (the node's runs only for static
    /// leaders), with a recording publisher.
    fn client(&self, static_leader: bool, total: Duration) -> (Arc<DeliverClient>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let config =
            DeliverClientConfig { static_leader, reconnect_total_time_threshold: total, ..DeliverClientConfig::from_config(&self.config) };
        let client =
            DeliverClient::new(self.env.clone(), self.running.channels.clone(), Arc::new(self.msp.clone()), recorder.clone(), config);
        (Arc::new(client), recorder)
    }

    async fn metrics(&self) -> String {
        let port = self.running.operations_listen_address.port();
        let mut connection = self.network.connect(&HostPort::new("peer", port), Duration::from_secs(1)).await.unwrap();
        connection.write_all(b"GET /metrics HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut response = String::new();
        connection.read_to_string(&mut response).await.unwrap();
        response
    }
}

/// The "Attempt to re-connect in …" delays logged so far.
fn reconnect_delays(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| l.split_once("Attempt to re-connect in ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn backoff_follows_fabrics_schedule() {
    let hour = Duration::from_secs(3600);
    let first: Vec<u128> = (1..=8).map(|n| retry_delay(n, hour).as_millis()).collect();
    assert_eq!(first, [100, 120, 144, 172, 207, 248, 298, 358]);
    assert_eq!(retry_delay(0, hour), Duration::ZERO);
    // ⌊ln(36000)/ln(1.2)⌋ = 57: the 58th exponent is the last computed one, then the cap.
    assert!(retry_delay(58, hour) < hour);
    assert_eq!(retry_delay(59, hour), hour);
    assert_eq!(retry_delay(u32::MAX, hour), hour);
    // A small cap: computed delays until they would pass it, then the cap.
    let cap = Duration::from_millis(200);
    let capped: Vec<u128> = (1..=6).map(|n| retry_delay(n, cap).as_millis()).collect();
    assert_eq!(capped, [100, 120, 144, 172, 200, 200]);
    // Below the initial delay: always the cap (Fabric's bound goes negative).
    assert_eq!(retry_delay(1, Duration::from_millis(50)), Duration::from_millis(50));
}

#[tokio::test]
async fn a_static_leader_pulls_every_block_and_follows_new_ones() {
    let peer = Peer::start(&[]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    for _ in 0..3 {
        chain.grow();
    }
    let orderer = Orderer::new(&chain);
    let _listening = peer.orderer_at(&orderer, 7050).await;

    // Joining the channel starts the node's deliver client (the sample config is a static leader).
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    run_until(&peer.clock, "blocks 1-3 committed", || peer.height() == 4).await;
    chain.grow();
    orderer.publish(&chain);
    run_until(&peer.clock, "block 4 committed", || peer.height() == 5).await;
    assert_eq!(orderer.seeks(), [(7050, 1)], "one stream from the height at join");

    let metrics = peer.metrics().await;
    assert!(metrics.contains("ledger_blockchain_height{channel=\"mychannel\"} 5"), "{metrics}");
    // The genesis block (committed at join, as Fabric commits it) and blocks 1-4.
    assert!(metrics.contains("ledger_block_processing_time_count{channel=\"mychannel\"} 5"), "{metrics}");
    let logs = peer.logs();
    for needle in [
        "deliveryClient INFO This peer will retrieve blocks from ordering service and disseminate to other peers in the organization channel=mychannel",
        "peer.blocksprovider INFO Pulling next blocks from ordering service channel=mychannel orderer-address=orderer.example.com:7050 nextBlock=1",
        "peer.blocksprovider DEBUG Adding payload to local buffer, blockNum = [4] channel=mychannel",
    ] {
        assert!(logs.contains(needle), "{needle:?} missing from:\n{logs}");
    }
    assert!(!logs.contains("peer.blocksprovider WARN"), "{logs}");

    // Stopping the node ends the stream.
    peer.running.stop().await;
    run_until(&peer.clock, "stream closed", || orderer.open_streams.load(Ordering::SeqCst) == 0).await;
}

#[tokio::test]
async fn a_peer_that_is_not_a_leader_does_not_dial() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    chain.grow();
    let orderer = Orderer::new(&chain);
    let _listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    run_for(&peer.clock, Duration::from_secs(30)).await;
    assert_eq!(orderer.seeks(), []);
    assert_eq!(peer.height(), 1);
    assert!(!peer.logs().contains("This peer will retrieve blocks"), "{}", peer.logs());
}

#[tokio::test]
async fn both_leader_settings_are_refused_at_start() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
    let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
    let vars = EnvVars::new().with("CORE_PEER_FILESYSTEMPATH", "/mem/data");
    let mut config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &vars).unwrap().config;
    // The config reader refuses this too; a hand-made Config reaches start.
    config.gossip.org_leader = true;
    config.gossip.use_leader_election = true;
    let msp = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, epoch()).unwrap();
    let (_, handle) = logging::layer(&LoggingConfig::default(), Arc::new(epoch), MemorySink::new().sink()).unwrap();
    let setup = node::Setup::new(config, msp, Arc::new(handle), "test");
    let env = Env::new(Arc::new(ManualClock::default()), Arc::new(MemNetwork::default()), Arc::new(MemStorage::default()), [1; 32]);
    let err = node::start(env, setup).await.unwrap_err().to_string();
    assert!(err.contains("peer.gossip.orgLeader") && err.contains("peer.gossip.useLeaderElection"), "{err}");
    assert!(err.contains("Setting both orgLeader and useLeaderElection to true isn't supported, aborting execution"), "{err}");
}

#[tokio::test]
async fn a_bad_block_is_refused_and_the_client_asks_again_from_its_height() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    for _ in 0..4 {
        chain.grow();
    }
    let orderer = Orderer::new(&chain);
    // On the first stream block 2 comes signed by a non-orderer; on the second, block 3 on the
    // wrong previous block.
    let forged = chain.block_on(2, &chain.blocks[1].clone(), true);
    let misplaced = chain.block_on(3, &chain.blocks[1].clone(), false);
    orderer.tampered.lock().unwrap().extend([((0, 2), forged), ((1, 3), misplaced)]);
    let _listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();

    let (client, published) = peer.client(true, Duration::from_secs(3600));
    let (_leader, leadership) = watch::channel(true);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "all blocks committed", || peer.height() == 5).await;

    assert_eq!(orderer.seeks(), [(7050, 1), (7050, 2), (7050, 3)], "each reconnect seeks from the ledger height");
    let numbers: Vec<u64> = published.0.lock().unwrap().iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, [1, 2, 3, 4], "each committed block published once, refused ones never");
    let logs = peer.logs();
    let refused: Vec<&str> = logs.lines().filter(|l| l.contains("Got error while attempting to receive blocks")).collect();
    assert_eq!(refused.len(), 2, "{logs}");
    assert!(refused[0].contains("block from orderer could not be verified: "), "{}", refused[0]);
    assert!(refused[1].contains("block from orderer could not be verified: channel [mychannel]: "), "{}", refused[1]);
    // A block resets the failure count: both retries wait the first delay.
    assert_eq!(reconnect_delays(&logs), ["100ms", "100ms"]);

    let _ = stop.send(true);
    run_until(&peer.clock, "client stopped", || task.is_finished()).await;
    run_until(&peer.clock, "stream closed", || orderer.open_streams.load(Ordering::SeqCst) == 0).await;
}

#[tokio::test]
async fn a_block_gossip_committed_first_is_skipped_and_a_different_one_refused() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    chain.grow();
    let orderer = Orderer::new(&chain);
    let _listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    let (client, published) = peer.client(true, Duration::from_secs(3600));
    let (_leader, leadership) = watch::channel(true);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "block 1 committed", || peer.height() == 2).await;

    // Blocks 2 and 3 reach the ledger another way (gossip) before the orderer sends them; on the
    // open stream block 2 comes as it is, block 3 as a different block at that number.
    chain.grow();
    chain.grow();
    for block in &chain.blocks[2..4] {
        peer.running.channels.append(CHANNEL, block).unwrap();
    }
    let other = chain.block_on(3, &chain.blocks[1].clone(), false);
    orderer.tampered.lock().unwrap().insert((0, 3), other);
    orderer.publish(&chain);
    chain.grow();
    orderer.publish(&chain);
    run_until(&peer.clock, "block 4 committed", || peer.height() == 5).await;

    let logs = peer.logs();
    assert!(logs.contains("Block [2] was already committed, not adding it again"), "{logs}");
    let refused: Vec<&str> = logs.lines().filter(|l| l.contains("Got error while attempting to receive blocks")).collect();
    assert_eq!(refused.len(), 1, "only the different block 3 ends the stream: {logs}");
    assert!(
        refused[0].contains("block from orderer could not be verified: channel [mychannel]: block number should have been 4 but was 3"),
        "{}",
        refused[0]
    );
    assert_eq!(orderer.seeks(), [(7050, 1), (7050, 4)], "the skipped block kept the stream; the refused one did not");
    // As Fabric, the skipped block is still gossiped (receivers drop what they have).
    let numbers: Vec<u64> = published.0.lock().unwrap().iter().map(|(_, n)| *n).collect();
    assert_eq!(numbers, [1, 2, 4]);
}

#[tokio::test]
async fn the_orderer_going_away_means_backoff_then_reconnect() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    chain.grow();
    let orderer = Orderer::new(&chain);
    let listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    let (client, _published) = peer.client(true, Duration::from_secs(3600));
    let (_leader, leadership) = watch::channel(true);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "block 1 committed", || peer.height() == 2).await;

    // The orderer goes away; the client keeps trying with growing delays.
    listening.close().await;
    let went_away = peer.clock.elapsed();
    run_until(&peer.clock, "five failed attempts", || reconnect_delays(&peer.logs()).len() >= 6).await;
    let logs = peer.logs();
    assert!(logs.contains("Orderer hung up without sending status"), "{logs}");
    assert!(logs.contains("Could not connect to ordering service: could not dial endpoint 'orderer.example.com:7050': "), "{logs}");
    assert_eq!(reconnect_delays(&logs), ["100ms", "120ms", "144ms", "172ms", "207ms", "248ms"]);
    assert_eq!(peer.clock.elapsed() - went_away, Duration::from_millis(100 + 120 + 144 + 172 + 207));

    // It comes back with a new block: the client reconnects from its height.
    chain.grow();
    orderer.publish(&chain);
    let _back = peer.orderer_at(&orderer, 7050).await;
    run_until(&peer.clock, "block 2 committed", || peer.height() == 3).await;
    assert_eq!(orderer.seeks(), [(7050, 1), (7050, 2)]);
}

#[tokio::test]
async fn the_client_fails_over_to_another_endpoint() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer0.example.com:7050", "orderer1.example.com:8050"]);
    chain.grow();
    chain.grow();
    let orderer = Orderer::new(&chain);
    // Only the second orderer is up.
    let _listening = peer.orderer_at(&orderer, 8050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    let (client, _published) = peer.client(true, Duration::from_secs(3600));
    let (_leader, leadership) = watch::channel(true);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "blocks committed", || peer.height() == 3).await;
    assert_eq!(orderer.seeks(), [(8050, 1)]);
    let logs = peer.logs();
    // With this seed the first picks land on the orderer that is down.
    assert!(logs.contains("Could not connect to ordering service: could not dial endpoint 'orderer0.example.com:7050'"), "{logs}");
    assert!(logs.contains("orderer-address=orderer1.example.com:8050"), "{logs}");
}

#[tokio::test]
async fn the_client_pulls_only_while_leader() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    chain.grow();
    let orderer = Orderer::new(&chain);
    let _listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    let (client, published) = peer.client(false, Duration::from_secs(3600));
    let (leader, leadership) = watch::channel(false);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_for(&peer.clock, Duration::from_secs(5)).await;
    assert_eq!(orderer.seeks(), [], "not leader yet");

    leader.send_replace(true);
    run_until(&peer.clock, "block 1 committed", || peer.height() == 2).await;
    leader.send_replace(false);
    run_until(&peer.clock, "stream closed", || orderer.open_streams.load(Ordering::SeqCst) == 0).await;
    chain.grow();
    orderer.publish(&chain);
    run_for(&peer.clock, Duration::from_secs(5)).await;
    assert_eq!(peer.height(), 2, "no longer leader: block 2 is not pulled");

    leader.send_replace(true);
    run_until(&peer.clock, "block 2 committed", || peer.height() == 3).await;
    assert_eq!(orderer.seeks(), [(7050, 1), (7050, 2)]);
    assert_eq!(published.0.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_elected_leader_gives_up_after_the_total_retry_time_and_a_static_one_does_not() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let chain = Chain::new(&["orderer.example.com:7050"]);
    peer.running.channels.join(&chain.blocks[0]).unwrap();

    // No orderer at all. An elected leader with a 1s budget gives up and yields.
    let (client, _) = peer.client(false, Duration::from_secs(1));
    let yielded = Arc::new(Mutex::new(Vec::new()));
    let record = yielded.clone();
    let client = Arc::new(
        Arc::into_inner(client).unwrap().on_give_up(Arc::new(move |channel: &str| record.lock().unwrap().push(channel.to_string()))),
    );
    let (_leader, leadership) = watch::channel(true);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "gave up", || !yielded.lock().unwrap().is_empty()).await;
    assert_eq!(*yielded.lock().unwrap(), [CHANNEL]);
    let logs = peer.logs();
    assert!(
        logs.contains(
            "attempted to retry block delivery for more than peer.deliveryclient.reconnectTotalTimeThreshold duration 1s, giving up"
        ),
        "{logs}"
    );
    // 100+120+144+172+207+248 = 991ms slept; the next 298ms would pass 1s.
    assert_eq!(reconnect_delays(&logs), ["100ms", "120ms", "144ms", "172ms", "207ms", "248ms"]);

    // A static leader with the same budget warns and keeps trying.
    let (client, _) = peer.client(true, Duration::from_secs(1));
    let (_leader, leadership) = watch::channel(true);
    let (_stop2, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));
    run_until(&peer.clock, "static leader past the budget", || {
        peer.logs().contains("peer is a static leader, ignoring peer.deliveryclient.reconnectTotalTimeThreshold")
    })
    .await;
    run_for(&peer.clock, Duration::from_secs(5)).await;
    assert_eq!(peer.logs().matches("giving up").count(), 1);
}

/// `peer.deliveryclient.addressOverrides` with a `caCertsFile`: the overridden orderer presents a
/// certificate from a CA the channel config does not name; the client trusts it through the
/// override's CAs alone (as Fabric), and without them the handshake fails and no block comes.
#[tokio::test]
async fn an_address_override_with_ca_certs_reaches_an_orderer_the_channel_config_does_not_vouch_for() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    chain.grow();
    chain.grow();
    let orderer = Orderer::new(&chain);
    let elsewhere = org("ElsewhereMSP", "elsewhere.example.com");
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let served = elsewhere.issue_tls(&["orderer.elsewhere.example.com"], &mut rng, ValidityWindow::fixed()).unwrap();
    let pem = |name: &str, bytes: &[u8]| PemFile { path: format!("/tls/{name}").into(), bytes: bytes.to_vec() };
    let pair = KeyPair::from_files(&pem("server.crt", &served.cert), &pem("server.key", &served.key)).unwrap();
    let context = TlsContext::new(&peer_core::net::tls::provider(&peer.env), peer.env.clock.clone());
    let _listening = peer.tls_orderer_at(&orderer, 7060, context.server(&pair, ClientAuth::Request).unwrap()).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();

    let overrides = vec![("orderer.example.com:7050".to_string(), "orderer.elsewhere.example.com:7060".to_string())];
    let start = |override_roots| {
        let config = DeliverClientConfig {
            static_leader: true,
            address_overrides: overrides.clone(),
            ..DeliverClientConfig::from_config(&peer.config)
        };
        let publisher = Arc::new(Recorder::default());
        let client = DeliverClient::new(peer.env.clone(), peer.running.channels.clone(), Arc::new(peer.msp.clone()), publisher, config)
            .with_tls(Some(DeliverTls { context: context.clone(), client_pair: None, override_roots }));
        let (leader, leadership) = watch::channel(true);
        let (stop, stopped) = watch::channel(false);
        (tokio::spawn(Arc::new(client).run(CHANNEL.into(), leadership, stopped)), leader, stop)
    };

    // Without the override's CAs: the orderer org's TLS CA does not vouch for it.
    let (task, _leader, stop) = start(Vec::new());
    run_for(&peer.clock, Duration::from_secs(10)).await;
    assert_eq!((peer.height(), orderer.seeks()), (1, vec![]), "no block without the override's CAs");
    assert!(peer.logs().contains("Client TLS handshake failed"), "{}", peer.logs());
    stop.send(true).unwrap();
    run_until(&peer.clock, "the first client stopped", || task.is_finished()).await;

    // With them (the caCertsFile's certificates, keyed by the overridden address).
    let ca = certificates(&pem("ca.crt", &served.ca_crt)).unwrap();
    let (_task, _leader, _stop) = start(vec![("orderer.example.com:7050".to_string(), ca)]);
    run_until(&peer.clock, "blocks committed through the override", || peer.height() == 3).await;
    assert_eq!(orderer.seeks(), [(7060, 1)]);
}

/// A Go orderer sends a Deliver call's response headers with its first block. An elected leader
/// at the head of a quiet channel must keep its stream (no bound on the wait for the answer;
/// keepalive tells quiet from dead) for an hour and more, without reconnecting or giving up
/// (reconnectTotalTimeThreshold is an hour), and commit the next block as soon as it is cut.
#[tokio::test]
async fn an_elected_leader_at_the_head_of_a_quiet_channel_keeps_its_stream() {
    let peer = Peer::start(&[("CORE_PEER_GOSSIP_ORGLEADER", "false")]).await;
    // Only the genesis block: the leader's seek for block 1 finds the orderer at the head.
    let mut chain = Chain::new(&["orderer.example.com:7050"]);
    let orderer = Orderer::new(&chain);
    let _listening = peer.orderer_at(&orderer, 7050).await;
    peer.running.channels.join(&chain.blocks[0]).unwrap();
    let (client, _published) = peer.client(false, Duration::from_secs(3600));
    let (_leader, leadership) = watch::channel(true);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(client.run(CHANNEL.into(), leadership, stopped));

    run_for(&peer.clock, Duration::from_secs(2 * 3600)).await;
    assert_eq!(orderer.seeks(), [(7050, 1)], "one stream, never reopened");
    assert_eq!(orderer.open_streams.load(Ordering::SeqCst), 1);
    let logs = peer.logs();
    assert!(!logs.contains("Could not connect") && !logs.contains("giving up") && !logs.contains("re-connect"), "{logs}");

    let before = peer.clock.elapsed();
    chain.grow();
    orderer.publish(&chain);
    run_until(&peer.clock, "the next block committed", || peer.height() == 2).await;
    assert_eq!(peer.clock.elapsed(), before, "taken as soon as it is cut, on the same stream");
    assert_eq!(orderer.seeks(), [(7050, 1)]);
}
