//! The real environment: the system clock, tokio sockets, files on disk, OS entropy.
//!
//! This module (with the CLI) is where peer-core touches the OS; clippy's determinism fence is
//! lifted here item by item, each with a reason.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};

use super::{BoxFuture, Clock, Connection, DirLock, Env, Instant, Listener, LockError, Network, Storage, StreamConnection};
use crate::config::HostPort;

/// The real environment, seeded from OS entropy.
pub fn env() -> io::Result<Env> {
    let mut seed = [0u8; 32];
    // The real peer's randomness comes from the OS; the simulator seeds its Env instead.
    #[allow(clippy::disallowed_methods)]
    getrandom::fill(&mut seed).map_err(|e| io::Error::other(format!("reading OS entropy: {e}")))?;
    Ok(Env::new(Arc::new(SystemClock::new()), Arc::new(TcpNetwork), Arc::new(DiskStorage), seed))
}

/// The process's open-file limit (the soft `RLIMIT_NOFILE`); `None` when it is unlimited. The
/// start path fits the peer port's connection bound under it.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The system clock. Monotonic time is tokio's (so paused-time tests control it too).
#[derive(Debug)]
pub struct SystemClock {
    base: tokio::time::Instant,
}

impl SystemClock {
    // tokio's Instant is the monotonic source here; this is one of the two places allowed to read it.
    #[allow(clippy::disallowed_methods)]
    pub fn new() -> SystemClock {
        SystemClock { base: tokio::time::Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Instant {
        Instant(u64::try_from(tokio::time::Instant::now().duration_since(self.base).as_nanos()).unwrap_or(u64::MAX))
    }

    #[allow(clippy::disallowed_methods)]
    fn wall_clock(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let at = self.base + Duration::from_nanos(deadline.0);
        Box::pin(tokio::time::sleep_until(at))
    }
}

/// TCP through tokio.
#[derive(Debug)]
pub struct TcpNetwork;

/// A tokio TCP stream as a Connection.
fn tcp_connection(stream: TcpStream) -> io::Result<Box<dyn Connection>> {
    stream.set_nodelay(true)?;
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    Ok(Box::new(StreamConnection { stream, local, peer }))
}

struct TcpListenerHandle(TcpListener);

impl Listener for TcpListenerHandle {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Connection>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((tcp_connection(stream)?, peer))
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// The host part as the OS resolver wants it (an empty host means every interface).
fn bind_host(address: &HostPort) -> String {
    if address.host.is_empty() { "0.0.0.0".to_string() } else { address.host.clone() }
}

impl Network for TcpNetwork {
    fn bind(&self, address: &HostPort) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        let target = (bind_host(address), address.port);
        Box::pin(async move {
            let listener = TcpListener::bind((target.0.as_str(), target.1)).await?;
            Ok(Box::new(TcpListenerHandle(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, address: &HostPort, timeout: Duration) -> BoxFuture<'static, io::Result<Box<dyn Connection>>> {
        let target = (bind_host(address), address.port);
        Box::pin(async move {
            let stream = tokio::time::timeout(timeout, TcpStream::connect((target.0.as_str(), target.1)))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            tcp_connection(stream)
        })
    }

    fn interface_addresses(&self) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = if_addrs::get_if_addrs().map(|list| list.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
        addresses.dedup();
        addresses
    }
}

/// Files on the local disk.
#[derive(Debug)]
pub struct DiskStorage;

#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl DirLock for FileLock {}

/// Makes a directory entry durable (redb never syncs the directory of a file it creates).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for DiskStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
            Ok(()) => match path.parent() {
                Some(dir) => sync_dir(dir),
                None => Ok(()),
            },
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        match to.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn DirLock>, LockError> {
        let io_error = |source| LockError::Io { path: path.to_path_buf(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                return Err(LockError::Held { path: path.to_path_buf(), holder });
            }
            Err(TryLockError::Error(source)) => return Err(io_error(source)),
        }
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        file.write_all(holder.as_bytes()).map_err(io_error)?;
        Ok(Box::new(FileLock { _file: file }))
    }

    fn open_db(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        let created = !path.exists();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        if created && let Some(dir) = path.parent() {
            file.sync_all()?;
            sync_dir(dir)?;
        }
        let backend = redb::backends::FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(backend))
    }
}
