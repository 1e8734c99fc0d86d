//! The deterministic simulator: many peer-core peers in one process over turmoil, driven by
//! scenario files (`scenarios/*.yaml`), with faults, invariant checks and seed replay.
//!
//! - [`env`]: the simulated Env (turmoil network and time, a disk with a power switch).
//! - [`scenario`]: the scenario file format.
//! - [`run`]: running one scenario with one seed, checking invariants, hashing the trace.
//! - [`swarm`]: scenarios chosen by the seed.
//! - [`svg`]: a run drawn as a timeline picture.
//! - [`failures`]: the replay command and the kept trace of a failing run.
//! - [`protosim`]: the membership protocol alone (peer-core's `Gossip` state machines, no channel
//!   joined, on an event queue), for thousands of peers.
//!
//! The workspace must be built with `--cfg tokio_unstable` (see .cargo/config.toml), or turmoil
//! cannot seed tokio's scheduler and same-seed runs diverge. An env `RUSTFLAGS` silently replaces
//! the config's rustflags, so the build refuses to go on without the cfg.

#[cfg(not(tokio_unstable))]
compile_error!(
    "sim must be built with --cfg tokio_unstable (set in .cargo/config.toml); an env RUSTFLAGS overrides it: unset RUSTFLAGS or add --cfg tokio_unstable to it"
);

pub mod env;
pub mod failures;
pub mod orderer;
pub mod protosim;
pub mod run;
pub mod scenario;
pub mod svg;
pub mod swarm;
