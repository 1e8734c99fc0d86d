//! Fabric's block hashes: the header hash that chains blocks and the data hash that binds a
//! block's transactions to its header, computed exactly as Fabric computes them. Also the few
//! envelope fields the block store reads (channel ID, transaction ID) and a block builder for
//! tests and the simulator. Nothing here verifies signatures (that is the channel module's job).

use der::Encode;
use der::asn1::{OctetStringRef, UintRef};
use prost::Message;
use proto::common::{Block, BlockData, BlockHeader, BlockMetadata, ChannelHeader, Envelope, Header, HeaderType, Payload};
use sha2::{Digest, Sha256};

/// The ASN.1 shape Fabric hashes: `SEQUENCE { number INTEGER, previousHash OCTET STRING,
/// dataHash OCTET STRING }` (the number as a non-negative big integer).
#[derive(der::Sequence)]
struct Asn1Header<'a> {
    number: UintRef<'a>,
    previous_hash: &'a OctetStringRef,
    data_hash: &'a OctetStringRef,
}

/// The DER bytes of a block header: what the header hash covers and what orderers sign.
pub fn header_bytes(header: &BlockHeader) -> Vec<u8> {
    let number = header.number.to_be_bytes();
    // UintRef strips leading zeros itself and adds the 0x00 a set high bit needs.
    let asn1 = Asn1Header {
        number: UintRef::new(&number).expect("8 bytes are a valid unsigned integer"),
        previous_hash: OctetStringRef::new(&header.previous_hash).expect("hashes are far below DER's length limit"),
        data_hash: OctetStringRef::new(&header.data_hash).expect("hashes are far below DER's length limit"),
    };
    asn1.to_der().expect("a three-field sequence always encodes")
}

/// SHA-256 of [`header_bytes`]: the next block's `previous_hash`, and the key of "block by hash".
pub fn header_hash(header: &BlockHeader) -> [u8; 32] {
    Sha256::digest(header_bytes(header)).into()
}

/// SHA-256 over the concatenated transaction envelopes: the header's `data_hash`.
pub fn data_hash(data: &BlockData) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for envelope in &data.data {
        hasher.update(envelope);
    }
    hasher.finalize().into()
}

/// The header of a block, or an empty one for a block that has none (hashes then still compute,
/// and validation reports the missing header by number mismatch or hash mismatch).
pub fn header_of(block: &Block) -> BlockHeader {
    block.header.clone().unwrap_or_default()
}

/// The channel header of a transaction envelope, or `None` when any layer (envelope, payload,
/// header, channel header) does not decode or is missing.
pub fn channel_header(envelope: &[u8]) -> Option<ChannelHeader> {
    let envelope = Envelope::decode(envelope).ok()?;
    let payload = Payload::decode(envelope.payload.as_slice()).ok()?;
    ChannelHeader::decode(payload.header?.channel_header.as_slice()).ok()
}

/// The channel a genesis block creates: the channel ID in its first envelope's channel header.
pub fn channel_id_of(block: &Block) -> Option<String> {
    let first = block.data.as_ref()?.data.first()?;
    channel_header(first).map(|header| header.channel_id).filter(|id| !id.is_empty())
}

/// An unsigned envelope carrying `data`, with a channel header of the given type, channel and
/// transaction ID. For tests and the simulator; real envelopes come from clients and orderers.
pub fn envelope(kind: HeaderType, channel_id: &str, tx_id: &str, data: &[u8]) -> Vec<u8> {
    let channel_header =
        ChannelHeader { r#type: kind as i32, channel_id: channel_id.to_string(), tx_id: tx_id.to_string(), ..Default::default() };
    let payload = Payload {
        header: Some(Header { channel_header: channel_header.encode_to_vec(), signature_header: Vec::new() }),
        data: data.to_vec(),
    };
    Envelope { payload: payload.encode_to_vec(), signature: Vec::new() }.encode_to_vec()
}

/// A block with the given number and previous hash over `envelopes`, its data hash computed and
/// four empty metadata entries (as Fabric's orderer lays them out). Unsigned: for tests and the
/// simulator.
pub fn new_block(number: u64, previous_hash: &[u8], envelopes: Vec<Vec<u8>>) -> Block {
    let data = BlockData { data: envelopes };
    Block {
        header: Some(BlockHeader { number, previous_hash: previous_hash.to_vec(), data_hash: data_hash(&data).to_vec() }),
        data: Some(data),
        metadata: Some(BlockMetadata { metadata: vec![Vec::new(); 4] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(number: u64, previous: &[u8], data: &[u8]) -> BlockHeader {
        BlockHeader { number, previous_hash: previous.to_vec(), data_hash: data.to_vec() }
    }

    #[test]
    fn header_bytes_are_the_der_sequence_fabric_hashes() {
        // Go's asn1.Marshal of {big.Int(0), []byte{}, []byte{}}: SEQUENCE(INTEGER 0, OCTET STRING "", OCTET STRING "").
        assert_eq!(header_bytes(&header(0, &[], &[])), [0x30, 0x07, 0x02, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]);
        // 255 needs a leading zero byte to stay non-negative; 256 does not.
        assert_eq!(
            header_bytes(&header(255, &[1], &[2, 3])),
            [0x30, 0x0b, 0x02, 0x02, 0x00, 0xff, 0x04, 0x01, 0x01, 0x04, 0x02, 0x02, 0x03]
        );
        assert_eq!(header_bytes(&header(256, &[], &[]))[..6], [0x30, 0x08, 0x02, 0x02, 0x01, 0x00]);
        // u64::MAX: nine content bytes (0x00 then eight 0xff).
        let max = header_bytes(&header(u64::MAX, &[], &[]));
        assert_eq!(max[..4], [0x30, 0x0f, 0x02, 0x09]);
        assert_eq!(max[4..13], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn long_hashes_use_der_long_form_lengths() {
        let bytes = header_bytes(&header(1, &[7; 32], &[9; 200]));
        // 200-byte OCTET STRING: 0x04 0x81 0xc8; the whole sequence exceeds 127 bytes too.
        assert_eq!(bytes[..3], [0x30, 0x81, 0xf0]);
        assert!(bytes.windows(3).any(|w| w == [0x04, 0x81, 0xc8]));
    }

    #[test]
    fn data_hash_is_sha256_over_the_concatenated_envelopes() {
        let split = BlockData { data: vec![b"ab".to_vec(), b"c".to_vec()] };
        let joined = BlockData { data: vec![b"abc".to_vec()] };
        assert_eq!(data_hash(&split), data_hash(&joined));
        // SHA-256("abc"), FIPS 180-2's first example.
        assert_eq!(hex::encode(data_hash(&joined)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        // No transactions: SHA-256 of nothing.
        assert_eq!(hex::encode(data_hash(&BlockData::default())), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn the_channel_id_comes_from_the_first_envelope() {
        let genesis = new_block(0, &[], vec![envelope(HeaderType::Config, "mychannel", "", b"config")]);
        assert_eq!(channel_id_of(&genesis).as_deref(), Some("mychannel"));
        assert_eq!(channel_id_of(&new_block(0, &[], vec![b"not an envelope".to_vec()])), None);
        assert_eq!(channel_id_of(&new_block(0, &[], Vec::new())), None);
        assert_eq!(channel_header(&envelope(HeaderType::EndorserTransaction, "ch", "tx1", b"")).unwrap().tx_id, "tx1");
    }
}
