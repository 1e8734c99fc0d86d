//! `discovery.Discovery`: Fabric's Discovery service on the peer port (`discovery/service.go`
//! and its support packages in Fabric 2.2).
//!
//! A client sends a `SignedRequest`: a serialized `Request` (its identity and a list of queries)
//! and its signature over it. The whole request is checked first ([`Discoverer::handle_request`]
//! fails the call with Fabric's texts); then each query gets exactly one result, in order:
//! - a query for a channel this peer has not joined: `access denied`;
//! - authorisation: a channel query must satisfy the channel's `/Channel/Application/Writers`,
//!   a channel-less (local) query the local MSP's "any admin" policy, or "any member" with
//!   `peer.discovery.orgMembersAllowedAccess`; the signature is checked by the policy. A failure
//!   is `access denied`. Decisions are remembered per channel in an [`AuthCache`];
//! - the answer: the channel's config (MSPs and orderer endpoints), its peers as gossip knows them
//!   (alive, with a StateInfo), the peers this peer knows regardless of channel (local query), or
//!   an endorsement plan. peer-core runs no chaincode, so it knows no chaincode's metadata and
//!   every endorsement plan (and every peer query filtered by chaincode) fails as Fabric's does for
//!   a chaincode it does not know.
//!
//! Everything deciding is here without I/O: [`Discoverer`] answers a request from a [`World`]
//! (what gossip recorded after its last round, the joined channels' configs and heights, the
//! wall clock) that the caller snapshots. [`DiscoveryService`] is the tonic shell that takes the
//! snapshot and locks the cache.
//!
//! As in Fabric 2.2, the peer's TLS setting is logged and otherwise unused: Fabric's
//! `client_tls_cert_hash` check is dead code there, so any hash is accepted.
//!
//! Departures, on purpose:
//! - Fabric builds this peer's own alive message afresh for every query and bumps its sequence
//!   number; here it carries the last sequence number gossip used, so answering never touches
//!   gossip's state. It is unsigned, as Fabric's is.
//! - Before gossip has published this peer's StateInfo for a channel (it publishes only once the
//!   membership is not empty), the answer carries one signed on the spot with the ledger's height;
//!   Fabric signs one when the channel is initialised.
//! - Fabric's auth cache evicts `max − ⌊ratio × max⌋` entries when full, which is none when that
//!   is 0 (max 0, ratio 1): its cache then grows without bound. Here at least one entry goes, and
//!   with max 0 nothing is cached.
//! - Within one request, each channel is authorised once and each config, peer or local answer is
//!   built once (a failed config answer is logged once), as the answers cannot differ.
//! - A response larger than `peer.maxSendMsgSize` is refused while it is built (grpc-go refuses it
//!   when sending, with the same status), so a request of many queries cannot make the peer hold
//!   more than that.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use prost::Message;
use proto::discovery::discovery_server::Discovery;
use proto::discovery::query::Query as QueryKind;
use proto::discovery::query_result::Result as QueryAnswer;
use proto::discovery::{
    ConfigResult, Endpoint, Endpoints, Error as QueryError, Peer, PeerMembershipResult, Peers, Query, QueryResult,
    Request as DiscoveryRequest, Response as DiscoveryResponse, SignedRequest,
};
use proto::gossip::gossip_message::{Content, Tag};
use proto::gossip::{AliveMessage, Envelope, GossipMessage, Member, PeerTime, Properties, StateInfo};
use proto::protos::ChaincodeInterest;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};
use tracing::{error, info, warn};

use crate::channel::ChannelConfig;
use crate::channel::policy::{self, PolicyError, SignaturePolicy, SignedData};
use crate::channels::Channels;
use crate::env::Clock;
use crate::gossip::driver::{GossipView, View};
use crate::gossip::message::{SignedMessage, empty_tag};
use crate::gossip::state::channel_mac;
use crate::msp::LocalMsp;
use crate::msp::identity::PkiId;

/// Fabric's loggers.
const DISCOVERY: &str = "discovery";
const DISCOVERY_CONFIG: &str = "discovery.config";
/// The policy a channel query must satisfy (Fabric's `policies.ChannelApplicationWriters`).
const CHANNEL_APPLICATION_WRITERS: &str = "/Channel/Application/Writers";
const ACCESS_DENIED: &str = "access denied";

/// The service's settings: `peer.discovery.*`, the peer port's TLS and its send limit.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoverySettings {
    /// `peer.tls.enabled` (logged only, as in Fabric 2.2).
    pub tls: bool,
    /// `peer.discovery.authCacheEnabled`.
    pub auth_cache_enabled: bool,
    /// `peer.discovery.authCacheMaxSize`: entries per channel before a purge.
    pub auth_cache_max_size: usize,
    /// `peer.discovery.authCachePurgeRetentionRatio`: the fraction kept by a purge.
    pub auth_cache_purge_retention_ratio: f64,
    /// `peer.discovery.orgMembersAllowedAccess`: local queries from members, not only admins.
    pub org_members_allowed_access: bool,
    /// `peer.maxSendMsgSize`: the largest response built.
    pub max_response_bytes: usize,
}

impl DiscoverySettings {
    pub fn from_config(config: &crate::config::Config) -> DiscoverySettings {
        let discovery = &config.peer.discovery;
        DiscoverySettings {
            tls: config.peer.tls.enabled,
            auth_cache_enabled: discovery.auth_cache_enabled,
            auth_cache_max_size: usize::try_from(discovery.auth_cache_max_size).unwrap_or(usize::MAX),
            auth_cache_purge_retention_ratio: discovery.auth_cache_purge_retention_ratio,
            org_members_allowed_access: discovery.org_members_allowed_access,
            max_response_bytes: config.peer.max_send_msg_size,
        }
    }

    /// Fabric's `Config.String()`, as logged at creation.
    fn describe(&self) -> String {
        if self.auth_cache_enabled {
            format!(
                "TLS: {}, authCacheMaxSize: {}, authCachePurgeRatio: {:.6}",
                self.tls, self.auth_cache_max_size, self.auth_cache_purge_retention_ratio
            )
        } else {
            format!("TLS: {}, auth cache disabled", self.tls)
        }
    }
}

/// A joined channel as the answers need it.
#[derive(Clone, Debug)]
pub struct JoinedChannel {
    pub config: Arc<ChannelConfig>,
    /// The ledger height now.
    pub height: u64,
}

/// What a request is answered from, taken once per request.
#[derive(Clone, Debug)]
pub struct World<'a> {
    /// Gossip as the driver recorded it after its last round.
    pub view: &'a View,
    /// The joined channels, by ID.
    pub channels: &'a BTreeMap<String, JoinedChannel>,
    /// The wall clock in nanoseconds since the Unix epoch (a StateInfo signed on the spot).
    pub wall_nanos: u64,
}

/// Why a whole request was refused: the call fails with this text (gRPC status Unknown), or with
/// RESOURCE_EXHAUSTED for an answer over the send limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request is malformed or carries no identity (Fabric's texts).
    #[error("{0}")]
    Invalid(String),
    /// The answer would be larger than `peer.maxSendMsgSize` (grpc-go's text).
    #[error("grpc: trying to send message larger than max ({size} vs. {limit})")]
    TooLarge { size: usize, limit: usize },
}

impl From<RequestError> for Status {
    fn from(err: RequestError) -> Status {
        match &err {
            RequestError::Invalid(text) => Status::unknown(text.clone()),
            RequestError::TooLarge { .. } => Status::resource_exhausted(err.to_string()),
        }
    }
}

/// The Discovery service's decisions: request checks, authorisation (with the auth cache) and
/// answers, over a [`World`] the caller provides. No I/O.
pub struct Discoverer {
    settings: DiscoverySettings,
    /// The local MSP: local queries are authorised against it, and a StateInfo signed on the spot
    /// is signed with it.
    local: LocalMsp,
    /// Signed by any admin (or, with `orgMembersAllowedAccess`, any member) of the local MSP.
    /// (Always built; were it not, local queries would be refused with the reason.)
    local_policy: Result<SignaturePolicy, String>,
    cache: AuthCache,
}

impl std::fmt::Debug for Discoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discoverer").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Discoverer {
    /// A service for the peer whose local MSP is `local`. Logs Fabric's creation line.
    pub fn new(settings: DiscoverySettings, local: LocalMsp) -> Discoverer {
        use proto::common::msp_role::MspRoleType;
        let role = if settings.org_members_allowed_access { MspRoleType::Member } else { MspRoleType::Admin };
        let local_policy = any_of_role(&local.msp.id, role);
        info!(target: DISCOVERY, func = "NewService", "Created with config {}", settings.describe());
        let cache = AuthCache::new(settings.auth_cache_enabled, settings.auth_cache_max_size, settings.auth_cache_purge_retention_ratio);
        Discoverer { settings, local, local_policy, cache }
    }

    /// The auth cache (for tests and inspection).
    pub fn cache(&self) -> &AuthCache {
        &self.cache
    }

    /// Answers one request from `from` (the client's address, for the log). `Err` fails the
    /// whole call; otherwise there is one result per query, in order.
    pub fn handle_request(&mut self, signed: &SignedRequest, from: &str, world: &World<'_>) -> Result<DiscoveryResponse, RequestError> {
        let request = validate_structure(signed).map_err(|err| {
            warn!(target: DISCOVERY, func = "Discover", "Request from {from} is malformed or invalid: {err}");
            RequestError::Invalid(err)
        })?;
        let identity = request.authentication.map(|auth| auth.client_identity).unwrap_or_default();
        let signed_data = SignedData { data: signed.payload.clone(), identity, signature: signed.signature.clone() };
        // Within one request the signed data and the world are the same for every query: a
        // channel is authorised once and each answer built once (they cannot differ), which bounds
        // the signature checks and the work a request can cause by the channels it names.
        let mut memo = Memo::default();
        let mut results = Vec::with_capacity(request.queries.len());
        let mut size = 0usize;
        for query in &request.queries {
            let result = self.process_query(query, &signed_data, from, world, &mut memo);
            let len = result.encoded_len();
            // Tag, length prefix and message, as `Response.results` encodes each.
            size = size.saturating_add(1 + prost::length_delimiter_len(len) + len);
            if size > self.settings.max_response_bytes {
                return Err(RequestError::TooLarge { size, limit: self.settings.max_response_bytes });
            }
            results.push(result);
        }
        Ok(DiscoveryResponse { results })
    }

    fn process_query(&mut self, query: &Query, signed: &SignedData, from: &str, world: &World<'_>, memo: &mut Memo) -> QueryResult {
        let channel = query.channel.as_str();
        let joined = world.channels.get(channel);
        if !channel.is_empty() && joined.is_none() {
            warn!(target: DISCOVERY, func = "processQuery", "got query for channel {channel} from {from} but it doesn't exist");
            return error_result(ACCESS_DENIED);
        }
        let eligible = match memo.eligible.get(channel) {
            Some(known) => known.clone(),
            None => {
                let sequence = joined.map_or(0, |c| c.config.sequence);
                let (local, local_policy) = (&self.local, &self.local_policy);
                let outcome = self.cache.eligible(channel, sequence, signed, |signed| match joined {
                    Some(joined) => channel_eligible(&joined.config, signed),
                    None => local_policy.as_ref().map_err(Clone::clone).and_then(|local_policy| {
                        policy::evaluate_signature_policy(local_policy, std::slice::from_ref(signed), |id| {
                            (id == local.msp.id).then_some(&local.msp)
                        })
                    }),
                });
                memo.eligible.insert(channel.to_string(), outcome.clone());
                outcome
            }
        };
        if let Err(err) = eligible {
            warn!(target: DISCOVERY, func = "processQuery", "got query for channel {channel} from {from} but it isn't eligible: {err}");
            return error_result(ACCESS_DENIED);
        }
        // Answers that depend on nothing but the channel and the query's type are built once.
        let kind = match &query.query {
            Some(QueryKind::ConfigQuery(_)) => Some(1),
            Some(QueryKind::PeerQuery(peer_query)) if peer_query.filter.as_ref().is_none_or(|f| f.chaincodes.is_empty()) => Some(2),
            Some(QueryKind::LocalPeers(_)) => Some(3),
            _ => None,
        };
        let Some(kind) = kind else { return self.dispatch(query, joined, world) };
        let key = (channel.to_string(), kind);
        if let Some(answer) = memo.answers.get(&key) {
            return answer.clone();
        }
        let answer = self.dispatch(query, joined, world);
        memo.answers.insert(key, answer.clone());
        answer
    }

    fn dispatch(&self, query: &Query, joined: Option<&JoinedChannel>, world: &World<'_>) -> QueryResult {
        let unknown = || error_result("unknown or missing request type");
        let Some(joined) = joined else {
            return match &query.query {
                Some(QueryKind::LocalPeers(_)) => members_result(self.local_membership(world)),
                _ => unknown(),
            };
        };
        match &query.query {
            Some(QueryKind::ConfigQuery(_)) => match config_result(&joined.config) {
                Ok(config) => QueryResult { result: Some(QueryAnswer::ConfigResult(config)) },
                Err(err) => {
                    let channel = &query.channel;
                    error!(target: DISCOVERY, func = "configQuery", "Failed fetching config for channel {channel}: {err}");
                    error_result(&format!("failed fetching config for channel {channel}"))
                }
            },
            Some(QueryKind::PeerQuery(peer_query)) => {
                match self.channel_membership(&query.channel, joined, peer_query.filter.as_ref(), world) {
                    Ok(peers) => members_result(peers),
                    Err(err) => error_result(&err),
                }
            }
            Some(QueryKind::CcQuery(cc_query)) => chaincode_result(&query.channel, &cc_query.interests),
            Some(QueryKind::LocalPeers(_)) | None => unknown(),
        }
    }

    /// Every org of the identity store, with the peers of it that are alive (and reachable from
    /// outside the org), without StateInfo.
    fn local_membership(&self, world: &World<'_>) -> BTreeMap<String, Peers> {
        let alive = self.alive_set(world);
        self.identities_by_org(world)
            .into_iter()
            .map(|(org, identities)| {
                let peers = identities
                    .into_iter()
                    .filter_map(|(pki_id, identity)| {
                        alive.get(&pki_id).map(|membership| Peer { state_info: None, membership_info: Some(membership.clone()), identity })
                    })
                    .collect();
                (org, Peers { peers })
            })
            .collect()
    }

    /// [`Self::local_membership`] restricted to the channel's peers, each with its StateInfo.
    fn channel_membership(
        &self,
        channel: &str,
        joined: &JoinedChannel,
        filter: Option<&ChaincodeInterest>,
        world: &World<'_>,
    ) -> Result<BTreeMap<String, Peers>, String> {
        if let Some(first) = filter.and_then(|f| f.chaincodes.first()) {
            // No chaincode is defined for this peer: the first one of the filter has no metadata.
            return Err(no_metadata(&first.name, channel));
        }
        let view = self.channel_view(channel, joined, world);
        let alive = self.alive_set(world);
        Ok(self
            .identities_by_org(world)
            .into_iter()
            .map(|(org, identities)| {
                let peers = identities
                    .into_iter()
                    .filter_map(|(pki_id, identity)| {
                        let membership = alive.get(&pki_id)?;
                        let state_info = view.get(&pki_id)?;
                        Some(Peer { state_info: Some(state_info.clone()), membership_info: Some(membership.clone()), identity })
                    })
                    .collect();
                (org, Peers { peers })
            })
            .collect())
    }

    /// Alive members with an external endpoint, and this peer if it has one: their alive
    /// messages as payload and signature only (no secret: the internal endpoint stays inside).
    fn alive_set(&self, world: &World<'_>) -> BTreeMap<PkiId, Envelope> {
        let mut alive: BTreeMap<PkiId, Envelope> = world
            .view
            .alive_messages
            .iter()
            .filter(|(_, message)| !alive_endpoint(message).is_empty())
            .map(|(pki_id, message)| (*pki_id, without_secret(message)))
            .collect();
        if !world.view.endpoint.is_empty() {
            alive.insert(self.local.pki_id(), self.self_alive(world));
        }
        alive
    }

    /// This peer's alive message as Fabric's Discovery shows it: no identity, no signature.
    fn self_alive(&self, world: &World<'_>) -> Envelope {
        let alive = AliveMessage {
            membership: Some(Member {
                endpoint: world.view.endpoint.clone(),
                metadata: Vec::new(),
                pki_id: self.local.pki_id().0.to_vec(),
            }),
            timestamp: Some(PeerTime { inc_num: world.view.inc_num, seq_num: world.view.seq_num }),
            identity: Vec::new(),
        };
        SignedMessage::noop_sign(empty_tag(Content::AliveMsg(alive), 0)).into_envelope()
    }

    /// The channel's peers with their StateInfo (alive, of the channel's orgs, not left), and this
    /// peer with its own.
    fn channel_view(&self, channel: &str, joined: &JoinedChannel, world: &World<'_>) -> BTreeMap<PkiId, Envelope> {
        let recorded = world.view.state_infos.get(channel);
        let mut view: BTreeMap<PkiId, Envelope> =
            recorded.map(|r| r.peers.iter().map(|(pki_id, message)| (*pki_id, message.envelope().clone())).collect()).unwrap_or_default();
        let own = match recorded.and_then(|r| r.own.as_ref()) {
            Some(own) => own.envelope().clone(),
            None => self.fresh_state_info(channel, joined.height, world),
        };
        view.insert(self.local.pki_id(), own);
        view
    }

    /// A StateInfo for this peer signed now (gossip has not published one for the channel yet).
    fn fresh_state_info(&self, channel: &str, height: u64, world: &World<'_>) -> Envelope {
        let pki_id = self.local.pki_id();
        let info = StateInfo {
            timestamp: Some(PeerTime { inc_num: world.view.inc_num, seq_num: world.wall_nanos }),
            pki_id: pki_id.0.to_vec(),
            channel_mac: channel_mac(&pki_id.0, channel),
            properties: Some(Properties { ledger_height: height, left_channel: false, chaincodes: Vec::new() }),
        };
        let message = GossipMessage { nonce: 0, channel: Vec::new(), tag: Tag::ChanOrOrg as i32, content: Some(Content::StateInfo(info)) };
        SignedMessage::sign(message, &self.local).into_envelope()
    }

    /// The identity store grouped by organization (MSP ID), each org's identities by PKI-ID as
    /// `msp.SerializedIdentity` bytes. This peer's own identity is always in it.
    fn identities_by_org(&self, world: &World<'_>) -> BTreeMap<String, BTreeMap<PkiId, Vec<u8>>> {
        let mut orgs: BTreeMap<String, BTreeMap<PkiId, Vec<u8>>> = BTreeMap::new();
        for (pki_id, identity) in &world.view.identities {
            orgs.entry(identity.msp_id.clone()).or_default().insert(*pki_id, identity.serialize());
        }
        orgs.entry(self.local.msp.id.clone()).or_default().entry(self.local.pki_id()).or_insert_with(|| self.local.identity.serialize());
        orgs
    }
}

/// What one request already decided and built.
#[derive(Default)]
struct Memo {
    /// Per channel: the authorisation of the request's signed data.
    eligible: BTreeMap<String, Result<(), String>>,
    /// Per channel and query type (config, unfiltered peers, local peers): the answer.
    answers: BTreeMap<(String, u8), QueryResult>,
}

/// Fabric's `validateStructure`, short of the TLS binding (dead code in Fabric 2.2).
fn validate_structure(signed: &SignedRequest) -> Result<DiscoveryRequest, String> {
    let request = DiscoveryRequest::decode(signed.payload.as_slice()).map_err(|e| format!("failed parsing request: {e}"))?;
    let Some(auth) = &request.authentication else {
        return Err("access denied, no authentication info in request".into());
    };
    if auth.client_identity.is_empty() {
        return Err("access denied, client identity wasn't supplied".into());
    }
    Ok(request)
}

/// A channel query's authorisation: `/Channel/Application/Writers` over the request's signature.
fn channel_eligible(config: &ChannelConfig, signed: &SignedData) -> Result<(), String> {
    config.evaluate(CHANNEL_APPLICATION_WRITERS, std::slice::from_ref(signed)).map_err(|err| match err {
        PolicyError::NotFound { .. } => "failed obtaining channel application writers policy".to_string(),
        PolicyError::NotSatisfied { reason, .. } => reason,
    })
}

/// Signed by one member of `msp_id` with `role` (Fabric's `SignedByAnyAdmin`/`SignedByAnyMember`
/// over one MSP).
fn any_of_role(msp_id: &str, role: proto::common::msp_role::MspRoleType) -> Result<SignaturePolicy, String> {
    use proto::common::signature_policy::{NOutOf, Type};
    use proto::common::{MspPrincipal, MspRole, SignaturePolicy as Rule, SignaturePolicyEnvelope, msp_principal::Classification};
    let principal = MspRole { msp_identifier: msp_id.to_string(), role: role as i32 };
    let envelope = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(Rule { r#type: Some(Type::NOutOf(NOutOf { n: 1, rules: vec![Rule { r#type: Some(Type::SignedBy(0)) }] })) }),
        identities: vec![MspPrincipal { principal_classification: Classification::Role as i32, principal: principal.encode_to_vec() }],
    };
    SignaturePolicy::from_envelope(&envelope)
}

fn error_result(content: &str) -> QueryResult {
    QueryResult { result: Some(QueryAnswer::Error(QueryError { content: content.to_string() })) }
}

fn members_result(peers_by_org: BTreeMap<String, Peers>) -> QueryResult {
    QueryResult { result: Some(QueryAnswer::Members(PeerMembershipResult { peers_by_org })) }
}

/// The endpoint an alive message advertises (empty if none).
fn alive_endpoint(message: &SignedMessage) -> &str {
    match message.content() {
        Some(Content::AliveMsg(alive)) => alive.membership.as_ref().map_or("", |m| m.endpoint.as_str()),
        _ => "",
    }
}

/// The envelope's payload and signature, without the secret.
fn without_secret(message: &SignedMessage) -> Envelope {
    let envelope = message.envelope();
    Envelope { payload: envelope.payload.clone(), signature: envelope.signature.clone(), secret_envelope: None }
}

fn no_metadata(chaincode: &str, channel: &str) -> String {
    format!("No metadata was found for chaincode {chaincode} in channel {channel}")
}

// ---------------------------------------------------------------------------------------------
// Config query.

/// The channel's config as Discovery shows it: the FABRIC MSPs of the orderer orgs, then the
/// application orgs, by MSP name (the first wins); the orderer endpoints by orderer MSP.
pub fn config_result(config: &ChannelConfig) -> Result<ConfigResult, String> {
    let mut msps = BTreeMap::new();
    for org in config.orderer.orgs.values().chain(config.application.orgs.values()) {
        msps.entry(org.msp_config.name.clone()).or_insert_with(|| org.msp_config.clone());
    }
    let orderers = orderer_endpoints(config).map_err(|e| format!("failed computing orderer addresses: {e}"))?;
    Ok(ConfigResult { msps, orderers })
}

/// Per-org endpoints when any orderer org has some (unparsable ones are skipped with a
/// warning), else the channel's global addresses for every orderer org (an unparsable one fails).
fn orderer_endpoints(config: &ChannelConfig) -> Result<BTreeMap<String, Endpoints>, String> {
    let by_msp: BTreeMap<&str, &[String]> =
        config.orderer.orgs.values().map(|org| (org.msp_config.name.as_str(), org.endpoints.as_slice())).collect();
    let mut out = BTreeMap::new();
    if by_msp.values().any(|endpoints| !endpoints.is_empty()) {
        for (msp, endpoints) in by_msp {
            let mut parsed = Vec::new();
            for endpoint in endpoints {
                let (host, port) = match split_host_port(endpoint) {
                    Ok(split) => split,
                    Err(err) => {
                        warn!(target: DISCOVERY_CONFIG, func = "computePerOrgEndpoints", "Failed parsing endpoint {endpoint} for {msp}: {err}");
                        continue;
                    }
                };
                match parse_port(port) {
                    Ok(port) => parsed.push(Endpoint { host: host.to_string(), port }),
                    Err(err) => {
                        warn!(
                            target: DISCOVERY_CONFIG,
                            func = "computePerOrgEndpoints",
                            "{port} for endpoint {endpoint} which belongs to {msp} is not a valid port number: {err}"
                        );
                    }
                }
            }
            out.insert(msp.to_string(), Endpoints { endpoint: parsed });
        }
        return Ok(out);
    }
    for msp in by_msp.keys() {
        let mut parsed = Vec::new();
        for address in &config.orderer_addresses {
            let (host, port) = split_host_port(address).map_err(|_| format!("failed parsing orderer endpoint {address}"))?;
            let port = parse_port(port).map_err(|_| format!("{port} is not a valid port number"))?;
            parsed.push(Endpoint { host: host.to_string(), port });
        }
        out.insert(msp.to_string(), Endpoints { endpoint: parsed });
    }
    Ok(out)
}

/// Go's `net.SplitHostPort`, with its error texts.
fn split_host_port(address: &str) -> Result<(&str, &str), String> {
    let bad = |why: &str| format!("address {address}: {why}");
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY_COLONS: &str = "too many colons in address";
    let Some(last_colon) = address.rfind(':') else { return Err(bad(MISSING_PORT)) };
    let (host, no_bracket_before, no_bracket_after) = if address.starts_with('[') {
        let Some(end) = address.find(']') else { return Err(bad("missing ']' in address")) };
        if end + 1 == address.len() {
            return Err(bad(MISSING_PORT));
        }
        if end + 1 != last_colon {
            return Err(bad(if address.as_bytes()[end + 1] == b':' { TOO_MANY_COLONS } else { MISSING_PORT }));
        }
        (&address[1..end], 1, end + 1)
    } else {
        let host = &address[..last_colon];
        if host.contains(':') {
            return Err(bad(TOO_MANY_COLONS));
        }
        (host, 0, 0)
    };
    if address[no_bracket_before..].contains('[') {
        return Err(bad("unexpected '[' in address"));
    }
    if address[no_bracket_after..].contains(']') {
        return Err(bad("unexpected ']' in address"));
    }
    Ok((host, &address[last_colon + 1..]))
}

/// Go's `strconv.ParseInt(port, 10, 32)` converted to `uint32` as Fabric does (a negative port
/// wraps), with Go's error texts.
fn parse_port(port: &str) -> Result<u32, String> {
    port.parse::<i32>().map(|p| p as u32).map_err(|err| {
        let why = match err.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {port:?}: {why}")
    })
}

// ---------------------------------------------------------------------------------------------
// Chaincode query.

/// Fabric's `validateCCQuery`, then one descriptor per interest. No chaincode has metadata on
/// this peer, so the first interest fails as Fabric fails for a chaincode it does not know.
fn chaincode_result(channel: &str, interests: &[ChaincodeInterest]) -> QueryResult {
    if let Err(err) = validate_cc_query(interests) {
        return error_result(err);
    }
    let Some(interest) = interests.first() else { return error_result("chaincode query must have at least one chaincode interest") };
    let text = interest_text(interest);
    let cause = interest.chaincodes.first().map_or_else(String::new, |call| no_metadata(&call.name, channel));
    error!(target: DISCOVERY, func = "chaincodeQuery", "Failed constructing descriptor for chaincode {text},: {cause}");
    error_result(&format!("failed constructing descriptor for {text}"))
}

/// Fabric's checks of a chaincode query, with its texts (an interest cannot be nil on the wire).
fn validate_cc_query(interests: &[ChaincodeInterest]) -> Result<(), &'static str> {
    if interests.is_empty() {
        return Err("chaincode query must have at least one chaincode interest");
    }
    for interest in interests {
        if interest.chaincodes.is_empty() {
            return Err("chaincode interest must contain at least one chaincode");
        }
        if interest.chaincodes.iter().any(|call| call.name.is_empty()) {
            return Err("chaincode name in interest cannot be empty");
        }
    }
    Ok(())
}

/// A chaincode interest as Go's `%v` prints it in Fabric 2.2 (golang/protobuf's compact text:
/// `chaincodes:<name:"mycc" > `), for the fields Fabric 2.2's interest has.
pub fn interest_text(interest: &ChaincodeInterest) -> String {
    let mut out = String::new();
    for call in &interest.chaincodes {
        out.push_str("chaincodes:<");
        if !call.name.is_empty() {
            out.push_str("name:");
            push_quoted(&mut out, &call.name);
            out.push(' ');
        }
        for collection in &call.collection_names {
            out.push_str("collection_names:");
            push_quoted(&mut out, collection);
            out.push(' ');
        }
        if call.no_private_reads {
            out.push_str("no_private_reads:true ");
        }
        if call.no_public_writes {
            out.push_str("no_public_writes:true ");
        }
        out.push_str("> ");
    }
    out
}

/// A string in protobuf text format: byte by byte, C escapes for newline, return, tab, quote and
/// backslash, printable ASCII as is, any other byte in octal.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => out.push_str(&format!("\\{byte:03o}")),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// The auth cache.

/// Fabric's Discovery auth cache: per channel string (`""` for local queries), the decision for
/// each signed data seen (grants and denials), valid while the channel's config sequence stays
/// the one they were made under. Bounded: at most `max_size` entries per channel, and one cache
/// per channel a query was authorised for (joined channels and `""`).
#[derive(Clone, Debug)]
pub struct AuthCache {
    enabled: bool,
    max_size: usize,
    retention_ratio: f64,
    channels: BTreeMap<String, AccessCache>,
}

#[derive(Clone, Debug, Default)]
struct AccessCache {
    /// The config sequence the entries were decided under (0 for `""`).
    sequence: u64,
    /// Hex SHA-256 of the signed data's DER → the decision.
    entries: BTreeMap<String, Result<(), String>>,
}

impl AuthCache {
    pub fn new(enabled: bool, max_size: usize, retention_ratio: f64) -> AuthCache {
        AuthCache { enabled, max_size, retention_ratio, channels: BTreeMap::new() }
    }

    /// Whether `signed` may be served on `channel`, whose config is now at `sequence`: the
    /// remembered decision while the sequence is unchanged, else `evaluate`'s (then remembered).
    pub fn eligible(
        &mut self,
        channel: &str,
        sequence: u64,
        signed: &SignedData,
        evaluate: impl FnOnce(&SignedData) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.enabled {
            return evaluate(signed);
        }
        let key = cache_key(signed);
        let cache = self.channels.entry(channel.to_string()).or_default();
        if cache.sequence == sequence {
            if let Some(decision) = cache.entries.get(&key) {
                return decision.clone();
            }
        } else {
            cache.sequence = sequence;
            cache.entries.clear();
        }
        if cache.entries.len() + 1 > self.max_size {
            // Fabric evicts arbitrary entries; the first ones in key (hash) order are as arbitrary.
            let keep = (self.retention_ratio * self.max_size as f64) as usize;
            let evict = self.max_size.saturating_sub(keep).max(1);
            for _ in 0..evict {
                if cache.entries.pop_first().is_none() {
                    break;
                }
            }
        }
        let decision = evaluate(signed);
        if cache.entries.len() < self.max_size {
            cache.entries.insert(key, decision.clone());
        }
        debug_assert!(cache.entries.len() <= self.max_size, "the auth cache of channel {channel:?} outgrew its bound");
        decision
    }

    /// How many decisions are remembered for `channel`.
    pub fn len(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |c| c.entries.len())
    }

    /// Whether nothing is remembered for any channel.
    pub fn is_empty(&self) -> bool {
        self.channels.values().all(|c| c.entries.is_empty())
    }
}

/// The cache key of a signed data, as Fabric computes it: hex SHA-256 of the DER encoding of
/// `SEQUENCE { OCTET STRING data, OCTET STRING identity, OCTET STRING signature }`.
pub fn cache_key(signed: &SignedData) -> String {
    let mut body = Vec::new();
    for field in [&signed.data, &signed.identity, &signed.signature] {
        der_push(&mut body, 0x04, field);
    }
    let mut der = Vec::with_capacity(body.len() + 6);
    der_push(&mut der, 0x30, &body);
    hex::encode(Sha256::digest(&der))
}

/// Appends one DER element: tag, definite length (short or long form), contents.
fn der_push(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

// ---------------------------------------------------------------------------------------------
// The gRPC shell.

/// `discovery.Discovery` on the peer port: snapshots the world for each request and hands it to
/// the [`Discoverer`].
pub struct DiscoveryService {
    discoverer: Mutex<Discoverer>,
    channels: Arc<Channels>,
    view: GossipView,
    clock: Arc<dyn Clock>,
}

impl DiscoveryService {
    /// The service (logs Fabric's `Created with config …` line).
    pub fn new(
        settings: DiscoverySettings,
        local: LocalMsp,
        channels: Arc<Channels>,
        view: GossipView,
        clock: Arc<dyn Clock>,
    ) -> DiscoveryService {
        DiscoveryService { discoverer: Mutex::new(Discoverer::new(settings, local)), channels, view, clock }
    }

    /// Answers one request as of now.
    pub fn answer(&self, request: &SignedRequest, from: &str) -> Result<DiscoveryResponse, RequestError> {
        let view = self.view.snapshot();
        let channels: BTreeMap<String, JoinedChannel> = self
            .channels
            .ids()
            .into_iter()
            .filter_map(|id| {
                let config = self.channels.config(&id)?;
                let height = self.channels.ledger(&id).map_or(0, |ledger| ledger.height());
                Some((id, JoinedChannel { config, height }))
            })
            .collect();
        let wall = self.clock.wall_clock().duration_since(UNIX_EPOCH).unwrap_or_default();
        let world = World { view: &view, channels: &channels, wall_nanos: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX) };
        let mut discoverer = self.discoverer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        discoverer.handle_request(request, from, &world)
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    async fn discover(&self, request: Request<SignedRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        // Go's `peer.Addr.String()`: `ip:port`, empty when unknown.
        let from = request.remote_addr().map(|addr| addr.to_string()).unwrap_or_default();
        self.answer(request.get_ref(), &from).map(Response::new).map_err(Status::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(data: &[u8], identity: &[u8], signature: &[u8]) -> SignedData {
        SignedData { data: data.to_vec(), identity: identity.to_vec(), signature: signature.to_vec() }
    }

    #[test]
    fn the_cache_key_hashes_the_der_of_the_signed_data() {
        // SEQUENCE { OCTET STRING "a", OCTET STRING "", OCTET STRING "bc" }.
        let der = [0x30, 0x09, 0x04, 0x01, b'a', 0x04, 0x00, 0x04, 0x02, b'b', b'c'];
        assert_eq!(cache_key(&signed(b"a", b"", b"bc")), hex::encode(Sha256::digest(der)));
        // Long-form lengths: 200 bytes of data.
        let data = vec![7u8; 200];
        let mut expected = vec![0x30, 0x81, 0xcf, 0x04, 0x81, 0xc8];
        expected.extend_from_slice(&data);
        expected.extend_from_slice(&[0x04, 0x00, 0x04, 0x00]);
        assert_eq!(cache_key(&signed(&data, b"", b"")), hex::encode(Sha256::digest(&expected)));
        // What Go's `asn1.Marshal` of Fabric's `SignedData` hashes to, for the same two.
        assert_eq!(cache_key(&signed(b"a", b"", b"bc")), "748cf666c6df5503d5f8c5292ae28a4595df1e39663923b76795d45238e1fb6d");
        assert_eq!(cache_key(&signed(&data, b"", b"")), "a1c36918d9bf5b271c88513d5370cf00c93082dfa4993aafa2ba176f06ac67b4");
    }

    #[test]
    fn decisions_are_remembered_until_the_config_sequence_changes() {
        let mut cache = AuthCache::new(true, 1000, 0.75);
        let mut evaluations = 0;
        let mut ask = |cache: &mut AuthCache, sequence: u64, answer: Result<(), String>| {
            cache.eligible("ch", sequence, &signed(b"d", b"i", b"s"), |_| {
                evaluations += 1;
                answer
            })
        };
        assert_eq!(ask(&mut cache, 0, Err("denied".into())), Err("denied".into()));
        // Cached: the second answer is not asked for.
        assert_eq!(ask(&mut cache, 0, Ok(())), Err("denied".into()));
        assert_eq!(cache.len("ch"), 1);
        // A new config sequence clears the channel's cache.
        assert_eq!(ask(&mut cache, 1, Ok(())), Ok(()));
        assert_eq!(ask(&mut cache, 1, Err("x".into())), Ok(()));
        assert_eq!(evaluations, 2);
        assert_eq!(cache.len("ch"), 1);
        assert_eq!(cache.len("other"), 0);
    }

    #[test]
    fn a_full_cache_evicts_what_the_retention_ratio_does_not_keep() {
        let mut cache = AuthCache::new(true, 8, 0.75);
        for i in 0..8u8 {
            cache.eligible("", 0, &signed(&[i], b"", b""), |_| Ok(())).unwrap();
        }
        assert_eq!(cache.len(""), 8);
        // The ninth: 8 − ⌊0.75 × 8⌋ = 2 go, then it is stored.
        cache.eligible("", 0, &signed(&[8], b"", b""), |_| Ok(())).unwrap();
        assert_eq!(cache.len(""), 7);
        // Fabric's 1000 / 0.75 evicts 250.
        let mut big = AuthCache::new(true, 1000, 0.75);
        for i in 0..1001u32 {
            big.eligible("c", 0, &signed(&i.to_be_bytes(), b"", b""), |_| Ok(())).unwrap();
        }
        assert_eq!(big.len("c"), 751);
    }

    #[test]
    fn the_cache_stays_bounded_where_fabrics_would_grow() {
        // Ratio 1 evicts nothing in Fabric; here one entry goes each time.
        let mut cache = AuthCache::new(true, 4, 1.0);
        for i in 0..20u8 {
            cache.eligible("", 0, &signed(&[i], b"", b""), |_| Ok(())).unwrap();
        }
        assert_eq!(cache.len(""), 4);
        // Max 0 caches nothing.
        let mut none = AuthCache::new(true, 0, 0.75);
        let mut evaluations = 0;
        for _ in 0..3 {
            none.eligible("", 0, &signed(b"x", b"", b""), |_| {
                evaluations += 1;
                Ok(())
            })
            .unwrap();
        }
        assert_eq!((evaluations, none.len("")), (3, 0));
        // Disabled: always evaluated, nothing kept.
        let mut off = AuthCache::new(false, 1000, 0.75);
        off.eligible("", 0, &signed(b"x", b"", b""), |_| Ok(())).unwrap();
        assert!(off.is_empty());
    }

    #[test]
    fn interests_print_as_fabric_2_2_prints_them() {
        use proto::protos::ChaincodeCall;
        let call = |name: &str| ChaincodeCall { name: name.into(), ..ChaincodeCall::default() };
        assert_eq!(interest_text(&ChaincodeInterest { chaincodes: vec![call("mycc")] }), "chaincodes:<name:\"mycc\" > ");
        let full = ChaincodeCall {
            name: "a\"b\n\u{e9}".into(),
            collection_names: vec!["c1".into(), "c2".into()],
            no_private_reads: true,
            no_public_writes: true,
            ..ChaincodeCall::default()
        };
        assert_eq!(
            interest_text(&ChaincodeInterest { chaincodes: vec![full, call("cc2")] }),
            "chaincodes:<name:\"a\\\"b\\n\\303\\251\" collection_names:\"c1\" collection_names:\"c2\" no_private_reads:true no_public_writes:true > chaincodes:<name:\"cc2\" > "
        );
    }

    #[test]
    fn endpoints_split_as_go_splits_them() {
        assert_eq!(split_host_port("orderer.example.com:7050"), Ok(("orderer.example.com", "7050")));
        assert_eq!(split_host_port("[::1]:7050"), Ok(("::1", "7050")));
        assert_eq!(split_host_port(":7050"), Ok(("", "7050")));
        assert_eq!(split_host_port("orderer"), Err("address orderer: missing port in address".into()));
        assert_eq!(split_host_port("a:b:c"), Err("address a:b:c: too many colons in address".into()));
        assert_eq!(split_host_port("[::1"), Err("address [::1: missing ']' in address".into()));
        assert_eq!(split_host_port("[::1]"), Err("address [::1]: missing port in address".into()));
        assert_eq!(split_host_port("[::1]x:1"), Err("address [::1]x:1: missing port in address".into()));
        assert_eq!(split_host_port("a[b:1"), Err("address a[b:1: unexpected '[' in address".into()));
        assert_eq!(split_host_port("a]b:1"), Err("address a]b:1: unexpected ']' in address".into()));
        assert_eq!(parse_port("7050"), Ok(7050));
        assert_eq!(parse_port("-1"), Ok(u32::MAX));
        assert_eq!(parse_port("x"), Err("strconv.ParseInt: parsing \"x\": invalid syntax".into()));
        assert_eq!(parse_port("99999999999"), Err("strconv.ParseInt: parsing \"99999999999\": value out of range".into()));
    }

    /// A channel config with two orderer orgs (their per-org endpoints given) and the
    /// channel-level addresses.
    fn channel_config(per_org: [&[&str]; 2], global: &[&str]) -> ChannelConfig {
        use crate::channel::{GenesisOrg, GenesisSpec, genesis_block};
        use crate::testkit::{epoch, org_with_peers};
        let orderers = [org_with_peers("OrdererMSP", "example.com", 0), org_with_peers("Orderer2MSP", "example.org", 0)];
        let app = org_with_peers("Org1MSP", "org1.example.com", 1);
        let mut spec = GenesisSpec::new("ch", epoch());
        for (org, endpoints) in orderers.iter().zip(per_org) {
            let name = org.spec.msp_id.clone();
            let orderer_endpoints = endpoints.iter().map(ToString::to_string).collect();
            spec.orderer_orgs.push(GenesisOrg { name, org, anchor_peers: Vec::new(), orderer_endpoints });
        }
        spec.application_orgs.push(GenesisOrg { name: "Org1".into(), org: &app, anchor_peers: Vec::new(), orderer_endpoints: Vec::new() });
        spec.orderer_addresses = global.iter().map(ToString::to_string).collect();
        ChannelConfig::from_block(&genesis_block(&spec).unwrap()).unwrap()
    }

    fn endpoints(config: &ConfigResult) -> Vec<(String, Vec<String>)> {
        let shown = |e: &Endpoints| e.endpoint.iter().map(|e| format!("{}:{}", e.host, e.port)).collect();
        config.orderers.iter().map(|(msp, e)| (msp.clone(), shown(e))).collect()
    }

    #[test]
    fn config_answers_carry_msps_and_orderer_endpoints_as_fabric_computes_them() {
        // Per-org endpoints win over the global ones; unparsable ones are skipped.
        let config = channel_config([&["o1:7050", "nohost", "o2:port", "[::1]:7050"], &[]], &["g:7050"]);
        let answer = config_result(&config).unwrap();
        assert_eq!(answer.msps.keys().collect::<Vec<_>>(), ["Orderer2MSP", "OrdererMSP", "Org1MSP"]);
        assert!(answer.msps.iter().all(|(id, msp)| msp.name == *id && !msp.root_certs.is_empty()));
        assert_eq!(
            endpoints(&answer),
            [("Orderer2MSP".to_string(), vec![]), ("OrdererMSP".to_string(), vec!["o1:7050".to_string(), "::1:7050".to_string()])]
        );
        // Without per-org endpoints, every orderer org gets the global ones.
        let config = channel_config([&[], &[]], &["g:7050", "h:7051"]);
        let both = vec!["g:7050".to_string(), "h:7051".to_string()];
        assert_eq!(
            endpoints(&config_result(&config).unwrap()),
            [("Orderer2MSP".to_string(), both.clone()), ("OrdererMSP".to_string(), both)]
        );
        // A bad global one fails the query.
        let config = channel_config([&[], &[]], &["g:7050", "nohost"]);
        assert_eq!(config_result(&config).unwrap_err(), "failed computing orderer addresses: failed parsing orderer endpoint nohost");
        let config = channel_config([&[], &[]], &["g:x"]);
        assert_eq!(config_result(&config).unwrap_err(), "failed computing orderer addresses: x is not a valid port number");
    }

    #[test]
    fn chaincode_queries_are_validated_with_fabrics_texts() {
        use proto::protos::ChaincodeCall;
        let text = |result: QueryResult| match result.result {
            Some(QueryAnswer::Error(e)) => e.content,
            other => panic!("not an error: {other:?}"),
        };
        assert_eq!(text(chaincode_result("ch", &[])), "chaincode query must have at least one chaincode interest");
        assert_eq!(text(chaincode_result("ch", &[ChaincodeInterest::default()])), "chaincode interest must contain at least one chaincode");
        let nameless = ChaincodeInterest { chaincodes: vec![ChaincodeCall::default()] };
        assert_eq!(text(chaincode_result("ch", &[nameless])), "chaincode name in interest cannot be empty");
        let mycc = ChaincodeInterest { chaincodes: vec![ChaincodeCall { name: "mycc".into(), ..ChaincodeCall::default() }] };
        assert_eq!(text(chaincode_result("ch", &[mycc])), "failed constructing descriptor for chaincodes:<name:\"mycc\" > ");
    }
}
