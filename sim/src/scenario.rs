//! Scenario files (`scenarios/*.yaml`): who runs, what happens when, and what must hold.
//!
//! ```yaml
//! name: crash-restart
//! duration: 30s
//! orgs: [{name: org1, peers: 3}, {name: org2, peers: 2}]
//! no_external_endpoint: [org1-peer2]     # these peers are invisible outside their org
//! bootstrap: chain                       # chain: peer i bootstraps from peer i-1; first: from peer0
//! env: {CORE_PEER_GOSSIP_ALIVETIMEINTERVAL: 500ms}   # CORE_* overrides for every peer
//! timeline:
//!   - {at: 8s, crash: org1-peer1}        # a power cut, then the host dies
//!   - {at: 12s, restart: org1-peer1}
//!   - {at: 5s, partition: [org1-peer0, org2-peer0]}
//!   - {at: 9s, heal: [org1-peer0, org2-peer0]}
//! network: {delay_probability: 0.05, max_delay: 200ms}   # faults in our own network layer
//! checks: {converge_within: 8s}
//! ```
//! Peers are named `<org>-peer<i>`; their MSP ID is `Org<N>MSP` for `org<N>`. Each org's peer0 is
//! the anchor peer other orgs contact.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(deserialize_with = "duration")]
    pub duration: Duration,
    pub orgs: Vec<OrgSpec>,
    #[serde(default)]
    pub no_external_endpoint: Vec<String>,
    #[serde(default)]
    pub bootstrap: Bootstrap,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub timeline: Vec<Step>,
    /// Faults injected in peer-core's own network layer, above turmoil.
    #[serde(default)]
    pub network: Option<NetworkFaults>,
    pub checks: Checks,
}

/// `network: {delay_probability: 0.05, max_delay: 200ms}`: each write on a connection is held
/// back with that probability for up to `max_delay`, reordering traffic across connections.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkFaults {
    pub delay_probability: f64,
    #[serde(deserialize_with = "duration")]
    pub max_delay: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub name: String,
    pub peers: usize,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bootstrap {
    #[default]
    Chain,
    First,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(deserialize_with = "duration")]
    pub at: Duration,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Power cut, then the host crashes (unsynced disk writes are lost).
    Crash(String),
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
}

impl Event {
    /// The fault kind, for coverage counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Crash(_) => "crash",
            Event::Restart(_) => "restart",
            Event::Partition(_) => "partition",
            Event::PartitionOneway(_) => "partition_oneway",
            Event::Heal(_) => "heal",
            Event::Hold(_) => "hold",
            Event::Release(_) => "release",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// After the last timeline event, every running peer must see exactly the members it should
    /// within this long.
    #[serde(deserialize_with = "duration")]
    pub converge_within: Duration,
    /// While a peer is crashed, or cut off from an observer both ways, the observer must stop
    /// seeing it alive within this long. Make it at least aliveExpirationTimeout + the check
    /// interval + pullInterval: as in Fabric, a newer (but pre-crash) alive message relayed in a
    /// membership response refreshes lastSeen, which can postpone the death by one sync round
    /// (found by swarm seed 30).
    #[serde(default, deserialize_with = "optional_duration")]
    pub dead_within: Option<Duration>,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    duration(deserializer).map(Some)
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    peer_core::config::parse_duration(&text).map_err(serde::de::Error::custom)
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
    /// Checks names and times (also for generated scenarios).
    pub fn check(&self) -> Result<(), String> {
        self.validate()
    }

    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn peers(&self) -> Vec<PeerSpec> {
        let mut peers = Vec::new();
        for org in &self.orgs {
            let digits: String = org.name.chars().filter(char::is_ascii_digit).collect();
            for index in 0..org.peers {
                let name = format!("{}-peer{index}", org.name);
                peers.push(PeerSpec {
                    external: !self.no_external_endpoint.contains(&name),
                    name,
                    org: org.name.clone(),
                    msp_id: format!("Org{digits}MSP"),
                    index,
                });
            }
        }
        peers
    }

    fn validate(&self) -> Result<(), String> {
        let peers = self.peers();
        let known = |name: &String| peers.iter().any(|p| p.name == *name);
        for name in &self.no_external_endpoint {
            if !known(name) {
                return Err(format!("no_external_endpoint names unknown peer {name}"));
            }
            if name.ends_with("-peer0") && self.orgs.len() > 1 {
                return Err(format!("{name} is its org's anchor peer and needs an external endpoint"));
            }
        }
        if let Some(network) = &self.network
            && !(0.0..=1.0).contains(&network.delay_probability)
        {
            return Err(format!("network.delay_probability {} is not between 0 and 1", network.delay_probability));
        }
        for step in &self.timeline {
            let names: Vec<&String> = match &step.event {
                Event::Crash(p) | Event::Restart(p) => vec![p],
                Event::Partition(pair) | Event::PartitionOneway(pair) | Event::Heal(pair) | Event::Hold(pair) | Event::Release(pair) => {
                    pair.iter().collect()
                }
            };
            if let Some(bad) = names.into_iter().find(|n| !known(n)) {
                return Err(format!("the timeline names unknown peer {bad}"));
            }
            if step.at > self.duration {
                return Err(format!("an event at {:?} is after the end of the run ({:?})", step.at, self.duration));
            }
        }
        Ok(())
    }

    /// When the last timeline event happens (zero without one).
    pub fn last_fault(&self) -> Duration {
        self.timeline.iter().map(|s| s.at).max().unwrap_or_default()
    }
}
