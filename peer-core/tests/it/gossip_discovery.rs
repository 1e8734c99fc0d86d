//! The membership state machine driven with explicit time: no sockets, no clock, no async.
//!
//! `World` is a tiny harness in the spirit of quinn's `Pair`: it holds several `Discovery`
//! instances, delivers their transmits to each other at once (as a perfect network would, unless
//! a peer is down), and steps time to the next timer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use peer_core::env::Instant;
use peer_core::gossip::discovery::{Discovery, DiscoveryConfig, Event, MemberInfo, SelfInfo, Transmit};
use peer_core::gossip::identity::Identities;
use peer_core::gossip::message::Signer;
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::msp::identity::PkiId;
use peer_core::msp::{LocalMsp, Msp};
use peer_core::testkit::epoch;
use rand_core::SeedableRng;

pub(crate) fn config(bootstrap: &[&str], anchors: &[(&str, &str)]) -> DiscoveryConfig {
    DiscoveryConfig {
        alive_time_interval: Duration::from_secs(5),
        alive_expiration_timeout: Duration::from_secs(25),
        alive_expiration_check_interval: Duration::from_millis(2500),
        reconnect_interval: Duration::from_secs(25),
        max_connection_attempts: 120,
        msg_expiration_factor: 20,
        pull_interval: Duration::from_secs(4),
        pull_peer_num: 3,
        publish_cert_period: Duration::from_secs(10),
        propagate_peer_num: 3,
        propagate_iterations: 1,
        max_propagation_burst_size: 10,
        max_propagation_burst_latency: Duration::from_millis(10),
        bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
        anchors: anchors.iter().map(|(e, o)| (e.to_string(), o.to_string())).collect(),
    }
}

struct Node {
    name: String,
    msp: Arc<LocalMsp>,
    discovery: Discovery,
    up: bool,
    /// While down: `false` drops messages silently (a partition), `true` refuses them (a crash),
    /// which the sender's comm reports as "presumed dead".
    refuses: bool,
    events: Vec<Event>,
}

pub(crate) struct Orgs {
    pub(crate) msps: BTreeMap<String, Msp>,
    pub(crate) peers: BTreeMap<String, LocalMsp>,
}

pub(crate) fn orgs() -> Orgs {
    let mut msps = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for (msp_id, domain) in [("Org1MSP", "org1"), ("Org2MSP", "org2")] {
        let spec = OrgSpec { msp_id: msp_id.into(), domain: format!("{domain}.example.com"), peers: 3 };
        let org = generate::generate_org(&spec, &mut generate::org_rng(3, &spec), ValidityWindow::fixed()).unwrap();
        msps.insert(msp_id.to_string(), Msp::from_files(&org.msp, msp_id).unwrap());
        for (i, peer) in org.peers.iter().enumerate() {
            peers.insert(format!("{domain}p{i}"), LocalMsp::from_files(&peer.msp, msp_id, epoch()).unwrap());
        }
    }
    Orgs { msps, peers }
}

struct World {
    orgs: Orgs,
    now: Instant,
    nodes: BTreeMap<String, Node>,
    /// Endpoint → node name (internal and external endpoints).
    endpoints: BTreeMap<String, String>,
    /// Messages rejected, by receiving node: (name, reason).
    rejected: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        World { orgs: orgs(), now: Instant(0), nodes: BTreeMap::new(), endpoints: BTreeMap::new(), rejected: Vec::new() }
    }

    /// Adds (or restarts, with a new incarnation) peer `name` (e.g. `org1p0`), trusting every
    /// org as configured MSPs (`peer.gossip.trustedMSPs`).
    fn start(&mut self, name: &str, external: bool, config: DiscoveryConfig) {
        let others: Vec<Msp> = self.orgs.msps.values().cloned().collect();
        self.start_trusting(name, external, config, others);
    }

    /// [`Self::start`], with the orgs trusted only as the MSPs of a joined channel "ch" (as a
    /// channel's config brings them).
    fn start_on_channel(&mut self, name: &str, external: bool, config: DiscoveryConfig) {
        self.start_trusting(name, external, config, Vec::new());
        let msps: Vec<Msp> = self.orgs.msps.values().cloned().collect();
        let now = self.now;
        self.nodes.get_mut(name).unwrap().discovery.handle_channel_msps(now, "ch", msps);
    }

    fn start_trusting(&mut self, name: &str, external: bool, config: DiscoveryConfig, others: Vec<Msp>) {
        let msp = Arc::new(self.orgs.peers[name].clone());
        let internal = format!("{name}:7051");
        let external_endpoint = if external { format!("{name}.ext:7051") } else { String::new() };
        let identities = Identities::new(&msp, others);
        let me = SelfInfo {
            pki_id: msp.pki_id(),
            org: msp.msp.id.clone(),
            external_endpoint: external_endpoint.clone(),
            internal_endpoint: internal.clone(),
        };
        let seed = self.now.0 ^ msp.pki_id().0[0] as u64;
        let wall = epoch() + Duration::from_nanos(self.now.0);
        let signer: Arc<dyn Signer> = msp.clone();
        let discovery = Discovery::new(config, me, signer, identities, rand_chacha::ChaCha20Rng::seed_from_u64(seed), self.now, wall);
        self.endpoints.insert(internal, name.to_string());
        if external {
            self.endpoints.insert(external_endpoint, name.to_string());
        }
        self.nodes.insert(name.to_string(), Node { name: name.into(), msp, discovery, up: true, refuses: false, events: Vec::new() });
    }

    fn pki(&self, name: &str) -> PkiId {
        self.nodes[name].msp.pki_id()
    }

    fn name_of(&self, pki: &PkiId) -> Option<String> {
        self.nodes.values().find(|n| n.msp.pki_id() == *pki).map(|n| n.name.clone())
    }

    /// Delivers everything queued until the network is quiet.
    fn deliver(&mut self) {
        loop {
            let mut work = Vec::new();
            for node in self.nodes.values_mut() {
                while let Some(event) = node.discovery.poll_event() {
                    node.events.push(event);
                }
                if !node.up {
                    while node.discovery.poll_transmit().is_some() {}
                    continue;
                }
                while let Some(transmit) = node.discovery.poll_transmit() {
                    work.push((node.name.clone(), transmit));
                }
            }
            if work.is_empty() {
                return;
            }
            for (from, transmit) in work {
                self.carry(&from, transmit);
            }
        }
    }

    fn carry(&mut self, from: &str, transmit: Transmit) {
        let now = self.now;
        let sender = self.pki(from);
        let receive = |world: &mut World, to: &str, message| {
            let node = world.nodes.get_mut(to).unwrap();
            if let Err(err) = node.discovery.handle_message(now, sender, message) {
                world.rejected.push((to.to_string(), err.reason().to_string()));
            }
        };
        match transmit {
            Transmit::Send { to, message, .. } => match self.name_of(&to) {
                Some(name) if self.nodes[&name].up => receive(self, &name, message),
                Some(name) if !self.nodes[&name].refuses => {}
                _ => self.nodes.get_mut(from).unwrap().discovery.handle_presumed_dead(now, to),
            },
            Transmit::ProbeDead { to, message, .. } => {
                if let Some(name) = self.name_of(&to).filter(|n| self.nodes[n].up) {
                    receive(self, &name, message);
                }
            }
            Transmit::Contact { endpoint, org, message } => {
                let target = self.endpoints.get(&endpoint).cloned().filter(|n| self.nodes[n].up);
                let result = match target {
                    Some(name) if self.nodes[&name].msp.msp.id == org => {
                        let pki = self.pki(&name);
                        receive(self, &name, message);
                        Ok(pki)
                    }
                    Some(_) => Err(format!("{endpoint} isn't in our organization, cannot be a bootstrap peer")),
                    None => Err("connection refused".to_string()),
                };
                self.nodes.get_mut(from).unwrap().discovery.handle_dial_result(now, &endpoint, result);
            }
            Transmit::Close { .. } => {}
        }
    }

    /// Runs timers and deliveries until `until` (relative to now).
    fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        self.deliver();
        loop {
            let next = self.nodes.values().filter(|n| n.up).map(|n| n.discovery.poll_timeout()).min().unwrap_or(until);
            if next > until {
                break;
            }
            self.now = next.max(self.now);
            for node in self.nodes.values_mut().filter(|n| n.up) {
                if node.discovery.poll_timeout() <= self.now {
                    node.discovery.handle_timeout(self.now);
                }
            }
            self.deliver();
        }
        self.now = until;
    }

    /// Names of the members `name` sees, alive (`true`) or dead.
    fn view(&self, name: &str, alive: bool) -> BTreeSet<String> {
        self.nodes[name].discovery.members().iter().filter(|m| m.alive == alive).filter_map(|m| self.name_of(&m.pki_id)).collect()
    }

    fn member(&self, name: &str, of: &str) -> MemberInfo {
        let pki = self.pki(of);
        self.nodes[name].discovery.members().into_iter().find(|m| m.pki_id == pki).unwrap()
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bootstrap_then_everyone_learns_everyone_through_a_third_peer() {
    let mut world = World::new();
    world.start("org1p0", true, config(&[], &[]));
    world.start("org1p1", true, config(&["org1p0:7051"], &[]));
    world.run_for(Duration::from_secs(1));
    // The bootstrap membership request and its response introduce both sides at once.
    assert_eq!(world.view("org1p0", true), set(&["org1p1"]));
    assert_eq!(world.view("org1p1", true), set(&["org1p0"]));
    // A third peer bootstraps from p1 and learns p0 through it (and p0 learns it by gossip).
    world.start("org1p2", true, config(&["org1p1:7051"], &[]));
    world.run_for(Duration::from_secs(10));
    for (name, others) in [("org1p0", ["org1p1", "org1p2"]), ("org1p1", ["org1p0", "org1p2"]), ("org1p2", ["org1p0", "org1p1"])] {
        assert_eq!(world.view(name, true), set(&others), "{name}");
    }
    // Same org: internal endpoints are shared.
    assert_eq!(world.member("org1p2", "org1p0").internal_endpoint, "org1p0:7051");
    assert!(world.rejected.iter().all(|(_, reason)| reason == "stale"), "{:?}", world.rejected);
}

#[test]
fn a_silent_member_turns_dead_after_the_expiration_timeout_and_is_probed_back() {
    let mut world = World::new();
    world.start("org1p0", true, config(&[], &[]));
    world.start("org1p1", true, config(&["org1p0:7051"], &[]));
    world.run_for(Duration::from_secs(10));
    assert_eq!(world.view("org1p0", true), set(&["org1p1"]));
    // p1 goes silent (a partition: it keeps its state).
    world.nodes.get_mut("org1p1").unwrap().up = false;
    let cut = world.now;
    // The last heartbeat p0 heard came at most aliveTimeInterval (5 s) before the cut, so p1 is
    // still alive 25 - 5 = 20 s after it, and dead by 25 s + one check interval.
    world.run_for(Duration::from_millis(19_900));
    assert_eq!(world.view("org1p0", true), set(&["org1p1"]), "not before aliveExpirationTimeout");
    world.run_for(Duration::from_millis(7_600));
    assert_eq!(world.view("org1p0", false), set(&["org1p1"]), "dead within timeout + check interval");
    assert!(world.now.saturating_duration_since(cut) <= Duration::from_millis(27_500));
    assert!(world.nodes["org1p0"].events.contains(&Event::Dead { pki_id: world.pki("org1p1") }));
    // p1 comes back: p0 probes dead members every reconnectInterval and resurrects it.
    world.nodes.get_mut("org1p1").unwrap().up = true;
    world.run_for(Duration::from_secs(26));
    assert_eq!(world.view("org1p0", true), set(&["org1p1"]));
    assert!(world.nodes["org1p0"].events.contains(&Event::Resurrected { pki_id: world.pki("org1p1") }));
}

#[test]
fn a_dead_member_is_purged_after_the_store_ttl_unless_it_is_a_bootstrap_peer() {
    let mut world = World::new();
    world.start("org1p0", true, config(&[], &[]));
    world.start("org1p1", true, config(&["org1p0:7051"], &[]));
    world.start("org1p2", true, config(&["org1p0:7051"], &[]));
    world.run_for(Duration::from_secs(10));
    assert_eq!(world.view("org1p1", true), set(&["org1p0", "org1p2"]));
    world.nodes.get_mut("org1p2").unwrap().up = false;
    world.nodes.get_mut("org1p0").unwrap().up = false;
    // TTL = 25 s × 20 = 500 s; purge runs on TTL/100 ticks.
    world.run_for(Duration::from_secs(400));
    assert_eq!(world.view("org1p1", false), set(&["org1p0", "org1p2"]));
    world.run_for(Duration::from_secs(120));
    // p2 is gone entirely; p0 is p1's bootstrap peer and stays (dead).
    assert_eq!(world.view("org1p1", false), set(&["org1p0"]));
    assert!(world.nodes["org1p1"].events.contains(&Event::Purged { pki_id: world.pki("org1p2") }));
}

#[test]
fn a_restarted_peer_replaces_its_old_incarnation() {
    let mut world = World::new();
    world.start("org1p0", true, config(&[], &[]));
    world.start("org1p1", true, config(&["org1p0:7051"], &[]));
    world.run_for(Duration::from_secs(10));
    let before = world.member("org1p0", "org1p1");
    // p1 crashes and restarts 40 s later: a new process, a later incarnation number.
    let p1 = world.nodes.get_mut("org1p1").unwrap();
    p1.up = false;
    p1.refuses = true;
    world.run_for(Duration::from_secs(10));
    // A crashed peer refuses connections: the next send fails and it is presumed dead at once.
    assert_eq!(world.view("org1p0", false), set(&["org1p1"]));
    world.run_for(Duration::from_secs(30));
    world.start("org1p1", true, config(&["org1p0:7051"], &[]));
    world.run_for(Duration::from_secs(5));
    let after = world.member("org1p0", "org1p1");
    assert!(after.alive);
    assert!(after.inc_num > before.inc_num, "{} > {}", after.inc_num, before.inc_num);
}

#[test]
fn disclosure_across_two_orgs_follows_external_endpoints() {
    let mut world = World::new();
    // Org1: p0 with an external endpoint, p1 without. Org2: p0 with one, p1 without.
    world.start("org1p0", true, config(&[], &[("org2p0.ext:7051", "Org2MSP")]));
    world.start("org1p1", false, config(&["org1p0:7051"], &[]));
    world.start("org2p0", true, config(&[], &[]));
    world.start("org2p1", false, config(&["org2p0:7051"], &[("org1p0.ext:7051", "Org1MSP")]));
    world.run_for(Duration::from_secs(60));
    assert_eq!(world.view("org1p0", true), set(&["org1p1", "org2p0"]));
    assert_eq!(world.view("org1p1", true), set(&["org1p0"]), "no external endpoint: sees only its own org");
    assert_eq!(world.view("org2p0", true), set(&["org1p0", "org2p1"]));
    assert_eq!(world.view("org2p1", true), set(&["org2p0"]));
    // Internal endpoints never cross organizations.
    assert_eq!(world.member("org2p0", "org1p0").internal_endpoint, "");
    assert_eq!(world.member("org1p0", "org2p0").internal_endpoint, "");
    assert_eq!(world.member("org1p0", "org1p1").internal_endpoint, "org1p1:7051");
}

#[test]
fn a_bootstrap_peer_of_another_org_is_refused_and_retried() {
    let mut world = World::new();
    world.start("org2p0", true, config(&[], &[]));
    world.start("org1p0", true, config(&["org2p0:7051"], &[]));
    world.run_for(Duration::from_secs(60));
    assert!(world.view("org1p0", true).is_empty());
    assert!(world.view("org2p0", true).is_empty());
}

#[test]
fn same_seed_same_world() {
    let run = || {
        let mut world = World::new();
        world.start("org1p0", true, config(&[], &[]));
        world.start("org1p1", true, config(&["org1p0:7051"], &[]));
        world.start("org1p2", false, config(&["org1p1:7051"], &[]));
        world.run_for(Duration::from_secs(30));
        world.nodes.values().map(|n| format!("{:?}", n.events)).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

// Bad messages (forged, high-S, stale, wrong tags, …) are cases of the bad-input catalog:
// tests/catalog/wire/ (runner: catalog.rs).

#[test]
fn an_org_left_out_of_a_new_channel_config_is_purged_and_refused_from_then_on() {
    let mut world = World::new();
    world.start_on_channel("org1p0", true, config(&[], &[("org2p0.ext:7051", "Org2MSP")]));
    world.start_on_channel("org1p1", true, config(&["org1p0:7051"], &[]));
    world.start_on_channel("org2p0", true, config(&[], &[]));
    world.run_for(Duration::from_secs(30));
    assert_eq!(world.view("org1p0", true), set(&["org1p1", "org2p0"]));
    assert_eq!(world.view("org1p1", true), set(&["org1p0", "org2p0"]));

    // A config block of the channel without Org2: org1's peers replace the channel's MSPs. Org2's
    // peer is purged at once (not left to expire), with its connection closed.
    let org1_only = vec![world.orgs.msps["Org1MSP"].clone()];
    let org2p0 = world.pki("org2p0");
    let now = world.now;
    for name in ["org1p0", "org1p1"] {
        let node = world.nodes.get_mut(name).unwrap();
        node.events.clear();
        node.discovery.handle_channel_msps(now, "ch", org1_only.clone());
        assert!(node.discovery.identities().get(&org2p0).is_none(), "{name} forgot the identity");
        assert!(node.discovery.member(&org2p0).is_none(), "{name} purged the member");
        let mut closed = false;
        while let Some(transmit) = node.discovery.poll_transmit() {
            closed |= matches!(transmit, Transmit::Close { to } if to == org2p0);
        }
        assert!(closed, "{name} closes the connection to the removed org's peer");
        let mut purged = false;
        while let Some(event) = node.discovery.poll_event() {
            purged |= matches!(event, Event::Purged { pki_id } if pki_id == org2p0);
        }
        assert!(purged, "{name} reports the purge");
    }
    // Org2's peer goes on gossiping (its config still names Org1): it is never admitted again.
    world.rejected.clear();
    world.run_for(Duration::from_secs(60));
    assert_eq!(world.view("org1p0", true), set(&["org1p1"]));
    assert_eq!(world.view("org1p1", true), set(&["org1p0"]));
    assert!(world.rejected.iter().any(|(name, _)| name.starts_with("org1")), "org2's messages are refused: {:?}", world.rejected);
}

#[test]
fn an_identity_is_forgotten_once_its_certificate_expires_and_ours_is_kept() {
    let orgs = orgs();
    let me = &orgs.peers["org1p0"];
    let other = &orgs.peers["org2p0"];
    let mut identities = Identities::new(me, orgs.msps.values().cloned());
    identities.put(&other.pki_id().0, &other.identity.serialize(), epoch()).unwrap();
    // The generated certificates' NotAfter is 2049-12-31T23:59:59Z.
    let not_after = std::time::UNIX_EPOCH + Duration::from_secs(2_524_607_999);
    assert!(identities.expire(not_after).is_empty(), "valid up to NotAfter");
    assert_eq!(identities.expire(not_after + Duration::from_secs(1)), [other.pki_id()]);
    assert!(identities.get(&other.pki_id()).is_none());
    assert!(identities.get(&me.pki_id()).is_some(), "our own identity is kept");
}

#[test]
fn an_identity_unused_for_an_hour_is_forgotten() {
    let orgs = orgs();
    let me = &orgs.peers["org1p0"];
    let other = &orgs.peers["org2p0"];
    let mut identities = Identities::new(me, orgs.msps.values().cloned());
    let t0 = epoch();
    identities.put(&other.pki_id().0, &other.identity.serialize(), t0).unwrap();
    let minutes = |m: u64| t0 + Duration::from_secs(60 * m);
    identities.touch(&other.pki_id(), minutes(30));
    assert!(identities.forget_unused(minutes(80), Duration::from_secs(3600)).is_empty(), "used 50 minutes ago");
    assert_eq!(identities.forget_unused(minutes(91), Duration::from_secs(3600)), [other.pki_id()]);
    assert!(identities.get(&other.pki_id()).is_none());
    assert!(identities.get(&me.pki_id()).is_some(), "ours is never forgotten");
}
