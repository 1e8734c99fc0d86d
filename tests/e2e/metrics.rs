//! `/metrics` of the real binary, before and after it has worked: started, joined a channel
//! (`channel join`, a proposal to cscc), answered queries (`channel getinfo`, `list`: qscc and
//! cscc) and served blocks (`channel fetch`, a Deliver stream). The exposition speaks Fabric 2.2
//! (`exposition::check`: Fabric's names, types, labels and buckets, or `peer_core_`), has every
//! family Fabric's peer has for this work, including the process collector's, and the numbers
//! moved as the work was done.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::channel::{STARTUP, assert_ok, channel, setup, start};
use crate::exposition::{self, Exposition};
use crate::peer::{Ports, http};

fn scrape(ports: Ports) -> (Exposition, String) {
    let (status, text) = http(ports.operations, "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    (exposition::parse(&text), text)
}

/// Families with at least one sample, for failure messages.
fn sampled(metrics: &Exposition) -> Vec<&str> {
    metrics.iter().filter(|(_, f)| !f.samples.is_empty()).map(|(name, _)| name.as_str()).collect()
}

#[test]
fn a_working_peer_exposes_fabrics_metrics_and_they_move() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let setup = setup(tmp);
    let ports = Ports::free();
    let mut peer = start(tmp, &setup, ports);
    let (fresh, text) = scrape(ports);
    exposition::assert_fabric(&fresh, &[exposition::ALWAYS, exposition::PROCESS].concat(), &text);
    let value = |metrics: &Exposition, name: &str, labels: &[(&str, &str)]| exposition::value(metrics, name, labels);
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let started = value(&fresh, "process_start_time_seconds", &[]);
    assert!((now - started).abs() < 600.0, "started {started}, now {now}");
    assert!(value(&fresh, "process_resident_memory_bytes", &[]) > 1e6, "{text}");
    assert!(value(&fresh, "process_open_fds", &[]) >= 3.0, "{text}");
    assert!(value(&fresh, "process_max_fds", &[]) >= value(&fresh, "process_open_fds", &[]), "{text}");
    // CPU time counts in clock ticks (10 ms): a peer that just started may show none yet.
    assert!(value(&fresh, "process_cpu_seconds_total", &[]) >= 0.0, "{text}");
    assert!(value(&fresh, "logging_entries_written", &[("level", "info")]) > 0.0, "the start-up lines: {text}");
    assert_eq!(value(&fresh, "endorser_proposals_received", &[]), 0.0, "{text}");

    let block = setup.block.to_str().unwrap();
    assert_ok(&channel(tmp, &setup, ports, &["join", "-b", block]));
    assert_ok(&channel(tmp, &setup, ports, &["list"]));
    assert_ok(&channel(tmp, &setup, ports, &["getinfo", "-c", "mychannel"]));
    assert_ok(&channel(tmp, &setup, ports, &["fetch", "oldest", "-c", "mychannel"]));
    assert_ok(&channel(tmp, &setup, ports, &["fetch", "newest", "-c", "mychannel"]));

    // The CLI's connections end when it exits; the server notices a moment later. Gossip takes
    // the new channel up at its next round (within `peer.gossip.aliveTimeInterval`).
    let (mut metrics, mut text) = scrape(ports);
    for _ in 0..300 {
        let closed = value(&metrics, "grpc_comm_conn_closed", &[]);
        if value(&metrics, "deliver_streams_closed", &[]) == 2.0
            && closed >= 5.0
            && closed == value(&metrics, "grpc_comm_conn_opened", &[])
            && exposition::CHANNEL_GOSSIP.iter().all(|family| exposition::has_samples(&metrics, family))
        {
            break;
        }
        peer.next_line(Duration::from_millis(50));
        (metrics, text) = scrape(ports);
    }
    let worked = [
        exposition::ALWAYS,
        exposition::PROCESS,
        exposition::CHANNEL,
        exposition::CHANNEL_GOSSIP,
        exposition::UNARY,
        exposition::STREAM,
        exposition::DELIVER,
    ]
    .concat();
    exposition::assert_fabric(&metrics, &[worked.as_slice(), &["endorser_proposal_duration"]].concat(), &text);
    let value = |name: &str, labels: &[(&str, &str)]| exposition::value(&metrics, name, labels);
    assert!(value("process_cpu_seconds_total", &[]) >= exposition::value(&fresh, "process_cpu_seconds_total", &[]), "{text}");

    // Three proposals, all channel-less system chaincode calls: successful as Fabric counts them.
    assert_eq!(value("endorser_proposals_received", &[]), 3.0, "{text}");
    assert_eq!(value("endorser_successful_proposals", &[]), 3.0, "{text}");
    assert_eq!(value("endorser_proposal_validation_failures", &[]), 0.0, "{text}");
    for chaincode in ["cscc", "qscc"] {
        assert!(
            value("endorser_proposal_duration_count", &[("channel", ""), ("chaincode", chaincode), ("success", "true")]) >= 1.0,
            "{text}"
        );
    }
    let process = [("service", "protos_Endorser"), ("method", "ProcessProposal")];
    assert_eq!(value("grpc_server_unary_requests_received", &process), 3.0, "{text}");
    assert_eq!(value("grpc_server_unary_requests_completed", &[process.as_slice(), &[("code", "OK")]].concat()), 3.0, "{text}");
    assert_eq!(value("grpc_server_unary_request_duration_count", &process), 3.0, "{text}");

    // Two fetches: two Deliver streams, one SeekInfo each, one block each.
    let block_labels = [("channel", "mychannel"), ("filtered", "false"), ("data_type", "block")];
    assert_eq!(value("deliver_streams_opened", &[]), 2.0, "{text}");
    assert_eq!(value("deliver_streams_closed", &[]), 2.0, "{text}");
    assert_eq!(value("deliver_requests_received", &block_labels), 2.0, "{text}");
    assert_eq!(value("deliver_requests_completed", &[block_labels.as_slice(), &[("success", "true")]].concat()), 2.0, "{text}");
    assert_eq!(value("deliver_blocks_sent", &block_labels), 2.0, "{text}");
    let deliver = [("service", "protos_Deliver"), ("method", "Deliver")];
    assert_eq!(value("grpc_server_stream_requests_received", &deliver), 2.0, "{text}");
    assert_eq!(value("grpc_server_stream_messages_received", &deliver), 2.0, "{text}");
    assert_eq!(value("grpc_server_stream_messages_sent", &deliver), 4.0, "a block and a status each: {text}");

    // Five CLI runs, a connection each (at least), all closed since.
    assert!(value("grpc_comm_conn_opened", &[]) >= 5.0, "{text}");
    assert_eq!(value("grpc_comm_conn_opened", &[]), value("grpc_comm_conn_closed", &[]), "{text}");

    // The channel: its ledger, its gossip gauges (a lone peer knows no other).
    let channel_labels = [("channel", "mychannel")];
    assert_eq!(value("ledger_blockchain_height", &channel_labels), 1.0, "{text}");
    assert_eq!(value("ledger_blockstorage_commit_time_count", &channel_labels), 1.0, "the genesis block: {text}");
    assert_eq!(value("gossip_membership_total_peers_known", &channel_labels), 0.0, "{text}");
    assert!(exposition::has_samples(&metrics, "gossip_payload_buffer_size"), "{:?}", sampled(&metrics));
    assert!(value("logging_entries_checked", &[("level", "info")]) >= value("logging_entries_written", &[("level", "info")]), "{text}");

    assert_eq!(peer.signal_and_wait("TERM", STARTUP).0, 0);
}
