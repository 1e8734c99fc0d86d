//! A network of real processes on 127.0.0.1 for the process tests: `sim orderer` cutting blocks
//! and three `peer-core node start` peers (org1 peer0 and org2 peer0 static leaders pulling from
//! the orderer, org1 peer1 a follower fed by gossip), plaintext or with mutual TLS everywhere
//! (peer port, gossip, deliver, operations, the orderer, the `channel` commands).
//!
//! It runs outside the simulation, on real time: waits poll with short sleeps and generous
//! deadlines and never assert on how long anything took. Each peer's stderr goes to `peer.log` in
//! its own directory; on a failure the last lines of every log are printed, and every child
//! process is killed whatever happens (the guards' `Drop`).

// Each test uses part of it.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use peer_core::net::tls::{KeyPair, PemFile, TlsContext, certificates};
use peer_core::testkit::{Ports, free_port, operations_tls_dir_vars, tls_dir_vars};
use prost::Message;
use proto::common::Block;

pub const CHANNEL: &str = "mychannel";
/// The longest any single wait may take before the test fails (normally a few seconds).
pub const DEADLINE: Duration = Duration::from_secs(60);
/// Lines of each log printed on a failure.
pub const LOG_TAIL: usize = 40;

// Real time: this drives real processes, outside any simulation.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[path = "binaries.rs"]
mod binaries;

pub fn peer_core_binary() -> &'static Path {
    binaries::peer_core()
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `DEADLINE`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `lines` lines of a log file (or why there are none).
pub fn tail(path: &Path, lines: usize) -> String {
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

/// How the network's processes talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    Plaintext,
    /// TLS with client certificates required everywhere: the peer port (gossip, deliver, the
    /// `channel` commands), the operations servers and the orderer.
    MutualTls,
}

/// The crypto folders `sim orderer` writes (cryptogen's layout).
fn crypto(root: &Path) -> PathBuf {
    root.join("crypto")
}

/// `sim orderer` as a child process.
pub struct Orderer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub address: String,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Orderer {
    /// Starts the orderer on a free port, which is also the endpoint the genesis block names (the
    /// peers' deliver clients dial it), and waits for its `listening on` line. With TLS it serves
    /// its generated `orderers/orderer.example.com/tls` pair and requires client certificates.
    /// `anchor_peers` (`MSPID=HOST:PORT`) go into the genesis block: the orgs meet through them.
    fn start(root: &Path, security: Security, anchor_peers: &[String]) -> Orderer {
        let address = format!("127.0.0.1:{}", free_port());
        let data = root.join("orderer");
        let log = root.join("orderer.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sim"));
        command
            .args(["orderer", "--channel", CHANNEL, "--orgs", "org1,org2", "--peers", "2"])
            // Four or five blocks a second (the batch timeout cuts them, two or three transactions each).
            .args(["--tx-per-second", "10", "--batch-timeout", "200ms", "--max-message-count", "10"])
            .args(["--listen", &address, "--endpoint", &address])
            .arg("--data")
            .arg(&data)
            .arg("--genesis-out")
            .arg(root.join("mychannel.block"))
            .arg("--crypto-out")
            .arg(crypto(root));
        for anchor in anchor_peers {
            command.args(["--anchor-peer", anchor]);
        }
        if security == Security::MutualTls {
            let tls = crypto(root).join("ordererOrganizations/example.com/orderers/orderer.example.com/tls");
            command.arg("--tls-cert").arg(tls.join("server.crt")).arg("--tls-key").arg(tls.join("server.key")).arg("--tls-client-auth");
        }
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file(&log, "sim orderer")).spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Owned by the guard before anything can fail, so a failure kills it.
        let mut orderer = Orderer { child, stdout, address: address.clone(), data, log };
        let mut line = String::new();
        orderer.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("listening on {address}"), "orderer log:\n{}", tail(&orderer.log, LOG_TAIL));
        orderer
    }

    /// SIGTERM; returns the chain's final height, which the orderer prints once it has stopped.
    pub fn terminate(&mut self) -> u64 {
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
pub struct PeerSpec {
    org: u8,
    index: u8,
    /// A static leader pulls from the orderer; the others get blocks by gossip.
    leader: bool,
}

pub const PEERS: [PeerSpec; 3] = [
    PeerSpec { org: 1, index: 0, leader: true },
    PeerSpec { org: 1, index: 1, leader: false },
    PeerSpec { org: 2, index: 0, leader: true },
];
pub const ORG1_PEER0: usize = 0;
pub const FOLLOWER: usize = 1;
pub const ORG2_PEER0: usize = 2;

/// A `peer-core node start` process (or its data while it is down).
pub struct Peer {
    pub name: String,
    domain: String,
    msp_id: String,
    org_root: PathBuf,
    /// Its own directory: `core.yaml`, `data/`, `peer.log`.
    pub dir: PathBuf,
    pub address: String,
    chaincode_port: u16,
    pub operations_port: u16,
    security: Security,
    child: Option<Child>,
}

/// A client's TLS files for an HTTPS request: the roots to trust, and a pair to present.
pub struct HttpsClient {
    pub root: PathBuf,
    pub pair: Option<(PathBuf, PathBuf)>,
}

impl Peer {
    fn new(root: &Path, spec: &PeerSpec, security: Security) -> Peer {
        let domain = format!("org{}.example.com", spec.org);
        let name = format!("peer{}.{domain}", spec.index);
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(repo_root().join("sampleconfig/core.yaml"), dir.join("core.yaml")).unwrap();
        let ports = Ports::free();
        Peer {
            msp_id: format!("Org{}MSP", spec.org),
            org_root: crypto(root).join("peerOrganizations").join(&domain),
            dir,
            address: format!("127.0.0.1:{}", ports.peer),
            chaincode_port: ports.chaincode,
            operations_port: ports.operations,
            security,
            child: None,
            name,
            domain,
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.join("peer.log")
    }

    /// This peer's `tls/` folder (server pair and `ca.crt`, the org's TLS CA).
    pub fn tls_dir(&self) -> PathBuf {
        self.org_root.join("peers").join(&self.name).join("tls")
    }

    /// The org admin's `tls/` folder (client pair).
    pub fn admin_tls_dir(&self) -> PathBuf {
        self.org_root.join("users").join(format!("Admin@{}", self.domain)).join("tls")
    }

    /// Starts `node start` on the sample config overridden for this peer: its ports, data, MSP,
    /// gossip bootstrap (its org's peer0; a peer0 names itself, which gossip skips, so the sample's
    /// 127.0.0.1:7051 is never dialled), static leadership, and short gossip periods so blocks and
    /// catch-up flow within a second or two. With mutual TLS: its server pair on the peer port and
    /// the operations server, client certificates required on both, under its org's TLS CA (the
    /// other orgs' come from the channel config once joined).
    pub fn start(&mut self, spec: &PeerSpec, bootstrap: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let msp = self.org_root.join("peers").join(&self.name).join("msp");
        let settings = vec![
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
        let mut settings: Vec<(String, String)> = settings.into_iter().map(|(name, value)| (name.to_string(), value)).collect();
        if self.security == Security::MutualTls {
            settings.extend(tls_dir_vars(&self.tls_dir(), true));
            settings.extend(operations_tls_dir_vars(&self.tls_dir(), true));
        }
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
    pub fn assert_running(&mut self) {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait().unwrap()
        {
            panic!("{} exited unexpectedly ({status})", self.name);
        }
    }

    /// SIGKILL: no shutdown path runs; the ledger keeps whatever was synced.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the peer is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `peer-core channel <args>` against this peer as its org's admin, with `env` on top (with
    /// mutual TLS: the admin's TLS client pair, trusting the org's TLS CA, as Fabric's CLI is set
    /// up with CORE_PEER_TLS_*). Returns the whole output, whatever the exit code.
    pub fn channel_output(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let admin = self.org_root.join("users").join(format!("Admin@{}", self.domain)).join("msp");
        let mut command = Command::new(peer_core_binary());
        command
            .arg("channel")
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("FABRIC_CFG_PATH", &self.dir)
            .env("CORE_PEER_LOCALMSPID", &self.msp_id)
            .env("CORE_PEER_MSPCONFIGPATH", &admin)
            .env("CORE_PEER_ADDRESS", &self.address);
        if self.security == Security::MutualTls {
            command
                .env("CORE_PEER_TLS_ENABLED", "true")
                .env("CORE_PEER_TLS_ROOTCERT_FILE", self.tls_dir().join("ca.crt"))
                .env("CORE_PEER_TLS_CLIENTAUTHREQUIRED", "true")
                .env("CORE_PEER_TLS_CLIENTCERT_FILE", self.admin_tls_dir().join("client.crt"))
                .env("CORE_PEER_TLS_CLIENTKEY_FILE", self.admin_tls_dir().join("client.key"));
        }
        command.envs(env.iter().copied()).output().unwrap()
    }

    /// [`Peer::channel_output`] without extra env; returns stdout, and fails with both outputs
    /// unless it exits 0.
    pub fn channel(&self, args: &[&str]) -> String {
        let output = self.channel_output(args, &[]);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "peer-core channel {args:?} against {} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}", self.name);
        stdout.into_owned()
    }

    /// The body of a 200 answer to `GET path` on the operations server, or why there is none
    /// (not answering, refused, another status). With mutual TLS it goes over HTTPS with the org
    /// admin's client pair.
    pub fn operations(&self, path: &str) -> Result<String, String> {
        let client = (self.security == Security::MutualTls).then(|| HttpsClient {
            root: self.tls_dir().join("ca.crt"),
            pair: Some((self.admin_tls_dir().join("client.crt"), self.admin_tls_dir().join("client.key"))),
        });
        http_get(self.operations_port, path, client.as_ref())
    }

    /// The operations server's `/metrics`, or `None` while it does not answer (stopped or starting).
    pub fn metrics(&self) -> Option<String> {
        self.operations("/metrics").ok()
    }

    /// The channel's height from `ledger_blockchain_height` (0 while unknown), a cheap poll.
    pub fn height(&self) -> u64 {
        self.metrics().and_then(|text| sample(&text, "ledger_blockchain_height")).unwrap_or(0)
    }

    /// The height of a peer that is running and has joined (a failure, not 0, otherwise).
    pub fn joined_height(&self) -> u64 {
        let metrics = self.metrics().unwrap_or_else(|| panic!("{}'s operations server does not answer", self.name));
        sample(&metrics, "ledger_blockchain_height").unwrap_or_else(|| panic!("{} reports no height for {CHANNEL}", self.name))
    }

    /// `channel getinfo`: (height, currentBlockHash).
    pub fn info(&self) -> (u64, String) {
        let stdout = self.channel(&["getinfo", "-c", CHANNEL]);
        let json = stdout.trim().strip_prefix("Blockchain info: ").unwrap_or_else(|| panic!("unexpected getinfo output {stdout:?}"));
        let info: serde_json::Value = serde_json::from_str(json).unwrap();
        (info["height"].as_u64().unwrap(), info["currentBlockHash"].as_str().unwrap().to_string())
    }

    /// `channel fetch <number>` with `extra` flags: the block as the peer's Deliver service (or
    /// with `-o`, the orderer's) sends it.
    pub fn fetch_with(&self, number: u64, extra: &[&str]) -> Block {
        let file = self.dir.join(format!("fetched_{number}.block"));
        let mut args =
            vec!["fetch", &number.to_string(), file.to_str().unwrap(), "-c", CHANNEL].into_iter().map(String::from).collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.channel(&args.iter().map(String::as_str).collect::<Vec<_>>());
        Block::decode(std::fs::read(&file).unwrap().as_slice()).unwrap()
    }

    /// `channel fetch <number>` from the peer.
    pub fn fetch(&self, number: u64) -> Block {
        self.fetch_with(number, &[])
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

/// `GET path` on 127.0.0.1:`port`, over HTTPS when `tls` is given: the body of a 200 answer, or
/// why there is none.
pub fn http_get(port: u16, path: &str, tls: Option<&HttpsClient>) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    match tls {
        None => {
            stream.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
            stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
        }
        Some(tls) => {
            let config = https_config(tls)?;
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
            let connection = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
            let mut stream = rustls::StreamOwned::new(connection, stream);
            stream.write_all(request.as_bytes()).map_err(|e| format!("TLS write: {e}"))?;
            // A server may close without close_notify once it has answered.
            if let Err(e) = stream.read_to_end(&mut response)
                && (e.kind() != std::io::ErrorKind::UnexpectedEof || response.is_empty())
            {
                return Err(format!("TLS read: {e}"));
            }
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {response:?}"))?;
    if head.starts_with("HTTP/1.1 200") { Ok(body.to_string()) } else { Err(head.lines().next().unwrap_or_default().to_string()) }
}

/// A rustls client configuration for HTTP/1.1 from PEM files, built as the peer builds its own.
fn https_config(tls: &HttpsClient) -> Result<Arc<rustls::ClientConfig>, String> {
    let read = |path: &Path, what| PemFile::read(path, what).map_err(|e| e.to_string());
    let roots = certificates(&read(&tls.root, "TLS root certificate")?).map_err(|e| e.to_string())?;
    let pair = match &tls.pair {
        Some((cert, key)) => Some(KeyPair::from_files(&read(cert, "TLS certificate")?, &read(key, "TLS key")?).map_err(|e| e.to_string())?),
        None => None,
    };
    let env = peer_core::env::real::env().map_err(|e| e.to_string())?;
    let context = TlsContext::new(&peer_core::net::tls::provider(&env), env.clock.clone());
    let (config, _) = context.client(&roots, pair.as_ref()).map_err(|e| e.to_string())?;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The value of `metric{channel="mychannel"}` in a Prometheus text exposition.
pub fn sample(text: &str, metric: &str) -> Option<u64> {
    let prefix = format!("{metric}{{channel=\"{CHANNEL}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.trim().parse::<f64>().ok()).map(|value| value as u64)
}

/// Everything the test started. Dropping it prints the tail of every log when the test is
/// failing, then kills every child still running (the orderer's and the peers' own `Drop`), then
/// removes the directory (fields drop in order: the directory goes last).
pub struct Network {
    pub orderer: Orderer,
    pub peers: Vec<Peer>,
    root: tempfile::TempDir,
}

impl Network {
    pub fn start(security: Security) -> Network {
        let root = tempfile::tempdir().unwrap();
        let peers: Vec<Peer> = PEERS.iter().map(|spec| Peer::new(root.path(), spec, security)).collect();
        // Each org's peer0 is its anchor peer.
        let anchors: Vec<String> = PEERS
            .iter()
            .zip(&peers)
            .filter(|(spec, _)| spec.index == 0)
            .map(|(_, peer)| format!("{}={}", peer.msp_id, peer.address))
            .collect();
        let orderer = Orderer::start(root.path(), security, &anchors);
        let mut network = Network { orderer, peers, root };
        for i in 0..PEERS.len() {
            network.start_peer(i);
        }
        network
    }

    pub fn start_peer(&mut self, i: usize) {
        let spec = &PEERS[i];
        let bootstrap = self.peers[PEERS.iter().position(|p| p.org == spec.org && p.index == 0).unwrap()].address.clone();
        self.peers[i].start(spec, &bootstrap);
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn genesis(&self) -> PathBuf {
        self.root.path().join("mychannel.block")
    }

    /// The orderer org's TLS CA certificate (what `--cafile` names).
    pub fn orderer_tls_ca(&self) -> PathBuf {
        crypto(self.root.path()).join("ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem")
    }

    pub fn heights(&self) -> Vec<u64> {
        self.peers.iter().map(Peer::height).collect()
    }

    /// Waits until each peer in `which` has at least `height` blocks.
    pub fn wait_for_height(&mut self, which: &[usize], height: u64, what: &str) {
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
