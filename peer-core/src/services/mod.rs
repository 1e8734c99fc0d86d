//! The services a peer answers on its ports: the gRPC services of the peer port (Endorser with
//! the system chaincodes, Deliver, Discovery; `gossip.Gossip` is served by gossip's comm
//! layer) and the operations HTTP server. Each reads the joined channels through
//! [`crate::channels::Channels`]; `node::start` builds and serves them.

pub mod deliver;
pub mod discovery;
pub mod endorser;
pub mod metrics;
pub mod operations;
pub mod scc;
