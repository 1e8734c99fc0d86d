//! `sim orderer` as a real process: it writes the genesis block and the orgs' MSP folders, serves
//! `orderer.AtomicBroadcast` on real TCP, and its blocks verify when fetched with a tonic client
//! (signed SeekInfo by the written org1 admin; each block appended to a scratch ledger through
//! `Channels::append`, which checks signatures, numbers, hash chain and data hashes). SIGTERM
//! ends it with exit code 0; a second start on the same data directory continues the chain.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use peer_core::channels::Channels;
use peer_core::env::{Env, StoppedClock};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::header_hash;
use peer_core::msp::LocalMsp;
use peer_core::proposal::seek_info_envelope;
use prost::Message;
use proto::common::{Block, Status as FabricStatus};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::{SeekInfo, SeekOldest, SeekPosition, SeekSpecified, deliver_response, seek_position};
use sim::env::{SimDisk, SimNetwork, SimStorage};

const CHANNEL: &str = "mychannel";

/// A test outside the simulation: real time is what the orderer checks SeekInfo timestamps against.
#[allow(clippy::disallowed_methods)]
fn now() -> SystemTime {
    SystemTime::now()
}

struct Orderer {
    child: Child,
    address: String,
}

impl Orderer {
    fn start(dir: &Path) -> Orderer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sim"))
            .args(["orderer", "--listen", "127.0.0.1:0", "--channel", CHANNEL, "--tx-per-second", "40", "--batch-timeout", "200ms"])
            .args(["--orgs", "org1,org2", "--endpoint", "127.0.0.1:7050"])
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--genesis-out")
            .arg(dir.join("mychannel.block"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
        Orderer { child, address }
    }

    fn terminate(mut self) -> i32 {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.child.wait().unwrap().code().expect("exited, not killed by a signal")
    }
}

impl Drop for Orderer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Blocks 0..=last, each waited for (BLOCK_UNTIL_READY), then the status.
async fn fetch(address: &str, signer: &LocalMsp, last: u64) -> Vec<Block> {
    let mut client = AtomicBroadcastClient::connect(format!("http://{address}")).await.unwrap();
    let seek = SeekInfo {
        start: Some(SeekPosition { r#type: Some(seek_position::Type::Oldest(SeekOldest {})) }),
        stop: Some(SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number: last })) }),
        ..SeekInfo::default()
    };
    let envelope = seek_info_envelope(signer, CHANNEL, &seek, [5; 24], now());
    let mut stream = client.deliver(tokio_stream::iter([envelope])).await.unwrap().into_inner();
    let mut blocks = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        match response.r#type {
            Some(deliver_response::Type::Block(block)) => blocks.push(block),
            Some(deliver_response::Type::Status(status)) => {
                assert_eq!(status, FabricStatus::Success as i32);
                return blocks;
            }
            None => panic!("an empty deliver response"),
        }
    }
    panic!("the stream ended without a status")
}

fn verify(blocks: &[Block], genesis: &Block) {
    assert_eq!(&blocks[0], genesis, "block 0 is the written genesis block");
    let network = SimNetwork { host: "verify".into(), faults: None };
    let env = Env::new(Arc::new(StoppedClock), Arc::new(network), Arc::new(SimStorage(SimDisk::default())), [1; 32]);
    let ledger = LedgerMgr::open(&env, Path::new("/verify"), "verify").unwrap();
    let channels = Channels::open(ledger).unwrap();
    channels.join(genesis).unwrap();
    for block in &blocks[1..] {
        channels.append(CHANNEL, block).unwrap();
    }
}

fn hashes(blocks: &[Block]) -> Vec<[u8; 32]> {
    blocks.iter().map(|b| header_hash(b.header.as_ref().unwrap())).collect()
}

#[tokio::test]
async fn the_orderer_process_serves_blocks_that_verify_and_continues_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let orderer = Orderer::start(dir.path());
    let genesis = Block::decode(std::fs::read(dir.path().join("mychannel.block")).unwrap().as_slice()).unwrap();
    let crypto = dir.path().join("crypto-config/peerOrganizations");
    for peer in ["org1.example.com/peers/peer0.org1.example.com/msp", "org2.example.com/peers/peer0.org2.example.com/msp"] {
        assert!(crypto.join(peer).join("signcerts").is_dir(), "{peer} written");
    }
    let admin = LocalMsp::load(&crypto.join("org1.example.com/users/Admin@org1.example.com/msp"), "Org1MSP", None, now()).unwrap();

    let first = fetch(&orderer.address, &admin, 4).await;
    assert_eq!(first.len(), 5);
    verify(&first, &genesis);
    assert_eq!(orderer.terminate(), 0, "SIGTERM ends the orderer with exit code 0");

    let orderer = Orderer::start(dir.path());
    let again = fetch(&orderer.address, &admin, 7).await;
    verify(&again, &genesis);
    assert_eq!(hashes(&again[..5]), hashes(&first), "the chain continues after a restart");
    assert_eq!(orderer.terminate(), 0);
}

/// With `--listen 127.0.0.1:0` the genesis block names the port actually bound (peers dial it);
/// the orderer org is written as cryptogen writes one (`ordererOrganizations/`, its node under
/// `orderers/`); anchor peers come from `--anchor-peer`; the orderer logs no peer lines. Given
/// that block back with `--genesis`, an identity outside the orderer org is refused up front.
#[test]
fn port_zero_is_named_as_bound_and_the_orderer_org_is_in_cryptogens_layout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orderer.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["orderer", "--listen", "127.0.0.1:0", "--orgs", "org1,org2", "--anchor-peer", "Org1MSP=127.0.0.1:7051"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--genesis-out")
        .arg(dir.path().join("mychannel.block"))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let bound = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    assert!(!bound.ends_with(":0"), "{bound}");

    let genesis = Block::decode(std::fs::read(dir.path().join("mychannel.block")).unwrap().as_slice()).unwrap();
    let config = peer_core::channel::ChannelConfig::from_block(&genesis).unwrap();
    assert_eq!(config.orderer_endpoints(), [bound]);
    let anchors =
        |org: &str| config.application.orgs[org].anchor_peers.iter().map(|a| format!("{}:{}", a.host, a.port)).collect::<Vec<_>>();
    assert_eq!(anchors("Org1MSP"), ["127.0.0.1:7051"]);
    assert!(anchors("Org2MSP").is_empty());

    let crypto = dir.path().join("crypto-config");
    let node = crypto.join("ordererOrganizations/example.com/orderers/orderer.example.com");
    assert!(node.join("msp/signcerts").is_dir() && node.join("tls/server.crt").is_file());
    assert!(!crypto.join("peerOrganizations/example.com").exists(), "the orderer org is not a peer org");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Created and started new channel mychannel"), "{text}");
    assert!(!text.contains("Joining gossip network"), "an orderer logs no peer lines:\n{text}");

    let peer_msp = crypto.join("peerOrganizations/org1.example.com/peers/peer0.org1.example.com/msp");
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["orderer", "--listen", "127.0.0.1:0", "--mspid", "Org1MSP"])
        .arg("--genesis")
        .arg(dir.path().join("mychannel.block"))
        .arg("--msp")
        .arg(&peer_msp)
        .arg("--data")
        .arg(dir.path().join("data2"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(Org1MSP) cannot sign blocks of channel mychannel"), "{stderr}");
}
