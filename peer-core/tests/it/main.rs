//! peer-core's integration tests: one binary, one module per area.
mod catalog;
mod channel;
mod config;
mod config_props;
mod deliver;
mod deliver_client;
mod endorser;
mod msp;
mod gossip_comm;
mod gossip_blocks;
mod gossip_discovery;
mod gossip_state;
mod ledger;
mod manual_clock;
mod mem_net;
mod mem_storage;
mod node;
