//! The ledger through its public API on an in-memory Storage: creating channels, appending with
//! validation, reopening, the offline commands' effects and errors, and a corrupt channel store.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use peer_core::env::{Env, StoppedClock};
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::ledger::{LedgerMgr, commands};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use proto::common::{Block, HeaderType};

use peer_core::testkit::{MemNetwork, MemStorage};

const FSP: &str = "/mem/data";
pub(crate) const HOLDER: &str = "test";

pub(crate) fn env(storage: &Arc<MemStorage>) -> Env {
    Env::new(Arc::new(StoppedClock), Arc::new(MemNetwork::default()), storage.clone(), [1; 32])
}

pub(crate) fn fsp() -> &'static Path {
    Path::new(FSP)
}

pub(crate) fn genesis(channel: &str) -> Block {
    new_block(0, &[], vec![envelope(HeaderType::Config, channel, "", b"config")])
}

/// The block after `previous`, with transactions `<channel>-<number>-<i>`.
fn next(channel: &str, previous: &Block, txs: usize) -> Block {
    let header = previous.header.clone().unwrap();
    let number = header.number + 1;
    let envelopes =
        (0..txs).map(|i| envelope(HeaderType::EndorserTransaction, channel, &format!("{channel}-{number}-{i}"), b"tx")).collect();
    new_block(number, &header_hash(&header), envelopes)
}

/// Creates `channel` and appends blocks up to `height`; returns the blocks.
pub(crate) fn channel_with(mgr: &LedgerMgr, channel: &str, height: u64) -> Vec<Block> {
    let ledger = mgr.create_from_genesis(&genesis(channel)).unwrap();
    let mut blocks = vec![ledger.block(0).unwrap().unwrap()];
    while (blocks.len() as u64) < height {
        let block = next(channel, blocks.last().unwrap(), 2);
        ledger.append(&block).unwrap();
        blocks.push(block);
    }
    blocks
}

/// 40,000 bytes of fixed garbage: what a channel store overwritten by something else holds.
fn garbage() -> Vec<u8> {
    (0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Runs `f` with log lines captured; returns them joined.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let sink = MemorySink::new();
    let (layer, _handle) = logging::layer(&LoggingConfig::default(), Arc::new(|| SystemTime::UNIX_EPOCH), sink.sink()).unwrap();
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
    // Tests run in parallel, each with its own scoped subscriber: recompute every callsite's
    // interest with this one registered, so a line is not skipped for an interest cached while
    // another test's subscriber came or went (a WARN was missing here about once in 12 runs).
    let value = tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    (value, sink.lines().join("\n"))
}

#[test]
fn appends_are_validated_and_survive_a_reopen() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let blocks = channel_with(&mgr, "mychannel", 3);
    let ledger = mgr.channel("mychannel").unwrap();
    assert_eq!(mgr.active_channels(), ["mychannel"]);
    assert_eq!(ledger.height(), 3);

    let good = next("mychannel", &blocks[2], 1);
    let mut wrong_number = good.clone();
    wrong_number.header.as_mut().unwrap().number = 5;
    let err = ledger.append(&wrong_number).unwrap_err().to_string();
    assert_eq!(err, "channel [mychannel]: block number should have been 3 but was 5");

    let mut wrong_previous = good.clone();
    wrong_previous.header.as_mut().unwrap().previous_hash = vec![0xab; 32];
    let err = ledger.append(&wrong_previous).unwrap_err().to_string();
    let expected = hex::encode(header_hash(blocks[2].header.as_ref().unwrap()));
    assert_eq!(
        err,
        format!(
            "channel [mychannel]: unexpected Previous block hash. Expected PreviousHash = [{expected}], PreviousHash referred in the latest block= [{}]",
            "ab".repeat(32)
        )
    );

    let mut wrong_data = good.clone();
    wrong_data.data.as_mut().unwrap().data.push(b"smuggled".to_vec());
    let err = ledger.append(&wrong_data).unwrap_err().to_string();
    assert!(err.starts_with("channel [mychannel]: block [3] has data hash ["), "{err}");
    assert!(err.contains("] in its header but its data hashes to ["), "{err}");

    let mut headless = good.clone();
    headless.header = None;
    assert_eq!(ledger.append(&headless).unwrap_err().to_string(), "channel [mychannel]: the block has no header");
    // Nothing of the rejected blocks was stored.
    assert_eq!(ledger.height(), 3);

    let mut heights = ledger.subscribe();
    ledger.append(&good).unwrap();
    assert!(heights.has_changed().unwrap());
    assert_eq!(*heights.borrow_and_update(), 4);
    let info = ledger.info();
    assert_eq!(info.height, 4);
    assert_eq!(info.current_block_hash, header_hash(good.header.as_ref().unwrap()));
    assert_eq!(info.previous_block_hash, expected_bytes(&blocks[2]));

    drop((ledger, mgr));
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let ledger = mgr.channel("mychannel").unwrap();
    assert_eq!(ledger.info(), info);
    assert_eq!(ledger.block(3).unwrap().unwrap(), good);
    assert_eq!(ledger.block(4).unwrap(), None);
    assert_eq!(ledger.block_by_hash(&header_hash(blocks[1].header.as_ref().unwrap())).unwrap().unwrap(), blocks[1]);
    assert_eq!(ledger.tx_location("mychannel-2-1").unwrap(), Some((2, 1)));
    assert_eq!(ledger.block_by_tx_id("mychannel-3-0").unwrap().unwrap(), good);
    assert_eq!(ledger.block_by_tx_id("nope").unwrap(), None);
    ledger.verify_chain().unwrap();
}

fn expected_bytes(block: &Block) -> Vec<u8> {
    header_hash(block.header.as_ref().unwrap()).to_vec()
}

#[test]
fn creating_a_channel_needs_a_channel_id_and_a_new_name() {
    let storage = Arc::new(MemStorage::default());
    let mgr = LedgerMgr::open(&env(&storage), fsp(), HOLDER).unwrap();
    mgr.create_from_genesis(&genesis("ch1")).unwrap();
    assert_eq!(mgr.create_from_genesis(&genesis("ch1")).unwrap_err().to_string(), "LedgerID already exists");
    let anonymous = new_block(0, &[], vec![b"not an envelope".to_vec()]);
    assert!(mgr.create_from_genesis(&anonymous).unwrap_err().to_string().starts_with("the genesis block names no channel"));
    let err = mgr.create_from_genesis(&genesis("../escape")).unwrap_err().to_string();
    assert_eq!(err, "channel ID '../escape' is illegal: it must start with a lowercase letter");
    // A channel ID from a block is quoted with its control characters escaped (log lines, replies).
    let err = mgr.create_from_genesis(&genesis("ch\u{1b}[2J")).unwrap_err().to_string();
    assert_eq!(err, r"channel ID 'ch\u{1b}[2J' is illegal: it contains characters other than a-z, 0-9, '.' and '-'");
    let mut not_first = genesis("ch2");
    not_first.header.as_mut().unwrap().number = 1;
    assert_eq!(mgr.create_from_genesis(&not_first).unwrap_err().to_string(), "channel [ch2]: block number should have been 0 but was 1");
    assert_eq!(mgr.active_channels(), ["ch1"]);
}

#[test]
fn an_offline_command_refuses_while_the_ledger_is_open() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let _mgr = LedgerMgr::open(&env, fsp(), "peer A").unwrap();
    let err = commands::pause(&env, fsp(), "pause", "ch").unwrap_err().to_string();
    assert_eq!(
        err,
        "as another peer node command is executing, wait for that command to complete its execution or terminate it before retrying: \
         lock is already acquired on file /mem/data/ledgersData/fileLock/LOCK (held by peer A)"
    );
}

#[test]
fn pause_hides_a_channel_and_resume_brings_it_back() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "a", 2);
    channel_with(&mgr, "b", 2);
    drop(mgr);

    assert_eq!(commands::pause(&env, fsp(), HOLDER, "").unwrap_err().to_string(), "Must supply channel ID");
    assert_eq!(commands::pause(&env, fsp(), HOLDER, "zz").unwrap_err().to_string(), "LedgerID does not exist: [zz]");
    assert_eq!(commands::resume(&env, fsp(), HOLDER, "zz").unwrap_err().to_string(), "LedgerID does not exist: [zz]");
    let ((), log) = logged(|| commands::pause(&env, fsp(), HOLDER, "a").unwrap());
    assert!(log.contains("Updating ledger [a] status to [INACTIVE]"), "{log}");
    assert!(log.contains("[kvledger] PauseChannel -> INFO 002\u{1b}[0m The channel [a] has been successfully paused"), "{log}");
    let ((), log) = logged(|| commands::pause(&env, fsp(), HOLDER, "a").unwrap());
    assert!(log.contains("Ledger [a] is already in [INACTIVE] status, nothing to do"), "{log}");

    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.active_channels(), ["b"]);
    assert!(mgr.channel("a").is_none());
    // A paused channel still exists: it cannot be created again.
    assert_eq!(mgr.create_from_genesis(&genesis("a")).unwrap_err().to_string(), "LedgerID already exists");
    drop(mgr);

    let ((), log) = logged(|| commands::resume(&env, fsp(), HOLDER, "a").unwrap());
    assert!(log.contains("The channel [a] has been successfully resumed"), "{log}");
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.active_channels(), ["a", "b"]);
    assert_eq!(mgr.channel("a").unwrap().height(), 2);
}

#[test]
fn rollback_keeps_blocks_up_to_n_and_records_the_pre_reset_height() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let blocks = channel_with(&mgr, "ch", 25);
    channel_with(&mgr, "other", 3);
    drop(mgr);

    let rollback = |channel: &str, n| commands::rollback(&env, fsp(), HOLDER, channel, n).map_err(|e| e.to_string());
    assert_eq!(rollback("", 1).unwrap_err(), "Must supply channel ID");
    assert_eq!(rollback("nope", 1).unwrap_err(), "ledgerID [nope] does not exist");
    assert_eq!(rollback("ch", 24).unwrap_err(), "target block number [24] should be less than the biggest block number [24]");
    assert_eq!(rollback("ch", 99).unwrap_err(), "target block number [99] should be less than the biggest block number [24]");
    let (result, log) = logged(|| rollback("ch", 4));
    result.unwrap();
    for line in [
        "Rolling back ledger store",
        "Deleting index associated with block number [5] to [14]",
        "Deleting index associated with block number [15] to [24]",
        "The channel [ch] has been successfully rolled back to the block number [4]",
    ] {
        assert!(log.contains(line), "{line:?} missing from\n{log}");
    }

    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let ledger = mgr.channel("ch").unwrap();
    assert_eq!(ledger.height(), 5);
    assert_eq!(ledger.info().current_block_hash, expected_bytes(&blocks[4]));
    assert_eq!(ledger.pre_reset_height().unwrap(), Some(25));
    assert_eq!(mgr.pre_reset_heights().unwrap(), [("ch".to_string(), 25)]);
    // The removed blocks' index entries went with them.
    assert_eq!(ledger.block_by_hash(&expected_bytes(&blocks[10])).unwrap(), None);
    assert_eq!(ledger.tx_location("ch-10-0").unwrap(), None);
    assert_eq!(ledger.tx_location("ch-4-1").unwrap(), Some((4, 1)));
    // The chain continues from block 5, with the same blocks again.
    for block in &blocks[5..8] {
        ledger.append(block).unwrap();
    }
    assert_eq!(ledger.tx_location("ch-6-0").unwrap(), Some((6, 0)));
    ledger.verify_chain().unwrap();
    ledger.clear_pre_reset_height().unwrap();
    assert_eq!(mgr.pre_reset_heights().unwrap(), []);
    assert_eq!(mgr.channel("other").unwrap().height(), 3);
}

#[test]
fn reset_takes_every_channel_to_its_genesis_block_and_keeps_the_highest_record() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "a", 7);
    channel_with(&mgr, "b", 3);
    channel_with(&mgr, "paused", 4);
    drop(mgr);
    commands::pause(&env, fsp(), HOLDER, "paused").unwrap();

    let ((), log) = logged(|| commands::reset(&env, fsp(), HOLDER).unwrap());
    assert!(log.contains("Resetting all channel ledgers to genesis block"), "{log}");
    assert!(log.contains("Ledger data folder from config = [/mem/data/ledgersData]"), "{log}");
    assert!(log.contains("All channel ledgers have been successfully reset to the genesis block"), "{log}");

    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.channel("a").unwrap().height(), 1);
    assert_eq!(mgr.channel("b").unwrap().height(), 1);
    // Paused channels are reset too but their heights are not reported (as Fabric's LoadPreResetHeight).
    assert_eq!(mgr.pre_reset_heights().unwrap(), [("a".to_string(), 7), ("b".to_string(), 3)]);
    // Regrow a to 3 and reset again: the record stays 7.
    let a = mgr.channel("a").unwrap();
    let mut tip = a.block(0).unwrap().unwrap();
    for _ in 0..2 {
        tip = next("a", &tip, 1);
        a.append(&tip).unwrap();
    }
    drop((a, mgr));
    commands::reset(&env, fsp(), HOLDER).unwrap();
    commands::resume(&env, fsp(), HOLDER, "paused").unwrap();
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.pre_reset_heights().unwrap(), [("a".to_string(), 7), ("b".to_string(), 3), ("paused".to_string(), 4)]);
    assert_eq!(mgr.channel("paused").unwrap().height(), 1);
}

#[test]
fn rebuild_dbs_drops_the_indexes_and_the_next_open_rebuilds_them() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let blocks = channel_with(&mgr, "ch", 12);
    drop(mgr);

    let ((), log) = logged(|| commands::rebuild_dbs(&env, fsp(), HOLDER).unwrap());
    assert!(
        log.contains(
            "Dropping all contents in BlockStoreIndex of channel [ch] at location [/mem/data/ledgersData/chains/ch.redb] ...if present"
        ),
        "{log}"
    );
    let (mgr, log) = logged(|| LedgerMgr::open(&env, fsp(), HOLDER).unwrap());
    assert!(log.contains("[blkstorage] syncIndex -> INFO 002\u{1b}[0m Start building index from block [0] to last block [11]"), "{log}");
    assert!(log.contains("Finished building index. Last block indexed [11]"), "{log}");
    let ledger = mgr.channel("ch").unwrap();
    for (number, block) in blocks.iter().enumerate() {
        assert_eq!(ledger.block_by_hash(&expected_bytes(block)).unwrap().as_ref(), Some(block));
        if number > 0 {
            assert_eq!(ledger.tx_location(&format!("ch-{number}-1")).unwrap(), Some((number as u64, 1)));
        }
    }
    drop((ledger, mgr));
    // Up to date now: the next open builds nothing.
    let (_mgr, log) = logged(|| LedgerMgr::open(&env, fsp(), HOLDER).unwrap());
    assert!(!log.contains("Start building index"), "{log}");
}

#[test]
fn upgrade_dbs_on_the_current_format_only_drops_the_indexes() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let ((), log) = logged(|| commands::upgrade_dbs(&env, fsp(), HOLDER).unwrap());
    assert!(
        log.contains("WARN") && log.contains("Ledger database /mem/data/ledgersData/ledgers.redb is empty, nothing to upgrade"),
        "{log}"
    );
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "ch", 3);
    drop(mgr);
    let ((), log) = logged(|| commands::upgrade_dbs(&env, fsp(), HOLDER).unwrap());
    assert!(log.contains("Ledger data folder from config = [/mem/data/ledgersData]"), "{log}");
    assert!(log.contains("is already in the current format peer-core-ledger/1, nothing to upgrade"), "{log}");
    assert!(log.contains("Dropping all contents in BlockStoreIndex of channel [ch]"), "{log}");

    // An inventory of an unknown format is refused, by upgrade-dbs and by every other entry point.
    let inventory = Path::new("/mem/data/ledgersData/ledgers.redb");
    let db = redb::Builder::new()
        .create_with_backend(peer_core::env::DynBackend(peer_core::env::Storage::open_db(&*storage, inventory).unwrap()))
        .unwrap();
    let write = db.begin_write().unwrap();
    write.open_table(redb::TableDefinition::<&str, &str>::new("meta")).unwrap().insert("format", "from-the-future/9").unwrap();
    write.commit().unwrap();
    drop(db);
    let expected = "unexpected format. db info = [/mem/data/ledgersData/ledgers.redb], data format = [from-the-future/9], expected format = [peer-core-ledger/1]";
    assert_eq!(commands::upgrade_dbs(&env, fsp(), HOLDER).unwrap_err().to_string(), expected);
    assert_eq!(commands::reset(&env, fsp(), HOLDER).unwrap_err().to_string(), expected);
    assert_eq!(LedgerMgr::open(&env, fsp(), HOLDER).unwrap_err().to_string(), expected);
}

#[test]
fn a_corrupt_channel_store_is_rebuilt_from_genesis_and_kept_aside_untouched() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "good", 3);
    channel_with(&mgr, "bad", 3);
    drop(mgr);
    let bad = Path::new("/mem/data/ledgersData/chains/bad.redb");
    let garbage = garbage();
    storage.overwrite(bad, &garbage);

    let (mgr, log) = logged(|| LedgerMgr::open(&env, fsp(), HOLDER).unwrap());
    assert_eq!(mgr.active_channels(), ["bad", "good"]);
    assert_eq!(mgr.channel("good").unwrap().height(), 3);
    assert!(mgr.channel_errors().is_empty(), "{:?}", mgr.channel_errors());
    // Nothing of the garbage could be proven: back to the genesis block, the rest comes again
    // from the network. The damaged file is kept, byte for byte, in quarantine/.
    assert_eq!(mgr.channel("bad").unwrap().height(), 1);
    assert_eq!(mgr.channel("bad").unwrap().block(0).unwrap().unwrap(), genesis("bad"));
    let heals = mgr.healed();
    assert_eq!(heals.len(), 1);
    assert_eq!(heals[0].salvaged.quarantined.as_deref(), Some(Path::new("/mem/data/ledgersData/quarantine/bad.redb")));
    assert_eq!(storage.read(Path::new("/mem/data/ledgersData/quarantine/bad.redb")), garbage);
    assert!(
        log.contains("ERRO") && log.contains("Failed to load ledger bad(channel [bad]: database /mem/data/ledgersData/chains/bad.redb: "),
        "{log}"
    );
    assert!(log.contains("Rebuilt ledger [bad] from its genesis block: kept blocks [0..0] proven by the hash chain, the damaged file was moved to /mem/data/ledgersData/quarantine/bad.redb"), "{log}");
    // The rebuilt channel takes blocks again.
    let ledger = mgr.channel("bad").unwrap();
    ledger.append(&next("bad", &ledger.block(0).unwrap().unwrap(), 1)).unwrap();
    drop(mgr);
    commands::reset(&env, fsp(), HOLDER).unwrap();
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.channel("good").unwrap().height(), 1);
}

#[test]
fn a_store_of_another_format_is_reported_not_rebuilt() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "other", 2);
    drop(mgr);
    let path = Path::new("/mem/data/ledgersData/chains/other.redb");
    let db = redb::Builder::new()
        .create_with_backend(peer_core::env::DynBackend(peer_core::env::Storage::open_db(&*storage, path).unwrap()))
        .unwrap();
    let write = db.begin_write().unwrap();
    write.open_table(redb::TableDefinition::<&str, &str>::new("meta")).unwrap().insert("format", "from-the-future/9").unwrap();
    write.commit().unwrap();
    drop(db);
    let before = storage.read(path);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert!(mgr.active_channels().is_empty());
    assert!(mgr.healed().is_empty());
    let err = mgr.channel_errors()["other"].to_string();
    assert!(err.contains("data format = [from-the-future/9]"), "{err}");
    drop(mgr);
    assert_eq!(storage.read(path), before);
}

#[test]
fn appends_from_several_tasks_serialize() {
    let storage = Arc::new(MemStorage::default());
    let mgr = LedgerMgr::open(&env(&storage), fsp(), HOLDER).unwrap();
    let ledger = mgr.create_from_genesis(&genesis("ch")).unwrap();
    let tip = Arc::new(tokio::sync::Mutex::new(ledger.block(0).unwrap().unwrap()));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (ledger, tip) = (ledger.clone(), tip.clone());
            tasks.spawn(async move {
                for _ in 0..5 {
                    let mut tip = tip.lock().await;
                    let block = next("ch", &tip, 1);
                    ledger.append(&block).unwrap();
                    *tip = block;
                    drop(tip);
                    tokio::task::yield_now().await;
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
    });
    assert_eq!(ledger.height(), 21);
    ledger.verify_chain().unwrap();
}

#[test]
fn a_store_that_fails_while_serving_is_rebuilt_in_place() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    let blocks = channel_with(&mgr, "ch", 200);
    drop(mgr);
    // Block 5 goes bad on disk. It is below the tail checked at open, so the peer starts and
    // serves, and finds out when the block is read.
    let path = Path::new("/mem/data/ledgersData/chains/ch.redb");
    let mut bytes = storage.read(path);
    let record = peer_core::ledger::channel::encode_record(&blocks[5]);
    // Every copy (redb writes pages anew, so older copies of a leaf may stay in free pages).
    let copies: Vec<usize> = bytes.windows(record.len()).enumerate().filter(|(_, w)| *w == record.as_slice()).map(|(at, _)| at).collect();
    assert!(!copies.is_empty(), "block 5 is in the file");
    for at in copies {
        bytes[at + record.len() / 2] ^= 0x40;
    }
    storage.overwrite(path, &bytes);
    let (mgr, _) = logged(|| LedgerMgr::open(&env, fsp(), HOLDER).unwrap());
    assert!(mgr.healed().is_empty());
    let ledger = mgr.channel("ch").unwrap();
    assert_eq!(ledger.height(), 200);
    let mut alarm = mgr.subscribe_alarm();

    let (err, log) = logged(|| ledger.block(5).unwrap_err());
    assert!(err.is_damage(), "{err}");
    assert!(err.to_string().contains("block [5] fails its checksum"), "{err}");
    assert!(
        log.contains("The block store of channel [ch] at /mem/data/ledgersData/chains/ch.redb is damaged: block [5] fails its checksum"),
        "{log}"
    );
    assert!(alarm.has_changed().unwrap());
    alarm.mark_unchanged();
    // Failed for good: other reads and appends are refused with the same reason, and nothing
    // is written to the file any more.
    assert!(ledger.block(150).unwrap_err().to_string().contains("block [5] fails its checksum"));
    assert!(ledger.append(&next("ch", &blocks[199], 1)).is_err());
    assert_eq!(storage.read(path), bytes);

    let (heals, log) = logged(|| mgr.heal_failed());
    assert_eq!(heals.len(), 1);
    let heal = heals[0].as_ref().unwrap();
    assert_eq!(heal.salvaged.height, 5);
    assert!(log.contains("Rebuilt ledger [ch] from its genesis block: kept blocks [0..4] proven by the hash chain"), "{log}");
    assert_eq!(storage.read(Path::new("/mem/data/ledgersData/quarantine/ch.redb")), bytes);
    // The same ledger handle goes on, at the lower height, and takes the missing blocks again.
    assert_eq!(ledger.height(), 5);
    assert_eq!(ledger.failed(), None);
    for block in &blocks[5..] {
        ledger.append(block).unwrap();
    }
    assert_eq!(ledger.height(), 200);
    ledger.verify_chain().unwrap();
    drop(mgr);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    assert_eq!(mgr.channel("ch").unwrap().height(), 200);
}

#[test]
fn a_channel_that_could_not_be_rebuilt_at_start_is_tried_again() {
    let storage = Arc::new(MemStorage::default());
    let env = env(&storage);
    let mgr = LedgerMgr::open(&env, fsp(), HOLDER).unwrap();
    channel_with(&mgr, "good", 3);
    channel_with(&mgr, "bad", 3);
    drop(mgr);
    let garbage = garbage();
    storage.overwrite(Path::new("/mem/data/ledgersData/chains/bad.redb"), &garbage);
    // Every salvage at start fails to move the damaged file away: the channel is left out.
    storage.failing_renames.store(3, std::sync::atomic::Ordering::SeqCst);
    let (mgr, log) = logged(|| LedgerMgr::open(&env, fsp(), HOLDER).unwrap());
    assert_eq!(mgr.active_channels(), ["good"]);
    assert!(mgr.has_unhealed());
    assert!(log.contains("Could not rebuild ledger [bad] (attempt 1 of 3): "), "{log}");
    // Later the disk behaves: the retry rebuilds and serves it.
    assert_eq!(mgr.retry_unhealed(), ["bad"]);
    assert!(!mgr.has_unhealed());
    assert_eq!(mgr.active_channels(), ["bad", "good"]);
    assert_eq!(mgr.channel("bad").unwrap().height(), 1);
    assert_eq!(storage.read(Path::new("/mem/data/ledgersData/quarantine/bad.redb")), garbage);
}
