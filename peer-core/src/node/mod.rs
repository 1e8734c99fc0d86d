//! `peer node start`: the one start path, for the CLI and for every simulated host.
//!
//! [`start`] runs Fabric's start sequence (spec §4) in Fabric's order with Fabric's log lines,
//! reaching the OS only through the [`Env`]: operations server first, then the ledger (and its
//! lock), the peer listener, gossip, the chaincode listener, system chaincodes, discovery, and
//! finally serving the peer port. It returns a [`RunningNode`]; the caller decides when to stop
//! (the CLI on SIGINT/SIGTERM, the simulator on its timeline).

pub mod address;
pub mod metrics;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::blocks::BlockPublisher;
use crate::blocks::deliverclient::{DeliverClient, DeliverClientConfig};
use crate::channels::Channels;
use crate::config::{Config, HostPort, MetricsProvider};
use crate::env::Env;
use crate::gossip::comm::CommTls;
use crate::gossip::comm::MessageFaults;
use crate::gossip::driver::GossipView;
use crate::gossip::identity::IdentityVerifier;
use crate::gossip::publish::{GossipBlockPublisher, Leadership};
use crate::gossip::{self, GossipHandle, GossipSetup};
use crate::ledger::{LedgerError, LedgerMgr};
use crate::metadata;
use crate::msp::LocalMsp;
use crate::net::serve::ConnectionLimits;
use crate::net::{grpc_metrics, serve};
use crate::services::operations::{LogControl, Operations};
use crate::services::{deliver, discovery, endorser, scc};
use metrics::PeerMetrics;
use tls::{OperationsTlsFiles, PeerTls, PeerTlsError, TlsFiles};

/// The gRPC services of the peer port (generated names), for the gRPC metrics.
const GOSSIP_SERVICE: &str =
    <proto::gossip::gossip_server::GossipServer<crate::gossip::comm::GossipService> as tonic::server::NamedService>::NAME;
const DELIVER_SERVICE: &str = <proto::protos::deliver_server::DeliverServer<deliver::DeliverService> as tonic::server::NamedService>::NAME;
const ENDORSER_SERVICE: &str =
    <proto::protos::endorser_server::EndorserServer<endorser::EndorserService> as tonic::server::NamedService>::NAME;
const DISCOVERY_SERVICE: &str =
    <proto::discovery::discovery_server::DiscoveryServer<discovery::DiscoveryService> as tonic::server::NamedService>::NAME;

/// The chaincode port's connection bound. peer-core runs no chaincode: only gRPC health checks
/// connect there, so a small fixed bound (no key) keeps that port from taking the peer's fds.
const CHAINCODE_MAX_CONNECTIONS: usize = 64;

/// What a peer starts from: its validated config, its local MSP, and how to change log levels.
pub struct Setup {
    pub config: Config,
    pub msp: LocalMsp,
    pub log_control: Arc<dyn LogControl>,
    /// The MSPs of `peer.gossip.trustedMSPs`, loaded (other organizations this peer gossips with).
    pub trusted_msps: Vec<crate::msp::Msp>,
    /// How gossip checks identities and signatures: `gossip::identity::MspVerifier` unless the host says
    /// otherwise (the simulator shares one memo of checked signatures between its peers).
    pub identity_verifier: Arc<dyn IdentityVerifier>,
    /// Faults applied to every gossip message received (the simulator's); `None` on a real peer.
    pub message_faults: Option<Arc<dyn MessageFaults>>,
    /// Who holds the data-directory lock, shown to anyone who finds it taken (e.g. `pid 4242`).
    pub holder: String,
    /// The process's open-file limit (soft `RLIMIT_NOFILE`), read by the CLI; the peer port's
    /// connection bound is lowered to fit it. `None`: no limit known (the simulator, tests).
    pub open_file_limit: Option<u64>,
    /// The files of `peer.tls.*` when `peer.tls.enabled` (read by the host: the CLI from disk, the
    /// simulator from its generated orgs).
    pub tls_files: Option<TlsFiles>,
    /// The files of `operations.tls.*` when `operations.tls.enabled` (read by the host).
    pub operations_tls_files: Option<OperationsTlsFiles>,
}

impl Setup {
    /// A peer that trusts no MSP beyond its own and its channels', checks identities with
    /// Fabric's verifier, injects no faults and knows no open-file limit (the CLI and the
    /// simulator set what they need on top).
    pub fn new(config: Config, msp: LocalMsp, log_control: Arc<dyn LogControl>, holder: impl Into<String>) -> Setup {
        Setup {
            config,
            msp,
            log_control,
            trusted_msps: Vec::new(),
            identity_verifier: Arc::new(crate::gossip::identity::MspVerifier),
            message_faults: None,
            holder: holder.into(),
            open_file_limit: None,
            tls_files: None,
            operations_tls_files: None,
        }
    }
}

/// Why the peer did not start. Texts follow Fabric's where Fabric has one.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The peer's TLS material is unusable.
    #[error("{0}")]
    Tls(#[from] PeerTlsError),
    /// A setting peer-core refuses at start (e.g. TLS, which is not supported yet).
    #[error("{0}")]
    Unsupported(String),
    /// The operations listener could not be bound.
    #[error("failed to initialize operations subsystem: {0}")]
    Operations(String),
    /// The ledger (and its lock) could not be opened.
    #[error("Error in instantiating ledger provider: {0}")]
    Ledger(#[from] LedgerError),
    /// The peer listener could not be bound.
    #[error("Failed to create peer server ({0})")]
    PeerServer(String),
    /// The chaincode endpoint is invalid or its listener could not be bound.
    #[error("Failed to create chaincode server: {0}")]
    ChaincodeServer(String),
}

/// A started peer. Dropping it without [`RunningNode::stop`] aborts its tasks.
pub struct RunningNode {
    /// Where each listener is bound (useful when a config asked for port 0).
    pub peer_listen_address: SocketAddr,
    pub chaincode_listen_address: SocketAddr,
    pub operations_listen_address: SocketAddr,
    /// The address the peer announces (spec §4.1).
    pub peer_address: HostPort,
    /// The gossip membership and the channels' peers as this peer sees them (what `/membership`
    /// shows, and what the Discovery service answers from).
    pub gossip_view: GossipView,
    /// The joined channels (their ledgers and configurations).
    pub channels: Arc<Channels>,
    /// Gossips blocks this peer committed from the ordering service (the deliver client calls it
    /// when this peer is the leader).
    pub gossip_publisher: GossipBlockPublisher,
    /// With `peer.gossip.useLeaderElection`: whether this peer leads each channel for its org.
    pub leadership: Leadership,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode").field("peer_address", &self.peer_address).finish_non_exhaustive()
    }
}

fn bind_error(address: &HostPort, err: &std::io::Error) -> String {
    format!("listen tcp {address}: {}", err.to_string().replace("Address already in use (os error 98)", "bind: address already in use"))
}

/// Starts a peer. Every listener is bound and every service registered before this returns.
pub async fn start(env: Env, setup: Setup) -> Result<RunningNode, StartError> {
    let Setup {
        config,
        msp,
        log_control,
        trusted_msps,
        identity_verifier,
        message_faults,
        holder,
        open_file_limit,
        tls_files,
        operations_tls_files,
    } = setup;
    info!(target: "nodeCmd", func = "serve", "Starting {}", metadata::version_block("peer").trim_end());
    refuse_unsupported(&config)?;

    // §4 step 5: the address this peer announces.
    let peer_address = address::resolve_peer_address(&config.peer, &env.network.interface_addresses());
    if config.peer.profile_enabled {
        warn!(target: "nodeCmd", func = "serve", "peer.profile.enabled is set, but peer-core has no Go profiling server; ignoring it");
    }

    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // Step 7: the operations server comes first, so /healthz answers while the rest starts.
    // Every metric is created (and counted) whatever the provider; only prometheus serves them.
    let peer_metrics = PeerMetrics::default();
    let metrics = (config.metrics.provider == MetricsProvider::Prometheus)
        .then(|| Arc::new(metrics::registry(&env, &peer_metrics, log_control.as_ref())));
    let gossip_view = GossipView::default();
    if config.metrics.provider == MetricsProvider::Statsd {
        warn!(target: "peer.operations", func = "NewSystem", "statsd metrics are not supported by peer-core yet; metrics disabled");
    }
    let operations_address = config.operations.listen_address.clone().unwrap_or_else(|| HostPort::new("", 0));
    let operations_listener =
        env.network.bind(&operations_address).await.map_err(|e| StartError::Operations(bind_error(&operations_address, &e)))?;
    let operations_listen_address = operations_listener.local_addr().map_err(|e| StartError::Operations(e.to_string()))?;
    let membership_view = gossip_view.clone();
    let membership: Arc<dyn Fn() -> serde_json::Value + Send + Sync> = Arc::new(move || membership_view.to_json());
    let operations_tls = match (config.operations.tls.enabled, &operations_tls_files) {
        (false, _) => None,
        (true, None) => return Err(StartError::Operations("operations.tls.enabled is true but no TLS files were given".into())),
        (true, Some(files)) => Some(
            files
                .server(&env, config.operations.tls.client_auth_required)
                .map_err(|e| StartError::Operations(format!("failed to initialize operations subsystem: {e}")))?,
        ),
    };
    let ops = Operations {
        clock: env.clock.clone(),
        log_control,
        metrics,
        checks: Arc::new(Vec::new()),
        membership: Some(membership),
        tls: operations_tls.is_some(),
    };
    let operations_limits = ConnectionLimits {
        max_connections: config.operations.max_connections,
        bound_by: "operations.limits.maxConnections".into(),
        handshake_timeout: serve::OPERATIONS_READ_HEADER_TIMEOUT,
    };
    debug!(target: "fabhttp", func = "Start", "the operations server accepts at most {} connections", operations_limits.max_connections);
    tasks.spawn(serve::serve_http1(
        operations_listener,
        env.clock.clone(),
        move |request| {
            let ops = ops.clone();
            async move { ops.handle(request).await }
        },
        operations_limits.clone(),
        operations_tls,
        stop_rx.clone(),
    ));

    // Step 12: the peer's TLS, from the files the host read.
    let tls = match (config.peer.tls.enabled, tls_files) {
        (false, _) => None,
        (true, None) => return Err(StartError::Tls(PeerTlsError::NoFiles)),
        (true, Some(files)) => Some(Arc::new(PeerTls::new(&env, &config.peer.tls, &files)?)),
    };

    // Step 13: concurrency limits.
    let limits = [("/protos.Endorser", config.peer.endorser_concurrency), ("/protos.Deliver", config.peer.deliver_concurrency)];
    for (name, limit) in [("endorser", limits[0].1), ("deliver", limits[1].1)] {
        if limit > 0 {
            info!(target: "nodeCmd", func = "initGrpcSemaphores", "concurrency limit for {name} service is {limit}");
        }
    }

    // Step 14.
    if tls.is_some() {
        info!(target: "nodeCmd", func = "serve", "Starting peer with TLS enabled");
    }

    // Step 18: certificate expiry.
    info!(target: "certmonitor", func = "trackCertExpiration", "{}", msp.expiry_message());
    let remaining = msp.enrollment_cert_expiry().duration_since(env.clock.wall_clock()).unwrap_or(Duration::ZERO);
    if remaining < Duration::from_secs(7 * 24 * 3600) {
        warn!(target: "certmonitor", func = "trackCertExpiration", "The enrollment certificate will expire within one week");
    }
    if let Some(tls) = &tls {
        tls.log_start(env.clock.wall_clock());
    }

    // Step 23: the ledger manager takes the data-directory lock.
    let ledger = LedgerMgr::open(&env, &config.peer.file_system_path, &holder)?;
    // A channel whose store does not open is left out; the peer serves the others (as Fabric's
    // peer.Initialize does for a ledger that fails to load).
    for (channel, err) in ledger.channel_errors() {
        error!(target: "peer", func = "Initialize", "Failed to load ledger {channel}({err})");
    }
    let channels = Arc::new(Channels::open_with_metrics(ledger, peer_metrics.ledger.clone(), env.clock.clone())?);
    if let Some(tls) = &tls {
        tls.trust_channels(&channels.configs())?;
        tasks.spawn(follow_channel_cas(tls.clone(), channels.clone(), channels.subscribe_configs(), stop_rx.clone()));
    }

    // Step 24: bind the peer port now; it is served only at the end.
    let peer_listener = env
        .network
        .bind(&config.peer.listen_address)
        .await
        .map_err(|e| StartError::PeerServer(bind_error(&config.peer.listen_address, &e)))?;
    let peer_listen_address = peer_listener.local_addr().map_err(|e| StartError::PeerServer(e.to_string()))?;

    // Step 25: gossip. Outbound contacts (bootstrap, anchors) start now; inbound streams are
    // served once the peer port is served, at the end.
    let internal_endpoint = config.gossip.endpoint.clone().unwrap_or_else(|| peer_address.clone());
    info!(target: "gossip.service", func = "New", "Initialize gossip with endpoint {internal_endpoint}");
    let external = config.gossip.external_endpoint.as_ref().map(ToString::to_string).unwrap_or_default();
    info!(
        target: "gossip.gossip",
        func = "New",
        "Creating gossip service with self membership of Endpoint: {external}, InternalEndpoint: {internal_endpoint}, PKI-ID: {}, Metadata: ",
        msp.pki_id()
    );
    if config.gossip.external_endpoint.is_none() {
        warn!(target: "gossip.gossip", func = "New", "External endpoint is empty, peer will not be accessible outside of its organization");
    }
    let gossip = gossip::start(
        &env,
        GossipSetup {
            config: Arc::new(config.clone()),
            msp: msp.clone(),
            trusted_msps,
            verifier: identity_verifier,
            internal_endpoint: internal_endpoint.clone(),
            external_endpoint: external,
            channels: channels.clone(),
            view: gossip_view.clone(),
            metrics: peer_metrics.gossip.clone(),
            comm_metrics: peer_metrics.comm.clone(),
            message_faults,
            tls: tls.as_ref().map(|tls| CommTls {
                client: tls.gossip_client(),
                client_cert_hash: tls.client_pair.leaf_hash(),
                server_cert_hash: tls.server_pair.leaf_hash(),
            }),
            stop: stop_rx.clone(),
        },
        &mut tasks,
    );
    let GossipHandle { comm, publisher: gossip_publisher, leadership, view: _ } = gossip;
    info!(target: "gossip.gossip", func = "start", "Gossip instance {internal_endpoint} started");

    // Step 30: the chaincode server, with the standard gRPC health service.
    let chaincode =
        address::chaincode_endpoints(&config.peer, &peer_address.host, config.chaincode.mode).map_err(StartError::ChaincodeServer)?;
    let chaincode_listener =
        env.network.bind(&chaincode.listen).await.map_err(|e| StartError::ChaincodeServer(bind_error(&chaincode.listen, &e)))?;
    let chaincode_listen_address = chaincode_listener.local_addr().map_err(|e| StartError::ChaincodeServer(e.to_string()))?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let chaincode_routes = tonic::service::Routes::new(health_service);
    let chaincode_limits = ConnectionLimits {
        max_connections: CHAINCODE_MAX_CONNECTIONS,
        bound_by: "peer-core's fixed bound for the chaincode port (it runs no chaincode)".into(),
        handshake_timeout: config.peer.connection_timeout,
    };
    tasks.spawn(serve::serve_grpc(
        chaincode_listener,
        env.clock.clone(),
        serve::answering_unknown_services(chaincode_routes),
        config.peer.keepalive.clone(),
        chaincode_limits,
        stop_rx.clone(),
    ));

    // Step 36: system chaincodes, in Fabric's order. The log says only what runs: lscc and
    // _lifecycle are not implemented, so they are never "deployed" (a deliberate departure from
    // Fabric's log, listed in ARCHITECTURE.md).
    for name in ["lscc", "cscc", "qscc", "_lifecycle"] {
        let enabled = config.chaincode.system.get(name).copied().unwrap_or(false);
        if enabled && scc::is_implemented(name) {
            info!(target: "sccapi", func = "DeploySysCC", "deploying system chaincode '{name}'");
        } else if enabled {
            info!(target: "nodeCmd", func = "serve", "not deploying chaincode {name}: peer-core does not implement it (proposals to it are refused)");
        } else {
            info!(target: "nodeCmd", func = "serve", "not deploying chaincode {name} as it is not enabled");
        }
    }
    info!(target: "nodeCmd", func = "serve", "Deployed system chaincodes");

    // Step 38 (the delivery part): each joined channel, and each channel joined later, gets a
    // deliver client task that pulls blocks while this peer leads the channel for its org.
    // Committed blocks go to gossip, which disseminates them to the org (unless
    // peer.deliveryclient.blockGossipEnabled is off; the deliver client checks that).
    let publisher: Arc<dyn BlockPublisher> = Arc::new(gossip_publisher.clone());
    let mut deliver_client =
        DeliverClient::new(env.clone(), channels.clone(), Arc::new(msp.clone()), publisher, DeliverClientConfig::from_config(&config))
            .with_tls(tls.as_ref().map(|tls| tls.deliver()));
    let election = config.gossip.use_leader_election.then(|| leadership.clone());
    if let Some(leadership) = election.clone() {
        // Fabric's deliver service finalizer: a leader that gives up on the orderers yields.
        deliver_client = deliver_client.on_give_up(Arc::new(move |channel: &str| leadership.give_up(channel)));
    }
    let source = BlockSource { org_leader: config.gossip.org_leader, election };
    tasks.spawn(deliver_channels(Arc::new(deliver_client), channels.clone(), source, env.clock.clone(), stop_rx.clone()));

    // Steps 28, 39, 46: the services on the peer port.
    let max_recv = config.peer.max_recv_msg_size;
    let max_send = config.peer.max_send_msg_size;
    let deliver_service = deliver::DeliverService::new(channels.clone(), env.clock.clone(), config.peer.authentication_timewindow)
        .with_metrics(peer_metrics.deliver.clone())
        .with_binding(tls.as_ref().is_some_and(|tls| tls.client_auth_required));
    // The gRPC services on the peer port, by name, for the gRPC metrics.
    let mut served = vec![GOSSIP_SERVICE, DELIVER_SERVICE, ENDORSER_SERVICE];
    let mut routes = tonic::service::Routes::new(comm.server()).add_service(
        proto::protos::deliver_server::DeliverServer::new(deliver_service)
            // Clients send only SeekInfo envelopes on this service: bounded far below the
            // peer-wide limit (which is for blocks and proposals).
            .max_decoding_message_size(max_recv.min(deliver::MAX_ENVELOPE_BYTES))
            .max_encoding_message_size(max_send),
    );
    // Step 39: Discovery.
    if config.peer.discovery.enabled {
        let service = discovery::DiscoveryService::new(
            discovery::DiscoverySettings::from_config(&config),
            msp.clone(),
            channels.clone(),
            gossip_view.clone(),
            env.clock.clone(),
        );
        info!(target: "nodeCmd", func = "registerDiscoveryService", "Discovery service activated");
        routes = routes.add_service(
            proto::discovery::discovery_server::DiscoveryServer::new(service)
                .max_decoding_message_size(max_recv)
                .max_encoding_message_size(max_send),
        );
        served.push(DISCOVERY_SERVICE);
    }
    let announce = format!("ID=[{}], network ID=[{}], address=[{peer_address}]", config.peer.id, config.peer.network_id);
    info!(target: "nodeCmd", func = "serve", "Starting peer with {announce}");
    info!(target: "nodeCmd", func = "serve", "Started peer with {announce}");

    // Step 44: pre-reset heights (recorded by `node reset`/`rollback`).
    // Endorsement stays blocked while a channel is below its height (the endorser asks
    // `Channels::endorsement_blocked`); `Channels::open` loaded them, here they are logged as
    // Fabric does.
    let ledger = channels.ledger_mgr();
    let chains = ledger.root().join("chains");
    info!(target: "kvledger", func = "LoadPreResetHeight", "Loading prereset height from path [{}]", chains.display());
    if ledger.active_channels().is_empty() {
        info!(target: "blkstorage", func = "LoadPreResetHeight", "No active channels passed");
    }
    let pre_reset_heights = channels.pre_reset_heights();
    if !pre_reset_heights.is_empty() {
        // Go's %v of a map[string]uint64: keys sorted, `map[a:1 b:2]`.
        let entries: Vec<String> = pre_reset_heights.iter().map(|(channel, height)| format!("{channel}:{height}")).collect();
        info!(target: "blkstorage", func = "LoadPreResetHeight", "Pre-reset heights loaded: map[{}]", entries.join(" "));
        // Step 45: endorsement stays blocked until every channel is back at its height; checked
        // every 10s (blocks arrive by the ordering service or state transfer).
        tasks.spawn(pre_reset_loop(channels.clone(), env.clock.clone(), stop_rx.clone()));
    }

    let endorser = endorser::EndorserService::new(
        channels.clone(),
        msp.clone(),
        env.clock.clone(),
        config.peer.handlers.auth_filters.clone(),
        config.peer.authentication_timewindow,
    )
    .with_metrics(peer_metrics.endorser.clone());
    routes = routes.add_service(
        proto::protos::endorser_server::EndorserServer::new(endorser)
            .max_decoding_message_size(max_recv)
            .max_encoding_message_size(max_send),
    );
    // Step 47: serve the peer port.
    // Fabric's gRPC metrics interceptors come before its concurrency limiter: refused calls count.
    let peer_service = grpc_metrics::GrpcMetrics::new(
        serve::ConcurrencyLimit::new(serve::answering_unknown_services(routes), &limits),
        peer_metrics.grpc.clone(),
        env.clock.clone(),
        &served,
    );
    let reserved = (operations_limits.max_connections + CHAINCODE_MAX_CONNECTIONS) as u64 + serve::FD_RESERVE;
    let peer_limits = ConnectionLimits::peer_port(config.peer.max_connections, config.peer.connection_timeout, reserved, open_file_limit);
    if peer_limits.max_connections < config.peer.max_connections {
        let message = format!(
            "the peer port accepts at most {} connections: peer.limits.maxConnections is {}, but the open-file limit is {} and {reserved} \
             are kept for the operations and chaincode ports, ledgers and outbound connections; raise the limit (ulimit -n) to allow more",
            peer_limits.max_connections,
            config.peer.max_connections,
            open_file_limit.unwrap_or_default(),
        );
        // Below what even the reserve needs, running out of descriptors stays possible: say so louder.
        if open_file_limit.is_some_and(|limit| limit < reserved + serve::MIN_PEER_CONNECTIONS as u64) {
            warn!(target: "comm.grpc.server", func = "NewGRPCServer", "{message}");
        } else {
            info!(target: "comm.grpc.server", func = "NewGRPCServer", "{message}");
        }
    } else {
        info!(target: "comm.grpc.server", func = "NewGRPCServer", "the peer port accepts at most {} connections (peer.limits.maxConnections)", peer_limits.max_connections);
    }
    let peer_server = serve::GrpcServer {
        name: "PeerServer",
        keepalive: config.peer.keepalive.clone(),
        limits: peer_limits,
        counters: Some(peer_metrics.grpc.connections.clone()),
        tls: tls.as_ref().map(|tls| tls.server.clone()),
    };
    tasks.spawn(serve::serve_grpc_with(peer_listener, env.clock.clone(), peer_service, peer_server, stop_rx));

    Ok(RunningNode {
        peer_listen_address,
        chaincode_listen_address,
        operations_listen_address,
        peer_address,
        gossip_view,
        channels,
        gossip_publisher,
        leadership,
        stop,
        tasks,
    })
}

/// Who pulls blocks for a channel (Fabric's `InitializeChannel`): a static leader always, a
/// peer with leader election while elected, any other peer never.
#[derive(Clone, Debug)]
struct BlockSource {
    org_leader: bool,
    /// With `peer.gossip.useLeaderElection`: the election's per-channel outcome.
    election: Option<Leadership>,
}

impl BlockSource {
    /// The leadership watch for `channel`'s deliver client, or `None` when this peer never pulls.
    fn watch(&self, channel: &str) -> Option<watch::Receiver<bool>> {
        if let Some(election) = &self.election {
            debug!(target: "gossip.service", func = "InitializeChannel", "Delivery uses dynamic leader election mechanism, channel {channel}");
            Some(election.watch(channel))
        } else if self.org_leader {
            debug!(target: "gossip.service", func = "InitializeChannel", "This peer is configured to connect to ordering service for blocks delivery, channel {channel}");
            // The sender is dropped: the value stays true.
            Some(watch::channel(true).1)
        } else {
            debug!(target: "gossip.service", func = "InitializeChannel", "This peer is not configured to connect to ordering service for blocks delivery, channel {channel}");
            None
        }
    }
}

/// Keeps the channels served: starts a deliver client task for every joined channel, and for
/// each channel joined later; rebuilds a channel whose store fails while serving, or could not be
/// rebuilt at start (`Channels::heal_failed`, again after 1s, 2s, then every 4s while one cannot
/// be: a disk that recovers is used within seconds); on stop, waits for the deliver clients to end.
async fn deliver_channels(
    client: Arc<DeliverClient>,
    channels: Arc<Channels>,
    source: BlockSource,
    clock: Arc<dyn crate::env::Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let mut joined = channels.subscribe_joined();
    let mut alarm = channels.ledger_mgr().subscribe_alarm();
    // Channels that could not be rebuilt at start are tried again, backing off from 1s to 4s.
    let mut delay = Duration::from_secs(1);
    // A store may have failed before this task listened (reading the channel configs at start).
    let mut retry = channels.ledger_mgr().needs_healing().then(|| clock.now());
    let mut seen = std::collections::BTreeSet::new();
    let mut tasks = JoinSet::new();
    loop {
        let ids = joined.borrow_and_update().clone();
        for id in ids {
            if seen.insert(id.clone())
                && let Some(watch) = source.watch(&id)
            {
                tasks.spawn(client.run(id, watch, stop.clone()));
            }
        }
        let heal = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            changed = joined.changed() => if changed.is_err() { break } else { false },
            rang = alarm.changed() => rang.is_ok(),
            () = async { clock.sleep_until(retry.unwrap_or_default()).await }, if retry.is_some() => true,
        };
        if heal {
            if channels.heal_failed() {
                retry = None;
                delay = Duration::from_secs(1);
            } else {
                retry = Some(clock.now() + delay);
                delay = (delay * 2).min(Duration::from_secs(4));
            }
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Fabric's reset loop: every 10s, are all channels back at their pre-reset heights?
async fn pre_reset_loop(channels: Arc<Channels>, clock: Arc<dyn crate::env::Clock>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = clock.sleep(Duration::from_secs(10)) => {}
        }
        if !channels.recheck_pre_reset() {
            return;
        }
    }
}

/// Settings Fabric supports that peer-core does not yet: refused with a clear error rather than
/// silently running without them.
fn refuse_unsupported(config: &Config) -> Result<(), StartError> {
    if config.gossip.org_leader && config.gossip.use_leader_election {
        // Fabric panics at channel initialization: `Setting both orgLeader and useLeaderElection
        // to true isn't supported, aborting execution`.
        return Err(StartError::Unsupported(
            "peer.gossip.orgLeader and peer.gossip.useLeaderElection are both true: Setting both orgLeader and useLeaderElection to true isn't supported, aborting execution".into(),
        ));
    }
    Ok(())
}

/// Keeps the peer's TLS trust pools on the joined channels' orgs: rebuilt after every join and
/// config block, until `stop`.
async fn follow_channel_cas(
    tls: Arc<PeerTls>,
    channels: Arc<Channels>,
    mut installed: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            changed = installed.changed() => {
                if changed.is_err() {
                    return;
                }
                tls.update_trust(&channels.configs());
            }
        }
    }
}

impl RunningNode {
    /// Stops the peer: stops accepting, stops gossip, closes the ledger (releasing the lock).
    pub async fn stop(mut self) {
        info!(target: "gossip.gossip", func = "Stop", "Stopping gossip");
        info!(target: "gossip.discovery", func = "Stop", "Stopping");
        info!(target: "gossip.discovery", func = "Stop", "Stopped");
        info!(target: "gossip.comm", func = "Stop", "Stopping");
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        info!(target: "gossip.comm", func = "Stop", "Stopped");
        // The services (and with them their handles on the channels) ended with their tasks;
        // dropping the last handle closes the ledger and releases the data-directory lock.
        drop(self.channels);
    }
}
