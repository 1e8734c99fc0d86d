//! The boundary between the ledger and redb: what keeps a damaged file on disk from taking the
//! peer down or being destroyed.
//!
//! redb trusts its pages: a structurally plausible but damaged page can make it panic
//! (`unreachable!` in its B-tree code), its page checksums are verified only when it repairs a
//! file after an unclean shutdown, and opening a file for writing rewrites its header (and a
//! repair rewrites much more). So every redb call the ledger makes goes through two guards:
//!
//! - [`shielded`] runs it under `catch_unwind` and turns a panic into a
//!   [`StoreError::Corrupt`]; the panic's message is kept for the error instead of being printed
//!   (a panic inside a shield is not a crash of the peer).
//! - [`GuardedBackend`] sits between redb and the env's storage. In [`Mode::Fenced`] writes pass
//!   through until the store's fence is raised (on the first failure), then every write, resize
//!   and sync is refused, so nothing redb does afterwards (its drop flushing a header) reaches
//!   the file. In [`Mode::Overlay`] writes never reach the file at all: they land in memory, so a
//!   file can be opened, repaired and checked by redb without a byte of it changing. A store is
//!   checked this way before it is opened for writing.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, RwLock};

use tokio::sync::watch;
use tracing::error;

use super::channel::StoreError;
use crate::env::Storage;

thread_local! {
    /// How many shields this thread is inside (a panic there is caught, not a crash).
    static SHIELD_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The message of the last panic caught by a shield on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs (once per process) a panic hook that keeps quiet about panics inside a shield and
/// hands every other panic to the hook that was there before.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if SHIELD_DEPTH.with(Cell::get) > 0 {
                let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                CAUGHT.with(|caught| *caught.borrow_mut() = Some(format!("{payload}{location}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f` (redb work) so that a panic inside it becomes a [`StoreError::Corrupt`] naming what
/// redb said. Whatever `f` touched must be treated as failed afterwards (the caller fences it).
pub(crate) fn shielded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    install_hook();
    SHIELD_DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    SHIELD_DEPTH.with(|d| d.set(d.get() - 1));
    match result {
        Ok(result) => result,
        Err(_) => {
            let message = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "a panic".to_string());
            Err(StoreError::Corrupt(format!("the database engine failed on a damaged page ({message})")))
        }
    }
}

/// Drops `value` (a redb database or transaction, whose drop may write or panic) inside a shield.
pub(crate) fn drop_shielded<T>(value: T) {
    let _ = shielded(move || {
        drop(value);
        Ok(())
    });
}

/// A store's fence: raised on the first failure, after which its file is never written again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fence(Arc<AtomicBool>);

impl Fence {
    pub(crate) fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a [`GuardedBackend`] treats writes.
#[derive(Debug)]
pub(crate) enum Mode {
    /// Writes reach the file until the fence is raised.
    Fenced(Fence),
    /// Writes stay in memory; the file is only read.
    Overlay(Mutex<Overlay>),
}

/// A redb backend over the env's storage, with a fence or an in-memory overlay. The file is
/// shared by the read-only and the writable handles of one [`GuardedDb`] and closed by neither.
#[derive(Debug)]
pub(crate) struct GuardedBackend {
    inner: Arc<dyn redb::StorageBackend>,
    mode: Mode,
}

fn fenced() -> io::Error {
    io::Error::other("the store failed earlier and is no longer written to")
}

impl GuardedBackend {
    pub(crate) fn fenced(inner: Arc<dyn redb::StorageBackend>, fence: Fence) -> GuardedBackend {
        GuardedBackend { inner, mode: Mode::Fenced(fence) }
    }

    /// A read-only view of `inner` whose writes stay in memory.
    pub(crate) fn overlay(inner: Arc<dyn redb::StorageBackend>) -> io::Result<GuardedBackend> {
        let base_len = inner.len()?;
        let overlay = Overlay { len: base_len, base_visible: base_len, pages: BTreeMap::new() };
        Ok(GuardedBackend { inner, mode: Mode::Overlay(Mutex::new(overlay)) })
    }
}

const PAGE: u64 = 4096;

/// Writes kept in memory over a file that is never written: whole 4 KiB pages, copied from the
/// file (or zeros) on first write. `base_visible` is how much of the file still shows through
/// (a shrink hides the rest; growing again shows zeros there, as a file would).
#[derive(Debug)]
pub(crate) struct Overlay {
    len: u64,
    base_visible: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Overlay {
    fn base_page(&self, inner: &dyn redb::StorageBackend, index: u64) -> io::Result<Box<[u8]>> {
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        let end = (start + PAGE).min(self.base_visible);
        if end > start {
            inner.read(start, &mut page[..(end - start) as usize])?;
        }
        Ok(page)
    }

    fn read(&self, inner: &dyn redb::StorageBackend, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(out.len() as u64).ok_or_else(|| io::Error::other("read overflows"))?;
        if end > self.len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"));
        }
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let take = ((PAGE - at % PAGE).min(end - at)) as usize;
            let dest = &mut out[(at - offset) as usize..(at - offset) as usize + take];
            match self.pages.get(&index) {
                Some(page) => dest.copy_from_slice(&page[within..within + take]),
                None => {
                    let visible = self.base_visible.saturating_sub(at).min(take as u64) as usize;
                    if visible > 0 {
                        inner.read(at, &mut dest[..visible])?;
                    }
                    dest[visible..].fill(0);
                }
            }
            at += take as u64;
        }
        Ok(())
    }

    fn write(&mut self, inner: &dyn redb::StorageBackend, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(data.len() as u64).ok_or_else(|| io::Error::other("write overflows"))?;
        let mut at = offset;
        while at < end {
            let index = at / PAGE;
            let within = (at % PAGE) as usize;
            let take = ((PAGE - at % PAGE).min(end - at)) as usize;
            if !self.pages.contains_key(&index) {
                let page = self.base_page(inner, index)?;
                self.pages.insert(index, page);
            }
            let source = &data[(at - offset) as usize..(at - offset) as usize + take];
            if let Some(page) = self.pages.get_mut(&index) {
                page[within..within + take].copy_from_slice(source);
            }
            at += take as u64;
        }
        self.len = self.len.max(end);
        Ok(())
    }

    fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.base_visible = self.base_visible.min(len);
            let first_gone = len.div_ceil(PAGE);
            self.pages.retain(|index, _| *index < first_gone);
            if !len.is_multiple_of(PAGE)
                && let Some(page) = self.pages.get_mut(&(len / PAGE))
            {
                page[(len % PAGE) as usize..].fill(0);
            }
        }
        self.len = len;
    }
}

impl redb::StorageBackend for GuardedBackend {
    fn len(&self) -> Result<u64, io::Error> {
        match &self.mode {
            Mode::Fenced(_) => self.inner.len(),
            Mode::Overlay(overlay) => Ok(overlay.lock().unwrap_or_else(|p| p.into_inner()).len),
        }
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        match &self.mode {
            Mode::Fenced(_) => self.inner.read(offset, out),
            Mode::Overlay(overlay) => overlay.lock().unwrap_or_else(|p| p.into_inner()).read(self.inner.as_ref(), offset, out),
        }
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        match &self.mode {
            Mode::Fenced(fence) if fence.is_raised() => Err(fenced()),
            Mode::Fenced(_) => self.inner.set_len(len),
            Mode::Overlay(overlay) => {
                overlay.lock().unwrap_or_else(|p| p.into_inner()).set_len(len);
                Ok(())
            }
        }
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        match &self.mode {
            Mode::Fenced(fence) if fence.is_raised() => Err(fenced()),
            Mode::Fenced(_) => self.inner.sync_data(),
            Mode::Overlay(_) => Ok(()),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        match &self.mode {
            Mode::Fenced(fence) if fence.is_raised() => Err(fenced()),
            Mode::Fenced(_) => self.inner.write(offset, data),
            Mode::Overlay(overlay) => overlay.lock().unwrap_or_else(|p| p.into_inner()).write(self.inner.as_ref(), offset, data),
        }
    }

    // `close` is left to the default (nothing): the file outlives each handle, and is closed
    // when the last handle on it drops it.
}

/// Why [`GuardedDb::open`] failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// There is no file.
    Missing,
    /// The file could not be opened (permissions, a directory…): not damage.
    Io(io::Error),
    /// redb could not open it: damage.
    Store(StoreError),
}

/// One redb handle on a file: read-only (over an overlay) or writable (through the fence).
struct Handle {
    db: Option<redb::Database>,
    writable: bool,
}

impl Handle {
    fn db(&self) -> Result<&redb::Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Corrupt("the store is closed".into()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            drop_shielded(db);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A redb database behind both guards: opened read-only over an overlay (opening and any repair
/// write nothing), switched to a writable handle through the fence by the first write, and failed
/// for good by the first damage it meets (fence raised, ERROR logged once, every later call
/// refused with the first reason).
pub(crate) struct GuardedDb {
    /// The file (`None` once closed).
    backend: Mutex<Option<Arc<dyn redb::StorageBackend>>>,
    /// The current file's fence (a reopened file gets a new one).
    fence: Mutex<Fence>,
    cache_bytes: usize,
    /// What the ERROR line calls this database ("The block store of channel [x]").
    label: String,
    path: std::path::PathBuf,
    /// Reads hold the read lock for one (synchronous, short) call, so the switch to a writable
    /// handle waits for them and two handles never write the file.
    handle: RwLock<Handle>,
    /// After a failed write (an I/O error: a full disk, a failed fsync) redb refuses further
    /// writes until the database is reopened; the next write does that first.
    reopen: Mutex<bool>,
    failure: watch::Sender<Option<String>>,
    /// Whether a failure is logged here (once the opener has put the database in service);
    /// before that the opener reports it. With it, an alarm to ring on failure.
    reporting: Mutex<Option<watch::Sender<u64>>>,
}

fn open_redb(backend: GuardedBackend, cache_bytes: usize) -> Result<redb::Database, StoreError> {
    shielded(|| Ok(redb::Builder::new().set_cache_size(cache_bytes).create_with_backend(backend)?))
}

impl GuardedDb {
    /// Opens the file at `path` read-only. Writes nothing, creates nothing.
    pub(crate) fn open(storage: &Arc<dyn Storage>, path: &Path, cache_bytes: usize, label: String) -> Result<GuardedDb, OpenError> {
        let (backend, db) = GuardedDb::open_file(storage, path, cache_bytes)?;
        let (failure, _) = watch::channel(None);
        Ok(GuardedDb {
            backend: Mutex::new(Some(backend)),
            fence: Mutex::new(Fence::default()),
            cache_bytes,
            label,
            path: path.to_path_buf(),
            handle: RwLock::new(Handle { db: Some(db), writable: false }),
            reopen: Mutex::new(false),
            failure,
            reporting: Mutex::new(None),
        })
    }

    fn open_file(
        storage: &Arc<dyn Storage>,
        path: &Path,
        cache_bytes: usize,
    ) -> Result<(Arc<dyn redb::StorageBackend>, redb::Database), OpenError> {
        if !storage.exists(path) {
            return Err(OpenError::Missing);
        }
        let backend: Arc<dyn redb::StorageBackend> = Arc::from(storage.open_db(path).map_err(OpenError::Io)?);
        let overlay = GuardedBackend::overlay(backend.clone()).map_err(|e| OpenError::Store(StoreError::Db(redb::Error::Io(e))))?;
        let db = open_redb(overlay, cache_bytes).map_err(OpenError::Store)?;
        Ok((backend, db))
    }

    /// Opens the file at the same path again after [`GuardedDb::close`] (a healed store took the
    /// damaged one's place): read-only, with a new fence, and no longer failed.
    pub(crate) fn reopen(&self, storage: &Arc<dyn Storage>) -> Result<(), OpenError> {
        let mut handle = self.handle.write().unwrap_or_else(|p| p.into_inner());
        let (backend, db) = GuardedDb::open_file(storage, &self.path, self.cache_bytes)?;
        *lock(&self.backend) = Some(backend);
        *lock(&self.fence) = Fence::default();
        *handle = Handle { db: Some(db), writable: false };
        *lock(&self.reopen) = false;
        self.failure.send_replace(None);
        Ok(())
    }

    /// Runs `f` on the current handle inside a shield; a failure fails the database. A read
    /// refused because an earlier write failed (redb's `PreviousIo`: a full disk, a failed fsync)
    /// is not damage: the database is reopened and the read tried once more.
    pub(crate) fn read<T>(&self, f: impl Fn(&redb::Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.check_failed()?;
        let attempt = || {
            let handle = self.handle.read().unwrap_or_else(|p| p.into_inner());
            shielded(|| f(handle.db()?))
        };
        let result = match attempt() {
            Err(StoreError::Db(redb::Error::PreviousIo)) => {
                *lock(&self.reopen) = true;
                self.ensure_writable()?;
                attempt()
            }
            other => other,
        };
        result.map_err(|e| StoreError::Corrupt(self.fail(e)))
    }

    /// Runs `f` on a writable handle (opened first if needed) inside a shield. Damage fails the
    /// database; an I/O error makes the next write reopen it first (redb's repair then runs).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&redb::Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.check_failed()?;
        self.ensure_writable()?;
        let handle = self.handle.read().unwrap_or_else(|p| p.into_inner());
        let result = shielded(|| f(handle.db()?));
        drop(handle);
        match result {
            Err(StoreError::Db(err @ (redb::Error::Io(_) | redb::Error::PreviousIo))) => {
                *lock(&self.reopen) = true;
                Err(StoreError::Db(err))
            }
            Err(e) => Err(StoreError::Corrupt(self.fail(e))),
            Ok(value) => Ok(value),
        }
    }

    fn ensure_writable(&self) -> Result<(), StoreError> {
        let mut reopen = lock(&self.reopen);
        let mut handle = self.handle.write().unwrap_or_else(|p| p.into_inner());
        if handle.writable && !*reopen {
            return Ok(());
        }
        // The old handle goes first: two handles never write the same file.
        *handle = Handle { db: None, writable: false };
        let Some(backend) = lock(&self.backend).clone() else { return Err(StoreError::Corrupt("the store is closed".into())) };
        let fence = lock(&self.fence).clone();
        match open_redb(GuardedBackend::fenced(backend, fence), self.cache_bytes) {
            Ok(db) => {
                *handle = Handle { db: Some(db), writable: true };
                *reopen = false;
                Ok(())
            }
            // An I/O error (a full disk, a failed fsync) is not damage: the next write tries again.
            Err(StoreError::Db(err @ (redb::Error::Io(_) | redb::Error::PreviousIo))) => Err(StoreError::Db(err)),
            Err(e) => {
                drop(handle);
                drop(reopen);
                Err(StoreError::Corrupt(self.fail(e)))
            }
        }
    }

    fn check_failed(&self) -> Result<(), StoreError> {
        match &*self.failure.borrow() {
            Some(what) => Err(StoreError::Corrupt(what.clone())),
            None => Ok(()),
        }
    }

    /// Fails the database (the first time: fence raised, ERROR logged, watchers told) and
    /// returns the reason it failed with (the first one).
    pub(crate) fn fail(&self, error: StoreError) -> String {
        let what = error.text();
        lock(&self.fence).raise();
        let mut first = false;
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            *failure = Some(what.clone());
            first = true;
            true
        });
        if first && let Some(alarm) = &*lock(&self.reporting) {
            error!(target: "blkstorage", func = "checkStore", "{} at {} is damaged: {what}; it is no longer written to and will be rebuilt", self.label, self.path.display());
            alarm.send_modify(|rings| *rings += 1);
        }
        self.failed().unwrap_or(what)
    }

    /// From now on a failure is logged (once) here and rings `alarm`: the database is in service.
    pub(crate) fn set_reporting(&self, alarm: watch::Sender<u64>) {
        *lock(&self.reporting) = Some(alarm);
    }

    /// Why the database failed, if it has.
    pub(crate) fn failed(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Watches [`GuardedDb::failed`].
    pub(crate) fn subscribe_failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.subscribe()
    }

    /// Closes the database now, whoever else holds it (its file is about to be moved), and
    /// never writes it again.
    pub(crate) fn close(&self) {
        lock(&self.fence).raise();
        *self.handle.write().unwrap_or_else(|p| p.into_inner()) = Handle { db: None, writable: false };
        *lock(&self.backend) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    /// A file in memory that counts writes (it must see none through an overlay).
    #[derive(Debug, Default)]
    struct Memory {
        bytes: Mutex<Vec<u8>>,
        writes: Mutex<u32>,
    }

    #[derive(Debug, Clone)]
    struct Shared(Arc<Memory>);

    impl StorageBackend for Shared {
        fn len(&self) -> Result<u64, io::Error> {
            Ok(self.0.bytes.lock().unwrap().len() as u64)
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            let bytes = self.0.bytes.lock().unwrap();
            out.copy_from_slice(&bytes[offset as usize..offset as usize + out.len()]);
            Ok(())
        }
        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            *self.0.writes.lock().unwrap() += 1;
            self.0.bytes.lock().unwrap().resize(len as usize, 0);
            Ok(())
        }
        fn sync_data(&self) -> Result<(), io::Error> {
            Ok(())
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            *self.0.writes.lock().unwrap() += 1;
            let mut bytes = self.0.bytes.lock().unwrap();
            let end = offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn an_overlay_reads_its_own_writes_and_never_writes_the_file() {
        let file = Arc::new(Memory::default());
        *file.bytes.lock().unwrap() = (0..10_000u32).map(|i| i as u8).collect();
        let original = file.bytes.lock().unwrap().clone();
        let overlay = GuardedBackend::overlay(Arc::new(Shared(file.clone()))).unwrap();
        overlay.write(4090, &[0xAA; 20]).unwrap();
        overlay.set_len(12_000).unwrap();
        let mut out = vec![0u8; 30];
        overlay.read(4085, &mut out).unwrap();
        assert_eq!(&out[..5], &original[4085..4090]);
        assert_eq!(&out[5..25], &[0xAA; 20]);
        assert_eq!(&out[25..], &original[4110..4115]);
        // Shrinking hides the file's bytes; growing again shows zeros.
        overlay.set_len(5000).unwrap();
        overlay.set_len(9000).unwrap();
        let mut tail = vec![1u8; 100];
        overlay.read(8000, &mut tail).unwrap();
        assert!(tail.iter().all(|b| *b == 0));
        let mut kept = vec![0u8; 10];
        overlay.read(4990, &mut kept).unwrap();
        assert_eq!(kept, original[4990..5000]);
        assert_eq!(overlay.len().unwrap(), 9000);
        assert_eq!(*file.writes.lock().unwrap(), 0);
        assert_eq!(*file.bytes.lock().unwrap(), original);
    }

    #[test]
    fn a_raised_fence_refuses_every_write() {
        let file = Arc::new(Memory::default());
        let fence = Fence::default();
        let backend = GuardedBackend::fenced(Arc::new(Shared(file.clone())), fence.clone());
        backend.write(0, b"ok").unwrap();
        fence.raise();
        assert!(backend.write(0, b"no").is_err());
        assert!(backend.set_len(0).is_err());
        assert!(backend.sync_data().is_err());
        assert_eq!(*file.bytes.lock().unwrap(), b"ok");
    }

    #[test]
    fn a_panic_in_a_shield_is_an_error_naming_it() {
        let result: Result<(), StoreError> = shielded(|| panic!("entered unreachable code"));
        match result {
            Err(StoreError::Corrupt(what)) => assert!(what.contains("entered unreachable code"), "{what}"),
            other => panic!("{other:?}"),
        }
    }
}
