//! The ledger metrics Fabric exposes per channel, under Fabric's names: `ledger_blockchain_height`
//! (common/ledger/blkstorage, a gauge set on open and after each commit) and
//! `ledger_block_processing_time` (core/ledger/kvledger, a histogram in seconds with Fabric's
//! buckets; its `_count` is the number of blocks committed since start).
//!
//! Updated by `node::channels::Channels` (every join and append goes through it, whoever
//! delivered the block); registered with the operations registry by `node::start`. Time comes from
//! the env's monotonic clock, so simulated runs observe simulated durations.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Fabric's buckets for both ledger commit histograms (`blockProcessingTimeOpts`).
const PROCESSING_BUCKETS: [f64; 7] = [0.005, 0.01, 0.015, 0.05, 0.1, 1.0, 10.0];

type Labels = Vec<(String, String)>;

fn processing_histogram() -> Histogram {
    Histogram::new(PROCESSING_BUCKETS)
}

/// Per-channel ledger metrics. Cheap to clone: clones share their values.
#[derive(Clone)]
pub struct LedgerMetrics {
    /// `ledger_blockchain_height{channel=…}`.
    pub height: Family<Labels, Gauge>,
    /// `ledger_block_processing_time{channel=…}` (seconds).
    pub processing_time: Family<Labels, Histogram, fn() -> Histogram>,
    /// `peer_core_ledger_heals_total{channel=…}`: a damaged block store rebuilt (ours, not
    /// Fabric's: Fabric has no such repair).
    pub heals: Family<Labels, Counter>,
}

impl Default for LedgerMetrics {
    fn default() -> Self {
        LedgerMetrics { height: Family::default(), processing_time: Family::new_with_constructor(processing_histogram), heals: Family::default() }
    }
}

impl std::fmt::Debug for LedgerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerMetrics").finish_non_exhaustive()
    }
}

fn channel_label(channel: &str) -> Labels {
    vec![("channel".to_string(), channel.to_string())]
}

impl LedgerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("ledger_blockchain_height", "Height of the chain in blocks.", self.height.clone());
        registry.register(
            "ledger_block_processing_time",
            "Time taken in seconds for ledger block processing.",
            self.processing_time.clone(),
        );
        registry.register(
            "peer_core_ledger_heals",
            "Damaged block stores rebuilt from the genesis block and the blocks the hash chain proved.",
            self.heals.clone(),
        );
    }

    /// A damaged store of `channel` was rebuilt.
    pub fn healed(&self, channel: &str) {
        self.heals.get_or_create(&channel_label(channel)).inc();
    }

    /// The channel's height after opening, joining or a commit.
    pub fn set_height(&self, channel: &str, height: u64) {
        self.height.get_or_create(&channel_label(channel)).set(i64::try_from(height).unwrap_or(i64::MAX));
    }

    /// One committed block and how long its processing took.
    pub fn observe_commit(&self, channel: &str, took: std::time::Duration) {
        self.processing_time.get_or_create(&channel_label(channel)).observe(took.as_secs_f64());
    }
}
