//! `peer-core node start` as an operator sees it: Fabric's log lines in Fabric's order, the
//! operations endpoints, the gossip Ping, the data-directory lock, busy ports, and signals.

use std::time::Duration;

use crate::peer::{Peer, Ports, data_dir, http, sample_env};

const STARTUP: Duration = Duration::from_secs(30);

/// Lines Fabric prints during start, in order (each matched as a substring of its own line).
const ORDERED: &[&str] = &[
    "[nodeCmd] serve -> INFO 001 Starting peer:",
    "[peer] getLocalAddress -> INFO",
    "Auto-detected peer address: ",
    "Returning 127.0.0.1:",
    "[nodeCmd] initGrpcSemaphores -> INFO",
    "concurrency limit for endorser service is 2500",
    "concurrency limit for deliver service is 2500",
    "[certmonitor] trackCertExpiration -> INFO",
    "The enrollment certificate will expire on 2049-12-31 23:59:59 +0000 UTC",
    "[ledgermgmt] NewLedgerMgr -> INFO",
    "Initializing LedgerMgr",
    "Initialized LedgerMgr",
    "[gossip.service] New -> INFO",
    "Initialize gossip with endpoint 127.0.0.1:",
    "Creating gossip service with self membership of Endpoint: , InternalEndpoint: 127.0.0.1:",
    "External endpoint is empty, peer will not be accessible outside of its organization",
    "Gossip instance 127.0.0.1:",
    "Entering computeChaincodeEndpoint with peerHostname: 127.0.0.1",
    "Exit with ccEndpoint: 127.0.0.1:",
    "not deploying chaincode lscc: peer-core does not implement it (proposals to it are refused)",
    "deploying system chaincode 'cscc'",
    "deploying system chaincode 'qscc'",
    "not deploying chaincode _lifecycle: peer-core does not implement it (proposals to it are refused)",
    "Deployed system chaincodes",
    "[discovery] NewService -> INFO",
    "Created with config TLS: false, authCacheMaxSize: 1000, authCachePurgeRatio: 0.750000",
    "[nodeCmd] registerDiscoveryService -> INFO",
    "Discovery service activated",
    "Starting peer with ID=[peer0], network ID=[dev], address=[127.0.0.1:",
    "Started peer with ID=[peer0], network ID=[dev], address=[127.0.0.1:",
    "Loading prereset height from path [",
];

fn started_peer(tmp: &std::path::Path) -> Peer {
    let ports = Ports::free();
    let env = sample_env(ports, &data_dir(tmp));
    let mut peer = Peer::spawn(tmp, &env, ports);
    peer.wait_for("Started peer with ID=", STARTUP);
    peer.wait_for("Loading prereset height", STARTUP);
    peer
}

#[test]
fn start_logs_fabrics_lines_in_order_serves_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let mut peer = started_peer(tmp.path());
    let mut position = 0;
    for needle in ORDERED {
        let found = peer.seen[position..].iter().position(|line| line.contains(needle));
        let Some(offset) = found else {
            panic!("{needle:?} not found after line {position}; stderr:\n{}", peer.seen.join("\n"));
        };
        position += offset;
    }
    assert_eq!(peer.seen.iter().filter(|l| l.contains("External endpoint is empty")).count(), 1);
    assert!(peer.seen.iter().all(|l| !l.contains("panicked")));

    // Operations endpoints.
    let ops = peer.ports.operations;
    let (status, body) = http(ops, "GET", "/healthz", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("{\"status\":\"OK\",\"time\":\""), "{body}");
    let (status, body) = http(ops, "GET", "/version", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"Version\":\""), "{body}");
    assert_eq!(http(ops, "POST", "/version", "").0, 400);
    assert_eq!(http(ops, "POST", "/healthz", "").0, 405);
    assert_eq!(http(ops, "GET", "/logspec", ""), (200, "{\"spec\":\"info\"}\n".to_string()));
    assert_eq!(http(ops, "PUT", "/logspec", "{\"spec\":\"gossip=debug:info\"}").0, 204);
    assert_eq!(http(ops, "GET", "/logspec", ""), (200, "{\"spec\":\"gossip=debug:info\"}\n".to_string()));
    let (status, body) = http(ops, "PUT", "/logspec", "{\"spec\":\"gossip=loud\"}");
    assert_eq!(status, 400);
    assert!(body.contains("invalid logging specification"), "{body}");
    let (status, body) = http(ops, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("fabric_version{version=\""), "{body}");
    assert!(body.contains("peer_core_start_time_seconds "), "{body}");
    assert_eq!(http(ops, "GET", "/nope", "").0, 404);

    // gossip.Gossip/Ping on the peer port; the Endorser refuses an empty proposal as Fabric 3.x does.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = format!("http://127.0.0.1:{}", peer.ports.peer);
        let mut gossip = proto::gossip::gossip_client::GossipClient::connect(url.clone()).await.unwrap();
        gossip.ping(proto::gossip::Empty {}).await.expect("Ping answers");
        let mut endorser = proto::protos::endorser_client::EndorserClient::connect(url).await.unwrap();
        let status = endorser.process_proposal(proto::protos::SignedProposal::default()).await.unwrap_err();
        // The sample config chains TimeWindowCheck first: an empty proposal's timestamp is 1970.
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(
            status.message().starts_with("request unauthorized due to incorrect timestamp 1970-01-01T00:00:00Z, peer time "),
            "{status:?}"
        );
        // The chaincode port serves the standard health service.
        let url = format!("http://127.0.0.1:{}", peer.ports.chaincode);
        let channel = tonic::transport::Endpoint::from_shared(url).unwrap().connect().await.unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let response = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
        assert_eq!(response.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    });

    let (code, took) = peer.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(code, 0, "stderr:\n{}", peer.seen.join("\n"));
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    peer.wait_for("Received signal: 15 (terminated)", Duration::from_secs(1));
    peer.wait_for("Stopping gossip", Duration::from_secs(1));
}

#[test]
fn a_second_start_on_the_same_data_dir_fails_at_once_and_the_first_keeps_running() {
    let tmp = tempfile::tempdir().unwrap();
    let mut first = started_peer(tmp.path());
    let ports = Ports::free();
    let env = sample_env(ports, &data_dir(tmp.path()));
    let mut second = Peer::spawn(tmp.path(), &env, ports);
    let (code, _) = second.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 1);
    let lock = data_dir(tmp.path()).join("ledgersData/fileLock/LOCK");
    let error = second.seen.iter().find(|l| l.contains("Error in instantiating ledger provider")).cloned().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "as another peer node command is executing, wait for that command to complete its execution or terminate it before retrying: lock is already acquired on file {} (held by peer-core node start, pid ",
            lock.display()
        )),
        "{}",
        second.seen.join("\n")
    );
    assert_eq!(http(first.ports.operations, "GET", "/healthz", "").0, 200, "the first peer is unaffected");
    let (code, _) = first.signal_and_wait("INT", Duration::from_secs(10));
    assert_eq!(code, 0);
    first.wait_for("Received signal: 2 (interrupt)", Duration::from_secs(1));
}

#[test]
fn a_busy_peer_port_fails_start_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ports = Ports::free();
    ports.peer = busy.local_addr().unwrap().port();
    let env = sample_env(ports, &data_dir(tmp.path()));
    let mut peer = Peer::spawn(tmp.path(), &env, ports);
    let (code, _) = peer.wait_exit(Duration::from_secs(10));
    assert_eq!(code, 1);
    let expected = format!("Failed to create peer server (listen tcp 127.0.0.1:{}: bind: address already in use)", ports.peer);
    assert!(peer.seen.iter().any(|l| l.contains(&expected)), "{}", peer.seen.join("\n"));
    // The lock was released on the way out: a new start on the same data dir works.
    drop(busy);
    let mut again = started_peer(tmp.path());
    let (code, _) = again.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(code, 0);
}

#[test]
fn fabrics_own_core_yaml_and_msp_start_with_addresses_and_paths_overridden() {
    let fixtures = crate::support::repo_root().join("../shared/fixtures/fabric-v2.2.15");
    if !fixtures.is_dir() {
        eprintln!("SKIPPED: {} is not there", fixtures.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let mut env = sample_env(ports, &data_dir(tmp.path()));
    env[0].1 = fixtures.display().to_string();
    let mut peer = Peer::spawn(tmp.path(), &env, ports);
    peer.wait_for("PKI-ID: 0d46737a45894d123895671221dbaddf8480fb0364f404be3aed491df442945f", STARTUP);
    peer.wait_for("Started peer with ID=[jdoe], network ID=[dev], address=[127.0.0.1:", STARTUP);
    let (code, _) = peer.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(code, 0);
}

#[test]
fn an_invalid_logging_spec_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let run = crate::support::peer_core(tmp.path(), &[("FABRIC_LOGGING_SPEC", "gossip=loud")], &["version"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr, "Error: invalid logging specification 'gossip=loud': bad segment 'gossip=loud'\n");
}

/// The gRPC stack's own debug lines (h2's frames) come out under Fabric's `grpc` logger, which
/// `FABRIC_LOGGING_SPEC` selects as it does in Fabric; no line names a Rust module path.
#[test]
fn grpc_library_lines_log_under_fabrics_grpc_logger() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let mut env = sample_env(ports, &data_dir(tmp.path()));
    env.push(("FABRIC_LOGGING_SPEC".into(), "grpc=debug:info".into()));
    let mut peer = Peer::spawn(tmp.path(), &env, ports);
    peer.wait_for("Started peer with ID=", STARTUP);
    // Any client call makes HTTP/2 frames: `channel list` as the sample identity.
    let client: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let _ = crate::support::peer_core(tmp.path(), &client, &["channel", "list"]);
    let line = peer.wait_for("[grpc] ", STARTUP);
    assert!(line.contains(" DEBU "), "{line}");
    let (code, _) = peer.signal_and_wait("TERM", Duration::from_secs(10));
    assert_eq!(code, 0);
    let module_paths: Vec<&String> =
        peer.seen.iter().filter(|line| ["[h2", "[hyper", "[tonic", "[tower", "::"].iter().any(|p| line.contains(p))).collect();
    assert!(module_paths.is_empty(), "library lines under module paths:\n{module_paths:#?}");
}
