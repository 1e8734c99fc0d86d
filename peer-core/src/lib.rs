//! peer-core: a Hyperledger Fabric peer's core in Rust.
//!
//! The library holds everything the `peer-core` binary does; the binary only parses the command
//! line, reads files and env vars, and calls in. Modules:
//! - [`config`]: finding and validating core.yaml with `CORE_*` overrides.
//! - [`channel`]: channel configuration from config blocks, policies, orderer block
//!   signatures, and a genesis block builder.
//! - [`msp`]: the local MSP (Fabric MSP directories), signing and verifying, PKI-IDs, and a
//!   deterministic MSP generator.
//! - [`metadata`]: version information.
//! - [`blocks`]: the deliver client, pulling blocks from the ordering service.

pub mod blocks;
pub mod channel;
pub mod config;
pub mod env;
pub mod errors;
pub mod gossip;
pub mod gotime;
pub mod ledger;
pub mod logging;
pub mod metadata;
pub mod msp;
pub mod node;
pub mod proposal;
