//! Gossip: signed messages, identities, membership (discovery), the channel layer (blocks,
//! StateInfo, state transfer, leader election) and the comm layer.
//!
//! [`start`] is what `node::start` calls: it builds the sans-IO [`instance::Gossip`] (every
//! decision) and the comm layer, and spawns the driver (every I/O) that runs one on the other.

pub mod certstore;
pub mod comm;
pub mod discovery;
pub mod driver;
pub mod election;
pub mod identity;
pub mod instance;
pub mod message;
pub mod publish;
pub mod pull;
pub mod state;

pub use driver::{GossipHandle, GossipSetup, start};
