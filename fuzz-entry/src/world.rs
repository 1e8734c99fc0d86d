//! The fixed world every target runs in: seeded organizations (`msp generate --seed`), a channel
//! with its genesis block and a few orderer-signed blocks, and peers on in-memory storage.
//!
//! Generating keys and certificates takes milliseconds, far more than one fuzz input, so the
//! world is built once per process ([`world`]). Everything an input can change (ledgers, the
//! gossip identity store, state machines) is made fresh for each input from a disk image taken
//! once ([`Peer::joined`], [`Peer::empty`]), so an input's outcome never depends on the inputs
//! before it (libFuzzer replays single inputs).
//!
//! Nothing here touches the OS: time is the test kit's manual clock, never advanced (monotonic
//! time 0, the wall clock at [`epoch`]), storage is the simulator's in-memory disk, and the
//! network refuses every connection.

use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use peer_core::channel::{AnchorPeer, GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::channels::Channels;
use peer_core::config::HostPort;
use peer_core::env::{BoxFuture, Connection, Env, Listener, Network};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::generate::{self, Org, OrgSpec, ValidityWindow};
use peer_core::msp::{LocalMsp, Msp};
use peer_core::testkit::{ManualClock, epoch, local_msp};
use proto::common::{Block, HeaderType};
use rand_core::SeedableRng;
use sim::env::{SimDisk, SimStorage};

/// The channel every target's peer has joined (or joins).
pub const CHANNEL: &str = "mychannel";
/// The seed of `msp generate --seed` for every organization here.
pub const MSP_SEED: u64 = 9;
/// Blocks after the genesis block in the fixture chain.
pub const CHAIN_BLOCKS: u64 = 3;
/// Where peers keep their data on the in-memory disk.
const FILE_SYSTEM_PATH: &str = "/fuzz/data";

/// A network with nobody on it: binding and dialing fail. The targets call the peer's entry
/// points directly; nothing here should reach for a socket.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNetwork;

impl Network for NoNetwork {
    fn bind(&self, address: &HostPort) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let message = format!("no network in fuzz targets (bind {address})");
        Box::pin(async move { Err(io::Error::other(message)) })
    }
    fn connect(&self, address: &HostPort, _timeout: Duration) -> BoxFuture<'static, io::Result<Box<dyn Connection>>> {
        let message = format!("no network in fuzz targets (connect {address})");
        Box::pin(async move { Err(io::Error::other(message)) })
    }
    fn interface_addresses(&self) -> Vec<IpAddr> {
        Vec::new()
    }
}

/// The organizations, identities and chain every target shares.
pub struct World {
    pub orderer_org: Org,
    pub org1: Org,
    pub org2: Org,
    /// Not in the channel and not trusted by anyone: its members must be refused.
    pub org3: Org,
    /// Org1's peer0: the peer under test.
    pub peer: LocalMsp,
    /// More members, by role.
    pub org1_peer1: LocalMsp,
    pub org1_peer2: LocalMsp,
    pub org1_admin: LocalMsp,
    pub org2_peer0: LocalMsp,
    pub org2_peer1: LocalMsp,
    pub org3_peer0: LocalMsp,
    /// Signs blocks for the ordering service (the orderer org's admin).
    pub orderer: LocalMsp,
    pub org1_msp: Msp,
    pub org2_msp: Msp,
    /// Block 0 of [`CHANNEL`] (orderer org, Org1 and Org2, anchor peers).
    pub genesis: Block,
    /// Blocks 1..=[`CHAIN_BLOCKS`], each signed by the orderer.
    pub chain: Vec<Block>,
    /// A disk holding a closed ledger directory with [`CHANNEL`] joined at height 1.
    joined_disk: SimDisk,
    /// A disk holding an empty, closed ledger directory.
    empty_disk: SimDisk,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("peer", &self.peer.pki_id()).finish_non_exhaustive()
    }
}

fn org(msp_id: &str, domain: &str, peers: usize) -> Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers };
    generate::generate_org(&spec, &mut generate::org_rng(MSP_SEED, &spec), ValidityWindow::fixed()).expect("generating a fixture org")
}

/// The genesis block of [`CHANNEL`] as `channel create-genesis` builds it.
fn channel_genesis(orderer: &Org, apps: &[&Org]) -> Block {
    let mut spec = GenesisSpec::new(CHANNEL, epoch());
    let address = format!("orderer.{}:7050", orderer.spec.domain);
    spec.orderer_addresses = vec![address.clone()];
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        org: orderer,
        anchor_peers: Vec::new(),
        orderer_endpoints: vec![address],
    });
    for app in apps {
        let anchor = AnchorPeer { host: format!("peer0.{}", app.spec.domain), port: 7051 };
        spec.application_orgs.push(GenesisOrg {
            name: app.spec.msp_id.clone(),
            org: app,
            anchor_peers: vec![anchor],
            orderer_endpoints: Vec::new(),
        });
    }
    genesis_block(&spec).expect("building the fixture genesis block")
}

/// Block `number` on top of `previous`: two endorser transactions (tx IDs `tx-<n>-0/1`), signed
/// by `orderer` with the genesis block as the last config.
pub fn next_block(previous: &Block, envelopes: Vec<Vec<u8>>, orderer: &LocalMsp) -> Block {
    let header = previous.header.clone().unwrap_or_default();
    let mut block = new_block(header.number + 1, &header_hash(&header), envelopes);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(header.number + 1);
    sign_block(&mut block, orderer, 0, &mut rng);
    block
}

/// An endorser transaction envelope on [`CHANNEL`] (unsigned, as the fixture's chain has them).
pub fn transaction(tx_id: &str, data: &[u8]) -> Vec<u8> {
    envelope(HeaderType::EndorserTransaction, CHANNEL, tx_id, data)
}

impl World {
    fn build() -> World {
        let orderer_org = org("OrdererMSP", "example.com", 1);
        let org1 = org("Org1MSP", "org1.example.com", 3);
        let org2 = org("Org2MSP", "org2.example.com", 2);
        let org3 = org("Org3MSP", "org3.example.com", 1);
        let genesis = channel_genesis(&orderer_org, &[&org1, &org2]);
        let orderer = local_msp(&orderer_org.admin, "OrdererMSP");
        let mut chain: Vec<Block> = Vec::new();
        for number in 1..=CHAIN_BLOCKS {
            let previous = chain.last().unwrap_or(&genesis);
            let txs = (0..2).map(|i| transaction(&format!("tx-{number}-{i}"), format!("payload {number}/{i}").as_bytes())).collect();
            chain.push(next_block(previous, txs, &orderer));
        }
        let world_without_disks = |joined_disk, empty_disk| World {
            peer: local_msp(&org1.peers[0], "Org1MSP"),
            org1_peer1: local_msp(&org1.peers[1], "Org1MSP"),
            org1_peer2: local_msp(&org1.peers[2], "Org1MSP"),
            org1_admin: local_msp(&org1.admin, "Org1MSP"),
            org2_peer0: local_msp(&org2.peers[0], "Org2MSP"),
            org2_peer1: local_msp(&org2.peers[1], "Org2MSP"),
            org3_peer0: local_msp(&org3.peers[0], "Org3MSP"),
            org1_msp: Msp::from_files(&org1.msp, "Org1MSP").expect("org1's MSP"),
            org2_msp: Msp::from_files(&org2.msp, "Org2MSP").expect("org2's MSP"),
            orderer,
            orderer_org,
            org1,
            org2,
            org3,
            genesis,
            chain,
            joined_disk,
            empty_disk,
        };
        let mut world = world_without_disks(SimDisk::default(), SimDisk::default());
        // The disk images: open a ledger directory once (and join the channel on one), close it.
        {
            let peer = Peer::open(world.empty_disk.clone());
            drop(peer);
        }
        {
            let peer = Peer::open(world.joined_disk.clone());
            peer.channels.join(&world.genesis).expect("joining the fixture channel");
        }
        world.empty_disk = world.empty_disk.snapshot();
        world.joined_disk = world.joined_disk.snapshot();
        world
    }

    /// The MSPs other than the peer's own that its gossip layer trusts (org2's).
    pub fn trusted_msps(&self) -> Vec<Msp> {
        vec![self.org2_msp.clone()]
    }
}

/// The world, built on first use.
pub fn world() -> &'static World {
    static WORLD: LazyLock<World> = LazyLock::new(World::build);
    &WORLD
}

/// A peer's ledger side (Org1's peer0): its channels on an in-memory disk.
pub struct Peer {
    pub disk: SimDisk,
    pub env: Env,
    pub channels: Arc<Channels>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl Peer {
    /// Opens the ledger directory on `disk` (creating it if empty) as `node start` does.
    pub fn open(disk: SimDisk) -> Peer {
        let env = Env::new(ManualClock::new(), Arc::new(NoNetwork), Arc::new(SimStorage(disk.clone())), [7; 32]);
        let ledger = LedgerMgr::open(&env, Path::new(FILE_SYSTEM_PATH), "fuzz target").expect("opening the in-memory ledger directory");
        let channels = Arc::new(Channels::open(ledger).expect("opening the channels"));
        Peer { disk, env, channels }
    }

    /// A fresh peer that has joined [`CHANNEL`] (height 1).
    pub fn joined() -> Peer {
        let world = world();
        Peer::open(world.joined_disk.snapshot())
    }

    /// A fresh peer with no channel.
    pub fn empty() -> Peer {
        let world = world();
        Peer::open(world.empty_disk.snapshot())
    }

    /// Closes this peer and opens its disk again (a restart).
    pub fn reopen(self) -> Peer {
        let disk = self.disk.clone();
        drop(self);
        Peer::open(disk)
    }
}
