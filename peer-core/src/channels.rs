//! The channels this peer has joined, as the services see them: each channel's ledger and its
//! current configuration, joining new channels, verified appends, and the pre-reset gate.
//!
//! Whoever needs to act on new channels (the deliver client) follows [`Channels::subscribe_joined`];
//! gossip reads every channel's current configuration and height at each of its rounds (it
//! learns organizations and anchor peers from them). Heights and commit times go to the ledger
//! metrics. This module knows nothing above it (gossip, blocks, the services).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use proto::common::{Block, BlockMetadataIndex, HeaderType, LastConfig, Metadata, OrdererBlockMetadata};
use tokio::sync::watch;
use tracing::{error, info};

use crate::channel::config::{ChannelConfig, ConfigBlockError};
use crate::channel::signatures::{BlockSignatureError, verify_block_signatures};
use crate::env::{Clock, StoppedClock};
use crate::ledger::block::channel_header;
use crate::ledger::channel::ChannelLedger;
use crate::ledger::metrics::LedgerMetrics;
use crate::ledger::{LedgerError, LedgerMgr};

/// Why a channel could not be joined or a block not appended.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    Config(#[from] ConfigBlockError),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Signatures(#[from] BlockSignatureError),
    /// A block arrived for a channel this peer has not joined.
    #[error("channel [{0}] not found")]
    UnknownChannel(String),
    /// The block to join with is not a genesis block.
    #[error("the block to join with must be a genesis block (number 0), not block [{0}]")]
    NotGenesis(u64),
}

/// The joined channels. Shared by the services (`Arc<Channels>`).
pub struct Channels {
    ledger: LedgerMgr,
    configs: Mutex<BTreeMap<String, Arc<ChannelConfig>>>,
    /// Channels below the height recorded by `node reset`/`rollback`: endorsement is blocked
    /// until every one of them is back there.
    pre_reset: Mutex<BTreeMap<String, u64>>,
    /// The joined channel IDs, sorted; a new value each time a channel is added.
    joined: watch::Sender<Vec<String>>,
    /// Counts configurations installed (joins and config blocks), for whoever follows them.
    configs_installed: watch::Sender<u64>,
    metrics: LedgerMetrics,
    /// Times commits for `metrics`.
    clock: Arc<dyn Clock>,
    /// Damaged stores rebuilt (see [`Channels::heals`]).
    heals: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").field("channels", &self.ids()).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Channels {
    /// Reads the configuration of every active channel (a channel whose configuration cannot be
    /// read is logged and left out, as one that does not open) and loads the pre-reset heights.
    pub fn open(ledger: LedgerMgr) -> Result<Channels, LedgerError> {
        Channels::open_with_metrics(ledger, LedgerMetrics::default(), Arc::new(StoppedClock))
    }

    /// [`Channels::open`], reporting heights and commit times to `metrics` (timed by `clock`).
    pub fn open_with_metrics(ledger: LedgerMgr, metrics: LedgerMetrics, clock: Arc<dyn Clock>) -> Result<Channels, LedgerError> {
        let pre_reset: BTreeMap<String, u64> = ledger.pre_reset_heights()?.into_iter().collect();
        let (joined, _) = watch::channel(Vec::new());
        for heal in ledger.healed() {
            metrics.healed(&heal.channel);
        }
        let heals = std::sync::atomic::AtomicU64::new(ledger.healed().len() as u64);
        let (configs_installed, _) = watch::channel(0);
        let channels = Channels {
            ledger,
            configs: Mutex::default(),
            pre_reset: Mutex::new(pre_reset),
            joined,
            configs_installed,
            metrics,
            clock,
            heals,
        };
        for id in channels.ledger.active_channels() {
            info!(target: "peer", func = "Initialize", "Loading chain {id}");
            let Some(ledger) = channels.ledger.channel(&id) else { continue };
            match latest_config(&ledger) {
                Ok(config) => channels.install(Arc::new(config)),
                Err(err) => error!(target: "peer", func = "Initialize", "Failed to load ledger {id}({err})"),
            }
        }
        Ok(channels)
    }

    /// The IDs of the joined (active, readable) channels, sorted.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.configs).keys().cloned().collect()
    }

    pub fn ledger(&self, channel_id: &str) -> Option<Arc<ChannelLedger>> {
        lock(&self.configs).contains_key(channel_id).then(|| self.ledger.channel(channel_id)).flatten()
    }

    pub fn config(&self, channel_id: &str) -> Option<Arc<ChannelConfig>> {
        lock(&self.configs).get(channel_id).cloned()
    }

    /// The joined channel IDs (sorted), updated whenever a channel is joined. The current value
    /// already lists the channels opened at start.
    pub fn subscribe_joined(&self) -> watch::Receiver<Vec<String>> {
        self.joined.subscribe()
    }

    /// Changes whenever a channel's configuration is installed: a channel joined, or a config
    /// block appended (the peer's TLS trust follows the channels' orgs this way).
    pub fn subscribe_configs(&self) -> watch::Receiver<u64> {
        self.configs_installed.subscribe()
    }

    /// Every joined channel's current configuration, by channel ID.
    pub fn configs(&self) -> Vec<Arc<ChannelConfig>> {
        lock(&self.configs).values().cloned().collect()
    }

    /// Rebuilds the channels whose store failed while serving (see [`LedgerMgr::heal_failed`]),
    /// counting each in the metrics; the deliver client and state transfer then fetch the blocks
    /// the salvage could not keep, from the ledger's (possibly lower) height. Returns whether
    /// every failed store was rebuilt.
    pub fn heal_failed(&self) -> bool {
        // Channels left out at start because their store could not be rebuilt then.
        for id in self.ledger.retry_unhealed() {
            let Some(ledger) = self.ledger.channel(&id) else { continue };
            match latest_config(&ledger) {
                Ok(config) => {
                    info!(target: "kvledger", func = "healLedger", "Ledger [{id}] is served again, at height {}", ledger.height());
                    self.metrics.healed(&id);
                    self.heals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    self.install(Arc::new(config));
                }
                Err(err) => error!(target: "peer", func = "Initialize", "Failed to load ledger {id}({err})"),
            }
        }
        let mut all = !self.ledger.has_unhealed();
        for result in self.ledger.heal_failed() {
            match result {
                Ok(heal) => {
                    self.metrics.healed(&heal.channel);
                    self.metrics.set_height(&heal.channel, heal.salvaged.height);
                    self.heals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // A channel whose configuration could not be read at start (its store failed
                    // then) is served from the rebuilt store.
                    if self.config(&heal.channel).is_none()
                        && let Some(ledger) = self.ledger.channel(&heal.channel)
                    {
                        match latest_config(&ledger) {
                            Ok(config) => self.install(Arc::new(config)),
                            Err(err) => error!(target: "peer", func = "Initialize", "Failed to load ledger {}({err})", heal.channel),
                        }
                    }
                }
                Err((id, err)) => {
                    error!(target: "kvledger", func = "healLedger", "Could not rebuild ledger [{id}] (trying again later): {err}");
                    all = false;
                }
            }
        }
        all
    }

    /// How many damaged channel stores were rebuilt since this peer started (at open included).
    pub fn heals(&self) -> u64 {
        self.heals.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The ledger manager (its root path, pre-reset records).
    pub fn ledger_mgr(&self) -> &LedgerMgr {
        &self.ledger
    }

    /// Joins a channel from its genesis block: the configuration must parse, then the ledger is
    /// created (refused if it exists) and the channel's organizations become known to gossip.
    pub fn join(&self, genesis: &Block) -> Result<Arc<ChannelConfig>, ChannelError> {
        let config = self.create(genesis)?;
        self.install(config.clone());
        Ok(config)
    }

    /// [`Channels::join`] for a node that is not a gossip peer (the simulator's orderer): the
    /// same checks and ledger, without the peer's log line.
    pub fn create_channel(&self, genesis: &Block) -> Result<Arc<ChannelConfig>, ChannelError> {
        let config = self.create(genesis)?;
        self.install(config.clone());
        Ok(config)
    }

    fn create(&self, genesis: &Block) -> Result<Arc<ChannelConfig>, ChannelError> {
        let number = genesis.header.as_ref().map_or(0, |h| h.number);
        if number != 0 {
            return Err(ChannelError::NotGenesis(number));
        }
        let config = Arc::new(ChannelConfig::from_block(genesis)?);
        // Fabric commits the genesis block through its commit path, so it is timed like any other.
        let started = self.clock.now();
        self.ledger.create_from_genesis(genesis)?;
        let written = self.clock.now().saturating_duration_since(started);
        self.metrics.observe_commit(&config.channel_id, written, written);
        Ok(config)
    }

    /// Appends a block from the ordering service or a peer: its orderer signatures must satisfy
    /// the channel's BlockValidation policy; a config block becomes the channel's configuration.
    pub fn append(&self, channel_id: &str, block: &Block) -> Result<(), ChannelError> {
        let config = self.config(channel_id).ok_or_else(|| ChannelError::UnknownChannel(channel_id.to_string()))?;
        let ledger = self.ledger.channel(channel_id).ok_or_else(|| ChannelError::UnknownChannel(channel_id.to_string()))?;
        let started = self.clock.now();
        verify_block_signatures(block, &config)?;
        let new_config = is_config_block(block).then(|| ChannelConfig::from_block(block)).transpose()?;
        let writing = self.clock.now();
        ledger.append(block)?;
        let written = self.clock.now();
        if let Some(config) = new_config {
            self.install(Arc::new(config));
        }
        let now = self.clock.now();
        self.metrics.observe_commit(channel_id, now.saturating_duration_since(started), written.saturating_duration_since(writing));
        self.metrics.set_height(channel_id, ledger.height());
        Ok(())
    }

    fn install(&self, config: Arc<ChannelConfig>) {
        let id = config.channel_id.clone();
        let added = lock(&self.configs).insert(id.clone(), config).is_none();
        self.configs_installed.send_modify(|count| *count += 1);
        if added {
            if let Some(ledger) = self.ledger.channel(&id) {
                self.metrics.set_height(&id, ledger.height());
            }
            let ids = self.ids();
            self.joined.send_modify(|joined| *joined = ids);
        }
    }

    /// The pre-reset heights still pending (channel, height), sorted by channel.
    pub fn pre_reset_heights(&self) -> Vec<(String, u64)> {
        lock(&self.pre_reset).iter().map(|(id, height)| (id.clone(), *height)).collect()
    }

    /// Whether endorsement is blocked because a channel is below its pre-reset height.
    pub fn endorsement_blocked(&self) -> bool {
        !lock(&self.pre_reset).is_empty()
    }

    /// Re-checks the pre-reset heights (Fabric does every 10s): once every channel is back at its
    /// recorded height, the records are deleted and endorsement is unblocked. Returns whether
    /// endorsement is still blocked.
    pub fn recheck_pre_reset(&self) -> bool {
        let mut pending = lock(&self.pre_reset);
        if pending.is_empty() {
            return false;
        }
        let reached = pending.iter().all(|(id, height)| self.ledger.channel(id).is_some_and(|l| l.height() >= *height));
        if !reached {
            return true;
        }
        for id in pending.keys() {
            if let Some(ledger) = self.ledger.channel(id)
                && let Err(err) = ledger.clear_pre_reset_height()
            {
                error!(target: "peer", func = "resetLoop", "Failed to clear the pre-reset height of channel [{id}]: {err}");
                return true;
            }
        }
        info!(target: "peer", func = "resetLoop", "Ledger rebuild: Complete, all ledgers resume to pre-reset heights");
        pending.clear();
        false
    }
}

/// Whether a block carries a channel configuration (its only transaction is a CONFIG envelope).
fn is_config_block(block: &Block) -> bool {
    let first = block.data.as_ref().and_then(|d| d.data.first());
    first.and_then(|envelope| channel_header(envelope)).is_some_and(|h| h.r#type == HeaderType::Config as i32)
}

/// The configuration in force at the channel's tip: the block the tip's last-config index points
/// at (Fabric 2.x orderers keep it in the SIGNATURES metadata; older ones in LAST_CONFIG), or the
/// genesis block when the tip says nothing.
fn latest_config(ledger: &ChannelLedger) -> Result<ChannelConfig, ChannelError> {
    let height = ledger.height();
    let tip = match height {
        0 => None,
        h => ledger.block(h - 1)?,
    };
    let index = tip.as_ref().and_then(last_config_index).filter(|i| *i < height).unwrap_or(0);
    let block = ledger.block(index)?.ok_or(ChannelError::UnknownChannel(ledger.id().to_string()))?;
    Ok(ChannelConfig::from_block(&block)?)
}

/// The index of the configuration block in force at `block`, as its metadata records it
/// (Fabric's `GetLastConfigIndexFromBlock`).
pub fn last_config_index(block: &Block) -> Option<u64> {
    let slots = &block.metadata.as_ref()?.metadata;
    let from_signatures = slots
        .get(BlockMetadataIndex::Signatures as usize)
        .and_then(|bytes| Metadata::decode(bytes.as_slice()).ok())
        .and_then(|m| OrdererBlockMetadata::decode(m.value.as_slice()).ok())
        .and_then(|m| m.last_config)
        .map(|c| c.index);
    from_signatures.or_else(|| {
        slots
            .get(BlockMetadataIndex::LastConfig as usize)
            .and_then(|bytes| Metadata::decode(bytes.as_slice()).ok())
            .and_then(|m| LastConfig::decode(m.value.as_slice()).ok())
            .map(|c| c.index)
    })
}
