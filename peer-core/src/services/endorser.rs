//! `protos.Endorser`: signed proposals for the system chaincodes (cscc, qscc), checked and
//! answered as Fabric's endorser does (`core/endorser`, the auth filters of `peer node start`).
//!
//! The order, and which failures are gRPC errors and which are status-500 responses, follow
//! Fabric: the expiration filter (`proposal client identity expired`) and the reset filter
//! (`endorse requests are blocked while ledgers are being rebuilt`) come first and fail the
//! call; so do a proposal that does not unpack, one that does not validate (`error validating
//! proposal: …`) and a duplicate transaction ID. An unknown channel, an undefined chaincode and
//! every error of a system chaincode come back as a response with status 500 and a message.
//!
//! Not here: application chaincodes (there is no chaincode runtime; a proposal for one gets
//! Fabric's "make sure the chaincode … has been successfully defined" answer), `lscc` and
//! `_lifecycle`.
//!
//! The auth filters run in `peer.handlers.authFilters` order, as Fabric chains them:
//! `ExpirationCheck`, and `TimeWindowCheck` (Fabric 3.x; refuses a proposal whose timestamp is
//! more than `peer.authentication.timewindow` from the peer's clock). `DefaultAuth` passes.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use proto::common::{ChannelHeader, Header, HeaderType, SignatureHeader};
use proto::protos::endorser_server::Endorser;
use proto::protos::{
    ChaincodeAction, ChaincodeId, Endorsement, Proposal, ProposalResponse, ProposalResponsePayload, Response as ChaincodeResponse,
    SignedProposal,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::metrics::EndorserMetrics;
use super::scc;
use crate::channel::config::ChannelConfig;
use crate::channels::Channels;
use crate::config::format_duration;
use crate::env::Clock;
use crate::gotime;
use crate::msp::{Identity, LocalMsp, Msp};
use crate::proposal::{SYSCC_VERSION, UnpackedProposal, compute_tx_id, decode, unpack};

const ENDORSER: &str = "endorser";
/// Go's `time.RFC3339`.
const RFC3339: &str = "2006-01-02T15:04:05Z07:00";

/// Fabric's `shim.ERROR` and `shim.ERRORTHRESHOLD`.
const STATUS_ERROR: i32 = 500;
const STATUS_ERROR_THRESHOLD: i32 = 400;

/// `protos.Endorser`.
pub struct EndorserService {
    channels: Arc<Channels>,
    /// Validates channel-less proposals and signs endorsements.
    msp: LocalMsp,
    /// The wall clock decides whether a client certificate has expired and whether a proposal
    /// is inside the time window; the monotonic clock times chaincode calls for the log.
    clock: Arc<dyn Clock>,
    /// `peer.handlers.authFilters`, by name, in order.
    auth_filters: Vec<String>,
    /// `peer.authentication.timewindow`, for `TimeWindowCheck`.
    time_window: Duration,
    /// Fabric's endorser metrics (unregistered unless [`EndorserService::with_metrics`]).
    metrics: EndorserMetrics,
}

/// Who vouches for a proposal's creator: the local MSP (channel-less proposals) or the MSPs of
/// the channel the proposal names.
pub enum Deserializer<'a> {
    Local(&'a Msp),
    Channel(&'a ChannelConfig),
}

impl Deserializer<'_> {
    fn msp(&self, msp_id: &str) -> Option<&Msp> {
        match self {
            Deserializer::Local(msp) => (msp.id == msp_id).then_some(*msp),
            Deserializer::Channel(config) => config.msp(msp_id),
        }
    }
}

/// Fabric's `UnpackedProposal.Validate`: header type, epoch, nonce, creator, transaction ID,
/// then the creator's identity and signature. Returns the creator.
pub fn validate(proposal: &UnpackedProposal, deserializer: &Deserializer<'_>) -> Result<Identity, String> {
    let header_type = proposal.channel_header.r#type;
    if header_type != HeaderType::EndorserTransaction as i32 && header_type != HeaderType::Config as i32 {
        return Err(format!("invalid header type {}", header_type_name(header_type)));
    }
    if proposal.channel_header.epoch != 0 {
        return Err("epoch is non-zero".into());
    }
    let nonce = &proposal.signature_header.nonce;
    let creator = &proposal.signature_header.creator;
    if nonce.is_empty() {
        return Err("nonce is empty".into());
    }
    if creator.is_empty() {
        return Err("creator is empty".into());
    }
    let expected = compute_tx_id(nonce, creator);
    if proposal.tx_id() != expected {
        return Err(format!("incorrectly computed txid '{}' -- expected '{expected}'", proposal.tx_id()));
    }
    if proposal.signed.proposal_bytes.is_empty() {
        return Err("empty proposal bytes".into());
    }
    if proposal.signed.signature.is_empty() {
        return Err("empty signature bytes".into());
    }
    let channel = proposal.channel_id();
    let identity = Identity::deserialize(creator).ok();
    let Some((identity, msp)) = identity.and_then(|id| deserializer.msp(&id.msp_id).map(|msp| (id, msp))) else {
        warn!(target: ENDORSER, func = "Validate", channel, txID = short_tx_id(proposal.tx_id()), "access denied: the creator does not deserialize");
        return Err(format!("access denied: channel [{channel}] creator org unknown, creator is malformed"));
    };
    let denied = format!("access denied: channel [{channel}] creator org [{}]", identity.msp_id);
    // Fabric's MSP validates certificate chains ignoring expiry; the expiration filter has
    // already refused expired creators.
    if let Err(err) = msp.validate_ignoring_expiry(&identity) {
        warn!(target: ENDORSER, func = "Validate", channel, txID = short_tx_id(proposal.tx_id()), "access denied: identity is not valid: {err}");
        return Err(denied);
    }
    if let Err(err) = identity.verify(&proposal.signed.proposal_bytes, &proposal.signed.signature) {
        warn!(
            target: ENDORSER,
            func = "Validate",
            channel,
            txID = short_tx_id(proposal.tx_id()),
            "access denied: creator's signature over the proposal is not valid: {err}"
        );
        return Err(denied);
    }
    Ok(identity)
}

/// Go's `%s` of a `common.HeaderType`: the name, or the number when it has none.
fn header_type_name(value: i32) -> String {
    HeaderType::try_from(value).map_or_else(|_| value.to_string(), |t| t.as_str_name().to_string())
}

/// Fabric logs the first 8 characters of a transaction ID.
fn short_tx_id(tx_id: &str) -> &str {
    tx_id.get(..8).unwrap_or(tx_id)
}

/// When a serialized identity's certificate expires, if it parses at all (Fabric's
/// `crypto.ExpiresAt`: anything unparseable has no expiry).
fn expires_at(creator: &[u8]) -> Option<SystemTime> {
    let identity = Identity::deserialize(creator).ok()?;
    Some(identity.cert.tbs_certificate().validity().not_after.to_system_time())
}

impl EndorserService {
    pub fn new(
        channels: Arc<Channels>,
        msp: LocalMsp,
        clock: Arc<dyn Clock>,
        auth_filters: Vec<String>,
        time_window: Duration,
    ) -> EndorserService {
        EndorserService { channels, msp, clock, auth_filters, time_window, metrics: EndorserMetrics::default() }
    }

    /// Counts proposals in `metrics` (the node's registered ones).
    pub fn with_metrics(mut self, metrics: EndorserMetrics) -> EndorserService {
        self.metrics = metrics;
        self
    }

    /// Processes one signed proposal: `Err` is what Fabric returns as a gRPC error.
    pub fn process(&self, signed: &SignedProposal) -> Result<ProposalResponse, Status> {
        for filter in &self.auth_filters {
            match filter.as_str() {
                "ExpirationCheck" => self.expiration_filter(signed).map_err(Status::unknown)?,
                "TimeWindowCheck" => self.time_window_filter(signed).map_err(Status::unknown)?,
                _ => {}
            }
        }
        if self.channels.endorsement_blocked() {
            return Err(Status::unknown("endorse requests are blocked while ledgers are being rebuilt"));
        }
        // Fabric's `ProcessProposal` starts here (the auth filters wrap it), and so do its metrics.
        self.metrics.proposals_received.inc();
        let started = self.clock.now();
        let proposal = unpack(signed).map_err(|err| {
            self.metrics.validation_failures.inc();
            warn!(target: ENDORSER, func = "ProcessProposal", "Failed to unpack proposal error={err}");
            Status::unknown(err)
        })?;
        let channel_id = proposal.channel_id().to_string();
        let config = if channel_id.is_empty() {
            None
        } else {
            match self.channels.config(&channel_id) {
                Some(config) => Some(config),
                None => return Ok(error_response(format!("channel '{channel_id}' not found"))),
            }
        };
        self.pre_process(&proposal, config.as_deref()).map_err(|err| {
            warn!(target: ENDORSER, func = "ProcessProposal", "Failed to preProcess proposal error={err}");
            Status::unknown(err)
        })?;
        let (response, success) = match self.process_successfully_or_error(&proposal, config.as_deref()) {
            // As Fabric: successful when endorsed, or a channel-less call (which cannot be).
            Ok(response) => {
                let success = response.endorsement.is_some() || channel_id.is_empty();
                (response, success)
            }
            Err(err) => {
                warn!(
                    target: ENDORSER,
                    func = "ProcessProposal",
                    channel = channel_id,
                    chaincode = proposal.chaincode_name,
                    "Failed to invoke chaincode error={err}"
                );
                (error_response(err), false)
            }
        };
        let seconds = self.clock.now().saturating_duration_since(started).as_secs_f64();
        self.metrics.answered(&channel_id, &proposal.chaincode_name, success, seconds);
        Ok(response)
    }

    /// The `ExpirationCheck` auth filter: parses down to the signature header and refuses a
    /// creator whose certificate has expired at the env's wall clock.
    fn expiration_filter(&self, signed: &SignedProposal) -> Result<(), String> {
        let proposal: Proposal = decode(&signed.proposal_bytes, "Proposal").map_err(|e| format!("failed parsing proposal: {e}"))?;
        let header: Header = decode(&proposal.header, "Header").map_err(|e| format!("failed parsing header: {e}"))?;
        let signature_header: SignatureHeader =
            decode(&header.signature_header, "SignatureHeader").map_err(|e| format!("failed parsing signature header: {e}"))?;
        match expires_at(&signature_header.creator) {
            Some(expiry) if self.clock.wall_clock() > expiry => Err("proposal client identity expired".into()),
            _ => Ok(()),
        }
    }

    /// The `TimeWindowCheck` auth filter (Fabric 3.x): the channel header's timestamp must be
    /// within the time window of the env's wall clock, either way.
    fn time_window_filter(&self, signed: &SignedProposal) -> Result<(), String> {
        let proposal: Proposal = decode(&signed.proposal_bytes, "Proposal").map_err(|e| format!("failed parsing proposal: {e}"))?;
        let header: Header = decode(&proposal.header, "Header").map_err(|e| format!("failed parsing header: {e}"))?;
        let channel_header: ChannelHeader =
            decode(&header.channel_header, "ChannelHeader").map_err(|e| format!("failed parsing channel header: {e}"))?;
        let stamp = channel_header.timestamp.unwrap_or_default();
        // A timestamp outside what SystemTime holds is as far off as it gets.
        let proposed = u64::try_from(stamp.seconds)
            .ok()
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(stamp.nanos.max(0)).unwrap_or(0))));
        let now = self.clock.wall_clock();
        let inside = proposed.is_some_and(|t| {
            t.duration_since(now).or_else(|_| now.duration_since(t)).is_ok_and(|gap| gap.as_nanos() <= self.time_window.as_nanos())
        });
        if inside {
            return Ok(());
        }
        let shown = proposed.map_or_else(|| format!("{}s since 1970", stamp.seconds), |t| gotime::format(RFC3339, t));
        Err(format!(
            "request unauthorized due to incorrect timestamp {shown}, peer time {}, peer.authentication.timewindow {}",
            gotime::format(RFC3339, now),
            format_duration(self.time_window)
        ))
    }

    /// Fabric's `preProcess`: validation, then for channel proposals the duplicate check and,
    /// for application chaincodes, the channel's `peer/Propose` ACL.
    fn pre_process(&self, proposal: &UnpackedProposal, config: Option<&ChannelConfig>) -> Result<(), String> {
        let deserializer = match config {
            Some(config) => Deserializer::Channel(config),
            None => Deserializer::Local(&self.msp.msp),
        };
        validate(proposal, &deserializer).map_err(|e| {
            self.metrics.validation_failures.inc();
            format!("error validating proposal: {e}")
        })?;
        let Some(config) = config else { return Ok(()) };
        if let Some(ledger) = self.channels.ledger(&config.channel_id) {
            let seen = ledger.tx_location(proposal.tx_id()).map_err(|e| e.to_string())?;
            if seen.is_some() {
                self.metrics.duplicate(&config.channel_id, &proposal.chaincode_name);
                return Err(format!(
                    "duplicate transaction found [{}]. Creator [{}]",
                    proposal.tx_id(),
                    hex::encode(&proposal.signature_header.creator)
                ));
            }
        }
        if !scc::is_system_chaincode(&proposal.chaincode_name) {
            scc::check_channel_acl(config, "peer/Propose", scc::CHANNEL_WRITERS, &proposal.signed_data()).inspect_err(|_| {
                self.metrics.acl_failure(&config.channel_id, &proposal.chaincode_name);
            })?;
        }
        Ok(())
    }

    /// Fabric's `ProcessProposalSuccessfullyOrError`: run the chaincode, then answer unendorsed
    /// (errors, channel-less proposals) or endorsed by this peer.
    fn process_successfully_or_error(
        &self,
        proposal: &UnpackedProposal,
        config: Option<&ChannelConfig>,
    ) -> Result<ProposalResponse, String> {
        let name = proposal.chaincode_name.as_str();
        let channel_id = proposal.channel_id();
        if !scc::is_system_chaincode(name) {
            // There is no chaincode runtime: no application chaincode is ever defined here.
            let reason = match config {
                None => format!("could not get channel config for channel '{channel_id}'"),
                Some(_) => format!("chaincode {name} not found"),
            };
            return Err(format!(
                "make sure the chaincode {name} has been successfully defined on channel {channel_id} and try again: {reason}"
            ));
        }
        let started = self.clock.now();
        let response = scc::invoke(&self.channels, &self.msp, name, proposal);
        let elapsed_ms = self.clock.now().0.saturating_sub(started.0) / 1_000_000;
        info!(
            target: ENDORSER,
            func = "callChaincode",
            channel = channel_id,
            txID = short_tx_id(proposal.tx_id()),
            "finished chaincode: {name} duration: {elapsed_ms}ms"
        );
        let action = ChaincodeAction {
            response: Some(response.clone()),
            chaincode_id: Some(ChaincodeId { name: name.to_string(), version: SYSCC_VERSION.to_string(), ..ChaincodeId::default() }),
            ..ChaincodeAction::default()
        };
        let payload =
            ProposalResponsePayload { proposal_hash: proposal.proposal_hash.to_vec(), extension: action.encode_to_vec() }.encode_to_vec();
        if response.status >= STATUS_ERROR {
            return Ok(ProposalResponse { response: Some(response), payload, ..ProposalResponse::default() });
        }
        if channel_id.is_empty() || response.status >= STATUS_ERROR_THRESHOLD {
            // Channel-less invocations cannot be endorsed (Fabric returns them unendorsed).
            return Ok(ProposalResponse { response: Some(response), ..ProposalResponse::default() });
        }
        // escc: the peer signs the payload followed by its serialized identity.
        let endorser = self.msp.identity.serialize();
        let signature = self.msp.sign(&[payload.as_slice(), &endorser].concat());
        Ok(ProposalResponse {
            version: 1,
            response: Some(response),
            payload,
            endorsement: Some(Endorsement { endorser, signature }),
            ..ProposalResponse::default()
        })
    }
}

/// A status-500 answer with only a message (Fabric's business errors).
fn error_response(message: String) -> ProposalResponse {
    ProposalResponse {
        response: Some(ChaincodeResponse { status: STATUS_ERROR, message, ..ChaincodeResponse::default() }),
        ..ProposalResponse::default()
    }
}

#[tonic::async_trait]
impl Endorser for EndorserService {
    async fn process_proposal(&self, request: Request<SignedProposal>) -> Result<Response<ProposalResponse>, Status> {
        self.process(request.get_ref()).map(Response::new)
    }
}
