//! Blocks between peers over gossip, end to end: nodes started with `node::start` on one
//! in-memory network, with a manual clock the test advances (no sleeps). A block appended at
//! one node and handed to its `gossip_publisher` (as the leader's deliver client does) reaches
//! the others as a DataMessage; a node started late catches up by state transfer.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use peer_core::channel::genesis::ChannelMsp;
use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::config::{Config, EnvVars};
use peer_core::env::{Clock as _, Env};
use peer_core::gossip::publish::BlockPublisher;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::Org;
use peer_core::node::{self, RunningNode};
use proto::common::{Block, HeaderType};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use peer_core::testkit::{ManualClock, MemNetwork, MemStorage, admin, epoch, org_with_peers};

const CHANNEL: &str = "mychannel";

pub(crate) struct Net {
    network: Arc<MemNetwork>,
    clock: Arc<ManualClock>,
    org1: Org,
    orderer: LocalMsp,
    genesis: Block,
    rng: ChaCha20Rng,
}

impl Net {
    /// Generated orgs (three Org1 peers), the clock at the epoch.
    pub(crate) fn new() -> Net {
        let orderer_org = org_with_peers("OrdererMSP", "example.com", 0);
        let orderer = admin(&orderer_org);
        Net::with_orgs(&orderer_org, orderer, org_with_peers("Org1MSP", "org1.example.com", 3), epoch())
    }

    /// A net whose channel has the ordering org `orderer_org` (blocks signed by `orderer`) and
    /// the application org `org1`, its clock starting at `now`.
    pub(crate) fn with_orgs(orderer_org: &dyn ChannelMsp, orderer: LocalMsp, org1: Org, now: SystemTime) -> Net {
        let mut spec = GenesisSpec::new(CHANNEL, now);
        spec.orderer_orgs.push(GenesisOrg {
            name: "OrdererMSP".into(),
            org: orderer_org,
            anchor_peers: Vec::new(),
            orderer_endpoints: vec!["orderer.example.com:7050".into()],
        });
        spec.application_orgs.push(GenesisOrg {
            name: "Org1MSP".into(),
            org: &org1,
            anchor_peers: Vec::new(),
            orderer_endpoints: Vec::new(),
        });
        let genesis = genesis_block(&spec).unwrap();
        Net {
            network: Arc::new(MemNetwork::default()),
            clock: ManualClock::at(now),
            org1,
            orderer,
            genesis,
            rng: ChaCha20Rng::seed_from_u64(3),
        }
    }

    /// Starts peer `i` of Org1 on port 7051 + 1000·i, bootstrapping from peer 0; `storage`
    /// keeps its disk across restarts.
    async fn start(&self, i: usize, storage: Arc<MemStorage>) -> RunningNode {
        self.start_with(i, storage, &[]).await
    }

    /// [`Net::start`] with more `CORE_*` variables.
    pub(crate) async fn start_with(&self, i: usize, storage: Arc<MemStorage>, env: &[(&str, &str)]) -> RunningNode {
        self.try_start(i, storage, env, |setup| setup).await.unwrap()
    }

    /// The in-memory network.
    pub(crate) fn network(&self) -> &MemNetwork {
        &self.network
    }

    /// An env on the net's network and clock, with no disk.
    pub(crate) fn env(&self, seed: u8) -> Env {
        Env::new(self.clock.clone(), self.network.clone(), Arc::new(MemStorage::default()), [seed; 32])
    }

    /// The net's Org1 (its peers' TLS files).
    pub(crate) fn org1(&self) -> &Org {
        &self.org1
    }

    /// [`Net::start_with`] with the setup adjusted by `adjust` (TLS files), returning the start
    /// error if any.
    pub(crate) async fn try_start(
        &self,
        i: usize,
        storage: Arc<MemStorage>,
        env: &[(&str, &str)],
        adjust: impl FnOnce(node::Setup) -> node::Setup,
    ) -> Result<RunningNode, node::StartError> {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
        let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
        let port = 7051 + 1000 * i as u16;
        let vars = EnvVars::new()
            .with("CORE_PEER_FILESYSTEMPATH", "/mem/data")
            .with("CORE_PEER_LISTENADDRESS", &format!("127.0.0.1:{port}"))
            .with("CORE_PEER_ADDRESS", &format!("127.0.0.1:{port}"))
            .with("CORE_PEER_CHAINCODELISTENADDRESS", &format!("127.0.0.1:{}", port + 1))
            .with("CORE_OPERATIONS_LISTENADDRESS", &format!("127.0.0.1:{}", port + 2))
            .with("CORE_PEER_GOSSIP_BOOTSTRAP", "127.0.0.1:7051")
            .with("CORE_PEER_GOSSIP_STATE_ENABLED", "true")
            .with("CORE_PEER_GOSSIP_ORGLEADER", "false");
        let vars = env.iter().fold(vars, |vars, (name, value)| vars.with(name, value));
        let config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &vars).unwrap().config;
        let msp = LocalMsp::from_files(&self.org1.peers[i].msp, "Org1MSP", self.clock.wall_clock()).unwrap();
        let (_layer, handle) =
            peer_core::logging::layer(&Default::default(), Arc::new(epoch), peer_core::logging::MemorySink::new().sink()).unwrap();
        let setup = adjust(node::Setup::new(config, msp, Arc::new(handle), format!("peer{i}")));
        let env = Env::new(self.clock.clone(), self.network.clone(), storage, [i as u8 + 1; 32]);
        let running = node::start(env, setup).await?;
        if running.channels.ledger(CHANNEL).is_none() {
            running.channels.join(&self.genesis).unwrap();
        }
        Ok(running)
    }

    /// The next orderer-signed block on top of `node`'s tip.
    pub(crate) fn next_block(&mut self, node: &RunningNode) -> Block {
        let ledger = node.channels.ledger(CHANNEL).unwrap();
        let height = ledger.height();
        let tip = ledger.block(height - 1).unwrap().unwrap();
        let tx = envelope(HeaderType::EndorserTransaction, CHANNEL, &format!("tx-{height}"), b"");
        let mut block = new_block(height, &header_hash(tip.header.as_ref().unwrap()), vec![tx]);
        sign_block(&mut block, &self.orderer, 0, &mut self.rng);
        block
    }

    /// Moves time forward in 50 ms steps, letting every task run in between.
    pub(crate) async fn advance(&self, by: Duration) {
        let steps = by.as_millis() / 50;
        for _ in 0..steps {
            self.clock.advance(Duration::from_millis(50));
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// `GET /metrics` of one of the net's nodes, parsed.
pub(crate) async fn scrape(net: &Net, node: &RunningNode) -> (crate::exposition::Exposition, String) {
    crate::metrics::scrape_node(&net.network, node).await
}

pub(crate) fn height(node: &RunningNode) -> u64 {
    node.channels.ledger(CHANNEL).unwrap().height()
}

#[tokio::test]
async fn blocks_reach_peers_by_gossip_and_a_late_peer_catches_up_by_state_transfer() {
    let mut net = Net::new();
    let leader = net.start(0, Arc::new(MemStorage::default())).await;
    let follower = net.start(1, Arc::new(MemStorage::default())).await;
    // Membership forms and StateInfo goes around.
    net.advance(Duration::from_secs(12)).await;

    // The leader commits blocks from the orderer and publishes them.
    for _ in 0..3 {
        let block = net.next_block(&leader);
        leader.channels.append(CHANNEL, &block).unwrap();
        leader.gossip_publisher.publish(CHANNEL, &block);
        net.advance(Duration::from_millis(500)).await;
    }
    assert_eq!(height(&leader), 4);
    assert_eq!(height(&follower), 4, "blocks travelled as data messages");

    // A forged block (not signed by the orderer) is not committed.
    let mut forged = net.next_block(&leader);
    if let Some(metadata) = forged.metadata.as_mut() {
        metadata.metadata.clear();
    }
    leader.gossip_publisher.publish(CHANNEL, &forged);
    net.advance(Duration::from_secs(1)).await;
    assert_eq!(height(&follower), 4);

    // A third peer that was not there catches up by state transfer (checkInterval 10s).
    let late = net.start(2, Arc::new(MemStorage::default())).await;
    assert_eq!(height(&late), 1);
    net.advance(Duration::from_secs(30)).await;
    assert_eq!(height(&late), 4, "state transfer brought the late peer up to date");

    late.stop().await;
    follower.stop().await;
    leader.stop().await;
}
