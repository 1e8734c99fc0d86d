//! Orderer signatures on blocks: checking them as a peer does before accepting a block, and
//! adding them as a (test or simulated) orderer does.
//!
//! Fabric's rule (the peer's `VerifyBlock`): the header's data hash must match the data, the
//! block's channel must be this channel, and `metadata[SIGNATURES]` must decode to a
//! `common.Metadata { value, signatures }` whose signatures, each over
//! `value ‖ signature_header ‖ header_bytes(header)` by the `SignatureHeader.creator`, satisfy
//! the channel's `/Channel/Orderer/BlockValidation` policy.
//!
//! [`sign_block`] writes metadata the way Fabric 2.x orderers write it: `SIGNATURES` holds an
//! `OrdererBlockMetadata { last_config, consenter_metadata }` value with one signature, and
//! `LAST_CONFIG` (deprecated upstream but still written) holds `Metadata { LastConfig }`.
//! The nonce comes from the caller's seeded RNG, and ECDSA signing is deterministic, so a signed
//! block is the same bytes on every run.

use prost::Message;
use proto::common::{Block, BlockMetadataIndex, LastConfig, Metadata, MetadataSignature, OrdererBlockMetadata, SignatureHeader};
use rand_core::Rng;

use super::config::{BLOCK_VALIDATION_POLICY, ChannelConfig};
use super::policy::{PolicyError, SignedData};
use crate::ledger::block::{data_hash, header_bytes};
use crate::msp::LocalMsp;

/// Fabric's nonce length (`crypto.NonceSize`).
pub const NONCE_BYTES: usize = 24;

/// Why a block's orderer signatures are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockSignatureError {
    /// The block has no header.
    #[error("invalid block on channel [{channel}]: the header is missing")]
    NoHeader { channel: String },
    /// The header's data hash is not the hash of the block's data.
    #[error("header data hash is different from hash(block data) for block [{number}] on channel [{channel}]")]
    DataHash { channel: String, number: u64 },
    /// The block's transactions name another channel (or cannot be read).
    #[error("block [{number}] is not a block of channel [{channel}]: {reason}")]
    WrongChannel { channel: String, number: u64, reason: String },
    /// `metadata[SIGNATURES]` is absent or does not decode.
    #[error("block [{number}] on channel [{channel}] has unusable signature metadata: {reason}")]
    Metadata { channel: String, number: u64, reason: String },
    /// The signatures do not satisfy the block validation policy.
    #[error("block [{number}] signatures rejected: {source}")]
    Policy { number: u64, source: PolicyError },
}

/// Checks a block's orderer signatures against the channel's `BlockValidation` policy.
pub fn verify_block_signatures(block: &Block, config: &ChannelConfig) -> Result<(), BlockSignatureError> {
    let channel = config.channel_id.clone();
    let Some(header) = &block.header else { return Err(BlockSignatureError::NoHeader { channel }) };
    let number = header.number;
    let block_channel =
        block_channel_id(block).map_err(|reason| BlockSignatureError::WrongChannel { channel: channel.clone(), number, reason })?;
    if block_channel != channel {
        return Err(BlockSignatureError::WrongChannel { channel, number, reason: format!("it belongs to channel [{block_channel}]") });
    }
    let metadata_error = |reason: String| BlockSignatureError::Metadata { channel: channel.clone(), number, reason };
    let raw = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(BlockMetadataIndex::Signatures as usize))
        .ok_or_else(|| metadata_error("there is no SIGNATURES metadata".into()))?;
    let metadata = Metadata::decode(raw.as_slice()).map_err(|e| metadata_error(format!("cannot decode Metadata: {e}")))?;
    let block_data = block.data.clone().unwrap_or_default();
    if data_hash(&block_data).as_slice() != header.data_hash.as_slice() {
        return Err(BlockSignatureError::DataHash { channel, number });
    }
    let header_der = header_bytes(header);
    let mut signed = Vec::with_capacity(metadata.signatures.len());
    for (i, signature) in metadata.signatures.iter().enumerate() {
        let signature_header = SignatureHeader::decode(signature.signature_header.as_slice())
            .map_err(|e| metadata_error(format!("signature {i}: cannot decode SignatureHeader: {e}")))?;
        signed.push(SignedData {
            data: [metadata.value.as_slice(), signature.signature_header.as_slice(), header_der.as_slice()].concat(),
            identity: signature_header.creator,
            signature: signature.signature.clone(),
        });
    }
    config.evaluate(BLOCK_VALIDATION_POLICY, &signed).map_err(|source| BlockSignatureError::Policy { number, source })
}

/// The channel ID in the first transaction's channel header (Fabric's `GetChannelIDFromBlock`).
fn block_channel_id(block: &Block) -> Result<String, String> {
    let first = block.data.as_ref().and_then(|d| d.data.first()).ok_or("the block has no transactions")?;
    let envelope = proto::common::Envelope::decode(first.as_slice()).map_err(|e| format!("cannot decode the envelope: {e}"))?;
    let payload = proto::common::Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("cannot decode the payload: {e}"))?;
    let header = payload.header.ok_or("the payload has no header")?;
    let channel_header = proto::common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| format!("cannot decode the channel header: {e}"))?;
    Ok(channel_header.channel_id)
}

/// Signs a block as a Fabric 2.x orderer does: sets `LAST_CONFIG` and replaces `SIGNATURES`
/// with one signature by `signer` over the `OrdererBlockMetadata` value, a fresh signature
/// header (nonce from `rng`) and the header bytes. The header must be final (data hash set).
pub fn sign_block(block: &mut Block, signer: &LocalMsp, last_config: u64, rng: &mut impl Rng) {
    let header = block.header.clone().unwrap_or_default();
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let signature_header = SignatureHeader { creator: signer.identity.serialize(), nonce: nonce.to_vec() }.encode_to_vec();
    // Solo and Raft pass no consenter metadata; Fabric still wraps the empty value in a
    // Metadata message, whose encoding is empty too.
    let value = OrdererBlockMetadata {
        last_config: Some(LastConfig { index: last_config }),
        consenter_metadata: Metadata::default().encode_to_vec(),
    }
    .encode_to_vec();
    let signed_bytes = [value.as_slice(), signature_header.as_slice(), header_bytes(&header).as_slice()].concat();
    let signature = MetadataSignature { signature_header, signature: signer.sign(&signed_bytes), identifier_header: Vec::new() };
    let metadata = block.metadata.get_or_insert_with(Default::default);
    // Fabric blocks carry one slot per BlockMetadataIndex (five).
    if metadata.metadata.len() <= BlockMetadataIndex::CommitHash as usize {
        metadata.metadata.resize(BlockMetadataIndex::CommitHash as usize + 1, Vec::new());
    }
    metadata.metadata[BlockMetadataIndex::LastConfig as usize] =
        Metadata { value: LastConfig { index: last_config }.encode_to_vec(), signatures: Vec::new() }.encode_to_vec();
    metadata.metadata[BlockMetadataIndex::Signatures as usize] = Metadata { value, signatures: vec![signature] }.encode_to_vec();
}
