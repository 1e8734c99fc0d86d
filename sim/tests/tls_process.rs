//! Mutual TLS between real processes on 127.0.0.1: `sim orderer` serving TLS and requiring client
//! certificates, three `peer-core node start` peers with `peer.tls` and `operations.tls` on and
//! client certificates required, and the `channel` commands as TLS clients (CORE_PEER_TLS_*, and
//! `fetch -o` with `--tls --cafile --clientauth --certfile --keyfile`).
//!
//! The peers must join over TLS, form membership across both orgs over TLS (each org's TLS CA
//! learned from the channel config), pull blocks from the orderer over TLS and pass them on by
//! gossip; `channel list/getinfo/fetch` must answer over TLS and the blocks must be the
//! orderer's. Refused, with the peer serving on: a client whose certificate comes from a foreign
//! CA, a plaintext client at the TLS port, and a `/metrics` request without a client
//! certificate. The network is `support/network.rs`, on real time (see there).

use std::path::Path;

#[path = "support/network.rs"]
mod network;
use network::{CHANNEL, FOLLOWER, HttpsClient, Network, ORG1_PEER0, ORG2_PEER0, Security, http_get, peer_core_binary};

/// Heights every peer must reach before the checks.
const FIRST_HEIGHT: u64 = 6;

/// PKI-IDs a peer's `/membership` shows alive.
fn alive(network: &Network, i: usize) -> usize {
    let Ok(body) = network.peers[i].operations("/membership") else { return 0 };
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    view["members"].as_array().map_or(0, |members| members.iter().filter(|m| m["alive"].as_bool() == Some(true)).count())
}

#[test]
fn three_peers_with_mutual_tls_follow_a_tls_orderer_and_refuse_clients_without_the_right_certificate() {
    let mut network = Network::start(Security::MutualTls);
    let genesis = network.genesis();
    for peer in &network.peers {
        assert_eq!(peer.channel(&["join", "-b", genesis.to_str().unwrap()]), "", "join over TLS prints to stderr only");
    }
    let everyone = [ORG1_PEER0, FOLLOWER, ORG2_PEER0];
    network.wait_for_height(&everyone, FIRST_HEIGHT, "every peer has blocks from the TLS orderer (the follower by gossip)");
    network::wait_until("every peer sees the two others alive over TLS", || everyone.iter().all(|&i| alive(&network, i) == 2));

    let peer = &network.peers[ORG1_PEER0];
    assert_eq!(peer.channel(&["list"]), format!("Channels peers has joined: \n{CHANNEL}\n"));
    let (height, _) = peer.info();
    assert!(height >= FIRST_HEIGHT);

    // The same blocks from the peer's Deliver service and from the orderer's (fetch -o over
    // mutual TLS, the seek bound to the admin's client certificate).
    let tls_ca = network.orderer_tls_ca();
    let admin_tls = peer.admin_tls_dir();
    let (cert, key) = (admin_tls.join("client.crt"), admin_tls.join("client.key"));
    let orderer_flags = [
        "-o",
        network.orderer.address.as_str(),
        "--tls",
        "--cafile",
        tls_ca.to_str().unwrap(),
        "--clientauth",
        "--certfile",
        cert.to_str().unwrap(),
        "--keyfile",
        key.to_str().unwrap(),
    ];
    for number in [0, 1, FIRST_HEIGHT - 1] {
        let from_orderer = peer.fetch_with(number, &orderer_flags);
        for other in &network.peers {
            assert_eq!(other.fetch(number), from_orderer, "block {number} on {} is the orderer's", other.name);
        }
    }

    // A client certificate from a foreign CA (another org1 made with another seed): refused at
    // the handshake; the peer names the remote in its log.
    let foreign = network.root().join("foreign");
    let generated = std::process::Command::new(peer_core_binary())
        .args(["msp", "generate", "--org", "Org1MSP", "--domain", "org1.example.com", "--seed", "99", "--out"])
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let foreign_tls = foreign.join("peerOrganizations/org1.example.com/users/Admin@org1.example.com/tls");
    let (foreign_cert, foreign_key) = (foreign_tls.join("client.crt"), foreign_tls.join("client.key"));
    let refused = peer.channel_output(
        &["list"],
        &[("CORE_PEER_TLS_CLIENTCERT_FILE", foreign_cert.as_path()), ("CORE_PEER_TLS_CLIENTKEY_FILE", foreign_key.as_path())],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "a foreign client certificate is refused:\n{stderr}");
    eprintln!("a foreign client certificate: {stderr}");
    assert!(stderr.contains("alert"), "the error names the server's TLS alert:\n{stderr}");
    // The client may exit before the peer has written its line: wait for it (bounded).
    network::wait_until("the peer logs the refused handshake (Server TLS handshake failed in …)", || {
        std::fs::read_to_string(peer.log()).is_ok_and(|log| log.contains("Server TLS handshake failed in"))
    });

    // A plaintext client at the TLS port.
    let plaintext = peer.channel_output(&["list"], &[("CORE_PEER_TLS_ENABLED", Path::new("false"))]);
    assert_eq!(plaintext.status.code(), Some(1), "{}", String::from_utf8_lossy(&plaintext.stderr));

    // Operations TLS requires a client certificate: without one there is no answer at all.
    let no_cert = HttpsClient { root: peer.tls_dir().join("ca.crt"), pair: None };
    let answer = http_get(peer.operations_port, "/metrics", Some(&no_cert));
    assert!(answer.is_err(), "/metrics answered a client without a certificate: {answer:?}");
    assert!(peer.metrics().is_some(), "with the admin's certificate /metrics answers");

    // The refused clients changed nothing: the chain goes on and every peer reaches the
    // orderer's final height.
    let final_height = network.orderer.terminate();
    network.wait_for_height(&everyone, final_height, "every peer reaches the orderer's final height over TLS");
    let infos: Vec<(u64, String)> = network.peers.iter().map(|peer| peer.info()).collect();
    assert!(infos.iter().all(|info| info == &infos[0] && info.0 == final_height), "{infos:?}");
}
