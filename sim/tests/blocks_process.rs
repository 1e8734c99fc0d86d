//! Block flow between real processes on 127.0.0.1: `sim orderer` cuts blocks, three
//! `peer-core node start` peers join its channel and keep their ledgers in step with it.
//!
//! Topology: org1 peer0 and org2 peer0 are static leaders (each pulls from the orderer), org1
//! peer1 is a follower (it gets blocks only by gossip from org1 peer0: pushed blocks, and state
//! transfer for what it missed). The follower is killed with SIGKILL while blocks flow and
//! restarted on the same data directory; it must catch up. Then the orderer is stopped, every
//! peer must reach the orderer's final height, and the ledgers must be equal to each other and
//! to the orderer's (tip hashes from `channel getinfo`, blocks from `channel fetch`, including
//! blocks committed while the follower was down); the ledger metrics must count the commits.
//!
//! The network (real time, logs, guards) is `support/network.rs`, shared with the TLS test
//! (`tls_process.rs`). The peers run the `peer-core` binary, which the test has cargo build
//! (`support/binaries.rs`).

use peer_core::ledger::LedgerMgr;

#[path = "support/network.rs"]
mod network;
use network::{CHANNEL, FOLLOWER, Network, ORG1_PEER0, ORG2_PEER0, Peer, Security, sample};

/// Heights every peer must reach before the follower is killed.
const FIRST_HEIGHT: u64 = 10;
/// Blocks the leaders must commit while the follower is down.
const MISSED_BLOCKS: u64 = 5;

#[test]
fn three_peers_follow_the_orderer_and_a_killed_follower_catches_up() {
    let mut network = Network::start(Security::Plaintext);
    let genesis = network.genesis();
    for peer in &network.peers {
        let stdout = peer.channel(&["join", "-b", genesis.to_str().unwrap()]);
        assert_eq!(stdout, "", "join prints to stderr only");
    }
    let everyone = [ORG1_PEER0, FOLLOWER, ORG2_PEER0];
    let leaders = [ORG1_PEER0, ORG2_PEER0];
    network.wait_for_height(&everyone, FIRST_HEIGHT, "every peer has blocks from the orderer");

    // Kill the follower while blocks flow. It gets blocks only from org1 peer0, so its ledger
    // ends at or below org1 peer0's height read after the kill: every block from `down_from` on
    // is one the follower commits after its restart.
    network.peers[FOLLOWER].kill();
    let down_from = network.peers[ORG1_PEER0].joined_height();
    eprintln!("killed the follower; org1 peer0 at height {down_from}");
    network.wait_for_height(&leaders, down_from + MISSED_BLOCKS, "the leaders go on while the follower is down");
    let caught_up_at = leaders.iter().map(|&i| network.peers[i].joined_height()).max().unwrap();
    network.start_peer(FOLLOWER);
    eprintln!("restarted the follower; the leaders reached height {caught_up_at} while it was down");
    network.wait_for_height(&[FOLLOWER], caught_up_at, "the restarted follower catches up with the leaders' height at its restart");

    // Stop the chain; every peer must end at the orderer's final height, with equal ledgers.
    let final_height = network.orderer.terminate();
    eprintln!("stopped the orderer at height {final_height}");
    assert!(final_height >= caught_up_at, "the orderer's chain ({final_height}) holds what the peers committed ({caught_up_at})");
    network.wait_for_height(&everyone, final_height, "every peer reaches the orderer's final height");

    let infos: Vec<(u64, String)> = network.peers.iter().map(Peer::info).collect();
    for (peer, info) in network.peers.iter().zip(&infos) {
        assert_eq!(info, &infos[0], "{} has the same height and tip as {}", peer.name, network.peers[0].name);
    }
    assert_eq!(infos[0].0, final_height);

    // Blocks: the genesis, the first one pulled, some committed while the follower was down, and
    // the last; each equal on every peer and equal to the orderer's block at that number.
    let orderer_ledger = LedgerMgr::open(&peer_core::env::real::env().unwrap(), &network.orderer.data, "blocks_process").unwrap();
    let orderer_chain = orderer_ledger.channel(CHANNEL).expect("the orderer's ledger has the channel");
    assert_eq!(orderer_chain.height(), final_height);
    let mut numbers = vec![0, 1, down_from, (down_from + caught_up_at) / 2, caught_up_at - 1, final_height - 1];
    numbers.sort_unstable();
    numbers.dedup();
    for number in numbers {
        let expected = orderer_chain.block(number).unwrap().expect("the orderer has the block");
        for peer in &network.peers {
            assert_eq!(peer.fetch(number), expected, "block {number} on {} is the orderer's", peer.name);
        }
    }

    // The ledger metrics of the channel: the height, and one observed commit per block the
    // peer committed since its (last) start, the genesis block at join included (Fabric commits it
    // through the same path); the follower committed at least the missed blocks.
    for (i, peer) in network.peers.iter().enumerate() {
        let metrics = peer.metrics().expect("the operations server answers");
        assert_eq!(sample(&metrics, "ledger_blockchain_height"), Some(final_height), "{}:\n{metrics}", peer.name);
        let commits = sample(&metrics, "ledger_block_processing_time_count")
            .unwrap_or_else(|| panic!("{}: no commit count in\n{metrics}", peer.name));
        if i == FOLLOWER {
            assert!(commits >= final_height - down_from, "{}: {commits} commits since its restart", peer.name);
        } else {
            assert_eq!(commits, final_height, "{}: one commit per block, the genesis block included", peer.name);
        }
    }

    // A static leader joins the channel's gossip (and learns its anchors) before its deliver
    // client's first block reaches gossip, as Fabric orders them.
    let log = std::fs::read_to_string(network.peers[ORG1_PEER0].log()).unwrap();
    let joining = log.find(&format!("Joining gossip network of channel {CHANNEL} with 2 organizations"));
    let anchors = log.find(&format!("configured anchor peers of Org1MSP for channel {CHANNEL}"));
    assert!(joining.is_some() && joining < anchors, "the join line, then the anchors:\n{log}");
    assert!(!log.contains("Failed obtaining gossipChannel"), "a block reached gossip before its channel:\n{log}");
}
