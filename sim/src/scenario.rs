//! Scenario files (`scenarios/*.yaml`): who runs, what happens when, and what must hold.
//!
//! ```yaml
//! name: crash-restart
//! duration: 30s
//! orgs: [{name: org1, peers: 3}, {name: org2, peers: 2}]
//! no_external_endpoint: [org1-peer2]     # these peers are invisible outside their org
//! anchors: [org1]                        # orgs with an anchor peer (their peer0; default: all)
//! bootstrap: chain                       # chain: peer i bootstraps from peer i-1; first: from peer0
//! tls: mutual                            # true: TLS everywhere; mutual: client certificates required too
//! env: {CORE_PEER_GOSSIP_ALIVETIMEINTERVAL: 500ms}   # CORE_* overrides for every peer
//! peer_env: {org2-peer1: {CORE_PEER_GOSSIP_PULLINTERVAL: 2s}}   # ... and for one peer
//! timeline:
//!   - {at: 8s, crash: org1-peer1}        # a power cut, then the host dies
//!   - {at: 9s, kill: org2-peer1}         # the process dies; the page cache survives
//!   - {at: 12s, restart: org1-peer1}
//!   - {at: 5s, partition: [org1-peer0, org2-peer0]}
//!   - {at: 9s, heal: [org1-peer0, org2-peer0]}
//!   - {at: 2s, start: org2-peer1}          # starts late (not running before)
//!   - {at: 3s, loss: 0.2}                  # a fifth of arriving gossip messages are lost
//!   - {at: 6s, loss: 0}
//!   - {at: 7s, add_anchor: org2}           # a channel config update naming org2-peer0 as anchor
//!   - {at: 9s, remove_org: org3}           # a channel config update without org3
//! network: {delay_probability: 0.05, max_delay: 200ms, duplicate: 0.02}   # faults in our own network layer
//! disk: {read_corruption: 0.001, misdirected_write: 0.001, latent_error: 0.001, fsync_failure: 0.01, full: 0.005, until: 14s}
//! checks: {converge_within: 8s, blocks_within: 2s, new_blocks: [{after: 5s, by: 12s}]}
//! orderer: {nodes: 2, tx_per_second: 20, batch_timeout: 500ms, max_message_count: 10, start: 1s, stop: 20s}
//! tick: 1ms                                # turmoil's step (default 1ms; longer is cheaper and coarser)
//! ci_seeds: 3                              # a long scenario: seeds of the default test batch
//! ```
//! With an `orderer:` section the run has an ordering-service host named `orderer` (port 7050,
//! the genesis block's orderer endpoint) producing blocks on the channel; the timeline may
//! crash, kill and restart it like a peer (`{at: 5s, crash: orderer}`). With `nodes: N` (one by
//! default) the ordering service has N nodes as a Raft-based one would: `orderer` cuts blocks
//! (the leader) and `orderer2` … `ordererN` replicate its chain and serve it too; the genesis
//! block lists every node's endpoint, so peers fail over between them. The timeline may crash,
//! kill, restart, partition, heal, hold and release any of them (`{at: 5s, partition:
//! [orderer, org1-peer0]}`); they cannot start late.
//! With `tls`, every peer serves and dials over TLS (each with a pair issued by its org's TLS CA
//! for its host name), and so does the ordering service; handshakes draw from each host's
//! seeded stream, so a seed still fixes every byte. Peers trust their own org's TLS CA at first
//! and learn the others from the channel they join, as Fabric peers do.
//! The same types write a scenario back out ([`Scenario::to_yaml`]: `sim run --dump`, a swarm
//! seed's scenario), so that what is written loads as exactly the same scenario.
//! Org names are lowercase letters and digits, each with a distinct MSP ID (1 to 32 peers per org,
//! 64 in all). Peers are named `<org>-peer<i>`; their MSP ID is `Org<N>MSP` for `org<N>`. Each org's
//! peer0 is the anchor peer the channel config names (`anchors` may name fewer orgs). Peers learn
//! the other orgs only from the channel every peer joins at its first start, as Fabric peers do
//! (no `peer.gossip.trustedMSPs`): its MSPs and anchor peers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::{FlowMap, FlowSeq};

/// A scenario as the file says it. The same types are written back ([`Scenario::to_yaml`]) for
/// scenarios made in code (swarm seeds), so that what is written loads as exactly what was made:
/// optional sections and empty lists are left out, durations are written exactly (`2.699s`,
/// `500ms`), and short sections are written in flow style (`{at: 3s, crash: org1-peer1}`) as
/// people write them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub duration: Duration,
    #[serde(serialize_with = "write_flow_items")]
    pub orgs: Vec<OrgSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", serialize_with = "write_flow_seq")]
    pub no_external_endpoint: Vec<String>,
    /// The orgs whose peer0 the channel config names as anchor peer (every org when absent).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "write_optional_flow_seq")]
    pub anchors: Option<Vec<String>>,
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// TLS on every peer and orderer node: `true` (client certificates requested, not required)
    /// or `mutual` (`clientAuthRequired` on peers and orderers).
    #[serde(default, skip_serializing_if = "TlsMode::is_off")]
    pub tls: TlsMode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `CORE_*` overrides for single peers, applied after `env`: `{org1-peer1: {CORE_X: y}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peer_env: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", serialize_with = "write_flow_items")]
    pub timeline: Vec<Step>,
    /// Faults injected in peer-core's own network layer, above turmoil.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "write_flow_map")]
    pub network: Option<NetworkFaults>,
    /// Faults of the peers' disks besides power cuts (see [`DiskSection`]).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "write_flow_map")]
    pub disk: Option<DiskSection>,
    #[serde(serialize_with = "write_flow_map")]
    pub checks: Checks,
    /// An ordering-service host producing blocks (none without the section).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "write_flow_map")]
    pub orderer: Option<OrdererSection>,
    /// turmoil's tick: how far simulated time moves per step (1ms by default). A longer tick
    /// makes a run cheaper (fewer steps, each polling every host) and coarser: message latencies
    /// and timers round up to whole ticks.
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub tick: Option<Duration>,
    /// How many seeds of the CI batch a long scenario runs in a default `cargo test` (all of
    /// them when absent; `SIM_SEEDS` and `SIM_SEED` still choose any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_seeds: Option<u64>,
}

/// The tick of a scenario that names none.
pub const DEFAULT_TICK: Duration = Duration::from_millis(1);

/// The timeline's name for the orderer host (node 0 of the ordering service, the one that cuts
/// blocks).
pub const ORDERER: &str = "orderer";
/// At most this many ordering-service nodes (each is a turmoil host with its own disk).
pub const MAX_ORDERER_NODES: usize = 5;

/// The host name of ordering-service node `index`: `orderer`, then `orderer2`, `orderer3`, …
/// (numbered from 1 as people count nodes, so the second is `orderer2`).
pub fn orderer_node(index: usize) -> String {
    match index {
        0 => ORDERER.to_string(),
        n => format!("{ORDERER}{}", n + 1),
    }
}

/// `orderer: {tx_per_second: 20, batch_timeout: 500ms, max_message_count: 10, start: 1s, stop: 20s}`:
/// synthetic transactions at `tx_per_second` from `start` until `stop` (simulated time), cut
/// into blocks as Fabric's solo orderer does (BatchTimeout, MaxMessageCount). `nodes: 2` adds
/// replicas (see [`orderer_node`]). `quiet: [{from: 30s, until: 1h}]` pauses the transactions in
/// each window: the channel is idle, every Deliver stream caught up and silent (a real network at
/// night). No peer may open a Deliver stream in a quiet window, once the faults the timeline has
/// in it are over and the scenario's settling time has passed (see `run.rs`'s `check_quiet`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrdererSection {
    /// How many ordering-service nodes: node 0 cuts blocks, the others replicate its chain.
    #[serde(default = "default_nodes")]
    pub nodes: usize,
    #[serde(default)]
    pub tx_per_second: f64,
    #[serde(default = "default_batch_timeout", deserialize_with = "duration", serialize_with = "write_duration")]
    pub batch_timeout: Duration,
    #[serde(default = "default_max_message_count")]
    pub max_message_count: u32,
    #[serde(default, deserialize_with = "duration", serialize_with = "write_duration")]
    pub start: Duration,
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub stop: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", serialize_with = "write_flow_items")]
    pub quiet: Vec<QuietWindow>,
}

/// `{from: 30s, until: 1h}`: a window without synthetic transactions (see [`OrdererSection`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuietWindow {
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub from: Duration,
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub until: Duration,
}

fn default_nodes() -> usize {
    1
}

fn default_batch_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_max_message_count() -> u32 {
    10
}

/// `network: {delay_probability: 0.05, max_delay: 200ms, loss: 0.01, duplicate: 0.02}`: faults
/// in peer-core's own network layer, above turmoil. Each write on a connection is held back with
/// `delay_probability` for up to `max_delay`, reordering traffic across connections; each gossip
/// message that arrives is lost with probability `loss` (the timeline can change it) or handled
/// twice with probability `duplicate`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFaults {
    #[serde(default)]
    pub delay_probability: f64,
    #[serde(default, deserialize_with = "duration", serialize_with = "write_duration")]
    pub max_delay: Duration,
    #[serde(default)]
    pub loss: f64,
    #[serde(default)]
    pub duplicate: f64,
}

/// `disk: {read_corruption: 0.001, misdirected_write: 0.001, latent_error: 0.001,
/// fsync_failure: 0.01, full: 0.005, until: 14s}`: faults of every peer's disk (not the
/// orderers'), each the probability that one operation on a block-store file meets it (see
/// `sim::env::DiskFaultRates`), drawn from a stream seeded per peer, from the start until `until`
/// (the end by default). After `until` the disks are sound and the checks demand the peers heal:
/// every peer back at the orderer's height within `blocks_within`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSection {
    #[serde(default)]
    pub read_corruption: f64,
    #[serde(default)]
    pub misdirected_write: f64,
    #[serde(default)]
    pub latent_error: f64,
    #[serde(default)]
    pub fsync_failure: f64,
    #[serde(default)]
    pub full: f64,
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub until: Option<Duration>,
}

impl DiskSection {
    /// Each fault kind with its rate, by the name coverage counts it under.
    pub fn rates(&self) -> [(&'static str, f64); 5] {
        [
            ("disk_read_corruption", self.read_corruption),
            ("disk_misdirected_write", self.misdirected_write),
            ("disk_latent_error", self.latent_error),
            ("disk_fsync_failure", self.fsync_failure),
            ("disk_full", self.full),
        ]
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub name: String,
    pub peers: usize,
}

/// A scenario's TLS: off, on, or mutual (`tls: true | false | mutual`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "RawTls", into = "RawTls")]
pub enum TlsMode {
    #[default]
    Off,
    On,
    Mutual,
}

impl TlsMode {
    pub fn is_off(&self) -> bool {
        *self == TlsMode::Off
    }
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawTls {
    Flag(bool),
    Word(String),
}

impl TryFrom<RawTls> for TlsMode {
    type Error = String;
    fn try_from(raw: RawTls) -> Result<TlsMode, String> {
        match raw {
            RawTls::Flag(false) => Ok(TlsMode::Off),
            RawTls::Flag(true) => Ok(TlsMode::On),
            RawTls::Word(word) if word == "mutual" => Ok(TlsMode::Mutual),
            RawTls::Word(word) => Err(format!("tls: {word:?} is not true, false or mutual")),
        }
    }
}

impl From<TlsMode> for RawTls {
    fn from(mode: TlsMode) -> RawTls {
        match mode {
            TlsMode::Off => RawTls::Flag(false),
            TlsMode::On => RawTls::Flag(true),
            TlsMode::Mutual => RawTls::Word("mutual".into()),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bootstrap {
    #[default]
    Chain,
    First,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    pub at: Duration,
    pub event: Event,
}

/// A timeline step as written: `at` and exactly one event key. (serde's flattened enums give
/// poor errors for unknown keys; this way an unknown event is named with the ones that exist.)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(deserialize_with = "duration")]
    at: Duration,
    start: Option<String>,
    crash: Option<String>,
    kill: Option<String>,
    restart: Option<String>,
    partition: Option<[String; 2]>,
    partition_oneway: Option<[String; 2]>,
    heal: Option<[String; 2]>,
    hold: Option<[String; 2]>,
    release: Option<[String; 2]>,
    loss: Option<f64>,
    add_anchor: Option<String>,
    remove_org: Option<String>,
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(raw: RawStep) -> Result<Step, String> {
        let events: Vec<Event> = [
            raw.start.map(Event::Start),
            raw.crash.map(Event::Crash),
            raw.kill.map(Event::Kill),
            raw.restart.map(Event::Restart),
            raw.partition.map(Event::Partition),
            raw.partition_oneway.map(Event::PartitionOneway),
            raw.heal.map(Event::Heal),
            raw.hold.map(Event::Hold),
            raw.release.map(Event::Release),
            raw.loss.map(Event::Loss),
            raw.add_anchor.map(Event::AddAnchor),
            raw.remove_org.map(Event::RemoveOrg),
        ]
        .into_iter()
        .flatten()
        .collect();
        match <[Event; 1]>::try_from(events) {
            Ok([event]) => Ok(Step { at: raw.at, event }),
            Err(events) => Err(format!("the timeline step at {:?} has {} events; give exactly one", raw.at, events.len())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The peer's process starts for the first time (a peer named here is not running before;
    /// every other peer starts at 0s).
    Start(String),
    /// Power cut, then the host crashes (unsynced disk writes are lost).
    Crash(String),
    /// The process is killed (`kill -9`) but the machine keeps power: what it wrote is in the
    /// OS page cache and survives, synced or not; nothing runs on its way out.
    Kill(String),
    /// The crashed host starts again on its disk.
    Restart(String),
    /// No traffic between the two peers, both ways.
    Partition([String; 2]),
    /// Traffic from the first peer to the second is dropped.
    PartitionOneway([String; 2]),
    Heal([String; 2]),
    /// Messages between the two peers are held back until released.
    Hold([String; 2]),
    Release([String; 2]),
    /// From now on each arriving gossip message is lost with this probability (0 ends it).
    Loss(f64),
    /// The orderer cuts a config block that names the org's peer0 as its anchor peer (an
    /// admin's channel update; needs an orderer section).
    AddAnchor(String),
    /// The orderer cuts a config block without the org: its peers are no longer members of the
    /// channel (the orderer refuses them blocks, the other orgs stop trusting them).
    RemoveOrg(String),
}

/// A step is written as it is read: `{at: 3s, crash: org1-peer1}` (pairs in flow style too).
impl Serialize for Step {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("at", &DurationText(self.at))?;
        let key = self.event.kind();
        match &self.event {
            Event::Start(name) | Event::Crash(name) | Event::Kill(name) | Event::Restart(name) => map.serialize_entry(key, name)?,
            Event::Partition(pair) | Event::PartitionOneway(pair) | Event::Heal(pair) | Event::Hold(pair) | Event::Release(pair) => {
                map.serialize_entry(key, &FlowSeq(pair))?
            }
            Event::Loss(rate) => map.serialize_entry(key, rate)?,
            Event::AddAnchor(org) | Event::RemoveOrg(org) => map.serialize_entry(key, org)?,
        }
        map.end()
    }
}

/// What people read in a timeline: `crash org1-peer1`, `partition org1-peer0 | org2-peer0`,
/// `partition org1-peer0 -> org2-peer0 (one-way)`, `message loss 20%`.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Start(name) | Event::Crash(name) | Event::Kill(name) | Event::Restart(name) => write!(f, "{} {name}", self.kind()),
            Event::PartitionOneway([from, to]) => write!(f, "partition {from} -> {to} (one-way)"),
            Event::Partition([a, b]) | Event::Heal([a, b]) | Event::Hold([a, b]) | Event::Release([a, b]) => {
                write!(f, "{} {a} | {b}", self.kind())
            }
            Event::Loss(rate) if *rate == 0.0 => write!(f, "message loss ends"),
            Event::Loss(rate) => write!(f, "message loss {}%", percent(*rate)),
            Event::AddAnchor(org) => write!(f, "config update: {org}-peer0 becomes {org}'s anchor peer"),
            Event::RemoveOrg(org) => write!(f, "config update: {org} is removed from the channel"),
        }
    }
}

/// The two hosts of a pair event (partition, heal, hold, release).
fn pair_of(event: &Event) -> Option<&[String; 2]> {
    match event {
        Event::Partition(pair) | Event::PartitionOneway(pair) | Event::Heal(pair) | Event::Hold(pair) | Event::Release(pair) => Some(pair),
        _ => None,
    }
}

/// A probability as a percentage without float noise: 0.07 is `7`, 0.125 is `12.5`.
fn percent(rate: f64) -> String {
    let text = format!("{:.2}", rate * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Event {
    /// The fault kind, for coverage counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Start(_) => "start",
            Event::Crash(_) => "crash",
            Event::Kill(_) => "kill",
            Event::Restart(_) => "restart",
            Event::Partition(_) => "partition",
            Event::PartitionOneway(_) => "partition_oneway",
            Event::Heal(_) => "heal",
            Event::Hold(_) => "hold",
            Event::Release(_) => "release",
            Event::Loss(_) => "loss",
            Event::AddAnchor(_) => "add_anchor",
            Event::RemoveOrg(_) => "remove_org",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// After the last timeline event, every running peer must see exactly the members it should
    /// within this long, and go on seeing them until the end of the run.
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub converge_within: Duration,
    /// While a peer is crashed, or cut off from an observer both ways, the observer must stop
    /// seeing it alive within this long. Make it at least aliveExpirationTimeout + the check
    /// interval + pullInterval: as in Fabric, a newer (but pre-crash) alive message relayed in a
    /// membership response refreshes lastSeen, which can postpone the death by one sync round
    /// (found by swarm seed 30).
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub dead_within: Option<Duration>,
    /// With an orderer: from the last timeline event on, every running peer must hold at least
    /// the blocks the orderer had this long before (blocks reach everyone, crashed peers catch up).
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub blocks_within: Option<Duration>,
    /// With leader election (`CORE_PEER_GOSSIP_USELEADERELECTION: true` in `env`): from this
    /// long after the last timeline event on, every org with running peers has exactly one
    /// leader for the channel at every sample (an election ends, and with one winner).
    #[serde(
        default,
        deserialize_with = "optional_duration",
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_duration"
    )]
    pub leaders_within: Option<Duration>,
    /// With an orderer: `[{after: 5s, by: 12s}]`: every peer running at `by` holds more blocks
    /// than the orderer had at `after`, so blocks cut after `after` reached it. With the cutter
    /// cut off from every peer from `after` on, those blocks can only have come through a
    /// replica: the proof that the peers failed over.
    #[serde(default, skip_serializing_if = "Vec::is_empty", serialize_with = "write_flow_items")]
    pub new_blocks: Vec<NewBlocks>,
}

/// One `new_blocks` window (see [`Checks::new_blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewBlocks {
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub after: Duration,
    #[serde(deserialize_with = "duration", serialize_with = "write_duration")]
    pub by: Duration,
}

/// A duration as the loader reads it back, exactly: whole seconds as `12s`, fractions of a second
/// above one as `2.699s`, and below one second in the largest unit that is exact (`500ms`,
/// `250us`, `7ns`).
pub fn duration_text(duration: Duration) -> String {
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    if secs == 0 && nanos > 0 {
        return match nanos {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}us", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    if nanos == 0 {
        return format!("{secs}s");
    }
    let fraction = format!("{nanos:09}");
    format!("{secs}.{}s", fraction.trim_end_matches('0'))
}

/// Serializes as [`duration_text`].
struct DurationText(Duration);

impl Serialize for DurationText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&duration_text(self.0))
    }
}

fn write_duration<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    DurationText(*duration).serialize(serializer)
}

fn write_optional_duration<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => write_duration(duration, serializer),
        None => serializer.serialize_none(),
    }
}

fn write_optional_flow_seq<S: Serializer>(items: &Option<Vec<String>>, serializer: S) -> Result<S::Ok, S::Error> {
    match items {
        Some(items) => write_flow_seq(items, serializer),
        None => serializer.serialize_none(),
    }
}

/// A list on one line: `[org1-peer1, org2-peer2]`.
fn write_flow_seq<S: Serializer, T: Serialize>(items: &Vec<T>, serializer: S) -> Result<S::Ok, S::Error> {
    FlowSeq(items).serialize(serializer)
}

/// A list with one item per line, each on one line: `- {name: org1, peers: 3}`.
fn write_flow_items<S: Serializer, T: Serialize>(items: &[T], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = serializer.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(&FlowMap(item))?;
    }
    seq.end()
}

/// A section on one line: `network: {delay_probability: 0.04, max_delay: 312ms, ...}`.
fn write_flow_map<S: Serializer, T: Serialize>(section: &T, serializer: S) -> Result<S::Ok, S::Error> {
    FlowMap(section).serialize(serializer)
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    peer_core::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Most peers in one org, and in a whole scenario (each is a simulated host with its own disk).
pub const MAX_PEERS_PER_ORG: usize = 32;
pub const MAX_PEERS: usize = 64;

/// An org's MSP ID: `Org<N>MSP` for `org<N>` (the digits of the name).
pub fn msp_id(org_name: &str) -> String {
    let digits: String = org_name.chars().filter(char::is_ascii_digit).collect();
    format!("Org{digits}MSP")
}

/// A peer of a scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub name: String,
    pub org: String,
    pub msp_id: String,
    pub index: usize,
    pub external: bool,
}

impl Scenario {
    /// Whether the channel config names `org`'s peer0 as its anchor peer.
    pub fn is_anchor_org(&self, org: &str) -> bool {
        self.anchors.as_ref().is_none_or(|anchors| anchors.iter().any(|a| a == org))
    }

    /// Checks names and times (also for generated scenarios).
    pub fn check(&self) -> Result<(), String> {
        self.validate()
    }

    /// The scenario as a scenario file: [`Scenario::parse`] reads it back as exactly this
    /// scenario (the swarm round trip: `sim run swarm --seed N --dump FILE`, then
    /// `sim run FILE --seed N` replays the same run).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("a scenario is plain data and always serializes")
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn peers(&self) -> Vec<PeerSpec> {
        let mut peers = Vec::new();
        for org in &self.orgs {
            for index in 0..org.peers {
                let name = format!("{}-peer{index}", org.name);
                peers.push(PeerSpec {
                    external: !self.no_external_endpoint.contains(&name),
                    name,
                    org: org.name.clone(),
                    msp_id: msp_id(&org.name),
                    index,
                });
            }
        }
        peers
    }

    /// The ordering-service nodes' host names, node 0 (the cutter) first; none without an
    /// `orderer:` section.
    pub fn orderer_nodes(&self) -> Vec<String> {
        let count = self.orderer.as_ref().map_or(0, |o| o.nodes);
        (0..count).map(orderer_node).collect()
    }

    /// Whether `name` is one of the scenario's ordering-service nodes.
    pub fn is_orderer(&self, name: &str) -> bool {
        self.orderer_nodes().iter().any(|n| n == name)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(tick) = self.tick
            && !(Duration::from_micros(100)..=Duration::from_millis(100)).contains(&tick)
        {
            return Err(format!("tick {tick:?} is not between 100us and 100ms"));
        }
        // The orgs first: peer names, host names, domains and MSP IDs are made from them, and
        // their sizes bound everything after (found by the scenario_file fuzz target).
        let mut msp_ids: BTreeMap<String, &str> = BTreeMap::new();
        let mut total_peers = 0usize;
        for org in &self.orgs {
            let name = &org.name;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
                return Err(format!("org name {name:?} must be lowercase letters and digits (it becomes host names and a domain)"));
            }
            if let Some(other) = msp_ids.insert(msp_id(name), name) {
                let what = if other == name {
                    "is listed twice".to_string()
                } else {
                    format!("has the same MSP ID as org {other} ({})", msp_id(name))
                };
                return Err(format!("org {name} {what}"));
            }
            if org.peers == 0 || org.peers > MAX_PEERS_PER_ORG {
                return Err(format!("org {name} has {} peers; give 1 to {MAX_PEERS_PER_ORG}", org.peers));
            }
            total_peers += org.peers;
        }
        if total_peers > MAX_PEERS {
            return Err(format!("the scenario has {total_peers} peers; at most {MAX_PEERS} are simulated"));
        }
        let peers = self.peers();
        let orderers = self.orderer_nodes();
        let known = |name: &String| peers.iter().any(|p| p.name == *name);
        // Timeline events may name peers and ordering-service nodes alike (the latter run from
        // 0s: they cannot start late).
        let known_host = |name: &String| known(name) || orderers.contains(name);
        if let Some(orderer) = &self.orderer {
            if !(0.0..=10_000.0).contains(&orderer.tx_per_second) {
                return Err(format!("orderer.tx_per_second {} is not between 0 and 10000", orderer.tx_per_second));
            }
            if orderer.batch_timeout.is_zero() || orderer.max_message_count == 0 {
                return Err("orderer.batch_timeout and orderer.max_message_count must be positive".into());
            }
            for window in &orderer.quiet {
                if window.from >= window.until || window.until > self.duration {
                    return Err(format!(
                        "orderer.quiet window {{from: {}, until: {}}} must end after it begins and by the end of the run ({})",
                        duration_text(window.from),
                        duration_text(window.until),
                        duration_text(self.duration)
                    ));
                }
            }
            if !(1..=MAX_ORDERER_NODES).contains(&orderer.nodes) {
                return Err(format!("orderer.nodes {} is not between 1 and {MAX_ORDERER_NODES}", orderer.nodes));
            }
        }
        for window in &self.checks.new_blocks {
            if self.orderer.is_none() {
                return Err("checks.new_blocks needs an orderer section".into());
            }
            if window.after >= window.by || window.by > self.duration {
                return Err(format!(
                    "checks.new_blocks window {:?}..{:?} must end after it begins and by the end of the run ({:?})",
                    window.after, window.by, self.duration
                ));
            }
        }
        for name in &self.no_external_endpoint {
            if !known(name) {
                return Err(format!("no_external_endpoint names unknown peer {name}"));
            }
            if name.ends_with("-peer0") && self.orgs.len() > 1 && self.is_anchor_org(name.trim_end_matches("-peer0")) {
                return Err(format!("{name} is its org's anchor peer and needs an external endpoint"));
            }
        }
        if let Some(bad) = self.anchors.iter().flatten().find(|o| !self.orgs.iter().any(|org| org.name == **o)) {
            return Err(format!("anchors names unknown org {bad}"));
        }
        if let Some(bad) = self.peer_env.keys().find(|n| !known(n)) {
            return Err(format!("peer_env names unknown peer {bad}"));
        }
        if let Some(network) = &self.network {
            for (key, p) in [("delay_probability", network.delay_probability), ("loss", network.loss), ("duplicate", network.duplicate)] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(format!("network.{key} {p} is not between 0 and 1"));
                }
            }
            if network.loss + network.duplicate > 1.0 {
                return Err(format!("network.loss + network.duplicate ({} + {}) is more than 1", network.loss, network.duplicate));
            }
            if network.delay_probability > 0.0 && network.max_delay.is_zero() {
                return Err("network.delay_probability is set but network.max_delay is zero".into());
            }
        }
        if let Some(disk) = &self.disk {
            for (key, p) in disk.rates() {
                if !(0.0..=0.1).contains(&p) {
                    return Err(format!(
                        "disk.{} {p} is not between 0 and 0.1 (a probability per I/O operation)",
                        key.trim_start_matches("disk_")
                    ));
                }
            }
            if disk.until.is_none() && disk.rates().iter().any(|(_, p)| *p > 0.0) {
                return Err("disk.until is missing: the checks need a time after which the disks are sound".into());
            }
            if disk.until.is_some_and(|until| until > self.duration) {
                return Err(format!("disk.until {:?} is after the end of the run ({:?})", disk.until.unwrap_or_default(), self.duration));
            }
        }
        let duplicate = self.network.as_ref().map_or(0.0, |n| n.duplicate);
        let mut timeline: Vec<&Step> = self.timeline.iter().collect();
        timeline.sort_by_key(|s| s.at);
        let mut removed: BTreeSet<String> = BTreeSet::new();
        let mut started: BTreeSet<&String> = peers.iter().map(|p| &p.name).filter(|n| !self.starts_late(n)).chain(&orderers).collect();
        for step in timeline {
            let names: Vec<&String> = match &step.event {
                Event::Start(p) | Event::Crash(p) | Event::Kill(p) | Event::Restart(p) => vec![p],
                Event::Partition(pair) | Event::PartitionOneway(pair) | Event::Heal(pair) | Event::Hold(pair) | Event::Release(pair) => {
                    pair.iter().collect()
                }
                Event::AddAnchor(org) => {
                    if self.orderer.is_none() {
                        return Err(format!("add_anchor at {:?} needs an orderer section (the orderer cuts the config block)", step.at));
                    }
                    if !self.orgs.iter().any(|o| o.name == *org) {
                        return Err(format!("add_anchor at {:?} names unknown org {org}", step.at));
                    }
                    if self.is_anchor_org(org) {
                        return Err(format!("add_anchor at {:?}: {org} has an anchor peer already", step.at));
                    }
                    if self.no_external_endpoint.contains(&format!("{org}-peer0")) {
                        return Err(format!("add_anchor at {:?}: {org}-peer0 has no external endpoint", step.at));
                    }
                    vec![]
                }
                Event::RemoveOrg(org) => {
                    if self.orderer.is_none() {
                        return Err(format!("remove_org at {:?} needs an orderer section (the orderer cuts the config block)", step.at));
                    }
                    if !self.orgs.iter().any(|o| o.name == *org) {
                        return Err(format!("remove_org at {:?} names unknown org {org}", step.at));
                    }
                    if !removed.insert(org.clone()) {
                        return Err(format!("remove_org at {:?}: {org} is removed already", step.at));
                    }
                    if removed.len() >= self.orgs.len() {
                        return Err(format!("remove_org at {:?}: no org would be left in the channel", step.at));
                    }
                    vec![]
                }
                Event::Loss(p) => {
                    if !(0.0..=1.0).contains(p) || p + duplicate > 1.0 {
                        return Err(format!(
                            "the loss rate at {:?} is {p}; it must be between 0 and 1 - network.duplicate ({duplicate})",
                            step.at
                        ));
                    }
                    vec![]
                }
            };
            if let Event::Start(node) = &step.event
                && orderers.contains(node)
            {
                return Err(format!("{node} is an orderer node: it runs from 0s and cannot start late"));
            }
            if let Some(bad) = names.iter().find(|n| !known_host(n)) {
                return Err(format!("the timeline names unknown peer {bad}"));
            }
            if step.at > self.duration {
                return Err(format!("an event at {:?} is after the end of the run ({:?})", step.at, self.duration));
            }
            match &step.event {
                Event::Start(peer) if !started.insert(peer) => {
                    return Err(format!(
                        "{peer} is started at {:?} but is already running (a peer starts once; use restart after a crash)",
                        step.at
                    ));
                }
                Event::Start(_) => {}
                _ => {
                    if let Some(early) = names.iter().find(|n| !started.contains(*n)) {
                        return Err(format!("an event at {:?} names {early} before the peer starts", step.at));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the timeline starts this peer later (it does not run from 0s).
    pub fn starts_late(&self, peer: &str) -> bool {
        self.timeline.iter().any(|s| matches!(&s.event, Event::Start(p) if p == peer))
    }

    /// The milestones every batch of runs of this scenario must reach at least once: members
    /// learned and convergence always; members learned across orgs when two orgs both have
    /// externally visible peers; a peer declared dead when peers crash, or are cut off in a
    /// scenario that checks deaths (`dead_within`; a partition between two peers that others
    /// still relay for need not kill anyone); a restarted peer admitted again with a higher
    /// incarnation, with the channel it had joined still in its ledger; with several orderer
    /// nodes, when the timeline crashes or cuts off one of them, a leader pulling from another
    /// one than before (failed over).
    pub fn expected_milestones(&self) -> Vec<&'static str> {
        let mut expected = vec!["learned", "converged"];
        let visible_orgs = self.orgs.iter().filter(|o| self.peers().iter().any(|p| p.org == o.name && p.external)).count();
        if visible_orgs > 1 {
            expected.push("learned_across_orgs");
        }
        // Only a partition between peers can make a member dead (orderer nodes are no members).
        let cut = self.checks.dead_within.is_some()
            && self.timeline.iter().any(|s| matches!(&s.event, Event::Partition(pair) if !pair.iter().any(|p| self.is_orderer(p))));
        if cut || self.timeline.iter().any(|s| matches!(&s.event, Event::Crash(p) | Event::Kill(p) if !self.is_orderer(p))) {
            expected.push("declared_dead");
        }
        if self.orderer.is_some() {
            expected.push("blocks_committed");
        }
        if self.disk.as_ref().is_some_and(|d| d.rates().iter().any(|(_, p)| *p > 0.0)) {
            expected.push("healed_from_network");
        }
        if self.checks.leaders_within.is_some() {
            expected.push("elected");
            if self.timeline.iter().any(|s| matches!(&s.event, Event::Crash(p) | Event::Kill(p) if !self.is_orderer(p))) {
                expected.push("leader_changed");
            }
        }
        if self.timeline.iter().any(|s| matches!(&s.event, Event::Restart(p) if !self.is_orderer(p))) {
            expected.push("readmitted");
            expected.push("ledger_survived_restart");
        }
        let orderer_lost = self.timeline.iter().any(|s| match &s.event {
            Event::Crash(p) | Event::Kill(p) => self.is_orderer(p),
            Event::Partition(pair) => pair.iter().any(|p| self.is_orderer(p)),
            _ => false,
        });
        if self.orderer_nodes().len() > 1 && orderer_lost {
            expected.push("failed_over");
        }
        expected
    }

    /// The timeline events of one moment as lines for people, in order: one line per event,
    /// except that a run of pair events of one kind that cuts a whole set of hosts off from
    /// another (as swarm seeds cut org from org) is one line, naming an org when the set is all
    /// of its peers (`partition org2 | org1 (16 pairs)`) and `every peer` when it is every peer
    /// of several orgs (`partition orderer | every peer (4 pairs)`).
    pub fn describe_events(&self, events: &[&Event]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = events;
        while let Some((first, _)) = rest.split_first() {
            let pairs: Vec<&[String; 2]> = rest.iter().map_while(|e| pair_of(e).filter(|_| e.kind() == first.kind())).collect();
            if pairs.len() > 1
                && let Some(line) = self.describe_cut(first, &pairs)
            {
                lines.push(line);
                rest = &rest[pairs.len()..];
                continue;
            }
            lines.push(first.to_string());
            rest = &rest[1..];
        }
        lines
    }

    /// `pairs` (all of `first`'s kind) as one line, if they are every pair of two sets.
    fn describe_cut(&self, first: &Event, pairs: &[&[String; 2]]) -> Option<String> {
        let mut left: Vec<&String> = Vec::new();
        let mut right: Vec<&String> = Vec::new();
        for [a, b] in pairs.iter().copied() {
            if !left.contains(&a) {
                left.push(a);
            }
            if !right.contains(&b) {
                right.push(b);
            }
        }
        let distinct: BTreeSet<&[String; 2]> = pairs.iter().copied().collect();
        if distinct.len() != pairs.len() || left.len() * right.len() != pairs.len() {
            return None;
        }
        let side = |names: &[&String]| -> String {
            let set: BTreeSet<&str> = names.iter().map(|n| n.as_str()).collect();
            let everyone = self.peers();
            if self.orgs.len() > 1 && everyone.len() == set.len() && everyone.iter().all(|p| set.contains(p.name.as_str())) {
                return "every peer".to_string();
            }
            let org = self.orgs.iter().find(|o| {
                let peers: BTreeSet<String> = (0..o.peers).map(|i| format!("{}-peer{i}", o.name)).collect();
                peers.len() == set.len() && peers.iter().all(|p| set.contains(p.as_str()))
            });
            match (org, names) {
                (Some(org), _) => org.name.clone(),
                (None, [one]) => one.to_string(),
                (None, _) => format!("{{{}}}", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")),
            }
        };
        // One host cut off from all the others (`org1-peer2 | every other peer`, or `... host`
        // with the orderer nodes too).
        let peers: BTreeSet<String> = self.peers().into_iter().map(|p| p.name).collect();
        let hosts: BTreeSet<String> = peers.iter().cloned().chain(self.orderer_nodes()).collect();
        let others = |one: &[&String], many: &[&String]| -> Option<&'static str> {
            let [one] = one else { return None };
            let many: BTreeSet<&String> = many.iter().copied().collect();
            let all_but = |set: &BTreeSet<String>| {
                set.contains(*one) && set.len() == many.len() + 1 && set.iter().all(|n| n == *one || many.contains(n))
            };
            if all_but(&peers) {
                Some("every other peer")
            } else if all_but(&hosts) {
                Some("every other host")
            } else {
                None
            }
        };
        let (from, to) = match (others(&left, &right), others(&right, &left)) {
            (Some(rest), _) => (left[0].to_string(), rest.to_string()),
            (_, Some(rest)) => (rest.to_string(), right[0].to_string()),
            _ => (side(&left), side(&right)),
        };
        let count = pairs.len();
        Some(match first {
            Event::PartitionOneway(_) => format!("partition {from} -> {to} (one-way, {count} pairs)"),
            _ => format!("{} {from} | {to} ({count} pairs)", first.kind()),
        })
    }

    /// When the last timeline event happens (zero without one).
    pub fn last_fault(&self) -> Duration {
        let disk = self.disk.as_ref().and_then(|d| d.until).unwrap_or_default();
        self.timeline.iter().map(|s| s.at).max().unwrap_or_default().max(disk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario file reads back as itself once written out (`Scenario::to_yaml`).
    #[test]
    fn every_scenario_file_reads_back_as_itself() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("the scenarios folder") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let scenario = Scenario::parse(&std::fs::read_to_string(&path).expect("a scenario file")).expect("a valid scenario");
            let text = scenario.to_yaml();
            assert_eq!(Scenario::parse(&text).as_ref(), Ok(&scenario), "{}:\n{text}", path.display());
            checked += 1;
        }
        assert!(checked > 10, "only {checked} scenario files");
    }

    #[test]
    fn durations_are_written_exactly() {
        for (duration, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(12), "12s"),
            (Duration::from_millis(2_699), "2.699s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::new(3, 1), "3.000000001s"),
        ] {
            assert_eq!(duration_text(duration), text);
            assert_eq!(peer_core::config::parse_duration(text), Ok(duration));
        }
    }

    #[test]
    fn a_quiet_window_must_end_after_it_begins_and_within_the_run() {
        let with = |quiet: &str| {
            Scenario::parse(&format!(
                "name: t\nduration: 60s\norgs: [{{name: org1, peers: 1}}]\norderer: {{tx_per_second: 5, quiet: [{quiet}]}}\nchecks: {{converge_within: 5s}}\n"
            ))
        };
        let scenario = with("{from: 10s, until: 1m}").expect("a window within the run");
        assert_eq!(scenario.orderer.unwrap().quiet, [QuietWindow { from: Duration::from_secs(10), until: Duration::from_secs(60) }]);
        for bad in ["{from: 20s, until: 10s}", "{from: 10s, until: 10s}", "{from: 10s, until: 61s}"] {
            let err = with(bad).expect_err(bad);
            assert!(err.contains("orderer.quiet window") && err.contains("must end after it begins"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_moment_of_pair_events_over_two_orgs_is_one_line() {
        let text = "name: t\nduration: 10s\norgs: [{name: org1, peers: 2}, {name: org2, peers: 2}]\nchecks: {converge_within: 5s}\n";
        let scenario = Scenario::parse(text).expect("a valid scenario");
        let pair = |a: &str, b: &str| [a.to_string(), b.to_string()];
        let cut = [
            Event::Partition(pair("org1-peer0", "org2-peer0")),
            Event::Partition(pair("org1-peer1", "org2-peer0")),
            Event::Crash("org1-peer1".into()),
        ];
        let events: Vec<&Event> = cut.iter().collect();
        assert_eq!(scenario.describe_events(&events), ["partition org1 | org2-peer0 (2 pairs)", "crash org1-peer1"]);
        let alone = ["org1-peer0", "org2-peer0", "org2-peer1"].map(|other| Event::Heal(pair("org1-peer1", other)));
        assert_eq!(scenario.describe_events(&alone.iter().collect::<Vec<_>>()), ["heal org1-peer1 | every other peer (3 pairs)"]);
        let oneway = [Event::PartitionOneway(pair("org1-peer0", "org2-peer0"))];
        assert_eq!(scenario.describe_events(&oneway.iter().collect::<Vec<_>>()), ["partition org1-peer0 -> org2-peer0 (one-way)"]);
        assert_eq!(Event::Loss(0.07).to_string(), "message loss 7%");
        assert_eq!(Event::Loss(0.0).to_string(), "message loss ends");
    }
}
