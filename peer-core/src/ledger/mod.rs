//! The ledgers of a peer under `<peer.fileSystemPath>/ledgersData`: the data-directory lock, the
//! inventory of channels, and one block store per channel.
//!
//! Layout:
//! - `fileLock/LOCK`: the data-directory lock (a running peer and every offline `node` command).
//! - `ledgers.redb`: the inventory (Fabric's ledgerProvider/idStore): its format marker, each
//!   channel's status (ACTIVE or INACTIVE, i.e. paused) and genesis block, and the
//!   under-construction marker while a channel is being created. Created with the first
//!   channel (or by an offline command), not by a start: a start on a fresh data dir writes and
//!   syncs nothing. A new inventory is built as `ledgers.redb.partial` and renamed into place.
//! - `chains/<channelID>.redb`: one database per channel ([`ChannelLedger`]), so a corrupt store
//!   fails that channel only and the peer serves the others.
//!
//! The offline commands (`node reset|rollback|pause|resume|rebuild-dbs|upgrade-dbs`) are in
//! [`commands`]. Not here: world state, private data, history (peer-core keeps blocks only), and
//! orderer signature checks (the caller's, before [`ChannelLedger::append`]). All I/O goes through
//! the env's Storage.

pub mod block;
pub mod channel;
pub mod commands;
mod guard;
pub mod metrics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;
use proto::common::Block;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;
use tracing::{info, warn};

use channel::StoreError;
pub use channel::{CHANNEL_FORMAT, ChannelLedger, Salvaged};
use guard::{GuardedDb, OpenError};

use crate::env::{DirLock, Env, LockError, Storage};

/// Small metadata: the format marker (Fabric keeps `f` → `2.0` in its ID store) and the
/// under-construction marker.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Channel ID → `ACTIVE` | `INACTIVE` (Fabric's `LedgerMetadata.status`).
const STATUS: TableDefinition<&str, &str> = TableDefinition::new("status");
/// Channel ID → the genesis block (protobuf `common.Block`); its presence means "created".
const GENESIS: TableDefinition<&str, &[u8]> = TableDefinition::new("genesis");
const FORMAT_KEY: &str = "format";
/// The inventory's file under `ledgersData`.
const INVENTORY_FILE: &str = "ledgers.redb";
/// Where a new inventory is built before it is renamed to [`INVENTORY_FILE`].
const INVENTORY_PARTIAL: &str = "ledgers.redb.partial";
const UNDER_CONSTRUCTION_KEY: &str = "under_construction";
/// The format this build writes and reads.
pub const FORMAT: &str = "peer-core-ledger/1";
/// redb's default cache is 1 GiB; a peer's inventory needs little, and simulated peers share RAM.
const CACHE_BYTES: usize = 1 << 20;

/// What went wrong in the ledger. Channel errors name the channel and its database file.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The lock is held or cannot be taken.
    #[error("{0}")]
    Lock(#[from] LockError),
    /// A directory or the database file could not be created or opened.
    #[error("opening {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// redb refused the inventory database (corrupt, or an I/O error).
    #[error("opening the ledger database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    /// The inventory is damaged (or missing while channel stores exist): what to do is in the text.
    #[error(
        "the ledger inventory {} is damaged: {what}. The channels' block stores under {} are not affected: with the peer stopped, run 'peer-core node rebuild-dbs' to rebuild the inventory from them (the damaged file is moved to {})",
        path.display(),
        path.with_file_name("chains").display(),
        path.with_file_name("quarantine").display()
    )]
    InventoryDamaged { path: PathBuf, what: String },
    /// The inventory was written by an incompatible build.
    #[error(
        "unexpected format. db info = [{}], data format = [{found}], expected format = [{FORMAT}]",
        path.display()
    )]
    FormatMismatch { path: PathBuf, found: String },
    /// A channel's database could not be opened, read or written.
    #[error("channel [{channel}]: database {}: {message}", path.display())]
    ChannelDatabase { channel: String, path: PathBuf, message: String },
    /// A channel's store holds something this build never writes.
    #[error("channel [{channel}]: the block store {} is corrupt: {what}", path.display())]
    Corrupt { channel: String, path: PathBuf, what: String },
    /// A channel's store was written by an incompatible build.
    #[error(
        "channel [{channel}]: unexpected format. db info = [{}], data format = [{found}], expected format = [{CHANNEL_FORMAT}]",
        path.display()
    )]
    ChannelFormat { channel: String, path: PathBuf, found: String },
    /// A block without a header.
    #[error("channel [{channel}]: the block has no header")]
    MissingHeader { channel: String },
    /// Append: the block is not the next one.
    #[error("channel [{channel}]: block number should have been {expected} but was {found}")]
    BlockNumber { channel: String, expected: u64, found: u64 },
    /// Append: the block does not chain to the tip.
    #[error(
        "channel [{channel}]: unexpected Previous block hash. Expected PreviousHash = [{}], PreviousHash referred in the latest block= [{}]",
        hex::encode(expected),
        hex::encode(found)
    )]
    PreviousHash { channel: String, expected: Vec<u8>, found: Vec<u8> },
    /// Append: the header's data hash is not the hash of the block's data.
    #[error(
        "channel [{channel}]: block [{number}] has data hash [{}] in its header but its data hashes to [{}]",
        hex::encode(header),
        hex::encode(computed)
    )]
    DataHash { channel: String, number: u64, header: Vec<u8>, computed: Vec<u8> },
    /// A genesis block whose first envelope carries no channel ID.
    #[error("the genesis block names no channel: its first envelope has no channel header with a channel ID")]
    NoChannelId,
    /// A channel ID Fabric would refuse (and that could not be a file name here). It comes from
    /// outside (a genesis block, a request): non-printable characters are shown escaped.
    #[error("channel ID '{}' is illegal: {reason}", crate::config::value::escape_non_printable(channel))]
    BadChannelId { channel: String, reason: &'static str },
    /// Creating a channel that exists, active or paused (Fabric's text, which names neither: a
    /// second `channel join` is answered with it).
    #[error("LedgerID already exists")]
    AlreadyExists { channel: String, status: ChannelStatus },
    /// An offline command without `-c`.
    #[error("Must supply channel ID")]
    MissingChannelId,
    /// `rollback` of an unknown channel.
    #[error("ledgerID [{channel}] does not exist")]
    RollbackUnknown { channel: String },
    /// `pause`/`resume` of an unknown channel (Fabric's text, then the channel).
    #[error("LedgerID does not exist: [{channel}]")]
    LedgerIdDoesNotExist { channel: String },
    /// `rollback` to the tip or beyond.
    #[error("target block number [{target}] should be less than the biggest block number [{biggest}]")]
    RollbackTarget { channel: String, target: u64, biggest: u64 },
    /// The under-construction marker names a channel whose store holds more than a genesis block.
    #[error("data inconsistency: under construction flag is set for ledger [{channel}] while the height of the blockchain is [{height}]")]
    UnderConstruction { channel: String, height: u64 },
    /// An offline command refused a damaged channel store: what to do follows the damage.
    #[error(
        "{0}; with the peer stopped, run 'peer-core node rebuild-dbs' to rebuild the channel from its genesis block (the blocks its hash chain still proves are kept, the peer fetches the rest, the damaged file goes to ledgersData/quarantine)"
    )]
    NeedsRebuild(Box<LedgerError>),
    /// An offline command failed for several channels (it still did what it could for the others).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<LedgerError>),
}

impl LedgerError {
    /// Whether this is damage to a channel's store (a bad page, a failed checksum, a broken
    /// chain, a missing file), which a salvage repairs; not an I/O error opening the file, nor a
    /// store of another format.
    pub fn is_damage(&self) -> bool {
        matches!(self, LedgerError::Corrupt { .. } | LedgerError::ChannelDatabase { .. } | LedgerError::NeedsRebuild(_))
    }
}

/// A channel's status in the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Opened at start and served.
    Active,
    /// Paused by `node pause`: not opened, gets no blocks.
    Inactive,
}

impl ChannelStatus {
    fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Active => "ACTIVE",
            ChannelStatus::Inactive => "INACTIVE",
        }
    }
}

impl std::fmt::Display for ChannelStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fabric's channel ID rule (`configtx.ValidateChannelID`): `[a-z][a-z0-9.-]*`, under 250
/// characters. It also keeps the ID a safe file name.
pub fn validate_channel_id(channel: &str) -> Result<(), LedgerError> {
    let bad = |reason| Err(LedgerError::BadChannelId { channel: channel.to_string(), reason });
    if channel.is_empty() {
        return bad("it is empty");
    }
    if channel.len() > 249 {
        return bad("it is longer than 249 characters");
    }
    if !channel.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lowercase letter");
    }
    if !channel.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-') {
        return bad("it contains characters other than a-z, 0-9, '.' and '-'");
    }
    Ok(())
}

/// Where the data-directory lock lives (Fabric: a leveldb LOCK in `ledgersData/fileLock`).
pub fn lock_path(file_system_path: &Path) -> PathBuf {
    file_system_path.join("ledgersData").join("fileLock").join("LOCK")
}

/// The inventory database (`ledgers.redb`), behind the ledger's guards (see `guard.rs`): read
/// without writing a byte until something is written, damage reported as
/// [`LedgerError::InventoryDamaged`].
struct Inventory {
    db: GuardedDb,
    path: PathBuf,
}

impl Inventory {
    /// Opens the inventory without looking at its format, first creating it if missing: a new
    /// inventory is built (with the format marker) under a temporary name and renamed into place,
    /// so a power cut leaves no inventory or a whole one, never a file redb cannot open.
    fn open(storage: &Arc<dyn Storage>, root: &Path) -> Result<Inventory, LedgerError> {
        let path = root.join(INVENTORY_FILE);
        if !storage.exists(&path) {
            let partial = root.join(INVENTORY_PARTIAL);
            let io = |source| LedgerError::Io { path: partial.clone(), source };
            storage.remove_file(&partial).map_err(io)?;
            drop(storage.open_db(&partial).map_err(io)?);
            let fresh = Inventory::open_existing(storage, &partial)?;
            fresh.write(|write| {
                write.open_table(META)?.insert(FORMAT_KEY, FORMAT)?;
                Ok(())
            })?;
            // Closed (redb's last writes done) before the rename.
            drop(fresh);
            storage.rename(&partial, &path).map_err(io)?;
        }
        Inventory::open_existing(storage, &path)
    }

    /// Opens an existing inventory file read-only (until something is written).
    fn open_existing(storage: &Arc<dyn Storage>, path: &Path) -> Result<Inventory, LedgerError> {
        let db = GuardedDb::open(storage, path, CACHE_BYTES, "The ledger inventory".into()).map_err(|e| match e {
            OpenError::Missing => LedgerError::InventoryDamaged { path: path.to_path_buf(), what: "the file is missing".into() },
            OpenError::Io(source) => LedgerError::Io { path: path.to_path_buf(), source },
            OpenError::Store(e) => LedgerError::InventoryDamaged { path: path.to_path_buf(), what: store_error_text(e) },
        })?;
        Ok(Inventory { db, path: path.to_path_buf() })
    }

    fn error(&self, e: StoreError) -> LedgerError {
        match e {
            // An I/O error while writing: not damage (redb reopens before the next write).
            StoreError::Db(e) if self.db.failed().is_none() => {
                LedgerError::Database { path: self.path.clone(), message: channel::db_error_text(&e) }
            }
            e => LedgerError::InventoryDamaged { path: self.path.clone(), what: store_error_text(e) },
        }
    }

    fn read<T>(&self, f: impl Fn(&redb::ReadTransaction) -> Result<T, StoreError>) -> Result<T, LedgerError> {
        self.db
            .read(|db| {
                let read = db.begin_read()?;
                f(&read)
            })
            .map_err(|e| self.error(e))
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, LedgerError> {
        self.read(|read| match read.open_table(META) {
            Ok(table) => Ok(table.get(key)?.map(|v| v.value().to_string())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    /// Checks the format. Every inventory is created with its marker (see [`Inventory::open`]),
    /// so one without is damaged (e.g. a file cut to 0 bytes), never a fresh start.
    fn ensure_format(&self) -> Result<(), LedgerError> {
        match self.get_meta(FORMAT_KEY)? {
            Some(format) if format == FORMAT => Ok(()),
            Some(found) => Err(LedgerError::FormatMismatch { path: self.path.clone(), found }),
            None => Err(LedgerError::InventoryDamaged {
                path: self.path.clone(),
                what: "it has no format marker (every inventory is written with one)".into(),
            }),
        }
    }

    /// One durable write transaction.
    fn write(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), LedgerError> {
        self.db
            .write(|db| {
                let write = channel::begin_write(db)?;
                f(&write)?;
                write.commit()?;
                Ok(())
            })
            .map_err(|e| self.error(e))
    }

    /// Every created channel and its status, by channel ID.
    fn channels(&self) -> Result<BTreeMap<String, ChannelStatus>, LedgerError> {
        let listed = self.read(|read| {
            let table = match read.open_table(STATUS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut listed = Vec::new();
            for entry in table.iter()? {
                let (id, status) = entry?;
                listed.push((id.value().to_string(), status.value().to_string()));
            }
            Ok(listed)
        })?;
        let mut channels = BTreeMap::new();
        for (id, status) in listed {
            let status = match status.as_str() {
                "ACTIVE" => ChannelStatus::Active,
                "INACTIVE" => ChannelStatus::Inactive,
                other => {
                    return Err(LedgerError::InventoryDamaged {
                        path: self.path.clone(),
                        what: format!("channel [{id}] has the unknown status [{other}]"),
                    });
                }
            };
            channels.insert(id, status);
        }
        Ok(channels)
    }

    /// The genesis block a channel was created with.
    fn genesis(&self, channel: &str) -> Result<Option<Block>, LedgerError> {
        let bytes = self.read(|read| match read.open_table(GENESIS) {
            Ok(table) => Ok(table.get(channel)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })?;
        bytes.map(|bytes| Block::decode(bytes.as_slice())).transpose().map_err(|e| LedgerError::InventoryDamaged {
            path: self.path.clone(),
            what: format!("the genesis block of channel [{channel}] does not decode: {e}"),
        })
    }

    fn set_status(&self, channel: &str, status: ChannelStatus) -> Result<(), LedgerError> {
        self.write(|write| {
            write.open_table(STATUS)?.insert(channel, status.as_str())?;
            Ok(())
        })
    }

    /// Registers a created channel and clears the under-construction marker, in one transaction.
    fn register(&self, channel: &str, genesis: &[u8]) -> Result<(), LedgerError> {
        self.write(|write| {
            write.open_table(GENESIS)?.insert(channel, genesis)?;
            write.open_table(STATUS)?.insert(channel, ChannelStatus::Active.as_str())?;
            write.open_table(META)?.remove(UNDER_CONSTRUCTION_KEY)?;
            Ok(())
        })
    }

    fn set_under_construction(&self, channel: Option<&str>) -> Result<(), LedgerError> {
        self.write(|write| {
            let mut meta = write.open_table(META)?;
            match channel {
                Some(channel) => meta.insert(UNDER_CONSTRUCTION_KEY, channel).map(drop)?,
                None => meta.remove(UNDER_CONSTRUCTION_KEY).map(drop)?,
            }
            Ok(())
        })
    }
}

fn store_error_text(e: StoreError) -> String {
    e.text()
}

/// The ledgers of this peer. Holding it holds the data-directory lock.
///
/// `open` opens the inventory and every ACTIVE channel; a channel whose store fails to open is
/// listed in [`LedgerMgr::channel_errors`] and left out, the others are served.
pub struct LedgerMgr {
    storage: Arc<dyn Storage>,
    /// Opened at start when `ledgers.redb` exists, else created with the first channel: a
    /// start on a fresh data dir writes nothing (creating a redb file costs several fsyncs, most
    /// of a fresh start's time on a real disk).
    inventory: std::sync::OnceLock<Inventory>,
    root: PathBuf,
    /// The open (active) channels. Also serializes channel creation.
    channels: Mutex<BTreeMap<String, Arc<ChannelLedger>>>,
    /// ACTIVE channels that failed to open, with why.
    channel_errors: BTreeMap<String, LedgerError>,
    /// Channels rebuilt at open.
    healed: Vec<Heal>,
    /// ACTIVE channels whose store was damaged and could not be rebuilt at open: tried again by
    /// [`LedgerMgr::retry_unhealed`].
    unhealed: Mutex<std::collections::BTreeSet<String>>,
    /// Rung by a channel store that fails while in service (see [`LedgerMgr::heal_failed`]).
    alarm: watch::Sender<u64>,
    // Dropped last (fields drop in order): the databases close before the lock is released.
    _lock: Box<dyn DirLock>,
}

impl std::fmt::Debug for LedgerMgr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerMgr").field("root", &self.root).finish_non_exhaustive()
    }
}

/// The lock, as every entry point (start and the offline commands) takes it first; returns the
/// ledgers' root (`<fsp>/ledgersData`).
fn lock_root(env: &Env, file_system_path: &Path, holder: &str) -> Result<(PathBuf, Box<dyn DirLock>), LedgerError> {
    let root = file_system_path.join("ledgersData");
    env.storage.create_dir_all(&root).map_err(|source| LedgerError::Io { path: root.clone(), source })?;
    let lock = env.storage.lock(&lock_path(file_system_path), holder)?;
    Ok((root, lock))
}

/// The inventory (and the chains folder), once the lock is held.
/// A missing inventory is created, unless channel stores exist: then it is damage (see
/// [`LedgerError::InventoryDamaged`]), never a fresh start that would orphan them.
fn open_inventory(env: &Env, root: &Path) -> Result<Inventory, LedgerError> {
    let chains = root.join("chains");
    env.storage.create_dir_all(&chains).map_err(|source| LedgerError::Io { path: chains.clone(), source })?;
    let path = root.join(INVENTORY_FILE);
    if !env.storage.exists(&path) {
        let stores = channel_store_ids(&env.storage, root);
        if !stores.is_empty() {
            return Err(LedgerError::InventoryDamaged {
                path,
                what: format!("the file is missing while the block stores of {} channel(s) ({}) exist", stores.len(), stores.join(", ")),
            });
        }
    }
    Inventory::open(&env.storage, root)
}

/// The lock and the inventory, as every entry point (start and the offline commands) takes them.
fn lock_and_inventory(env: &Env, file_system_path: &Path, holder: &str) -> Result<(PathBuf, Box<dyn DirLock>, Inventory), LedgerError> {
    let (root, lock) = lock_root(env, file_system_path, holder)?;
    let inventory = open_inventory(env, &root)?;
    Ok((root, lock, inventory))
}

/// The channels and their statuses, read without writing a byte. The offline commands check
/// their arguments this way first, so a refused command leaves the ledger files exactly as they
/// were (redb rewrites a file opened for writing when it closes it, even with no change). `None`
/// when the inventory is missing, of another format, or cannot be read without writing (e.g. it
/// needs recovery): the caller then takes its normal path, which repairs and checks again.
fn peek_channels(storage: &Arc<dyn Storage>, root: &Path) -> Option<BTreeMap<String, ChannelStatus>> {
    let inventory = Inventory::open_existing(storage, &root.join(INVENTORY_FILE)).ok()?;
    inventory.ensure_format().ok()?;
    inventory.channels().ok()
}

impl LedgerMgr {
    /// Takes the lock (naming `holder` in it for whoever tries next), opens the inventory,
    /// finishes or undoes a channel creation a crash interrupted, and opens every ACTIVE channel.
    pub fn open(env: &Env, file_system_path: &Path, holder: &str) -> Result<LedgerMgr, LedgerError> {
        info!(target: "ledgermgmt", func = "NewLedgerMgr", "Initializing LedgerMgr");
        let (root, lock) = lock_root(env, file_system_path, holder)?;
        let inventory = std::sync::OnceLock::new();
        let mut channels = BTreeMap::new();
        let mut channel_errors = BTreeMap::new();
        let mut healed = Vec::new();
        let mut unhealed = std::collections::BTreeSet::new();
        let (alarm, _) = watch::channel(0);
        let inventory_path = root.join(INVENTORY_FILE);
        if env.storage.exists(&inventory_path) {
            let existing = open_inventory(env, &root)?;
            existing.ensure_format()?;
            recover_under_construction(&env.storage, &root, &existing)?;
            for (id, status) in existing.channels()? {
                if status != ChannelStatus::Active {
                    continue;
                }
                match open_or_heal(&env.storage, &root, &existing, &id, &alarm) {
                    Ok((ledger, heal)) => {
                        channels.insert(id.clone(), Arc::new(ledger));
                        if let Some(heal) = heal {
                            healed.push(heal);
                        }
                    }
                    Err(err) => {
                        if err.is_damage() {
                            unhealed.insert(id.clone());
                        }
                        channel_errors.insert(id, err);
                    }
                }
            }
            let _ = inventory.set(existing);
        } else {
            // No inventory: a fresh peer, unless channel stores say otherwise.
            let stores = channel_store_ids(&env.storage, &root);
            if !stores.is_empty() {
                return Err(LedgerError::InventoryDamaged {
                    path: inventory_path,
                    what: format!(
                        "the file is missing while the block stores of {} channel(s) ({}) exist",
                        stores.len(),
                        stores.join(", ")
                    ),
                });
            }
        }
        drop(inventory_path);
        info!(target: "ledgermgmt", func = "NewLedgerMgr", "Initialized LedgerMgr");
        Ok(LedgerMgr {
            storage: env.storage.clone(),
            inventory,
            root,
            channels: Mutex::new(channels),
            channel_errors,
            healed,
            unhealed: Mutex::new(unhealed),
            alarm,
            _lock: lock,
        })
    }

    /// Rings (the value grows) each time a channel store fails while in service.
    pub fn subscribe_alarm(&self) -> watch::Receiver<u64> {
        self.alarm.subscribe()
    }

    /// Rebuilds every open channel whose store has failed (in place: whoever holds its ledger
    /// keeps using it, at the height the salvage reached). Returns what was done, per channel.
    pub fn heal_failed(&self) -> Vec<Result<Heal, (String, LedgerError)>> {
        let failed: Vec<Arc<ChannelLedger>> = self.lock_channels().values().filter(|l| l.failed().is_some()).cloned().collect();
        let mut done = Vec::new();
        for ledger in failed {
            let id = ledger.id().to_string();
            let damage =
                LedgerError::Corrupt { channel: id.clone(), path: ledger.path().to_path_buf(), what: ledger.failed().unwrap_or_default() };
            let genesis = match self.inventory().and_then(|inventory| inventory.genesis(&id)) {
                Ok(Some(genesis)) => genesis,
                Ok(None) => {
                    done.push(Err((id, damage)));
                    continue;
                }
                Err(err) => {
                    done.push(Err((id, err)));
                    continue;
                }
            };
            match ledger.heal(&self.storage, &self.root, &genesis) {
                Ok(salvaged) => {
                    log_heal(&id, &salvaged);
                    done.push(Ok(Heal { channel: id, damage, salvaged }));
                }
                Err(err) => done.push(Err((id, err))),
            }
        }
        done
    }

    /// Whether a damaged channel could not be rebuilt at open (see [`LedgerMgr::retry_unhealed`]).
    pub fn has_unhealed(&self) -> bool {
        !lock_set(&self.unhealed).is_empty()
    }

    /// Whether anything waits to be healed: a channel not rebuilt at open, or an open channel whose
    /// store has failed (possibly before anyone listened to the alarm).
    pub fn needs_healing(&self) -> bool {
        self.has_unhealed() || self.lock_channels().values().any(|ledger| ledger.failed().is_some())
    }

    /// Tries again to rebuild and open the damaged channels that could not be at open (a disk that
    /// was full then may have room now). Returns the channels now served.
    pub fn retry_unhealed(&self) -> Vec<String> {
        let ids: Vec<String> = lock_set(&self.unhealed).iter().cloned().collect();
        let mut opened = Vec::new();
        for id in ids {
            let Ok(inventory) = self.inventory() else { continue };
            if let Ok((ledger, _)) = open_or_heal(&self.storage, &self.root, inventory, &id, &self.alarm) {
                lock_set(&self.unhealed).remove(&id);
                self.lock_channels().insert(id.clone(), Arc::new(ledger));
                opened.push(id);
            }
        }
        opened
    }

    /// Channels whose store was damaged at open and rebuilt (see [`open_or_heal`]).
    pub fn healed(&self) -> &[Heal] {
        &self.healed
    }

    /// The IDs of the channels being served (ACTIVE and opened), sorted.
    pub fn active_channels(&self) -> Vec<String> {
        self.lock_channels().keys().cloned().collect()
    }

    /// ACTIVE channels whose store failed to open at start, with the reason.
    pub fn channel_errors(&self) -> &BTreeMap<String, LedgerError> {
        &self.channel_errors
    }

    /// An open channel's ledger.
    pub fn channel(&self, channel_id: &str) -> Option<Arc<ChannelLedger>> {
        self.lock_channels().get(channel_id).cloned()
    }

    /// The recorded pre-reset heights of the active channels (those `node reset`/`rollback` left).
    pub fn pre_reset_heights(&self) -> Result<Vec<(String, u64)>, LedgerError> {
        let channels: Vec<Arc<ChannelLedger>> = self.lock_channels().values().cloned().collect();
        let mut heights = Vec::new();
        for ledger in channels {
            if let Some(height) = ledger.pre_reset_height()? {
                heights.push((ledger.id().to_string(), height));
            }
        }
        Ok(heights)
    }

    /// Creates a channel from its genesis block (the channel ID is the first envelope's), and
    /// returns its ledger. Crash-safe (Fabric's under-construction flag): the inventory marks the
    /// channel under construction, the store is written, then the channel is registered; an
    /// interrupted creation is finished or undone at the next open.
    pub fn create_from_genesis(&self, genesis: &Block) -> Result<Arc<ChannelLedger>, LedgerError> {
        let channel_id = block::channel_id_of(genesis).ok_or(LedgerError::NoChannelId)?;
        validate_channel_id(&channel_id)?;
        // A block that cannot be a genesis block is refused before anything is written.
        ChannelLedger::check_genesis(&channel_id, genesis)?;
        let mut channels = self.lock_channels();
        let inventory = self.inventory()?;
        let existing = inventory.channels()?.get(&channel_id).copied();
        // A channel whose store failed to open is still registered (ACTIVE) in the inventory.
        let existing = existing.or_else(|| self.channel_errors.contains_key(&channel_id).then_some(ChannelStatus::Active));
        if let Some(status) = existing {
            return Err(LedgerError::AlreadyExists { channel: channel_id, status });
        }
        info!(target: "kvledger", func = "CreateFromGenesisBlock", "Creating ledger [{channel_id}] with genesis block");
        inventory.set_under_construction(Some(&channel_id))?;
        let ledger = match ChannelLedger::create(&self.storage, &self.root, &channel_id, genesis) {
            Ok(ledger) => ledger,
            Err(err) => {
                // Nothing was registered; undo the marker (if this fails too, the next open does it).
                let _ = inventory.set_under_construction(None);
                return Err(err);
            }
        };
        inventory.register(&channel_id, &genesis.encode_to_vec())?;
        ledger.set_alarm(&self.alarm);
        info!(target: "kvledger", func = "CreateFromGenesisBlock", "Created ledger [{channel_id}] with genesis block");
        let ledger = Arc::new(ledger);
        channels.insert(channel_id, ledger.clone());
        Ok(ledger)
    }

    /// `<fileSystemPath>/ledgersData`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The inventory, created (with the chains folder) on first use. Called with the channels
    /// lock held, so two creations never race to create it.
    fn inventory(&self) -> Result<&Inventory, LedgerError> {
        if let Some(inventory) = self.inventory.get() {
            return Ok(inventory);
        }
        let chains = self.root.join("chains");
        self.storage.create_dir_all(&chains).map_err(|source| LedgerError::Io { path: chains.clone(), source })?;
        let created = Inventory::open(&self.storage, &self.root)?;
        Ok(self.inventory.get_or_init(|| created))
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ChannelLedger>>> {
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn lock_set(set: &Mutex<std::collections::BTreeSet<String>>) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A channel rebuilt because its store was damaged.
#[derive(Debug)]
pub struct Heal {
    pub channel: String,
    /// What was wrong.
    pub damage: LedgerError,
    pub salvaged: Salvaged,
}

/// The channel IDs that have a store file under `chains/` (sorted).
fn channel_store_ids(storage: &Arc<dyn Storage>, root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = storage
        .list_dir(&root.join("chains"))
        .unwrap_or_default()
        .iter()
        .filter_map(|path| path.file_name()?.to_str()?.strip_suffix(".redb").map(str::to_string))
        .filter(|id| validate_channel_id(id).is_ok())
        .collect();
    ids.sort();
    ids
}

/// Opens a channel's store for serving; if it is damaged (or missing), rebuilds it first with
/// [`channel::salvage`] from the genesis block the inventory keeps, and logs what it did. The
/// blocks the salvage could not prove come again from the network (the deliver client and state
/// transfer start from the ledger's height).
fn open_or_heal(
    storage: &Arc<dyn Storage>,
    root: &Path,
    inventory: &Inventory,
    id: &str,
    alarm: &watch::Sender<u64>,
) -> Result<(ChannelLedger, Option<Heal>), LedgerError> {
    channel::finish_interrupted_salvage(storage, root, id)?;
    let mut heal: Option<Heal> = None;
    // A salvage that fails (the disk is full, a write fails), or whose result does not open,
    // leaves a store to salvage again: three attempts before the channel is left out (the
    // channel supervisor tries again later, see `LedgerMgr::retry_unhealed`).
    let mut salvages = 0;
    loop {
        let damage = match ChannelLedger::open(storage, root, id, alarm) {
            Ok(ledger) => {
                if let Some(heal) = &heal {
                    log_heal(id, &heal.salvaged);
                }
                return Ok((ledger, heal));
            }
            Err(err) if err.is_damage() && salvages < 3 => err,
            Err(err) => return Err(err),
        };
        salvages += 1;
        tracing::error!(target: "peer", func = "Initialize", "Failed to load ledger {id}({damage})");
        let Some(genesis) = inventory.genesis(id)? else { return Err(damage) };
        match channel::salvage(storage, root, id, &genesis) {
            Ok(salvaged) => {
                // The first damage and the last salvage tell the story.
                let damage = heal.map_or(damage, |first| first.damage);
                heal = Some(Heal { channel: id.to_string(), damage, salvaged });
            }
            Err(err) => warn!(target: "kvledger", func = "healLedger", "Could not rebuild ledger [{id}] (attempt {salvages} of 3): {err}"),
        }
    }
}

fn log_heal(id: &str, salvaged: &Salvaged) {
    warn!(target: "kvledger", func = "healLedger", "{}; the rest will be pulled again from the ordering service or the org's peers", salvaged.describe(id));
}

/// Fabric's `recoverUnderConstructionLedger`: a channel creation cut short. The store holds either
/// nothing (undo: remove it, clear the marker) or exactly the genesis block (finish: register it).
fn recover_under_construction(storage: &Arc<dyn Storage>, root: &Path, inventory: &Inventory) -> Result<(), LedgerError> {
    let Some(channel_id) = inventory.get_meta(UNDER_CONSTRUCTION_KEY)? else { return Ok(()) };
    let path = channel::db_path(root, &channel_id);
    // A store whose creating transaction never committed has no format marker (or is not even a
    // valid redb file yet): both mean "genesis block not committed".
    let genesis = match ChannelLedger::open_raw(storage, root, &channel_id) {
        Err(_) => None,
        Ok(ledger) => match ledger.height() {
            0 => None,
            1 => ledger.block(0)?.map(|block| block.encode_to_vec()),
            height => return Err(LedgerError::UnderConstruction { channel: channel_id.clone(), height }),
        },
    };
    match genesis {
        None => {
            info!(target: "kvledger", func = "recoverUnderConstructionLedger", "Genesis block was not committed. Hence, the peer ledger not created. unsetting the under construction flag");
            storage.remove_file(&path).map_err(|e| LedgerError::ChannelDatabase {
                channel: channel_id.clone(),
                path: path.clone(),
                message: e.to_string(),
            })?;
            inventory.set_under_construction(None)
        }
        Some(genesis) => {
            info!(target: "kvledger", func = "recoverUnderConstructionLedger", "Genesis block was committed. Hence, marking the peer ledger as created");
            inventory.register(&channel_id, &genesis)
        }
    }
}
