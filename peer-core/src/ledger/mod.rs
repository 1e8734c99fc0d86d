//! The ledger manager: the data-directory lock and the ledger database under
//! `<peer.fileSystemPath>/ledgersData`.
//!
//! So far this opens (or creates) the database and records its format; channels, blocks and
//! the offline `node` commands arrive with issue #7. All I/O goes through the env's Storage.

pub mod block;

use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, TableDefinition};
use tracing::info;

use crate::env::{DirLock, Env, LockError};

/// Small metadata: the format marker (Fabric keeps `f` → `2.0` in its ID store).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
/// The format this build writes and reads.
pub const FORMAT: &str = "peer-core-ledger/1";
/// redb's default cache is 1 GiB; a peer's inventory needs little, and simulated peers share RAM.
const CACHE_BYTES: usize = 16 << 20;

/// Why the ledger manager could not open.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The lock is held or cannot be taken.
    #[error("{0}")]
    Lock(#[from] LockError),
    /// A directory or the database file could not be created or opened.
    #[error("opening {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// redb refused the database (corrupt, or another format).
    #[error("opening the ledger database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    /// The database was written by an incompatible build.
    #[error(
        "unexpected format. db info = [{}], data format = [{found}], expected format = [{FORMAT}]",
        path.display()
    )]
    FormatMismatch { path: PathBuf, found: String },
}

/// The ledgers of this peer. Holding it holds the data-directory lock.
pub struct LedgerMgr {
    /// Held open for the peer's lifetime; the channel code of issue #7 reads it.
    #[allow(dead_code)]
    db: redb::Database,
    root: PathBuf,
    // Dropped last (fields drop in order): the database closes before the lock is released.
    _lock: Box<dyn DirLock>,
}

impl std::fmt::Debug for LedgerMgr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerMgr").field("root", &self.root).finish_non_exhaustive()
    }
}

/// Where the data-directory lock lives (Fabric: a leveldb LOCK in `ledgersData/fileLock`).
pub fn lock_path(file_system_path: &Path) -> PathBuf {
    file_system_path.join("ledgersData").join("fileLock").join("LOCK")
}

impl LedgerMgr {
    /// Takes the lock (naming `holder` in it for whoever tries next) and opens the database.
    pub fn open(env: &Env, file_system_path: &Path, holder: &str) -> Result<LedgerMgr, LedgerError> {
        info!(target: "ledgermgmt", func = "NewLedgerMgr", "Initializing LedgerMgr");
        let root = file_system_path.join("ledgersData");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LedgerError::Io { path, source }
        };
        env.storage.create_dir_all(&root).map_err(io(&root))?;
        let lock = env.storage.lock(&lock_path(file_system_path), holder)?;
        let db_path = root.join("ledgers.redb");
        let backend = env.storage.open_db(&db_path).map_err(io(&db_path))?;
        let db_error = |e: &dyn std::fmt::Display| LedgerError::Database { path: db_path.clone(), message: e.to_string() };
        let db = redb::Builder::new().set_cache_size(CACHE_BYTES).create_with_backend(crate::env::DynBackend(backend)).map_err(|e| db_error(&e))?;
        let found = {
            let read = db.begin_read().map_err(|e| db_error(&e))?;
            match read.open_table(META) {
                Ok(table) => table.get(FORMAT_KEY).map_err(|e| db_error(&e))?.map(|v| v.value().to_string()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(db_error(&e)),
            }
        };
        match found {
            Some(format) if format == FORMAT => {}
            Some(format) => return Err(LedgerError::FormatMismatch { path: db_path, found: format }),
            None => {
                let write = db.begin_write().map_err(|e| db_error(&e))?;
                write.open_table(META).map_err(|e| db_error(&e))?.insert(FORMAT_KEY, FORMAT).map_err(|e| db_error(&e))?;
                write.commit().map_err(|e| db_error(&e))?;
            }
        }
        info!(target: "ledgermgmt", func = "NewLedgerMgr", "Initialized LedgerMgr");
        Ok(LedgerMgr { db, root, _lock: lock })
    }

    /// The IDs of the active channels (none until channels can be joined, issue #7).
    pub fn active_channels(&self) -> Vec<String> {
        Vec::new()
    }

    /// `<fileSystemPath>/ledgersData`.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
