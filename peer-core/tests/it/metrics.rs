//! `/metrics` of peers that gossip blocks (in process, on the in-memory network, time moved by
//! the test): the exposition speaks Fabric 2.2 (`exposition::check`), has every family Fabric's
//! peer would for this work, and the gossip, ledger and gRPC numbers move as the peers work.

use std::sync::Arc;
use std::time::Duration;

use peer_core::gossip::publish::BlockPublisher;

use crate::exposition;
use crate::gossip_blocks::{Net, height, scrape};
use peer_core::node::RunningNode;
use peer_core::testkit::{MemNetwork, MemStorage, http_get};

const CHANNEL: &str = "mychannel";

/// `GET /metrics` of a node's operations server on the in-memory network, parsed.
pub(crate) async fn scrape_node(network: &MemNetwork, node: &RunningNode) -> (exposition::Exposition, String) {
    let response = http_get(network, node.operations_listen_address.port(), "/metrics").await;
    let head = response.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
    assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    let text = exposition::body(&response).to_string();
    (exposition::parse(&text), text)
}

#[tokio::test]
async fn gossiping_peers_expose_fabrics_metrics_and_they_move() {
    let mut net = Net::new();
    let election = [("CORE_PEER_GOSSIP_USELEADERELECTION", "true")];
    let first = net.start_with(0, Arc::new(MemStorage::default()), &election).await;
    let second = net.start_with(1, Arc::new(MemStorage::default()), &election).await;
    net.advance(Duration::from_secs(12)).await;
    for _ in 0..3 {
        let block = net.next_block(&first);
        first.channels.append(CHANNEL, &block).unwrap();
        first.gossip_publisher.publish(CHANNEL, &block);
        net.advance(Duration::from_millis(500)).await;
    }
    assert_eq!((height(&first), height(&second)), (4, 4));

    let mut leaders = 0.0;
    for node in [&first, &second] {
        let (metrics, text) = scrape(&net, node).await;
        exposition::assert_fabric(
            &metrics,
            &[exposition::ALWAYS, exposition::CHANNEL, exposition::CHANNEL_GOSSIP, &["gossip_leader_election_leader"]].concat(),
            &text,
        );
        assert!(!text.contains("process_"), "a peer in a test env reports no process metrics:\n{text}");
        let value = |name: &str, labels: &[(&str, &str)]| exposition::value(&metrics, name, labels);
        let channel = [("channel", CHANNEL)];
        assert_eq!(value("ledger_blockchain_height", &channel), 4.0, "{text}");
        // The genesis block (at join) and three more, each timed whole and its store write alone.
        assert_eq!(value("ledger_block_processing_time_count", &channel), 4.0, "{text}");
        assert_eq!(value("ledger_blockstorage_commit_time_count", &channel), 4.0, "{text}");
        assert_eq!(value("gossip_membership_total_peers_known", &channel), 1.0, "{text}");
        assert_eq!(value("gossip_payload_buffer_size", &channel), 0.0, "{text}");
        assert!(value("gossip_comm_messages_sent", &[]) > 0.0, "{text}");
        assert!(value("gossip_comm_messages_received", &[]) > 0.0, "{text}");
        assert!(exposition::has_samples(&metrics, "gossip_comm_overflow_count"), "{text}");
        assert_eq!(value("peer_core_gossip_membership_members", &[("state", "alive")]), 1.0, "{text}");
        let leader = value("gossip_leader_election_leader", &channel);
        assert!(exposition::has_samples(&metrics, "gossip_leader_election_leader") && (leader == 0.0 || leader == 1.0), "{text}");
        leaders += leader;
        assert_eq!(value("fabric_version", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0, "{text}");
        assert!(value("peer_core_start_time_seconds", &[]) > 1.7e9, "{text}");
    }
    assert!(leaders <= 1.0, "one leader at most");

    // The second peer committed the blocks it got by gossip; the first appended them itself.
    let (metrics, text) = scrape(&net, &second).await;
    exposition::assert_fabric(&metrics, exposition::GOSSIP, &text);
    let value = |name: &str, labels: &[(&str, &str)]| exposition::value(&metrics, name, labels);
    assert_eq!(value("gossip_state_height", &[("channel", CHANNEL)]), 4.0, "{text}");
    assert_eq!(value("gossip_state_commit_duration_count", &[("channel", CHANNEL)]), 3.0, "{text}");
    // Gossip runs over gRPC on the peer port: one side of the pair serves the stream.
    let (first_metrics, first_text) = scrape(&net, &first).await;
    for family in [exposition::UNARY, exposition::STREAM].concat() {
        assert!(metrics.contains_key(family) || first_metrics.contains_key(family), "{family} on neither peer:\n{text}\n{first_text}");
    }
    let both = |name: &str, labels: &[(&str, &str)]| value(name, labels) + exposition::value(&first_metrics, name, labels);
    let stream = [("service", "gossip_Gossip"), ("method", "GossipStream")];
    assert!(both("grpc_server_stream_requests_received", &stream) >= 1.0, "{text}\n{first_text}");
    assert!(both("grpc_server_stream_messages_received", &stream) > 0.0, "{text}\n{first_text}");
    assert!(both("grpc_server_stream_messages_sent", &stream) > 0.0, "{text}\n{first_text}");
    let ping = [("service", "gossip_Gossip"), ("method", "Ping"), ("code", "OK")];
    assert!(both("grpc_server_unary_requests_completed", &ping) >= 1.0, "{text}\n{first_text}");
    assert_eq!(both("grpc_server_unary_requests_completed", &ping), both("grpc_server_unary_request_duration_count", &ping));
    assert!(both("grpc_comm_conn_opened", &[]) >= 1.0, "{text}\n{first_text}");

    // Each peer knows the other as a peer of the channel, at the height its next StateInfo
    // (every 4 s) publishes.
    net.advance(Duration::from_secs(5)).await;
    for (node, other) in [(&first, &second), (&second, &first)] {
        let peers = node.gossip_view.channel_peers(CHANNEL);
        let shown: Vec<(String, u64)> = peers.iter().map(|p| (p.member.pki_id.to_string(), p.height)).collect();
        assert_eq!(shown, vec![(other.gossip_view.snapshot().pki_id, 4)]);
        assert!(peers[0].member.alive);
    }
    assert!(first.gossip_view.channel_peers("nochannel").is_empty());

    second.stop().await;
    first.stop().await;
}
