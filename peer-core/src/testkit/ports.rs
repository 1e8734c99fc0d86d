//! [`Ports`]: free TCP ports on 127.0.0.1 for peers started as real processes (the e2e tests,
//! the benchmarks). They are released for the child to bind, so something else could take one in
//! between. Letting the OS pick (`bind 127.0.0.1:0`) made that likely: it picks from the
//! ephemeral range, the same range every outgoing connection's local port comes from, and a
//! connection another test opened took a chosen operations port before the peer bound it (seen in
//! CI: `listen tcp 127.0.0.1:41147: bind: address already in use`). So ports come from below the
//! ephemeral range, handed out once per process (a counter starting at a place chosen by the
//! process ID), each checked free by binding it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The ports one peer listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub peer: u16,
    pub chaincode: u16,
    pub operations: u16,
}

impl Ports {
    /// Three distinct ports: the listeners are held until all three are chosen.
    pub fn free() -> Ports {
        Ports::free_many(1)[0]
    }

    /// Ports for `n` peers, all distinct (every listener is held until all are chosen).
    pub fn free_many(n: usize) -> Vec<Ports> {
        let listeners: Vec<TcpListener> = (0..3 * n).map(|_| bind_free()).collect();
        let port = |i: usize| listeners[i].local_addr().expect("a bound listener's address").port();
        (0..n).map(|i| Ports { peer: port(3 * i), chaincode: port(3 * i + 1), operations: port(3 * i + 2) }).collect()
    }
}

/// One port that was free a moment ago.
pub fn free_port() -> u16 {
    bind_free().local_addr().expect("a bound listener's address").port()
}

/// The ports handed out: below Linux's default ephemeral range (32768-60999) and above the
/// well-known services.
const FIRST: u32 = 20_000;
const END: u32 = 32_768;

/// The next candidate port (each is handed out at most once per process, until the range wraps).
static NEXT: AtomicU32 = AtomicU32::new(0);

fn bind_free() -> TcpListener {
    let span = END - FIRST;
    // Test binaries run one after another; starting each at its own place keeps a port one
    // binary's peer left in TIME_WAIT away from the next binary's first choices.
    let _ = NEXT.compare_exchange(0, 1 + std::process::id() * 97 % span, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let candidate = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % span;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", candidate as u16)) {
            return listener;
        }
    }
    TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port")
}
