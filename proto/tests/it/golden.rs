//! Golden encodings worked out by hand from the protobuf wire format.
//!
//! A field key is one varint `(field_number << 3) | wire_type`: wire type 0 is a varint,
//! 2 is length-delimited (a varint length, then that many bytes). Fields come out in
//! field-number order, proto3 scalars equal to their default are left out, and a set
//! message field is written even when empty (`len 0`). Map entries are written with both
//! key (field 1) and value (field 2) even when those are defaults, as Go does.

use std::collections::BTreeMap;
use std::fmt::Debug;

use prost::Message;
use proto::{common, gossip, msp, orderer, protos, rwset};

/// `msg` encodes to exactly `golden`, and `golden` decodes back to `msg`.
fn check<M: Message + Default + PartialEq + Debug>(msg: &M, golden: &[u8]) {
    let encoded = msg.encode_to_vec();
    assert_eq!(hex::encode(&encoded), hex::encode(golden), "encoding of {msg:?}");
    assert_eq!(msg.encoded_len(), golden.len());
    let decoded = M::decode(golden).expect("golden bytes decode");
    assert_eq!(&decoded, msg);
}

#[test]
fn gossip_alive_message() {
    let msg = gossip::GossipMessage {
        nonce: 1,
        channel: vec![],
        tag: gossip::gossip_message::Tag::Empty as i32,
        content: Some(gossip::gossip_message::Content::AliveMsg(gossip::AliveMessage {
            membership: Some(gossip::Member { endpoint: "p:7051".into(), metadata: vec![], pki_id: vec![1, 2] }),
            timestamp: Some(gossip::PeerTime { inc_num: 5, seq_num: 6 }),
            identity: vec![],
        })),
    };
    #[rustfmt::skip]
    let golden = [
        0x08, 0x01,             // 1 nonce (varint) = 1
                                // 2 channel: empty, omitted
        0x18, 0x01,             // 3 tag (varint) = EMPTY (1)
        0x2a, 0x14,             // 5 alive_msg (len) = 20 bytes:
        0x0a, 0x0c,             //   1 membership (len) = 12 bytes:
        0x0a, 0x06,             //     1 endpoint (len) = 6
        b'p', b':', b'7', b'0', b'5', b'1',
        0x1a, 0x02, 0x01, 0x02, //     3 pki_id (len) = 2: 01 02
        0x12, 0x04,             //   2 timestamp (len) = 4 bytes:
        0x08, 0x05,             //     1 inc_num = 5
        0x10, 0x06,             //     2 seq_num = 6
    ];
    check(&msg, &golden);
}

#[test]
fn gossip_empty_and_two_byte_key_arms() {
    // An empty message in a oneof arm is still written: key + length 0.
    let empty = gossip::GossipMessage {
        tag: gossip::gossip_message::Tag::Empty as i32,
        content: Some(gossip::gossip_message::Content::Empty(gossip::Empty {})),
        ..Default::default()
    };
    #[rustfmt::skip]
    let golden = [
        0x18, 0x01, // 3 tag = EMPTY
        0x6a, 0x00, // 13 empty: key (13 << 3) | 2 = 0x6a, len 0
    ];
    check(&empty, &golden);

    // Field 16 needs a two-byte key: (16 << 3) | 2 = 130 = varint 82 01.
    let snapshot = gossip::GossipMessage {
        tag: gossip::gossip_message::Tag::ChanOrOrg as i32,
        content: Some(gossip::gossip_message::Content::StateSnapshot(gossip::StateInfoSnapshot { elements: vec![] })),
        ..Default::default()
    };
    #[rustfmt::skip]
    let golden = [
        0x18, 0x05,       // 3 tag = CHAN_OR_ORG (5)
        0x82, 0x01, 0x00, // 16 state_snapshot: two-byte key, len 0
    ];
    check(&snapshot, &golden);
}

#[test]
fn gossip_envelope_with_secret_envelope() {
    let secret = gossip::Secret { content: Some(gossip::secret::Content::InternalEndpoint("a:1".into())) };
    #[rustfmt::skip]
    let secret_golden = [
        0x0a, 0x03, b'a', b':', b'1', // 1 internalEndpoint (len) = 3 "a:1"
    ];
    check(&secret, &secret_golden);

    let env = gossip::Envelope {
        payload: vec![0xaa],
        signature: vec![0xbb, 0xcc],
        secret_envelope: Some(gossip::SecretEnvelope { payload: secret.encode_to_vec(), signature: vec![0x02] }),
    };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x01, 0xaa,       // 1 payload (len) = 1: aa
        0x12, 0x02, 0xbb, 0xcc, // 2 signature (len) = 2: bb cc
        0x1a, 0x0a,             // 3 secret_envelope (len) = 10 bytes:
        0x0a, 0x05,             //   1 payload (len) = 5: the Secret above
        0x0a, 0x03, b'a', b':', b'1',
        0x12, 0x01, 0x02,       //   2 signature (len) = 1: 02
    ];
    check(&env, &golden);
}

#[test]
fn gossip_conn_establish_probe() {
    let conn = gossip::ConnEstablish { pki_id: vec![1, 2, 3], identity: vec![9], tls_cert_hash: vec![], probe: true };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x03, 0x01, 0x02, 0x03, // 1 pki_id (len) = 3
        0x12, 0x01, 0x09,             // 2 identity (len) = 1
                                      // 3 tls_cert_hash: empty, omitted
        0x20, 0x01,                   // 4 probe (varint) = true
    ];
    check(&conn, &golden);
}

#[test]
fn msp_serialized_identity() {
    let id = msp::SerializedIdentity { mspid: "Org1MSP".into(), id_bytes: b"cert".to_vec() };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x07, b'O', b'r', b'g', b'1', b'M', b'S', b'P', // 1 mspid (len) = 7
        0x12, 0x04, b'c', b'e', b'r', b't',                   // 2 id_bytes (len) = 4
    ];
    check(&id, &golden);
}

#[test]
fn common_block_header() {
    let header = common::BlockHeader { number: 1000, previous_hash: vec![0x11, 0x11], data_hash: vec![0x22] };
    #[rustfmt::skip]
    let golden = [
        0x08, 0xe8, 0x07,       // 1 number = 1000 = 0b111_1101000: e8 (0x68 | 0x80), 07
        0x12, 0x02, 0x11, 0x11, // 2 previous_hash (len) = 2
        0x1a, 0x01, 0x22,       // 3 data_hash (len) = 1
    ];
    check(&header, &golden);
}

#[test]
fn orderer_seek_info_specified_300() {
    use orderer::seek_info::{SeekBehavior, SeekContentType, SeekErrorResponse};
    use orderer::seek_position::Type;
    let seek = orderer::SeekInfo {
        start: Some(orderer::SeekPosition { r#type: Some(Type::Specified(orderer::SeekSpecified { number: 300 })) }),
        stop: Some(orderer::SeekPosition { r#type: Some(Type::Newest(orderer::SeekNewest {})) }),
        behavior: SeekBehavior::FailIfNotReady as i32,
        error_response: SeekErrorResponse::BestEffort as i32,
        content_type: SeekContentType::HeaderWithSig as i32,
    };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x05,       // 1 start (len) = 5:
        0x1a, 0x03,       //   3 specified (len) = 3:
        0x08, 0xac, 0x02, //     1 number = 300 = 0b10_0101100: ac (0x2c | 0x80), 02
        0x12, 0x02,       // 2 stop (len) = 2:
        0x0a, 0x00,       //   1 newest (len) = 0
        0x18, 0x01,       // 3 behavior = FAIL_IF_NOT_READY
        0x20, 0x01,       // 4 error_response = BEST_EFFORT
        0x28, 0x01,       // 5 content_type = HEADER_WITH_SIG
    ];
    check(&seek, &golden);

    let next_commit = orderer::SeekPosition { r#type: Some(Type::NextCommit(orderer::SeekNextCommit {})) };
    check(&next_commit, &[0x22, 0x00]); // 4 next_commit (len) = 0
}

#[test]
fn common_channel_header_with_timestamp() {
    let header = common::ChannelHeader {
        r#type: common::HeaderType::EndorserTransaction as i32,
        version: 0,
        timestamp: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }),
        channel_id: "ch1".into(),
        tx_id: "ab".into(),
        epoch: 0,
        extension: vec![],
        tls_cert_hash: vec![0xff],
    };
    #[rustfmt::skip]
    let golden = [
        0x08, 0x03,                         // 1 type = ENDORSER_TRANSACTION (3)
                                            // 2 version = 0, omitted
        0x1a, 0x08,                         // 3 timestamp (len) = 8:
        0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, //   1 seconds = 1700000000 = 0x6553f100, 7 bits at a time
        0x10, 0x05,                         //   2 nanos = 5
        0x22, 0x03, b'c', b'h', b'1',       // 4 channel_id (len) = 3
        0x2a, 0x02, b'a', b'b',             // 5 tx_id (len) = 2
                                            // 6 epoch, 7 extension: defaults, omitted
        0x42, 0x01, 0xff,                   // 8 tls_cert_hash: key (8 << 3) | 2 = 0x42, len 1
    ];
    check(&header, &golden);
}

#[test]
fn protos_chaincode_input_decorations_sorted() {
    let mut decorations = BTreeMap::new();
    decorations.insert("zeta".to_string(), vec![0x01]);
    decorations.insert("alpha".to_string(), vec![0x02]);
    let input = protos::ChaincodeInput { args: vec![b"invoke".to_vec(), b"a".to_vec()], decorations, is_init: true };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x06, b'i', b'n', b'v', b'o', b'k', b'e', // 1 args[0] (len) = 6
        0x0a, 0x01, b'a',                               // 1 args[1] (len) = 1
        0x12, 0x0a,                                     // 2 decorations entry (len) = 10, "alpha" sorts first:
        0x0a, 0x05, b'a', b'l', b'p', b'h', b'a',       //   1 key (len) = 5
        0x12, 0x01, 0x02,                               //   2 value (len) = 1
        0x12, 0x09,                                     // 2 decorations entry (len) = 9:
        0x0a, 0x04, b'z', b'e', b't', b'a',             //   1 key (len) = 4
        0x12, 0x01, 0x01,                               //   2 value (len) = 1
        0x18, 0x01,                                     // 3 is_init = true
    ];
    check(&input, &golden);
}

#[test]
fn map_entries_keep_default_values_like_go() {
    // Every channel config has this shape: the Capability value is an empty message.
    let mut capabilities = BTreeMap::new();
    capabilities.insert("V2_0".to_string(), common::Capability {});
    let caps = common::Capabilities { capabilities };
    #[rustfmt::skip]
    let golden = [
        0x0a, 0x08,                         // 1 capabilities entry (len) = 8:
        0x0a, 0x04, b'V', b'2', b'_', b'0', //   1 key (len) = 4
        0x12, 0x00,                         //   2 value (len) = 0, written although empty
    ];
    check(&caps, &golden);
    // The shorter form some encoders produce (value left out) decodes to the same thing.
    let short = [0x0a, 0x06, 0x0a, 0x04, b'V', b'2', b'_', b'0'];
    assert_eq!(common::Capabilities::decode(&short[..]).unwrap(), caps);

    // A zero key (transaction index 0) is written too.
    let mut private_data_map = BTreeMap::new();
    private_data_map.insert(0u64, rwset::TxPvtReadWriteSet::default());
    let bpd = protos::BlockAndPrivateData { block: None, private_data_map };
    #[rustfmt::skip]
    let golden = [
        0x12, 0x04, // 2 private_data_map entry (len) = 4:
        0x08, 0x00, //   1 key (varint) = 0
        0x12, 0x00, //   2 value (len) = 0
    ];
    check(&bpd, &golden);
}

#[test]
fn oneof_scalar_arm_is_written_even_when_zero() {
    let policy = common::SignaturePolicy { r#type: Some(common::signature_policy::Type::SignedBy(0)) };
    check(&policy, &[0x08, 0x00]); // 1 signed_by (varint) = 0, present because the arm is set

    let status = protos::DeliverResponse { r#type: Some(protos::deliver_response::Type::Status(common::Status::Success as i32)) };
    check(&status, &[0x08, 0xc8, 0x01]); // 1 status = 200 = varint c8 01
}
