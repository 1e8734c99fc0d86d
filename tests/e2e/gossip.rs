//! Gossip membership between real `peer-core node start` processes on 127.0.0.1.
//!
//! Two organizations, generated with peer-core's MSP generator: org1 has peer0 (with an external
//! endpoint) and peer1 (without one, bootstrapping from peer0); org2 has peer0 (with an external
//! endpoint). The orgs know each other through `peer.gossip.trustedMSPs` (MSP dirs and anchor
//! peers; Fabric gets these from channel configs). Timings are shortened through CORE_* env vars.

use std::path::Path;
use std::time::Duration;

use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::testkit::local_msp;
use serde_json::Value;

use crate::peer::{Peer, Ports, http, sample_env};

const ALIVE_EXPIRATION: Duration = Duration::from_secs(2);
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

struct Spec {
    name: &'static str,
    org: usize,
    index: usize,
    external: bool,
}

const PEERS: [Spec; 3] = [
    Spec { name: "org1-peer0", org: 1, index: 0, external: true },
    Spec { name: "org1-peer1", org: 1, index: 1, external: false },
    Spec { name: "org2-peer0", org: 2, index: 0, external: true },
];

fn env_for(tmp: &Path, spec: &Spec, ports: &[Ports; 3]) -> Vec<(String, String)> {
    let me = ports[PEERS.iter().position(|p| p.name == spec.name).unwrap()];
    let mut env = sample_env(me, &tmp.join(spec.name));
    let crypto = tmp.join("crypto/peerOrganizations");
    let domain = format!("org{}.example.com", spec.org);
    let msp = crypto.join(&domain).join(format!("peers/peer{}.{domain}/msp", spec.index));
    let other = if spec.org == 1 { 2 } else { 1 };
    let anchor = ports[if other == 1 { 0 } else { 2 }].peer;
    let trusted = format!(
        "[{{id: Org{other}MSP, dir: {}, anchorPeers: [127.0.0.1:{anchor}]}}]",
        crypto.join(format!("org{other}.example.com/msp")).display()
    );
    env.extend([
        ("CORE_PEER_ID".into(), spec.name.into()),
        ("CORE_PEER_MSPCONFIGPATH".into(), msp.display().to_string()),
        ("CORE_PEER_LOCALMSPID".into(), format!("Org{}MSP", spec.org)),
        ("CORE_PEER_GOSSIP_BOOTSTRAP".into(), format!("127.0.0.1:{}", ports[0].peer)),
        ("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL".into(), "200ms".into()),
        ("CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT".into(), "2s".into()),
        ("CORE_PEER_GOSSIP_RECONNECTINTERVAL".into(), "500ms".into()),
        ("CORE_PEER_GOSSIP_PULLINTERVAL".into(), "300ms".into()),
        ("CORE_PEER_GOSSIP_CONNTIMEOUT".into(), "500ms".into()),
        ("CORE_PEER_GOSSIP_DIALTIMEOUT".into(), "500ms".into()),
        ("FABRIC_LOGGING_SPEC".into(), "info".into()),
    ]);
    if spec.org == 2 || spec.index == 0 {
        env.push(("CORE_PEER_GOSSIP_TRUSTEDMSPS".into(), trusted));
    }
    if spec.org == 2 {
        // org2 has no bootstrap peer of its own in this test.
        env.retain(|(k, _)| k != "CORE_PEER_GOSSIP_BOOTSTRAP");
    }
    if spec.external {
        env.push(("CORE_PEER_GOSSIP_EXTERNALENDPOINT".into(), format!("127.0.0.1:{}", me.peer)));
    }
    env
}

fn membership(peer: &Peer) -> Value {
    let (status, body) = http(peer.ports.operations, "GET", "/membership", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// PKI-IDs of the members `peer` sees alive (`true`) or dead.
fn seen(peer: &Peer, alive: bool) -> Vec<String> {
    let view = membership(peer);
    let mut ids: Vec<String> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["alive"].as_bool() == Some(alive))
        .map(|m| m["pki_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Waits, reading the peer's log as it goes, until `condition` holds (checked on each new line
/// and at least every 100 ms), or panics after `limit`.
fn eventually(peer: &mut Peer, limit: Duration, what: &str, condition: impl Fn(&Peer) -> bool) {
    let rounds = (limit.as_millis() / 100).max(1);
    for _ in 0..rounds {
        if condition(peer) {
            return;
        }
        peer.next_line(Duration::from_millis(100));
    }
    assert!(condition(peer), "{what} did not happen within {limit:?}; log:\n{}", peer.seen.join("\n"));
}

#[test]
fn two_orgs_three_peers_learn_whom_they_should_detect_a_death_and_a_return() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pki = Vec::new();
    for org in [1, 2] {
        let spec = OrgSpec { msp_id: format!("Org{org}MSP"), domain: format!("org{org}.example.com"), peers: 2 };
        let generated = generate::generate_org(&spec, &mut generate::org_rng(11, &spec), ValidityWindow::fixed()).unwrap();
        generated.write_to(&tmp.path().join("crypto")).unwrap();
        for peer in &generated.peers {
            pki.push(local_msp(peer, &spec.msp_id).pki_id().to_string());
        }
    }
    let (p10, p11, p20) = (&pki[0], &pki[1], &pki[2]);
    let ports = [Ports::free(), Ports::free(), Ports::free()];
    let mut peers: Vec<Peer> = PEERS
        .iter()
        .map(|spec| {
            Peer::spawn(tmp.path(), &env_for(tmp.path(), spec, &ports), ports[PEERS.iter().position(|p| p.name == spec.name).unwrap()])
        })
        .collect();
    for peer in &mut peers {
        peer.wait_for("Started peer with ID=", Duration::from_secs(30));
    }
    // The peer without an external endpoint warns, the others do not.
    assert!(peers[1].seen.iter().any(|l| l.contains("External endpoint is empty")));
    assert!(!peers[0].seen.iter().any(|l| l.contains("External endpoint is empty")));

    let limit = Duration::from_secs(20);
    eventually(&mut peers[0], limit, "org1-peer0 sees org1-peer1 and org2-peer0", |p| seen(p, true) == sorted(&[p11, p20]));
    eventually(&mut peers[1], limit, "org1-peer1 sees org1-peer0", |p| seen(p, true) == sorted(&[p10]));
    eventually(&mut peers[2], limit, "org2-peer0 sees org1-peer0", |p| seen(p, true) == sorted(&[p10]));
    // Give gossip a few more rounds: what should stay hidden stays hidden.
    for _ in 0..10 {
        peers[1].next_line(Duration::from_millis(100));
    }
    assert_eq!(seen(&peers[1], true), sorted(&[p10]), "no external endpoint: org1-peer1 never sees org2");
    assert_eq!(seen(&peers[2], true), sorted(&[p10]), "org2 never sees org1-peer1, which has no external endpoint");
    // Internal endpoints stay inside the org.
    let view = membership(&peers[2]);
    assert!(view["members"].as_array().unwrap().iter().all(|m| m["internal_endpoint"] == ""), "{view}");
    let view = membership(&peers[0]);
    let p11_entry = view["members"].as_array().unwrap().iter().find(|m| m["pki_id"] == p11.as_str()).unwrap().clone();
    assert_eq!(p11_entry["internal_endpoint"], format!("127.0.0.1:{}", ports[1].peer));

    // Kill org2-peer0: org1-peer0 marks it dead within aliveExpirationTimeout (+ check interval).
    let (code, _) = peers[2].signal_and_wait("KILL", Duration::from_secs(5));
    assert_eq!(code, -1);
    eventually(&mut peers[0], ALIVE_EXPIRATION + CHECK_INTERVAL + Duration::from_millis(500), "org2-peer0 marked dead", |p| {
        seen(p, false).contains(p20)
    });

    // Restart it on the same data and ports: it comes back, with a higher incarnation.
    let before = membership(&peers[0])["members"].as_array().unwrap().iter().find(|m| m["pki_id"] == p20.as_str()).unwrap()["inc_num"]
        .as_u64()
        .unwrap();
    peers[2] = Peer::spawn(tmp.path(), &env_for(tmp.path(), &PEERS[2], &ports), ports[2]);
    peers[2].wait_for("Started peer with ID=", Duration::from_secs(30));
    eventually(&mut peers[0], limit, "org2-peer0 alive again", |p| seen(p, true).contains(p20));
    let after = membership(&peers[0])["members"].as_array().unwrap().iter().find(|m| m["pki_id"] == p20.as_str()).unwrap()["inc_num"]
        .as_u64()
        .unwrap();
    assert!(after > before, "incarnation {after} > {before}");

    for peer in &mut peers {
        let (code, _) = peer.signal_and_wait("TERM", Duration::from_secs(5));
        assert_eq!(code, 0);
    }
}
