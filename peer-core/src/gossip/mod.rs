//! Gossip: signed messages, identities, membership (discovery) and the comm layer.

pub mod comm;
pub mod discovery;
pub mod driver;
pub mod election;
pub mod identity;
pub mod message;
pub mod publish;
pub mod state;
