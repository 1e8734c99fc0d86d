//! End-to-end tests: the real `peer-core` binary, run as an operator would run it.
//!
//! Each test runs the binary with a cleared environment in a fresh temporary directory, so no
//! core.yaml or `CORE_*` variable of the developer's machine leaks in. Peers listen on 127.0.0.1
//! only, on ports the OS reports free.

mod catalog;
mod channel;
mod cli;
mod connections;
mod deliver;
mod gossip;
mod ledger;
mod metrics;
mod peer;
mod start;
mod support;

// The exposition checker is shared with peer-core's integration tests.
#[path = "../../peer-core/tests/it/exposition.rs"]
mod exposition;
