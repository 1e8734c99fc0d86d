//! Metric helpers shared by every layer that counts: Fabric's label sets and client_golang's
//! default histogram buckets. The families themselves live with what they count (the ledger, gossip,
//! the services, the gRPC layer); `node::metrics` gathers them into the registry `/metrics` serves.

use prometheus_client::metrics::histogram::Histogram;

/// A label set: (name, value) pairs in Fabric's order.
pub type Labels = Vec<(String, String)>;

/// client_golang's `DefBuckets`, which Fabric's histograms use unless they set their own.
pub const DEFAULT_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram with [`DEFAULT_BUCKETS`] (a family's constructor).
pub fn default_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

/// The label set of a per-channel family: `{channel}`.
pub fn channel_label(channel: &str) -> Labels {
    vec![("channel".to_string(), channel.to_string())]
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(name, value)| ((*name).to_string(), (*value).to_string())).collect()
}
