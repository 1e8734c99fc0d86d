//! peer-core: a Hyperledger Fabric peer's core in Rust.
//!
//! The library holds everything the `peer-core` binary does; the binary only parses the command
//! line, reads files and env vars, and calls in. Modules, from the bottom layer up; a module
//! imports only from layers below it (a tidy test, `tests/it/tidy.rs`, holds the table):
//! - [`config`]: finding and validating core.yaml with `CORE_*` overrides. [`errors`]: error texts
//!   shared by the gRPC clients; [`gotime`]: Go's time layouts; [`metadata`]: version
//!   information; [`metrics`]: metric helpers shared by every layer.
//! - [`env`]: the world behind traits (clock, network, storage, randomness) and its real implementation.
//! - [`logging`]: Fabric's logging on `tracing` (`FABRIC_LOGGING_SPEC`, `FABRIC_LOGGING_FORMAT`, `/logspec`).
//! - [`msp`]: the local MSP (Fabric MSP directories), signing and verifying, PKI-IDs, a deterministic
//!   MSP generator and `msp inspect`.
//! - [`ledger`]: the data-directory lock, the channel inventory and the block stores (redb), healing.
//! - [`channel`]: channel configuration from config blocks, policies, orderer block signatures, and
//!   genesis block builders (generated orgs or MSP folders).
//! - [`channels`]: the joined channels (ledgers and current configurations), joining, verified appends.
//! - [`proposal`]: proposals and signed envelopes as Fabric's clients build them, and taking them apart.
//! - [`net`]: serving gRPC and HTTP/1 with the peer's bounds, and the one way to dial a gRPC server.
//! - [`blocks`]: the deliver client, pulling blocks from the ordering service.
//! - [`gossip`]: gossip messages, identities, membership, the channel layer and state transfer: one
//!   sans-IO aggregate (`gossip::instance::Gossip`) and the driver that runs it (`gossip::start`).
//! - [`services`]: the gRPC services of the peer port (endorser and system chaincodes, deliver, the
//!   Discovery stub) and the operations HTTP server.
//! - [`node`]: `node start` (the one start path) and the metrics registry.
//! - [`testkit`] (feature `testkit`, and peer-core's own unit tests): the helpers tests share (a
//!   manual clock, in-memory network and storage, the fixed epoch, free ports, generated orgs).

pub mod blocks;
pub mod channel;
pub mod channels;
pub mod config;
pub mod env;
pub mod errors;
pub mod gossip;
pub mod gotime;
pub mod ledger;
pub mod logging;
pub mod metadata;
pub mod metrics;
pub mod msp;
pub mod net;
pub mod node;
pub mod proposal;
pub mod services;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
