//! An in-memory Storage: directories, files that outlive the databases opened on them (so a
//! ledger can be closed and reopened), and locks. Tests can read and overwrite a file's bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::env::{DirLock, LockError, Storage};

type Bytes = Arc<Mutex<Vec<u8>>>;

#[derive(Default)]
pub struct MemStorage {
    dirs: Mutex<BTreeSet<PathBuf>>,
    files: Mutex<BTreeMap<PathBuf, Bytes>>,
    pub locks: Arc<Mutex<BTreeMap<PathBuf, String>>>,
    /// The next this many renames fail (a disk that refuses to finish a salvage).
    pub failing_renames: std::sync::atomic::AtomicU32,
}

impl MemStorage {
    /// Replaces a file's bytes (a test corrupting a database).
    pub fn overwrite(&self, path: &Path, bytes: &[u8]) {
        let files = self.files.lock().unwrap();
        let file = files.get(path).unwrap_or_else(|| panic!("no file {}", path.display()));
        *file.lock().unwrap() = bytes.to_vec();
    }

    /// A file's bytes.
    pub fn read(&self, path: &Path) -> Vec<u8> {
        let files = self.files.lock().unwrap();
        let file = files.get(path).unwrap_or_else(|| panic!("no file {}", path.display()));
        file.lock().unwrap().clone()
    }

    /// Every file and its bytes (a snapshot of the whole disk).
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        self.files.lock().unwrap().iter().map(|(path, bytes)| (path.clone(), bytes.lock().unwrap().clone())).collect()
    }

    /// A disk with the same files (new copies) and directories, no locks.
    pub fn copy(&self) -> MemStorage {
        let copy = MemStorage::default();
        *copy.dirs.lock().unwrap() = self.dirs.lock().unwrap().clone();
        *copy.files.lock().unwrap() = self.files().into_iter().map(|(path, bytes)| (path, Arc::new(Mutex::new(bytes)))).collect();
        copy
    }
}

#[derive(Debug)]
struct MemLock {
    path: PathBuf,
    locks: Arc<Mutex<BTreeMap<PathBuf, String>>>,
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.locks.lock().unwrap().remove(&self.path);
    }
}

#[derive(Debug)]
struct MemFile(Bytes);

impl redb::StorageBackend for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap().len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let bytes = self.0.lock().unwrap();
        let start = offset as usize;
        let slice = bytes.get(start..start + out.len()).ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(slice);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut bytes = self.0.lock().unwrap();
        let end = offset as usize + data.len();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        bytes[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}

impl Storage for MemStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.dirs.lock().unwrap().insert(path.to_path_buf());
        Ok(())
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.dirs.lock().unwrap().retain(|d| !d.starts_with(path));
        self.files.lock().unwrap().retain(|f, _| !f.starts_with(path));
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.files.lock().unwrap().remove(path);
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        if self.failing_renames.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(io::Error::other("rename refused (test)"));
        }
        let mut files = self.files.lock().unwrap();
        let file = files.remove(from).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        files.insert(to.to_path_buf(), file);
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.dirs.lock().unwrap().contains(path) || self.files.lock().unwrap().contains_key(path)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        Ok(self.files.lock().unwrap().keys().filter(|f| f.parent() == Some(dir)).cloned().collect())
    }
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn DirLock>, LockError> {
        let mut locks = self.locks.lock().unwrap();
        if let Some(current) = locks.get(path) {
            return Err(LockError::Held { path: path.to_path_buf(), holder: Some(current.clone()) });
        }
        locks.insert(path.to_path_buf(), holder.to_string());
        Ok(Box::new(MemLock { path: path.to_path_buf(), locks: self.locks.clone() }))
    }
    fn open_db(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let file = self.files.lock().unwrap().entry(path.to_path_buf()).or_default().clone();
        Ok(Box::new(MemFile(file)))
    }
}
