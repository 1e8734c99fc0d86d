//! The gRPC stubs exist, client and server side, under Fabric's service names.

use tonic::server::NamedService;
use tonic::transport::Channel;

use proto::{discovery, gossip, orderer, protos};

/// Only has to compile.
fn exists<T>() {}

#[test]
fn gossip_stubs() {
    exists::<gossip::gossip_client::GossipClient<Channel>>();
    exists::<gossip::gossip_server::GossipServer<()>>();
    assert_eq!(<gossip::gossip_server::GossipServer<()> as NamedService>::NAME, "gossip.Gossip");
}

#[test]
fn endorser_stubs() {
    exists::<protos::endorser_client::EndorserClient<Channel>>();
    exists::<protos::endorser_server::EndorserServer<()>>();
    assert_eq!(<protos::endorser_server::EndorserServer<()> as NamedService>::NAME, "protos.Endorser");
}

#[test]
fn deliver_stubs() {
    exists::<protos::deliver_client::DeliverClient<Channel>>();
    exists::<protos::deliver_server::DeliverServer<()>>();
    assert_eq!(<protos::deliver_server::DeliverServer<()> as NamedService>::NAME, "protos.Deliver");
}

#[test]
fn discovery_stubs() {
    exists::<discovery::discovery_client::DiscoveryClient<Channel>>();
    exists::<discovery::discovery_server::DiscoveryServer<()>>();
    assert_eq!(<discovery::discovery_server::DiscoveryServer<()> as NamedService>::NAME, "discovery.Discovery");
}

#[test]
fn atomic_broadcast_stubs() {
    exists::<orderer::atomic_broadcast_client::AtomicBroadcastClient<Channel>>();
    exists::<orderer::atomic_broadcast_server::AtomicBroadcastServer<()>>();
    assert_eq!(<orderer::atomic_broadcast_server::AtomicBroadcastServer<()> as NamedService>::NAME, "orderer.AtomicBroadcast");
}

#[test]
fn snapshot_stubs() {
    exists::<protos::snapshot_client::SnapshotClient<Channel>>();
    exists::<protos::snapshot_server::SnapshotServer<()>>();
    assert_eq!(<protos::snapshot_server::SnapshotServer<()> as NamedService>::NAME, "protos.Snapshot");
}
