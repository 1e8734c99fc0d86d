//! Gossip: signed messages, identities, membership (discovery) and the comm layer.

pub mod discovery;
pub mod identity;
pub mod message;
