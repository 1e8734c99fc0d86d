//! The system chaincodes the endorser runs in-process: `cscc` (JoinChain, GetChannels) and
//! `qscc` (GetChainInfo, GetBlockByNumber, GetBlockByHash, GetTransactionByID, GetBlockByTxID),
//! with Fabric's arguments, access rules and error texts (`core/scc/cscc`, `core/scc/qscc`,
//! `core/aclmgmt`).
//!
//! Each call returns a chaincode `Response`: 200 with a payload, or 500 with a message (Fabric's
//! `shim.Success`/`shim.Error`). Access: cscc JoinChain needs a local MSP admin, GetChannels a
//! local MSP member; qscc the channel's Readers (or the channel config's ACL for the resource).
//! Not here: cscc GetConfigBlock/GetChannelConfig and join-by-snapshot, `lscc`, `_lifecycle`.

use prost::Message;
use proto::common::{Block, BlockMetadataIndex, Envelope};
use proto::protos::{ChannelInfo, ChannelQueryResponse, ProcessedTransaction, Response};
use tracing::{debug, info};

use crate::channel::config::ChannelConfig;
use crate::channel::{PolicyError, SignedData};
use crate::channels::{ChannelError, Channels};
use crate::ledger::channel::ChannelLedger;
use crate::msp::{Identity, LocalMsp, Role};
use crate::proposal::UnpackedProposal;

/// Fabric's default policy for channel reads (`aclmgmt.CHANNELREADERS`).
pub const CHANNEL_READERS: &str = "/Channel/Application/Readers";
/// Fabric's default policy for proposals to application chaincodes (`peer/Propose`).
pub const CHANNEL_WRITERS: &str = "/Channel/Application/Writers";

/// The chaincodes Fabric's peer registers as system chaincodes.
pub fn is_system_chaincode(name: &str) -> bool {
    matches!(name, "cscc" | "qscc" | "lscc" | "_lifecycle")
}

/// The system chaincodes this peer runs (the others are refused).
pub fn is_implemented(name: &str) -> bool {
    matches!(name, "cscc" | "qscc")
}

fn success(payload: Vec<u8>) -> Response {
    Response { status: 200, payload, ..Response::default() }
}

fn error(message: String) -> Response {
    Response { status: 500, message, ..Response::default() }
}

/// Runs system chaincode `name` for a validated proposal.
pub fn invoke(channels: &Channels, local: &LocalMsp, name: &str, proposal: &UnpackedProposal) -> Response {
    match name {
        "cscc" => cscc(channels, local, proposal),
        "qscc" => qscc(channels, local, proposal),
        other => error(format!("system chaincode {other} is not supported by peer-core yet")),
    }
}

fn cscc(channels: &Channels, local: &LocalMsp, proposal: &UnpackedProposal) -> Response {
    let args = &proposal.args;
    let Some(function) = args.first() else { return error(format!("Incorrect number of arguments, {}", args.len())) };
    let function = String::from_utf8_lossy(function).into_owned();
    if function != "GetChannels" && function != "JoinBySnapshotStatus" && args.len() < 2 {
        return error(format!("Incorrect number of arguments, {}", args.len()));
    }
    debug!(target: "cscc", func = "Invoke", "Invoke function: {function}");
    match function.as_str() {
        "JoinChain" => join_chain(channels, local, proposal, &args[1]),
        "GetChannels" => {
            if let Err(err) = check_local(local, proposal, None, "Members") {
                return error(format!("access denied for [{function}]: {err}"));
            }
            let channels = channels.ids().into_iter().map(|channel_id| ChannelInfo { channel_id }).collect();
            success(ChannelQueryResponse { channels }.encode_to_vec())
        }
        _ => error(format!("Requested function {function} not found.")),
    }
}

fn join_chain(channels: &Channels, local: &LocalMsp, proposal: &UnpackedProposal, block_bytes: &[u8]) -> Response {
    // Go's proto3 decoding of an empty byte string is an empty block; so is ours.
    let block = match Block::decode(block_bytes) {
        Ok(block) => block,
        Err(err) => return error(format!("Failed to reconstruct the genesis block, {err}")),
    };
    let channel_id = match channel_id_from_block(&block) {
        Ok(channel_id) => channel_id,
        Err(reason) => return error(format!("\"JoinChain\" request failed to extract channel id from the block due to [{reason}]")),
    };
    if let Err(err) = ChannelConfig::from_block(&block) {
        return error(format!(
            "\"JoinChain\" for channelID = {channel_id} failed because of validation of configuration block, because of {err}"
        ));
    }
    if let Err(err) = check_local(local, proposal, Some(Role::Admin), "Admins") {
        return error(format!("access denied for [JoinChain][{channel_id}]: [{err}]"));
    }
    match channels.join(&block) {
        Ok(_) => {
            info!(target: "cscc", func = "joinChain", "Joined channel [{channel_id}]");
            success(Vec::new())
        }
        Err(ChannelError::Ledger(err)) => error(format!("cannot create ledger from genesis block: {err}")),
        Err(err) => error(err.to_string()),
    }
}

/// Fabric's `GetChannelIDFromBlock`: the channel ID in the first envelope's channel header, with
/// its error for each way there can fail (an empty block is only one of them).
fn channel_id_from_block(block: &Block) -> Result<String, String> {
    use proto::common::{ChannelHeader, Payload};
    let Some(first) = block.data.as_ref().and_then(|data| data.data.first()) else {
        return Err("failed to retrieve channel id - block is empty".into());
    };
    let envelope = Envelope::decode(first.as_slice()).map_err(|e| format!("error unmarshalling Envelope: {e}"))?;
    let payload = Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("error unmarshalling Payload: {e}"))?;
    let header = payload.header.ok_or_else(|| "failed to retrieve channel id - payload header is empty".to_string())?;
    let channel_header =
        ChannelHeader::decode(header.channel_header.as_slice()).map_err(|e| format!("error unmarshalling ChannelHeader: {e}"))?;
    if channel_header.channel_id.is_empty() {
        return Err("failed to retrieve channel id - the channel header names no channel".into());
    }
    Ok(channel_header.channel_id)
}

/// Fabric's channel-less policy check (`CheckPolicyNoChannel`): the creator must satisfy the
/// local MSP principal (`None` is MEMBER) and have signed the proposal.
fn check_local(local: &LocalMsp, proposal: &UnpackedProposal, role: Option<Role>, policy: &str) -> Result<(), String> {
    let creator = Identity::deserialize(&proposal.signature_header.creator)
        .map_err(|e| format!("Failed deserializing proposal creator during channelless check policy with policy [{policy}]: [{e}]"))?;
    let satisfied = local.msp.satisfies_role(&creator, role).map_err(|e| match role {
        Some(Role::Admin) => format!("The identity is not an admin under this MSP [{}]: {e}", local.msp.id),
        _ => e,
    });
    if let Err(err) = satisfied {
        return Err(format!(
            "Failed verifying that proposal's creator satisfies local MSP principal during channelless check policy with policy [{policy}]: [{err}]"
        ));
    }
    creator.verify(&proposal.signed.proposal_bytes, &proposal.signed.signature).map_err(|e| e.to_string())
}

/// A channel ACL check as Fabric's ACL providers do it: the policy the channel config's ACLs
/// name for `resource`, else `default_policy`.
pub fn check_channel_acl(config: &ChannelConfig, resource: &str, default_policy: &str, signed: &[SignedData]) -> Result<(), String> {
    if let Some(policy) = config.application.acls.get(resource) {
        return config
            .evaluate(policy, signed)
            .map_err(|e| format!("failed evaluating policy on signed data during check policy [{policy}]: [{}]", policy_reason(&e)));
    }
    config.evaluate(default_policy, signed).map_err(|e| {
        format!(
            "Failed evaluating policy on signed data during check policy on channel [{}] with policy [{default_policy}]: [{}]",
            config.channel_id,
            policy_reason(&e)
        )
    })
}

fn policy_reason(err: &PolicyError) -> String {
    match err {
        PolicyError::NotFound { .. } => err.to_string(),
        PolicyError::NotSatisfied { reason, .. } => reason.clone(),
    }
}

fn qscc(channels: &Channels, _local: &LocalMsp, proposal: &UnpackedProposal) -> Response {
    let args = &proposal.args;
    if args.len() < 2 {
        return error(format!("Incorrect number of arguments, {}", args.len()));
    }
    let function = String::from_utf8_lossy(&args[0]).into_owned();
    let channel_id = String::from_utf8_lossy(&args[1]).into_owned();
    if function != "GetChainInfo" && args.len() < 3 {
        return error(format!("missing 3rd argument for {function}"));
    }
    let (Some(ledger), Some(config)) = (channels.ledger(&channel_id), channels.config(&channel_id)) else {
        return error(format!("Invalid chain ID, {channel_id}"));
    };
    debug!(target: "qscc", func = "Invoke", "Invoke function: {function} on chain: {channel_id}");
    let resource = format!("qscc/{function}");
    let known =
        matches!(function.as_str(), "GetChainInfo" | "GetBlockByNumber" | "GetBlockByHash" | "GetTransactionByID" | "GetBlockByTxID");
    let access = if known || config.application.acls.contains_key(&resource) {
        check_channel_acl(&config, &resource, CHANNEL_READERS, &proposal.signed_data())
    } else {
        Err(format!("Unmapped policy for {resource}"))
    };
    if let Err(err) = access {
        return error(format!("access denied for [{function}][{channel_id}]: [{err}]"));
    }
    let result = match function.as_str() {
        "GetChainInfo" => Ok(ledger.info().encode_to_vec()),
        "GetBlockByNumber" => block_by_number(&ledger, &args[2]),
        "GetBlockByHash" => block_by_hash(&ledger, &args[2]),
        "GetTransactionByID" => transaction_by_id(&ledger, &args[2]),
        "GetBlockByTxID" => block_by_tx_id(&ledger, &args[2]),
        _ => Err(format!("Requested function {function} not found.")),
    };
    result.map_or_else(error, success)
}

fn block_by_number(ledger: &ChannelLedger, number: &[u8]) -> Result<Vec<u8>, String> {
    let text = String::from_utf8_lossy(number);
    let number: u64 = text
        .parse()
        .map_err(|_| format!("Failed to parse block number with error strconv.ParseUint: parsing \"{text}\": invalid syntax"))?;
    // Fabric reads u64::MAX as "the last block".
    let wanted = if number == u64::MAX { ledger.height().saturating_sub(1) } else { number };
    match ledger.block(wanted) {
        Ok(Some(block)) => Ok(block.encode_to_vec()),
        Ok(None) => Err(format!("Failed to get block number {number}, error no such block number [{wanted}] in index")),
        Err(err) => Err(format!("Failed to get block number {number}, error {err}")),
    }
}

fn block_by_hash(ledger: &ChannelLedger, hash: &[u8]) -> Result<Vec<u8>, String> {
    let shown = String::from_utf8_lossy(hash);
    match ledger.block_by_hash(hash) {
        Ok(Some(block)) => Ok(block.encode_to_vec()),
        Ok(None) => Err(format!("Failed to get block hash {shown}, error no such block hash [{}] in index", hex::encode(hash))),
        Err(err) => Err(format!("Failed to get block hash {shown}, error {err}")),
    }
}

fn block_by_tx_id(ledger: &ChannelLedger, tx_id: &[u8]) -> Result<Vec<u8>, String> {
    let tx_id = String::from_utf8_lossy(tx_id);
    match ledger.block_by_tx_id(&tx_id) {
        Ok(Some(block)) => Ok(block.encode_to_vec()),
        Ok(None) => Err(format!("Failed to get block for txID {tx_id}, error no such transaction ID [{tx_id}] in index")),
        Err(err) => Err(format!("Failed to get block for txID {tx_id}, error {err}")),
    }
}

/// `ProcessedTransaction`: the envelope and its validation code from the block's
/// TRANSACTIONS_FILTER (0, VALID, when the block has no filter).
fn transaction_by_id(ledger: &ChannelLedger, tx_id: &[u8]) -> Result<Vec<u8>, String> {
    let tx_id = String::from_utf8_lossy(tx_id);
    let failed = |reason: String| format!("Failed to get transaction with id {tx_id}, error {reason}");
    let (number, index) = ledger
        .tx_location(&tx_id)
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed(format!("no such transaction ID [{tx_id}] in index")))?;
    let block = ledger
        .block(number)
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed(format!("no such block number [{number}] in index")))?;
    let index = usize::try_from(index).unwrap_or(usize::MAX);
    let envelope = block
        .data
        .as_ref()
        .and_then(|d| d.data.get(index))
        .and_then(|bytes| Envelope::decode(bytes.as_slice()).ok())
        .ok_or_else(|| failed(format!("no such blockNumber, transactionNumber <{number}, {index}> in index")))?;
    let validation_code = block
        .metadata
        .as_ref()
        .and_then(|m| m.metadata.get(BlockMetadataIndex::TransactionsFilter as usize))
        .and_then(|filter| filter.get(index))
        .map_or(0, |code| i32::from(*code));
    Ok(ProcessedTransaction { transaction_envelope: Some(envelope), validation_code }.encode_to_vec())
}
