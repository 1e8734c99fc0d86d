//! peer-core's integration tests: one binary, one module per area.
mod channel;
mod config;
mod msp;
mod gossip_comm;
mod gossip_discovery;
mod mem_net;
mod node;
