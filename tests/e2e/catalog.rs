//! The bad-input catalog, process half: every case file under `tests/catalog/{config,env,msp,
//! cli,genesis,peer}/` runs the real `peer-core` binary once; what it printed and its exit code are
//! compared with the case's insta snapshot in `tests/catalog/snapshots/`. The wire half
//! (gossip messages) runs in `peer-core/tests/it/catalog.rs`; the format is in
//! `tests/catalog/README.md`.
//!
//! Every case must fail: exit code 1 (the only failure code peer-core uses, spec §1.5), no
//! panic, within a deadline (a peer that starts instead is killed and the case fails). When the
//! case has a data directory (`ledger` setup, or the shared peer of the genesis cases), its
//! contents are hashed before and after: a refused input must leave it as it was.
//!
//! Runs as root too: a case that makes files unreadable (`unreadable:`) checks that `chmod 000`
//! really denies reading; when it does not (root), the binary runs as the unprivileged user
//! `nobody` (uid 65534), so the case tests the same thing and gives the same snapshot.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::msp::generate::{self, Org, OrgSpec, ValidityWindow};
use peer_core::testkit::epoch;
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, HeaderType, Payload};
use rand_core::{Rng, SeedableRng};
use serde::Deserialize;
use sha2::Digest;

use crate::peer::{Peer, Ports, strip_colors};
use crate::support::repo_root;

/// How long one case may take before its process is killed (a failure: it should have exited).
const DEADLINE: Duration = Duration::from_secs(20);

/// The log format the cases run with: Fabric's default without time, sequence number and
/// colours, so snapshots are stable. Only warnings and errors are logged (`FABRIC_LOGGING_SPEC`).
const LOG_FORMAT: &str = "[%{module}] %{shortfunc} -> %{level:.4s} %{message}";

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// One line: what is bad, and what the operator should be told.
    description: String,
    /// The arguments after `peer-core`; default `node start`.
    #[serde(default)]
    command: Option<Vec<String>>,
    /// Env vars on top of the runner's defaults; `~` removes a default.
    #[serde(default)]
    env: BTreeMap<String, Option<String>>,
    /// A core.yaml to use instead of the sample config (written to `${CASE}/cfg/core.yaml`).
    #[serde(default)]
    core_yaml: Option<String>,
    /// Text files to write after `setup`, path (relative to `${CASE}`) to contents.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Setup steps, run in order before `files` are written (see `setup_step`).
    #[serde(default)]
    setup: Vec<String>,
    /// Paths to make unreadable (`chmod 000`) after setup.
    #[serde(default)]
    unreadable: Vec<String>,
    /// Talk to the shared running peer (genesis cases): its address and Org1's admin identity.
    #[serde(default)]
    peer: bool,
}

/// What the runner substitutes for `${NAME}` in case text.
struct Vars(Vec<(String, String)>);

impl Vars {
    fn expand(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, value) in &self.0 {
            out = out.replace(&format!("${{{name}}}"), value);
        }
        assert!(!out.contains("${"), "unknown placeholder in {text:?}");
        out
    }

    /// The reverse, for snapshots: values back to their names (longest value first).
    fn redact(&self, text: &str) -> String {
        let mut pairs: Vec<&(String, String)> = self.0.iter().filter(|(_, v)| !v.is_empty()).collect();
        pairs.sort_by_key(|(_, value)| std::cmp::Reverse(value.len()));
        let mut out = text.to_string();
        for (name, value) in pairs {
            out = out.replace(value.as_str(), &format!("${{{name}}}"));
        }
        out
    }
}

/// `\xNN` in case text is a raw byte (for non-UTF-8 env vars and arguments).
fn os_string(text: &str) -> OsString {
    let mut bytes = Vec::new();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        if rest.starts_with(b"\\x") && rest.len() >= 4 {
            let hex = std::str::from_utf8(&rest[2..4]).unwrap();
            bytes.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad \\x escape in {text:?}")));
            rest = &rest[4..];
        } else {
            bytes.push(rest[0]);
            rest = &rest[1..];
        }
    }
    OsString::from_vec(bytes)
}

/// The peer the genesis cases join channels on: Org1 of seed 7 (as `channel.rs`), with a small
/// `peer.maxRecvMsgSize` so an oversized block is cheap to make.
pub struct SharedPeer {
    peer: Peer,
    crypto: PathBuf,
    data: PathBuf,
    _tmp: tempfile::TempDir,
}

pub const SHARED_MAX_RECV: usize = 2 << 20;

fn org(msp_id: &str, domain: &str, validity: ValidityWindow) -> Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers: 1 };
    generate::generate_org(&spec, &mut generate::org_rng(7, &spec), validity).unwrap()
}

impl SharedPeer {
    fn start() -> SharedPeer {
        let tmp = tempfile::tempdir().unwrap();
        let crypto = org("Org1MSP", "org1.example.com", ValidityWindow::fixed()).write_to(&tmp.path().join("crypto")).unwrap();
        let data = tmp.path().join("data");
        let ports = Ports::free();
        let mut env = crate::peer::sample_env(ports, &data);
        env.push(("CORE_PEER_LOCALMSPID".into(), "Org1MSP".into()));
        env.push(("CORE_PEER_MSPCONFIGPATH".into(), crypto.join("peers/peer0.org1.example.com/msp").display().to_string()));
        env.push(("CORE_PEER_MAXRECVMSGSIZE".into(), SHARED_MAX_RECV.to_string()));
        let mut peer = Peer::spawn(tmp.path(), &env, ports);
        peer.wait_for("Started peer with ID=", Duration::from_secs(30));
        SharedPeer { peer, crypto, data, _tmp: tmp }
    }

    fn stop(mut self) {
        let (code, _) = self.peer.signal_and_wait("TERM", Duration::from_secs(10));
        assert_eq!(code, 0, "{}", self.peer.seen.join("\n"));
        assert!(self.peer.seen.iter().all(|line| !line.contains("panicked")), "{}", self.peer.seen.join("\n"));
    }
}

/// A directory's contents, one line per path with the SHA-256 of each file's bytes (the lock
/// file only by name: whoever takes the lock writes its name there).
fn hash_dir(dir: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut String) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                out.push_str(&format!("{relative}/\n"));
                walk(&path, root, out);
            } else if relative.ends_with("fileLock/LOCK") {
                out.push_str(&format!("{relative}\n"));
            } else {
                out.push_str(&format!("{relative} {}\n", hex::encode(sha2::Sha256::digest(std::fs::read(&path).unwrap()))));
            }
        }
    }
    let mut out = String::new();
    walk(dir, dir, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Setup steps: `verb arg…`, paths relative to the case directory.

fn setup_step(case_dir: &Path, step: &str) {
    let words: Vec<&str> = step.split_whitespace().collect();
    let path = |i: usize| case_dir.join(words[i]);
    match words.as_slice() {
        // copy FROM TO: a file or a directory tree (FROM may be absolute, e.g. ${SAMPLE}/msp).
        ["copy", _, _] => copy(&path(1), &path(2)),
        ["mkdir", _] => std::fs::create_dir_all(path(1)).unwrap(),
        ["remove", _] => {
            let target = path(1);
            if target.is_dir() { std::fs::remove_dir_all(target).unwrap() } else { std::fs::remove_file(target).unwrap() }
        }
        ["symlink", target, _] => std::os::unix::fs::symlink(target, path(2)).unwrap(),
        // fifo FILE: a named pipe (opening it for reading waits for a writer).
        ["fifo", _] => rustix::fs::mkfifoat(rustix::fs::CWD, path(1), rustix::fs::Mode::from_raw_mode(0o644)).unwrap(),
        // sparse FILE BYTES: a file that claims to be huge without using the disk.
        ["sparse", _, bytes] => std::fs::File::create(path(1)).unwrap().set_len(bytes.parse().unwrap()).unwrap(),
        // random FILE BYTES SEED: seeded random bytes.
        ["random", _, bytes, seed] => {
            let mut data = vec![0u8; bytes.parse().unwrap()];
            rand_chacha::ChaCha20Rng::seed_from_u64(seed.parse().unwrap()).fill_bytes(&mut data);
            std::fs::write(path(1), data).unwrap();
        }
        // truncate FILE BYTES|half
        ["truncate", _, how] => {
            let mut bytes = std::fs::read(path(1)).unwrap();
            let keep = if *how == "half" { bytes.len() / 2 } else { how.parse().unwrap() };
            bytes.truncate(keep);
            std::fs::write(path(1), bytes).unwrap();
        }
        // replace FILE FROM TO: replaces the first FROM (which must occur); `\xNN` is a byte.
        ["replace", _, from, to] => {
            let (from, to) = (os_string(from).into_vec(), os_string(to).into_vec());
            let mut bytes = std::fs::read(path(1)).unwrap();
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap_or_else(|| panic!("{step:?}: not found"));
            bytes.splice(at..at + from.len(), to);
            std::fs::write(path(1), bytes).unwrap();
        }
        // append FILE COUNT TEXT: TEXT (`\xNN` is a byte) COUNT times.
        ["append", _, count, text] => {
            let mut bytes = std::fs::read(path(1)).unwrap_or_default();
            bytes.extend(os_string(text).into_vec().repeat(count.parse().unwrap()));
            std::fs::write(path(1), bytes).unwrap();
        }
        // ledger DIR CHANNEL=HEIGHT…: channels made through the library, as `node start` left them.
        ["ledger", _, channels @ ..] => make_ledgers(&path(1), channels),
        // org OUT MSPID DOMAIN fixed|expired|future: an org of seed 7 in cryptogen's layout.
        ["org", _, msp_id, domain, validity] => {
            let window = match *validity {
                "fixed" => ValidityWindow::fixed(),
                // Expired on 2021-01-01.
                "expired" => ValidityWindow { not_before: secs(1_577_836_800), not_after: secs(1_609_459_200) },
                // Valid from 2040-01-01 only.
                "future" => ValidityWindow { not_before: secs(2_208_988_800), not_after: secs(2_524_607_999) },
                other => panic!("unknown validity {other}"),
            };
            org(msp_id, domain, window).write_to(&path(1)).unwrap();
        }
        // genesis FILE [CHANNEL [MUTATION]]: the genesis block of a channel of Org1 (seed 7),
        // optionally broken (see `genesis`).
        ["genesis", _, rest @ ..] => {
            let channel = rest.first().copied().unwrap_or("mychannel");
            let block = genesis(channel, rest.get(1).copied().unwrap_or("none"));
            std::fs::write(path(1), block.encode_to_vec()).unwrap();
        }
        other => panic!("unknown setup step {other:?}"),
    }
}

fn secs(seconds: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::copy(from, to).unwrap();
    }
}

fn make_ledgers(data: &Path, channels: &[&str]) {
    let env = peer_core::env::real::env().unwrap();
    let mgr = LedgerMgr::open(&env, data, "catalog setup").unwrap();
    for entry in channels {
        let (channel, height) = entry.split_once('=').expect("CHANNEL=HEIGHT");
        let genesis = new_block(0, &[], vec![envelope(HeaderType::Config, channel, "", b"config")]);
        let ledger = mgr.create_from_genesis(&genesis).unwrap();
        let mut tip = genesis;
        for number in 1..height.parse().unwrap() {
            let tx = envelope(HeaderType::EndorserTransaction, channel, &format!("{channel}-tx-{number}"), b"tx");
            tip = new_block(number, &header_hash(tip.header.as_ref().unwrap()), vec![tx]);
            ledger.append(&tip).unwrap();
        }
    }
}

/// Org1's genesis block for `channel`, broken by `mutation`.
fn genesis(channel: &str, mutation: &str) -> Block {
    let orderer = org("OrdererMSP", "example.com", ValidityWindow::fixed());
    let org1 = org("Org1MSP", "org1.example.com", ValidityWindow::fixed());
    // Built with a valid channel ID, renamed below if the case asks for a bad one (the builder
    // refuses bad IDs, as configtxgen does).
    let valid_id = if peer_core::ledger::validate_channel_id(channel).is_ok() { channel } else { "mychannel" };
    let mut spec = GenesisSpec::new(valid_id, epoch());
    spec.orderer_addresses = vec!["orderer.example.com:7050".into()];
    let entry = |name: &str, org| GenesisOrg { name: name.into(), org, anchor_peers: Vec::new(), orderer_endpoints: Vec::new() };
    spec.orderer_orgs.push(GenesisOrg { orderer_endpoints: vec!["orderer.example.com:7050".into()], ..entry("OrdererOrg", &orderer) });
    spec.application_orgs.push(entry("Org1MSP", &org1));
    let mut block = genesis_block(&spec).unwrap_or_else(|e| panic!("genesis for {channel}: {e}"));
    if valid_id != channel {
        rename_channel(&mut block, channel);
    }
    let data_hash = |block: &Block| peer_core::ledger::block::data_hash(block.data.as_ref().unwrap()).to_vec();
    match mutation {
        "none" => {}
        // The org's CA certificate in the channel config is not a certificate.
        "bad-ca-cert" => {
            edit_org1_msp(&mut block, |msp| msp.root_certs[0] = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec());
        }
        // The org's MSP in the channel config has no CA at all.
        "no-ca-cert" => edit_org1_msp(&mut block, |msp| msp.root_certs.clear()),
        // A block numbered 5: not a genesis block.
        "number-5" => block.header.as_mut().unwrap().number = 5,
        // One byte of the config changed after the header's data hash was computed.
        "tampered-data" => {
            let data = &mut block.data.as_mut().unwrap().data[0];
            let last = data.len() - 1;
            data[last] ^= 1;
        }
        "no-header" => block.header = None,
        "no-data" => block.data = None,
        // An ordinary transaction block (header number 0, hash right), not a config block.
        "transaction" => {
            block.data.as_mut().unwrap().data = vec![envelope(HeaderType::EndorserTransaction, channel, "tx-1", b"tx")];
            let hash = data_hash(&block);
            block.header.as_mut().unwrap().data_hash = hash;
        }
        // The first envelope is not an Envelope at all (hash right).
        "garbage-envelope" => {
            block.data.as_mut().unwrap().data[0] = vec![0xff; 32];
            let hash = data_hash(&block);
            block.header.as_mut().unwrap().data_hash = hash;
        }
        // The CONFIG envelope's payload data is not a ConfigEnvelope (hash right).
        "garbage-config" => {
            let mut env = Envelope::decode(block.data.as_ref().unwrap().data[0].as_slice()).unwrap();
            let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
            payload.data = vec![0xff; 64];
            env.payload = payload.encode_to_vec();
            block.data.as_mut().unwrap().data[0] = env.encode_to_vec();
            let hash = data_hash(&block);
            block.header.as_mut().unwrap().data_hash = hash;
        }
        other => panic!("unknown genesis mutation {other}"),
    }
    block
}

/// Edits Org1's `FabricMSPConfig` inside the genesis block's config (the builder validates the
/// MSPs it is given, so a broken one has to be made afterwards), keeping the data hash right.
fn edit_org1_msp(block: &mut Block, edit: impl FnOnce(&mut proto::msp::FabricMspConfig)) {
    let data = &mut block.data.as_mut().unwrap().data[0];
    let mut env = Envelope::decode(data.as_slice()).unwrap();
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    let mut config_envelope = proto::common::ConfigEnvelope::decode(payload.data.as_slice()).unwrap();
    let channel_group = config_envelope.config.as_mut().unwrap().channel_group.as_mut().unwrap();
    let value = channel_group.groups.get_mut("Application").unwrap().groups.get_mut("Org1MSP").unwrap().values.get_mut("MSP").unwrap();
    let mut msp_config = proto::msp::MspConfig::decode(value.value.as_slice()).unwrap();
    let mut fabric = proto::msp::FabricMspConfig::decode(msp_config.config.as_slice()).unwrap();
    edit(&mut fabric);
    msp_config.config = fabric.encode_to_vec();
    value.value = msp_config.encode_to_vec();
    payload.data = config_envelope.encode_to_vec();
    env.payload = payload.encode_to_vec();
    *data = env.encode_to_vec();
    let hash = peer_core::ledger::block::data_hash(block.data.as_ref().unwrap());
    block.header.as_mut().unwrap().data_hash = hash.to_vec();
}

/// Renames the channel in the block's channel header (keeping the data hash right).
fn rename_channel(block: &mut Block, channel: &str) {
    let data = &mut block.data.as_mut().unwrap().data[0];
    let mut env = Envelope::decode(data.as_slice()).unwrap();
    let mut payload = Payload::decode(env.payload.as_slice()).unwrap();
    let header = payload.header.as_mut().unwrap();
    let mut channel_header = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
    channel_header.channel_id = channel.into();
    header.channel_header = channel_header.encode_to_vec();
    env.payload = payload.encode_to_vec();
    *data = env.encode_to_vec();
    let hash = peer_core::ledger::block::data_hash(block.data.as_ref().unwrap());
    block.header.as_mut().unwrap().data_hash = hash.to_vec();
}

// ---------------------------------------------------------------------------------------------
// Running a case.

/// Whether `chmod 000` stops this process from reading a file (it does not for root).
fn chmod_denies_reading(dir: &Path) -> bool {
    let probe = dir.join(".chmod-probe");
    std::fs::write(&probe, "x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let denied = std::fs::File::open(&probe).is_err();
    std::fs::remove_file(&probe).unwrap();
    denied
}

/// Lets another user into `dir` and everything below it (for cases run as `nobody`).
fn open_up(dir: &Path) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = if meta.is_dir() { 0o777 } else { 0o666 };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            open_up(&entry.unwrap().path());
        }
    }
}

/// Runs one case file; returns the text for its snapshot, or `None` when the case cannot run
/// here (it says why on stderr).
fn run_case(path: &Path, shared: Option<&SharedPeer>) -> Option<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let case: Case = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!case.peer || shared.is_some(), "{}: `peer: true` cases run in the genesis and peer groups", path.display());
    let tmp = tempfile::tempdir().unwrap();
    let case_dir = tmp.path().to_path_buf();
    let ports = Ports::free();
    let repo = repo_root();
    let mut vars = vec![
        ("CASE".to_string(), case_dir.display().to_string()),
        ("DATA".to_string(), case_dir.join("data").display().to_string()),
        ("SAMPLE".to_string(), repo.join("sampleconfig").display().to_string()),
        ("REPO".to_string(), repo.display().to_string()),
        ("PEER_PORT".to_string(), ports.peer.to_string()),
        ("CC_PORT".to_string(), ports.chaincode.to_string()),
        ("OPS_PORT".to_string(), ports.operations.to_string()),
    ];
    if let Some(shared) = shared {
        vars.push(("SHARED_PORT".into(), shared.peer.ports.peer.to_string()));
        vars.push(("ORG1".into(), shared.crypto.display().to_string()));
        vars.push(("SHARED_DATA".into(), shared.data.display().to_string()));
    }
    let vars = Vars(vars);

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("FABRIC_LOGGING_SPEC".into(), "warning".into());
    env.insert("FABRIC_LOGGING_FORMAT".into(), LOG_FORMAT.into());
    if let Some(core_yaml) = &case.core_yaml {
        let cfg = case_dir.join("cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        std::fs::write(cfg.join("core.yaml"), vars.expand(core_yaml)).unwrap();
        env.insert("FABRIC_CFG_PATH".into(), cfg.display().to_string());
    } else {
        env.insert("FABRIC_CFG_PATH".into(), vars.expand("${SAMPLE}"));
        env.insert("CORE_PEER_LISTENADDRESS".into(), vars.expand("127.0.0.1:${PEER_PORT}"));
        env.insert("CORE_PEER_ADDRESS".into(), vars.expand("127.0.0.1:${PEER_PORT}"));
        env.insert("CORE_PEER_CHAINCODELISTENADDRESS".into(), vars.expand("127.0.0.1:${CC_PORT}"));
        env.insert("CORE_OPERATIONS_LISTENADDRESS".into(), vars.expand("127.0.0.1:${OPS_PORT}"));
        env.insert("CORE_PEER_FILESYSTEMPATH".into(), vars.expand("${DATA}"));
    }
    if case.peer {
        env.insert("CORE_PEER_ADDRESS".into(), vars.expand("127.0.0.1:${SHARED_PORT}"));
        env.insert("CORE_PEER_LOCALMSPID".into(), "Org1MSP".into());
        env.insert("CORE_PEER_MSPCONFIGPATH".into(), vars.expand("${ORG1}/users/Admin@org1.example.com/msp"));
    }
    for (name, value) in &case.env {
        match value {
            Some(value) => env.insert(name.clone(), vars.expand(value)),
            None => env.remove(name),
        };
    }
    for step in &case.setup {
        setup_step(&case_dir, &vars.expand(step));
    }
    for (file, contents) in &case.files {
        let target = case_dir.join(vars.expand(file));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, vars.expand(contents)).unwrap();
    }
    let mut as_nobody = false;
    if !case.unreadable.is_empty() {
        if !chmod_denies_reading(&case_dir) {
            // Root reads anything: run the binary as `nobody`, which chmod 000 does stop.
            open_up(&case_dir);
            as_nobody = true;
        }
        for file in &case.unreadable {
            std::fs::set_permissions(case_dir.join(vars.expand(file)), std::fs::Permissions::from_mode(0o000)).unwrap();
        }
    }
    let data_dir = match shared {
        Some(shared) if case.peer => shared.data.clone(),
        _ => case_dir.join("data"),
    };
    let before = data_dir.is_dir().then(|| hash_dir(&data_dir));

    let args: Vec<String> = case.command.clone().unwrap_or_else(|| vec!["node".into(), "start".into()]);
    let args: Vec<OsString> = args.iter().map(|a| os_string(&vars.expand(a))).collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_peer-core"));
    command.args(&args).current_dir(&case_dir).env_clear().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[allow(clippy::disallowed_methods)]
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in &env {
        command.env(name, os_string(value));
    }
    if as_nobody {
        command.uid(65534).gid(65534);
    }
    let Some((code, stdout, stderr)) = run_with_deadline(command, path) else {
        eprintln!("SKIPPED {}: running as root, and the binary could not be run as nobody to test unreadable files", path.display());
        return None;
    };

    assert_eq!(code, 1, "{}: exit code {code}\nstdout:\n{stdout}\nstderr:\n{stderr}", path.display());
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{}: panic\n{stderr}", path.display());
    let mut out = format!("{}\n", case.description.trim());
    // Control characters in arguments are shown escaped, as the case file writes them.
    let shown: Vec<String> = args.iter().map(|a| escape_controls(&a.to_string_lossy())).collect();
    out.push_str(&format!("$ peer-core {}\nexit: {code}\n", vars.redact(&shown.join(" "))));
    if let Some(before) = before {
        let after = hash_dir(&data_dir);
        assert_eq!(before, after, "{}: the data directory changed\nstderr:\n{stderr}", path.display());
        out.push_str("data directory: unchanged\n");
    }
    if !stdout.is_empty() {
        out.push_str(&format!("stdout:\n{}", indent(&vars.redact(&stdout))));
    }
    out.push_str(&format!("stderr:\n{}", indent(&vars.redact(&normalize(&stderr)))));
    Some(out)
}

/// Runs the process to its end or the deadline (then kills it: a failure). No sleeping: the
/// wait is on the stderr pipe, which closes when the process exits.
fn run_with_deadline(mut command: Command, case: &Path) -> Option<(i32, String, String)> {
    let mut child = match command.spawn() {
        Ok(child) => child,
        // Switching to `nobody` is refused (a container without CAP_SETUID): the caller skips.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("{}: spawning peer-core: {e}", case.display()),
    };
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (send, receive) = mpsc::channel();
    // Reader threads owned by this test; they end at EOF.
    #[allow(clippy::disallowed_methods)]
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        let _ = send.send(text);
    });
    #[allow(clippy::disallowed_methods)]
    let stdout_thread = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        text
    });
    let stderr = match receive.recv_timeout(DEADLINE) {
        Ok(text) => text,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{}: still running after {DEADLINE:?} (it should have refused the input)", case.display());
        }
    };
    let status = child.wait().unwrap();
    let stdout = stdout_thread.join().unwrap();
    let code = status.code().unwrap_or_else(|| panic!("{}: killed by a signal: {status:?}", case.display()));
    Some((code, String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned()))
}

/// Stable stderr: no colours, no process IDs, and a command's long help text cut to its first
/// line (should a command print its whole help after an error, the snapshot shows that it did).
fn normalize(stderr: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let all: Vec<String> = stderr.lines().map(strip_colors).collect();
    let mut i = 0;
    while i < all.len() {
        let line = &all[i];
        lines.push(redact_handshake_time(&redact_proposal_size(&redact_now(&redact_pids(line)))));
        if line.starts_with("Usage: peer-core ") && all[i + 1..].iter().any(|l| l == "Options:") {
            lines.push("(the command's help follows)".into());
            break;
        }
        i += 1;
    }
    lines.join("\n") + "\n"
}

/// Validity errors print the time they were checked at: `(now is 2026-11-24 15:25:22.07 +0000 UTC)`.
fn redact_now(line: &str) -> String {
    match line.find("(now is ") {
        Some(at) => match line[at..].find(')') {
            Some(end) => format!("{}(now is <the time of the run>){}", &line[..at], &line[at + end + 1..]),
            None => line.to_string(),
        },
        None => line.to_string(),
    }
}

/// TLS handshake failures say how long the handshake took (`failed after 693.258µs with`, `failed
/// in 1.2ms with`): the duration is kept out.
fn redact_handshake_time(line: &str) -> String {
    for marker in ["handshake failed after ", "handshake failed in "] {
        if let Some(at) = line.find(marker) {
            let start = at + marker.len();
            if let Some(end) = line[start..].find(" with ") {
                return format!("{}<duration>{}", &line[..start], &line[start + end..]);
            }
        }
    }
    line.to_string()
}

/// A signed proposal's size varies by a byte or two from run to run (signature DER length,
/// timestamp): gRPC's too-large error is kept, with its limit, without the size found.
fn redact_proposal_size(line: &str) -> String {
    const FOUND: &str = "decoded message length too large: found ";
    match line.find(FOUND) {
        Some(at) => {
            let start = at + FOUND.len();
            let digits = line[start..].chars().take_while(char::is_ascii_digit).count();
            format!("{}N{}", &line[..start], &line[start + digits..])
        }
        None => line.to_string(),
    }
}

fn redact_pids(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("pid ") {
        out.push_str(&rest[..at + 4]);
        rest = &rest[at + 4..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// `\xNN` for ASCII control characters, so a snapshot holds no raw escape sequences.
fn escape_controls(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_control() { format!("\\x{:02x}", u32::from(c)) } else { c.to_string() }).collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// Runs every case of one group (a folder of `tests/catalog/`), each against its snapshot.
fn run_group(group: &str, shared: Option<&SharedPeer>) {
    let count = std::cell::Cell::new(0);
    insta::with_settings!({
        snapshot_path => "../catalog/snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::glob!("../catalog", &format!("{group}/*.yaml"), |path| {
            count.set(count.get() + 1);
            if let Some(text) = run_case(path, shared) {
                insta::assert_snapshot!(group, text);
            }
        });
    });
    assert!(count.get() > 0, "no cases in tests/catalog/{group}");
}

#[test]
fn config() {
    run_group("config", None);
}

#[test]
fn env() {
    run_group("env", None);
}

#[test]
fn msp() {
    run_group("msp", None);
}

#[test]
fn cli() {
    run_group("cli", None);
}

#[test]
fn genesis_blocks() {
    let shared = SharedPeer::start();
    run_group("genesis", Some(&shared));
    // Requests a running peer refuses (channel fetch, getinfo): the same peer serves them.
    run_group("peer", Some(&shared));
    // Nothing was joined.
    let list = crate::support::peer_core(
        Path::new("/"),
        &[
            ("FABRIC_CFG_PATH", repo_root().join("sampleconfig").to_str().unwrap()),
            ("CORE_PEER_ADDRESS", &format!("127.0.0.1:{}", shared.peer.ports.peer)),
            ("CORE_PEER_LOCALMSPID", "Org1MSP"),
            ("CORE_PEER_MSPCONFIGPATH", shared.crypto.join("users/Admin@org1.example.com/msp").to_str().unwrap()),
        ],
        &["channel", "list"],
    );
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout, "Channels peers has joined: \n");
    shared.stop();
}
