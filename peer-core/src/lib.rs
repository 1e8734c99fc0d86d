//! peer-core: a Hyperledger Fabric peer's core in Rust.
//!
//! The library holds everything the `peer-core` binary does; the binary only parses the command
//! line, reads files and env vars, and calls in. Modules:
//! - [`config`]: finding and validating core.yaml with `CORE_*` overrides.
//! - [`logging`]: Fabric's logging on `tracing` (`FABRIC_LOGGING_SPEC`, `FABRIC_LOGGING_FORMAT`, `/logspec`).
//! - [`msp`]: the local MSP (Fabric MSP directories), signing and verifying, PKI-IDs, a deterministic
//!   MSP generator and `msp inspect`.
//! - [`channel`]: channel configuration from config blocks, policies, orderer block signatures, and
//!   genesis block builders (generated orgs or MSP folders).
//! - [`env`]: the world behind traits (clock, network, storage, randomness) and its real implementation.
//! - [`ledger`]: the data-directory lock, the channel inventory and the block stores (redb), healing.
//! - [`gossip`]: gossip messages, identities, membership, the channel layer and state transfer.
//! - [`blocks`]: the deliver client, pulling blocks from the ordering service.
//! - [`channels`]: the joined channels as the services see them (ledgers, configurations, joins,
//!   verified appends).
//! - [`services`]: the gRPC services of the peer port (Endorser and the system chaincodes,
//!   Deliver, the Discovery stub) and the operations HTTP server.
//! - [`net`]: serving gRPC and HTTP on the env's listeners, dialing, the gRPC metrics.
//! - [`metrics`]: metric helpers every layer shares (Fabric's label sets, default buckets).
//! - [`node`]: `node start` (the one start path) and the metrics registry.
//! - [`proposal`]: proposals and signed envelopes as Fabric's clients build them.
//! - [`errors`]: error texts shared by the gRPC clients; [`gotime`]: Go's time layouts;
//!   [`metadata`]: version information.
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
