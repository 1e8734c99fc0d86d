//! Blocks: `block` (a block from the ordering service or a peer, appended to a joined channel)
//! and `genesis_block` (a block to join a channel with).
//!
//! Both run on a fresh peer whose ledgers live on the simulator's in-memory disk. Checked: an
//! append or join either happens completely or not at all, what was stored reads back equal,
//! the hash chain stays intact, and a restart (reopening the disk) keeps all of it.

use std::sync::LazyLock;

use peer_core::channel::SignedData;
use peer_core::channel::config::ChannelConfig;
use peer_core::channels::ChannelError;
use peer_core::ledger::block::{data_hash, header_hash};
use peer_core::services::scc::CHANNEL_READERS;
use prost::Message;
use proto::common::{Block, BlockHeader};

use crate::Outcome;
use crate::world::{CHANNEL, Peer, world};

/// `block`: the input is a `common.Block`, offered to a peer that has joined [`CHANNEL`] at
/// height 1: first through `Channels::append` (orderer signatures, then the ledger's rules),
/// then to the ledger alone, then with its number, previous hash and data hash made right
/// (which the ledger must then take).
pub fn block(data: &[u8]) -> Outcome {
    let Ok(block) = Block::decode(data) else { return Outcome::rejected("not a Block") };
    let peer = Peer::joined();
    let ledger = peer.channels.ledger(CHANNEL).expect("the joined channel has a ledger");
    let height = ledger.height();
    let verdict = peer.channels.append(CHANNEL, &block);
    match &verdict {
        Ok(()) => {
            assert_eq!(ledger.height(), height + 1, "an accepted block did not raise the height by one");
            assert_stored(&peer, height, &block);
            // The same block again is refused: its number is now below the height.
            assert!(peer.channels.append(CHANNEL, &block).is_err(), "the same block was appended twice");
        }
        Err(_) => assert_eq!(ledger.height(), height, "a refused block changed the height"),
    }

    // The ledger's own rules (the signatures are the caller's job): whatever they say, a refusal
    // changes nothing.
    let height = ledger.height();
    if ledger.append(&block).is_err() {
        assert_eq!(ledger.height(), height, "a block the ledger refused changed the height");
    }

    // Made to fit the chain, any block content is stored and indexed.
    let height = ledger.height();
    let tip = ledger.block(height - 1).expect("reading the tip").expect("the tip exists");
    let mut fitted = block.clone();
    let data = fitted.data.clone().unwrap_or_default();
    fitted.header = Some(BlockHeader {
        number: height,
        previous_hash: header_hash(tip.header.as_ref().expect("stored blocks have headers")).to_vec(),
        data_hash: data_hash(&data).to_vec(),
    });
    ledger.append(&fitted).expect("a block with the right number, previous hash and data hash is appended");
    assert_stored(&peer, height, &fitted);
    ledger.verify_chain().expect("the chain is intact after appends");

    // A restart keeps every acknowledged block (and the channel, whatever the new tip claims
    // about its last config).
    let appended = ledger.height();
    drop(ledger);
    let peer = peer.reopen();
    let ledger = peer.channels.ledger_mgr().channel(CHANNEL).expect("the channel's ledger opens again");
    assert_eq!(ledger.height(), appended, "a restart lost blocks");
    ledger.verify_chain().expect("the chain is intact after a restart");
    assert_stored(&peer, appended - 1, &fitted);

    match verdict {
        Ok(()) => Outcome::Accepted,
        Err(err) => Outcome::Rejected(err.to_string()),
    }
}

/// Block `number` of [`CHANNEL`] reads back as `block`, by number and by header hash.
fn assert_stored(peer: &Peer, number: u64, block: &Block) {
    let ledger = peer.channels.ledger_mgr().channel(CHANNEL).expect("the channel has a ledger");
    let stored = ledger.block(number).expect("reading a stored block").expect("a stored block exists");
    assert_eq!(&stored, block, "block [{number}] reads back different");
    let hash = header_hash(block.header.as_ref().expect("stored blocks have headers"));
    let by_hash = ledger.block_by_hash(&hash).expect("reading by hash").expect("a stored block is found by its hash");
    assert_eq!(&by_hash, block, "block [{number}] found by hash is different");
}

/// `genesis_block`: the input is a `common.Block` to join a channel with. Its configuration is
/// parsed (`ChannelConfig::from_block`) and, if it parses, queried; then a peer without channels
/// joins with it (`Channels::join`, as cscc JoinChain does).
pub fn genesis_block(data: &[u8]) -> Outcome {
    let Ok(block) = Block::decode(data) else { return Outcome::rejected("not a Block") };
    let parsed = ChannelConfig::from_block(&block);
    if let Ok(config) = &parsed {
        query(config);
    }
    let peer = Peer::empty();
    let joined = peer.channels.join(&block);
    match &joined {
        Ok(config) => {
            let parsed = parsed.as_ref().expect("a block that joined a channel has a configuration");
            assert_eq!(config.channel_id, parsed.channel_id);
            let id = config.channel_id.clone();
            assert_eq!(peer.channels.ids(), vec![id.clone()], "the joined channel is not the only one listed");
            let ledger = peer.channels.ledger(&id).expect("a joined channel has a ledger");
            assert_eq!(ledger.height(), 1, "a joined channel starts at height 1");
            assert_eq!(ledger.block(0).expect("reading block 0"), Some(block.clone()), "the genesis block reads back different");
            // Joining twice is refused and changes nothing.
            assert!(matches!(peer.channels.join(&block), Err(ChannelError::Ledger(_))), "joined the same channel twice");
            // An acknowledged join survives a restart, with its configuration.
            drop(ledger);
            let peer = peer.reopen();
            assert_eq!(peer.channels.ids(), vec![id.clone()], "a restart lost the joined channel");
            let reopened = peer.channels.config(&id).expect("the channel's configuration after a restart");
            assert_eq!(reopened.sequence, parsed.sequence);
        }
        Err(_) => {
            assert!(peer.channels.ids().is_empty(), "a refused join left a channel behind");
            let peer = peer.reopen();
            assert!(peer.channels.ids().is_empty(), "a refused join left a channel behind after a restart");
        }
    }
    match joined {
        Ok(_) => Outcome::Accepted,
        Err(err) => Outcome::Rejected(err.to_string()),
    }
}

/// One signature over a message by each of the peer, Org1's admin, Org2's peer0, the orderer
/// and an outsider (Org3), as policy input. Signed once per process.
static SIGNED: LazyLock<Vec<[SignedData; 1]>> = LazyLock::new(|| {
    let world = world();
    let message = b"a proposal";
    [&world.peer, &world.org1_admin, &world.org2_peer0, &world.orderer, &world.org3_peer0]
        .into_iter()
        .map(|signer| [SignedData { data: message.to_vec(), identity: signer.identity.serialize(), signature: signer.sign(message) }])
        .collect()
});

/// What the peer asks of a channel configuration: its MSPs, orderer endpoints, and policies
/// evaluated for the fixture's identities (refusals are fine; panics are not).
fn query(config: &ChannelConfig) {
    let _ = config.orderer_endpoints();
    for (msp_id, msp) in config.msps() {
        assert_eq!(&msp.id, msp_id);
    }
    for path in [
        CHANNEL_READERS,
        "/Channel/Application/Writers",
        "/Channel/Application/Admins",
        "/Channel/Orderer/BlockValidation",
        "/Channel/Readers",
    ] {
        for signed in SIGNED.iter() {
            let _ = config.evaluate(path, signed);
        }
        let _ = config.evaluate(path, &[]);
    }
}
