//! One channel's block store: a redb database of its own at `ledgersData/chains/<channelID>.redb`.
//!
//! Tables (all in the one file):
//! - `meta`: `format` → [`CHANNEL_FORMAT`].
//! - `blocks`: block number → a record: the CRC32C of the block's protobuf `common.Block` bytes
//!   (4 bytes, little-endian), then those bytes. **The source of truth.** Every read checks the
//!   checksum, so a damaged block is an error, never served.
//! - `index_block_by_hash`: header hash → block number; `index_tx_by_id`: transaction ID →
//!   (block number, transaction index), first occurrence wins; `index_checkpoint`:
//!   `indexed_height`. These are derived: `node rebuild-dbs` deletes them and [`ChannelLedger::open`]
//!   rebuilds whatever is missing or behind from the blocks (Fabric's `syncIndex`).
//! - `pre_reset`: `height` → the height before the last `node reset`/`rollback` (Fabric's
//!   `__preResetHeight` file).
//!
//! Every append is one redb write transaction with `Durability::Immediate` holding the block, its
//! index entries and the index checkpoint, so after a crash the store is at the old or the new
//! height with the indexes matching.
//!
//! Damage on disk (see `guard.rs` for why redb needs guarding): a store is opened first over an
//! in-memory overlay, so opening, repairing and checking it writes nothing; it is opened for
//! writing only when something is to be written. Every redb call runs in a shield; the first
//! failure (a damaged page, a checksum mismatch, a broken chain, an I/O error on read) marks the
//! store failed, raises its fence so the file is never written again, and is reported once.
//! [`salvage`] then rebuilds the channel from its genesis block and the blocks the hash chain still
//! proves, and moves the damaged file to `quarantine/`. What this module does not do: verify
//! orderer signatures (the caller does that before `append`), keep world state, or decide which
//! channels exist (the inventory in `ledger/mod.rs` does).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use proto::common::{Block, BlockHeader, BlockchainInfo};
use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::watch;
use tracing::{info, warn};

use super::LedgerError;
use super::block::{self, header_hash, header_of};
use super::guard::{GuardedDb, OpenError};
use crate::env::Storage;

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BY_HASH: TableDefinition<&[u8], u64> = TableDefinition::new("index_block_by_hash");
const BY_TX_ID: TableDefinition<&str, (u64, u32)> = TableDefinition::new("index_tx_by_id");
const INDEX_CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("index_checkpoint");
const PRE_RESET: TableDefinition<&str, u64> = TableDefinition::new("pre_reset");
const FORMAT_KEY: &str = "format";
const INDEXED_HEIGHT: &str = "indexed_height";
const PRE_RESET_HEIGHT: &str = "height";

/// The format of a channel's database written by this build (2: checksummed block records).
pub const CHANNEL_FORMAT: &str = "peer-core-chain/2";
/// Per-channel redb cache: blocks are written once and read mostly near the tip, and simulated
/// peers with many channels share one process's RAM.
const CACHE_BYTES: usize = 4 << 20;
/// How many blocks at the tip are re-verified (checksum, decode, data hash, hash chain) at every
/// open. Every later read checks its block's checksum, so damage below the tip is found when the
/// block is read; [`ChannelLedger::verify_all`] checks everything on demand (offline commands).
const VERIFY_TAIL_BLOCKS: u64 = 16;
/// Index rebuilds and salvage commit every this many blocks, so a crash mid-way resumes.
const BATCH_BLOCKS: u64 = 1000;

/// The path of a channel's database under `ledgersData`.
pub fn db_path(root: &Path, channel_id: &str) -> PathBuf {
    root.join("chains").join(format!("{channel_id}.redb"))
}

/// Where [`salvage`] builds a channel's new store before renaming it into place.
fn healing_path(root: &Path, channel_id: &str) -> PathBuf {
    root.join("chains").join(format!("{channel_id}.redb.healing"))
}

/// The folder damaged stores are moved to once their data is recovered.
pub fn quarantine_dir(root: &Path) -> PathBuf {
    root.join("quarantine")
}

/// What went wrong inside the store, before it is given the channel's name and path.
#[derive(Debug)]
pub(crate) enum StoreError {
    Db(redb::Error),
    Corrupt(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl StoreError {
    /// The text an operator reads (see [`db_error_text`]).
    pub(crate) fn text(&self) -> String {
        match self {
            StoreError::Db(e) => db_error_text(e),
            StoreError::Corrupt(what) => what.clone(),
        }
    }
}

/// A redb error in the operator's words. I/O failures keep the OS's text (`I/O error: no space
/// left on device`). A damaged file is said to be found corrupt by redb, its diagnosis quoted
/// as redb's (redb's own "DB corrupted:" prefix is dropped; its terms, roots, regions, layouts,
/// are redb's internals, useful in a bug report, not what the operator acts on). The states
/// that mean "not a database", "open it again" or "another process has it" get our words; the
/// rest are bugs, shown as redb says them.
pub(crate) fn db_error_text(error: &redb::Error) -> String {
    match error {
        redb::Error::Corrupted(detail) => format!("redb found the file corrupt: {detail}"),
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData && io.to_string().starts_with("Not a redb database") => {
            "the file is not a redb database (its first bytes are not redb's)".to_string()
        }
        redb::Error::PreviousIo => "an earlier read or write of the file failed; it must be opened again before it is used".to_string(),
        redb::Error::DatabaseAlreadyOpen => "the file is already open (in another process?)".to_string(),
        redb::Error::UpgradeRequired(version) => format!("the file is in redb's file format {version}, which this build does not read"),
        other => other.to_string(),
    }
}

/// A block as stored: its checksum, then its bytes.
pub fn encode_record(block: &Block) -> Vec<u8> {
    let bytes = block.encode_to_vec();
    let mut record = Vec::with_capacity(bytes.len() + 4);
    record.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    record.extend_from_slice(&bytes);
    record
}

/// A stored record back to its block: the checksum must match and the bytes decode.
fn decode_record(number: u64, record: &[u8]) -> Result<Block, StoreError> {
    let Some((sum, bytes)) = record.split_first_chunk::<4>() else {
        return Err(StoreError::Corrupt(format!("block [{number}] is stored as {} bytes, too short for a record", record.len())));
    };
    let (stored, computed) = (u32::from_le_bytes(*sum), crc32c::crc32c(bytes));
    if stored != computed {
        return Err(StoreError::Corrupt(format!("block [{number}] fails its checksum (stored {stored:08x}, computed {computed:08x})")));
    }
    Block::decode(bytes).map_err(|e| StoreError::Corrupt(format!("block [{number}] does not decode: {e}")))
}

/// Checks one stored block against its number and its predecessor's header.
fn check_stored(number: u64, block: &Block, previous: Option<&BlockHeader>) -> Result<(), StoreError> {
    let header = block.header.as_ref().ok_or_else(|| StoreError::Corrupt(format!("block [{number}] has no header")))?;
    if header.number != number {
        return Err(StoreError::Corrupt(format!("block [{number}] is stored with the header number [{}]", header.number)));
    }
    let computed = block::data_hash(&block.data.clone().unwrap_or_default());
    if header.data_hash != computed {
        return Err(StoreError::Corrupt(format!(
            "block [{number}] data hash [{}] does not match its data [{}]",
            hex::encode(&header.data_hash),
            hex::encode(computed)
        )));
    }
    if let Some(previous) = previous {
        let expected = header_hash(previous);
        if header.previous_hash != expected {
            return Err(StoreError::Corrupt(format!(
                "block [{number}] previous hash [{}] is not the hash of block [{}] [{}]",
                hex::encode(&header.previous_hash),
                number - 1,
                hex::encode(expected)
            )));
        }
    }
    Ok(())
}

/// Adds a block's index entries (hash, transaction IDs) inside `write`.
fn index_block(write: &WriteTransaction, number: u64, block: &Block) -> Result<(), StoreError> {
    let hash = header_hash(&header_of(block));
    write.open_table(BY_HASH)?.insert(hash.as_slice(), number)?;
    let mut by_tx = write.open_table(BY_TX_ID)?;
    for (index, envelope) in block.data.as_ref().map(|d| d.data.as_slice()).unwrap_or_default().iter().enumerate() {
        let Some(header) = block::channel_header(envelope) else { continue };
        let Ok(index) = u32::try_from(index) else { break };
        if !header.tx_id.is_empty() && by_tx.get(header.tx_id.as_str())?.is_none() {
            by_tx.insert(header.tx_id.as_str(), (number, index))?;
        }
    }
    Ok(())
}

/// Removes a block's index entries inside `write` (those that point at it).
fn unindex_block(write: &WriteTransaction, number: u64, block: &Block) -> Result<(), StoreError> {
    let hash = header_hash(&header_of(block));
    let mut by_hash = write.open_table(BY_HASH)?;
    if by_hash.get(hash.as_slice())?.map(|v| v.value()) == Some(number) {
        by_hash.remove(hash.as_slice())?;
    }
    let mut by_tx = write.open_table(BY_TX_ID)?;
    for envelope in block.data.as_ref().map(|d| d.data.as_slice()).unwrap_or_default() {
        let Some(header) = block::channel_header(envelope) else { continue };
        if by_tx.get(header.tx_id.as_str())?.map(|v| v.value().0) == Some(number) {
            by_tx.remove(header.tx_id.as_str())?;
        }
    }
    Ok(())
}

/// A table for reading, or `None` if it was never created (or was dropped by `rebuild-dbs`).
fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match read.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn begin_write(db: &redb::Database) -> Result<WriteTransaction, StoreError> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    Ok(write)
}

/// `(len, last key)` of the blocks table: the height is `last + 1`, and the table must hold
/// exactly the blocks `0..height`.
fn stored_height(db: &redb::Database) -> Result<u64, StoreError> {
    let read = db.begin_read()?;
    let Some(blocks) = open_read(&read, BLOCKS)? else { return Ok(0) };
    let len = blocks.len()?;
    let last = blocks.last()?.map(|(k, _)| k.value());
    match last {
        None => Ok(0),
        Some(last) if last.checked_add(1) == Some(len) => Ok(len),
        Some(last) => Err(StoreError::Corrupt(format!("the blocks table holds {len} blocks but the last is block [{last}]"))),
    }
}

fn read_block_in(db: &redb::Database, number: u64) -> Result<Option<Block>, StoreError> {
    let read = db.begin_read()?;
    let Some(table) = open_read(&read, BLOCKS)? else { return Ok(None) };
    let Some(record) = table.get(number)? else { return Ok(None) };
    decode_record(number, record.value()).map(Some)
}

/// The in-memory tip, updated after each committed append.
#[derive(Clone, Debug)]
struct Tip {
    height: u64,
    current_hash: Vec<u8>,
    previous_hash: Vec<u8>,
}

/// One channel's ledger (its block store). Shared across tasks (`Arc<ChannelLedger>`); appends
/// serialize on an internal lock, reads run concurrently on redb snapshots.
///
/// A store that fails (see the module doc) refuses every later read and write with the first
/// failure's reason; [`ChannelLedger::subscribe_failure`] tells whoever heals it.
pub struct ChannelLedger {
    id: String,
    path: PathBuf,
    /// The redb database behind its guards (`guard.rs`).
    db: GuardedDb,
    /// Held for a whole append: appends are one at a time.
    append_lock: Mutex<()>,
    tip: Mutex<Tip>,
    /// The height, for waiters (Deliver's BLOCK_UNTIL_READY).
    height: watch::Sender<u64>,
}

impl std::fmt::Debug for ChannelLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelLedger").field("id", &self.id).field("path", &self.path).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ChannelLedger {
    fn wrap(&self, error: StoreError) -> LedgerError {
        wrap(&self.id, &self.path, error)
    }

    /// Opens the file of a channel store, read-only until something is written (see
    /// [`GuardedDb`]). Writes nothing: a missing file is an error.
    fn open_file(storage: &Arc<dyn Storage>, path: &Path, channel_id: &str) -> Result<ChannelLedger, LedgerError> {
        let label = format!("The block store of channel [{channel_id}]");
        let db = GuardedDb::open(storage, path, CACHE_BYTES, label).map_err(|e| match e {
            OpenError::Missing => {
                LedgerError::Corrupt { channel: channel_id.to_string(), path: path.to_path_buf(), what: "the file is missing".into() }
            }
            OpenError::Io(source) => LedgerError::Io { path: path.to_path_buf(), source },
            OpenError::Store(e) => wrap(channel_id, path, e),
        })?;
        let (height, _) = watch::channel(0);
        Ok(ChannelLedger {
            id: channel_id.to_string(),
            path: path.to_path_buf(),
            db,
            append_lock: Mutex::new(()),
            tip: Mutex::new(Tip { height: 0, current_hash: Vec::new(), previous_hash: Vec::new() }),
            height,
        })
    }

    /// Runs `f` on the database for reading; a failure marks the store failed.
    fn read<T>(&self, f: impl Fn(&redb::Database) -> Result<T, StoreError>) -> Result<T, LedgerError> {
        self.db.read(f).map_err(|e| self.wrap(e))
    }

    /// Runs `f` on the database for writing (the caller holds the append lock).
    fn write<T>(&self, f: impl FnOnce(&redb::Database) -> Result<T, StoreError>) -> Result<T, LedgerError> {
        self.db.write(f).map_err(|e| self.wrap(e))
    }

    fn check_failed(&self) -> Result<(), LedgerError> {
        match self.db.failed() {
            Some(what) => Err(LedgerError::Corrupt { channel: self.id.clone(), path: self.path.clone(), what }),
            None => Ok(()),
        }
    }

    /// Marks the store failed with `error` (see [`GuardedDb::fail`]).
    fn fail(&self, error: StoreError) -> LedgerError {
        let what = self.db.fail(error);
        LedgerError::Corrupt { channel: self.id.clone(), path: self.path.clone(), what }
    }

    /// Why the store failed (`None` while it is sound); changes once, when it fails.
    pub fn subscribe_failure(&self) -> watch::Receiver<Option<String>> {
        self.db.subscribe_failure()
    }

    /// Why the store failed, if it has.
    pub fn failed(&self) -> Option<String> {
        self.db.failed()
    }

    fn set_tip(&self, tip: Tip) {
        let height = tip.height;
        *lock(&self.tip) = tip;
        self.height.send_replace(height);
    }

    /// The checks a genesis block must pass (a header, number 0, the data hash), without I/O:
    /// `LedgerMgr::create_from_genesis` runs them before it writes anything.
    pub(crate) fn check_genesis(channel_id: &str, genesis: &Block) -> Result<(), LedgerError> {
        let header = genesis.header.as_ref().ok_or_else(|| LedgerError::MissingHeader { channel: channel_id.to_string() })?;
        if header.number != 0 {
            return Err(LedgerError::BlockNumber { channel: channel_id.to_string(), expected: 0, found: header.number });
        }
        check_data_hash(channel_id, genesis)
    }

    /// Creates the store of a new channel from its genesis block, replacing any file left by an
    /// earlier creation that did not complete. The format marker and block 0 go in one
    /// transaction: the store is either empty or holds the genesis block.
    pub(crate) fn create(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str, genesis: &Block) -> Result<ChannelLedger, LedgerError> {
        ChannelLedger::create_at(storage, &db_path(root, channel_id), channel_id, genesis)
    }

    fn create_at(storage: &Arc<dyn Storage>, path: &Path, channel_id: &str, genesis: &Block) -> Result<ChannelLedger, LedgerError> {
        ChannelLedger::check_genesis(channel_id, genesis)?;
        storage.remove_file(path).map_err(|source| LedgerError::Io { path: path.to_path_buf(), source })?;
        let file = storage.open_db(path).map_err(|source| LedgerError::Io { path: path.to_path_buf(), source })?;
        drop(file);
        let ledger = ChannelLedger::open_file(storage, path, channel_id)?;
        let _appending = lock(&ledger.append_lock);
        ledger.write(|db| {
            let write = begin_write(db)?;
            write.open_table(META)?.insert(FORMAT_KEY, CHANNEL_FORMAT)?;
            write.open_table(BLOCKS)?.insert(0, encode_record(genesis).as_slice())?;
            index_block(&write, 0, genesis)?;
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, 1)?;
            write.commit()?;
            Ok(())
        })?;
        let header = header_of(genesis);
        ledger.set_tip(Tip { height: 1, current_hash: header_hash(&header).to_vec(), previous_hash: header.previous_hash });
        drop(_appending);
        Ok(ledger)
    }

    /// Opens an existing channel store without checking its blocks or indexes (offline commands
    /// and crash recovery use it). The format marker must be this build's. Writes nothing.
    pub(crate) fn open_raw(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Result<ChannelLedger, LedgerError> {
        let ledger = ChannelLedger::open_file(storage, &db_path(root, channel_id), channel_id)?;
        let format = ledger.read(|db| {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, META)? else { return Ok(None) };
            Ok(table.get(FORMAT_KEY)?.map(|v| v.value().to_string()))
        })?;
        match format {
            Some(found) if found == CHANNEL_FORMAT => {}
            Some(found) => return Err(LedgerError::ChannelFormat { channel: channel_id.to_string(), path: ledger.path.clone(), found }),
            None => {
                return Err(ledger
                    .fail(StoreError::Corrupt("it has no format marker (not a channel store, or its creation did not complete)".into())));
            }
        }
        let tip = ledger.read(read_tip)?;
        ledger.set_tip(tip);
        Ok(ledger)
    }

    /// Opens an existing channel store for serving: checks the height and the hash chain of the
    /// last blocks, and rebuilds the indexes if they are missing or behind.
    /// A failure while serving is logged once and rings `alarm` (the ledger manager heals it).
    pub(crate) fn open(
        storage: &Arc<dyn Storage>,
        root: &Path,
        channel_id: &str,
        alarm: &watch::Sender<u64>,
    ) -> Result<ChannelLedger, LedgerError> {
        let ledger = ChannelLedger::open_raw(storage, root, channel_id)?;
        ledger.check_for_service()?;
        ledger.db.set_reporting(alarm.clone());
        Ok(ledger)
    }

    /// The checks before serving: a genesis block, the tail's hash chain, the indexes.
    fn check_for_service(&self) -> Result<(), LedgerError> {
        let height = self.height();
        if height == 0 {
            return Err(self.fail(StoreError::Corrupt("it holds no genesis block".into())));
        }
        self.read(|db| verify_from(db, height.saturating_sub(VERIFY_TAIL_BLOCKS)))?;
        self.sync_index()
    }

    /// A store created by [`ChannelLedger::create`] is in service: a failure rings `alarm`.
    pub(crate) fn set_alarm(&self, alarm: &watch::Sender<u64>) {
        self.db.set_reporting(alarm.clone());
    }

    /// Rebuilds this failed (or any) store in place with [`salvage`]: closes the file, salvages
    /// it from `genesis`, and reopens the rebuilt one, whose height may be lower (the tip and the
    /// height watch follow). Whoever holds this ledger keeps using it.
    pub(crate) fn heal(&self, storage: &Arc<dyn Storage>, root: &Path, genesis: &Block) -> Result<Salvaged, LedgerError> {
        let _appending = lock(&self.append_lock);
        self.db.close();
        let salvaged = salvage(storage, root, &self.id, genesis)?;
        self.db.reopen(storage).map_err(|e| match e {
            OpenError::Missing => {
                LedgerError::Corrupt { channel: self.id.clone(), path: self.path.clone(), what: "the file is missing".into() }
            }
            OpenError::Io(source) => LedgerError::Io { path: self.path.clone(), source },
            OpenError::Store(e) => self.wrap(e),
        })?;
        let tip = self.read(read_tip)?;
        self.set_tip(tip);
        drop(_appending);
        self.check_for_service()?;
        Ok(salvaged)
    }

    /// Checks the whole chain: every block's checksum, that it decodes, carries its number,
    /// matches its data hash and links to its predecessor's header hash. One checksum, one decode
    /// and two SHA-256 per block.
    pub fn verify_chain(&self) -> Result<(), LedgerError> {
        self.read(|db| verify_from(db, 0))
    }

    /// [`ChannelLedger::verify_chain`], then every entry of every other table read once, so a
    /// damaged page anywhere in the live data is found (read-only: before an offline command
    /// writes anything).
    pub(crate) fn verify_all(&self) -> Result<(), LedgerError> {
        self.verify_chain()?;
        self.read(|db| {
            let read = db.begin_read()?;
            if let Some(table) = open_read(&read, BY_HASH)? {
                for entry in table.iter()? {
                    entry?;
                }
            }
            if let Some(table) = open_read(&read, BY_TX_ID)? {
                for entry in table.iter()? {
                    entry?;
                }
            }
            for definition in [INDEX_CHECKPOINT, PRE_RESET] {
                if let Some(table) = open_read(&read, definition)? {
                    for entry in table.iter()? {
                        entry?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Brings the indexes up to the blocks (Fabric's `syncIndex`), in batches that each commit
    /// their checkpoint.
    fn sync_index(&self) -> Result<(), LedgerError> {
        let height = self.height();
        let mut indexed = self.indexed_height()?;
        let _appending = lock(&self.append_lock);
        if indexed > height {
            // Only a store not written by this module gets here; the indexes are derived, so start over.
            warn!(target: "blkstorage", func = "syncIndex", "Index of channel [{}] is ahead of its blocks ({indexed} > {height}), rebuilding it", self.id);
            self.write(drop_index_tables)?;
            indexed = 0;
        }
        if indexed == height {
            return Ok(());
        }
        info!(target: "blkstorage", func = "syncIndex", "Start building index from block [{indexed}] to last block [{}]", height - 1);
        while indexed < height {
            let end = height.min(indexed.saturating_add(BATCH_BLOCKS));
            self.write(|db| {
                let write = begin_write(db)?;
                for number in indexed..end {
                    let block = read_block_in(db, number)?.ok_or_else(|| StoreError::Corrupt(format!("block [{number}] is missing")))?;
                    index_block(&write, number, &block)?;
                    if number % 10_000 == 0 && number > 0 {
                        info!(target: "blkstorage", func = "syncIndex", "Indexed block number [{number}]");
                    }
                }
                write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, end)?;
                write.commit()?;
                Ok(())
            })?;
            indexed = end;
        }
        info!(target: "blkstorage", func = "syncIndex", "Finished building index. Last block indexed [{}]", height - 1);
        Ok(())
    }

    /// How many blocks (from 0) the indexes cover.
    fn indexed_height(&self) -> Result<u64, LedgerError> {
        self.read(|db| {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, INDEX_CHECKPOINT)? else { return Ok(0) };
            Ok(table.get(INDEXED_HEIGHT)?.map(|v| v.value()).unwrap_or(0))
        })
    }

    /// The channel ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file this channel's store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of blocks (the next block's number).
    pub fn height(&self) -> u64 {
        *self.height.borrow()
    }

    /// Fabric's `BlockchainInfo`: height, the last block's header hash and its previous hash.
    pub fn info(&self) -> BlockchainInfo {
        let tip = lock(&self.tip).clone();
        BlockchainInfo {
            height: tip.height,
            current_block_hash: tip.current_hash,
            previous_block_hash: tip.previous_hash,
            bootstrapping_snapshot_info: None,
        }
    }

    /// Watches the height: the receiver sees every committed append (Deliver's BLOCK_UNTIL_READY
    /// waits on `changed()`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    /// Block `number`, or `None` at or above the height. The block's checksum is checked; a
    /// damaged block is an error (and fails the store), never returned.
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        self.read(|db| read_block_in(db, number))
    }

    /// The block whose header hash is `hash`.
    pub fn block_by_hash(&self, hash: &[u8]) -> Result<Option<Block>, LedgerError> {
        let number = self.read(|db| {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, BY_HASH)? else { return Ok(None) };
            Ok(table.get(hash)?.map(|v| v.value()))
        })?;
        match number {
            Some(number) => self.block(number),
            None => Ok(None),
        }
    }

    /// Where the transaction with this ID is: (block number, index in the block). The first
    /// occurrence when an ID repeats (Fabric marks later ones as duplicates at validation).
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<(u64, u32)>, LedgerError> {
        self.read(|db| {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, BY_TX_ID)? else { return Ok(None) };
            Ok(table.get(tx_id)?.map(|v| v.value()))
        })
    }

    /// The block holding the transaction with this ID.
    pub fn block_by_tx_id(&self, tx_id: &str) -> Result<Option<Block>, LedgerError> {
        match self.tx_location(tx_id)? {
            Some((number, _)) => self.block(number),
            None => Ok(None),
        }
    }

    /// The height recorded by the last `node reset`/`rollback`, if any: endorsement waits until
    /// the channel is back there.
    pub fn pre_reset_height(&self) -> Result<Option<u64>, LedgerError> {
        self.read(|db| {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, PRE_RESET)? else { return Ok(None) };
            Ok(table.get(PRE_RESET_HEIGHT)?.map(|v| v.value()))
        })
    }

    /// Forgets the pre-reset height (the channel has caught up).
    pub fn clear_pre_reset_height(&self) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        self.write(|db| {
            let write = begin_write(db)?;
            write.open_table(PRE_RESET)?.remove(PRE_RESET_HEIGHT)?;
            write.commit()?;
            Ok(())
        })
    }

    /// Appends the next block: its number must be the height, its previous hash the tip's header
    /// hash, and its data hash must match its data. Orderer signatures are the caller's to check.
    /// Returns once the block is durable; then subscribers see the new height.
    pub fn append(&self, block: &Block) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        self.check_failed()?;
        let tip = lock(&self.tip).clone();
        let header = block.header.as_ref().ok_or_else(|| LedgerError::MissingHeader { channel: self.id.clone() })?;
        if header.number != tip.height {
            return Err(LedgerError::BlockNumber { channel: self.id.clone(), expected: tip.height, found: header.number });
        }
        if header.previous_hash != tip.current_hash {
            return Err(LedgerError::PreviousHash {
                channel: self.id.clone(),
                expected: tip.current_hash,
                found: header.previous_hash.clone(),
            });
        }
        check_data_hash(&self.id, block)?;
        let number = header.number;
        let record = encode_record(block);
        self.write(|db| {
            let write = begin_write(db)?;
            // The other end of the checks above, on what is stored: the slot was empty and the
            // indexes were caught up with the tip. Anything else means the database and the tip
            // disagree; the transaction is dropped (nothing written) and the ledger fails.
            if write.open_table(BLOCKS)?.insert(number, record.as_slice())?.is_some() {
                return Err(StoreError::Corrupt(format!("block [{number}] was already stored at height {number}")));
            }
            index_block(&write, number, block)?;
            let indexed = write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, number + 1)?.map(|v| v.value());
            if indexed.unwrap_or(0) != number {
                return Err(StoreError::Corrupt(format!(
                    "the indexes reach height {} but the tip is at height {number}",
                    indexed.unwrap_or(0)
                )));
            }
            write.commit()?;
            Ok(())
        })?;
        self.set_tip(Tip { height: number + 1, current_hash: header_hash(header).to_vec(), previous_hash: header.previous_hash.clone() });
        Ok(())
    }

    /// Keeps blocks `0..keep_height` and drops the rest, with their index entries, recording the
    /// current height as the pre-reset height if it is larger than the recorded one. One
    /// transaction: a power cut leaves either the old chain or the shortened one, never a gap, and
    /// repeating the command after a cut is safe (the recorded height only grows). Returns the
    /// height before. The blocks to drop are read (and checked) before anything is written.
    pub(crate) fn truncate(&self, keep_height: u64) -> Result<u64, LedgerError> {
        let _appending = lock(&self.append_lock);
        let height = self.height();
        let indexed = self.indexed_height()?;
        let mut dropped = Vec::new();
        for n in keep_height..height {
            let block = self.block(n)?.ok_or_else(|| self.fail(StoreError::Corrupt(format!("block [{n}] is missing"))))?;
            dropped.push((n, block));
        }
        self.write(|db| {
            let write = begin_write(db)?;
            {
                let mut pre_reset = write.open_table(PRE_RESET)?;
                let recorded = pre_reset.get(PRE_RESET_HEIGHT)?.map(|v| v.value()).unwrap_or(0);
                if height > recorded {
                    pre_reset.insert(PRE_RESET_HEIGHT, height)?;
                }
            }
            for batch in dropped.chunks(10) {
                let (first, last) = (batch[0].0, batch[batch.len() - 1].0);
                if first < indexed {
                    info!(target: "blkstorage", func = "deleteIndexEntries", "Deleting index associated with block number [{first}] to [{last}]");
                }
                for (n, block) in batch {
                    if *n < indexed {
                        unindex_block(&write, *n, block)?;
                    }
                    write.open_table(BLOCKS)?.remove(*n)?;
                }
            }
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, indexed.min(keep_height))?;
            write.commit()?;
            Ok(())
        })?;
        let tip = self.read(read_tip)?;
        self.set_tip(tip);
        Ok(height)
    }

    /// Deletes the derived indexes and their checkpoint; the next [`ChannelLedger::open`]
    /// rebuilds them from the blocks.
    pub(crate) fn drop_indexes(&self) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        self.write(drop_index_tables)
    }
}

/// Reads the height and the tip's hashes from the database.
fn read_tip(db: &redb::Database) -> Result<Tip, StoreError> {
    let height = stored_height(db)?;
    if height == 0 {
        return Ok(Tip { height: 0, current_hash: Vec::new(), previous_hash: Vec::new() });
    }
    let last = read_block_in(db, height - 1)?.ok_or_else(|| StoreError::Corrupt(format!("block [{}] is missing", height - 1)))?;
    let header = header_of(&last);
    Ok(Tip { height, current_hash: header_hash(&header).to_vec(), previous_hash: header.previous_hash })
}

/// Decodes and checks blocks `from..height`, each against its predecessor.
fn verify_from(db: &redb::Database, from: u64) -> Result<(), StoreError> {
    let height = stored_height(db)?;
    let mut previous = match from {
        0 => None,
        _ => Some(header_of(&read_block_in(db, from - 1)?.ok_or_else(|| StoreError::Corrupt(format!("block [{}] is missing", from - 1)))?)),
    };
    for number in from..height {
        let block = read_block_in(db, number)?.ok_or_else(|| StoreError::Corrupt(format!("block [{number}] is missing")))?;
        check_stored(number, &block, previous.as_ref())?;
        previous = block.header;
    }
    Ok(())
}

fn drop_index_tables(db: &redb::Database) -> Result<(), StoreError> {
    let write = begin_write(db)?;
    write.delete_table(BY_HASH)?;
    write.delete_table(BY_TX_ID)?;
    write.delete_table(INDEX_CHECKPOINT)?;
    write.commit()?;
    Ok(())
}

fn check_data_hash(channel_id: &str, block: &Block) -> Result<(), LedgerError> {
    let header = header_of(block);
    let computed = block::data_hash(&block.data.clone().unwrap_or_default());
    if header.data_hash != computed {
        return Err(LedgerError::DataHash {
            channel: channel_id.to_string(),
            number: header.number,
            header: header.data_hash,
            computed: computed.to_vec(),
        });
    }
    Ok(())
}

pub(crate) fn wrap(channel_id: &str, path: &Path, error: StoreError) -> LedgerError {
    match error {
        StoreError::Db(e) => {
            LedgerError::ChannelDatabase { channel: channel_id.to_string(), path: path.to_path_buf(), message: db_error_text(&e) }
        }
        StoreError::Corrupt(what) => LedgerError::Corrupt { channel: channel_id.to_string(), path: path.to_path_buf(), what },
    }
}

/// What [`salvage`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged {
    /// The channel's height now: the genesis block and the blocks after it that the hash chain
    /// proved; the rest comes again from the ordering service or the org's peers.
    pub height: u64,
    /// Where the damaged store went (`None` when there was no file).
    pub quarantined: Option<PathBuf>,
}

impl Salvaged {
    /// What the salvage of `channel_id` did, for the log.
    pub fn describe(&self, channel_id: &str) -> String {
        let moved = self.quarantined.as_ref().map(|q| format!(", the damaged file was moved to {}", q.display())).unwrap_or_default();
        format!(
            "Rebuilt ledger [{channel_id}] from its genesis block: kept blocks [0..{}] proven by the hash chain{moved}",
            self.height.saturating_sub(1)
        )
    }
}

/// A channel's height, read without writing a byte (see [`super::peek_channels`]); `None`
/// when the store is missing or cannot be read.
pub(crate) fn peek_height(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Option<u64> {
    let ledger = ChannelLedger::open_raw(storage, root, channel_id).ok()?;
    Some(ledger.height())
}

/// Finishes a salvage a crash interrupted after the damaged store was moved away: the healed
/// store (complete: it is renamed only after its last commit) takes its place. Returns whether
/// there was one.
pub(crate) fn finish_interrupted_salvage(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Result<bool, LedgerError> {
    let (path, healing) = (db_path(root, channel_id), healing_path(root, channel_id));
    if storage.exists(&path) || !storage.exists(&healing) {
        return Ok(false);
    }
    storage.rename(&healing, &path).map_err(|source| LedgerError::Io { path: healing.clone(), source })?;
    Ok(true)
}

/// Rebuilds a channel whose store is damaged or missing: a new store (built beside it, then
/// renamed into place) holds `genesis` and every following block of the old store that its
/// checksum and the hash chain still prove, up to the first that fails; the old file is moved,
/// untouched, to `quarantine/`. The old file is only ever read, over an overlay.
///
/// Crash safety: the new store is complete before the old file is moved, and
/// [`finish_interrupted_salvage`] completes the last rename; a crash before that leaves the old
/// file in place and the salvage is simply done again.
pub(crate) fn salvage(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str, genesis: &Block) -> Result<Salvaged, LedgerError> {
    let (path, healing) = (db_path(root, channel_id), healing_path(root, channel_id));
    let old = if storage.exists(&path) { ChannelLedger::open_file(storage, &path, channel_id).ok() } else { None };
    let new = ChannelLedger::create_at(storage, &healing, channel_id, genesis)?;
    if let Some(old) = &old {
        let mut previous = header_of(genesis);
        let mut next = 1u64;
        let mut done = false;
        while !done {
            let mut batch = Vec::new();
            while batch.len() < BATCH_BLOCKS as usize {
                let found = old.read(|db| read_block_in(db, next));
                match found {
                    Ok(Some(block)) if check_stored(next, &block, Some(&previous)).is_ok() => {
                        previous = header_of(&block);
                        batch.push(block);
                        next += 1;
                    }
                    _ => {
                        done = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let _appending = lock(&new.append_lock);
            new.write(|db| {
                let write = begin_write(db)?;
                for block in &batch {
                    let number = header_of(block).number;
                    write.open_table(BLOCKS)?.insert(number, encode_record(block).as_slice())?;
                    index_block(&write, number, block)?;
                }
                write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, next)?;
                write.commit()?;
                Ok(())
            })?;
        }
    }
    let height = new.read(stored_height)?;
    drop(new);
    if let Some(old) = old {
        old.db.close();
    }
    let quarantined = if storage.exists(&path) { Some(move_to_quarantine(storage, root, &path)?) } else { None };
    storage.rename(&healing, &path).map_err(|source| LedgerError::Io { path: healing.clone(), source })?;
    Ok(Salvaged { height, quarantined })
}

/// Moves a damaged file, as it is, to `quarantine/<name>.redb` (or `<name>.N.redb` when that is
/// taken) and returns where it went.
pub(crate) fn move_to_quarantine(storage: &Arc<dyn Storage>, root: &Path, file: &Path) -> Result<PathBuf, LedgerError> {
    let dir = quarantine_dir(root);
    storage.create_dir_all(&dir).map_err(|source| LedgerError::Io { path: dir.clone(), source })?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("store.redb");
    let stem = name.strip_suffix(".redb").unwrap_or(name);
    let mut target = dir.join(name);
    let mut n = 0u32;
    while storage.exists(&target) {
        n += 1;
        target = dir.join(format!("{stem}.{n}.redb"));
    }
    storage.rename(file, &target).map_err(|source| LedgerError::Io { path: file.to_path_buf(), source })?;
    Ok(target)
}
