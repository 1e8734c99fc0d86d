//! One channel's block store: a redb database of its own at `ledgersData/chains/<channelID>.redb`.
//!
//! Tables (all in the one file):
//! - `meta`: `format` → [`CHANNEL_FORMAT`].
//! - `blocks`: block number → protobuf `common.Block` bytes. **The source of truth.**
//! - `index_block_by_hash`: header hash → block number; `index_tx_by_id`: transaction ID →
//!   (block number, transaction index), first occurrence wins; `index_checkpoint`:
//!   `indexed_height`. These are derived: `node rebuild-dbs` deletes them and [`ChannelLedger::open`]
//!   rebuilds whatever is missing or behind from the blocks (Fabric's `syncIndex`).
//! - `pre_reset`: `height` → the height before the last `node reset`/`rollback` (Fabric's
//!   `__preResetHeight` file).
//!
//! Every append is one redb write transaction with `Durability::Immediate` holding the block, its
//! index entries and the index checkpoint, so after a crash the store is at the old or the new
//! height with the indexes matching. What this module does not do: verify orderer signatures (the
//! caller does that before `append`), keep world state, or decide which channels exist (the
//! inventory in `ledger/mod.rs` does).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use proto::common::{Block, BlockHeader, BlockchainInfo};
use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use tokio::sync::watch;
use tracing::{info, warn};

use super::LedgerError;
use super::block::{self, header_hash, header_of};
use crate::env::{DynBackend, Storage};

const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BY_HASH: TableDefinition<&[u8], u64> = TableDefinition::new("index_block_by_hash");
const BY_TX_ID: TableDefinition<&str, (u64, u32)> = TableDefinition::new("index_tx_by_id");
const INDEX_CHECKPOINT: TableDefinition<&str, u64> = TableDefinition::new("index_checkpoint");
const PRE_RESET: TableDefinition<&str, u64> = TableDefinition::new("pre_reset");
const FORMAT_KEY: &str = "format";
const INDEXED_HEIGHT: &str = "indexed_height";
const PRE_RESET_HEIGHT: &str = "height";

/// The format of a channel's database written by this build.
pub const CHANNEL_FORMAT: &str = "peer-core-chain/1";
/// Per-channel redb cache: blocks are written once and read mostly near the tip, and simulated
/// peers with many channels share one process's RAM.
const CACHE_BYTES: usize = 4 << 20;
/// How many blocks at the tip are re-verified (decoded, data hash, hash chain) at every open.
/// redb's commit is atomic and its repair checks page checksums, so a crash cannot leave a torn
/// block below the tip; the tail check catches a store that is not what this build wrote. A full
/// check costs one decode and two SHA-256 per block (measured: see ARCHITECTURE.md), too slow at
/// open for a long chain; [`ChannelLedger::verify_chain`] does it on demand.
const VERIFY_TAIL_BLOCKS: u64 = 16;
/// Index rebuilds commit every this many blocks (with the checkpoint), so a crash mid-rebuild
/// resumes where it stopped.
const INDEX_BATCH_BLOCKS: u64 = 1000;

/// The path of a channel's database under `ledgersData`.
pub fn db_path(root: &Path, channel_id: &str) -> PathBuf {
    root.join("chains").join(format!("{channel_id}.redb"))
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
from_redb!(redb::Error, redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::SetDurabilityError);

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
/// After an I/O error in `append` the database refuses further writes (redb needs a repair);
/// the channel must be reopened, which the next start does.
pub struct ChannelLedger {
    id: String,
    path: PathBuf,
    db: redb::Database,
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

/// Opens the redb database of a channel (creating an empty file if there is none).
fn open_database(storage: &Arc<dyn Storage>, channel_id: &str, path: &Path) -> Result<redb::Database, LedgerError> {
    let backend = storage
        .open_db(path)
        .map_err(|e| LedgerError::ChannelDatabase { channel: channel_id.to_string(), path: path.to_path_buf(), message: e.to_string() })?;
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_with_backend(DynBackend(backend))
        .map_err(|e| LedgerError::ChannelDatabase { channel: channel_id.to_string(), path: path.to_path_buf(), message: e.to_string() })
}

fn decode_block(number: u64, bytes: &[u8]) -> Result<Block, StoreError> {
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
        return Err(StoreError::Corrupt(format!("block [{number}] data hash [{}] does not match its data [{}]", hex::encode(&header.data_hash), hex::encode(computed))));
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

fn begin_write(db: &redb::Database) -> Result<WriteTransaction, StoreError> {
    let mut write = db.begin_write()?;
    write.set_durability(Durability::Immediate)?;
    Ok(write)
}

/// `(len, last key)` of the blocks table: the height is `last + 1`, and the table must hold
/// exactly the blocks `0..height`.
/// A channel's height, read without writing a byte (see [`super::peek_channels`]); `None`
/// when the store is missing or cannot be read that way (e.g. it needs recovery).
pub(crate) fn peek_height(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Option<u64> {
    let path = db_path(root, channel_id);
    if !storage.exists(&path) {
        return None;
    }
    let backend = storage.open_db(&path).ok()?;
    let db = redb::Builder::new().set_cache_size(CACHE_BYTES).open_read_only_with_backend(DynBackend(backend)).ok()?;
    let read = db.begin_read().ok()?;
    let blocks = read.open_table(BLOCKS).ok()?;
    let len = blocks.len().ok()?;
    let last = blocks.last().ok()?.map(|(k, _)| k.value());
    match last {
        None => Some(0),
        Some(last) if last.checked_add(1) == Some(len) => Some(len),
        Some(_) => None,
    }
}

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

impl ChannelLedger {
    fn wrap(&self, error: StoreError) -> LedgerError {
        wrap(&self.id, &self.path, error)
    }

    /// Creates the store of a new channel from its genesis block, replacing any file left by an
    /// earlier creation that did not complete. The format marker and block 0 go in one
    /// transaction: the store is either empty or holds the genesis block.
    /// The checks a genesis block must pass (a header, number 0, the data hash), without I/O:
    /// `LedgerMgr::create_from_genesis` runs them before it writes anything.
    pub(crate) fn check_genesis(channel_id: &str, genesis: &Block) -> Result<(), LedgerError> {
        let header = genesis.header.as_ref().ok_or_else(|| LedgerError::MissingHeader { channel: channel_id.to_string() })?;
        if header.number != 0 {
            return Err(LedgerError::BlockNumber { channel: channel_id.to_string(), expected: 0, found: header.number });
        }
        check_data_hash(channel_id, genesis)
    }

    pub(crate) fn create(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str, genesis: &Block) -> Result<ChannelLedger, LedgerError> {
        let path = db_path(root, channel_id);
        ChannelLedger::check_genesis(channel_id, genesis)?;
        let header = genesis.header.as_ref().ok_or_else(|| LedgerError::MissingHeader { channel: channel_id.to_string() })?;
        storage
            .remove_file(&path)
            .map_err(|e| LedgerError::ChannelDatabase { channel: channel_id.to_string(), path: path.clone(), message: e.to_string() })?;
        let db = open_database(storage, channel_id, &path)?;
        let commit = || -> Result<(), StoreError> {
            let write = begin_write(&db)?;
            write.open_table(META)?.insert(FORMAT_KEY, CHANNEL_FORMAT)?;
            write.open_table(BLOCKS)?.insert(0, genesis.encode_to_vec().as_slice())?;
            index_block(&write, 0, genesis)?;
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, 1)?;
            write.commit()?;
            Ok(())
        };
        commit().map_err(|e| wrap(channel_id, &path, e))?;
        let tip = Tip { height: 1, current_hash: header_hash(header).to_vec(), previous_hash: header.previous_hash.clone() };
        Ok(ChannelLedger::new(channel_id, path, db, tip))
    }

    fn new(channel_id: &str, path: PathBuf, db: redb::Database, tip: Tip) -> ChannelLedger {
        let (height, _) = watch::channel(tip.height);
        ChannelLedger { id: channel_id.to_string(), path, db, append_lock: Mutex::new(()), tip: Mutex::new(tip), height }
    }

    /// Opens an existing channel store without checking its blocks or indexes (offline commands
    /// and crash recovery use it). The format marker must be this build's.
    pub(crate) fn open_raw(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Result<ChannelLedger, LedgerError> {
        let path = db_path(root, channel_id);
        let db = open_database(storage, channel_id, &path)?;
        let format = (|| -> Result<Option<String>, StoreError> {
            let read = db.begin_read()?;
            let Some(table) = open_read(&read, META)? else { return Ok(None) };
            Ok(table.get(FORMAT_KEY)?.map(|v| v.value().to_string()))
        })()
        .map_err(|e| wrap(channel_id, &path, e))?;
        match format {
            Some(found) if found == CHANNEL_FORMAT => {}
            Some(found) => return Err(LedgerError::ChannelFormat { channel: channel_id.to_string(), path, found }),
            None => return Err(wrap(channel_id, &path, StoreError::Corrupt("it has no format marker (not a channel store, or its creation did not complete)".into()))),
        }
        let tip = Tip { height: 0, current_hash: Vec::new(), previous_hash: Vec::new() };
        let ledger = ChannelLedger::new(channel_id, path, db, tip);
        let tip = ledger.read_tip().map_err(|e| ledger.wrap(e))?;
        ledger.height.send_replace(tip.height);
        *lock(&ledger.tip) = tip;
        Ok(ledger)
    }

    /// Opens an existing channel store for serving: checks the height and the hash chain of the
    /// last blocks, and rebuilds the indexes if they are missing or behind.
    pub(crate) fn open(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Result<ChannelLedger, LedgerError> {
        let ledger = ChannelLedger::open_raw(storage, root, channel_id)?;
        let height = ledger.height();
        if height == 0 {
            return Err(ledger.wrap(StoreError::Corrupt("it holds no genesis block".into())));
        }
        ledger.verify_from(height.saturating_sub(VERIFY_TAIL_BLOCKS)).map_err(|e| ledger.wrap(e))?;
        ledger.sync_index().map_err(|e| ledger.wrap(e))?;
        Ok(ledger)
    }

    /// Reads the height and the tip's hashes from the database.
    fn read_tip(&self) -> Result<Tip, StoreError> {
        let height = stored_height(&self.db)?;
        if height == 0 {
            return Ok(Tip { height: 0, current_hash: Vec::new(), previous_hash: Vec::new() });
        }
        let last = self.read_block(height - 1)?.ok_or_else(|| StoreError::Corrupt(format!("block [{}] is missing", height - 1)))?;
        let header = header_of(&last);
        Ok(Tip { height, current_hash: header_hash(&header).to_vec(), previous_hash: header.previous_hash })
    }

    /// Decodes and checks blocks `from..height`, each against its predecessor.
    fn verify_from(&self, from: u64) -> Result<(), StoreError> {
        let height = stored_height(&self.db)?;
        let mut previous = match from {
            0 => None,
            _ => Some(header_of(&self.read_block(from - 1)?.ok_or_else(|| StoreError::Corrupt(format!("block [{}] is missing", from - 1)))?)),
        };
        for number in from..height {
            let block = self.read_block(number)?.ok_or_else(|| StoreError::Corrupt(format!("block [{number}] is missing")))?;
            check_stored(number, &block, previous.as_ref())?;
            previous = block.header;
        }
        Ok(())
    }

    /// Checks the whole chain: every block decodes, carries its number, matches its data hash and
    /// links to its predecessor's header hash. One decode and two SHA-256 per block.
    pub fn verify_chain(&self) -> Result<(), LedgerError> {
        self.verify_from(0).map_err(|e| self.wrap(e))
    }

    /// Brings the indexes up to the blocks (Fabric's `syncIndex`), in batches that each commit
    /// their checkpoint.
    fn sync_index(&self) -> Result<(), StoreError> {
        let height = self.height();
        let mut indexed = self.indexed_height()?;
        if indexed > height {
            // Only a store not written by this module gets here; the indexes are derived, so start over.
            warn!(target: "blkstorage", func = "syncIndex", "Index of channel [{}] is ahead of its blocks ({indexed} > {height}), rebuilding it", self.id);
            drop_index_tables(&self.db)?;
            indexed = 0;
        }
        if indexed == height {
            return Ok(());
        }
        info!(target: "blkstorage", func = "syncIndex", "Start building index from block [{indexed}] to last block [{}]", height - 1);
        while indexed < height {
            let end = height.min(indexed.saturating_add(INDEX_BATCH_BLOCKS));
            let write = begin_write(&self.db)?;
            for number in indexed..end {
                let block = self.read_block(number)?.ok_or_else(|| StoreError::Corrupt(format!("block [{number}] is missing")))?;
                index_block(&write, number, &block)?;
                if number % 10_000 == 0 && number > 0 {
                    info!(target: "blkstorage", func = "syncIndex", "Indexed block number [{number}]");
                }
            }
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, end)?;
            write.commit()?;
            indexed = end;
        }
        info!(target: "blkstorage", func = "syncIndex", "Finished building index. Last block indexed [{}]", height - 1);
        Ok(())
    }

    /// How many blocks (from 0) the indexes cover.
    fn indexed_height(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read()?;
        let Some(table) = open_read(&read, INDEX_CHECKPOINT)? else { return Ok(0) };
        Ok(table.get(INDEXED_HEIGHT)?.map(|v| v.value()).unwrap_or(0))
    }

    fn read_block(&self, number: u64) -> Result<Option<Block>, StoreError> {
        let read = self.db.begin_read()?;
        let Some(table) = open_read(&read, BLOCKS)? else { return Ok(None) };
        let Some(bytes) = table.get(number)? else { return Ok(None) };
        decode_block(number, bytes.value()).map(Some)
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
        BlockchainInfo { height: tip.height, current_block_hash: tip.current_hash, previous_block_hash: tip.previous_hash, bootstrapping_snapshot_info: None }
    }

    /// Watches the height: the receiver sees every committed append (Deliver's BLOCK_UNTIL_READY
    /// waits on `changed()`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.height.subscribe()
    }

    /// Block `number`, or `None` at or above the height.
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        self.read_block(number).map_err(|e| self.wrap(e))
    }

    /// The block whose header hash is `hash`.
    pub fn block_by_hash(&self, hash: &[u8]) -> Result<Option<Block>, LedgerError> {
        let number = (|| -> Result<Option<u64>, StoreError> {
            let read = self.db.begin_read()?;
            let Some(table) = open_read(&read, BY_HASH)? else { return Ok(None) };
            Ok(table.get(hash)?.map(|v| v.value()))
        })();
        match number.map_err(|e| self.wrap(e))? {
            Some(number) => self.block(number),
            None => Ok(None),
        }
    }

    /// Where the transaction with this ID is: (block number, index in the block). The first
    /// occurrence when an ID repeats (Fabric marks later ones as duplicates at validation).
    pub fn tx_location(&self, tx_id: &str) -> Result<Option<(u64, u32)>, LedgerError> {
        (|| -> Result<Option<(u64, u32)>, StoreError> {
            let read = self.db.begin_read()?;
            let Some(table) = open_read(&read, BY_TX_ID)? else { return Ok(None) };
            Ok(table.get(tx_id)?.map(|v| v.value()))
        })()
        .map_err(|e| self.wrap(e))
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
        (|| -> Result<Option<u64>, StoreError> {
            let read = self.db.begin_read()?;
            let Some(table) = open_read(&read, PRE_RESET)? else { return Ok(None) };
            Ok(table.get(PRE_RESET_HEIGHT)?.map(|v| v.value()))
        })()
        .map_err(|e| self.wrap(e))
    }

    /// Forgets the pre-reset height (the channel has caught up).
    pub fn clear_pre_reset_height(&self) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        (|| -> Result<(), StoreError> {
            let write = begin_write(&self.db)?;
            write.open_table(PRE_RESET)?.remove(PRE_RESET_HEIGHT)?;
            write.commit()?;
            Ok(())
        })()
        .map_err(|e| self.wrap(e))
    }

    /// Appends the next block: its number must be the height, its previous hash the tip's header
    /// hash, and its data hash must match its data. Orderer signatures are the caller's to check.
    /// Returns once the block is durable; then subscribers see the new height.
    pub fn append(&self, block: &Block) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        let tip = lock(&self.tip).clone();
        let header = block.header.as_ref().ok_or_else(|| LedgerError::MissingHeader { channel: self.id.clone() })?;
        if header.number != tip.height {
            return Err(LedgerError::BlockNumber { channel: self.id.clone(), expected: tip.height, found: header.number });
        }
        if header.previous_hash != tip.current_hash {
            return Err(LedgerError::PreviousHash { channel: self.id.clone(), expected: tip.current_hash, found: header.previous_hash.clone() });
        }
        check_data_hash(&self.id, block)?;
        let number = header.number;
        let commit = || -> Result<(), StoreError> {
            let write = begin_write(&self.db)?;
            write.open_table(BLOCKS)?.insert(number, block.encode_to_vec().as_slice())?;
            index_block(&write, number, block)?;
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, number + 1)?;
            write.commit()?;
            Ok(())
        };
        commit().map_err(|e| self.wrap(e))?;
        *lock(&self.tip) = Tip { height: number + 1, current_hash: header_hash(header).to_vec(), previous_hash: header.previous_hash.clone() };
        self.height.send_replace(number + 1);
        Ok(())
    }

    /// Keeps blocks `0..keep_height` and drops the rest, with their index entries, recording the
    /// current height as the pre-reset height if it is larger than the recorded one. One
    /// transaction: a power cut leaves either the old chain or the shortened one, never a gap, and
    /// repeating the command after a cut is safe (the recorded height only grows). Returns the
    /// height before.
    pub(crate) fn truncate(&self, keep_height: u64) -> Result<u64, LedgerError> {
        let _appending = lock(&self.append_lock);
        let height = self.height();
        let indexed = self.indexed_height().map_err(|e| self.wrap(e))?;
        let commit = || -> Result<(), StoreError> {
            let write = begin_write(&self.db)?;
            {
                let mut pre_reset = write.open_table(PRE_RESET)?;
                let recorded = pre_reset.get(PRE_RESET_HEIGHT)?.map(|v| v.value()).unwrap_or(0);
                if height > recorded {
                    pre_reset.insert(PRE_RESET_HEIGHT, height)?;
                }
            }
            let mut number = keep_height;
            while number < height {
                let batch_end = height.min(number + 10);
                if number < indexed {
                    info!(target: "blkstorage", func = "deleteIndexEntries", "Deleting index associated with block number [{number}] to [{}]", batch_end - 1);
                }
                for n in number..batch_end {
                    let block = self.read_block(n)?.ok_or_else(|| StoreError::Corrupt(format!("block [{n}] is missing")))?;
                    if n < indexed {
                        unindex_block(&write, n, &block)?;
                    }
                    write.open_table(BLOCKS)?.remove(n)?;
                }
                number = batch_end;
            }
            write.open_table(INDEX_CHECKPOINT)?.insert(INDEXED_HEIGHT, indexed.min(keep_height))?;
            write.commit()?;
            Ok(())
        };
        commit().map_err(|e| self.wrap(e))?;
        let tip = self.read_tip().map_err(|e| self.wrap(e))?;
        self.height.send_replace(tip.height);
        *lock(&self.tip) = tip;
        Ok(height)
    }

    /// Deletes the derived indexes and their checkpoint; the next [`ChannelLedger::open`]
    /// rebuilds them from the blocks.
    pub(crate) fn drop_indexes(&self) -> Result<(), LedgerError> {
        let _appending = lock(&self.append_lock);
        drop_index_tables(&self.db).map_err(|e| self.wrap(e))
    }
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
        return Err(LedgerError::DataHash { channel: channel_id.to_string(), number: header.number, header: header.data_hash, computed: computed.to_vec() });
    }
    Ok(())
}

pub(crate) fn wrap(channel_id: &str, path: &Path, error: StoreError) -> LedgerError {
    match error {
        StoreError::Db(e) => LedgerError::ChannelDatabase { channel: channel_id.to_string(), path: path.to_path_buf(), message: e.to_string() },
        StoreError::Corrupt(what) => LedgerError::Corrupt { channel: channel_id.to_string(), path: path.to_path_buf(), what },
    }
}
