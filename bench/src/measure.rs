//! The process-level measurements: each spawns real binaries on 127.0.0.1 and returns samples.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc::{Proc, clean_command, fresh_dir, http_get, metric};
use peer_core::testkit::{Ports, free_port, operations_tls_dir_vars, tls_dir_vars};

/// What is being measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `peer-core`, this repository's peer.
    Ours,
    /// `peer-core` with mutual TLS on the peer port and the operations server ([`Subject::tls`]).
    OursTls,
    /// Fabric's `peer`, when given.
    Fabric,
    /// `bench-floor`: binds the same ports and prints the line, nothing else.
    Floor,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ours => "peer-core",
            Kind::OursTls => "peer-core (TLS)",
            Kind::Fabric => "fabric peer",
            Kind::Floor => "floor",
        }
    }
}

/// A binary under measurement and the config directory it starts with.
#[derive(Clone, Debug)]
pub struct Subject {
    pub kind: Kind,
    pub bin: PathBuf,
    /// FABRIC_CFG_PATH: a directory holding core.yaml and msp/.
    pub cfg: PathBuf,
    /// Settings on top of the measured defaults.
    pub env: Vec<(String, String)>,
}

impl Subject {
    pub fn new(kind: Kind, bin: &Path, cfg: &Path) -> Subject {
        Subject { kind, bin: bin.to_path_buf(), cfg: cfg.to_path_buf(), env: Vec::new() }
    }

    /// peer-core on `sample` (our sampleconfig, whose `tls/` holds a server pair and its CA) with
    /// TLS as a production peer runs it: the peer port and the operations server serve TLS and
    /// require client certificates.
    pub fn tls(bin: &Path, sample: &Path) -> Subject {
        let tls = sample.join("tls");
        let env = [tls_dir_vars(&tls, true), operations_tls_dir_vars(&tls, true)].concat();
        Subject { env, ..Subject::new(Kind::OursTls, bin, sample) }
    }
}

/// Samples of one quantity; min/median/max.
#[derive(Clone, Debug, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    pub fn median(&self) -> f64 {
        let values = self.sorted();
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }
}

/// The env that points a config directory at free ports and a data directory.
fn peer_env(subject: &Subject, ports: Ports, data: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("FABRIC_CFG_PATH".into(), subject.cfg.display().to_string()),
        ("CORE_PEER_LISTENADDRESS".into(), format!("127.0.0.1:{}", ports.peer)),
        ("CORE_PEER_ADDRESS".into(), format!("127.0.0.1:{}", ports.peer)),
        ("CORE_PEER_CHAINCODELISTENADDRESS".into(), format!("127.0.0.1:{}", ports.chaincode)),
        ("CORE_PEER_CHAINCODEADDRESS".into(), format!("127.0.0.1:{}", ports.chaincode)),
        ("CORE_OPERATIONS_LISTENADDRESS".into(), format!("127.0.0.1:{}", ports.operations)),
        ("CORE_PEER_FILESYSTEMPATH".into(), data.display().to_string()),
        // The sample's bootstrap peer is 127.0.0.1:7051: point it at ourselves (skipped), so no
        // run dials a port another run may hold.
        ("CORE_PEER_GOSSIP_BOOTSTRAP".into(), format!("127.0.0.1:{}", ports.peer)),
    ];
    env.extend(subject.env.iter().cloned());
    env
}

const STARTED: &str = "Started peer with ID=";
const LIMIT: Duration = Duration::from_secs(60);

/// `node start` of `subject` with `env` in `dir`.
fn spawn_peer(subject: &Subject, dir: &Path, env: &[(String, String)]) -> Result<Proc> {
    let mut command = clean_command(&subject.bin, dir);
    if subject.kind != Kind::Floor {
        command.args(["node", "start"]);
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Proc::spawn(subject.kind.label(), command, Stdio::null())
}

/// One start: spawn → `Started peer with ID=` (ms), peak RSS at that moment (MB), SIGTERM → exit (ms).
#[derive(Clone, Copy, Debug)]
pub struct StartRun {
    pub start_ms: f64,
    pub rss_mb: f64,
    pub stop_ms: f64,
}

/// Starts `subject` on `data` (fresh or existing, as the caller prepared it) and stops it.
pub fn start_once(subject: &Subject, dir: &Path, data: &Path, extra_env: &[(String, String)]) -> Result<StartRun> {
    crate::proc::retry_taken_port(|| {
        let mut env = peer_env(subject, Ports::free(), data);
        env.extend(extra_env.iter().cloned());
        let mut peer = spawn_peer(subject, dir, &env)?;
        let started = peer.wait_line(STARTED, LIMIT)?;
        let rss_mb = peer.peak_rss_mb()?;
        let start_ms = ms(started - peer.spawned());
        let stop_ms = ms(peer.terminate(Duration::from_secs(30))?);
        Ok(StartRun { start_ms, rss_mb, stop_ms })
    })
}

/// `<bin> version`: the wall time from spawn to exit (ms).
pub fn version_once(subject: &Subject, dir: &Path) -> Result<f64> {
    let mut command = clean_command(&subject.bin, dir);
    command.arg("version").env("FABRIC_CFG_PATH", &subject.cfg);
    let mut proc = Proc::spawn(subject.kind.label(), command, Stdio::null())?;
    let (code, took) = proc.wait_exit(LIMIT)?;
    if code != 0 {
        proc.pump(Duration::from_millis(100));
        bail!("{} version exited {code}: {}", subject.kind.label(), proc.tail(10));
    }
    Ok(ms(took))
}

/// CPU seconds each subject uses while idle over `window`, all running side by side (started,
/// then one second to settle, then the window).
pub fn idle_cpu(subjects: &[Subject], work: &Path, window: Duration) -> Result<Vec<(Kind, f64)>> {
    let mut running = Vec::new();
    for subject in subjects {
        let dir = fresh_dir(work, &format!("idle-{:?}", subject.kind))?;
        let env = peer_env(subject, Ports::free(), &dir.join("data"));
        let mut peer = spawn_peer(subject, &dir, &env)?;
        peer.wait_line(STARTED, LIMIT)?;
        running.push((subject.kind, peer));
    }
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<f64> = running.iter().map(|(_, p)| p.cpu_seconds()).collect::<Result<_>>()?;
    let until = Instant::now() + window;
    while Instant::now() < until {
        for (_, peer) in &mut running {
            peer.pump(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut used = Vec::new();
    for ((kind, peer), before) in running.iter_mut().zip(before) {
        used.push((*kind, peer.cpu_seconds()? - before));
        peer.terminate(Duration::from_secs(30))?;
    }
    Ok(used)
}

/// The generated org for the membership runs (one org, `peers` peers), written once.
pub fn membership_crypto(work: &Path, peers: usize) -> Result<PathBuf> {
    use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
    let root = work.join(format!("crypto-{peers}"));
    if !root.exists() {
        let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers };
        let org = generate::generate_org(&spec, &mut generate::org_rng(7, &spec), ValidityWindow::fixed()).map_err(anyhow::Error::msg)?;
        org.write_to(&root).map_err(|e| anyhow::anyhow!("writing the generated org: {e}"))?;
    }
    Ok(root)
}

/// The line a peer logs per member it learns alive (Fabric at debug in gossip.discovery, us at info).
const LEARNED: &str = "Learned about a new alive member";

/// `n` peers of one org bootstrapping from peer0: the first `n - 1` are started and left to learn
/// each other, then the last is spawned; the time from that spawn until every peer has learned
/// every other (ms).
pub fn membership_once(subject: &Subject, work: &Path, crypto: &Path, n: usize) -> Result<f64> {
    let ports = Ports::free_many(n);
    let bootstrap = format!("127.0.0.1:{}", ports[0].peer);
    let mut peers: Vec<Proc> = Vec::new();
    let spawn = |i: usize| -> Result<Proc> {
        let dir = fresh_dir(work, &format!("member-{:?}-{i}", subject.kind))?;
        let mut env = peer_env(subject, ports[i], &dir.join("data"));
        let msp = crypto.join(format!("peerOrganizations/org1.example.com/peers/peer{i}.org1.example.com/msp"));
        env.retain(|(k, _)| k != "CORE_PEER_GOSSIP_BOOTSTRAP");
        env.extend([
            ("CORE_PEER_ID".into(), format!("peer{i}.org1.example.com")),
            ("CORE_PEER_MSPCONFIGPATH".into(), msp.display().to_string()),
            ("CORE_PEER_LOCALMSPID".into(), "Org1MSP".into()),
            ("CORE_PEER_GOSSIP_BOOTSTRAP".into(), bootstrap.clone()),
            ("CORE_PEER_GOSSIP_EXTERNALENDPOINT".into(), format!("127.0.0.1:{}", ports[i].peer)),
            ("FABRIC_LOGGING_SPEC".into(), "info:gossip.discovery=debug".into()),
        ]);
        let mut peer = spawn_peer(subject, &dir, &env)?;
        peer.name = format!("{} peer{i}", subject.kind.label());
        Ok(peer)
    };
    for i in 0..n - 1 {
        let mut peer = spawn(i)?;
        peer.wait_line(STARTED, LIMIT)?;
        peers.push(peer);
    }
    wait_all(&mut peers, n - 2)?;
    let last = spawn(n - 1)?;
    let t0 = last.spawned();
    peers.push(last);
    let done = wait_all(&mut peers, n - 1)?;
    for peer in &mut peers {
        peer.terminate(Duration::from_secs(30))?;
    }
    Ok(ms(done - t0))
}

/// Waits until every peer has logged `count` learned members; the moment the last did.
fn wait_all(peers: &mut [Proc], count: usize) -> Result<Instant> {
    let deadline = Instant::now() + LIMIT;
    loop {
        for peer in peers.iter_mut() {
            peer.pump(Duration::from_millis(1));
        }
        if peers.iter().all(|p| p.count(LEARNED) >= count) {
            let last = peers
                .iter()
                .filter_map(|p| p.seen.iter().filter(|(_, l)| l.contains(LEARNED)).nth(count.saturating_sub(1)).map(|(at, _)| *at))
                .max();
            return Ok(last.unwrap_or_else(Instant::now));
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = peers.iter().map(|p| format!("== {} ({} learned)\n{}", p.name, p.count(LEARNED), p.tail(15))).collect();
            bail!("membership of {} peers not full within {LIMIT:?}:\n{}", peers.len(), logs.join("\n"));
        }
    }
}

/// The ledger runs: a channel of `height` blocks cut by `sim orderer`, pulled by a fresh peer.
pub struct LedgerSetup {
    pub work: PathBuf,
    pub sim: PathBuf,
    pub height: u64,
    /// How long the orderer took to cut the chain (s).
    pub fill_seconds: f64,
    pub orderer_data: PathBuf,
    /// The orderer's address, fixed for the chain (its genesis block names it).
    pub orderer_address: String,
}

/// `sim orderer` with `args` on `address` (which the genesis block names, so every start of one
/// chain uses the same), its stdout in a file; waits for `listening on`.
fn spawn_orderer(setup_work: &Path, sim: &Path, data: &Path, address: &str, extra: &[&str]) -> Result<(Proc, PathBuf)> {
    let stdout_path = setup_work.join("orderer.out");
    let stdout = std::fs::File::create(&stdout_path)?;
    let mut command = clean_command(sim, setup_work);
    command.args(["orderer", "--channel", "mychannel", "--orgs", "org1", "--listen", address]).arg("--data").arg(data);
    command.arg("--genesis-out").arg(setup_work.join("mychannel.block")).arg("--crypto-out").arg(setup_work.join("crypto"));
    command.args(extra);
    let proc = Proc::spawn("sim orderer", command, Stdio::from(stdout))?;
    wait_file_line(&stdout_path, "listening on", LIMIT)?;
    Ok((proc, stdout_path))
}

fn wait_file_line(path: &Path, needle: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !std::fs::read_to_string(path).is_ok_and(|text| text.contains(needle)) {
        if Instant::now() > deadline {
            bail!("no {needle:?} in {} within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

impl LedgerSetup {
    /// Cuts the chain (10 synthetic transactions per block) into the orderer's data directory.
    pub fn fill(work: &Path, sim: &Path, height: u64) -> Result<LedgerSetup> {
        let work = fresh_dir(work, "ledger")?;
        let orderer_data = work.join("orderer");
        let started = Instant::now();
        let max = height.to_string();
        let orderer_address = format!("127.0.0.1:{}", free_port());
        let (mut orderer, stdout) = spawn_orderer(
            &work,
            sim,
            &orderer_data,
            &orderer_address,
            &["--tx-per-second", "100000", "--batch-timeout", "10ms", "--max-message-count", "10", "--max-height", &max],
        )?;
        wait_file_line(&stdout, "reached height", Duration::from_secs(1800))?;
        let fill_seconds = started.elapsed().as_secs_f64();
        orderer.terminate(Duration::from_secs(30))?;
        Ok(LedgerSetup { work, sim: sim.to_path_buf(), height, fill_seconds, orderer_data, orderer_address })
    }

    /// The env of org1's peer0 (the generated identity), a static leader, on `data`.
    fn peer_env(&self, subject: &Subject, ports: Ports, data: &Path) -> Vec<(String, String)> {
        let org = self.work.join("crypto/peerOrganizations/org1.example.com");
        let mut env = peer_env(subject, ports, data);
        env.extend([
            ("CORE_PEER_ID".into(), "peer0.org1.example.com".into()),
            ("CORE_PEER_MSPCONFIGPATH".into(), org.join("peers/peer0.org1.example.com/msp").display().to_string()),
            ("CORE_PEER_LOCALMSPID".into(), "Org1MSP".into()),
            ("CORE_PEER_GOSSIP_USELEADERELECTION".into(), "false".into()),
            ("CORE_PEER_GOSSIP_ORGLEADER".into(), "true".into()),
        ]);
        env
    }

    /// A fresh peer joins the channel while the orderer serves the filled chain; the time from
    /// the join until the peer's ledger is as high as the orderer's (s), and the peer's peak RSS.
    /// The peer's data directory is left at `data`.
    pub fn sync_once(&self, subject: &Subject, data: &Path) -> Result<(f64, f64)> {
        let (mut orderer, _) = spawn_orderer(&self.work, &self.sim, &self.orderer_data, &self.orderer_address, &["--tx-per-second", "0"])?;
        let ports = Ports::free();
        let env = self.peer_env(subject, ports, data);
        let mut peer = spawn_peer(subject, &self.work, &env)?;
        peer.wait_line(STARTED, LIMIT)?;
        let admin = self.work.join("crypto/peerOrganizations/org1.example.com/users/Admin@org1.example.com/msp");
        let joined = Instant::now();
        let output = clean_command(&subject.bin, &self.work)
            .args(["channel", "join", "-b"])
            .arg(self.work.join("mychannel.block"))
            .env("FABRIC_CFG_PATH", &subject.cfg)
            .env("CORE_PEER_LOCALMSPID", "Org1MSP")
            .env("CORE_PEER_MSPCONFIGPATH", &admin)
            .env("CORE_PEER_ADDRESS", format!("127.0.0.1:{}", ports.peer))
            .output()
            .context("running channel join")?;
        if !output.status.success() {
            bail!("channel join failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        // Fails when the height stops moving for a minute (not on a total time).
        let (mut last, mut moved) = (0.0, Instant::now());
        loop {
            let height = http_get(ports.operations, "/metrics").and_then(|text| metric(&text, "ledger_blockchain_height")).unwrap_or(0.0);
            if height >= self.height as f64 {
                break;
            }
            if height > last {
                (last, moved) = (height, Instant::now());
            } else if moved.elapsed() > LIMIT {
                bail!("the peer's height stayed at {height} of {} for {LIMIT:?}; stderr:\n{}", self.height, peer.tail(30));
            }
            peer.pump(Duration::from_millis(5));
        }
        let seconds = joined.elapsed().as_secs_f64();
        let rss = peer.peak_rss_mb()?;
        peer.terminate(Duration::from_secs(30))?;
        orderer.terminate(Duration::from_secs(30))?;
        Ok((seconds, rss))
    }

    /// The peer's env on an existing data directory holding the channel.
    pub fn existing_env(&self, subject: &Subject, data: &Path) -> Vec<(String, String)> {
        let mut env = self.peer_env(subject, Ports::free(), data);
        // Ports come from start_once; keep only the identity and leadership settings.
        env.retain(|(k, _)| {
            !k.ends_with("ADDRESS") && k != "CORE_PEER_GOSSIP_BOOTSTRAP" && k != "FABRIC_CFG_PATH" && k != "CORE_PEER_FILESYSTEMPATH"
        });
        env
    }

    /// The blocks of the filled chain as stored bytes (from a synced peer's ledger).
    pub fn blocks(&self, data: &Path) -> Result<Vec<Vec<u8>>> {
        use prost::Message as _;
        let env = peer_core::env::real::env().context("the real env")?;
        let ledgers = peer_core::ledger::LedgerMgr::open(&env, data, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
        let channel = ledgers.channel("mychannel").context("the synced peer has no mychannel")?;
        (1..channel.height())
            .map(|n| Ok(channel.block(n).map_err(|e| anyhow::anyhow!("{e}"))?.context("missing block")?.encode_to_vec()))
            .collect()
    }
}

/// The floor for ledger writes: the same block bytes appended to a redb table, one write
/// transaction with immediate durability per block, as the peer's ledger commits them (blocks/s).
pub fn redb_floor(work: &Path, blocks: &[Vec<u8>]) -> Result<f64> {
    use redb::{Database, Durability, TableDefinition};
    const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
    let dir = fresh_dir(work, "redb-floor")?;
    let db = Database::create(dir.join("floor.redb"))?;
    let started = Instant::now();
    for (n, block) in blocks.iter().enumerate() {
        let mut write = db.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        {
            let mut table = write.open_table(BLOCKS)?;
            table.insert(n as u64 + 1, block.as_slice())?;
        }
        write.commit()?;
    }
    Ok(blocks.len() as f64 / started.elapsed().as_secs_f64())
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::Samples;

    #[test]
    fn min_median_max_of_odd_and_even_counts() {
        let odd = Samples(vec![5.0, 1.0, 3.0]);
        assert_eq!((odd.min(), odd.median(), odd.max()), (1.0, 3.0, 5.0));
        let even = Samples(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(even.median(), 2.5);
        assert!(Samples::default().median().is_nan());
    }
}
