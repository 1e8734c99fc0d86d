//! The simulated environment: turmoil's network and time, and a simulated disk.
//!
//! - [`SimClock`]: monotonic time is tokio's (virtual under turmoil); the wall clock is the run's
//!   fixed epoch plus the *global* simulated time, so it keeps moving forward across a host's
//!   crash and restart (a restarted peer gets a higher gossip incarnation number).
//! - [`SimNetwork`]: turmoil TCP. Connects time out (a crashed host drops SYNs silently).
//! - [`SimDisk`]: a per-host disk that survives restarts. Each file keeps the bytes written and
//!   the bytes synced apart; a power cut throws away what was not synced. A power switch is
//!   turned off *before* the host is crashed so redb's drop cannot flush (a drop is a graceful
//!   close in redb; a crash is not).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::future::Future;
use std::time::{Duration, SystemTime};

use peer_core::config::HostPort;
use peer_core::env::{BoxFuture, Clock, Connection, DirLock, Instant, Listener, LockError, MessageFault, Network, Storage, StreamConnection};

/// Simulated time.
pub struct SimClock {
    base: tokio::time::Instant,
    epoch: SystemTime,
}

impl SimClock {
    /// Must be created inside a turmoil host (tokio time there is the simulation's).
    // Under turmoil, tokio's clock is virtual: reading it is deterministic.
    #[allow(clippy::disallowed_methods)]
    pub fn new(epoch: SystemTime) -> SimClock {
        SimClock { base: tokio::time::Instant::now(), epoch }
    }
}

impl Clock for SimClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Instant {
        Instant(u64::try_from(tokio::time::Instant::now().duration_since(self.base).as_nanos()).unwrap_or(u64::MAX))
    }

    fn wall_clock(&self) -> SystemTime {
        self.epoch + turmoil::sim_elapsed().unwrap_or_default()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(self.base + Duration::from_nanos(deadline.0)))
    }
}

/// turmoil TCP for one host.
pub struct SimNetwork {
    /// This host's name (turmoil resolves names to its simulated IPs).
    pub host: String,
    /// Faults injected above turmoil (None: a clean network).
    pub faults: Option<NetFaults>,
    /// Whole gossip messages lost or repeated on arrival (None: never).
    pub messages: Option<MessageFaults>,
}

/// Message-level faults (see [`Network::message_fault`]): the loss rate is shared by every host
/// and changed by the timeline; duplication has a fixed rate. Each host draws from its own
/// seeded stream, so runs repeat.
#[derive(Clone)]
pub struct MessageFaults {
    /// The current loss probability, as `f64` bits.
    pub loss: Arc<AtomicU64>,
    pub duplicate: f64,
    pub rng: Arc<Mutex<rand_chacha::ChaCha8Rng>>,
    /// How many messages were lost and duplicated (coverage).
    pub lost: Arc<AtomicU64>,
    pub duplicated: Arc<AtomicU64>,
}

impl MessageFaults {
    pub fn set_loss(loss: &AtomicU64, probability: f64) {
        loss.store(probability.to_bits(), Ordering::Relaxed);
    }

    fn next(&self) -> MessageFault {
        use rand_core::Rng;
        let loss = f64::from_bits(self.loss.load(Ordering::Relaxed));
        if loss == 0.0 && self.duplicate == 0.0 {
            return MessageFault::Deliver;
        }
        let roll = self.rng.lock().unwrap_or_else(|p| p.into_inner()).next_u64() as f64 / u64::MAX as f64;
        if roll < loss {
            self.lost.fetch_add(1, Ordering::Relaxed);
            MessageFault::Drop
        } else if roll < loss + self.duplicate {
            self.duplicated.fetch_add(1, Ordering::Relaxed);
            MessageFault::Duplicate
        } else {
            MessageFault::Deliver
        }
    }
}

/// Delays injected on writes: with `probability`, a write waits up to `max_delay` (virtual
/// time) before it goes out. Order within a connection is kept, as TCP keeps it, but traffic
/// on different connections is reordered. turmoil has no such fault of its own.
#[derive(Clone)]
pub struct NetFaults {
    pub probability: f64,
    pub max_delay: Duration,
    /// Seeds each connection's fault stream (drawn in connection order, so runs repeat).
    pub rng: Arc<Mutex<rand_chacha::ChaCha8Rng>>,
    /// How many writes were delayed (coverage).
    pub fired: Arc<std::sync::atomic::AtomicU64>,
}

/// A connection whose writes may be held back (see [`NetFaults`]).
struct DelayedConnection {
    inner: Box<dyn Connection>,
    faults: NetFaults,
    rng: rand_chacha::ChaCha8Rng,
    /// A delay in progress for the next write, or `None` to decide afresh.
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The current write already waited its delay.
    cleared: bool,
}

impl DelayedConnection {
    fn wrap(inner: Box<dyn Connection>, faults: &NetFaults) -> Box<dyn Connection> {
        use rand_core::SeedableRng;
        let seed = rand_core::Rng::next_u64(&mut *faults.rng.lock().unwrap_or_else(|p| p.into_inner()));
        Box::new(DelayedConnection { inner, faults: faults.clone(), rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed), sleep: None, cleared: false })
    }
}

impl tokio::io::AsyncRead for DelayedConnection {
    fn poll_read(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for DelayedConnection {
    fn poll_write(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<io::Result<usize>> {
        use rand_core::Rng;
        let this = &mut *self;
        if !this.cleared && this.sleep.is_none() {
            let roll = this.rng.next_u64() as f64 / u64::MAX as f64;
            if roll < this.faults.probability {
                let nanos = this.rng.next_u64() % (this.faults.max_delay.as_nanos() as u64).max(1);
                this.faults.fired.fetch_add(1, Ordering::Relaxed);
                this.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_nanos(nanos))));
            } else {
                this.cleared = true;
            }
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
            this.sleep = None;
            this.cleared = true;
        }
        let result = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if result.is_ready() {
            this.cleared = false;
        }
        result
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for DelayedConnection {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The connection, with delays injected when the network has faults.
fn with_faults(connection: Box<dyn Connection>, faults: Option<&NetFaults>) -> Box<dyn Connection> {
    match faults {
        Some(faults) => DelayedConnection::wrap(connection, faults),
        None => connection,
    }
}

/// A turmoil TCP stream as a Connection.
fn sim_connection(stream: turmoil::net::TcpStream) -> io::Result<Box<dyn Connection>> {
    let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
    Ok(Box::new(StreamConnection { stream, local, peer }))
}

struct SimListener(turmoil::net::TcpListener, Option<NetFaults>);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Connection>, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((with_faults(sim_connection(stream)?, self.1.as_ref()), peer))
        })
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for SimNetwork {
    fn bind(&self, address: &HostPort) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        // A simulated host has one address; every bind is on it.
        let port = address.port;
        let faults = self.faults.clone();
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
            Ok(Box::new(SimListener(listener, faults)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, address: &HostPort, timeout: Duration) -> BoxFuture<'static, io::Result<Box<dyn Connection>>> {
        let target = (address.host.clone(), address.port);
        let faults = self.faults.clone();
        Box::pin(async move {
            let connect = turmoil::net::TcpStream::connect((target.0.as_str(), target.1));
            let stream = tokio::time::timeout(timeout, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(with_faults(sim_connection(stream)?, faults.as_ref()))
        })
    }

    fn interface_addresses(&self) -> Vec<IpAddr> {
        vec![IpAddr::from([127, 0, 0, 1]), turmoil::lookup(self.host.as_str())]
    }

    fn message_fault(&self) -> MessageFault {
        self.messages.as_ref().map_or(MessageFault::Deliver, MessageFaults::next)
    }
}

/// One simulated file: what was written, and what would survive a power cut.
#[derive(Clone, Debug, Default)]
struct SimFile {
    written: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeMap<PathBuf, String>,
}

/// A host's disk. Cheap to clone; survives the host's restarts.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
    /// Off between a power cut and the restart: every operation fails, so nothing the dying
    /// process does (redb's drop flushing) reaches the disk.
    powered: Arc<AtomicBool>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk { state: Arc::default(), powered: Arc::new(AtomicBool::new(true)) }
    }
}

impl SimDisk {
    fn state(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power: unsynced bytes are lost and locks die with the process.
    pub fn power_cut(&self) {
        self.powered.store(false, Ordering::SeqCst);
        let mut state = self.state();
        for file in state.files.values_mut() {
            file.written = file.synced.clone();
        }
        state.locks.clear();
    }

    /// Power back on (before the host restarts).
    pub fn power_on(&self) {
        self.powered.store(true, Ordering::SeqCst);
    }

    fn check_power(&self) -> io::Result<()> {
        if self.powered.load(Ordering::SeqCst) { Ok(()) } else { Err(io::Error::other("power lost")) }
    }
}

/// The peer's Storage on a simulated disk.
#[derive(Clone, Debug)]
pub struct SimStorage(pub SimDisk);

#[derive(Debug)]
struct SimLock {
    path: PathBuf,
    disk: SimDisk,
}

impl DirLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.state().locks.remove(&self.path);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.check_power()?;
        self.0.state().dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.check_power()?;
        let mut state = self.0.state();
        state.dirs.retain(|d| !d.starts_with(path));
        state.files.retain(|f, _| !f.starts_with(path));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.0.state();
        state.dirs.contains(path) || state.files.contains_key(path)
    }

    fn lock(&self, path: &Path, holder: &str) -> Result<Box<dyn DirLock>, LockError> {
        let mut state = self.0.state();
        if let Some(current) = state.locks.get(path) {
            return Err(LockError::Held { path: path.to_path_buf(), holder: Some(current.clone()) });
        }
        state.locks.insert(path.to_path_buf(), holder.to_string());
        Ok(Box::new(SimLock { path: path.to_path_buf(), disk: self.0.clone() }))
    }

    fn open_db(&self, path: &Path) -> io::Result<Box<dyn redb::StorageBackend>> {
        self.0.check_power()?;
        // Creating the file also makes its directory entry durable (the real Storage fsyncs the
        // directory), so a new, empty file survives a power cut.
        self.0.state().files.entry(path.to_path_buf()).or_default();
        Ok(Box::new(SimFileBackend { path: path.to_path_buf(), disk: self.0.clone() }))
    }
}

/// A redb backend over one simulated file.
#[derive(Debug)]
struct SimFileBackend {
    path: PathBuf,
    disk: SimDisk,
}

impl SimFileBackend {
    fn with_file<T>(&self, f: impl FnOnce(&mut SimFile) -> io::Result<T>) -> io::Result<T> {
        self.disk.check_power()?;
        let mut state = self.disk.state();
        let file = state.files.get_mut(&self.path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        f(file)
    }
}

impl redb::StorageBackend for SimFileBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.with_file(|file| Ok(file.written.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.with_file(|file| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start.checked_add(out.len()).ok_or_else(|| io::Error::other("read overflows"))?;
            let bytes = file.written.get(start..end).ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
            out.copy_from_slice(bytes);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.with_file(|file| {
            file.written.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.with_file(|file| {
            file.synced = file.written.clone();
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.with_file(|file| {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let end = start + data.len();
            if file.written.len() < end {
                file.written.resize(end, 0);
            }
            file.written[start..end].copy_from_slice(data);
            Ok(())
        })
    }
}
