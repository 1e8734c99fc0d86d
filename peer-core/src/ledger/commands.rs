//! The offline `node` commands (spec §1.4): reset, rollback, pause, resume, rebuild-dbs and
//! upgrade-dbs, adapted to peer-core's layout (blocks only; no state, history or private data
//! databases to drop).
//!
//! Each takes the data-directory lock first, so it refuses while a peer (or another command)
//! runs, with Fabric's lock error. Crash safety: every change to a channel is one redb
//! transaction (see `ChannelLedger::truncate`), and the commands that touch several channels do
//! them one by one, each step safe to repeat; so a power cut in the middle leaves every channel
//! with an intact chain, and running the command again finishes the job.

use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::{
    ChannelLedger, ChannelStatus, FORMAT, FORMAT_KEY, Inventory, LedgerError, channel, lock_and_inventory, lock_root, open_inventory,
    peek_channels,
};
use crate::env::{DirLock, Env, Storage};

/// The lock, the inventory and what the commands need to open channel stores.
struct Offline {
    storage: Arc<dyn Storage>,
    root: std::path::PathBuf,
    inventory: Inventory,
    _lock: Box<dyn DirLock>,
}

/// The lock alone: enough to check a command's arguments read-only (see `peek_channels`)
/// before anything is opened for writing.
struct Locked {
    root: std::path::PathBuf,
    lock: Box<dyn DirLock>,
}

impl Locked {
    fn take(env: &Env, file_system_path: &Path, holder: &str) -> Result<Locked, LedgerError> {
        let (root, lock) = lock_root(env, file_system_path, holder)?;
        Ok(Locked { root, lock })
    }

    fn open(self, env: &Env) -> Result<Offline, LedgerError> {
        let inventory = open_inventory(env, &self.root)?;
        Ok(Offline { storage: env.storage.clone(), root: self.root, inventory, _lock: self.lock })
    }
}

impl Offline {
    fn open(env: &Env, file_system_path: &Path, holder: &str) -> Result<Offline, LedgerError> {
        let (root, lock, inventory) = lock_and_inventory(env, file_system_path, holder)?;
        Ok(Offline { storage: env.storage.clone(), root, inventory, _lock: lock })
    }

    /// Runs `f` on every channel's store (paused ones too), going on past failures; the failures
    /// are returned together. Each store is checked whole (read-only) first, so a damaged one is
    /// reported and left byte-for-byte as it is.
    fn each_channel(&self, mut f: impl FnMut(&ChannelLedger) -> Result<(), LedgerError>) -> Result<(), LedgerError> {
        let mut failures = Vec::new();
        for channel_id in self.inventory.channels()?.keys() {
            if let Err(err) = open_checked(&self.storage, &self.root, channel_id).and_then(|ledger| f(&ledger)) {
                failures.push(err);
            }
        }
        match failures.len() {
            0 => Ok(()),
            1 => Err(failures.remove(0)),
            _ => Err(LedgerError::Several(failures)),
        }
    }
}

/// A channel's store for an offline command: opened read-only and checked whole (every block and
/// index entry read once) before the command may write to it.
fn open_checked(storage: &Arc<dyn Storage>, root: &Path, channel_id: &str) -> Result<ChannelLedger, LedgerError> {
    channel::finish_interrupted_salvage(storage, root, channel_id)?;
    let checked = ChannelLedger::open_raw(storage, root, channel_id).and_then(|ledger| ledger.verify_all().map(|()| ledger));
    checked.map_err(|err| if err.is_damage() { LedgerError::NeedsRebuild(Box::new(err)) } else { err })
}

fn required(channel_id: &str) -> Result<(), LedgerError> {
    if channel_id.is_empty() { Err(LedgerError::MissingChannelId) } else { Ok(()) }
}

/// `node reset`: every channel back to its genesis block, recording each one's height as its
/// pre-reset height (if larger than a recorded one). Paused channels are reset too.
pub fn reset(env: &Env, file_system_path: &Path, holder: &str) -> Result<(), LedgerError> {
    let offline = Offline::open(env, file_system_path, holder)?;
    offline.inventory.ensure_format()?;
    info!(target: "kvledger", func = "ResetAllKVLedgers", "Resetting all channel ledgers to genesis block");
    info!(target: "kvledger", func = "ResetAllKVLedgers", "Ledger data folder from config = [{}]", offline.root.display());
    offline.each_channel(|ledger| {
        info!(target: "blkstorage", func = "ResetBlockStore", "Resetting channel [{}] to the genesis block", ledger.id());
        ledger.truncate(1).map(drop)
    })?;
    info!(target: "kvledger", func = "ResetAllKVLedgers", "All channel ledgers have been successfully reset to the genesis block");
    Ok(())
}

/// `node rollback -c CH -b N`: keep blocks `0..=N` of one channel, recording its height as the
/// pre-reset height. N must be below the last block number.
pub fn rollback(env: &Env, file_system_path: &Path, holder: &str, channel_id: &str, block_number: u64) -> Result<(), LedgerError> {
    required(channel_id)?;
    let locked = Locked::take(env, file_system_path, holder)?;
    // Refuse bad arguments before anything is opened for writing.
    if let Some(channels) = peek_channels(&env.storage, &locked.root) {
        if !channels.contains_key(channel_id) {
            return Err(LedgerError::RollbackUnknown { channel: channel_id.to_string() });
        }
        if let Some(height) = super::channel::peek_height(&env.storage, &locked.root, channel_id) {
            let biggest = height.saturating_sub(1);
            if block_number >= biggest {
                return Err(LedgerError::RollbackTarget { channel: channel_id.to_string(), target: block_number, biggest });
            }
        }
    }
    let offline = locked.open(env)?;
    offline.inventory.ensure_format()?;
    if !offline.inventory.channels()?.contains_key(channel_id) {
        return Err(LedgerError::RollbackUnknown { channel: channel_id.to_string() });
    }
    let ledger = open_checked(&offline.storage, &offline.root, channel_id)?;
    let biggest = ledger.height().saturating_sub(1);
    if block_number >= biggest {
        return Err(LedgerError::RollbackTarget { channel: channel_id.to_string(), target: block_number, biggest });
    }
    info!(target: "kvledger", func = "RollbackKVLedger", "Rolling back ledger store");
    ledger.truncate(block_number + 1)?;
    info!(target: "kvledger", func = "RollbackKVLedger", "The channel [{channel_id}] has been successfully rolled back to the block number [{block_number}]");
    Ok(())
}

fn set_status(env: &Env, file_system_path: &Path, holder: &str, channel_id: &str, status: ChannelStatus) -> Result<(), LedgerError> {
    required(channel_id)?;
    let locked = Locked::take(env, file_system_path, holder)?;
    // An unknown channel, or one already in that status, is answered without writing a byte.
    if let Some(channels) = peek_channels(&env.storage, &locked.root) {
        match channels.get(channel_id) {
            None => return Err(LedgerError::LedgerIdDoesNotExist { channel: channel_id.to_string() }),
            Some(current) if *current == status => {
                info!(target: "kvledger", func = "updateLedgerStatus", "Ledger [{channel_id}] is already in [{status}] status, nothing to do");
                return Ok(());
            }
            Some(_) => {}
        }
    }
    let offline = locked.open(env)?;
    offline.inventory.ensure_format()?;
    let current = offline.inventory.channels()?.get(channel_id).copied();
    match current {
        None => Err(LedgerError::LedgerIdDoesNotExist { channel: channel_id.to_string() }),
        Some(current) if current == status => {
            info!(target: "kvledger", func = "updateLedgerStatus", "Ledger [{channel_id}] is already in [{status}] status, nothing to do");
            Ok(())
        }
        Some(_) => {
            info!(target: "kvledger", func = "updateLedgerStatus", "Updating ledger [{channel_id}] status to [{status}]");
            offline.inventory.set_status(channel_id, status)
        }
    }
}

/// `node pause -c CH`: the channel is not opened at start until resumed. Pausing a paused
/// channel succeeds and says so.
pub fn pause(env: &Env, file_system_path: &Path, holder: &str, channel_id: &str) -> Result<(), LedgerError> {
    set_status(env, file_system_path, holder, channel_id, ChannelStatus::Inactive)?;
    info!(target: "kvledger", func = "PauseChannel", "The channel [{channel_id}] has been successfully paused");
    Ok(())
}

/// `node resume -c CH`.
pub fn resume(env: &Env, file_system_path: &Path, holder: &str, channel_id: &str) -> Result<(), LedgerError> {
    set_status(env, file_system_path, holder, channel_id, ChannelStatus::Active)?;
    info!(target: "kvledger", func = "ResumeChannel", "The channel [{channel_id}] has been successfully resumed");
    Ok(())
}

fn drop_indexes(offline: &Offline) -> Result<(), LedgerError> {
    offline.each_channel(|ledger| {
        info!(target: "kvledger", func = "dropDBs", "Dropping all contents in BlockStoreIndex of channel [{}] at location [{}] ...if present", ledger.id(), ledger.path().display());
        ledger.drop_indexes()
    })
}

/// `node rebuild-dbs`: drop every channel's derived indexes (the next start rebuilds them from
/// the blocks), and repair what is damaged, offline: a damaged or missing inventory is rebuilt
/// from the channel stores' genesis blocks, and a damaged channel store is rebuilt from its
/// genesis block and the blocks its hash chain still proves (the next start pulls the rest from
/// the network). Damaged files are moved, untouched, to `quarantine/`.
pub fn rebuild_dbs(env: &Env, file_system_path: &Path, holder: &str) -> Result<(), LedgerError> {
    let locked = Locked::take(env, file_system_path, holder)?;
    let inventory = match open_inventory(env, &locked.root).and_then(|inventory| inventory.ensure_format().map(|()| inventory)) {
        Ok(inventory) => inventory,
        Err(damage @ LedgerError::InventoryDamaged { .. }) => rebuild_inventory(env, &locked.root, &damage)?,
        Err(err) => return Err(err),
    };
    let offline = Offline { storage: env.storage.clone(), root: locked.root, inventory, _lock: locked.lock };
    let mut failures = Vec::new();
    for channel_id in offline.inventory.channels()?.keys() {
        let result = match open_checked(&offline.storage, &offline.root, channel_id) {
            Ok(ledger) => {
                info!(target: "kvledger", func = "dropDBs", "Dropping all contents in BlockStoreIndex of channel [{}] at location [{}] ...if present", ledger.id(), ledger.path().display());
                ledger.drop_indexes()
            }
            Err(LedgerError::NeedsRebuild(damage)) => heal_offline(&offline, channel_id, &damage),
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            failures.push(err);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => Err(LedgerError::Several(failures)),
    }
}

/// One damaged channel store, rebuilt by `rebuild-dbs`.
fn heal_offline(offline: &Offline, channel_id: &str, damage: &LedgerError) -> Result<(), LedgerError> {
    warn!(target: "kvledger", func = "rebuildDBs", "{damage}");
    let Some(genesis) = offline.inventory.genesis(channel_id)? else {
        return Err(LedgerError::Corrupt {
            channel: channel_id.to_string(),
            path: channel::db_path(&offline.root, channel_id),
            what: "the inventory holds no genesis block to rebuild it from".into(),
        });
    };
    let salvaged = channel::salvage(&offline.storage, &offline.root, channel_id, &genesis)?;
    info!(target: "kvledger", func = "rebuildDBs", "{}; the next start pulls the rest from the ordering service or the org's peers", salvaged.describe(channel_id));
    Ok(())
}

/// A new inventory from the channel stores under `chains/`: each store whose genesis block reads
/// back is registered ACTIVE (a paused channel must be paused again: the old status is lost with
/// the damaged file, which goes to `quarantine/`).
fn rebuild_inventory(env: &Env, root: &Path, damage: &LedgerError) -> Result<Inventory, LedgerError> {
    warn!(target: "kvledger", func = "rebuildDBs", "{damage}");
    let path = root.join(super::INVENTORY_FILE);
    if env.storage.exists(&path) {
        let moved = channel::move_to_quarantine(&env.storage, root, &path)?;
        warn!(target: "kvledger", func = "rebuildDBs", "The damaged ledger inventory was moved to {}", moved.display());
    }
    let inventory = Inventory::open(&env.storage, root)?;
    for channel_id in super::channel_store_ids(&env.storage, root) {
        let genesis = ChannelLedger::open_raw(&env.storage, root, &channel_id).and_then(|ledger| ledger.block(0));
        match genesis {
            Ok(Some(genesis)) if ChannelLedger::check_genesis(&channel_id, &genesis).is_ok() => {
                inventory.register(&channel_id, &prost::Message::encode_to_vec(&genesis))?;
                info!(target: "kvledger", func = "rebuildDBs", "Registered channel [{channel_id}] from its block store, with status ACTIVE (pause it again if it was paused)");
            }
            Ok(_) => {
                error!(target: "kvledger", func = "rebuildDBs", "The block store of channel [{channel_id}] holds no valid genesis block: it is not registered and left where it is")
            }
            Err(err) => {
                error!(target: "kvledger", func = "rebuildDBs", "The block store of channel [{channel_id}] could not be read ({err}): it is not registered and left where it is")
            }
        }
    }
    Ok(inventory)
}

/// `node upgrade-dbs`: upgrade the inventory's format (only one exists so far: nothing to do
/// when current, an error for an unknown one), then drop the indexes as `rebuild-dbs` does.
pub fn upgrade_dbs(env: &Env, file_system_path: &Path, holder: &str) -> Result<(), LedgerError> {
    let locked = Locked::take(env, file_system_path, holder)?;
    info!(target: "kvledger", func = "UpgradeDBs", "Ledger data folder from config = [{}]", locked.root.display());
    // A data dir that never held a channel has no inventory: nothing to upgrade, nothing created.
    let inventory = locked.root.join(super::INVENTORY_FILE);
    if !env.storage.exists(&inventory) {
        warn!(target: "kvledger", func = "UpgradeIDStoreFormat", "Ledger database {} is empty, nothing to upgrade", inventory.display());
        return Ok(());
    }
    let offline = locked.open(env)?;
    match offline.inventory.get_meta(FORMAT_KEY)? {
        None => {
            warn!(target: "kvledger", func = "UpgradeIDStoreFormat", "Ledger database {} is empty, nothing to upgrade", offline.inventory.path.display());
            return Ok(());
        }
        Some(found) if found == FORMAT => {
            info!(target: "kvledger", func = "UpgradeIDStoreFormat", "Ledger database {} is already in the current format {FORMAT}, nothing to upgrade", offline.inventory.path.display());
        }
        Some(found) => return Err(LedgerError::FormatMismatch { path: offline.inventory.path.clone(), found }),
    }
    drop_indexes(&offline)
}
