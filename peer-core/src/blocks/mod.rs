//! Blocks coming into the peer from the ordering service, and where they go next.
//!
//! - [`deliverclient`]: Fabric's deliver service and blocks provider: per joined channel, while
//!   this peer is its org's leader for the channel, pull blocks from the channel's orderers,
//!   commit them through `channels::Channels::append`, and hand them to a
//!   [`BlockPublisher`].
//!
//! Not here: leader election and block dissemination among peers (`gossip::publish` provides a
//! [`BlockPublisher`] and the leadership watch), the peer's own Deliver service
//! (`services::deliver`).

pub mod deliverclient;

/// Where blocks committed from the ordering service go next (gossip dissemination to the org).
pub trait BlockPublisher: Send + Sync + 'static {
    fn publish(&self, channel: &str, block: &proto::common::Block);
}

/// A publisher that drops blocks (no gossip dissemination).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPublisher;

impl BlockPublisher for NoPublisher {
    fn publish(&self, _channel: &str, _block: &proto::common::Block) {}
}
