//! TLS between peers, end to end on the in-memory network: nodes started with `node::start`
//! serving the peer port over TLS, gossip dialing over TLS and binding each ConnEstablish to the
//! certificate seen on its connection. Peers that cannot prove the right certificate (a foreign
//! CA, plaintext, a ConnEstablish claiming another certificate) never become members.

use std::sync::Arc;
use std::time::Duration;

use peer_core::env::Network as _;
use peer_core::gossip::comm::{Comm, CommConfig, CommEvent, CommSetup, CommTls};
use peer_core::gossip::identity::{MspVerifier, TrustedMsps};
use peer_core::gossip::publish::BlockPublisher;
use peer_core::net::tls::{KeyPair, TlsContext};
use peer_core::node::{self, RunningNode};
use peer_core::testkit::{MemStorage, local_msp, org_with_peers, tls_files, tls_vars};

use crate::gossip_blocks::{Net, height, scrape};

const CHANNEL: &str = "mychannel";

/// Peer `i` of the net's Org1 with TLS (`mutual`: client certificates required).
async fn start_tls(net: &Net, i: usize, mutual: bool) -> RunningNode {
    let node = &net.org1().peers[i];
    let vars = tls_vars(node, mutual);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let files = tls_files(node, mutual);
    net.try_start(i, Arc::new(MemStorage::default()), &vars, |setup| node::Setup { tls_files: Some(files), ..setup }).await.unwrap()
}

pub(crate) fn alive_members(node: &RunningNode) -> usize {
    node.gossip_view.members().iter().filter(|m| m.alive).count()
}

#[tokio::test]
async fn peers_with_mutual_tls_form_membership_and_pass_blocks() {
    let mut net = Net::new();
    let first = start_tls(&net, 0, true).await;
    let second = start_tls(&net, 1, true).await;
    net.advance(Duration::from_secs(12)).await;
    assert_eq!((alive_members(&first), alive_members(&second)), (1, 1), "membership over TLS");
    for _ in 0..3 {
        let block = net.next_block(&first);
        first.channels.append(CHANNEL, &block).unwrap();
        first.gossip_publisher.publish(CHANNEL, &block);
        net.advance(Duration::from_millis(500)).await;
    }
    assert_eq!((height(&first), height(&second)), (4, 4), "blocks over TLS");
    let (metrics, text) = scrape(&net, &second).await;
    let rejected = crate::exposition::value(&metrics, "peer_core_gossip_bad_messages_total", &[("reason", "tls_binding")]);
    assert_eq!(rejected, 0.0, "{text}");
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_plaintext_peer_and_a_tls_peer_never_meet() {
    let net = Net::new();
    let tls = start_tls(&net, 0, false).await;
    let plain = net.start_with(1, Arc::new(MemStorage::default()), &[]).await;
    net.advance(Duration::from_secs(12)).await;
    assert_eq!((alive_members(&tls), alive_members(&plain)), (0, 0));
    plain.stop().await;
    tls.stop().await;
}

#[tokio::test]
async fn a_peer_whose_tls_certificate_comes_from_a_foreign_ca_is_refused() {
    let net = Net::new();
    let first = start_tls(&net, 0, true).await;
    // Peer 1 keeps its Org1 signing identity but shows a TLS certificate from another CA.
    let foreign = org_with_peers("Org1MSP", "impostor.example.com", 2);
    let mut files = tls_files(&net.org1().peers[1], true);
    files.cert.bytes = foreign.peers[1].tls.cert.clone();
    files.key.bytes = foreign.peers[1].tls.key.clone();
    let vars = tls_vars(&net.org1().peers[1], true);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let second =
        net.try_start(1, Arc::new(MemStorage::default()), &vars, |setup| node::Setup { tls_files: Some(files), ..setup }).await.unwrap();
    net.advance(Duration::from_secs(12)).await;
    assert_eq!((alive_members(&first), alive_members(&second)), (0, 0));
    second.stop().await;
    first.stop().await;
}

/// A remote whose ConnEstablish claims another certificate than the one it shows is refused,
/// with Fabric's text, and counted.
#[tokio::test]
async fn a_conn_establish_that_claims_another_certificate_is_refused_and_counted() {
    let net = Net::new();
    let first = start_tls(&net, 0, false).await;
    let node = &net.org1().peers[1];
    let files = tls_files(node, false);
    let pair = KeyPair::from_files(&files.cert, &files.key).unwrap();
    let env = net.env(9);
    let context = TlsContext::new(&peer_core::net::tls::provider(&env), env.clock.clone());
    let roots = peer_core::net::tls::certificates(files.root_cert.as_ref().unwrap()).unwrap();
    let (client, _) = context.client(&roots, Some(&pair)).unwrap();
    let msp = local_msp(node, "Org1MSP");
    let trusted = TrustedMsps::new(&msp, [], Arc::new(MspVerifier));
    let tls = CommTls { client: Arc::new(std::sync::RwLock::new(client)), client_cert_hash: [7; 32], server_cert_hash: [7; 32] };
    let (comm, mut events) = Comm::new(env, CommSetup { tls: Some(tls), ..CommSetup::new(Arc::new(msp), trusted, CommConfig::default()) });
    let address = peer_core::config::HostPort::new("127.0.0.1", 7051);
    // Both ends send their ConnEstablish first: ours goes out (and first's checks out here),
    // then first refuses ours and ends the stream.
    let connecting = comm.connect(&address, None);
    let (result, ()) = tokio::join!(connecting, net.advance(Duration::from_secs(1)));
    let first_pki = result.unwrap();
    let mut down = false;
    while let Ok(event) = events.try_recv() {
        down |= event == CommEvent::ConnectionDown { pki_id: first_pki };
    }
    assert!(down, "the refused connection is closed");
    assert_eq!(alive_members(&first), 0);
    let (metrics, text) = scrape(&net, &first).await;
    let rejected = crate::exposition::value(&metrics, "peer_core_gossip_bad_messages_total", &[("reason", "tls_binding")]);
    assert_eq!(rejected, 1.0, "{text}");
    first.stop().await;
}

/// A GET over TLS to `port` on the net, presenting `client`'s TLS pair when given; the whole
/// HTTP/1.1 response.
async fn https_get(net: &Net, port: u16, path: &str, client: Option<&peer_core::msp::generate::Node>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = &net.org1().peers[0];
    let env = net.env(11);
    let context = TlsContext::new(&peer_core::net::tls::provider(&env), env.clock.clone());
    let roots = peer_core::net::tls::certificates(&tls_files(server, false).root_cert.unwrap()).unwrap();
    let pair = client.map(|node| {
        let files = tls_files(node, false);
        KeyPair::from_files(&files.cert, &files.key).unwrap()
    });
    let (config, _) = context.client(&roots, pair.as_ref()).unwrap();
    let mut config = rustls::ClientConfig::clone(&config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connection = net.network().connect(&peer_core::config::HostPort::new("127.0.0.1", port), Duration::from_secs(1)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, connection).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// Operations over TLS (spec §5): `/healthz` is open; `/metrics` needs a client certificate
/// that verifies against `operations.tls.clientRootCAs.files`, else 401 with an empty body.
#[tokio::test]
async fn operations_over_tls_serve_metrics_only_to_a_verified_client() {
    let net = Net::new();
    let node = &net.org1().peers[0];
    let files = tls_files(node, false);
    let ops = node::tls::OperationsTlsFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        client_root_cas: vec![files.root_cert.clone().unwrap()],
    };
    let vars = [
        ("CORE_OPERATIONS_TLS_ENABLED", "true"),
        ("CORE_OPERATIONS_TLS_CERT_FILE", "/tls/ops/server.crt"),
        ("CORE_OPERATIONS_TLS_KEY_FILE", "/tls/ops/server.key"),
        ("CORE_METRICS_PROVIDER", "prometheus"),
    ];
    let running = net
        .try_start(0, Arc::new(MemStorage::default()), &vars, |setup| node::Setup { operations_tls_files: Some(ops), ..setup })
        .await
        .unwrap();
    let port = running.operations_listen_address.port();
    let healthz = https_get(&net, port, "/healthz", None).await;
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    let anonymous = https_get(&net, port, "/metrics", None).await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(anonymous.ends_with("\r\n\r\n"), "an empty body: {anonymous}");
    let admin = https_get(&net, port, "/metrics", Some(&net.org1().admin)).await;
    assert!(admin.starts_with("HTTP/1.1 200") && admin.contains("ledger_blockchain_height"), "{admin}");
    // A client certificate from a CA the operations server does not trust fails the handshake.
    let foreign = org_with_peers("Org1MSP", "impostor.example.com", 1);
    let refused = https_get(&net, port, "/metrics", Some(&foreign.admin)).await;
    assert!(refused.is_empty(), "{refused}");
    running.stop().await;
}

/// With mutual TLS the peer's Deliver service checks Fabric's binding before anything else: a
/// seek whose channel header claims another certificate than the client's is a BAD_REQUEST; the
/// same seek bound to the client's certificate gets the block.
#[tokio::test]
async fn deliver_with_mutual_tls_checks_the_binding_of_each_seek() {
    use peer_core::net::dial::{ClientOptions, ClientTls, dial};
    use proto::orderer::{SeekInfo, SeekPosition, SeekSpecified, seek_info::SeekBehavior, seek_position};
    use proto::protos::deliver_client::DeliverClient;
    use proto::protos::deliver_response::Type;
    use tokio_stream::wrappers::ReceiverStream;

    let net = Net::new();
    let running = start_tls(&net, 0, true).await;
    let admin_node = &net.org1().admin;
    let files = tls_files(admin_node, false);
    let pair = KeyPair::from_files(&files.cert, &files.key).unwrap();
    let env = net.env(12);
    let context = TlsContext::new(&peer_core::net::tls::provider(&env), env.clock.clone());
    let roots = peer_core::net::tls::certificates(files.root_cert.as_ref().unwrap()).unwrap();
    let (config, _) = context.client(&roots, Some(&pair)).unwrap();
    let options = ClientOptions { timeout: Duration::from_secs(1), keepalive: None, tls: Some(ClientTls::new(config)) };
    let signer = peer_core::testkit::admin(net.org1());
    let block_zero = SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number: 0 })) };
    let seek =
        SeekInfo { start: Some(block_zero), stop: Some(block_zero), behavior: SeekBehavior::BlockUntilReady as i32, ..SeekInfo::default() };
    for (claimed, first_answer) in [(Some([9u8; 32]), "status 400"), (Some(pair.leaf_hash()), "block"), (None, "status 400")] {
        let dialed = dial(&env, &peer_core::config::HostPort::new("127.0.0.1", 7051), &options).await.unwrap();
        let envelope = peer_core::proposal::seek_info_envelope_bound(&signer, CHANNEL, &seek, [3; 24], env.clock.wall_clock(), claimed);
        let (requests, queue) = tokio::sync::mpsc::channel(1);
        requests.send(envelope).await.unwrap();
        let mut responses = DeliverClient::new(dialed.channel).deliver(ReceiverStream::new(queue)).await.unwrap().into_inner();
        let answer = match responses.message().await.unwrap().and_then(|r| r.r#type) {
            Some(Type::Block(_)) => "block".to_string(),
            Some(Type::Status(status)) => format!("status {status}"),
            other => format!("{other:?}"),
        };
        assert_eq!(answer, first_answer, "claimed {claimed:?}");
    }
    running.stop().await;
}
