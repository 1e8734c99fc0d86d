//! Handing committed blocks to gossip: the [`BlockPublisher`] the deliver client calls after it
//! committed a block from the ordering service (this peer is its org's leader), and its gossip
//! implementation, which queues the block for the gossip driver to disseminate as a
//! DataMessage. It does not commit anything; the caller already did.

use proto::common::Block;
use tokio::sync::mpsc;
use tracing::warn;

pub use crate::blocks::BlockPublisher;

/// Blocks queued between the publisher and the gossip driver; beyond this a block is not
/// gossiped (peers then get it by state transfer), so a slow driver never blocks committing.
pub const PUBLISH_QUEUE: usize = 64;

/// The gossip driver's [`BlockPublisher`].
#[derive(Clone, Debug)]
pub struct GossipBlockPublisher {
    queue: mpsc::Sender<(String, Block)>,
}

impl GossipBlockPublisher {
    /// A publisher and the receiving end the driver owns.
    pub fn new() -> (GossipBlockPublisher, mpsc::Receiver<(String, Block)>) {
        let (queue, receiver) = mpsc::channel(PUBLISH_QUEUE);
        (GossipBlockPublisher { queue }, receiver)
    }
}

impl BlockPublisher for GossipBlockPublisher {
    fn publish(&self, channel: &str, block: &Block) {
        if let Err(err) = self.queue.try_send((channel.to_string(), block.clone())) {
            let number = block.header.as_ref().map_or(0, |h| h.number);
            warn!(target: "gossip.gossip", func = "Gossip", "Block [{number}] of channel [{channel}] not gossiped: {err}");
        }
    }
}
