//! Every core.yaml key the peer reads, its type and its default (Fabric 2.2's, see the spec §3).
//!
//! One line per key keeps the mapping from Fabric's key names to fields reviewable. Keys Fabric
//! reads "get-or-default" (an explicit zero means the default) use the `nonzero_*` getters.
//! Keys that only matter to chaincode containers or to Fabric 2.5+ are marked known and left
//! unread, so they are not reported as unknown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Note;
use super::reader::{Origin, Reader};
use super::tree::{Node, NodeKind};
use super::value::{HostPort, format_duration};

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The whole validated config.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file this config was read from; relative paths were resolved against its directory.
    pub file: PathBuf,
    pub peer: PeerConfig,
    pub gossip: GossipConfig,
    pub delivery_client: DeliveryClientConfig,
    pub ledger: LedgerConfig,
    pub operations: OperationsConfig,
    pub metrics: MetricsConfig,
    pub chaincode: ChaincodeConfig,
    pub vm: VmConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PeerConfig {
    pub id: String,
    pub network_id: String,
    pub listen_address: HostPort,
    /// `peer.address` as written; the start path resolves unspecified hosts (spec §4.1).
    pub address: HostPort,
    pub address_auto_detect: bool,
    pub chaincode_listen_address: Option<HostPort>,
    pub chaincode_address: Option<HostPort>,
    pub connection_timeout: Duration,
    pub keepalive: KeepaliveConfig,
    pub max_recv_msg_size: usize,
    pub max_send_msg_size: usize,
    pub tls: TlsConfig,
    pub authentication_timewindow: Duration,
    pub file_system_path: PathBuf,
    pub msp_config_path: PathBuf,
    pub local_msp_id: String,
    pub local_msp_type: MspType,
    pub bccsp: BccspConfig,
    pub client_conn_timeout: Duration,
    pub profile_enabled: bool,
    pub profile_listen_address: Option<HostPort>,
    /// `None`: one validator per CPU.
    pub validator_pool_size: Option<u32>,
    /// 0 = unlimited.
    pub endorser_concurrency: u32,
    /// 0 = unlimited.
    pub deliver_concurrency: u32,
    /// `peer.limits.maxConnections` (peer-core's own key; Fabric has no bound): open connections
    /// on the peer port at most. The start path may lower it to fit the open-file limit.
    pub max_connections: usize,
    pub discovery: DiscoveryConfig,
    pub handlers: HandlersConfig,
}

/// `peer.keepalive.*`. [`Default`] is Fabric's defaults (also its orderer's `General.Keepalive`
/// server values), the one place they are written down.
#[derive(Clone, Debug, PartialEq)]
pub struct KeepaliveConfig {
    pub interval: Duration,
    pub timeout: Duration,
    pub min_interval: Duration,
    pub client_interval: Duration,
    pub client_timeout: Duration,
    pub delivery_client_interval: Duration,
    pub delivery_client_timeout: Duration,
}

impl Default for KeepaliveConfig {
    fn default() -> KeepaliveConfig {
        KeepaliveConfig {
            interval: Duration::from_secs(7200),
            timeout: Duration::from_secs(20),
            min_interval: Duration::from_secs(60),
            client_interval: Duration::from_secs(60),
            client_timeout: Duration::from_secs(20),
            delivery_client_interval: Duration::from_secs(60),
            delivery_client_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct TlsConfig {
    pub enabled: bool,
    pub client_auth_required: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub root_cert_file: Option<PathBuf>,
    pub client_root_cas: Vec<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// `peer.tls.serverhostoverride`: the name the `channel` commands expect in the peer's TLS
    /// certificate instead of the dialed host (not in Fabric's core.yaml; its CLI reads it).
    pub server_host_override: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MspType {
    /// Fabric's X.509 MSP (`bccsp`).
    Fabric,
    Idemix,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BccspConfig {
    /// Where the private key is; `None` means `<mspConfigPath>/keystore`.
    pub keystore: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    pub auth_cache_enabled: bool,
    pub auth_cache_max_size: u64,
    pub auth_cache_purge_retention_ratio: f64,
    pub org_members_allowed_access: bool,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct HandlersConfig {
    pub auth_filters: Vec<String>,
    pub decorators: Vec<String>,
    pub endorsers: BTreeMap<String, String>,
    pub validators: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GossipConfig {
    pub bootstrap: Vec<HostPort>,
    pub use_leader_election: bool,
    pub org_leader: bool,
    pub membership_tracker_interval: Duration,
    /// Internal endpoint override; `None` means the resolved peer address.
    pub endpoint: Option<HostPort>,
    /// `None`: this peer is invisible outside its organization.
    pub external_endpoint: Option<HostPort>,
    pub max_block_count_to_store: u64,
    pub max_propagation_burst_latency: Duration,
    pub max_propagation_burst_size: u64,
    pub propagate_iterations: u64,
    pub propagate_peer_num: u64,
    pub pull_interval: Duration,
    pub pull_peer_num: u64,
    pub request_state_info_interval: Duration,
    pub publish_state_info_interval: Duration,
    pub publish_cert_period: Duration,
    pub skip_block_verification: bool,
    pub dial_timeout: Duration,
    pub conn_timeout: Duration,
    pub recv_buff_size: u64,
    pub send_buff_size: u64,
    pub digest_wait_time: Duration,
    pub request_wait_time: Duration,
    pub response_wait_time: Duration,
    pub alive_time_interval: Duration,
    pub alive_expiration_timeout: Duration,
    /// Not configurable: aliveExpirationTimeout / 10.
    pub alive_expiration_check_interval: Duration,
    pub reconnect_interval: Duration,
    pub max_connection_attempts: u64,
    pub msg_expiration_factor: u64,
    pub non_blocking_commit_mode: bool,
    pub election: ElectionConfig,
    pub pvt_data: PvtDataConfig,
    pub state: StateConfig,
    /// peer-core's stand-in for channel configs until channels exist: other organizations'
    /// MSPs (so their peers' identities validate) and their anchor peers.
    pub trusted_msps: Vec<TrustedMsp>,
}

/// An organization whose members this peer accepts in gossip (`peer.gossip.trustedMSPs`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrustedMsp {
    pub id: String,
    /// The organization's MSP directory (cacerts, and config.yaml for NodeOUs).
    pub dir: PathBuf,
    pub anchor_peers: Vec<HostPort>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ElectionConfig {
    pub startup_grace_period: Duration,
    pub membership_sample_interval: Duration,
    pub leader_alive_threshold: Duration,
    pub leader_election_duration: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PvtDataConfig {
    pub pull_retry_threshold: Duration,
    pub transientstore_max_block_retention: u64,
    pub push_ack_timeout: Duration,
    pub btl_pull_margin: u64,
    pub reconcile_batch_size: u64,
    pub reconcile_sleep_interval: Duration,
    pub reconciliation_enabled: bool,
    pub skip_pulling_invalid_transactions_during_commit: bool,
    pub implicit_collection_required_peer_count: u64,
    pub implicit_collection_max_peer_count: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    pub enabled: bool,
    pub check_interval: Duration,
    pub response_timeout: Duration,
    pub batch_size: u64,
    pub block_buffer_size: u64,
    pub max_retries: u64,
    pub channel_size: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryClientConfig {
    pub block_gossip_enabled: bool,
    pub reconnect_total_time_threshold: Duration,
    pub conn_timeout: Duration,
    pub reconnect_backoff_threshold: Duration,
    pub address_overrides: Vec<AddressOverride>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AddressOverride {
    pub from: String,
    pub to: String,
    /// As given: Fabric reads this one relative to the working directory, not the config dir.
    pub ca_certs_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LedgerConfig {
    pub total_query_limit: u64,
    pub history_enabled: bool,
    pub pvtdata_store: PvtdataStoreConfig,
    /// Default `<fileSystemPath>/ledgersData/snapshots`; must be absolute.
    pub snapshots_root_dir: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PvtdataStoreConfig {
    pub coll_elg_proc_max_db_batch_size: u64,
    pub coll_elg_proc_db_batches_interval: Duration,
    pub purge_interval: u64,
    pub deprioritized_data_reconciler_interval: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OperationsConfig {
    /// `None`: an ephemeral port on every interface (what Go does with an empty address).
    pub listen_address: Option<HostPort>,
    pub tls: OperationsTlsConfig,
    /// `operations.limits.maxConnections` (peer-core's own key): open connections at most.
    pub max_connections: usize,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct OperationsTlsConfig {
    pub enabled: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_auth_required: bool,
    pub client_root_cas: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricsConfig {
    pub provider: MetricsProvider,
    pub statsd: StatsdConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsProvider {
    Prometheus,
    Statsd,
    Disabled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StatsdConfig {
    pub network: StatsdNetwork,
    pub address: Option<HostPort>,
    pub write_interval: Duration,
    /// With the trailing `.` Fabric adds.
    pub prefix: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsdNetwork {
    Udp,
    Tcp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChaincodeConfig {
    pub mode: ChaincodeMode,
    pub install_timeout: Duration,
    pub startup_timeout: Duration,
    pub execute_timeout: Duration,
    /// 0 disables chaincode keepalive.
    pub keepalive: Duration,
    pub external_builders: Vec<ExternalBuilder>,
    /// System chaincodes by name, and whether each is enabled.
    pub system: BTreeMap<String, bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChaincodeMode {
    Net,
    Dev,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExternalBuilder {
    pub name: String,
    /// As given (Fabric does not resolve it against the config dir).
    pub path: PathBuf,
    pub propagate_environment: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VmConfig {
    /// Empty: no Docker (peer-core runs no chaincode containers).
    pub endpoint: String,
    pub docker_tls_enabled: bool,
    pub docker_tls_ca_file: Option<PathBuf>,
    pub docker_tls_cert_file: Option<PathBuf>,
    pub docker_tls_key_file: Option<PathBuf>,
    pub docker_attach_stdout: bool,
}

const MIB: u64 = 1 << 20;

pub(super) fn read(r: &mut Reader<'_>, file: &Path) -> Config {
    // Fabric's logging keys moved to FABRIC_LOGGING_SPEC; a leftover value only earns a warning.
    if r.string("logging.level").is_some() || r.string("logging_level").is_some() {
        r.notes
            .push(Note::warn("main", "CORE_LOGGING_LEVEL is no longer supported, please use the FABRIC_LOGGING_SPEC environment variable"));
    }
    r.known("logging");
    let peer = read_peer(r);
    let gossip = read_gossip(r);
    let delivery_client = read_delivery_client(r);
    let ledger = read_ledger(r, &peer.file_system_path);
    let operations = read_operations(r);
    let metrics = read_metrics(r);
    let chaincode = read_chaincode(r);
    let vm = read_vm(r);
    Config { file: file.to_path_buf(), peer, gossip, delivery_client, ledger, operations, metrics, chaincode, vm }
}

/// A required address: missing is an error with `missing` as the reason (Fabric's own words).
fn required_address(r: &mut Reader<'_>, key: &str, missing: &str) -> HostPort {
    if let Some(address) = r.host_port(key) {
        return address;
    }
    if r.string(key).is_none() {
        r.missing(key, missing);
    }
    HostPort::new("", 0)
}

/// An address other peers dial: it needs a host and a non-zero port.
fn dialable_address(r: &mut Reader<'_>, key: &str) -> Option<HostPort> {
    let address = r.host_port(key)?;
    if address.host.is_empty() || address.port == 0 {
        let origin = r.text(key).map(|(_, origin)| origin);
        r.fail(key, origin, format!("{address} cannot be dialed: it needs a host and a non-zero port"));
        return None;
    }
    Some(address)
}

/// A required identifier: printable text, and missing is an error with `missing` as the reason.
fn required_identifier(r: &mut Reader<'_>, key: &str, missing: &str) -> String {
    if let Some(id) = r.identifier(key) {
        return id;
    }
    if r.string(key).is_none() {
        r.missing(key, missing);
    }
    String::new()
}

/// `peer.limits.maxConnections` when unset: far above what a peer's gossip neighbours, client
/// applications and event listeners use (hundreds in large networks), low enough that idle
/// connections cannot cost more than a few hundred MB. The open-file limit usually binds first
/// (the start path lowers the bound to fit it).
pub const DEFAULT_PEER_MAX_CONNECTIONS: usize = 4096;

/// `operations.limits.maxConnections` when unset: health probes, metric scrapers and admins make
/// short requests; a few dozen at once is already unusual.
pub const DEFAULT_OPERATIONS_MAX_CONNECTIONS: usize = 64;

/// The most either bound may be: Linux's default ceiling on open files per process (`nr_open`).
const MAX_CONNECTIONS: i64 = 1 << 20;

/// A connection bound (peer-core's own keys, so no Fabric "zero means the default"): 1 or more.
fn max_connections(r: &mut Reader<'_>, key: &str, default: usize) -> usize {
    r.integer(key, 1, MAX_CONNECTIONS).map_or(default, |n| n as usize)
}

fn read_peer(r: &mut Reader<'_>) -> PeerConfig {
    let listen_address = required_address(r, "peer.listenAddress", "missing address parameter");
    let address = required_address(r, "peer.address", "peer.address isn't set");
    let tls = read_peer_tls(r);
    let authentication_timewindow = match r.duration("peer.authentication.timewindow") {
        Some(d) if !d.is_zero() => d,
        _ => {
            let default = secs(15 * 60);
            r.notes.push(Note::warn(
                "common.deliverevents",
                format!("`peer.authentication.timewindow` not set; defaulting to {}", format_duration(default)),
            ));
            default
        }
    };
    let file_system_path = r.path("peer.fileSystemPath").unwrap_or_else(|| {
        r.missing("peer.fileSystemPath", "the peer needs a directory for its ledger and state");
        PathBuf::new()
    });
    let msp_config_path = r.path("peer.mspConfigPath").unwrap_or_else(|| {
        r.missing("peer.mspConfigPath", "the peer needs its local MSP directory");
        PathBuf::new()
    });
    let local_msp_id = required_identifier(r, "peer.localMspId", "the local MSP must have an ID");
    let local_msp_type = r.choice("peer.localMspType", &[("bccsp", MspType::Fabric), ("idemix", MspType::Idemix)], MspType::Fabric);
    let bccsp = read_bccsp(r);
    let validator_pool_size = match r.integer("peer.validatorPoolSize", 0, i64::from(u32::MAX)) {
        Some(0) | None => None,
        Some(n) => Some(n as u32),
    };
    let concurrency = |r: &mut Reader<'_>, key: &str| r.integer(key, 0, i64::from(u32::MAX)).unwrap_or(0) as u32;
    let endorser_concurrency = concurrency(r, "peer.limits.concurrency.endorserService");
    let deliver_concurrency = concurrency(r, "peer.limits.concurrency.deliverService");
    let max_connections = max_connections(r, "peer.limits.maxConnections", DEFAULT_PEER_MAX_CONNECTIONS);
    r.known("peer.limits.concurrency.gatewayService");
    r.known("peer.gateway");
    let max_msg = |r: &mut Reader<'_>, key: &str| r.nonzero_u64_or(key, 100 * MIB, 2048 * MIB) as usize;
    let keepalive = KeepaliveConfig::default();
    PeerConfig {
        id: r.identifier("peer.id").unwrap_or_default(),
        network_id: r.identifier("peer.networkId").unwrap_or_default(),
        listen_address,
        address,
        address_auto_detect: r.bool_or("peer.addressAutoDetect", false),
        chaincode_listen_address: r.host_port("peer.chaincodeListenAddress"),
        chaincode_address: r.host_port("peer.chaincodeAddress"),
        connection_timeout: r.nonzero_duration_or("peer.connectiontimeout", secs(5)),
        keepalive: KeepaliveConfig {
            interval: r.nonzero_duration_or("peer.keepalive.interval", keepalive.interval),
            timeout: r.nonzero_duration_or("peer.keepalive.timeout", keepalive.timeout),
            min_interval: r.nonzero_duration_or("peer.keepalive.minInterval", keepalive.min_interval),
            client_interval: r.nonzero_duration_or("peer.keepalive.client.interval", keepalive.client_interval),
            client_timeout: r.nonzero_duration_or("peer.keepalive.client.timeout", keepalive.client_timeout),
            delivery_client_interval: r.nonzero_duration_or("peer.keepalive.deliveryClient.interval", keepalive.delivery_client_interval),
            delivery_client_timeout: r.nonzero_duration_or("peer.keepalive.deliveryClient.timeout", keepalive.delivery_client_timeout),
        },
        max_recv_msg_size: max_msg(r, "peer.maxRecvMsgSize"),
        max_send_msg_size: max_msg(r, "peer.maxSendMsgSize"),
        tls,
        authentication_timewindow,
        file_system_path,
        msp_config_path,
        local_msp_id,
        local_msp_type,
        bccsp,
        client_conn_timeout: r.nonzero_duration_or("peer.client.connTimeout", secs(3)),
        profile_enabled: r.bool_or("peer.profile.enabled", false),
        profile_listen_address: r.host_port("peer.profile.listenAddress"),
        validator_pool_size,
        endorser_concurrency,
        deliver_concurrency,
        max_connections,
        discovery: DiscoveryConfig {
            enabled: r.bool_or("peer.discovery.enabled", false),
            auth_cache_enabled: r.bool_or("peer.discovery.authCacheEnabled", false),
            auth_cache_max_size: r.u64_or("peer.discovery.authCacheMaxSize", 0),
            auth_cache_purge_retention_ratio: r.f64_in("peer.discovery.authCachePurgeRetentionRatio", 0.0, 1.0).unwrap_or(0.0),
            org_members_allowed_access: r.bool_or("peer.discovery.orgMembersAllowedAccess", false),
        },
        handlers: read_handlers(r),
    }
}

fn read_peer_tls(r: &mut Reader<'_>) -> TlsConfig {
    let tls = TlsConfig {
        enabled: r.bool_or("peer.tls.enabled", false),
        client_auth_required: r.bool_or("peer.tls.clientAuthRequired", false),
        cert_file: r.path("peer.tls.cert.file"),
        key_file: r.path("peer.tls.key.file"),
        root_cert_file: r.path("peer.tls.rootcert.file"),
        client_root_cas: r.path_list("peer.tls.clientRootCAs.files"),
        client_cert_file: r.path("peer.tls.clientCert.file"),
        client_key_file: r.path("peer.tls.clientKey.file"),
        server_host_override: r.string("peer.tls.serverhostoverride").filter(|name| !name.is_empty()),
    };
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        let key = if tls.client_key_file.is_some() { "peer.tls.clientKey.file" } else { "peer.tls.clientCert.file" };
        let origin = r.origin_of(key);
        r.fail(key, origin, "peer.tls.clientKey.file and peer.tls.clientCert.file must both be set or must both be empty");
    }
    if tls.enabled {
        for (key, value) in [("peer.tls.cert.file", &tls.cert_file), ("peer.tls.key.file", &tls.key_file)] {
            if value.is_none() {
                r.missing(key, "is required when peer.tls.enabled is true");
            }
        }
    }
    tls
}

fn read_bccsp(r: &mut Reader<'_>) -> BccspConfig {
    // peer-core signs with software ECDSA P-256 / SHA-256 only; say so rather than sign differently.
    r.only("peer.BCCSP.Default", "SW", "peer-core signs in software (SW); it has no PKCS#11 support");
    r.only("peer.BCCSP.SW.Hash", "SHA2", "peer-core hashes with SHA2 (SHA-256) only");
    r.only("peer.BCCSP.SW.Security", "256", "peer-core uses ECDSA P-256 only");
    r.known("peer.BCCSP.PKCS11");
    BccspConfig { keystore: r.path("peer.BCCSP.SW.FileKeyStore.KeyStore") }
}

/// `peer.handlers`: the built-in plugins by name. Plugins loaded from shared libraries are not
/// supported, so a non-empty `library` is an error rather than silently ignored.
fn read_handlers(r: &mut Reader<'_>) -> HandlersConfig {
    const AUTH_FILTERS: &[&str] = &["DefaultAuth", "ExpirationCheck", "TimeWindowCheck"];
    const DECORATORS: &[&str] = &["DefaultDecorator"];
    const ENDORSERS: &[&str] = &["DefaultEndorsement"];
    const VALIDATORS: &[&str] = &["DefaultValidation"];
    let mut handlers = HandlersConfig::default();
    for (key, known, out) in [
        ("peer.handlers.authFilters", AUTH_FILTERS, &mut handlers.auth_filters),
        ("peer.handlers.decorators", DECORATORS, &mut handlers.decorators),
    ] {
        let Some((tree, origin)) = r.tree(key) else { continue };
        let NodeKind::Seq(items) = &tree.node().kind else {
            r.fail(key, Some(origin), "expected a list of {name: …} entries");
            continue;
        };
        for item in items {
            if let Some(name) = handler_name(r, key, &origin, item, known) {
                out.push(name);
            }
        }
    }
    for (key, known, out) in [
        ("peer.handlers.endorsers", ENDORSERS, &mut handlers.endorsers),
        ("peer.handlers.validators", VALIDATORS, &mut handlers.validators),
    ] {
        let Some((tree, origin)) = r.tree(key) else { continue };
        let NodeKind::Map(entries) = &tree.node().kind else {
            r.fail(key, Some(origin), "expected a map of plugin entries");
            continue;
        };
        for (slot, item) in entries {
            if let Some(name) = handler_name(r, &format!("{key}.{}", slot.name), &origin, item, known) {
                out.insert(slot.name.clone(), name);
            }
        }
    }
    handlers
}

fn handler_name(r: &mut Reader<'_>, key: &str, parent: &Origin, item: &Node, known: &[&str]) -> Option<String> {
    let origin = r.origin_within(parent, item);
    let name = map_text(item, "name");
    let library = map_text(item, "library");
    let Some(name) = name else {
        r.fail(key, Some(origin), "each handler entry needs a name");
        return None;
    };
    if library.is_some_and(|l| !l.is_empty()) {
        r.fail(key, Some(origin), format!("handler {name:?} names a plugin library; peer-core has no plugin support"));
        return None;
    }
    if !known.contains(&name.as_str()) {
        r.fail(key, Some(origin), format!("unknown handler {name:?} (known: {})", known.join(", ")));
        return None;
    }
    Some(name)
}

/// A scalar field of a map node, looked up case-insensitively.
fn map_text(node: &Node, field: &str) -> Option<String> {
    let NodeKind::Map(entries) = &node.kind else { return None };
    entries.iter().find(|(k, _)| k.name.eq_ignore_ascii_case(field)).and_then(|(_, v)| match &v.kind {
        NodeKind::Scalar(text) => Some(text.clone()),
        _ => None,
    })
}

fn read_gossip(r: &mut Reader<'_>) -> GossipConfig {
    const G: &str = "peer.gossip";
    let key = |name: &str| format!("{G}.{name}");
    let mut bootstrap = Vec::new();
    for (text, origin) in r.string_list(&key("bootstrap")).unwrap_or_default() {
        match HostPort::parse(&text) {
            Ok(address) => bootstrap.push(address),
            Err(reason) => r.fail(&key("bootstrap"), Some(origin), reason),
        }
    }
    let use_leader_election = r.bool_or(&key("useLeaderElection"), false);
    let org_leader = r.bool_or(&key("orgLeader"), false);
    if use_leader_election && org_leader {
        let origin = r.origin_of(&key("orgLeader"));
        r.fail(&key("orgLeader"), origin, "Setting both orgLeader and useLeaderElection to true isn't supported: choose one");
    }
    let alive_time_interval = r.nonzero_duration_or(&key("aliveTimeInterval"), secs(5));
    let alive_expiration_timeout = r.nonzero_duration_or(&key("aliveExpirationTimeout"), alive_time_interval * 5);
    let reconnect_interval = r.nonzero_duration_or(&key("reconnectInterval"), alive_expiration_timeout);
    let required_peer_count = r.u64_or(&key("pvtData.implicitCollectionDisseminationPolicy.requiredPeerCount"), 0);
    let max_peer_count = r.u64_or(&key("pvtData.implicitCollectionDisseminationPolicy.maxPeerCount"), 1);
    if max_peer_count < required_peer_count {
        let max_key = key("pvtData.implicitCollectionDisseminationPolicy.maxPeerCount");
        let origin = r.origin_of(&max_key);
        r.fail(&max_key, origin, format!("maxPeerCount ({max_peer_count}) cannot be less than requiredPeerCount ({required_peer_count})"));
    }
    let warn_default = |r: &mut Reader<'_>, name: &str, default: String| {
        r.notes.push(Note::warn("gossip.privdata", format!("Configuration key {G}.{name} isn't set, defaulting to {default}")));
    };
    let transientstore_max_block_retention = r.u64_or(&key("pvtData.transientstoreMaxBlockRetention"), 0);
    let transientstore_max_block_retention = if transientstore_max_block_retention == 0 {
        warn_default(r, "pvtData.transientstoreMaxBlockRetention", "1000".into());
        1000
    } else {
        transientstore_max_block_retention
    };
    let reconcile_batch_size = match r.u64_or(&key("pvtData.reconcileBatchSize"), 0) {
        0 => {
            warn_default(r, "pvtData.reconcileBatchSize", "10".into());
            10
        }
        n => n,
    };
    let reconcile_sleep_interval = match r.duration(&key("pvtData.reconcileSleepInterval")) {
        Some(d) if !d.is_zero() => d,
        _ => {
            warn_default(r, "pvtData.reconcileSleepInterval", format_duration(secs(60)));
            secs(60)
        }
    };
    r.known(&key("stateInfoRetentionInterval"));
    let trusted_msps = read_trusted_msps(r);
    GossipConfig {
        bootstrap,
        use_leader_election,
        org_leader,
        membership_tracker_interval: r.nonzero_duration_or(&key("membershipTrackerInterval"), secs(5)),
        endpoint: dialable_address(r, &key("endpoint")),
        external_endpoint: dialable_address(r, &key("externalEndpoint")),
        max_block_count_to_store: r.nonzero_u64_or(&key("maxBlockCountToStore"), 10, 1 << 20),
        max_propagation_burst_latency: r.nonzero_duration_or(&key("maxPropagationBurstLatency"), millis(10)),
        max_propagation_burst_size: r.nonzero_u64_or(&key("maxPropagationBurstSize"), 10, 1 << 20),
        propagate_iterations: r.nonzero_u64_or(&key("propagateIterations"), 1, 1000),
        propagate_peer_num: r.nonzero_u64_or(&key("propagatePeerNum"), 3, 1 << 16),
        pull_interval: r.nonzero_duration_or(&key("pullInterval"), secs(4)),
        pull_peer_num: r.nonzero_u64_or(&key("pullPeerNum"), 3, 1 << 16),
        request_state_info_interval: r.nonzero_duration_or(&key("requestStateInfoInterval"), secs(4)),
        publish_state_info_interval: r.nonzero_duration_or(&key("publishStateInfoInterval"), secs(4)),
        publish_cert_period: r.nonzero_duration_or(&key("publishCertPeriod"), secs(10)),
        skip_block_verification: r.bool_or(&key("skipBlockVerification"), false),
        dial_timeout: r.nonzero_duration_or(&key("dialTimeout"), secs(3)),
        conn_timeout: r.nonzero_duration_or(&key("connTimeout"), secs(2)),
        recv_buff_size: r.nonzero_u64_or(&key("recvBuffSize"), 20, 1 << 20),
        send_buff_size: r.nonzero_u64_or(&key("sendBuffSize"), 20, 1 << 20),
        digest_wait_time: r.nonzero_duration_or(&key("digestWaitTime"), secs(1)),
        request_wait_time: r.nonzero_duration_or(&key("requestWaitTime"), millis(1500)),
        response_wait_time: r.nonzero_duration_or(&key("responseWaitTime"), secs(2)),
        alive_time_interval,
        alive_expiration_timeout,
        alive_expiration_check_interval: alive_expiration_timeout / 10,
        reconnect_interval,
        max_connection_attempts: r.nonzero_u64_or(&key("maxConnectionAttempts"), 120, 1 << 32),
        msg_expiration_factor: r.nonzero_u64_or(&key("msgExpirationFactor"), 20, 1 << 16),
        non_blocking_commit_mode: r.bool_or(&key("nonBlockingCommitMode"), false),
        election: ElectionConfig {
            startup_grace_period: r.nonzero_duration_or(&key("election.startupGracePeriod"), secs(15)),
            membership_sample_interval: r.nonzero_duration_or(&key("election.membershipSampleInterval"), secs(1)),
            leader_alive_threshold: r.nonzero_duration_or(&key("election.leaderAliveThreshold"), secs(10)),
            leader_election_duration: r.nonzero_duration_or(&key("election.leaderElectionDuration"), secs(5)),
        },
        pvt_data: PvtDataConfig {
            pull_retry_threshold: r.duration_or(&key("pvtData.pullRetryThreshold"), Duration::ZERO),
            transientstore_max_block_retention,
            push_ack_timeout: r.duration_or(&key("pvtData.pushAckTimeout"), Duration::ZERO),
            btl_pull_margin: r.u64_or(&key("pvtData.btlPullMargin"), 10),
            reconcile_batch_size,
            reconcile_sleep_interval,
            reconciliation_enabled: r.bool_or(&key("pvtData.reconciliationEnabled"), false),
            skip_pulling_invalid_transactions_during_commit: r.bool_or(&key("pvtData.skipPullingInvalidTransactionsDuringCommit"), false),
            implicit_collection_required_peer_count: required_peer_count,
            implicit_collection_max_peer_count: max_peer_count,
        },
        state: StateConfig {
            enabled: r.bool_or(&key("state.enabled"), false),
            check_interval: r.nonzero_duration_or(&key("state.checkInterval"), secs(10)),
            response_timeout: r.nonzero_duration_or(&key("state.responseTimeout"), secs(3)),
            batch_size: r.nonzero_u64_or(&key("state.batchSize"), 10, 1 << 16),
            block_buffer_size: r.nonzero_u64_or(&key("state.blockBufferSize"), 20, 1 << 20),
            max_retries: r.nonzero_u64_or(&key("state.maxRetries"), 3, 1 << 16),
            channel_size: r.nonzero_u64_or(&key("state.channelSize"), 100, 1 << 20),
        },
        trusted_msps,
    }
}

/// `peer.gossip.trustedMSPs: [{id: Org2MSP, dir: ../org2/msp, anchorPeers: [peer0.org2:7051]}]`.
fn read_trusted_msps(r: &mut Reader<'_>) -> Vec<TrustedMsp> {
    const KEY: &str = "peer.gossip.trustedMSPs";
    let Some((tree, origin)) = r.tree(KEY) else { return Vec::new() };
    let NodeKind::Seq(items) = &tree.node().kind else {
        r.fail(KEY, Some(origin), "expected a list of {id, dir, anchorPeers} entries");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let item_origin = r.origin_within(&origin, item);
        let (Some(id), Some(dir)) = (map_text(item, "id").filter(|i| !i.is_empty()), map_text(item, "dir").filter(|d| !d.is_empty()))
        else {
            r.fail(KEY, Some(item_origin), "each entry needs an id (the MSP ID) and a dir (its MSP directory)");
            continue;
        };
        if let Err(reason) = super::value::check_printable(&id) {
            r.fail(KEY, Some(item_origin), format!("id {reason}"));
            continue;
        }
        let mut anchor_peers = Vec::new();
        if let NodeKind::Map(entries) = &item.kind
            && let Some((_, list)) = entries.iter().find(|(k, _)| k.name.eq_ignore_ascii_case("anchorPeers"))
        {
            let values: Vec<&Node> = match &list.kind {
                NodeKind::Seq(values) => values.iter().collect(),
                NodeKind::Scalar(_) => vec![list],
                _ => Vec::new(),
            };
            for value in values {
                let NodeKind::Scalar(text) = &value.kind else { continue };
                match HostPort::parse(text) {
                    Ok(address) => anchor_peers.push(address),
                    Err(reason) => {
                        let at = r.origin_within(&origin, value);
                        r.fail(&format!("{KEY}.anchorPeers"), Some(at), reason);
                    }
                }
            }
        }
        out.push(TrustedMsp { id, dir: r.resolve(&dir), anchor_peers });
    }
    out
}

fn read_delivery_client(r: &mut Reader<'_>) -> DeliveryClientConfig {
    const D: &str = "peer.deliveryclient";
    let block_gossip_enabled = r.parsed(&format!("{D}.blockGossipEnabled"), super::value::parse_bool).unwrap_or_else(|| {
        r.notes.push(Note::info("deliveryClient", "peer.deliveryclient.blockGossipEnabled is not set, defaulting to true."));
        true
    });
    let mut address_overrides = Vec::new();
    let overrides_key = format!("{D}.addressOverrides");
    if let Some((tree, origin)) = r.tree(&overrides_key) {
        if let NodeKind::Seq(items) = &tree.node().kind {
            for item in items {
                let from = map_text(item, "from");
                let to = map_text(item, "to");
                match (from, to) {
                    (Some(from), Some(to)) => address_overrides.push(AddressOverride {
                        from,
                        to,
                        ca_certs_file: map_text(item, "caCertsFile").filter(|f| !f.is_empty()).map(PathBuf::from),
                    }),
                    _ => {
                        let origin = r.origin_within(&origin, item);
                        r.fail(&overrides_key, Some(origin), "each address override needs both from and to");
                    }
                }
            }
        } else {
            r.fail(&overrides_key, Some(origin), "expected a list of {from, to, caCertsFile} entries");
        }
    }
    DeliveryClientConfig {
        block_gossip_enabled,
        reconnect_total_time_threshold: r.nonzero_duration_or(&format!("{D}.reconnectTotalTimeThreshold"), secs(3600)),
        conn_timeout: r.nonzero_duration_or(&format!("{D}.connTimeout"), secs(3)),
        reconnect_backoff_threshold: r.nonzero_duration_or(&format!("{D}.reConnectBackoffThreshold"), secs(3600)),
        address_overrides,
    }
}

fn read_ledger(r: &mut Reader<'_>, file_system_path: &Path) -> LedgerConfig {
    r.known("ledger.blockchain");
    // peer-core keeps its state in its own embedded store; goleveldb is the embedded choice.
    r.only("ledger.state.stateDatabase", "goleveldb", "peer-core keeps state in its own embedded store, configured as goleveldb");
    // Only meaningful with CouchDB, which peer-core does not support; read to catch typos.
    r.known("ledger.state.couchDBConfig");
    let snapshots_key = "ledger.snapshots.rootDir";
    let snapshots_root_dir = match r.text(snapshots_key) {
        Some((text, origin)) if !Path::new(&text).is_absolute() => {
            r.fail(
                snapshots_key,
                Some(origin),
                format!("invalid path: {text}. The path for the snapshot dir is expected to be an absolute path"),
            );
            PathBuf::from(text)
        }
        Some((text, _)) => PathBuf::from(text),
        None => file_system_path.join("ledgersData").join("snapshots"),
    };
    LedgerConfig {
        total_query_limit: r.nonzero_u64_or("ledger.state.totalQueryLimit", 10_000, i64::MAX as u64),
        history_enabled: r.bool_or("ledger.history.enableHistoryDatabase", false),
        pvtdata_store: PvtdataStoreConfig {
            coll_elg_proc_max_db_batch_size: r.nonzero_u64_or("ledger.pvtdataStore.collElgProcMaxDbBatchSize", 5000, 1 << 32),
            coll_elg_proc_db_batches_interval: millis(r.nonzero_u64_or("ledger.pvtdataStore.collElgProcDbBatchesInterval", 1000, 1 << 32)),
            purge_interval: r.nonzero_u64_or("ledger.pvtdataStore.purgeInterval", 100, 1 << 32),
            deprioritized_data_reconciler_interval: r
                .nonzero_duration_or("ledger.pvtdataStore.deprioritizedDataReconcilerInterval", secs(3600)),
        },
        snapshots_root_dir,
    }
}

fn read_operations(r: &mut Reader<'_>) -> OperationsConfig {
    let tls = OperationsTlsConfig {
        enabled: r.bool_or("operations.tls.enabled", false),
        cert_file: r.path("operations.tls.cert.file"),
        key_file: r.path("operations.tls.key.file"),
        client_auth_required: r.bool_or("operations.tls.clientAuthRequired", false),
        client_root_cas: r.path_list("operations.tls.clientRootCAs.files"),
    };
    if tls.enabled {
        for (key, value) in [("operations.tls.cert.file", &tls.cert_file), ("operations.tls.key.file", &tls.key_file)] {
            if value.is_none() {
                r.missing(key, "is required when operations.tls.enabled is true");
            }
        }
    }
    OperationsConfig {
        listen_address: r.host_port("operations.listenAddress"),
        tls,
        max_connections: max_connections(r, "operations.limits.maxConnections", DEFAULT_OPERATIONS_MAX_CONNECTIONS),
    }
}

fn read_metrics(r: &mut Reader<'_>) -> MetricsConfig {
    let provider = r.choice(
        "metrics.provider",
        &[("prometheus", MetricsProvider::Prometheus), ("statsd", MetricsProvider::Statsd), ("disabled", MetricsProvider::Disabled)],
        MetricsProvider::Disabled,
    );
    let network = r.choice("metrics.statsd.network", &[("udp", StatsdNetwork::Udp), ("tcp", StatsdNetwork::Tcp)], StatsdNetwork::Udp);
    let address = r.host_port("metrics.statsd.address");
    if provider == MetricsProvider::Statsd && address.is_none() {
        r.missing("metrics.statsd.address", "is required when metrics.provider is statsd");
    }
    let mut prefix = r.string_or("metrics.statsd.prefix", "");
    if !prefix.is_empty() && !prefix.ends_with('.') {
        prefix.push('.');
    }
    MetricsConfig {
        provider,
        statsd: StatsdConfig { network, address, write_interval: r.nonzero_duration_or("metrics.statsd.writeInterval", secs(10)), prefix },
    }
}

fn read_chaincode(r: &mut Reader<'_>) -> ChaincodeConfig {
    // Settings for chaincode containers and the shim: peer-core runs no chaincode, so they are
    // accepted as they are.
    for key in ["builder", "pull", "golang", "java", "node", "logging", "id", "runtimeParams"] {
        r.known(&format!("chaincode.{key}"));
    }
    let startup_timeout = r.duration_or("chaincode.startuptimeout", Duration::ZERO).max(secs(5));
    let execute_timeout = match r.duration("chaincode.executetimeout") {
        Some(d) if d >= secs(1) => d,
        _ => secs(30),
    };
    let keepalive = r.integer("chaincode.keepalive", i64::MIN, i64::MAX).unwrap_or(0);
    ChaincodeConfig {
        mode: r.choice("chaincode.mode", &[("net", ChaincodeMode::Net), ("dev", ChaincodeMode::Dev)], ChaincodeMode::Net),
        install_timeout: r.duration_or("chaincode.installTimeout", Duration::ZERO),
        startup_timeout,
        execute_timeout,
        keepalive: if keepalive > 0 { secs(keepalive as u64) } else { Duration::ZERO },
        external_builders: read_external_builders(r),
        system: read_system_chaincodes(r),
    }
}

fn read_external_builders(r: &mut Reader<'_>) -> Vec<ExternalBuilder> {
    const KEY: &str = "chaincode.externalBuilders";
    let Some((tree, origin)) = r.tree(KEY) else { return Vec::new() };
    let NodeKind::Seq(items) = &tree.node().kind else {
        r.fail(KEY, Some(origin), "expected a list of {name, path} entries");
        return Vec::new();
    };
    let mut builders = Vec::new();
    for item in items {
        let item_origin = r.origin_within(&origin, item);
        let Some(path) = map_text(item, "path").filter(|p| !p.is_empty()) else {
            r.fail(KEY, Some(item_origin), "invalid external builder configuration, path attribute missing in one or more builders");
            continue;
        };
        let Some(name) = map_text(item, "name").filter(|n| !n.is_empty()) else {
            r.fail(KEY, Some(item_origin), format!("external builder at path {path} has no name attribute"));
            continue;
        };
        let mut propagate_environment = Vec::new();
        for field in ["propagateEnvironment", "environmentWhitelist"] {
            if let NodeKind::Map(entries) = &item.kind
                && let Some((_, list)) = entries.iter().find(|(k, _)| k.name.eq_ignore_ascii_case(field))
                && let NodeKind::Seq(values) = &list.kind
            {
                propagate_environment.extend(values.iter().filter_map(|v| match &v.kind {
                    NodeKind::Scalar(s) => Some(s.clone()),
                    _ => None,
                }));
            }
        }
        builders.push(ExternalBuilder { name, path: PathBuf::from(path), propagate_environment });
    }
    builders
}

/// `chaincode.system`: enabled when the value is one of Fabric's yes-words; anything that is not a
/// recognisable yes or no is an error.
fn read_system_chaincodes(r: &mut Reader<'_>) -> BTreeMap<String, bool> {
    const KEY: &str = "chaincode.system";
    let mut system = BTreeMap::new();
    let Some((tree, origin)) = r.tree(KEY) else { return system };
    let entries = match &tree.node().kind {
        NodeKind::Map(entries) => entries,
        _ => {
            r.fail(KEY, Some(origin), "expected a map of chaincode name to enable/disable");
            return system;
        }
    };
    for (name, value) in entries {
        let item_origin = r.origin_within(&origin, value);
        let text = match &value.kind {
            NodeKind::Scalar(text) => text.to_ascii_lowercase(),
            NodeKind::Null => String::new(),
            _ => {
                r.fail(&format!("{KEY}.{}", name.name), Some(item_origin), "expected enable or disable");
                continue;
            }
        };
        let enabled = match text.as_str() {
            "true" | "t" | "1" | "enable" | "enabled" | "yes" => true,
            "" | "false" | "f" | "0" | "disable" | "disabled" | "no" => false,
            _ => {
                r.fail(&format!("{KEY}.{}", name.name), Some(item_origin), format!("{text:?} is not enable or disable"));
                continue;
            }
        };
        system.insert(name.name.clone(), enabled);
    }
    system
}

fn read_vm(r: &mut Reader<'_>) -> VmConfig {
    // Container settings (hostConfig) only matter to a peer that launches Docker chaincode.
    r.known("vm.docker.hostConfig");
    VmConfig {
        endpoint: r.string_or("vm.endpoint", ""),
        docker_tls_enabled: r.bool_or("vm.docker.tls.enabled", false),
        docker_tls_ca_file: r.path("vm.docker.tls.ca.file"),
        docker_tls_cert_file: r.path("vm.docker.tls.cert.file"),
        docker_tls_key_file: r.path("vm.docker.tls.key.file"),
        docker_attach_stdout: r.bool_or("vm.docker.attachStdout", false),
    }
}
