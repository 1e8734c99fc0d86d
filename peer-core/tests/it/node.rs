//! `node::start` on a second, in-memory Env: the same start path as the CLI's, with no sockets,
//! no files and a clock nobody advances. This is the seam the simulator uses.

use peer_core::testkit::{HOST, ManualClock, MemNetwork, MemStorage, epoch, http_get};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use peer_core::config::{Config, EnvVars, HostPort};
use peer_core::env::{Env, Network};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::LocalMsp;
use peer_core::node;

pub fn setup(log_handle: logging::LoggingHandle, holder: &str) -> node::Setup {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
    let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
    let env = EnvVars::new()
        .with("CORE_PEER_FILESYSTEMPATH", "/mem/data")
        .with("CORE_PEER_GOSSIP_EXTERNALENDPOINT", "peer0.org1.example.com:7051");
    let config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &env).unwrap().config;
    let msp = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, epoch()).unwrap();
    node::Setup::new(config, msp, Arc::new(log_handle), holder)
}

#[tokio::test]
async fn the_same_start_path_runs_on_an_in_memory_env() {
    let network = Arc::new(MemNetwork::default());
    let storage = Arc::new(MemStorage::default());
    let env = Env::new(ManualClock::new(), network.clone(), storage.clone(), [7; 32]);
    let sink = MemorySink::new();
    let (layer, handle) = logging::layer(&LoggingConfig::default(), Arc::new(epoch), sink.sink()).unwrap();
    let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
    let _guard = tracing::subscriber::set_default(subscriber);

    let running = node::start(env.clone(), setup(handle.clone(), "test peer A")).await.unwrap();
    assert_eq!(running.peer_listen_address, SocketAddr::from((HOST, 7051)));
    assert_eq!(running.peer_address.to_string(), "127.0.0.1:7051");

    // The operations server answers over the in-memory network, with the env's clock.
    let response = http_get(&network, 9443, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("{\"status\":\"OK\",\"time\":\"2025-06-01T00:00:00Z\"}\n"), "{response}");

    // gossip.Gossip/Ping over the same network, through tonic's client.
    let connector_network = network.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = connector_network.connect(&HostPort::new("peer", 7051), Duration::from_secs(1));
        async move { connect.await.map(hyper_util::rt::TokioIo::new) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://peer:7051").connect_with_connector(connector).await.unwrap();
    let mut gossip = proto::gossip::gossip_client::GossipClient::new(channel.clone());
    gossip.ping(proto::gossip::Empty {}).await.unwrap();
    // A service the peer port does not serve is named in the answer, as grpc-go names it (a
    // client that dialed the peer for the orderer sees why).
    let mut orderer = proto::orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel);
    let status = orderer.deliver(tokio_stream::iter(Vec::<proto::common::Envelope>::new())).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Unimplemented, "unknown service orderer.AtomicBroadcast"));

    // A second peer (other ports, same disk) finds the lock taken, and says by whom.
    let second = Env::new(ManualClock::new(), Arc::new(MemNetwork::default()), storage.clone(), [8; 32]);
    let err = node::start(second, setup(handle.clone(), "test peer B")).await.unwrap_err();
    assert!(
        err.to_string().contains("lock is already acquired on file /mem/data/ledgersData/fileLock/LOCK (held by test peer A)"),
        "{err}"
    );

    running.stop().await;
    // Stopped: the lock is free again.
    assert!(storage.locks.lock().unwrap().is_empty());

    let lines: Vec<String> =
        sink.lines().into_iter().map(|l| l.split_once(" UTC ").map(|(_, rest)| rest.to_string()).unwrap_or(l)).collect();
    let text = lines.join("\n");
    for needle in [
        "[nodeCmd] serve -> INFO 001\u{1b}[0m Starting peer:",
        "Auto-detected peer address: 10.9.8.7:7051",
        "Creating gossip service with self membership of Endpoint: peer0.org1.example.com:7051, InternalEndpoint: 127.0.0.1:7051",
        "Started peer with ID=[peer0], network ID=[dev], address=[127.0.0.1:7051]",
        "Stopping gossip",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("External endpoint is empty"), "a peer with an external endpoint does not warn");
    // Same seed, same streams: each component's fork is reproducible.
    let a = Env::new(ManualClock::new(), network.clone(), storage.clone(), [7; 32]);
    let b = Env::new(ManualClock::new(), network, storage, [7; 32]);
    for _ in 0..3 {
        assert_eq!(rand_core::Rng::next_u64(&mut a.fork_rng()), rand_core::Rng::next_u64(&mut b.fork_rng()));
    }
    drop(env);
}
