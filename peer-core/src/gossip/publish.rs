//! The links between the deliver client and gossip:
//! - [`GossipBlockPublisher`], the [`BlockPublisher`] the deliver client calls after it committed
//!   a block from the ordering service (this peer is its org's leader): it queues the block for
//!   the gossip driver to disseminate as a DataMessage. It does not commit anything; the caller
//!   already did.
//! - [`Leadership`], with leader election: per channel, a watch of "this peer leads the channel
//!   for its org" that the gossip driver sets from the election and the deliver client follows,
//!   and the way back: the deliver client giving up makes the election yield.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto::common::Block;
use tokio::sync::{mpsc, watch};
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

/// Per-channel leadership from the election (see the module docs). Cloned handles share it.
#[derive(Clone, Debug)]
pub struct Leadership {
    watches: Arc<Mutex<BTreeMap<String, watch::Sender<bool>>>>,
    yields: mpsc::UnboundedSender<String>,
}

impl Leadership {
    /// A handle and the receiving end of yields, which the gossip driver owns.
    pub fn new() -> (Leadership, mpsc::UnboundedReceiver<String>) {
        let (yields, receiver) = mpsc::unbounded_channel();
        (Leadership { watches: Arc::default(), yields }, receiver)
    }

    fn sender(&self, channel: &str) -> watch::Sender<bool> {
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches.entry(channel.to_string()).or_insert_with(|| watch::channel(false).0).clone()
    }

    /// The deliver client's watch for `channel` (false until the election says otherwise).
    pub fn watch(&self, channel: &str) -> watch::Receiver<bool> {
        self.sender(channel).subscribe()
    }

    /// Whether the election made this peer the leader of `channel` (false before it decided,
    /// and always without leader election).
    pub fn is_leader(&self, channel: &str) -> bool {
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).get(channel).is_some_and(|w| *w.borrow())
    }

    /// The election's outcome for `channel`.
    pub fn set(&self, channel: &str, leader: bool) {
        self.sender(channel).send_replace(leader);
    }

    /// The deliver client gave up on the ordering service for `channel`: the election yields.
    pub fn give_up(&self, channel: &str) {
        // The driver is gone only when the peer is stopping: nothing left to yield.
        let _ = self.yields.send(channel.to_string());
    }
}
