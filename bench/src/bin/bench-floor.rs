//! The floor for a peer's start: a minimal Rust binary that binds the ports `peer-core node
//! start` binds (from the same `CORE_*` variables) and prints the same `Started peer with ID=` line,
//! then waits to be killed. `bench-floor version` prints a version line and exits. Nothing here is
//! peer-core: no config file, no MSP, no ledger, no runtime, so whatever the peer takes beyond this
//! is its own.

use std::io::Write as _;
use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("version") {
        println!("bench-floor:\n Version: 0.0.0");
        return;
    }
    let mut listeners = Vec::new();
    for name in ["CORE_PEER_LISTENADDRESS", "CORE_PEER_CHAINCODELISTENADDRESS", "CORE_OPERATIONS_LISTENADDRESS"] {
        #[allow(clippy::disallowed_methods)] // a stand-alone binary outside the simulation
        let Ok(address) = std::env::var(name) else { continue };
        match TcpListener::bind(&address) {
            Ok(listener) => listeners.push(listener),
            Err(err) => {
                eprintln!("Error: binding {address} ({name}): {err}");
                std::process::exit(1);
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "INFO [nodeCmd] serve -> Started peer with ID=[floor], network ID=[dev], address=[-]");
    // SIGTERM's default action ends the process: the floor for "SIGTERM to exit" too.
    loop {
        std::thread::park();
    }
}
