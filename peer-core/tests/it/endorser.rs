//! `Endorser/ProcessProposal` through a started node on the in-memory Env, over gRPC: cscc
//! JoinChain/GetChannels, qscc queries, and every check of Fabric's endorser with its error text
//! and its error kind (a gRPC error, or a status-500 response).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peer_core::channel::{AnchorPeer, GenesisOrg, GenesisSpec, genesis_block};
use peer_core::config::HostPort;
use peer_core::env::{Env, Network};
use peer_core::ledger::LedgerMgr;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::generate::Org;
use peer_core::msp::{Identity, LocalMsp};
use peer_core::node::{self, RunningNode};
use peer_core::proposal::{Invocation, compute_tx_id, signed_proposal};
use prost::Message;
use proto::common::{Block, BlockchainInfo, ChannelHeader, Header, HeaderType, SignatureHeader};
use proto::protos::endorser_client::EndorserClient;
use proto::protos::{
    ChaincodeAction, ChaincodeHeaderExtension, ChaincodeId, ChaincodeInput, ChaincodeInvocationSpec, ChaincodeProposalPayload,
    ChaincodeSpec, ChannelQueryResponse, ProcessedTransaction, Proposal, ProposalResponse, ProposalResponsePayload, SignedProposal,
};
use tonic::transport::Channel;

use crate::exposition;
use crate::node::setup;
use peer_core::testkit::{EPOCH_SECS, ManualClock, MemNetwork, MemStorage, epoch, local_msp, org};

struct Orgs {
    orderer: Org,
    org1: Org,
    org2: Org,
}

fn orgs() -> Orgs {
    Orgs { orderer: org("OrdererMSP", "example.com"), org1: org("Org1MSP", "org1.example.com"), org2: org("Org2MSP", "org2.example.com") }
}

fn genesis(channel: &str, orderer: &Org, apps: &[&Org]) -> Block {
    let mut spec = GenesisSpec::new(channel, epoch());
    spec.orderer_orgs.push(GenesisOrg {
        name: "OrdererOrg".into(),
        org: orderer,
        anchor_peers: Vec::new(),
        orderer_endpoints: vec!["orderer.example.com:7050".into()],
    });
    for app in apps {
        spec.application_orgs.push(GenesisOrg {
            name: app.spec.msp_id.clone(),
            org: app,
            anchor_peers: vec![AnchorPeer { host: format!("peer0.{}", app.spec.domain), port: 7051 }],
            orderer_endpoints: Vec::new(),
        });
    }
    genesis_block(&spec).unwrap()
}

/// The test kit's epoch in protobuf timestamp seconds.
fn epoch_secs() -> i64 {
    i64::try_from(EPOCH_SECS).unwrap()
}

/// A node whose local MSP is Org1's peer0, and a client of its Endorser.
struct Peer {
    running: RunningNode,
    client: EndorserClient<Channel>,
    network: Arc<MemNetwork>,
}

async fn start(storage: Arc<MemStorage>, clock: SystemTime, orgs: &Orgs) -> Peer {
    let network = Arc::new(MemNetwork::default());
    let env = Env::new(ManualClock::at(clock), network.clone(), storage, [7; 32]);
    let sink = MemorySink::new();
    let (_layer, handle) = logging::layer(&LoggingConfig::default(), Arc::new(epoch), sink.sink()).unwrap();
    let mut setup = setup(handle, "endorser test");
    setup.msp = local_msp(&orgs.org1.peers[0], "Org1MSP");
    let running = node::start(env, setup).await.unwrap();
    let dialer = network.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = dialer.connect(&HostPort::new("peer", 7051), Duration::from_secs(1));
        async move { connect.await.map(hyper_util::rt::TokioIo::new) }
    });
    let channel = tonic::transport::Endpoint::from_static("http://peer:7051").connect_with_connector(connector).await.unwrap();
    Peer { running, client: EndorserClient::new(channel), network }
}

fn args(items: &[&[u8]]) -> Vec<Vec<u8>> {
    items.iter().map(|a| a.to_vec()).collect()
}

fn proposal(signer: &LocalMsp, header_type: HeaderType, channel: &str, chaincode: &str, items: &[&[u8]], nonce: u8) -> SignedProposal {
    let invocation = Invocation { header_type, channel_id: channel, chaincode, args: args(items) };
    signed_proposal(signer, &invocation, [nonce; 24], epoch()).0
}

/// A proposal with hand-made headers (to break one field at a time), signed by `signer`.
fn raw_proposal(signer: &LocalMsp, channel_header: &ChannelHeader, signature_header: &SignatureHeader) -> SignedProposal {
    let spec = ChaincodeSpec {
        chaincode_id: Some(ChaincodeId { name: "cscc".into(), ..ChaincodeId::default() }),
        input: Some(ChaincodeInput { args: args(&[b"GetChannels"]), ..ChaincodeInput::default() }),
        ..ChaincodeSpec::default()
    };
    let input = ChaincodeInvocationSpec { chaincode_spec: Some(spec) }.encode_to_vec();
    let header = Header { channel_header: channel_header.encode_to_vec(), signature_header: signature_header.encode_to_vec() };
    let payload = ChaincodeProposalPayload { input, ..ChaincodeProposalPayload::default() }.encode_to_vec();
    let proposal_bytes = Proposal { header: header.encode_to_vec(), payload, ..Proposal::default() }.encode_to_vec();
    let signature = signer.sign(&proposal_bytes);
    SignedProposal { proposal_bytes, signature }
}

/// The headers `signed_proposal` would write for a cscc GetChannels proposal with nonce [1; 24].
fn good_headers(signer: &LocalMsp) -> (ChannelHeader, SignatureHeader) {
    let creator = signer.identity.serialize();
    let nonce = vec![1; 24];
    let extension = ChaincodeHeaderExtension { chaincode_id: Some(ChaincodeId { name: "cscc".into(), ..ChaincodeId::default() }) };
    let channel_header = ChannelHeader {
        r#type: HeaderType::EndorserTransaction as i32,
        tx_id: compute_tx_id(&nonce, &creator),
        extension: extension.encode_to_vec(),
        timestamp: Some(prost_types::Timestamp { seconds: epoch_secs(), nanos: 0 }),
        ..ChannelHeader::default()
    };
    (channel_header, SignatureHeader { creator, nonce })
}

/// Breaks one field of a good proposal's headers.
type Breaker = Box<dyn Fn(&mut ChannelHeader, &mut SignatureHeader)>;

async fn call(peer: &mut Peer, signed: SignedProposal) -> Result<ProposalResponse, tonic::Status> {
    peer.client.process_proposal(signed).await.map(tonic::Response::into_inner)
}

/// The response of a call that must not be a gRPC error: (status, message, payload).
async fn ok(peer: &mut Peer, signed: SignedProposal) -> (i32, String, Vec<u8>) {
    let response = call(peer, signed).await.unwrap_or_else(|s| panic!("gRPC error: {s:?}")).response.unwrap();
    (response.status, response.message, response.payload)
}

/// A call that must fail with a gRPC error (code Unknown, as a Go error returns): its message.
async fn grpc_error(peer: &mut Peer, signed: SignedProposal) -> String {
    let status = call(peer, signed).await.expect_err("expected a gRPC error");
    assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
    status.message().to_string()
}

#[tokio::test]
async fn join_list_and_query_a_channel_as_fabric_does() {
    let orgs = orgs();
    let admin = local_msp(&orgs.org1.admin, "Org1MSP");
    let peer_identity = local_msp(&orgs.org1.peers[0], "Org1MSP");
    let block = genesis("mychannel", &orgs.orderer, &[&orgs.org1]);
    let block_bytes = block.encode_to_vec();
    let mut peer = start(Arc::new(MemStorage::default()), epoch(), &orgs).await;

    // Only a local MSP admin may join.
    let (status, message, _) =
        ok(&mut peer, proposal(&peer_identity, HeaderType::Config, "", "cscc", &[b"JoinChain", &block_bytes], 1)).await;
    assert_eq!(status, 500);
    assert!(
        message.starts_with(
            "access denied for [JoinChain][mychannel]: [Failed verifying that proposal's creator satisfies local MSP principal during channelless check policy with policy [Admins]: [The identity is not an admin under this MSP [Org1MSP]: "
        ),
        "{message}"
    );

    // Joined: a channel-less proposal is answered unendorsed (Fabric cannot endorse it).
    let response = call(&mut peer, proposal(&admin, HeaderType::Config, "", "cscc", &[b"JoinChain", &block_bytes], 2)).await.unwrap();
    assert_eq!(response.response.as_ref().map(|r| r.status), Some(200));
    assert_eq!((response.version, response.payload.is_empty(), response.endorsement.is_none()), (0, true, true));
    assert_eq!(peer.running.channels.ids(), ["mychannel"]);

    // Twice: Fabric's ledger error.
    let (status, message, _) = ok(&mut peer, proposal(&admin, HeaderType::Config, "", "cscc", &[b"JoinChain", &block_bytes], 3)).await;
    assert_eq!((status, message.as_str()), (500, "cannot create ledger from genesis block: LedgerID already exists"));
    let (status, message, _) = ok(&mut peer, proposal(&admin, HeaderType::Config, "", "cscc", &[b"JoinChain", b"\xff\xff"], 4)).await;
    assert_eq!(status, 500);
    assert!(message.starts_with("Failed to reconstruct the genesis block, "), "{message}");

    // GetChannels: any member of the local MSP.
    let (status, _, payload) =
        ok(&mut peer, proposal(&peer_identity, HeaderType::EndorserTransaction, "", "cscc", &[b"GetChannels"], 5)).await;
    assert_eq!(status, 200);
    let channels = ChannelQueryResponse::decode(payload.as_slice()).unwrap();
    assert_eq!(channels.channels.iter().map(|c| c.channel_id.as_str()).collect::<Vec<_>>(), ["mychannel"]);

    // qscc GetChainInfo, channel-less (as `peer channel getinfo` asks).
    let (status, _, payload) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetChainInfo", b"mychannel"], 6)).await;
    assert_eq!(status, 200);
    let info = BlockchainInfo::decode(payload.as_slice()).unwrap();
    assert_eq!(info.height, 1);
    assert_eq!(info.current_block_hash, header_hash(block.header.as_ref().unwrap()));

    // On the channel: endorsed by the peer over payload ‖ its identity, payload as Fabric's.
    let signed = proposal(&admin, HeaderType::EndorserTransaction, "mychannel", "qscc", &[b"GetBlockByNumber", b"mychannel", b"0"], 7);
    let response = call(&mut peer, signed).await.unwrap();
    assert_eq!(response.version, 1);
    let inner = response.response.clone().unwrap();
    assert_eq!(inner.status, 200);
    assert_eq!(Block::decode(inner.payload.as_slice()).unwrap(), block);
    let endorsement = response.endorsement.unwrap();
    let endorser = Identity::deserialize(&endorsement.endorser).unwrap();
    assert_eq!(endorser, peer_identity.identity);
    endorser.verify(&[response.payload.as_slice(), &endorsement.endorser].concat(), &endorsement.signature).unwrap();
    let payload = ProposalResponsePayload::decode(response.payload.as_slice()).unwrap();
    assert_eq!(payload.proposal_hash.len(), 32);
    let action = ChaincodeAction::decode(payload.extension.as_slice()).unwrap();
    assert_eq!(action.response, Some(inner));
    assert_eq!(action.chaincode_id.map(|c| (c.name, c.version)), Some(("qscc".into(), "syscc".into())));

    // Other qscc queries and their errors.
    let hash = header_hash(block.header.as_ref().unwrap());
    let (status, _, payload) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetBlockByHash", b"mychannel", &hash], 8)).await;
    assert_eq!((status, Block::decode(payload.as_slice()).unwrap()), (200, block.clone()));
    let (status, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetBlockByNumber", b"mychannel", b"5"], 9)).await;
    assert_eq!((status, message.as_str()), (500, "Failed to get block number 5, error no such block number [5] in index"));
    let (_, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetBlockByNumber", b"mychannel"], 10)).await;
    assert_eq!(message, "missing 3rd argument for GetBlockByNumber");
    let (_, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetChainInfo", b"nochannel"], 11)).await;
    assert_eq!(message, "Invalid chain ID, nochannel");
    let (_, message, _) = ok(
        &mut peer,
        proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetTransactionByID", b"mychannel", b"nosuchtx"], 12),
    )
    .await;
    assert_eq!(message, "Failed to get transaction with id nosuchtx, error no such transaction ID [nosuchtx] in index");

    // A transaction in a later block: GetTransactionByID finds it.
    let ledger = peer.running.channels.ledger("mychannel").unwrap();
    let tx = envelope(HeaderType::EndorserTransaction, "mychannel", "tx-1", b"tx");
    ledger.append(&new_block(1, &hash, vec![tx.clone()])).unwrap();
    let (status, _, payload) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetTransactionByID", b"mychannel", b"tx-1"], 13))
            .await;
    assert_eq!(status, 200);
    let processed = ProcessedTransaction::decode(payload.as_slice()).unwrap();
    assert_eq!(processed.transaction_envelope.unwrap().encode_to_vec(), tx);

    // Unknown functions and chaincodes.
    let (_, message, _) = ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "cscc", &[b"Nope", b"x"], 14)).await;
    assert_eq!(message, "Requested function Nope not found.");
    let (_, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"Nope", b"mychannel", b"x"], 15)).await;
    assert_eq!(message, "access denied for [Nope][mychannel]: [Unmapped policy for qscc/Nope]");
    let (_, message, _) = ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "mycc", &[b"invoke"], 16)).await;
    assert_eq!(
        message,
        "make sure the chaincode mycc has been successfully defined on channel  and try again: could not get channel config for channel ''"
    );
    let (_, message, _) = ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "mychannel", "mycc", &[b"invoke"], 17)).await;
    assert_eq!(
        message,
        "make sure the chaincode mycc has been successfully defined on channel mychannel and try again: chaincode mycc not found"
    );

    // Unknown channel in the header: a 500 response, not a gRPC error.
    let (status, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "nochannel", "qscc", &[b"GetChainInfo", b"nochannel"], 18)).await;
    assert_eq!((status, message.as_str()), (500, "channel 'nochannel' not found"));

    // A transaction ID already on the channel: Fabric's duplicate error.
    let signed = proposal(&admin, HeaderType::EndorserTransaction, "mychannel", "qscc", &[b"GetChainInfo", b"mychannel"], 19);
    let creator = admin.identity.serialize();
    let tx_id = compute_tx_id(&[19; 24], &creator);
    let tip = ledger.block(1).unwrap().unwrap();
    ledger
        .append(&new_block(
            2,
            &header_hash(tip.header.as_ref().unwrap()),
            vec![envelope(HeaderType::EndorserTransaction, "mychannel", &tx_id, b"")],
        ))
        .unwrap();
    assert_eq!(grpc_error(&mut peer, signed).await, format!("duplicate transaction found [{tx_id}]. Creator [{}]", hex::encode(&creator)));

    // An application chaincode on the channel: a peer identity is a member of Org1, but not one of
    // its Writers (admins and clients), so the channel's `peer/Propose` ACL refuses it.
    let message =
        grpc_error(&mut peer, proposal(&peer_identity, HeaderType::EndorserTransaction, "mychannel", "mycc", &[b"invoke"], 20)).await;
    assert!(message.contains("Writers"), "{message}");

    // Fabric's endorser metrics for the 20 proposals above: received all; successful the 14
    // channel-less system calls answered and the endorsed one (#7); timed the 17 that passed
    // validation (not #18, whose channel is unknown, nor #19 and #20); one duplicate, one ACL refusal.
    let (metrics, text) = crate::metrics::scrape_node(&peer.network, &peer.running).await;
    exposition::assert_fabric(
        &metrics,
        &[exposition::ALWAYS, exposition::CHANNEL, exposition::UNARY, exposition::ENDORSER].concat(),
        &text,
    );
    let value = |name: &str, labels: &[(&str, &str)]| exposition::value(&metrics, name, labels);
    assert_eq!(value("endorser_proposals_received", &[]), 20.0, "{text}");
    assert_eq!(value("endorser_successful_proposals", &[]), 15.0, "{text}");
    assert_eq!(value("endorser_proposal_validation_failures", &[]), 0.0, "{text}");
    assert_eq!(value("endorser_proposal_duration_count", &[("success", "true")]), 15.0, "{text}");
    assert_eq!(value("endorser_proposal_duration_count", &[("channel", ""), ("chaincode", "mycc"), ("success", "false")]), 1.0, "{text}");
    assert_eq!(
        value("endorser_proposal_duration_count", &[("channel", "mychannel"), ("chaincode", "mycc"), ("success", "false")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value("endorser_proposal_duration_count", &[("channel", "mychannel"), ("chaincode", "qscc"), ("success", "true")]),
        1.0,
        "{text}"
    );
    assert_eq!(value("endorser_duplicate_transaction_failures", &[("channel", "mychannel"), ("chaincode", "qscc")]), 1.0, "{text}");
    assert_eq!(value("endorser_proposal_acl_failures", &[("channel", "mychannel"), ("chaincode", "mycc")]), 1.0, "{text}");
    // The gRPC layer saw the same calls: the two refusals are gRPC errors (Unknown, as a Go error).
    let call = [("service", "protos_Endorser"), ("method", "ProcessProposal")];
    assert_eq!(value("grpc_server_unary_requests_received", &call), 20.0, "{text}");
    assert_eq!(value("grpc_server_unary_requests_completed", &[call.as_slice(), &[("code", "OK")]].concat()), 18.0, "{text}");
    assert_eq!(value("grpc_server_unary_requests_completed", &[call.as_slice(), &[("code", "Unknown")]].concat()), 2.0, "{text}");
    assert_eq!(value("grpc_server_unary_request_duration_count", &call), 20.0, "{text}");

    peer.running.stop().await;
}

#[tokio::test]
async fn malformed_or_unauthenticated_proposals_are_grpc_errors_with_fabrics_texts() {
    let orgs = orgs();
    let admin = local_msp(&orgs.org1.admin, "Org1MSP");
    let org2_admin = local_msp(&orgs.org2.admin, "Org2MSP");
    let mut peer = start(Arc::new(MemStorage::default()), epoch(), &orgs).await;

    let garbage = SignedProposal { proposal_bytes: vec![0xff, 0xff], signature: vec![1] };
    assert!(grpc_error(&mut peer, garbage).await.starts_with("failed parsing proposal: error unmarshalling Proposal: "));

    let cases: Vec<(&str, Breaker)> = vec![
        ("invalid header type MESSAGE", Box::new(|c, _| c.r#type = HeaderType::Message as i32)),
        ("invalid header type 42", Box::new(|c, _| c.r#type = 42)),
        ("epoch is non-zero", Box::new(|c, _| c.epoch = 1)),
        ("nonce is empty", Box::new(|_, s| s.nonce.clear())),
        ("creator is empty", Box::new(|_, s| s.creator.clear())),
        ("incorrectly computed txid 'abc' -- expected '", Box::new(|c, _| c.tx_id = "abc".into())),
    ];
    for (expected, break_it) in cases {
        let (mut channel_header, mut signature_header) = good_headers(&admin);
        break_it(&mut channel_header, &mut signature_header);
        let message = grpc_error(&mut peer, raw_proposal(&admin, &channel_header, &signature_header)).await;
        assert!(message.starts_with(&format!("error validating proposal: {expected}")), "{expected}: {message}");
    }

    // Signed by someone else than the creator.
    let (channel_header, signature_header) = good_headers(&admin);
    let wrong_signer = local_msp(&orgs.org1.peers[0], "Org1MSP");
    let message = grpc_error(&mut peer, raw_proposal(&wrong_signer, &channel_header, &signature_header)).await;
    assert_eq!(message, "error validating proposal: access denied: channel [] creator org [Org1MSP]");

    // A creator of another org, channel-less: the local MSP does not know it.
    let message = grpc_error(&mut peer, proposal(&org2_admin, HeaderType::EndorserTransaction, "", "cscc", &[b"GetChannels"], 1)).await;
    assert_eq!(message, "error validating proposal: access denied: channel [] creator org unknown, creator is malformed");

    // A channel that does not have Org1 among its readers: a foreign channel's queries are refused.
    let block = genesis("org2only", &orgs.orderer, &[&orgs.org2]).encode_to_vec();
    let (status, _, _) = ok(&mut peer, proposal(&admin, HeaderType::Config, "", "cscc", &[b"JoinChain", &block], 2)).await;
    assert_eq!(status, 200);
    let (status, message, _) =
        ok(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "qscc", &[b"GetChainInfo", b"org2only"], 3)).await;
    assert_eq!(status, 500);
    assert!(
        message.starts_with("access denied for [GetChainInfo][org2only]: [Failed evaluating policy on signed data during check policy on channel [org2only] with policy [/Channel/Application/Readers]: [implicit policy evaluation failed - 0 sub-policies were satisfied, but this policy requires 1 of the 'Readers' sub-policies to be satisfied"),
        "{message}"
    );
    // And on that channel, Org1's admin is not a channel member at all.
    let message =
        grpc_error(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "org2only", "qscc", &[b"GetChainInfo", b"org2only"], 4))
            .await;
    assert_eq!(message, "error validating proposal: access denied: channel [org2only] creator org unknown, creator is malformed");
    // Org2's admin is.
    let (status, _, _) =
        ok(&mut peer, proposal(&org2_admin, HeaderType::EndorserTransaction, "org2only", "qscc", &[b"GetChainInfo", b"org2only"], 5)).await;
    assert_eq!(status, 200);

    // Fabric counts a proposal once the auth filters let it through (not the garbage, which the
    // expiration filter refuses), and a validation failure for each of the 9 that do not validate.
    let (metrics, text) = crate::metrics::scrape_node(&peer.network, &peer.running).await;
    exposition::assert_fabric(&metrics, &[exposition::ALWAYS, exposition::UNARY].concat(), &text);
    assert_eq!(exposition::value(&metrics, "endorser_proposals_received", &[]), 12.0, "{text}");
    assert_eq!(exposition::value(&metrics, "endorser_proposal_validation_failures", &[]), 9.0, "{text}");
    assert_eq!(exposition::value(&metrics, "endorser_successful_proposals", &[]), 3.0, "{text}");
    peer.running.stop().await;
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused_first() {
    let orgs = orgs();
    let admin = local_msp(&orgs.org1.admin, "Org1MSP");
    // The generated certificates expire at the end of 2049.
    let year_2050 = UNIX_EPOCH + Duration::from_secs(2_556_144_000);
    let mut peer = start(Arc::new(MemStorage::default()), year_2050, &orgs).await;
    let message = grpc_error(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "cscc", &[b"GetChannels"], 1)).await;
    assert_eq!(message, "proposal client identity expired");
    peer.running.stop().await;
}

#[tokio::test]
async fn proposals_timestamped_outside_the_time_window_are_refused() {
    // The sample config chains TimeWindowCheck (peer.authentication.timewindow: 15m).
    let orgs = orgs();
    let admin = local_msp(&orgs.org1.admin, "Org1MSP");
    let mut peer = start(Arc::new(MemStorage::default()), epoch(), &orgs).await;
    let at = |offset_secs: i64| {
        let (mut channel_header, signature_header) = good_headers(&admin);
        channel_header.timestamp = Some(prost_types::Timestamp { seconds: epoch_secs() + offset_secs, nanos: 0 });
        raw_proposal(&admin, &channel_header, &signature_header)
    };
    for offset in [-16 * 60, 16 * 60] {
        let message = grpc_error(&mut peer, at(offset)).await;
        let shown = if offset < 0 { "2025-05-31T23:44:00Z" } else { "2025-06-01T00:16:00Z" };
        assert_eq!(
            message,
            format!(
                "request unauthorized due to incorrect timestamp {shown}, peer time 2025-06-01T00:00:00Z, peer.authentication.timewindow 15m0s"
            )
        );
    }
    // Inside the window, either way: answered.
    for offset in [-14 * 60, 14 * 60] {
        assert!(call(&mut peer, at(offset)).await.is_ok(), "{offset}s off is inside the window");
    }
    // No timestamp at all reads as 1970.
    let (mut channel_header, signature_header) = good_headers(&admin);
    channel_header.timestamp = None;
    let message = grpc_error(&mut peer, raw_proposal(&admin, &channel_header, &signature_header)).await;
    assert!(message.starts_with("request unauthorized due to incorrect timestamp 1970-01-01T00:00:00Z"), "{message}");
    peer.running.stop().await;
}

#[tokio::test]
async fn proposals_are_refused_while_ledgers_are_rebuilt_after_a_rollback() {
    let orgs = orgs();
    let admin = local_msp(&orgs.org1.admin, "Org1MSP");
    let storage = Arc::new(MemStorage::default());
    let env = Env::new(ManualClock::new(), Arc::new(MemNetwork::default()), storage.clone(), [1; 32]);
    {
        let mgr = LedgerMgr::open(&env, std::path::Path::new("/mem/data"), "setup").unwrap();
        let ledger = mgr.create_from_genesis(&genesis("mychannel", &orgs.orderer, &[&orgs.org1])).unwrap();
        let tip = ledger.block(0).unwrap().unwrap();
        ledger
            .append(&new_block(
                1,
                &header_hash(tip.header.as_ref().unwrap()),
                vec![envelope(HeaderType::EndorserTransaction, "mychannel", "t1", b"")],
            ))
            .unwrap();
    }
    peer_core::ledger::commands::rollback(&env, std::path::Path::new("/mem/data"), "setup", "mychannel", 0).unwrap();
    let mut peer = start(storage, epoch(), &orgs).await;
    assert!(peer.running.channels.endorsement_blocked());
    let message = grpc_error(&mut peer, proposal(&admin, HeaderType::EndorserTransaction, "", "cscc", &[b"GetChannels"], 1)).await;
    assert_eq!(message, "endorse requests are blocked while ledgers are being rebuilt");
    peer.running.stop().await;
}
