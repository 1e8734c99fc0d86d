//! Proposals and signed envelopes, built as Fabric's `protoutil` builds them: what a client (the
//! `channel` commands, tests, the simulator) sends to a peer's Endorser and Deliver services.
//!
//! Nothing here reads a clock or draws randomness: the nonce and the timestamp are arguments, so
//! a caller with a seeded stream and a simulated clock gets the same bytes on every run. The
//! server side takes proposals apart here ([`unpack`]) and validates them in `services::endorser`.

use std::time::SystemTime;

use prost::Message;
use proto::common::{ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader};
use proto::orderer::{SeekInfo, SeekPosition};
use proto::protos::{
    ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec, ChaincodeProposalPayload, ChaincodeSpec, Proposal,
    SignedProposal,
};

use crate::channel::SignedData;
use crate::msp::LocalMsp;
use crate::msp::crypto::sha256;

/// Fabric's nonce length (`crypto.NonceSize`).
pub const NONCE_SIZE: usize = 24;

/// The system chaincodes' version in proposal responses (Fabric's `scc.SysCCVersion`).
pub const SYSCC_VERSION: &str = "syscc";

/// Fabric's transaction ID: hex(SHA-256(nonce ‖ creator)).
pub fn compute_tx_id(nonce: &[u8], creator: &[u8]) -> String {
    hex::encode(sha256(&[nonce, creator].concat()))
}

/// A protobuf timestamp (seconds and nanoseconds since the Unix epoch; 0 before it).
pub fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// What a chaincode proposal invokes.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    /// ENDORSER_TRANSACTION for queries and invocations; `peer channel join` sends CONFIG.
    pub header_type: HeaderType,
    /// Empty for channel-less proposals (join, list, getinfo).
    pub channel_id: &'a str,
    pub chaincode: &'a str,
    pub args: Vec<Vec<u8>>,
}

/// Builds and signs a proposal as `protoutil.CreateProposalFromCIS` + `GetSignedProposal` do
/// (GOLANG chaincode type, epoch 0, no transient map). Returns it with its transaction ID.
pub fn signed_proposal(
    signer: &LocalMsp,
    invocation: &Invocation<'_>,
    nonce: [u8; NONCE_SIZE],
    time: SystemTime,
) -> (SignedProposal, String) {
    let creator = signer.identity.serialize();
    let tx_id = compute_tx_id(&nonce, &creator);
    let chaincode_id = ChaincodeId { name: invocation.chaincode.to_string(), ..ChaincodeId::default() };
    let extension = ChaincodeHeaderExtension { chaincode_id: Some(chaincode_id.clone()) }.encode_to_vec();
    let spec = ChaincodeSpec {
        // GOLANG.
        r#type: 1,
        chaincode_id: Some(chaincode_id),
        input: Some(ChaincodeInput { args: invocation.args.clone(), ..ChaincodeInput::default() }),
        ..ChaincodeSpec::default()
    };
    let input = ChaincodeInvocationSpec { chaincode_spec: Some(spec) }.encode_to_vec();
    let payload = ChaincodeProposalPayload { input, ..ChaincodeProposalPayload::default() }.encode_to_vec();
    let channel_header = ChannelHeader {
        r#type: invocation.header_type as i32,
        tx_id: tx_id.clone(),
        timestamp: Some(timestamp(time)),
        channel_id: invocation.channel_id.to_string(),
        extension,
        ..ChannelHeader::default()
    };
    let signature_header = SignatureHeader { creator, nonce: nonce.to_vec() };
    let header = Header { channel_header: channel_header.encode_to_vec(), signature_header: signature_header.encode_to_vec() };
    let proposal = Proposal { header: header.encode_to_vec(), payload, ..Proposal::default() }.encode_to_vec();
    let signature = signer.sign(&proposal);
    (SignedProposal { proposal_bytes: proposal, signature }, tx_id)
}

/// A signed DELIVER_SEEK_INFO envelope asking for the one block at `position` (start = stop), as
/// the `peer channel fetch` client builds it: BLOCK_UNTIL_READY, STRICT unless `best_effort`
/// (the envelope itself as [`seek_info_envelope_bound`] builds it, bound to the client
/// certificate `tls_cert_hash` when the connection presents one).
pub fn seek_envelope(
    signer: &LocalMsp,
    channel_id: &str,
    position: SeekPosition,
    best_effort: bool,
    nonce: [u8; NONCE_SIZE],
    time: SystemTime,
    tls_cert_hash: Option<[u8; 32]>,
) -> Envelope {
    let seek = SeekInfo {
        start: Some(position),
        stop: Some(position),
        behavior: 0,
        error_response: i32::from(best_effort),
        ..SeekInfo::default()
    };
    seek_info_envelope_bound(signer, channel_id, &seek, nonce, time, tls_cert_hash)
}

/// A signed DELIVER_SEEK_INFO envelope carrying `seek`, as `protoutil.CreateSignedEnvelope`
/// builds it for the CLI and for the peer's deliver client: version 0, epoch 0, no transaction
/// ID, the timestamp in whole seconds, no TLS certificate hash.
pub fn seek_info_envelope(signer: &LocalMsp, channel_id: &str, seek: &SeekInfo, nonce: [u8; NONCE_SIZE], time: SystemTime) -> Envelope {
    seek_info_envelope_bound(signer, channel_id, seek, nonce, time, None)
}

/// [`seek_info_envelope`] with the channel header's `tls_cert_hash` (field 8) set to
/// `tls_cert_hash` when given: SHA-256 of the client certificate the connection presents, which an
/// orderer requiring client certificates checks (Fabric's binding).
pub fn seek_info_envelope_bound(
    signer: &LocalMsp,
    channel_id: &str,
    seek: &SeekInfo,
    nonce: [u8; NONCE_SIZE],
    time: SystemTime,
    tls_cert_hash: Option<[u8; 32]>,
) -> Envelope {
    let mut stamp = timestamp(time);
    stamp.nanos = 0;
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        timestamp: Some(stamp),
        channel_id: channel_id.to_string(),
        tls_cert_hash: tls_cert_hash.map(|hash| hash.to_vec()).unwrap_or_default(),
        ..ChannelHeader::default()
    };
    let signature_header = SignatureHeader { creator: signer.identity.serialize(), nonce: nonce.to_vec() };
    let header = Header { channel_header: channel_header.encode_to_vec(), signature_header: signature_header.encode_to_vec() };
    let payload = Payload { header: Some(header), data: seek.encode_to_vec() }.encode_to_vec();
    let signature = signer.sign(&payload);
    Envelope { payload, signature }
}

/// A proposal taken apart (Fabric's `UnpackedProposal`): every layer decoded and present.
#[derive(Clone, Debug)]
pub struct UnpackedProposal {
    pub chaincode_name: String,
    pub channel_header: ChannelHeader,
    pub signature_header: SignatureHeader,
    /// `ChaincodeInput.args`.
    pub args: Vec<Vec<u8>>,
    pub signed: SignedProposal,
    /// SHA-256 over the channel header, the signature header and the payload without its
    /// transient map: what the response binds itself to.
    pub proposal_hash: [u8; 32],
}

impl UnpackedProposal {
    pub fn channel_id(&self) -> &str {
        &self.channel_header.channel_id
    }

    pub fn tx_id(&self) -> &str {
        &self.channel_header.tx_id
    }

    /// The proposal as policy input: the proposal bytes, the creator and its signature.
    pub fn signed_data(&self) -> Vec<SignedData> {
        vec![SignedData {
            data: self.signed.proposal_bytes.clone(),
            identity: self.signature_header.creator.clone(),
            signature: self.signed.signature.clone(),
        }]
    }
}

pub fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, String> {
    M::decode(bytes).map_err(|e| format!("error unmarshalling {what}: {e}"))
}

/// Takes a signed proposal apart as Fabric's `UnpackProposal` does, with its errors.
pub fn unpack(signed: &SignedProposal) -> Result<UnpackedProposal, String> {
    let proposal: Proposal = decode(&signed.proposal_bytes, "Proposal")?;
    let header: Header = decode(&proposal.header, "Header")?;
    let channel_header: ChannelHeader = decode(&header.channel_header, "ChannelHeader")?;
    let signature_header: SignatureHeader = decode(&header.signature_header, "SignatureHeader")?;
    let extension: ChaincodeHeaderExtension = decode(&channel_header.extension, "ChaincodeHeaderExtension")?;
    let Some(chaincode_id) = extension.chaincode_id else {
        return Err("ChaincodeHeaderExtension.ChaincodeId is nil".into());
    };
    if chaincode_id.name.is_empty() {
        return Err("ChaincodeHeaderExtension.ChaincodeId.Name is empty".into());
    }
    let payload: ChaincodeProposalPayload = decode(&proposal.payload, "ChaincodeProposalPayload")?;
    let invocation: ChaincodeInvocationSpec = decode(&payload.input, "ChaincodeInvocationSpec")?;
    let Some(spec) = invocation.chaincode_spec else {
        return Err("chaincode invocation spec did not contain chaincode spec".into());
    };
    let Some(input) = spec.input else {
        return Err("chaincode input did not contain any input".into());
    };
    let without_transient = ChaincodeProposalPayload { input: payload.input, ..ChaincodeProposalPayload::default() }.encode_to_vec();
    let proposal_hash = sha256(&[header.channel_header.as_slice(), &header.signature_header, &without_transient].concat());
    Ok(UnpackedProposal {
        chaincode_name: chaincode_id.name,
        channel_header,
        signature_header,
        args: input.args,
        signed: signed.clone(),
        proposal_hash,
    })
}
