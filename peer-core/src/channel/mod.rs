//! Channel configuration: what a channel's config block says, and what follows from it.
//!
//! - [`config`]: [`ChannelConfig::from_block`] reads a genesis or config block into orgs (each
//!   with an [`crate::msp::Msp`]), orderer endpoints, anchor peers, capabilities and policies.
//! - [`policy`]: Fabric's signature and implicit-meta policies, evaluated over signed data.
//! - [`signatures`]: orderer block signatures, verified against `/Channel/Orderer/BlockValidation`
//!   and produced for test and simulated orderers.
//! - [`genesis`]: a deterministic builder of application-channel genesis blocks shaped as
//!   configtxgen makes them.
//! - [`folders`]: the same from organizations' MSP folders on disk (`channel create-genesis`).
//!
//! Nothing here does I/O or reads a clock: blocks come in as values. Not covered yet: config
//! updates (`CONFIG_UPDATE` validation, mod_policy checks) and idemix MSPs.

pub mod config;
pub mod folders;
pub mod genesis;
pub mod policy;
pub mod signatures;

pub use config::{AnchorPeer, ChannelConfig, ConfigBlockError, Org};
pub use folders::FolderGenesis;
pub use genesis::{FolderOrg, GenesisError, GenesisOrg, GenesisSpec, genesis_block};
pub use policy::{Policy, PolicyError, SignedData};
pub use signatures::{BlockSignatureError, sign_block, verify_block_signatures};
