//! TLS with material made by Fabric's own cryptogen (tests/data/cryptogen, see its README): the
//! key and certificate files load, the names cryptogen writes into a peer's certificate verify
//! against its TLS CA, and two Org1 peers with cryptogen's MSPs and TLS pairs, their files read
//! from disk as the CLI reads them, become members of each other over mutual TLS.
//!
//! cryptogen's peer certificates name the host only (`peer0.org1.example.com`, `peer0`): no
//! `localhost`, no IP address. Peers that address each other by IP fail the server name check, as
//! Fabric's do, so the peers here go by their names (the in-memory network routes by port).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peer_core::channel::FolderOrg;
use peer_core::env::Env;
use peer_core::gossip::publish::BlockPublisher;
use peer_core::msp::generate::{OrgKind, OrgSpec};
use peer_core::msp::{LocalMsp, MspFiles};
use peer_core::net::tls::{ClientAuth, KeyPair, PemFile, TlsContext, certificates};
use peer_core::node::tls::TlsFiles;
use peer_core::node::{self, RunningNode};
use peer_core::testkit::{ManualClock, MemNetwork, MemStorage, read_org, tls_dir_vars};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::gossip_blocks::{Net, height, scrape};
use crate::tls::alive_members;

const CHANNEL: &str = "mychannel";

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cryptogen")
}

/// 2030-01-01T00:00:00Z, inside the certificates' validity (2026-12-07 to 2036-12-04).
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

/// The TLS folder of Org1's node `name` (`peer0.org1.example.com`, `Admin@org1.example.com`).
fn org1_tls(name: &str) -> PathBuf {
    let folder = if name.starts_with("Admin@") { "users" } else { "peers" };
    data().join("peerOrganizations/org1.example.com").join(folder).join(name).join("tls")
}

fn pem(path: PathBuf) -> PemFile {
    PemFile::read(&path, "test file").unwrap()
}

/// A channel of cryptogen's OrdererMSP (blocks signed by orderer.example.com) and Org1MSP with
/// its two peers.
fn cryptogen_net() -> Net {
    let orderers = data().join("ordererOrganizations/example.com");
    let orderer_org = FolderOrg { msp_id: "OrdererMSP".into(), msp: MspFiles::read_dir(&orderers.join("msp"), None).unwrap() };
    let orderer = LocalMsp::load(&orderers.join("orderers/orderer.example.com/msp"), "OrdererMSP", None, now()).unwrap();
    let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers: 2 };
    Net::with_orgs(&orderer_org, orderer, read_org(&data(), OrgKind::Peer, spec).unwrap(), now())
}

/// Org1's peer `i` with mutual TLS and cryptogen's files: `server.crt`, `server.key`, and `ca.crt`
/// as both root certificate and client root CA. Peers address each other as `host(i)`.
async fn start(net: &Net, i: usize, host: fn(usize) -> String) -> RunningNode {
    let tls = org1_tls(&format!("peer{i}.org1.example.com"));
    let mut vars = vec![
        ("CORE_PEER_ADDRESS".to_string(), format!("{}:{}", host(i), 7051 + 1000 * i)),
        ("CORE_PEER_GOSSIP_BOOTSTRAP".to_string(), format!("{}:7051", host(0))),
    ];
    vars.extend(tls_dir_vars(&tls, true));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let read = |setup: node::Setup| node::Setup {
        tls_files: TlsFiles::read(&setup.config.peer.tls, &setup.config.delivery_client.address_overrides).unwrap(),
        ..setup
    };
    net.try_start(i, Arc::new(MemStorage::default()), &vars, read).await.unwrap()
}

/// A TLS handshake to a server presenting `pair`, from a client trusting `roots` and expecting
/// the server to be `name`: the client's error, if any.
async fn handshake(context: &TlsContext, pair: &KeyPair, roots: &[CertificateDer<'static>], name: &str) -> Result<(), String> {
    let server = tokio_rustls::TlsAcceptor::from(context.server(pair, ClientAuth::Request).unwrap());
    let client = tokio_rustls::TlsConnector::from(context.client(roots, None).unwrap().0);
    let (client_end, server_end) = tokio::io::duplex(64 << 10);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let (_, connected) = tokio::join!(server.accept(server_end), client.connect(name, client_end));
    connected.map(drop).map_err(|e| e.to_string())
}

#[tokio::test]
async fn cryptogens_pairs_load_and_a_peers_certificate_verifies_for_its_names_only() {
    for (name, stem) in [("peer0.org1.example.com", "server"), ("peer1.org1.example.com", "server"), ("Admin@org1.example.com", "client")] {
        let tls = org1_tls(name);
        let pair = KeyPair::from_files(&pem(tls.join(format!("{stem}.crt"))), &pem(tls.join(format!("{stem}.key")))).unwrap();
        assert_eq!(pair.chain.len(), 1, "{name}");
    }
    let orderer_tls = data().join("ordererOrganizations/example.com/orderers/orderer.example.com/tls");
    KeyPair::from_files(&pem(orderer_tls.join("server.crt")), &pem(orderer_tls.join("server.key"))).unwrap();

    let tls = org1_tls("peer0.org1.example.com");
    let pair = KeyPair::from_files(&pem(tls.join("server.crt")), &pem(tls.join("server.key"))).unwrap();
    assert_eq!(peer_core::msp::go_time(pair.not_after), "2036-12-04 17:40:00 +0000 UTC");
    let env = Env::new(ManualClock::at(now()), Arc::new(MemNetwork::default()), Arc::new(MemStorage::default()), [9; 32]);
    let context = TlsContext::new(&peer_core::net::tls::provider(&env), env.clock.clone());
    let roots = certificates(&pem(tls.join("ca.crt"))).unwrap();
    let tlsca = certificates(&pem(data().join("peerOrganizations/org1.example.com/tlsca/tlsca.org1.example.com-cert.pem"))).unwrap();
    assert_eq!(roots, tlsca, "ca.crt is the org's TLS CA");
    for name in ["peer0.org1.example.com", "peer0"] {
        assert_eq!(handshake(&context, &pair, &roots, name).await, Ok(()), "{name}");
    }
    for name in ["peer1.org1.example.com", "localhost", "127.0.0.1"] {
        let refused = handshake(&context, &pair, &roots, name).await.unwrap_err();
        assert!(refused.contains("not valid for name"), "{name}: {refused}");
    }
}

#[tokio::test]
async fn peers_with_cryptogen_tls_material_form_membership() {
    let mut net = cryptogen_net();
    let host = |i| format!("peer{i}.org1.example.com");
    let first = start(&net, 0, host).await;
    let second = start(&net, 1, host).await;
    net.advance(Duration::from_secs(12)).await;
    assert_eq!((alive_members(&first), alive_members(&second)), (1, 1), "membership over TLS");
    // Blocks signed by cryptogen's orderer identity go from one to the other.
    for _ in 0..2 {
        let block = net.next_block(&first);
        first.channels.append(CHANNEL, &block).unwrap();
        first.gossip_publisher.publish(CHANNEL, &block);
        net.advance(Duration::from_millis(500)).await;
    }
    assert_eq!((height(&first), height(&second)), (3, 3), "blocks over TLS");
    for node in [&first, &second] {
        let (metrics, text) = scrape(&net, node).await;
        let rejected = crate::exposition::value(&metrics, "peer_core_gossip_bad_messages_total", &[("reason", "tls_binding")]);
        assert_eq!(rejected, 0.0, "{text}");
    }
    second.stop().await;
    first.stop().await;
}

/// Addressed by IP, the same peers never meet: cryptogen's certificates carry no IP address.
#[tokio::test]
async fn cryptogen_peers_addressed_by_ip_fail_the_server_name_check() {
    let net = cryptogen_net();
    let first = start(&net, 0, |_| "127.0.0.1".into()).await;
    let second = start(&net, 1, |_| "127.0.0.1".into()).await;
    net.advance(Duration::from_secs(12)).await;
    assert_eq!((alive_members(&first), alive_members(&second)), (0, 0));
    second.stop().await;
    first.stop().await;
}
