//! The peer's Prometheus metrics: every family `node::start` registers for the operations
//! `/metrics`, in Fabric 2.2's language where Fabric has the metric (its names, types, label names
//! and histogram buckets; `peer-core/tests/data/fabric-2.2-peer-metrics.txt` lists them) and with a
//! `peer_core_` prefix where it is ours.
//!
//! Who counts what: the endorser and the deliver service (their metrics are defined here), the
//! gRPC layer around the peer port (`grpc_metrics.rs`), gossip (`gossip::driver`,
//! `gossip::comm`), the ledger (`ledger::metrics`, through `Channels`), the logging layer
//! (`logging`, registered through [`LogControl`]) and, on the real env only, the process
//! collector (`env::real::ProcessCollector`, which reads `/proc` at scrape time).
//!
//! Recording a metric never logs, sleeps, spawns a task or draws randomness, and no metric is
//! read by the peer itself: metrics cannot change what a simulated peer does (the simulator runs
//! with metrics disabled, but every counting path still runs). Fabric's `go_*` runtime gauges have
//! no meaning for a Rust process and are left out; so are the metrics of what peer-core does not
//! do (chaincode, CouchDB, private data, transaction validation).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::grpc_metrics::GrpcServerMetrics;
use super::operations::LogControl;
use crate::env::Env;
use crate::gossip::comm::CommMetrics;
use crate::gossip::driver::GossipMetrics;
use crate::ledger::metrics::LedgerMetrics;
use crate::metadata;

/// A label set: (name, value) pairs in Fabric's order.
pub type Labels = Vec<(String, String)>;

/// client_golang's `DefBuckets`, which Fabric's histograms use unless they set their own.
pub const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram with [`DEFAULT_BUCKETS`] (a family's constructor).
pub fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| ((*name).to_string(), (*value).to_string())).collect()
}

/// Fabric's endorser metrics, for what peer-core's endorser serves (the system chaincodes cscc
/// and qscc, and the refusal of any other chaincode). Left out, because nothing here can make
/// them move: `endorser_proposal_simulation_failures` and `endorser_endorsement_failures` (system
/// chaincodes answer errors as status-500 responses, which Fabric counts in neither, and signing
/// cannot fail), `endorser_chaincode_instantiation_failures` (no lscc).
#[derive(Clone)]
pub struct EndorserMetrics {
    /// `endorser_proposals_received`: proposals past the auth filters.
    pub proposals_received: Counter,
    /// `endorser_successful_proposals`: endorsed, or answered for a channel-less system call.
    pub successful_proposals: Counter,
    /// `endorser_proposal_validation_failures`: proposals that do not unpack or validate.
    pub validation_failures: Counter,
    /// `endorser_duplicate_transaction_failures{channel,chaincode}`.
    pub duplicate_transaction_failures: Family<Labels, Counter>,
    /// `endorser_proposal_acl_failures{channel,chaincode}`: the channel's `peer/Propose` ACL refused
    /// a proposal for an application chaincode.
    pub acl_failures: Family<Labels, Counter>,
    /// `endorser_proposal_duration{channel,chaincode,success}`, seconds, for proposals that
    /// passed validation.
    pub proposal_duration: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for EndorserMetrics {
    fn default() -> EndorserMetrics {
        EndorserMetrics {
            proposals_received: Counter::default(),
            successful_proposals: Counter::default(),
            validation_failures: Counter::default(),
            duplicate_transaction_failures: Family::default(),
            acl_failures: Family::default(),
            proposal_duration: Family::new_with_constructor(default_histogram),
        }
    }
}

impl std::fmt::Debug for EndorserMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndorserMetrics").finish_non_exhaustive()
    }
}

impl EndorserMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("endorser_proposals_received", "Proposals received by the endorser", self.proposals_received.clone());
        registry.register("endorser_successful_proposals", "Proposals answered successfully", self.successful_proposals.clone());
        registry.register(
            "endorser_proposal_validation_failures",
            "Proposals that could not be unpacked or did not validate",
            self.validation_failures.clone(),
        );
        registry.register(
            "endorser_duplicate_transaction_failures",
            "Proposals refused because their transaction ID is already in the ledger",
            self.duplicate_transaction_failures.clone(),
        );
        registry.register("endorser_proposal_acl_failures", "Proposals refused by the channel's ACL", self.acl_failures.clone());
        registry.register("endorser_proposal_duration", "Seconds to answer a validated proposal", self.proposal_duration.clone());
    }

    /// A duplicate transaction ID on `channel` for `chaincode`.
    pub fn duplicate(&self, channel: &str, chaincode: &str) {
        self.duplicate_transaction_failures.get_or_create(&labels(&[("channel", channel), ("chaincode", chaincode)])).inc();
    }

    /// The `peer/Propose` ACL refused a proposal on `channel` for `chaincode`.
    pub fn acl_failure(&self, channel: &str, chaincode: &str) {
        self.acl_failures.get_or_create(&labels(&[("channel", channel), ("chaincode", chaincode)])).inc();
    }

    /// A validated proposal was answered after `seconds`; `success` as Fabric counts it.
    pub fn answered(&self, channel: &str, chaincode: &str, success: bool, seconds: f64) {
        let success = if success { "true" } else { "false" };
        self.proposal_duration
            .get_or_create(&labels(&[("channel", channel), ("chaincode", chaincode), ("success", success)]))
            .observe(seconds);
        if success == "true" {
            self.successful_proposals.inc();
        }
    }
}

/// Fabric's deliver service metrics (`common/deliver`) for the peer's `protos.Deliver`. Labels:
/// `channel`; `filtered` (`true` on `DeliverFiltered`); `data_type` (`block` or `filtered_block`);
/// and on completions `success` (the request ended with status SUCCESS).
#[derive(Clone, Default)]
pub struct DeliverMetrics {
    /// `deliver_streams_opened` / `deliver_streams_closed`: Deliver and DeliverFiltered streams.
    pub streams_opened: Counter,
    pub streams_closed: Counter,
    /// `deliver_requests_received{channel,filtered,data_type}`: SeekInfo requests for a joined channel.
    pub requests_received: Family<Labels, Counter>,
    /// `deliver_requests_completed{channel,filtered,data_type,success}`.
    pub requests_completed: Family<Labels, Counter>,
    /// `deliver_blocks_sent{channel,filtered,data_type}`.
    pub blocks_sent: Family<Labels, Counter>,
}

impl std::fmt::Debug for DeliverMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverMetrics").finish_non_exhaustive()
    }
}

impl DeliverMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("deliver_streams_opened", "Deliver streams opened", self.streams_opened.clone());
        registry.register("deliver_streams_closed", "Deliver streams closed", self.streams_closed.clone());
        registry.register(
            "deliver_requests_received",
            "Deliver requests (SeekInfo) received for a joined channel",
            self.requests_received.clone(),
        );
        registry.register("deliver_requests_completed", "Deliver requests completed, by outcome", self.requests_completed.clone());
        registry.register("deliver_blocks_sent", "Blocks sent by the deliver service", self.blocks_sent.clone());
    }

    /// The labels of a request on `channel`, filtered or not.
    pub fn request_labels(channel: &str, filtered: bool) -> Labels {
        let (filtered, data_type) = if filtered { ("true", "filtered_block") } else { ("false", "block") };
        labels(&[("channel", channel), ("filtered", filtered), ("data_type", data_type)])
    }
}

/// Every metric a peer records, created before anything that counts starts.
#[derive(Clone, Debug, Default)]
pub struct PeerMetrics {
    pub grpc: GrpcServerMetrics,
    pub endorser: EndorserMetrics,
    pub deliver: DeliverMetrics,
    pub gossip: GossipMetrics,
    pub comm: CommMetrics,
    pub ledger: LedgerMetrics,
}

/// The registry `/metrics` serves: `fabric_version`, `peer_core_start_time_seconds`, every family of
/// `metrics`, the logging counters of `log_control`, and on the real env the process collector.
pub fn registry(env: &Env, metrics: &PeerMetrics, log_control: &dyn LogControl) -> Registry {
    let mut registry = Registry::default();
    // Fabric's gauge (value 1, the version as a label); the version is peer-core's, as `/version`
    // and `peer-core version` report it.
    let version: Family<Labels, Gauge> = Family::default();
    version.get_or_create(&labels(&[("version", metadata::VERSION)])).set(1);
    registry.register("fabric_version", "The running version, as a label", version);
    let start: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    let started = env.clock.wall_clock().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    start.set(started.as_secs_f64());
    registry.register("peer_core_start_time_seconds", "When the peer started, in seconds since the Unix epoch (by the env's clock)", start);
    metrics.grpc.register(&mut registry);
    metrics.endorser.register(&mut registry);
    metrics.deliver.register(&mut registry);
    metrics.gossip.register(&mut registry);
    metrics.comm.register(&mut registry);
    metrics.ledger.register(&mut registry);
    log_control.register_metrics(&mut registry);
    if let Some(process) = env.process_collector() {
        registry.register_collector(Box::new(process));
    }
    registry
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::env::StoppedClock;
    use crate::env::real::{DiskStorage, TcpNetwork};

    struct NoLogControl;

    impl LogControl for NoLogControl {
        fn spec(&self) -> String {
            String::new()
        }
        fn set_spec(&self, _spec: &str) -> Result<(), String> {
            Ok(())
        }
    }

    fn exposition(env: &Env) -> String {
        super::super::operations::prometheus_text(&registry(env, &PeerMetrics::default(), &NoLogControl)).unwrap()
    }

    /// The process metrics read the OS, so only the real env registers them; an env built from
    /// parts (the simulator's, the tests') has none.
    #[test]
    fn process_metrics_are_registered_only_on_the_real_env() {
        let real = crate::env::real::env().unwrap();
        assert!(real.process_collector().is_some());
        let text = exposition(&real);
        for family in
            ["process_cpu_seconds_total counter", "process_open_fds gauge", "process_max_fds gauge", "process_resident_memory_bytes gauge"]
        {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family} missing from:\n{text}");
        }
        let resident = text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap();
        assert!(resident.parse::<f64>().unwrap() > 0.0, "{resident}");

        let built = Env::new(Arc::new(StoppedClock), Arc::new(TcpNetwork), Arc::new(DiskStorage), [0; 32]);
        assert!(built.process_collector().is_none());
        let text = exposition(&built);
        assert!(!text.contains("process_"), "{text}");
        assert!(text.contains("# TYPE fabric_version gauge\n"), "{text}");
    }
}
