//! `signed_proposal`: a `protos.SignedProposal` to the Endorser of a peer that has joined
//! [`CHANNEL`] and holds the fixture chain, without a network: `EndorserService::process` is
//! what `Endorser/ProcessProposal` calls (auth filters, unpacking, validation, duplicate check,
//! cscc/qscc dispatch, endorsement).
//!
//! Checked: a gRPC error changes nothing; an endorsed answer is signed by the peer over its
//! payload and identity and binds the proposal; joining a channel through cscc joins exactly
//! that channel.

use std::time::Duration;

use peer_core::proposal::unpack;
use peer_core::services::endorser::EndorserService;
use prost::Message;
use proto::protos::{ProposalResponsePayload, SignedProposal};

use crate::Outcome;
use crate::world::{CHAIN_BLOCKS, CHANNEL, Peer, world};
use peer_core::testkit::ManualClock;

/// `signed_proposal`: the input is a `protos.SignedProposal`.
pub fn signed_proposal(data: &[u8]) -> Outcome {
    let Ok(signed) = SignedProposal::decode(data) else { return Outcome::rejected("not a SignedProposal") };
    let world = world();
    let peer = Peer::joined();
    for block in &world.chain {
        peer.channels.append(CHANNEL, block).expect("appending the fixture chain");
    }
    let endorser = EndorserService::new(
        peer.channels.clone(),
        world.peer.clone(),
        ManualClock::new(),
        vec!["DefaultAuth".into(), "ExpirationCheck".into(), "TimeWindowCheck".into()],
        Duration::from_secs(15 * 60),
    );
    let heights = |peer: &Peer| -> Vec<(String, u64)> {
        peer.channels.ids().into_iter().map(|id| (id.clone(), peer.channels.ledger(&id).map_or(0, |l| l.height()))).collect()
    };
    let before = heights(&peer);
    assert_eq!(before, vec![(CHANNEL.to_string(), CHAIN_BLOCKS + 1)]);
    let result = endorser.process(&signed);
    let after = heights(&peer);
    let response = match result {
        Ok(response) => response,
        Err(status) => {
            assert_eq!(after, before, "a refused proposal changed the ledgers");
            return Outcome::Rejected(status.message().to_string());
        }
    };
    let chaincode = response.response.clone().unwrap_or_default();
    if after != before {
        // Only a successful cscc JoinChain changes anything: one more channel, at height 1.
        assert_eq!(chaincode.status, 200, "a failed proposal changed the ledgers: {}", chaincode.message);
        assert_eq!(after.len(), before.len() + 1, "a proposal changed the ledgers other than by joining a channel");
        assert!(before.iter().all(|b| after.contains(b)), "a proposal changed a joined channel");
        assert!(after.iter().all(|(id, height)| *height == 1 || before.iter().any(|(b, _)| b == id)), "a new channel is not at height 1");
    }
    if let Some(endorsement) = &response.endorsement {
        assert!(chaincode.status < 400, "an error was endorsed: {}", chaincode.status);
        assert_eq!(endorsement.endorser, world.peer.identity.serialize(), "endorsed by someone else");
        let signed_bytes = [response.payload.as_slice(), &endorsement.endorser].concat();
        world.peer.identity.verify(&signed_bytes, &endorsement.signature).expect("the endorsement verifies with the peer's identity");
        // The response binds itself to the proposal that was endorsed.
        let unpacked = unpack(&signed).expect("an endorsed proposal unpacks");
        let payload = ProposalResponsePayload::decode(response.payload.as_slice()).expect("the endorsed payload decodes");
        assert_eq!(payload.proposal_hash, unpacked.proposal_hash.to_vec(), "the response is bound to another proposal");
        assert!(!unpacked.channel_id().is_empty(), "a channel-less proposal was endorsed");
    }
    if chaincode.status == 200 { Outcome::Accepted } else { Outcome::Rejected(chaincode.message) }
}
