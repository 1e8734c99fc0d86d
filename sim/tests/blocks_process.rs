//! Block flow between real processes on 127.0.0.1: `sim orderer` cuts blocks, three
//! `peer-core node start` peers join its channel and keep their ledgers in step with it.
//!
//! Topology: org1 peer0 and org2 peer0 are static leaders (each pulls from the orderer), org1
//! peer1 is a follower (it gets blocks only by gossip from org1 peer0: pushed blocks, and state
//! transfer for what it missed). The follower is killed with SIGKILL while blocks flow and
//! restarted on the same data directory; it must catch up. Then the orderer is stopped, every
//! peer must reach the orderer's final height, and the ledgers must be equal to each other and
//! to the orderer's (tip hashes from `channel getinfo`, blocks from `channel fetch`, including
//! blocks committed while the follower was down); the ledger metrics must count the commits.
//!
//! This test runs outside the simulation, on real time: it waits for conditions by polling with
//! short sleeps and generous deadlines, and never asserts on how long anything took. Each peer's
//! stderr goes to `peer.log` in its own directory; on a failure the last lines of every log are
//! printed, and every child process is killed whatever happens (the `Network` guard's `Drop`).
//!
//! The peers run the `peer-core` binary, which the test has cargo build (`support/binaries.rs`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use peer_core::ledger::LedgerMgr;
use peer_core::testkit::{Ports, free_port};
use prost::Message;
use proto::common::Block;

const CHANNEL: &str = "mychannel";
/// The longest any single wait may take before the test fails (normally a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);
/// Heights every peer must reach before the follower is killed.
const FIRST_HEIGHT: u64 = 10;
/// Blocks the leaders must commit while the follower is down.
const MISSED_BLOCKS: u64 = 5;
/// Lines of each log printed on a failure.
const LOG_TAIL: usize = 40;

// Real time: this test drives real processes, outside any simulation.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[path = "support/binaries.rs"]
mod binaries;

fn peer_core_binary() -> &'static Path {
    binaries::peer_core()
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `DEADLINE`.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a log file (or why there are none).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// A log file the child writes its stderr to; appended to, so a restart keeps the earlier run.
fn log_file(path: &Path, banner: &str) -> File {
    let mut file = OpenOptions::new().create(true).append(true).open(path).unwrap();
    writeln!(file, "===== {banner} =====").unwrap();
    file
}

/// `sim orderer` as a child process.
struct Orderer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    data: PathBuf,
    log: PathBuf,
}

impl Orderer {
    /// Starts the orderer on a free port, which is also the endpoint the genesis block names (the
    /// peers' deliver clients dial it), and waits for its `listening on` line.
    fn start(root: &Path) -> Orderer {
        let address = format!("127.0.0.1:{}", free_port());
        let data = root.join("orderer");
        let log = root.join("orderer.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sim"))
            .args(["orderer", "--channel", CHANNEL, "--orgs", "org1,org2", "--peers", "2"])
            // Four or five blocks a second (the batch timeout cuts them, two or three transactions each).
            .args(["--tx-per-second", "10", "--batch-timeout", "200ms", "--max-message-count", "10"])
            .args(["--listen", &address, "--endpoint", &address])
            .arg("--data")
            .arg(&data)
            .arg("--genesis-out")
            .arg(root.join("mychannel.block"))
            .arg("--crypto-out")
            .arg(root.join("crypto"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(&log, "sim orderer"))
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Owned by the guard before anything can fail, so a failure kills it.
        let mut orderer = Orderer { child, stdout, data, log };
        let mut line = String::new();
        orderer.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("listening on {address}"), "orderer log:\n{}", tail(&orderer.log, LOG_TAIL));
        orderer
    }

    /// SIGTERM; returns the chain's final height, which the orderer prints once it has stopped.
    fn terminate(&mut self) -> u64 {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let height = line.trim().strip_prefix("stopped at height ").and_then(|h| h.parse().ok());
        let height = height.unwrap_or_else(|| panic!("unexpected line after SIGTERM {line:?}"));
        assert_eq!(self.child.wait().unwrap().code(), Some(0), "SIGTERM ends the orderer with exit code 0");
        height
    }
}

impl Drop for Orderer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One peer of the topology.
struct PeerSpec {
    org: u8,
    index: u8,
    /// A static leader pulls from the orderer; the others get blocks by gossip.
    leader: bool,
}

const PEERS: [PeerSpec; 3] = [
    PeerSpec { org: 1, index: 0, leader: true },
    PeerSpec { org: 1, index: 1, leader: false },
    PeerSpec { org: 2, index: 0, leader: true },
];
const ORG1_PEER0: usize = 0;
const FOLLOWER: usize = 1;
const ORG2_PEER0: usize = 2;

/// A `peer-core node start` process (or its data while it is down).
struct Peer {
    name: String,
    domain: String,
    msp_id: String,
    org_root: PathBuf,
    /// Its own directory: `core.yaml`, `data/`, `peer.log`.
    dir: PathBuf,
    address: String,
    chaincode_port: u16,
    operations_port: u16,
    child: Option<Child>,
}

impl Peer {
    fn new(root: &Path, spec: &PeerSpec) -> Peer {
        let domain = format!("org{}.example.com", spec.org);
        let name = format!("peer{}.{domain}", spec.index);
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(repo_root().join("sampleconfig/core.yaml"), dir.join("core.yaml")).unwrap();
        let ports = Ports::free();
        Peer {
            msp_id: format!("Org{}MSP", spec.org),
            org_root: root.join("crypto/peerOrganizations").join(&domain),
            dir,
            address: format!("127.0.0.1:{}", ports.peer),
            chaincode_port: ports.chaincode,
            operations_port: ports.operations,
            child: None,
            name,
            domain,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.join("peer.log")
    }

    /// Starts `node start` on the sample config overridden for this peer: its ports, data, MSP,
    /// gossip bootstrap (its org's peer0; a peer0 names itself, which gossip skips, so the sample's
    /// 127.0.0.1:7051 is never dialled), static leadership, and short gossip periods so blocks and
    /// catch-up flow within a second or two.
    fn start(&mut self, spec: &PeerSpec, bootstrap: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let msp = self.org_root.join("peers").join(&self.name).join("msp");
        let settings = [
            ("FABRIC_CFG_PATH", self.dir.display().to_string()),
            ("FABRIC_LOGGING_SPEC", "info".into()),
            ("CORE_PEER_ID", self.name.clone()),
            ("CORE_PEER_ADDRESS", self.address.clone()),
            ("CORE_PEER_LISTENADDRESS", self.address.clone()),
            ("CORE_PEER_CHAINCODELISTENADDRESS", format!("127.0.0.1:{}", self.chaincode_port)),
            ("CORE_OPERATIONS_LISTENADDRESS", format!("127.0.0.1:{}", self.operations_port)),
            ("CORE_PEER_FILESYSTEMPATH", self.dir.join("data").display().to_string()),
            ("CORE_PEER_MSPCONFIGPATH", msp.display().to_string()),
            ("CORE_PEER_LOCALMSPID", self.msp_id.clone()),
            ("CORE_PEER_GOSSIP_BOOTSTRAP", bootstrap.into()),
            ("CORE_PEER_GOSSIP_EXTERNALENDPOINT", self.address.clone()),
            ("CORE_PEER_GOSSIP_USELEADERELECTION", "false".into()),
            ("CORE_PEER_GOSSIP_ORGLEADER", spec.leader.to_string()),
            ("CORE_PEER_GOSSIP_STATE_ENABLED", "true".into()),
            ("CORE_PEER_GOSSIP_STATE_CHECKINTERVAL", "1s".into()),
            ("CORE_PEER_GOSSIP_STATE_RESPONSETIMEOUT", "1s".into()),
            ("CORE_PEER_GOSSIP_PUBLISHSTATEINFOINTERVAL", "1s".into()),
            ("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL", "500ms".into()),
            ("CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT", "3s".into()),
            ("CORE_PEER_GOSSIP_RECONNECTINTERVAL", "1s".into()),
            ("CORE_PEER_GOSSIP_DIALTIMEOUT", "1s".into()),
            ("CORE_PEER_GOSSIP_CONNTIMEOUT", "1s".into()),
            // The leaders' deliver clients retry quickly once the orderer is gone (not asserted on).
            ("CORE_PEER_DELIVERYCLIENT_RECONNECTBACKOFFTHRESHOLD", "1s".into()),
        ];
        let log = log_file(&self.log(), &format!("node start ({})", self.name));
        let mut command = Command::new(peer_core_binary());
        command.args(["node", "start"]).current_dir(&self.dir).env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        command.envs(settings);
        self.child = Some(command.spawn().expect("spawning peer-core node start"));
        wait_until(&format!("{} has started", self.name), || {
            self.assert_running();
            std::fs::read_to_string(self.log())
                .is_ok_and(|text| text.rsplit("===== node start").next().is_some_and(|run| run.contains("Started peer with ID=")))
        });
    }

    /// Fails at once, rather than at a deadline, if a peer that should run has exited.
    fn assert_running(&mut self) {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait().unwrap()
        {
            panic!("{} exited unexpectedly ({status})", self.name);
        }
    }

    /// SIGKILL: no shutdown path runs; the ledger keeps whatever was synced.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("the peer is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `peer-core channel <args>` against this peer as its org's admin; returns stdout, and
    /// fails with both outputs unless it exits 0.
    fn channel(&self, args: &[&str]) -> String {
        let admin = self.org_root.join("users").join(format!("Admin@{}", self.domain)).join("msp");
        let output = Command::new(peer_core_binary())
            .arg("channel")
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("FABRIC_CFG_PATH", &self.dir)
            .env("CORE_PEER_LOCALMSPID", &self.msp_id)
            .env("CORE_PEER_MSPCONFIGPATH", &admin)
            .env("CORE_PEER_ADDRESS", &self.address)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "peer-core channel {args:?} against {} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}", self.name);
        stdout.into_owned()
    }

    /// The operations server's `/metrics`, or `None` while it does not answer (stopped or starting).
    fn metrics(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.operations_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200").then(|| body.to_string())
    }

    /// The channel's height from `ledger_blockchain_height` (0 while unknown), a cheap poll.
    fn height(&self) -> u64 {
        self.metrics().and_then(|text| sample(&text, "ledger_blockchain_height")).unwrap_or(0)
    }

    /// The height of a peer that is running and has joined (a failure, not 0, otherwise).
    fn joined_height(&self) -> u64 {
        let metrics = self.metrics().unwrap_or_else(|| panic!("{}'s operations server does not answer", self.name));
        sample(&metrics, "ledger_blockchain_height").unwrap_or_else(|| panic!("{} reports no height for {CHANNEL}", self.name))
    }

    /// `channel getinfo`: (height, currentBlockHash).
    fn info(&self) -> (u64, String) {
        let stdout = self.channel(&["getinfo", "-c", CHANNEL]);
        let json = stdout.trim().strip_prefix("Blockchain info: ").unwrap_or_else(|| panic!("unexpected getinfo output {stdout:?}"));
        let info: serde_json::Value = serde_json::from_str(json).unwrap();
        (info["height"].as_u64().unwrap(), info["currentBlockHash"].as_str().unwrap().to_string())
    }

    /// `channel fetch <number>`: the block as the peer's Deliver service sends it.
    fn fetch(&self, number: u64) -> Block {
        let file = self.dir.join(format!("fetched_{number}.block"));
        self.channel(&["fetch", &number.to_string(), file.to_str().unwrap(), "-c", CHANNEL]);
        Block::decode(std::fs::read(&file).unwrap().as_slice()).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of `metric{channel="mychannel"}` in a Prometheus text exposition.
fn sample(text: &str, metric: &str) -> Option<u64> {
    let prefix = format!("{metric}{{channel=\"{CHANNEL}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.trim().parse::<f64>().ok()).map(|value| value as u64)
}

/// Everything the test started. Dropping it prints the tail of every log when the test is
/// failing, then kills every child still running (the orderer's and the peers' own `Drop`), then
/// removes the directory (fields drop in order: the directory goes last).
struct Network {
    orderer: Orderer,
    peers: Vec<Peer>,
    root: tempfile::TempDir,
}

impl Network {
    fn start() -> Network {
        let root = tempfile::tempdir().unwrap();
        let orderer = Orderer::start(root.path());
        let peers = PEERS.iter().map(|spec| Peer::new(root.path(), spec)).collect();
        let mut network = Network { orderer, peers, root };
        for i in 0..PEERS.len() {
            network.start_peer(i);
        }
        network
    }

    fn start_peer(&mut self, i: usize) {
        let spec = &PEERS[i];
        let bootstrap = self.peers[PEERS.iter().position(|p| p.org == spec.org && p.index == 0).unwrap()].address.clone();
        self.peers[i].start(spec, &bootstrap);
    }

    fn genesis(&self) -> PathBuf {
        self.root.path().join("mychannel.block")
    }

    fn heights(&self) -> Vec<u64> {
        self.peers.iter().map(Peer::height).collect()
    }

    /// Waits until each peer in `which` has at least `height` blocks.
    fn wait_for_height(&mut self, which: &[usize], height: u64, what: &str) {
        wait_until(&format!("{what} (peers {which:?} at height >= {height})"), || {
            self.peers.iter_mut().for_each(Peer::assert_running);
            which.iter().all(|&i| self.peers[i].height() >= height)
        });
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("heights (ledger_blockchain_height) at the failure: {:?}", self.heights());
            eprintln!(
                "----- orderer: last {LOG_TAIL} lines of {} -----\n{}",
                self.orderer.log.display(),
                tail(&self.orderer.log, LOG_TAIL)
            );
            for peer in &self.peers {
                eprintln!("----- {}: last {LOG_TAIL} lines of {} -----\n{}", peer.name, peer.log().display(), tail(&peer.log(), LOG_TAIL));
            }
        }
    }
}

#[test]
fn three_peers_follow_the_orderer_and_a_killed_follower_catches_up() {
    let mut network = Network::start();
    let genesis = network.genesis();
    for peer in &network.peers {
        let stdout = peer.channel(&["join", "-b", genesis.to_str().unwrap()]);
        assert_eq!(stdout, "", "join prints to stderr only");
    }
    let everyone = [ORG1_PEER0, FOLLOWER, ORG2_PEER0];
    let leaders = [ORG1_PEER0, ORG2_PEER0];
    network.wait_for_height(&everyone, FIRST_HEIGHT, "every peer has blocks from the orderer");

    // Kill the follower while blocks flow. It gets blocks only from org1 peer0, so its ledger
    // ends at or below org1 peer0's height read after the kill: every block from `down_from` on
    // is one the follower commits after its restart.
    network.peers[FOLLOWER].kill();
    let down_from = network.peers[ORG1_PEER0].joined_height();
    eprintln!("killed the follower; org1 peer0 at height {down_from}");
    network.wait_for_height(&leaders, down_from + MISSED_BLOCKS, "the leaders go on while the follower is down");
    let caught_up_at = leaders.iter().map(|&i| network.peers[i].joined_height()).max().unwrap();
    network.start_peer(FOLLOWER);
    eprintln!("restarted the follower; the leaders reached height {caught_up_at} while it was down");
    network.wait_for_height(&[FOLLOWER], caught_up_at, "the restarted follower catches up with the leaders' height at its restart");

    // Stop the chain; every peer must end at the orderer's final height, with equal ledgers.
    let final_height = network.orderer.terminate();
    eprintln!("stopped the orderer at height {final_height}");
    assert!(final_height >= caught_up_at, "the orderer's chain ({final_height}) holds what the peers committed ({caught_up_at})");
    network.wait_for_height(&everyone, final_height, "every peer reaches the orderer's final height");

    let infos: Vec<(u64, String)> = network.peers.iter().map(Peer::info).collect();
    for (peer, info) in network.peers.iter().zip(&infos) {
        assert_eq!(info, &infos[0], "{} has the same height and tip as {}", peer.name, network.peers[0].name);
    }
    assert_eq!(infos[0].0, final_height);

    // Blocks: the genesis, the first one pulled, some committed while the follower was down, and
    // the last; each equal on every peer and equal to the orderer's block at that number.
    let orderer_ledger = LedgerMgr::open(&peer_core::env::real::env().unwrap(), &network.orderer.data, "blocks_process").unwrap();
    let orderer_chain = orderer_ledger.channel(CHANNEL).expect("the orderer's ledger has the channel");
    assert_eq!(orderer_chain.height(), final_height);
    let mut numbers = vec![0, 1, down_from, (down_from + caught_up_at) / 2, caught_up_at - 1, final_height - 1];
    numbers.sort_unstable();
    numbers.dedup();
    for number in numbers {
        let expected = orderer_chain.block(number).unwrap().expect("the orderer has the block");
        for peer in &network.peers {
            assert_eq!(peer.fetch(number), expected, "block {number} on {} is the orderer's", peer.name);
        }
    }

    // The ledger metrics of the channel: the height, and one observed commit per block the
    // peer committed since its (last) start, the genesis block at join included (Fabric commits it
    // through the same path); the follower committed at least the missed blocks.
    for (i, peer) in network.peers.iter().enumerate() {
        let metrics = peer.metrics().expect("the operations server answers");
        assert_eq!(sample(&metrics, "ledger_blockchain_height"), Some(final_height), "{}:\n{metrics}", peer.name);
        let commits = sample(&metrics, "ledger_block_processing_time_count")
            .unwrap_or_else(|| panic!("{}: no commit count in\n{metrics}", peer.name));
        if i == FOLLOWER {
            assert!(commits >= final_height - down_from, "{}: {commits} commits since its restart", peer.name);
        } else {
            assert_eq!(commits, final_height, "{}: one commit per block, the genesis block included", peer.name);
        }
    }
}
