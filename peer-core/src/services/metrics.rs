//! The services' metrics in Fabric 2.2's language: the endorser's and the deliver service's
//! families (names, types, label names and buckets as Fabric's; `node::metrics` registers them).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, default_histogram, labels};

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
