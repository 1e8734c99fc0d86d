//! The offline `node` commands on a real data directory: pause, resume, rollback, reset,
//! rebuild-dbs and upgrade-dbs, their outputs, exit codes and on-disk effects (read back through
//! the library), the lock, and what `node start` then logs.

use std::path::Path;
use std::time::Duration;

use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use proto::common::{Block, HeaderType};

use crate::peer::{Peer, Ports, sample_env};
use crate::support::{Run, peer_core, repo_root};

fn genesis(channel: &str) -> Block {
    new_block(0, &[], vec![envelope(HeaderType::Config, channel, "", b"config")])
}

/// Creates channels with the given heights in `data` through the library.
fn make_ledgers(data: &Path, channels: &[(&str, u64)]) {
    let env = peer_core::env::real::env().unwrap();
    let mgr = LedgerMgr::open(&env, data, "e2e setup").unwrap();
    for (channel, height) in channels {
        let ledger = mgr.create_from_genesis(&genesis(channel)).unwrap();
        let mut tip = ledger.block(0).unwrap().unwrap();
        for number in 1..*height {
            let tx = envelope(HeaderType::EndorserTransaction, channel, &format!("{channel}-tx-{number}"), b"tx");
            tip = new_block(number, &header_hash(tip.header.as_ref().unwrap()), vec![tx]);
            ledger.append(&tip).unwrap();
        }
    }
}

/// (channel, height, pre-reset height) of every active channel, read through the library.
fn heights(data: &Path) -> Vec<(String, u64, Option<u64>)> {
    let env = peer_core::env::real::env().unwrap();
    let mgr = LedgerMgr::open(&env, data, "e2e check").unwrap();
    mgr.active_channels()
        .into_iter()
        .map(|id| {
            let ledger = mgr.channel(&id).unwrap();
            (id, ledger.height(), ledger.pre_reset_height().unwrap())
        })
        .collect()
}

fn node(dir: &Path, data: &Path, args: &[&str]) -> Run {
    let sample = repo_root().join("sampleconfig");
    let env = [("FABRIC_CFG_PATH", sample.to_str().unwrap()), ("CORE_PEER_FILESYSTEMPATH", data.to_str().unwrap())];
    peer_core(dir, &env, &[&["node"], args].concat())
}

fn assert_ok(run: &Run, line: &str) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains(line), "{line:?} missing from:\n{}", run.stderr);
}

/// A run-time failure: `Error: <message>` as the last line, exit 1; no usage after it (the
/// command was used correctly; its help would bury the error).
fn assert_fails(run: &Run, message: &str, command: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error_line = format!("Error: {message}\n");
    assert!(run.stderr.ends_with(&error_line), "{error_line:?} is not the last line of:\n{}", run.stderr);
    assert!(!run.stderr.contains("Usage:"), "node {command}: usage after a run-time error:\n{}", run.stderr);
}

/// A usage error (no -c): the error, then the command's usage line as clap prints it for a bad
/// flag, exit 1; not the whole help.
fn assert_usage_error(run: &Run, message: &str, command: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let expected = format!("Error: {message}\n\nUsage: peer-core node {command} [OPTIONS]\n\nFor more information, try '--help'.\n");
    assert!(run.stderr.ends_with(&expected), "expected the stderr to end with:\n{expected}\ngot:\n{}", run.stderr);
}

fn entry(channel: &str, height: u64, pre_reset: Option<u64>) -> (String, u64, Option<u64>) {
    (channel.to_string(), height, pre_reset)
}

#[test]
fn pause_and_resume_change_which_channels_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_ledgers(&data, &[("mychannel", 4), ("other", 2)]);

    assert_ok(&node(dir.path(), &data, &["pause", "-c", "mychannel"]), "[kvledger] PauseChannel -> INFO 00");
    assert_ok(&node(dir.path(), &data, &["pause", "-c", "mychannel"]), "Ledger [mychannel] is already in [INACTIVE] status, nothing to do");
    assert_eq!(heights(&data), [entry("other", 2, None)]);
    assert_usage_error(&node(dir.path(), &data, &["pause"]), "Must supply channel ID", "pause");
    assert_fails(&node(dir.path(), &data, &["resume", "-c", "nochannel"]), "LedgerID does not exist: [nochannel]", "resume");
    let run = node(dir.path(), &data, &["resume", "--channelID", "mychannel"]);
    assert_ok(&run, "Updating ledger [mychannel] status to [ACTIVE]");
    assert_ok(&run, "The channel [mychannel] has been successfully resumed");
    assert_eq!(heights(&data), [entry("mychannel", 4, None), entry("other", 2, None)]);
}

#[test]
fn rollback_and_reset_shorten_the_chains_and_record_pre_reset_heights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_ledgers(&data, &[("mychannel", 8), ("other", 3)]);

    assert_usage_error(&node(dir.path(), &data, &["rollback", "-b", "2"]), "Must supply channel ID", "rollback");
    assert_fails(&node(dir.path(), &data, &["rollback", "-c", "nope", "-b", "2"]), "ledgerID [nope] does not exist", "rollback");
    assert_fails(
        &node(dir.path(), &data, &["rollback", "-c", "mychannel", "-b", "7"]),
        "target block number [7] should be less than the biggest block number [7]",
        "rollback",
    );
    let run = node(dir.path(), &data, &["rollback", "-c", "mychannel", "-b", "2"]);
    assert_ok(&run, "The channel [mychannel] has been successfully rolled back to the block number [2]");
    assert_eq!(heights(&data), [entry("mychannel", 3, Some(8)), entry("other", 3, None)]);

    let run = node(dir.path(), &data, &["reset"]);
    assert_ok(&run, "Resetting all channel ledgers to genesis block");
    assert_ok(&run, &format!("Ledger data folder from config = [{}]", data.join("ledgersData").display()));
    assert_ok(&run, "All channel ledgers have been successfully reset to the genesis block");
    // The rollback's record (8) is kept: a reset only raises a recorded height.
    assert_eq!(heights(&data), [entry("mychannel", 1, Some(8)), entry("other", 1, Some(3))]);
}

#[test]
fn rebuild_and_upgrade_dbs_drop_the_indexes_and_keep_the_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_ledgers(&data, &[("mychannel", 5)]);
    let path = data.join("ledgersData/chains/mychannel.redb");
    let run = node(dir.path(), &data, &["rebuild-dbs"]);
    assert_ok(
        &run,
        &format!("Dropping all contents in BlockStoreIndex of channel [mychannel] at location [{}] ...if present", path.display()),
    );
    let run = node(dir.path(), &data, &["upgrade-dbs"]);
    assert_ok(&run, "is already in the current format peer-core-ledger/1, nothing to upgrade");
    assert_ok(&run, "Dropping all contents in BlockStoreIndex of channel [mychannel]");
    // The next open rebuilds the indexes from the blocks.
    let env = peer_core::env::real::env().unwrap();
    let mgr = LedgerMgr::open(&env, &data, "e2e check").unwrap();
    let ledger = mgr.channel("mychannel").unwrap();
    assert_eq!(ledger.height(), 5);
    assert_eq!(ledger.tx_location("mychannel-tx-3").unwrap(), Some((3, 0)));
    let block = ledger.block(4).unwrap().unwrap();
    assert_eq!(ledger.block_by_hash(&header_hash(block.header.as_ref().unwrap())).unwrap(), Some(block));
}

#[test]
fn node_commands_refuse_while_the_data_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_ledgers(&data, &[("mychannel", 2)]);
    let env = peer_core::env::real::env().unwrap();
    let held = LedgerMgr::open(&env, &data, "the e2e test").unwrap();
    let lock = data.join("ledgersData/fileLock/LOCK");
    for args in [&["pause", "-c", "mychannel"][..], &["rollback", "-c", "mychannel", "-b", "0"][..], &["reset"][..], &["rebuild-dbs"][..]] {
        let run = node(dir.path(), &data, args);
        let message = format!(
            "as another peer node command is executing, wait for that command to complete its execution or terminate it before retrying: \
             lock is already acquired on file {} (held by the e2e test)",
            lock.display()
        );
        assert_fails(&run, &message, args[0]);
    }
    drop(held);
    assert_ok(&node(dir.path(), &data, &["pause", "-c", "mychannel"]), "The channel [mychannel] has been successfully paused");
}

#[test]
fn start_logs_pre_reset_heights_and_skips_a_corrupt_channel() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    make_ledgers(&data, &[("mychannel", 6), ("other", 2), ("broken", 2)]);
    assert_eq!(node(dir.path(), &data, &["rollback", "-c", "mychannel", "-b", "1"]).code, 0);
    std::fs::write(data.join("ledgersData/chains/broken.redb"), vec![0x5a; 8192]).unwrap();

    let ports = Ports::free();
    let mut peer = Peer::spawn(dir.path(), &sample_env(ports, &data), ports);
    let limit = Duration::from_secs(30);
    let failed = peer.wait_for("Failed to load ledger broken(", limit);
    assert!(failed.contains("[peer] Initialize -> ERRO"), "{failed}");
    assert!(failed.contains(&format!("database {}", data.join("ledgersData/chains/broken.redb").display())), "{failed}");
    peer.wait_for(&format!("Loading prereset height from path [{}]", data.join("ledgersData/chains").display()), limit);
    let loaded = peer.wait_for("Pre-reset heights loaded: map[mychannel:6]", limit);
    assert!(loaded.contains("[blkstorage] LoadPreResetHeight -> INFO"), "{loaded}");
    let (code, _) = peer.signal_and_wait("TERM", limit);
    assert_eq!(code, 0);
}
