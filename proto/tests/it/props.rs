//! Seeded property tests: encode -> decode gives the value back and re-encodes to the
//! same bytes; decoding arbitrary bytes returns (possibly an error) without panicking.

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};
use prost::Message;

use proto::gossip::gossip_message::Content;
use proto::{common, gossip, msp, orderer, protos};

fn config() -> ProptestConfig {
    ProptestConfig { rng_seed: RngSeed::Fixed(0xFAB), cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}

fn roundtrip<M: Message + Default + PartialEq + Debug>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = msg.encode_to_vec();
    prop_assert_eq!(bytes.len(), msg.encoded_len());
    let back = M::decode(bytes.as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, msg);
    prop_assert_eq!(back.encode_to_vec(), bytes);
    Ok(())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

/// Mostly known enum values, sometimes any i32 (proto3 enums are open).
fn enum_value(max_known: i32) -> impl Strategy<Value = i32> {
    prop_oneof![4 => 0..=max_known, 1 => any::<i32>()]
}

// ---- gossip ----

fn peer_time() -> impl Strategy<Value = gossip::PeerTime> {
    (any::<u64>(), any::<u64>()).prop_map(|(inc_num, seq_num)| gossip::PeerTime { inc_num, seq_num })
}

fn member() -> impl Strategy<Value = gossip::Member> {
    (text(), bytes(8), bytes(32)).prop_map(|(endpoint, metadata, pki_id)| gossip::Member { endpoint, metadata, pki_id })
}

fn envelope() -> impl Strategy<Value = gossip::Envelope> {
    let secret = (bytes(16), bytes(16)).prop_map(|(payload, signature)| gossip::SecretEnvelope { payload, signature });
    (bytes(64), bytes(72), option::of(secret)).prop_map(|(payload, signature, secret_envelope)| gossip::Envelope {
        payload,
        signature,
        secret_envelope,
    })
}

fn payload() -> impl Strategy<Value = gossip::Payload> {
    (any::<u64>(), bytes(64), vec(bytes(16), 0..3)).prop_map(|(seq_num, data, private_data)| gossip::Payload {
        seq_num,
        data,
        private_data,
    })
}

fn properties() -> impl Strategy<Value = gossip::Properties> {
    let chaincode = (text(), text(), bytes(8)).prop_map(|(name, version, metadata)| gossip::Chaincode { name, version, metadata });
    (any::<u64>(), any::<bool>(), vec(chaincode, 0..3)).prop_map(|(ledger_height, left_channel, chaincodes)| gossip::Properties {
        ledger_height,
        left_channel,
        chaincodes,
    })
}

fn pvt_digest() -> impl Strategy<Value = gossip::PvtDataDigest> {
    (text(), text(), text(), any::<u64>(), any::<u64>()).prop_map(|(tx_id, namespace, collection, block_seq, seq_in_block)| {
        gossip::PvtDataDigest { tx_id, namespace, collection, block_seq, seq_in_block }
    })
}

fn content() -> impl Strategy<Value = Content> {
    let pull = || (any::<u64>(), vec(bytes(16), 0..3), enum_value(2));
    prop_oneof![
        (option::of(member()), option::of(peer_time()), bytes(32))
            .prop_map(|(membership, timestamp, identity)| Content::AliveMsg(gossip::AliveMessage { membership, timestamp, identity })),
        (option::of(envelope()), vec(bytes(32), 0..3))
            .prop_map(|(self_information, known)| { Content::MemReq(gossip::MembershipRequest { self_information, known }) }),
        (vec(envelope(), 0..3), vec(envelope(), 0..3))
            .prop_map(|(alive, dead)| Content::MemRes(gossip::MembershipResponse { alive, dead })),
        (bytes(32), bytes(64), bytes(32), any::<bool>()).prop_map(|(pki_id, identity, tls_cert_hash, probe)| Content::Conn(
            gossip::ConnEstablish { pki_id, identity, tls_cert_hash, probe }
        )),
        option::of(payload()).prop_map(|payload| Content::DataMsg(gossip::DataMessage { payload })),
        (option::of(peer_time()), bytes(32), bytes(32), option::of(properties())).prop_map(
            |(timestamp, pki_id, channel_mac, properties)| Content::StateInfo(gossip::StateInfo {
                timestamp,
                pki_id,
                channel_mac,
                properties,
            })
        ),
        (any::<u64>(), any::<u64>())
            .prop_map(|(start_seq_num, end_seq_num)| { Content::StateRequest(gossip::RemoteStateRequest { start_seq_num, end_seq_num }) }),
        vec(payload(), 0..3).prop_map(|payloads| { Content::StateResponse(gossip::RemoteStateResponse { payloads }) }),
        (any::<u64>(), bytes(8), enum_value(2))
            .prop_map(|(nonce, metadata, msg_type)| { Content::Hello(gossip::GossipHello { nonce, metadata, msg_type }) }),
        pull().prop_map(|(nonce, digests, msg_type)| { Content::DataDig(gossip::DataDigest { nonce, digests, msg_type }) }),
        pull().prop_map(|(nonce, digests, msg_type)| { Content::DataReq(gossip::DataRequest { nonce, digests, msg_type }) }),
        (any::<u64>(), vec(envelope(), 0..3), enum_value(2))
            .prop_map(|(nonce, data, msg_type)| { Content::DataUpdate(gossip::DataUpdate { nonce, data, msg_type }) }),
        Just(Content::Empty(gossip::Empty {})),
        vec(envelope(), 0..3).prop_map(|elements| Content::StateSnapshot(gossip::StateInfoSnapshot { elements })),
        bytes(32).prop_map(|channel_mac| { Content::StateInfoPullReq(gossip::StateInfoPullRequest { channel_mac }) }),
        (bytes(32), option::of(peer_time()), any::<bool>()).prop_map(|(pki_id, timestamp, is_declaration)| Content::LeadershipMsg(
            gossip::LeadershipMessage { pki_id, timestamp, is_declaration }
        )),
        (bytes(32), bytes(64), bytes(8))
            .prop_map(|(pki_id, cert, metadata)| { Content::PeerIdentity(gossip::PeerIdentity { pki_id, cert, metadata }) }),
        text().prop_map(|error| Content::Ack(gossip::Acknowledgement { error })),
        vec(pvt_digest(), 0..3).prop_map(|digests| Content::PrivateReq(gossip::RemotePvtDataRequest { digests })),
        vec(
            (option::of(pvt_digest()), vec(bytes(16), 0..3)).prop_map(|(digest, payload)| gossip::PvtDataElement { digest, payload }),
            0..3
        )
        .prop_map(|elements| Content::PrivateRes(gossip::RemotePvtDataResponse { elements })),
    ]
}

fn gossip_message() -> impl Strategy<Value = gossip::GossipMessage> {
    (any::<u64>(), bytes(16), enum_value(5), option::of(content())).prop_map(|(nonce, channel, tag, content)| gossip::GossipMessage {
        nonce,
        channel,
        tag,
        content,
    })
}

// ---- common / orderer / msp ----

fn block() -> impl Strategy<Value = common::Block> {
    let header = (any::<u64>(), bytes(32), bytes(32)).prop_map(|(number, previous_hash, data_hash)| common::BlockHeader {
        number,
        previous_hash,
        data_hash,
    });
    let data = vec(bytes(128), 0..4).prop_map(|data| common::BlockData { data });
    let metadata = vec(bytes(32), 0..5).prop_map(|metadata| common::BlockMetadata { metadata });
    (option::of(header), option::of(data), option::of(metadata)).prop_map(|(header, data, metadata)| common::Block {
        header,
        data,
        metadata,
    })
}

fn seek_position() -> impl Strategy<Value = orderer::SeekPosition> {
    use orderer::seek_position::Type;
    let kind = prop_oneof![
        Just(Type::Newest(orderer::SeekNewest {})),
        Just(Type::Oldest(orderer::SeekOldest {})),
        any::<u64>().prop_map(|number| Type::Specified(orderer::SeekSpecified { number })),
        Just(Type::NextCommit(orderer::SeekNextCommit {})),
    ];
    option::of(kind).prop_map(|r#type| orderer::SeekPosition { r#type })
}

fn seek_info() -> impl Strategy<Value = orderer::SeekInfo> {
    (option::of(seek_position()), option::of(seek_position()), enum_value(1), enum_value(1), enum_value(1)).prop_map(
        |(start, stop, behavior, error_response, content_type)| orderer::SeekInfo { start, stop, behavior, error_response, content_type },
    )
}

fn serialized_identity() -> impl Strategy<Value = msp::SerializedIdentity> {
    (text(), bytes(256)).prop_map(|(mspid, id_bytes)| msp::SerializedIdentity { mspid, id_bytes })
}

/// Small config trees, including empty keys and all-default values in the maps.
fn config_group() -> impl Strategy<Value = common::ConfigGroup> {
    let value =
        (any::<u64>(), bytes(8), text()).prop_map(|(version, value, mod_policy)| common::ConfigValue { version, value, mod_policy });
    let policy = (any::<u64>(), option::of((enum_value(3), bytes(8)).prop_map(|(r#type, value)| common::Policy { r#type, value })), text())
        .prop_map(|(version, policy, mod_policy)| common::ConfigPolicy { version, policy, mod_policy });
    let leaf = (any::<u64>(), btree_map(text(), value, 0..3), btree_map(text(), policy, 0..3), text()).prop_map(
        |(version, values, policies, mod_policy)| common::ConfigGroup { version, groups: BTreeMap::new(), values, policies, mod_policy },
    );
    leaf.prop_recursive(3, 16, 3, |inner| {
        (inner.clone(), btree_map(text(), inner, 0..3)).prop_map(|(mut group, groups)| {
            group.groups = groups;
            group
        })
    })
}

fn chaincode_input() -> impl Strategy<Value = protos::ChaincodeInput> {
    (vec(bytes(16), 0..4), btree_map(text(), bytes(4), 0..4), any::<bool>())
        .prop_map(|(args, decorations, is_init)| protos::ChaincodeInput { args, decorations, is_init })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn gossip_envelope_roundtrips(msg in envelope()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn gossip_message_roundtrips(msg in gossip_message()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn common_block_roundtrips(msg in block()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn orderer_seek_info_roundtrips(msg in seek_info()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn msp_serialized_identity_roundtrips(msg in serialized_identity()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn common_config_group_roundtrips(msg in config_group()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn protos_chaincode_input_roundtrips(msg in chaincode_input()) {
        roundtrip(&msg)?;
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(data in bytes(512)) {
        // Errors are fine; only a panic fails the property.
        let _ = gossip::Envelope::decode(data.as_slice());
        let _ = gossip::GossipMessage::decode(data.as_slice());
        let _ = common::Block::decode(data.as_slice());
        let _ = protos::SignedProposal::decode(data.as_slice());
    }

    #[test]
    fn decoding_mutated_messages_never_panics(
        msg in gossip_message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Arbitrary bytes rarely look like a GossipMessage; corrupting a real one reaches
        // deeper into the nested decoders.
        let mut data = msg.encode_to_vec();
        if !data.is_empty() {
            for (at, byte) in flips {
                let i = at.index(data.len());
                data[i] = byte;
            }
        }
        let _ = gossip::GossipMessage::decode(data.as_slice());
        let _ = gossip::Envelope::decode(data.as_slice());
    }
}
