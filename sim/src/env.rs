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
//! - [`SignatureMemo`]: gossip's identity verifier for a whole run, shared by every simulated
//!   peer: a signature found valid once is not checked again by the next peer that receives the
//!   same message. The answers are the real verifier's; only the repeated work goes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use peer_core::config::HostPort;
use peer_core::env::{BoxFuture, Clock, Connection, DirLock, Instant, Listener, LockError, Network, Storage, StreamConnection};
use peer_core::gossip::comm::MessageFault;
use peer_core::gossip::identity::{IdentityVerifier, MspVerifier};
use peer_core::gossip::message::{BadMessage, SignedMessage};
use peer_core::msp::Msp;
use peer_core::msp::identity::{Identity, PkiId};
use sha2::{Digest, Sha256};

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

/// Gossip's identity verifier shared by all the peers of one run: [`MspVerifier`] behind a memo
/// of the signatures it has accepted.
///
/// In a real network every peer checks every alive message it is sent once (repeats are dropped
/// before their signature is checked); ten simulated peers in one process do ten times the ECDSA
/// work of one, and that was three quarters of a full-stack run's CPU. Verification is a pure
/// function of (identity, signed bytes, signature), so each distinct triple is checked once per
/// run and the answer reused. Only acceptances are remembered: a bad signature is checked, and
/// refused, every time. Decoding and MSP validation (which depends on the time) are not memoized.
/// Hits change nothing a peer can observe: the same seed gives the same trace with or without it.
pub struct SignatureMemo {
    inner: MspVerifier,
    state: Mutex<MemoState>,
}

#[derive(Default)]
struct MemoState {
    accepted: BTreeSet<[u8; 32]>,
    /// Insertion order, for evicting the oldest past [`SignatureMemo::CAPACITY`].
    order: std::collections::VecDeque<[u8; 32]>,
    hits: u64,
    misses: u64,
}

impl SignatureMemo {
    /// Entries kept (32 bytes each, twice): a 50-peer, 10-minute run stays below it.
    pub const CAPACITY: usize = 1 << 16;

    pub fn new() -> SignatureMemo {
        SignatureMemo { inner: MspVerifier, state: Mutex::new(MemoState::default()) }
    }

    /// (signatures checked, checks answered from the memo).
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.misses, state.hits)
    }

    /// What a check depends on: the signer's PKI-ID (a hash of its MSP ID and certificate) and
    /// the signed bytes and signatures of the envelope and of its secret, each length-prefixed.
    fn key(identity: &Identity, message: &SignedMessage) -> [u8; 32] {
        let pki_id: PkiId = identity.pki_id();
        let envelope = message.envelope();
        let mut hash = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_be_bytes());
            hash.update(bytes);
        };
        part(&pki_id.0);
        part(&envelope.payload);
        part(&envelope.signature);
        match &envelope.secret_envelope {
            Some(secret) => {
                part(&[1]);
                part(&secret.payload);
                part(&secret.signature);
            }
            None => part(&[0]),
        }
        hash.finalize().into()
    }
}

impl Default for SignatureMemo {
    fn default() -> Self {
        SignatureMemo::new()
    }
}

impl IdentityVerifier for SignatureMemo {
    fn decode(&self, serialized: &[u8]) -> Result<(PkiId, Arc<Identity>), BadMessage> {
        self.inner.decode(serialized)
    }

    fn validate(&self, msp: &Msp, identity: &Identity, now: SystemTime) -> Result<(), String> {
        self.inner.validate(msp, identity, now)
    }

    fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage> {
        let key = SignatureMemo::key(identity, message);
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.accepted.contains(&key) {
                state.hits += 1;
                return Ok(());
            }
            state.misses += 1;
        }
        // Checked outside the lock; two peers checking the same message at once (not under
        // turmoil, which runs one host at a time) would both check it, which is only slower.
        self.inner.verify(identity, message)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.accepted.insert(key) {
            state.order.push_back(key);
            if state.order.len() > SignatureMemo::CAPACITY
                && let Some(oldest) = state.order.pop_front()
            {
                state.accepted.remove(&oldest);
            }
        }
        Ok(())
    }
}

/// turmoil TCP for one host.
pub struct SimNetwork {
    /// This host's name (turmoil resolves names to its simulated IPs).
    pub host: String,
    /// Faults injected above turmoil (None: a clean network).
    pub faults: Option<NetFaults>,
}

/// Whole gossip messages lost or repeated on arrival (given to each peer's gossip through
/// `node::Setup::message_faults`): the loss rate is shared by every host
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
}

impl peer_core::gossip::comm::MessageFaults for MessageFaults {
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
        Box::new(DelayedConnection {
            inner,
            faults: faults.clone(),
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            sleep: None,
            cleared: false,
        })
    }
}

impl tokio::io::AsyncRead for DelayedConnection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
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
}

/// One simulated file: what was written, what is durable, and the writes since the last sync.
#[derive(Clone, Debug, Default)]
struct SimFile {
    written: Vec<u8>,
    synced: Vec<u8>,
    /// Mutations since the last `sync_data`, in order: what a power cut may lose or tear.
    pending: Vec<Pending>,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// A sector: a torn write keeps a prefix ending on a multiple of this (absolute file offset).
pub const SECTOR_BYTES: usize = 512;

/// What power cuts did to unsynced writes (coverage for the crash tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutStats {
    pub cuts: u64,
    pub kept: u64,
    pub dropped: u64,
    pub torn: u64,
}

/// Faults a real disk has besides power cuts (TigerBeetle's VOPR storage faults), each the
/// probability of one operation on a block-store file (a path with a `chains` component)
/// meeting it. The inventory and other files are spared: their damage is covered by the ledger's
/// page-by-page test, and a damaged inventory stops a peer by design (the operator runs
/// `rebuild-dbs`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskFaultRates {
    /// A read returns one sector damaged (bits flipped, or garbage); the sector on disk is fine.
    pub read_corruption: f64,
    /// A write lands at another sector-aligned offset of the file; the intended place keeps its
    /// old bytes.
    pub misdirected_write: f64,
    /// A read finds a sector unreadable (EIO), and so does every later read of it until the
    /// sector is written again.
    pub latent_error: f64,
    /// An fsync fails (EIO); the writes since the last good fsync are never made durable, though
    /// reads still see them (Linux's page cache after a failed fsync).
    pub fsync_failure: f64,
    /// A write or a file extension fails with ENOSPC.
    pub full: f64,
}

impl DiskFaultRates {
    /// Whether any fault can fire.
    pub fn any(&self) -> bool {
        [self.read_corruption, self.misdirected_write, self.latent_error, self.fsync_failure, self.full].iter().any(|p| *p > 0.0)
    }
}

/// How often each disk fault fired (coverage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaultStats {
    pub read_corruption: u64,
    pub misdirected_write: u64,
    pub latent_error: u64,
    pub fsync_failure: u64,
    pub full: u64,
}

/// The fault model of one disk: its rates, its own seeded stream, the sectors gone bad.
#[derive(Debug)]
struct DiskFaults {
    rates: DiskFaultRates,
    rng: rand_chacha::ChaCha8Rng,
    /// Unreadable sectors, per file (sector index = offset / SECTOR_BYTES).
    latent: BTreeMap<PathBuf, BTreeSet<usize>>,
}

impl DiskFaults {
    fn roll(&mut self, p: f64) -> bool {
        use rand_core::Rng;
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }
    fn below(&mut self, n: usize) -> usize {
        use rand_core::Rng;
        if n == 0 { 0 } else { (self.rng.next_u64() % n as u64) as usize }
    }
}

fn faultable(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "chains")
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("input/output error ({what})"))
}

#[derive(Debug, Default)]
struct DiskState {
    /// Disk faults, when on (see [`SimDisk::set_faults`]).
    faults: Option<DiskFaults>,
    fault_stats: DiskFaultStats,
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeMap<PathBuf, String>,
    /// Mutating operations so far (writes, set_len, syncs, creating and removing files and dirs).
    ops: u64,
    /// Cut the power when `ops` would reach this (that operation does not happen).
    cut_at: Option<u64>,
    /// The torn-write model: at a cut each unsynced write is kept, dropped or torn, as this
    /// stream decides. `None`: every unsynced write is lost (the plain model).
    torn: Option<rand_chacha::ChaCha8Rng>,
    stats: CutStats,
}

impl DiskState {
    /// What survives a power cut: the synced bytes, plus what the fault model keeps of the
    /// pending writes, applied in order. Locks die with the process.
    fn cut(&mut self) {
        use rand_core::Rng;
        self.stats.cuts += 1;
        let mut stats = self.stats;
        for file in self.files.values_mut() {
            let mut survived = file.synced.clone();
            for op in std::mem::take(&mut file.pending) {
                let Some(rng) = self.torn.as_mut() else {
                    stats.dropped += 1;
                    continue;
                };
                match op {
                    Pending::SetLen(len) => {
                        if rng.next_u32() % 2 == 0 {
                            survived.resize(len, 0);
                            stats.kept += 1;
                        } else {
                            stats.dropped += 1;
                        }
                    }
                    Pending::Write { offset, data } => {
                        let end = offset + data.len();
                        let first_boundary = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
                        let boundaries: Vec<usize> = (first_boundary..end).step_by(SECTOR_BYTES).collect();
                        let keep = match rng.next_u32() % 3 {
                            0 => data.len(),
                            1 => 0,
                            _ if boundaries.is_empty() => {
                                if rng.next_u32() % 2 == 0 {
                                    data.len()
                                } else {
                                    0
                                }
                            }
                            _ => boundaries[rng.next_u32() as usize % boundaries.len()] - offset,
                        };
                        match keep {
                            0 => stats.dropped += 1,
                            k if k == data.len() => stats.kept += 1,
                            _ => stats.torn += 1,
                        }
                        if keep > 0 {
                            let kept_end = offset + keep;
                            if survived.len() < kept_end {
                                survived.resize(kept_end, 0);
                            }
                            survived[offset..kept_end].copy_from_slice(&data[..keep]);
                        }
                    }
                }
            }
            file.written = survived.clone();
            file.synced = survived;
        }
        self.stats = stats;
        self.locks.clear();
        self.cut_at = None;
    }
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

    /// Cuts the power: unsynced bytes are lost (or kept, or torn, under the torn-write model)
    /// and locks die with the process.
    pub fn power_cut(&self) {
        self.powered.store(false, Ordering::SeqCst);
        self.state().cut();
    }

    /// Sabotage for the harness's own test (`--break-invariant lost-disk`): every file and
    /// directory is gone, as if the disk were swapped for an empty one. Never used by a real run.
    pub fn wipe(&self) {
        let mut state = self.state();
        state.files.clear();
        state.dirs.clear();
    }

    /// The process dies but the machine keeps power (`kill -9`): every byte written stays, synced
    /// or not (the OS page cache holds it), and the dying process can write nothing more (no
    /// destructor runs in a real kill; redb's drop would otherwise close the file cleanly).
    /// Locks die with the process.
    pub fn process_kill(&self) {
        self.powered.store(false, Ordering::SeqCst);
        self.state().locks.clear();
    }

    /// Power back on (before the host restarts).
    pub fn power_on(&self) {
        self.powered.store(true, Ordering::SeqCst);
    }

    /// Whether the power is on (an armed cut turns it off by itself).
    pub fn is_powered(&self) -> bool {
        self.powered.load(Ordering::SeqCst)
    }

    /// Arms a power cut at the `n`-th mutating operation from now (`n` ≥ 1): that operation fails
    /// and does not happen, as does everything after it until [`SimDisk::power_on`].
    pub fn arm_power_cut(&self, n: u64) {
        let mut state = self.state();
        state.cut_at = Some(state.ops + n.max(1));
    }

    /// Turns on the torn-write model for power cuts, seeded (or off with `None`).
    pub fn set_torn_writes(&self, seed: Option<u64>) {
        use rand_core::SeedableRng;
        self.state().torn = seed.map(rand_chacha::ChaCha8Rng::seed_from_u64);
    }

    /// Turns the disk faults on (seeded) or off. Sectors already gone bad stay bad while on.
    pub fn set_faults(&self, rates: Option<(DiskFaultRates, u64)>) {
        use rand_core::SeedableRng;
        let mut state = self.state();
        state.faults = rates.filter(|(rates, _)| rates.any()).map(|(rates, seed)| DiskFaults {
            rates,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            latent: BTreeMap::new(),
        });
    }

    /// How often each disk fault fired so far.
    pub fn fault_stats(&self) -> DiskFaultStats {
        self.state().fault_stats
    }

    /// Mutating operations so far: writes, set_len, syncs, creating and removing files and dirs.
    pub fn mutating_ops(&self) -> u64 {
        self.state().ops
    }

    /// What power cuts did so far.
    pub fn cut_stats(&self) -> CutStats {
        self.state().stats
    }

    /// An independent copy of this disk's files and directories (no locks, power on, no armed
    /// cut, no fault model): the same starting point for many crash runs.
    pub fn snapshot(&self) -> SimDisk {
        let state = self.state();
        let copy = DiskState { files: state.files.clone(), dirs: state.dirs.clone(), ..DiskState::default() };
        SimDisk { state: Arc::new(Mutex::new(copy)), powered: Arc::new(AtomicBool::new(true)) }
    }

    fn check_power(&self) -> io::Result<()> {
        if self.powered.load(Ordering::SeqCst) { Ok(()) } else { Err(io::Error::other("power lost")) }
    }

    /// Counts one mutating operation on `state`, cutting the power first if it is the armed one.
    fn mutate(&self, state: &mut DiskState) -> io::Result<()> {
        self.check_power()?;
        state.ops += 1;
        if state.cut_at.is_some_and(|at| state.ops >= at) {
            self.powered.store(false, Ordering::SeqCst);
            state.cut();
            return Err(io::Error::other("power lost"));
        }
        Ok(())
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
        let mut state = self.0.state();
        if !state.dirs.contains(path) {
            self.0.mutate(&mut state)?;
            state.dirs.insert(path.to_path_buf());
        }
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.0.state();
        self.0.mutate(&mut state)?;
        state.dirs.retain(|d| !d.starts_with(path));
        state.files.retain(|f, _| !f.starts_with(path));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.check_power()?;
        let mut state = self.0.state();
        if state.files.contains_key(path) {
            // Removing is durable at once (the real Storage syncs the directory).
            self.0.mutate(&mut state)?;
            state.files.remove(path);
            if let Some(faults) = state.faults.as_mut() {
                faults.latent.remove(path);
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.check_power()?;
        let mut state = self.0.state();
        if !state.files.contains_key(from) {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", from.display())));
        }
        // Durable at once and atomic (the real Storage syncs the directory): one I/O point, the
        // file under the old name before it and under the new one after it.
        self.0.mutate(&mut state)?;
        if let Some(file) = state.files.remove(from) {
            state.files.insert(to.to_path_buf(), file);
        }
        // Bad sectors belong to the file, wherever it goes.
        if let Some(faults) = state.faults.as_mut() {
            faults.latent.remove(to);
            if let Some(bad) = faults.latent.remove(from) {
                faults.latent.insert(to.to_path_buf(), bad);
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.0.state();
        state.dirs.contains(path) || state.files.contains_key(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.0.check_power()?;
        let state = self.0.state();
        Ok(state.files.keys().filter(|file| file.parent() == Some(dir)).cloned().collect())
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
        let mut state = self.0.state();
        if !state.files.contains_key(path) {
            self.0.mutate(&mut state)?;
            state.files.insert(path.to_path_buf(), SimFile::default());
        }
        drop(state);
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
        self.disk.check_power()?;
        let mut state = self.disk.state();
        let DiskState { files, faults, fault_stats, .. } = &mut *state;
        let file = files.get_mut(&self.path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start.checked_add(out.len()).ok_or_else(|| io::Error::other("read overflows"))?;
        let bytes = file.written.get(start..end).ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        let Some(faults) = faults.as_mut().filter(|_| faultable(&self.path) && !out.is_empty()) else { return Ok(()) };
        let sectors = start / SECTOR_BYTES..end.div_ceil(SECTOR_BYTES);
        if faults.latent.get(&self.path).is_some_and(|bad| bad.range(sectors.clone()).next().is_some()) {
            return Err(eio("an unreadable sector"));
        }
        if faults.roll(faults.rates.latent_error) {
            let sector = sectors.start + faults.below(sectors.len());
            faults.latent.entry(self.path.clone()).or_default().insert(sector);
            fault_stats.latent_error += 1;
            return Err(eio("a sector went bad"));
        }
        if faults.roll(faults.rates.read_corruption) {
            fault_stats.read_corruption += 1;
            let sector = sectors.start + faults.below(sectors.len());
            let from = (sector * SECTOR_BYTES).max(start) - start;
            let to = ((sector + 1) * SECTOR_BYTES).min(end) - start;
            if faults.below(2) == 0 {
                let at = from + faults.below(to - from);
                out[at] ^= 1 << faults.below(8);
            } else {
                for byte in &mut out[from..to] {
                    *byte = faults.below(256) as u8;
                }
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.mutate_file_faulty(|file, faults, stats| {
            let len = usize::try_from(len).map_err(io::Error::other)?;
            if let Some(faults) = faults
                && len > file.written.len()
                && faults.roll(faults.rates.full)
            {
                stats.full += 1;
                return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
            }
            file.written.resize(len, 0);
            file.pending.push(Pending::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.mutate_file_faulty(|file, faults, stats| {
            if let Some(faults) = faults
                && faults.roll(faults.rates.fsync_failure)
            {
                // The kernel gave up on the dirty pages: they are never written, though the
                // page cache still shows them.
                stats.fsync_failure += 1;
                file.pending.clear();
                return Err(eio("fsync failed"));
            }
            file.synced = file.written.clone();
            file.pending.clear();
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let path = self.path.clone();
        self.mutate_file_faulty(|file, faults, stats| {
            let mut start = usize::try_from(offset).map_err(io::Error::other)?;
            if let Some(faults) = faults {
                if faults.roll(faults.rates.full) {
                    stats.full += 1;
                    return Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"));
                }
                if faults.roll(faults.rates.misdirected_write) && file.written.len() >= SECTOR_BYTES {
                    stats.misdirected_write += 1;
                    let sectors = file.written.len() / SECTOR_BYTES;
                    start = faults.below(sectors) * SECTOR_BYTES;
                }
                // Writing a sector remaps it: it reads again.
                if let Some(bad) = faults.latent.get_mut(&path) {
                    let first = start / SECTOR_BYTES;
                    let last = (start + data.len()).div_ceil(SECTOR_BYTES);
                    bad.retain(|sector| *sector < first || *sector >= last);
                }
            }
            let end = start.checked_add(data.len()).ok_or_else(|| io::Error::other("write overflows"))?;
            if file.written.len() < end {
                file.written.resize(end, 0);
            }
            file.written[start..end].copy_from_slice(data);
            file.pending.push(Pending::Write { offset: start, data: data.to_vec() });
            Ok(())
        })
    }
}

impl SimFileBackend {
    /// A mutating operation: counted, and the armed power cut may strike before it happens; with
    /// the disk's fault model (when on, and the file is a block store) and its counters.
    fn mutate_file_faulty<T>(
        &self,
        f: impl FnOnce(&mut SimFile, Option<&mut DiskFaults>, &mut DiskFaultStats) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.disk.state();
        if !state.files.contains_key(&self.path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "file removed"));
        }
        self.disk.mutate(&mut state)?;
        let DiskState { files, faults, fault_stats, .. } = &mut *state;
        let file = files.get_mut(&self.path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file removed"))?;
        let faults = faults.as_mut().filter(|_| faultable(&self.path));
        f(file, faults, fault_stats)
    }
}

#[cfg(test)]
mod signature_memo_tests {
    use super::*;
    use peer_core::gossip::message;
    use peer_core::msp::LocalMsp;
    use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
    use proto::gossip::gossip_message::Content;
    use proto::gossip::{AliveMessage, Member, PeerTime};

    fn peers() -> (LocalMsp, LocalMsp) {
        let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers: 2 };
        let org = generate::generate_org(&spec, &mut generate::org_rng(1, &spec), ValidityWindow::fixed()).unwrap();
        let load = |i: usize| LocalMsp::from_files(&org.peers[i].msp, "Org1MSP", ValidityWindow::fixed().not_before).unwrap();
        (load(0), load(1))
    }

    fn alive(signer: &LocalMsp, seq: u64) -> SignedMessage {
        let content = Content::AliveMsg(AliveMessage {
            membership: Some(Member { endpoint: "peer0:7051".into(), metadata: Vec::new(), pki_id: signer.pki_id().0.to_vec() }),
            timestamp: Some(PeerTime { inc_num: 1, seq_num: seq }),
            identity: Vec::new(),
        });
        SignedMessage::sign(message::empty_tag(content, 0), signer)
    }

    #[test]
    fn a_signature_is_checked_once_and_the_answer_reused() {
        let (a, _) = peers();
        let memo = SignatureMemo::new();
        let message = alive(&a, 1);
        for _ in 0..3 {
            memo.verify(&a.identity, &message).unwrap();
        }
        assert_eq!(memo.counts(), (1, 2));
        // Another message is another check.
        memo.verify(&a.identity, &alive(&a, 2)).unwrap();
        assert_eq!(memo.counts(), (2, 2));
    }

    #[test]
    fn a_remembered_signature_does_not_vouch_for_another_signer_or_altered_bytes() {
        let (a, b) = peers();
        let memo = SignatureMemo::new();
        let message = alive(&a, 1);
        memo.verify(&a.identity, &message).unwrap();
        // The same bytes claimed by b: checked again, and refused.
        assert!(memo.verify(&b.identity, &message).is_err());
        // Other bytes under a's signature: refused, every time (refusals are not kept).
        let mut envelope = alive(&a, 2).envelope().clone();
        envelope.signature = message.envelope().signature.clone();
        let altered = SignedMessage::from_envelope(envelope).unwrap();
        for _ in 0..2 {
            assert!(memo.verify(&a.identity, &altered).is_err());
        }
        assert_eq!(memo.counts(), (4, 0));
        // And the memo answers as the real verifier does.
        assert_eq!(MspVerifier.verify(&a.identity, &altered).is_err(), memo.verify(&a.identity, &altered).is_err());
    }
}
