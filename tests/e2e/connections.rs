//! The peer port under idle clients (issue 17): a peer whose open-file limit is 1,024 is sent
//! 2,000 idle connections, a third sending nothing, a third half the HTTP/2 preface, a third the
//! preface and a SETTINGS frame. It lowers its connection bound to fit the limit, closes what is
//! over the bound at once with one WARN (not one per connection), keeps answering `/healthz`,
//! and closes every held connection: unfinished handshakes after `peer.connectiontimeout`, the
//! finished ones by keepalive (their client never answers a ping). Timeouts are set to seconds
//! (Fabric's are 5 s and 2 h) to keep the test short.

use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::peer::{Peer, Ports, data_dir, elapsed as since, http, now, sample_env};

const STARTUP: Duration = Duration::from_secs(30);
/// For opening the connections, and for the peer to close them all (it takes seconds).
const DEADLINE: Duration = Duration::from_secs(30);
const CONNECTIONS: usize = 2000;
/// Connections opened at once: half the listener's accept queue (tokio and mio listen with a
/// backlog of 128).
const WAVE: usize = 64;
/// The peer's open-file limit: the usual default soft limit.
const PEER_OPEN_FILES: u64 = 1024;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Spawns the peer with the soft open-file limit `limit`: this process's own soft limit is set to
/// it while the child is spawned (the child inherits it), then put back. Setting it in the child
/// (`pre_exec`) would need unsafe code, which the workspace forbids. Meanwhile another test of
/// this binary could only be hurt by holding more than `limit` files itself, and none does.
fn spawn_with_open_file_limit(limit: u64, spawn: impl FnOnce() -> Peer) -> Peer {
    let original = getrlimit(Resource::Nofile);
    setrlimit(Resource::Nofile, Rlimit { current: Some(limit), maximum: original.maximum }).unwrap();
    let peer = spawn();
    setrlimit(Resource::Nofile, original).unwrap();
    peer
}

/// `/healthz` answers 200; returns how long it took.
fn healthz(port: u16) -> Duration {
    let started = now();
    let (status, body) = http(port, "GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    since(started)
}

/// How many connections wait in the accept queue of the listener on 127.0.0.1:`port` (for a
/// listening socket, `/proc/net/tcp` shows it as `rx_queue`); `None` when that cannot be read.
fn accept_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        // Columns: sl, local_address, rem_address, st (0A: LISTEN), tx_queue:rx_queue, …
        if columns.get(1) != Some(&local.as_str()) || columns.get(3) != Some(&"0A") {
            return None;
        }
        let (_, queued) = columns.get(4)?.split_once(':')?;
        u64::from_str_radix(queued, 16).ok()
    })
}

/// Reads until the peer closes the connection (EOF or reset).
async fn until_closed(mut stream: tokio::net::TcpStream) {
    let mut buffer = [0u8; 1024];
    while let Ok(read) = stream.read(&mut buffer).await {
        if read == 0 {
            break;
        }
    }
}

#[test]
fn idle_connections_are_bounded_and_closed_and_healthz_keeps_answering() {
    // This process holds the 2,000 client ends: its soft limit goes up to its hard limit.
    let limits = getrlimit(Resource::Nofile);
    let needed = CONNECTIONS as u64 + 200;
    if limits.maximum.is_some_and(|hard| hard < needed) {
        eprintln!("SKIPPED: this process may open at most {:?} files; the test needs {needed}", limits.maximum);
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let mut env = sample_env(ports, &data_dir(tmp.path()));
    // Seconds, not Fabric's 5 s handshake and 2 h keepalive, to keep the test short.
    for (key, value) in
        [("CORE_PEER_CONNECTIONTIMEOUT", "2s"), ("CORE_PEER_KEEPALIVE_INTERVAL", "1s"), ("CORE_PEER_KEEPALIVE_TIMEOUT", "1s")]
    {
        env.push((key.into(), value.into()));
    }
    let mut peer = spawn_with_open_file_limit(PEER_OPEN_FILES, || Peer::spawn(tmp.path(), &env, ports));
    setrlimit(Resource::Nofile, Rlimit { current: limits.maximum, maximum: limits.maximum }).unwrap();
    peer.wait_for("Started peer with ID=", STARTUP);
    // 1,024 less 384 (the operations and chaincode ports' 64 each, and 256 for the rest).
    let bound = peer.wait_for("the peer port accepts at most", STARTUP);
    assert!(bound.contains("at most 640 connections: peer.limits.maxConnections is 4096, but the open-file limit is 1024"), "{bound}");
    let before = healthz(ports.operations);

    // In waves of 64 at once, each wave opened when the peer has taken the last from its accept
    // queue: a queue that overflows (128) leaves the kernel dropping handshakes, and a client
    // whose last ACK was dropped believes in a connection the peer never had (it cannot close it).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let opening = now();
    let held = runtime.block_on(async {
        let mut held = Vec::with_capacity(CONNECTIONS);
        for wave in (0..CONNECTIONS).collect::<Vec<_>>().chunks(WAVE) {
            let mut connecting = tokio::task::JoinSet::new();
            for &i in wave {
                connecting.spawn(async move {
                    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", ports.peer)).await.unwrap();
                    // Connections over the bound are already closed: writing to them may fail, which is fine.
                    let _ = match i % 3 {
                        0 => Ok(()),
                        1 => stream.write_all(&PREFACE[..12]).await,
                        _ => stream.write_all(&[PREFACE, &EMPTY_SETTINGS].concat()).await,
                    };
                    stream
                });
            }
            let opened = tokio::time::timeout(DEADLINE, connecting.join_all()).await;
            held.extend(opened.expect("connecting took too long"));
            let waiting = now();
            while accept_queue(ports.peer).is_some_and(|queued| queued > 0) {
                assert!(since(waiting) < DEADLINE, "the peer stopped accepting");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        held
    });
    let opened_in = since(opening);
    // While they are held (or being closed), the operations server answers at once.
    let during = healthz(ports.operations);
    let open_files = std::fs::read_dir(format!("/proc/{}/fd", peer.pid())).map(|dir| dir.count()).unwrap_or(0);

    // Every one is closed: over the bound at once, unfinished handshakes after 2 s, the others by
    // keepalive about 2 s after their SETTINGS. The deadline is generous; the wait ends as soon as
    // all are closed.
    runtime.block_on(async {
        let mut reading = tokio::task::JoinSet::new();
        for stream in held {
            reading.spawn(until_closed(stream));
        }
        let closed = tokio::time::timeout(DEADLINE, reading.join_all()).await;
        assert!(closed.is_ok(), "connections the peer did not close within {DEADLINE:?}");
    });
    let all_closed_in = since(opening);
    let after = healthz(ports.operations);

    // Stopping drains everything the peer logged.
    let (code, _) = peer.signal_and_wait("TERM", STARTUP);
    assert_eq!(code, 0, "{}", peer.seen.join("\n"));
    let count = |needle: &str| peer.seen.iter().filter(|line| line.contains(needle)).count();
    let bound_warnings = count("the bound set by the open-file limit (ulimit -n 1024, less 384 kept for the rest of the peer)");
    let server_warnings = peer.seen.iter().filter(|line| line.contains("[comm.grpc.server]") && line.contains("WARN")).count();
    eprintln!(
        "idle connections: {CONNECTIONS} opened in {opened_in:?}; /healthz {before:?} before, {during:?} with them held, {after:?} after; \
         peer fds {open_files} (limit {PEER_OPEN_FILES}); all closed after {all_closed_in:?}; {bound_warnings} WARN lines about the bound, {server_warnings} from comm.grpc.server in all"
    );
    assert!(during < Duration::from_secs(2), "/healthz took {during:?} with {CONNECTIONS} connections held");
    assert!(open_files < PEER_OPEN_FILES as usize, "{open_files} open files");
    assert!((1..=5).contains(&bound_warnings), "{bound_warnings} WARN lines about the bound:\n{}", peer.seen.join("\n"));
    assert_eq!(server_warnings, bound_warnings, "other WARN lines (accept failures?):\n{}", peer.seen.join("\n"));
    assert!(peer.seen.iter().all(|l| !l.contains("panicked")), "{}", peer.seen.join("\n"));
}
