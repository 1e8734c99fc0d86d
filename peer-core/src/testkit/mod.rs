//! The test kit: the helpers peer-core's tests, the fuzz targets, the benchmarks and the
//! simulator share, in one place (cargo feature `testkit`; also built for peer-core's own unit
//! tests). Nothing in the product uses it.
//!
//! - [`EPOCH_SECS`] and [`epoch`]: the fixed instant tests and simulations start from.
//! - [`ManualClock`]: a [`Clock`](crate::env::Clock) that moves only when the test moves it.
//! - [`MemNetwork`]: an in-memory [`Network`](crate::env::Network) (listeners by port, pipes).
//! - [`MemStorage`]: an in-memory [`Storage`](crate::env::Storage) whose files tests can read and damage.
//! - [`Ports`], [`free_port`]: free TCP ports on 127.0.0.1 for real peer processes.
//! - [`org`], [`org_with_peers`], [`local_msp`], [`admin`]: generated organizations and their identities;
//!   [`read_org`]: one read back from cryptogen's layout on disk.
//!
//! The kit never reads the OS clock; only [`Ports`] and [`free_port`] touch the OS (they bind sockets to
//! find free ports, for tests that start real processes), and [`read_org`] reads the folder it is given.

mod clock;
mod mem_net;
mod mem_storage;
mod orgs;
mod ports;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use clock::ManualClock;
pub use mem_net::{HOST, MemNetwork, http_get};
pub use mem_storage::MemStorage;
pub use orgs::{ORG_SEED, admin, local_msp, operations_tls_dir_vars, org, org_with_peers, read_org, tls_dir_vars, tls_files, tls_vars};
pub use ports::{Ports, free_port};

/// A block verifier that verifies nothing: for a gossip channel layer that must never take a
/// block (the membership simulator's peers, fuzz harnesses without a ledger).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBlocks;

impl crate::gossip::state::BlockVerifier for NoBlocks {
    fn verify(&self, channel: &str, _seq: u64, _block: &proto::common::Block) -> Result<(), String> {
        Err(format!("no block of channel [{channel}] is expected here"))
    }
}

/// 2025-06-01T00:00:00Z in seconds since the Unix epoch: inside the validity of the generated
/// certificates (2020–2049) and of the sample MSP's.
pub const EPOCH_SECS: u64 = 1_748_736_000;

/// [`EPOCH_SECS`] as a wall-clock time.
pub fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(EPOCH_SECS)
}
