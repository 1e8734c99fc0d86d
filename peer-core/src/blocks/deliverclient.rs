//! The peer's deliver client: Fabric's deliver service (`core/deliverservice`, logger
//! `deliveryClient`) and blocks provider (`internal/pkg/peer/blocksprovider`, logger
//! `peer.blocksprovider`) in one.
//!
//! Per joined channel, [`DeliverClient::run`] follows a leadership watch ("is this peer its org's
//! leader for the channel"): static leaders (`peer.gossip.orgLeader`) get a constant `true`;
//! with `peer.gossip.useLeaderElection` gossip's election provides the watch. While leader, it
//! does what Fabric's `Deliverer.DeliverBlocks` does:
//! 1. after a failure, sleep Fabric's backoff ([`retry_delay`]: 100ms × 1.2ⁿ, capped at
//!    `peer.deliveryclient.reConnectBackoffThreshold`), adding it to a total; past
//!    `reconnectTotalTimeThreshold` a non-static leader gives up (and yields leadership through
//!    [`DeliverClient::on_give_up`]), a static leader logs that it ignores the threshold;
//! 2. pick one of the channel's orderer endpoints at random (Fabric 2.4's `RandomEndpoint`: a
//!    uniform pick per attempt, drawn here from the env's seeded RNG), after
//!    `peer.deliveryclient.addressOverrides`;
//! 3. dial it over the env's network within `connTimeout`, open `orderer.AtomicBroadcast/Deliver`
//!    and send a signed DELIVER_SEEK_INFO from the ledger height to `u64::MAX`,
//!    BLOCK_UNTIL_READY. Only the dial is bounded: a Go orderer sends the stream's response headers
//!    with its first message, so on a quiet channel the answer may take as long as the next block;
//!    the connection's HTTP/2 keepalive pings (`peer.keepalive.deliveryClient.*`) tell a quiet
//!    orderer from a dead one, as in Fabric;
//! 4. for each block: commit it through `Channels::append` (orderer signatures, number, previous
//!    hash, data hash), then hand it to the [`BlockPublisher`] when
//!    `peer.deliveryclient.blockGossipEnabled`; any error, any status (even SUCCESS: the seek
//!    never completes) and the end of the stream count as a failure and start again at 1;
//!    a block resets the failure count (not the total, as in Fabric). A block that gossip
//!    committed meanwhile (the same header at that number) is no failure: Fabric hands orderer
//!    blocks to gossip's payload buffer, which drops those below the ledger height;
//! 5. a config block that changes the orderer endpoints ends the stream without a failure
//!    (Fabric's `Ordering endpoints have been refreshed`).
//!
//! Time is the env's clock, randomness a stream forked from the env's seeded RNG when the task is
//! made, so simulated runs repeat. With `peer.tls.enabled` the dial is TLS ([`DeliverTls`]). Not
//! here: Fabric 3.x's BFT deliverer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use proto::common::{Block, Envelope, Status as FabricStatus};
use proto::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{DeliverResponse, SeekInfo, SeekPosition, SeekSpecified, deliver_response, seek_position};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, warn};

use super::BlockPublisher;
use crate::channels::{ChannelError, Channels};
use crate::config::{Config, HostPort, format_duration};
use crate::env::Env;
use crate::errors::rpc_error;
use crate::ledger::LedgerError;
use crate::msp::LocalMsp;
use crate::net::dial::{CallStream, ClientKeepalive, ClientOptions, ClientTls, DialError, dial};
use crate::net::tls::{KeyPair, TlsContext, msp_tls_cas};
use crate::proposal::{NONCE_SIZE, seek_info_envelope_bound};
use rustls::pki_types::CertificateDer;

/// Fabric's logger names.
pub const DELIVERY_CLIENT: &str = "deliveryClient";
pub const BLOCKS_PROVIDER: &str = "peer.blocksprovider";

/// The first retry delay (Fabric's `InitialRetryDelay`).
pub const INITIAL_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Fabric's `backoffExponentBase`.
const BACKOFF_EXPONENT_BASE: f64 = 1.2;

/// How long to sleep before the next attempt after `failures` consecutive failures (at least 1),
/// as Fabric's `DeliverBlocks` computes it: `100ms × 1.2^(failures-1)` (the float truncated to
/// whole milliseconds), or `max_retry_delay` once `failures - 1` exceeds
/// `⌊ln(max / 100ms) / ln 1.2⌋`. Zero failures: no sleep.
pub fn retry_delay(failures: u32, max_retry_delay: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let ratio = max_retry_delay.as_secs_f64() / INITIAL_RETRY_DELAY.as_secs_f64();
    // Go's int() truncates toward zero; a threshold below 100ms gives a negative bound, so every
    // retry waits the threshold.
    let max_failures = (ratio.ln() / BACKOFF_EXPONENT_BASE.ln()).trunc();
    let exponent = f64::from(failures - 1);
    if exponent > max_failures {
        return max_retry_delay;
    }
    let millis = (BACKOFF_EXPONENT_BASE.powf(exponent) * 100.0).trunc();
    // In range: exponent ≤ max_failures keeps this at most max_retry_delay.
    Duration::from_millis(millis as u64)
}

/// The deliver client's settings (`peer.deliveryclient.*`, `peer.gossip.orgLeader`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverClientConfig {
    /// `peer.gossip.orgLeader`: a static leader never gives up (Fabric's `YieldLeadership` is its
    /// negation).
    pub static_leader: bool,
    /// `peer.deliveryclient.blockGossipEnabled`: committed blocks go to the publisher.
    pub block_gossip_enabled: bool,
    /// `peer.deliveryclient.connTimeout`: the dial (and, here, opening the Deliver stream).
    pub conn_timeout: Duration,
    /// `peer.deliveryclient.reConnectBackoffThreshold`: the longest retry delay.
    pub reconnect_backoff_threshold: Duration,
    /// `peer.deliveryclient.reconnectTotalTimeThreshold`: the retry budget of a non-static leader.
    pub reconnect_total_time_threshold: Duration,
    /// `peer.deliveryclient.addressOverrides`: `from` → `to` (CA files are for TLS, not served).
    pub address_overrides: Vec<(String, String)>,
    /// HTTP/2 keepalive pings on the orderer connection (`peer.keepalive.deliveryClient.interval`
    /// and `.timeout`), also without an open stream as Fabric's `PermitWithoutStream`: a silent
    /// orderer (a partition) ends the stream, and the client fails over.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// gRPC message limits (`peer.maxRecvMsgSize`, `peer.maxSendMsgSize`).
    pub max_recv_msg_size: usize,
    pub max_send_msg_size: usize,
}

impl DeliverClientConfig {
    pub fn from_config(config: &Config) -> DeliverClientConfig {
        let delivery = &config.delivery_client;
        DeliverClientConfig {
            static_leader: config.gossip.org_leader,
            block_gossip_enabled: delivery.block_gossip_enabled,
            conn_timeout: delivery.conn_timeout,
            reconnect_backoff_threshold: delivery.reconnect_backoff_threshold,
            reconnect_total_time_threshold: delivery.reconnect_total_time_threshold,
            address_overrides: delivery.address_overrides.iter().map(|o| (o.from.clone(), o.to.clone())).collect(),
            keepalive_interval: config.peer.keepalive.delivery_client_interval,
            keepalive_timeout: config.peer.keepalive.delivery_client_timeout,
            max_recv_msg_size: config.peer.max_recv_msg_size,
            max_send_msg_size: config.peer.max_send_msg_size,
        }
    }
}

/// Why a connection to the ordering service failed or ended. Texts follow Fabric's
/// blocksprovider.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The channel's configuration names no orderer endpoint.
    #[error("could not get orderer endpoints: no endpoints currently defined")]
    NoEndpoints,
    /// The connection or the HTTP/2 handshake failed.
    #[error("could not dial endpoint '{address}': {cause}")]
    Dial { address: String, cause: String },
    /// The dial took longer than `peer.deliveryclient.connTimeout` (Go's blocking dial error).
    #[error("could not dial endpoint '{address}': failed to create new connection: context deadline exceeded")]
    DialTimeout { address: String },
    /// The orderer sent a status; the seek asks for blocks forever, so even SUCCESS is an error.
    #[error("received success for a seek that should never complete")]
    SuccessStatus,
    /// The orderer sent a failure status.
    #[error("received bad status {0} from orderer")]
    BadStatus(String),
    /// A response that is neither a block nor a status.
    #[error("unknown message type '{0}'")]
    UnknownMessage(&'static str),
    /// The block failed verification: orderer signatures, number, previous hash or data hash.
    #[error("block from orderer could not be verified: {0}")]
    Verify(ChannelError),
    /// The block could not be committed.
    #[error("could not add block as payload: {0}")]
    Commit(ChannelError),
}

/// How one leadership term of pulling ended (other than by losing leadership or stopping).
enum Ended {
    /// The retry budget ran out (non-static leaders only).
    GaveUp,
    /// The channel's ledger is gone: nothing to pull into.
    Fatal,
}

/// Called with the channel ID when a non-static leader gives up (see [`DeliverClient::on_give_up`]).
pub type GiveUp = Arc<dyn Fn(&str) + Send + Sync>;

/// An open Deliver stream.
struct Connection {
    address: String,
    /// The endpoints it was chosen from: a configuration that changes them ends the stream.
    endpoints: Vec<String>,
    /// The answer, its headers awaited with the first block (see [`CallStream`]).
    responses: CallStream<DeliverResponse>,
    /// Kept open for the stream's life (the orderer reads further seeks from it).
    _requests: mpsc::Sender<Envelope>,
}

/// Pulls blocks from the ordering service for the channels this peer leads. One per peer; one
/// [`DeliverClient::run`] task per channel.
pub struct DeliverClient {
    env: Env,
    channels: Arc<Channels>,
    signer: Arc<LocalMsp>,
    publisher: Arc<dyn BlockPublisher>,
    config: DeliverClientConfig,
    /// Called with the channel ID when a non-static leader gives up (Fabric's finalizer, which
    /// yields leadership in the election).
    on_give_up: Option<GiveUp>,
    /// TLS to the orderers (`peer.tls.enabled`); `None`: plaintext.
    tls: Option<DeliverTls>,
}

/// TLS to the ordering service (spec §3): each endpoint is verified against the TLS CAs of the
/// channel config's orderer orgs (only its own org's when orgs list their endpoints), or those of
/// its address override's `caCertsFile`, and a client certificate is shown only when
/// `peer.tls.clientAuthRequired` (its hash then goes into the seek's channel header).
#[derive(Clone, Debug)]
pub struct DeliverTls {
    pub context: TlsContext,
    pub client_pair: Option<KeyPair>,
    /// By overridden address (`from`): the certificates of the override's `caCertsFile`, which
    /// the endpoint it leads to is verified against instead of the channel config's CAs.
    pub override_roots: Vec<(String, Vec<CertificateDer<'static>>)>,
}

impl DeliverTls {
    pub fn new(context: TlsContext, client_pair: Option<KeyPair>) -> DeliverTls {
        DeliverTls { context, client_pair, override_roots: Vec::new() }
    }
}

impl std::fmt::Debug for DeliverClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverClient").field("config", &self.config).finish_non_exhaustive()
    }
}

impl DeliverClient {
    pub fn new(
        env: Env,
        channels: Arc<Channels>,
        signer: Arc<LocalMsp>,
        publisher: Arc<dyn BlockPublisher>,
        config: DeliverClientConfig,
    ) -> DeliverClient {
        DeliverClient { env, channels, signer, publisher, config, on_give_up: None, tls: None }
    }

    /// Dials the orderers over TLS.
    pub fn with_tls(mut self, tls: Option<DeliverTls>) -> DeliverClient {
        self.tls = tls;
        self
    }

    /// What to do when a non-static leader gives up on the ordering service (the election yields).
    pub fn on_give_up(mut self, give_up: GiveUp) -> DeliverClient {
        self.on_give_up = Some(give_up);
        self
    }

    /// The task for one channel: pulls while `leadership` is true, stops pulling when it turns
    /// false, returns when `stop` turns true (or its sender is dropped). A leadership watch whose
    /// sender is gone keeps its last value (`watch::channel(true).1` is a static leader). The
    /// task's random stream is forked from the env now, when the task is made.
    pub fn run(
        self: &Arc<Self>,
        channel: String,
        mut leadership: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut rng = self.env.fork_rng();
        let this = self.clone();
        async move {
            loop {
                while !*leadership.borrow_and_update() {
                    tokio::select! {
                        biased;
                        () = stopped(&mut stop) => return,
                        _ = leadership_changed(&mut leadership) => {}
                    }
                }
                if this.config.block_gossip_enabled {
                    info!(target: DELIVERY_CLIENT, func = "StartDeliverForChannel", channel = %channel, "This peer will retrieve blocks from ordering service and disseminate to other peers in the organization");
                } else {
                    info!(target: DELIVERY_CLIENT, func = "StartDeliverForChannel", channel = %channel, "This peer will retrieve blocks from ordering service (will not disseminate them to other peers in the organization)");
                }
                let ended = tokio::select! {
                    biased;
                    () = stopped(&mut stop) => return,
                    () = lost_leadership(&mut leadership) => None,
                    ended = this.deliver_blocks(&channel, &mut rng) => Some(ended),
                };
                match ended {
                    None => {
                        debug!(target: DELIVERY_CLIENT, func = "StopDeliverForChannel", channel = %channel, "This peer will stop pass blocks from orderer service to other peers")
                    }
                    Some(ended) => {
                        if matches!(ended, Ended::GaveUp)
                            && let Some(give_up) = &this.on_give_up
                        {
                            give_up(&channel);
                        }
                        // Pull again only after leadership is lost and regained.
                        tokio::select! {
                            biased;
                            () = stopped(&mut stop) => return,
                            () = lost_leadership(&mut leadership) => {}
                        }
                    }
                }
            }
        }
    }

    /// Fabric's `DeliverBlocks`: connect, pull, and reconnect with backoff, until the retry
    /// budget of a non-static leader runs out. Dropped (cancelled) when leadership is lost.
    async fn deliver_blocks(&self, channel: &str, rng: &mut ChaCha20Rng) -> Ended {
        let mut failures: u32 = 0;
        let mut total = Duration::ZERO;
        loop {
            if failures > 0 {
                let delay = retry_delay(failures, self.config.reconnect_backoff_threshold);
                total = total.saturating_add(delay);
                if total > self.config.reconnect_total_time_threshold {
                    if !self.config.static_leader {
                        warn!(
                            target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel,
                            "attempted to retry block delivery for more than peer.deliveryclient.reconnectTotalTimeThreshold duration {}, giving up",
                            format_duration(self.config.reconnect_total_time_threshold)
                        );
                        return Ended::GaveUp;
                    }
                    warn!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "peer is a static leader, ignoring peer.deliveryclient.reconnectTotalTimeThreshold");
                }
                warn!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "Disconnected from ordering service. Attempt to re-connect in {}", format_duration(delay));
                self.env.clock.sleep(delay).await;
            }

            let Some(ledger) = self.channels.ledger(channel) else {
                error!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "Did not return ledger height, something is critically wrong");
                return Ended::Fatal;
            };
            let height = ledger.height();
            let seek = self.seek_info(channel, height, rng);
            let mut connection = match self.connect(channel, seek, rng).await {
                Ok(connection) => connection,
                Err(err) => {
                    warn!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "Could not connect to ordering service: {err}");
                    failures = failures.saturating_add(1);
                    continue;
                }
            };
            let address = connection.address.clone();
            info!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "orderer-address" = %address, nextBlock = height, "Pulling next blocks from ordering service");

            loop {
                match connection.responses.message().await {
                    Ok(Some(response)) => match self.process(channel, response) {
                        Ok(()) => {
                            failures = 0;
                            if self.endpoints(channel) != connection.endpoints {
                                info!(
                                    target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "orderer-address" = %address,
                                    "Ordering endpoints have been refreshed, disconnecting from deliver to reconnect using updated endpoints"
                                );
                                break;
                            }
                        }
                        Err(err) => {
                            warn!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "orderer-address" = %address, "Got error while attempting to receive blocks: {err}");
                            failures = failures.saturating_add(1);
                            break;
                        }
                    },
                    end => {
                        let cause = match end {
                            Err(status) => rpc_error(&status),
                            _ => "EOF".to_string(),
                        };
                        warn!(target: BLOCKS_PROVIDER, func = "func1", channel, "orderer-address" = %address, "Encountered an error reading from deliver stream: {cause}");
                        warn!(target: BLOCKS_PROVIDER, func = "DeliverBlocks", channel, "orderer-address" = %address, "Orderer hung up without sending status");
                        failures = failures.saturating_add(1);
                        break;
                    }
                }
            }
        }
    }

    /// Fabric's `processMsg`: a block is committed and published; anything else is an error.
    fn process(&self, channel: &str, response: DeliverResponse) -> Result<(), DeliverError> {
        let block = match response.r#type {
            Some(deliver_response::Type::Block(block)) => block,
            Some(deliver_response::Type::Status(code)) => {
                return Err(match FabricStatus::try_from(code) {
                    Ok(FabricStatus::Success) => DeliverError::SuccessStatus,
                    Ok(status) => DeliverError::BadStatus(status.as_str_name().to_string()),
                    Err(_) => DeliverError::BadStatus(code.to_string()),
                });
            }
            None => return Err(DeliverError::UnknownMessage("<nil>")),
        };
        let number = block.header.as_ref().map_or(0, |h| h.number);
        debug!(target: BLOCKS_PROVIDER, func = "processMsg", channel, "Adding payload to local buffer, blockNum = [{number}]");
        match self.channels.append(channel, &block) {
            Ok(()) => {}
            // Gossip (state transfer, or a block another peer pushed) committed this block while
            // it was on its way from the orderer: the ledger is past it. Fabric's payload buffer
            // drops such a block silently; refusing it would end a healthy stream and reconnect.
            Err(ChannelError::Ledger(LedgerError::BlockNumber { expected, found, .. }))
                if found < expected && self.committed(channel, &block) =>
            {
                debug!(target: BLOCKS_PROVIDER, func = "processMsg", channel, "Block [{number}] was already committed, not adding it again");
            }
            Err(err) => {
                return Err(match err {
                    ChannelError::Signatures(_)
                    | ChannelError::Config(_)
                    | ChannelError::Ledger(
                        LedgerError::MissingHeader { .. }
                        | LedgerError::BlockNumber { .. }
                        | LedgerError::PreviousHash { .. }
                        | LedgerError::DataHash { .. },
                    ) => DeliverError::Verify(err),
                    other => DeliverError::Commit(other),
                });
            }
        }
        if self.config.block_gossip_enabled {
            debug!(target: BLOCKS_PROVIDER, func = "processMsg", channel, "Gossiping block [{number}]");
            self.publisher.publish(channel, &block);
        }
        Ok(())
    }

    /// Whether the ledger holds this very block (the same header: number, previous hash, data
    /// hash) at its number. A different block there is a fork, and stays an error.
    fn committed(&self, channel: &str, block: &Block) -> bool {
        let Some(number) = block.header.as_ref().map(|h| h.number) else { return false };
        let committed = self.channels.ledger(channel).and_then(|ledger| ledger.block(number).ok().flatten());
        committed.is_some_and(|committed| committed.header == block.header)
    }

    /// Fabric's `createSeekInfo`: from `height` to the end of time, waiting for blocks.
    fn seek_info(&self, channel: &str, height: u64, rng: &mut ChaCha20Rng) -> Envelope {
        let specified = |number| Some(SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number })) });
        let seek = SeekInfo {
            start: specified(height),
            stop: specified(u64::MAX),
            behavior: SeekBehavior::BlockUntilReady as i32,
            ..SeekInfo::default()
        };
        let mut nonce = [0u8; NONCE_SIZE];
        rng.fill_bytes(&mut nonce);
        let bound = self.tls.as_ref().and_then(|tls| tls.client_pair.as_ref()).map(KeyPair::leaf_hash);
        seek_info_envelope_bound(&self.signer, channel, &seek, nonce, self.env.clock.wall_clock(), bound)
    }

    /// The channel's orderer endpoints, after the address overrides.
    fn endpoints(&self, channel: &str) -> Vec<String> {
        let Some(config) = self.channels.config(channel) else { return Vec::new() };
        config
            .orderer_endpoints()
            .into_iter()
            .map(|address| self.config.address_overrides.iter().find(|(from, _)| *from == address).map_or(address, |(_, to)| to.clone()))
            .collect()
    }

    /// The TLS CAs an orderer endpoint is verified against: those of its address override's
    /// `caCertsFile` if it has one (as Fabric), else with per-org endpoints those of the orgs
    /// listing it, and with the channel-level addresses every orderer org's.
    fn orderer_tls_roots(&self, tls: &DeliverTls, channel: &str, address: &str) -> Vec<CertificateDer<'static>> {
        let original = self.config.address_overrides.iter().find(|(_, to)| to == address).map_or(address, |(from, _)| from.as_str());
        if let Some((_, roots)) = tls.override_roots.iter().find(|(from, _)| from == original) {
            return roots.clone();
        }
        let Some(config) = self.channels.config(channel) else { return Vec::new() };
        let per_org = config.orderer.orgs.values().any(|org| !org.endpoints.is_empty());
        let mut roots = Vec::new();
        for org in config.orderer.orgs.values() {
            if per_org && !org.endpoints.iter().any(|e| e == original) {
                continue;
            }
            if let Some(msp) = config.msp(&org.msp_id) {
                roots.extend(msp_tls_cas(msp));
            }
        }
        roots
    }

    /// Fabric's `connect`: a random endpoint, dialed, `Deliver` opened and the seek sent.
    async fn connect(&self, channel: &str, seek: Envelope, rng: &mut ChaCha20Rng) -> Result<Connection, DeliverError> {
        let endpoints = self.endpoints(channel);
        if endpoints.is_empty() {
            return Err(DeliverError::NoEndpoints);
        }
        let count = u64::try_from(endpoints.len()).unwrap_or(u64::MAX);
        let index = usize::try_from(rng.next_u64() % count).unwrap_or(0);
        let address = endpoints.get(index).cloned().unwrap_or_default();
        let dial_error = |cause: String| DeliverError::Dial { address: address.clone(), cause };
        let target = HostPort::parse(&address).map_err(dial_error)?;
        let keepalive = ClientKeepalive { interval: self.config.keepalive_interval, timeout: self.config.keepalive_timeout };
        let tls = match &self.tls {
            None => None,
            Some(tls) => {
                let roots = self.orderer_tls_roots(tls, channel, &address);
                let (config, _) = tls.context.client(&roots, tls.client_pair.as_ref()).map_err(|e| dial_error(e.to_string()))?;
                Some(ClientTls::new(config))
            }
        };
        let options = ClientOptions { timeout: self.config.conn_timeout, keepalive: Some(keepalive), tls };
        let transport = dial(&self.env, &target, &options).await.map_err(|e| match e {
            failed @ (DialError::Failed(_) | DialError::Handshake(_)) => dial_error(failed.to_string()),
            DialError::TimedOut(_) => DeliverError::DialTimeout { address: address.clone() },
        })?;
        let mut client = AtomicBroadcastClient::new(transport.channel)
            .max_decoding_message_size(self.config.max_recv_msg_size)
            .max_encoding_message_size(self.config.max_send_msg_size);
        let (requests, queue) = mpsc::channel(1);
        // A fresh channel of capacity 1 has room for the seek.
        let _ = requests.try_send(seek);
        // Not awaited here: the answer's headers may come only with the first block.
        let responses = CallStream::new(async move { client.deliver(ReceiverStream::new(queue)).await });
        Ok(Connection { address, endpoints, responses, _requests: requests })
    }
}

/// Completes when `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The next leadership value; never completes once the sender is gone (the value is final).
async fn leadership_changed(leadership: &mut watch::Receiver<bool>) -> bool {
    match leadership.changed().await {
        Ok(()) => *leadership.borrow_and_update(),
        Err(_) => std::future::pending().await,
    }
}

/// Completes when leadership turns false.
async fn lost_leadership(leadership: &mut watch::Receiver<bool>) {
    while leadership_changed(leadership).await {}
}
