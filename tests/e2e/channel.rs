//! `peer-core channel join|list|getinfo|fetch` against a running `peer-core node start`, as an
//! operator runs Fabric's `peer channel …`: the admin identity from CORE_PEER_MSPCONFIGPATH,
//! the peer at CORE_PEER_ADDRESS, Fabric's outputs, errors and exit codes; then blocks appended
//! offline (signed by the channel's orderer org) and seen after a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use peer_core::channel::sign_block;
use peer_core::channels::Channels;
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::testkit::{local_msp, org};
use prost::Message;
use proto::common::HeaderType;
use rand_core::SeedableRng;

use crate::peer::{Peer, Ports, data_dir, sample_env, strip_colors};
use crate::support::{Run, peer_core};

pub(crate) const STARTUP: Duration = Duration::from_secs(30);

/// Org1's crypto on disk (what `msp generate --seed 7` writes) and the genesis block of
/// `mychannel` (what `channel create-genesis` writes from the orgs' folders).
pub(crate) struct Setup {
    pub(crate) org1_root: PathBuf,
    pub(crate) block: PathBuf,
}

pub(crate) fn setup(tmp: &Path) -> Setup {
    let org1_root = org("Org1MSP", "org1.example.com").write_to(&tmp.join("crypto")).unwrap();
    // The orderer org that signs the blocks appended below (`append_blocks`).
    org("OrdererMSP", "example.com").write_to(&tmp.join("crypto")).unwrap();
    let block = tmp.join("mychannel.block");
    let run = create_genesis(tmp, "mychannel", &block);
    assert_eq!(run.code, 0, "{}", run.stderr);
    Setup { org1_root, block }
}

/// `channel create-genesis` for Org1 with its anchor peer, ordered by the org `example.com`.
fn create_genesis(tmp: &Path, channel: &str, block: &Path) -> Run {
    let crypto = tmp.join("crypto/peerOrganizations");
    let orderer_org = format!("OrdererMSP={}", crypto.join("example.com/msp").display());
    let org1 = format!("Org1MSP={}", crypto.join("org1.example.com").display());
    let args = ["channel", "create-genesis", "-c", channel, "--orderer-org", &orderer_org, "--orderer", "orderer.example.com:7050"];
    let args =
        [&args[..], &["--org", &org1, "--anchor-peer", "Org1MSP=peer0.org1.example.com:7051", "--outputBlock", block.to_str().unwrap()]]
            .concat();
    peer_core(tmp, &[], &args)
}

fn peer_env(setup: &Setup, ports: Ports, data: &Path) -> Vec<(String, String)> {
    let mut env = sample_env(ports, data);
    env.push(("CORE_PEER_LOCALMSPID".into(), "Org1MSP".into()));
    env.push(("CORE_PEER_MSPCONFIGPATH".into(), setup.org1_root.join("peers/peer0.org1.example.com/msp").display().to_string()));
    env
}

pub(crate) fn start(tmp: &Path, setup: &Setup, ports: Ports) -> Peer {
    let mut peer = Peer::spawn(tmp, &peer_env(setup, ports, &data_dir(tmp)), ports);
    peer.wait_for("Started peer with ID=", STARTUP);
    peer
}

/// `peer-core channel <args>` as Org1's admin against the peer on `ports`.
pub(crate) fn channel(tmp: &Path, setup: &Setup, ports: Ports, args: &[&str]) -> Run {
    let mut env = peer_env(setup, ports, &data_dir(tmp));
    let admin = setup.org1_root.join("users/Admin@org1.example.com/msp").display().to_string();
    env.retain(|(name, _)| name != "CORE_PEER_MSPCONFIGPATH");
    env.push(("CORE_PEER_MSPCONFIGPATH".into(), admin));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut run = peer_core(tmp, &env, &[&["channel"], args].concat());
    run.stderr = run.stderr.lines().map(strip_colors).collect::<Vec<_>>().join("\n");
    run
}

pub(crate) fn assert_ok(run: &Run) {
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
}

fn assert_error(run: &Run, message: &str) {
    assert_eq!(run.code, 1, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(&format!("Error: {message}")), "{message:?} missing from:\n{}", run.stderr);
}

/// Appends `count` blocks to `mychannel` offline, each signed by the orderer org, through the
/// same layer the peer uses (`Channels::append` verifies the signatures).
fn append_blocks(tmp: &Path, count: u64) {
    let env = peer_core::env::real::env().unwrap();
    let orderer = org("OrdererMSP", "example.com");
    let orderer_signer = local_msp(&orderer.peers[0], "OrdererMSP");
    let ledger = LedgerMgr::open(&env, &data_dir(tmp), "e2e append").unwrap();
    let channels = Channels::open(ledger).unwrap();
    let chain = channels.ledger("mychannel").unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    for _ in 0..count {
        let height = chain.height();
        let tip = chain.block(height - 1).unwrap().unwrap();
        let tx = envelope(HeaderType::EndorserTransaction, "mychannel", &format!("tx-{height}"), b"tx");
        let mut block = new_block(height, &header_hash(tip.header.as_ref().unwrap()), vec![tx]);
        sign_block(&mut block, &orderer_signer, 0, &mut rng);
        channels.append("mychannel", &block).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn join_list_getinfo_then_restart_with_blocks_appended_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let setup = setup(tmp);
    let ports = Ports::free();
    let mut peer = start(tmp, &setup, ports);
    let block = setup.block.to_str().unwrap();

    let run = channel(tmp, &setup, ports, &["join", "-b", block]);
    assert_ok(&run);
    assert!(run.stderr.contains("[channelCmd] InitCmdFactory -> INFO 001 Endorser and orderer connections initialized"), "{}", run.stderr);
    assert!(run.stderr.contains("[channelCmd] executeJoin -> INFO 002 Successfully submitted proposal to join channel"), "{}", run.stderr);

    let run = channel(tmp, &setup, ports, &["list"]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Channels peers has joined: \nmychannel\n");

    let run = channel(tmp, &setup, ports, &["getinfo", "-c", "mychannel"]);
    assert_ok(&run);
    assert!(run.stdout.starts_with("Blockchain info: {\"height\":1,\"currentBlockHash\":\""), "{}", run.stdout);
    assert!(!run.stdout.contains("previousBlockHash"), "omitempty: {}", run.stdout);

    // Fabric's errors, exit 1.
    assert_error(
        &channel(tmp, &setup, ports, &["join", "-b", block]),
        "proposal failed (err: bad proposal response 500: cannot create ledger from genesis block: LedgerID already exists)",
    );
    assert_error(
        &channel(tmp, &setup, ports, &["getinfo", "-c", "nochannel"]),
        "received bad response, status 500: Invalid chain ID, nochannel",
    );
    let missing = tmp.join("missing.block");
    assert_error(
        &channel(tmp, &setup, ports, &["join", "-b", missing.to_str().unwrap()]),
        &format!("genesis block file not found open {}: no such file or directory", missing.display()),
    );
    let run = channel(tmp, &setup, ports, &["getinfo"]);
    assert_error(&run, "Must supply channel ID");
    assert!(run.stderr.contains("Usage: peer-core channel getinfo"), "{}", run.stderr);
    assert_error(&channel(tmp, &setup, ports, &["join"]), "Must supply genesis block path");
    assert_error(&channel(tmp, &setup, ports, &["list", "extra"]), "trailing args detected: [extra]");

    // A non-admin (the peer's own identity) cannot join.
    let other = tmp.join("other.block");
    let run = create_genesis(tmp, "other", &other);
    assert_ok(&run);
    let env = peer_env(&setup, ports, &data_dir(tmp));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = peer_core(tmp, &env, &["channel", "join", "-b", other.to_str().unwrap()]);
    assert_error(
        &run,
        "proposal failed (err: bad proposal response 500: access denied for [JoinChain][other]: [Failed verifying that proposal's creator satisfies local MSP principal during channelless check policy with policy [Admins]",
    );

    // Stop, append three orderer-signed blocks offline, restart: the data reopens.
    assert_eq!(peer.signal_and_wait("TERM", STARTUP).0, 0);
    append_blocks(tmp, 3);
    let mut peer = start(tmp, &setup, ports);
    let run = channel(tmp, &setup, ports, &["getinfo", "-c", "mychannel"]);
    assert_ok(&run);
    assert!(run.stdout.starts_with("Blockchain info: {\"height\":4,\"currentBlockHash\":\""), "{}", run.stdout);
    assert!(run.stdout.contains("\"previousBlockHash\":\""), "{}", run.stdout);
    assert_eq!(channel(tmp, &setup, ports, &["list"]).stdout, "Channels peers has joined: \nmychannel\n");
    // fetch shows the appended blocks too.
    let run = channel(tmp, &setup, ports, &["fetch", "newest", "-c", "mychannel"]);
    assert_ok(&run);
    assert!(run.stderr.contains("Received block: 3"), "{}", run.stderr);
    let newest = proto::common::Block::decode(std::fs::read(tmp.join("mychannel_newest.block")).unwrap().as_slice()).unwrap();
    assert_eq!(newest.header.unwrap().number, 3);
    assert_eq!(peer.signal_and_wait("TERM", STARTUP).0, 0);
}

#[test]
fn a_peer_that_is_not_running_gives_fabrics_connection_error() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = setup(tmp.path());
    let ports = Ports::free();
    let run = channel(tmp.path(), &setup, ports, &["list"]);
    assert_error(
        &run,
        &format!(
            "error getting endorser client for channel: endorser client failed to connect to 127.0.0.1:{}: failed to create new connection: context deadline exceeded",
            ports.peer
        ),
    );
}

#[test]
fn fetch_writes_the_block_fabric_names() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let setup = setup(tmp);
    let ports = Ports::free();
    let mut peer = start(tmp, &setup, ports);
    assert_ok(&channel(tmp, &setup, ports, &["join", "-b", setup.block.to_str().unwrap()]));
    for (target, file) in [
        ("oldest", "mychannel_oldest.block"),
        ("newest", "mychannel_newest.block"),
        ("config", "mychannel_config.block"),
        ("0", "mychannel_0.block"),
    ] {
        let run = channel(tmp, &setup, ports, &["fetch", target, "-c", "mychannel"]);
        assert_ok(&run);
        assert!(run.stderr.contains("Received block: 0"), "{}", run.stderr);
        assert_eq!(std::fs::read(tmp.join(file)).unwrap(), std::fs::read(&setup.block).unwrap(), "{target}");
    }
    // A block beyond the height: the peer answers NOT_FOUND at once (Fabric's deliver does the
    // same for a specified start above the height, even when asked to wait).
    let run = channel(tmp, &setup, ports, &["fetch", "5", "-c", "mychannel", "--bestEffort"]);
    assert!(run.stderr.contains("Expect block, but got status: &{NOT_FOUND}"), "{}", run.stderr);
    // Fabric's text, then the channel, the block and the peer (Fabric names none of them).
    assert_error(
        &run,
        &format!(
            "can't read the block: &{{NOT_FOUND}}: peer 127.0.0.1:{} has not joined channel 'mychannel', or has no block 5 in it",
            ports.peer
        ),
    );
    assert!(!tmp.join("mychannel_5.block").exists());
    assert_error(&channel(tmp, &setup, ports, &["fetch", "nope", "-c", "mychannel"]), "fetch target illegal: nope");
    assert_eq!(peer.signal_and_wait("TERM", STARTUP).0, 0);
}

/// A TLS client at a plaintext peer port: the client fails at once with the handshake's error
/// (no retrying until the deadline), and the peer says which remote spoke TLS to it and why it
/// was closed; the peer keeps serving plaintext clients.
#[test]
fn a_tls_client_at_a_plaintext_port_is_told_why_and_the_peer_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let setup = setup(tmp);
    let ports = Ports::free();
    let mut peer = start(tmp, &setup, ports);
    let ca = setup.org1_root.join("tlsca/tlsca.org1.example.com-cert.pem");
    let mut admin = peer_env(&setup, ports, &data_dir(tmp));
    admin.retain(|(name, _)| name != "CORE_PEER_MSPCONFIGPATH");
    admin.push(("CORE_PEER_MSPCONFIGPATH".into(), setup.org1_root.join("users/Admin@org1.example.com/msp").display().to_string()));
    admin.push(("CORE_PEER_TLS_ENABLED".into(), "true".into()));
    admin.push(("CORE_PEER_TLS_ROOTCERT_FILE".into(), ca.display().to_string()));
    let env: Vec<(&str, &str)> = admin.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let run = peer_core(tmp, &env, &["channel", "list"]);
    let stderr = run.stderr.lines().map(strip_colors).collect::<Vec<_>>().join("\n");
    assert_eq!(run.code, 1, "{stderr}");
    let expected = format!(
        "Error: error getting endorser client for channel: endorser client failed to connect to 127.0.0.1:{}: failed to create new \
         connection: TLS handshake failed: received corrupt message of type InvalidContentType",
        ports.peer
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.matches("Client TLS handshake failed").count(), 1, "one attempt, not retries until the deadline:\n{stderr}");
    let line = peer.wait_for("began a TLS handshake", STARTUP);
    assert!(line.contains("[comm.grpc.server] handleRawConn -> WARN") && line.contains("127.0.0.1:"), "{line}");
    assert!(line.contains("this port serves plaintext gRPC (peer.tls.enabled is false)"), "{line}");
    assert_ok(&channel(tmp, &setup, ports, &["list"]));
}

/// A peer serving the TLS pair Fabric's cryptogen made for peer0.org1.example.com
/// (`peer-core/tests/data/cryptogen`), whose certificate names the host only: the `channel`
/// commands dialing 127.0.0.1 are refused by the name check, at once and saying so; with
/// `CORE_PEER_TLS_SERVERHOSTOVERRIDE` naming the host (Fabric's CLI setting) they verify it.
#[test]
fn a_cryptogen_certificate_needs_the_host_name_or_serverhostoverride() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let org1 = crate::support::repo_root().join("peer-core/tests/data/cryptogen/peerOrganizations/org1.example.com");
    let peer0 = org1.join("peers/peer0.org1.example.com");
    let ports = Ports::free();
    let mut env = sample_env(ports, &data_dir(tmp));
    let path = |p: PathBuf| p.display().to_string();
    env.extend([
        ("CORE_PEER_LOCALMSPID".to_string(), "Org1MSP".to_string()),
        ("CORE_PEER_MSPCONFIGPATH".into(), path(peer0.join("msp"))),
        ("CORE_PEER_TLS_ENABLED".into(), "true".into()),
        ("CORE_PEER_TLS_CERT_FILE".into(), path(peer0.join("tls/server.crt"))),
        ("CORE_PEER_TLS_KEY_FILE".into(), path(peer0.join("tls/server.key"))),
        ("CORE_PEER_TLS_ROOTCERT_FILE".into(), path(peer0.join("tls/ca.crt"))),
    ]);
    let mut peer = Peer::spawn(tmp, &env, ports);
    peer.wait_for("Started peer with ID=", STARTUP);
    env.retain(|(name, _)| name != "CORE_PEER_MSPCONFIGPATH");
    env.push(("CORE_PEER_MSPCONFIGPATH".into(), path(org1.join("users/Admin@org1.example.com/msp"))));
    let list = |extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(extra.iter().copied()).collect();
        let mut run = peer_core(tmp, &env, &["channel", "list"]);
        run.stderr = run.stderr.lines().map(strip_colors).collect::<Vec<_>>().join("\n");
        run
    };
    let refused = list(&[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(
            "failed to create new connection: TLS handshake failed: invalid peer certificate: certificate not valid for name \"127.0.0.1\""
        ),
        "{}",
        refused.stderr
    );
    let line = peer.wait_for("Server TLS handshake failed", STARTUP);
    assert!(line.contains("[core.comm] ServerHandshake -> ERRO") && line.contains("server=PeerServer remoteaddress=127.0.0.1:"), "{line}");
    let run = list(&[("CORE_PEER_TLS_SERVERHOSTOVERRIDE", "peer0.org1.example.com")]);
    assert_ok(&run);
    assert_eq!(run.stdout, "Channels peers has joined: \n");
}
