//! The peer's Prometheus metrics: every family `node::start` registers for the operations
//! `/metrics`, in Fabric 2.2's language where Fabric has the metric (its names, types, label names
//! and histogram buckets; `peer-core/tests/data/fabric-2.2-peer-metrics.txt` lists them) and with a
//! `peer_core_` prefix where it is ours.
//!
//! Who counts what: the endorser and the deliver service (their families are in
//! `services::metrics`), the
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

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::env::Env;
use crate::gossip::comm::CommMetrics;
use crate::gossip::driver::GossipMetrics;
use crate::ledger::metrics::LedgerMetrics;
use crate::metadata;
use crate::metrics::{Labels, labels};
use crate::net::grpc_metrics::GrpcServerMetrics;
use crate::services::metrics::{DeliverMetrics, EndorserMetrics};
use crate::services::operations::LogControl;

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
        crate::services::operations::prometheus_text(&registry(env, &PeerMetrics::default(), &NoLogControl)).unwrap()
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
