//! The world as the peer sees it: time, the network, storage and randomness, behind traits.
//!
//! Everything in the start path reaches the OS only through an [`Env`]. The CLI builds one from
//! [`real`] (tokio sockets, files, the system clock, OS entropy); the simulator builds one from
//! turmoil. Three traits, kept small so a simulated backend is easy to write:
//! - [`Clock`]: monotonic [`Instant`]s, the wall clock, and sleeping until a deadline.
//! - [`Network`]: binding listeners and dialing connections that tonic and hyper can use.
//! - [`Storage`]: directories, the data-directory lock, and redb databases.
//!
//! Randomness is a seeded ChaCha stream owned by the `Env`; components fork their own streams.

pub mod real;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::HostPort;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A point in monotonic time: nanoseconds since an arbitrary, per-clock epoch. Our own type (not
/// `std::time::Instant`) so simulated runs control it and logs and snapshots can print it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    pub fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    /// Time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX)))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}s", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// Time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now (certificate validity, gossip incarnation numbers, log timestamps).
    fn wall_clock(&self) -> SystemTime;
    /// Completes at `deadline` (at once if it has passed).
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.sleep_until(self.now() + duration)
    }
}

/// A byte stream connection (TCP or simulated).
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    fn peer_addr(&self) -> io::Result<SocketAddr>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Any byte stream as a [`Connection`], with its addresses taken when it was accepted or dialed.
/// Both the real (tokio) and simulated (turmoil) networks use it.
pub struct StreamConnection<S> {
    pub stream: S,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl<S: AsyncRead + Unpin> AsyncRead for StreamConnection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StreamConnection<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for StreamConnection<S> {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A bound listener.
pub trait Listener: Send + 'static {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Connection>, SocketAddr)>>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A clock that never moves: time 0 and the Unix epoch; sleeps never end. For code run where
/// time does not matter (the ledger's own tests, crash tests of the store).
#[derive(Clone, Copy, Debug, Default)]
pub struct StoppedClock;

impl Clock for StoppedClock {
    fn now(&self) -> Instant {
        Instant(0)
    }
    fn wall_clock(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
    fn sleep_until(&self, _deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// The network.
pub trait Network: Send + Sync + 'static {
    /// Binds a listener (port 0: any free port).
    fn bind(&self, address: &HostPort) -> BoxFuture<'static, io::Result<Box<dyn Listener>>>;
    /// Opens a connection, giving up after `timeout`.
    fn connect(&self, address: &HostPort, timeout: Duration) -> BoxFuture<'static, io::Result<Box<dyn Connection>>>;
    /// This host's interface addresses, in a stable order (for peer address auto-detection).
    fn interface_addresses(&self) -> Vec<IpAddr>;
}

/// Why the data-directory lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (a running peer or an offline `node` command) holds it.
    #[error(
        "as another peer node command is executing, wait for that command to complete its execution or terminate it before retrying: lock is already acquired on file {}{}",
        path.display(),
        holder.as_ref().map(|h| format!(" (held by {h})")).unwrap_or_default()
    )]
    Held { path: PathBuf, holder: Option<String> },
    /// The lock file could not be created or locked.
    #[error("Error acquiring lock on file {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive lock, released when dropped.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// Persistent storage.
pub trait Storage: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it (`node reset`/`rebuild-dbs` drop databases).
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file if it exists, durably (its directory entry is gone after a power cut). The
    /// ledger removes a channel's database when that channel's creation did not complete.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// The files (not directories) directly in `dir`, sorted; empty if `dir` does not exist.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Renames a file (replacing `to` if it exists), durably: after a power cut the file is
    /// under exactly one of the two names, whole. The ledger builds its inventory under a
    /// temporary name and renames it into place.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Takes the exclusive lock `path` (a lock file), recording `holder` in it for others' errors.
    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn DirLock>, LockError>;
    /// Opens (creating it if missing) the file at `path` as a redb backend. A new file's
    /// directory entry is made durable before this returns.
    fn open_db(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>>;
}

/// The environment a peer runs in. Cheap to clone.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub network: Arc<dyn Network>,
    pub storage: Arc<dyn Storage>,
    rng: Arc<Mutex<ChaCha20Rng>>,
    /// TLS randomness, key exchange and signing: the OS's on a real peer; otherwise a stream
    /// seeded from the env's seed (without drawing from `rng`), built the first time TLS is used.
    tls: TlsRandomness,
    /// The process metrics `/metrics` reports: only the real env has them ([`real::env`]).
    process_collector: Option<real::ProcessCollector>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env").finish_non_exhaustive()
    }
}

impl Env {
    /// An environment from its parts; `seed` seeds every random choice the peer makes.
    pub fn new(clock: Arc<dyn Clock>, network: Arc<dyn Network>, storage: Arc<dyn Storage>, seed: [u8; 32]) -> Env {
        let tls = TlsRandomness::Seeded { seed: tls_seed(&seed), provider: Arc::new(std::sync::OnceLock::new()) };
        Env { clock, network, storage, rng: Arc::new(Mutex::new(ChaCha20Rng::from_seed(seed))), tls, process_collector: None }
    }

    /// The same environment with TLS on the OS's randomness (the real env).
    pub fn with_os_tls(mut self) -> Env {
        self.tls = TlsRandomness::Os;
        self
    }

    /// Where TLS gets its randomness (see `net::tls::provider`).
    pub fn tls_randomness(&self) -> &TlsRandomness {
        &self.tls
    }

    /// The same environment reporting the process's metrics on `/metrics` (the real env: they
    /// are read from the OS at scrape time).
    pub fn with_process_collector(mut self, collector: real::ProcessCollector) -> Env {
        self.process_collector = Some(collector);
        self
    }

    /// The process metrics to register, if this env has them.
    pub fn process_collector(&self) -> Option<real::ProcessCollector> {
        self.process_collector
    }

    /// A fresh random stream for one component, drawn from the env's seeded stream. Components
    /// take theirs at start in a fixed order, so a seed fixes every stream.
    pub fn fork_rng(&self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).fill_bytes(&mut seed);
        ChaCha20Rng::from_seed(seed)
    }
}

/// Where TLS gets its randomness: the OS (a real peer), or a seed (the simulator and tests: the
/// provider is built from it the first time TLS is used, and kept for the env's life).
#[derive(Clone)]
pub enum TlsRandomness {
    Os,
    Seeded { seed: [u8; 32], provider: Arc<std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>>> },
}

/// The TLS stream's seed: derived from the env's seed by hashing, so taking it draws nothing from
/// the env's stream (runs without TLS are unchanged).
fn tls_seed(seed: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"peer-core env tls seed\0");
    hasher.update(seed);
    hasher.finalize().into()
}

/// A boxed redb backend that is itself a backend (redb takes `impl StorageBackend` by value).
/// Range locks are not forwarded: the data-directory lock already makes the peer the only writer.
#[derive(Debug)]
pub struct DynBackend(pub Box<dyn redb::StorageBackend>);

impl redb::StorageBackend for DynBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.0.close()
    }
}
