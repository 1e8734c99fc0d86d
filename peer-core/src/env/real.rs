//! The real environment: the system clock, tokio sockets, files on disk, OS entropy, and the
//! process metrics (read from `/proc` when `/metrics` is scraped).
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
    Ok(Env::new(Arc::new(SystemClock::new()), Arc::new(TcpNetwork), Arc::new(DiskStorage), seed)
        .with_process_collector(ProcessCollector)
        .with_os_tls())
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
        let mut addresses: Vec<IpAddr> =
            if_addrs::get_if_addrs().map(|list| list.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
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

/// Prometheus' standard process metrics, as client_golang's process collector (which Fabric's peer
/// exposes) reports them: `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
/// `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes`,
/// `process_resident_memory_bytes` and `process_start_time_seconds`. Read from `/proc/self` and
/// the resource limits on each scrape, never before; a value that cannot be read is left out of
/// that scrape. Only the real env has one: the simulator's peers share one process, whose numbers
/// would mean nothing per peer and must not be read by simulated code.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessCollector;

/// The fields of `/proc/self/stat` the collector reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot.
    pub start_ticks: u64,
    pub virtual_memory_bytes: u64,
    pub resident_pages: u64,
}

impl ProcessStat {
    /// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
    /// itself hold spaces and parentheses, so fields are counted from the last `)`.
    pub fn parse(line: &str) -> Option<ProcessStat> {
        let (_, rest) = line.rsplit_once(')')?;
        // `rest` starts at field 3 (state): field n is rest[n - 3].
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        Some(ProcessStat {
            cpu_ticks: field(14)?.checked_add(field(15)?)?,
            start_ticks: field(22)?,
            virtual_memory_bytes: field(23)?,
            resident_pages: field(24)?,
        })
    }
}

/// The system's boot time in seconds since the Unix epoch (`btime` in `/proc/stat`).
pub fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat.lines().find_map(|line| line.strip_prefix("btime ")).and_then(|value| value.trim().parse().ok())
}

impl ProcessCollector {
    /// The samples of one scrape: (name, is a counter, help, value).
    fn samples(&self) -> Vec<(&'static str, bool, &'static str, f64)> {
        let mut samples = Vec::new();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok().and_then(|line| ProcessStat::parse(&line));
        if let Some(stat) = stat {
            samples.push(("process_cpu_seconds_total", true, "User and system CPU time spent, in seconds.", stat.cpu_ticks as f64 / ticks));
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            samples.push(("process_open_fds", false, "Open file descriptors.", entries.count() as f64));
        }
        // An unlimited limit reads as the largest value, as client_golang reports it.
        let limit = |resource| rustix::process::getrlimit(resource).current.unwrap_or(u64::MAX) as f64;
        samples.push(("process_max_fds", false, "The limit on open file descriptors.", limit(rustix::process::Resource::Nofile)));
        if let Some(stat) = stat {
            samples.push(("process_virtual_memory_bytes", false, "Virtual memory size, in bytes.", stat.virtual_memory_bytes as f64));
        }
        samples.push((
            "process_virtual_memory_max_bytes",
            false,
            "The limit on virtual memory, in bytes.",
            limit(rustix::process::Resource::As),
        ));
        if let Some(stat) = stat {
            let resident = stat.resident_pages as f64 * rustix::param::page_size() as f64;
            samples.push(("process_resident_memory_bytes", false, "Resident memory size, in bytes.", resident));
            let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|text| boot_time(&text));
            if let Some(boot) = boot {
                let started = boot as f64 + stat.start_ticks as f64 / ticks;
                samples.push(("process_start_time_seconds", false, "When the process started, in seconds since the Unix epoch.", started));
            }
        }
        samples
    }
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        for (name, counter, help, value) in self.samples() {
            if counter {
                let metric = ConstCounter::new(value);
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
            } else {
                let metric = ConstGauge::new(value);
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (peer (core) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 50 0 0 20 0 9 0 123456 104857600 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0";
        let stat = ProcessStat::parse(line).unwrap();
        assert_eq!(stat, ProcessStat { cpu_ticks: 300, start_ticks: 123456, virtual_memory_bytes: 104_857_600, resident_pages: 2048 });
        assert_eq!(ProcessStat::parse("4242 (peer) S 1"), None);
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1748736000\nprocesses 9\n"), Some(1_748_736_000));
    }
}
