//! [`Ports`]: free TCP ports on 127.0.0.1 for peers started as real processes (the e2e tests,
//! the benchmarks). The OS picks them; they are released for the child to bind, so another
//! process may take one in between (callers that care retry).

use std::net::TcpListener;

/// The ports one peer listens on.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub peer: u16,
    pub chaincode: u16,
    pub operations: u16,
}

impl Ports {
    /// Three distinct ports: the listeners are held until all three are chosen (released one at
    /// a time, the OS may hand the same port out twice; a run then failed with "Address already
    /// in use").
    pub fn free() -> Ports {
        Ports::free_many(1)[0]
    }

    /// Ports for `n` peers, all distinct (every listener is held until all are chosen).
    pub fn free_many(n: usize) -> Vec<Ports> {
        let listeners: Vec<TcpListener> = (0..3 * n).map(|_| bind_any()).collect();
        let port = |i: usize| listeners[i].local_addr().expect("a bound listener's address").port();
        (0..n).map(|i| Ports { peer: port(3 * i), chaincode: port(3 * i + 1), operations: port(3 * i + 2) }).collect()
    }
}

/// One port that was free a moment ago.
pub fn free_port() -> u16 {
    bind_any().local_addr().expect("a bound listener's address").port()
}

fn bind_any() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port")
}
