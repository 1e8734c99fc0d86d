//! The ledger metrics Fabric exposes per channel, under Fabric's names, types, labels and buckets:
//! `ledger_blockchain_height` (a gauge set on open, join and after each commit),
//! `ledger_block_processing_time` (a histogram of a whole commit: signature checks, config
//! parsing and the store write; its `_count` is the number of blocks committed since start) and
//! `ledger_blockstorage_commit_time` (a histogram of the store write alone). Plus one of ours,
//! `peer_core_ledger_heals_total`.
//!
//! Updated by `channels::Channels` (every join and append goes through it, whoever
//! delivered the block); registered with the operations registry by `node::start`. Time comes from
//! the env's monotonic clock, so simulated runs observe simulated durations. Recording never logs,
//! sleeps or draws randomness: it cannot change what a simulated peer does.
//!
//! Not here: Fabric's `ledger_statedb_commit_time`, `ledger_blockstorage_and_pvtdata_commit_time`
//! and `ledger_transaction_count` (peer-core has no state database, private data or transaction
//! validation).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, channel_label};

/// Fabric's buckets for its ledger commit histograms (`blockProcessingTimeOpts`,
/// `blockstorageCommitTimeOpts`), in seconds.
pub const COMMIT_BUCKETS: [f64; 7] = [0.005, 0.01, 0.015, 0.05, 0.1, 1.0, 10.0];

fn commit_histogram() -> Histogram {
    Histogram::new(COMMIT_BUCKETS)
}

/// Per-channel ledger metrics. Cheap to clone: clones share their values.
#[derive(Clone)]
pub struct LedgerMetrics {
    /// `ledger_blockchain_height{channel}`.
    pub height: Family<Labels, Gauge>,
    /// `ledger_block_processing_time{channel}` (seconds).
    pub processing_time: Family<Labels, Histogram, fn() -> Histogram>,
    /// `ledger_blockstorage_commit_time{channel}` (seconds).
    pub blockstorage_commit_time: Family<Labels, Histogram, fn() -> Histogram>,
    /// `peer_core_ledger_heals_total{channel}`: a damaged block store rebuilt (ours, not
    /// Fabric's: Fabric has no such repair).
    pub heals: Family<Labels, Counter>,
}

impl Default for LedgerMetrics {
    fn default() -> Self {
        LedgerMetrics {
            height: Family::default(),
            processing_time: Family::new_with_constructor(commit_histogram),
            blockstorage_commit_time: Family::new_with_constructor(commit_histogram),
            heals: Family::default(),
        }
    }
}

impl std::fmt::Debug for LedgerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerMetrics").finish_non_exhaustive()
    }
}

impl LedgerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("ledger_blockchain_height", "Blocks in the channel's ledger", self.height.clone());
        registry.register(
            "ledger_block_processing_time",
            "Seconds to commit a block: checks, configuration and the block store write",
            self.processing_time.clone(),
        );
        registry.register(
            "ledger_blockstorage_commit_time",
            "Seconds to write a block to the channel's block store",
            self.blockstorage_commit_time.clone(),
        );
        // A counter's exposition name is its family name (see `services::operations`): ours end in `_total`.
        registry.register(
            "peer_core_ledger_heals_total",
            "Damaged block stores rebuilt from the genesis block and the blocks the hash chain proved",
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

    /// One committed block: how long the whole commit took, and the store write within it.
    pub fn observe_commit(&self, channel: &str, took: std::time::Duration, store_write: std::time::Duration) {
        self.processing_time.get_or_create(&channel_label(channel)).observe(took.as_secs_f64());
        self.blockstorage_commit_time.get_or_create(&channel_label(channel)).observe(store_write.as_secs_f64());
    }
}
