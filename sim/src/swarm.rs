//! Swarm mode: the seed chooses the scenario (VOPR-style), so a sweep over seeds explores
//! topologies and fault mixes no one wrote down.
//!
//! From the seed: 2–3 orgs of 1–4 peers, which non-anchor peers lack an external endpoint, the
//! bootstrap topology, a late-starting peer, and a timeline of crashes with restarts, org
//! partitions with heals and message-loss windows; write delays and message duplication.
//! The chosen scenario is part of the run's record ([`describe`]), written as a scenario file,
//! so a failure can be read, replayed from its seed alone, and edited into a scenario of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::scenario::{Bootstrap, Checks, Event, NetworkFaults, OrgSpec, Scenario, Step, TlsMode};

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// The scenario a swarm seed stands for.
pub fn generate(seed: u64) -> Scenario {
    // A different stream than the run's own use of the seed.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5741_524d);
    let org_count = 2 + below(&mut rng, 2) as usize;
    let orgs: Vec<OrgSpec> = (1..=org_count).map(|i| OrgSpec { name: format!("org{i}"), peers: 1 + below(&mut rng, 4) as usize }).collect();
    let mut no_external = Vec::new();
    for org in &orgs {
        for index in 1..org.peers {
            if below(&mut rng, 3) == 0 {
                no_external.push(format!("{}-peer{index}", org.name));
            }
        }
    }
    let bootstrap = if below(&mut rng, 2) == 0 { Bootstrap::Chain } else { Bootstrap::First };
    let mut timeline = Vec::new();
    // A third of the seeds start one non-anchor peer late (before any other fault).
    let late: Vec<String> = orgs.iter().flat_map(|o| (1..o.peers).map(move |i| format!("{}-peer{i}", o.name))).collect();
    if !late.is_empty() && below(&mut rng, 3) == 0 {
        let peer = late[below(&mut rng, late.len() as u64) as usize].clone();
        timeline.push(Step { at: Duration::from_millis(500 + below(&mut rng, 1_500)), event: Event::Start(peer) });
    }
    let mut at = 2_000 + below(&mut rng, 2_000);
    let faults = below(&mut rng, 4);
    for _ in 0..faults {
        let kind = below(&mut rng, 5);
        if kind == 4 {
            // A window in which a share of all gossip messages is lost.
            let length = 1_000 + below(&mut rng, 4_000);
            let rate = (5 + below(&mut rng, 26)) as f64 / 100.0;
            timeline.push(Step { at: Duration::from_millis(at), event: Event::Loss(rate) });
            timeline.push(Step { at: Duration::from_millis(at + length), event: Event::Loss(0.0) });
            at += length + 500 + below(&mut rng, 2_000);
        } else if kind < 2 {
            let org = &orgs[below(&mut rng, orgs.len() as u64) as usize];
            let peer = format!("{}-peer{}", org.name, below(&mut rng, org.peers as u64));
            let down = 1_000 + below(&mut rng, 5_000);
            // Mostly power cuts; sometimes only the process dies.
            let down_event = if below(&mut rng, 3) == 0 { Event::Kill(peer.clone()) } else { Event::Crash(peer.clone()) };
            timeline.push(Step { at: Duration::from_millis(at), event: down_event });
            timeline.push(Step { at: Duration::from_millis(at + down), event: Event::Restart(peer) });
            at += down + 500 + below(&mut rng, 2_000);
        } else {
            // Cut org A off from org B completely, then heal.
            let a = below(&mut rng, orgs.len() as u64) as usize;
            let b = (a + 1 + below(&mut rng, orgs.len() as u64 - 1) as usize) % orgs.len();
            let pairs: Vec<[String; 2]> = (0..orgs[a].peers)
                .flat_map(|i| (0..orgs[b].peers).map(move |j| (i, j)))
                .map(|(i, j)| [format!("{}-peer{i}", orgs[a].name), format!("{}-peer{j}", orgs[b].name)])
                .collect();
            let length = 1_000 + below(&mut rng, 5_000);
            for pair in &pairs {
                timeline.push(Step { at: Duration::from_millis(at), event: Event::Partition(pair.clone()) });
                timeline.push(Step { at: Duration::from_millis(at + length), event: Event::Heal(pair.clone()) });
            }
            at += length + 500 + below(&mut rng, 2_000);
        }
    }
    let env: BTreeMap<String, String> = [
        ("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL", "500ms"),
        ("CORE_PEER_GOSSIP_ALIVEEXPIRATIONTIMEOUT", "2500ms"),
        ("CORE_PEER_GOSSIP_RECONNECTINTERVAL", "1s"),
        ("CORE_PEER_GOSSIP_PULLINTERVAL", "1s"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Half the seeds also delay writes in our network layer, and half of those repeat messages.
    let network = (below(&mut rng, 2) == 0).then(|| NetworkFaults {
        delay_probability: (1 + below(&mut rng, 10)) as f64 / 100.0,
        max_delay: Duration::from_millis(20 + below(&mut rng, 300)),
        loss: 0.0,
        duplicate: if below(&mut rng, 2) == 0 { (1 + below(&mut rng, 5)) as f64 / 100.0 } else { 0.0 },
    });
    // In time order, as people read a timeline (the run applies events in time order anyway,
    // and a stable sort keeps the order of events at the same time: the run is the same).
    timeline.sort_by_key(|s| s.at);
    Scenario {
        name: "swarm".into(),
        duration: Duration::from_millis(at + 10_000),
        orgs,
        no_external_endpoint: no_external,
        anchors: None,
        bootstrap,
        tls: tls_of(seed),
        env,
        peer_env: BTreeMap::new(),
        timeline,
        network,
        disk: None,
        checks: Checks {
            converge_within: Duration::from_secs(10),
            dead_within: Some(Duration::from_millis(4_500)),
            blocks_within: None,
            leaders_within: None,
            new_blocks: Vec::new(),
        },
        // Swarm runs are membership runs; the orderer has scenarios of its own.
        orderer: None,
        tick: None,
        ci_seeds: None,
    }
}

/// Every fourth seed runs with TLS, every eighth mutual. Taken from the seed itself, not the
/// swarm's stream, so the other choices (and the runs without TLS) are what they were.
fn tls_of(seed: u64) -> TlsMode {
    match seed % 8 {
        3 => TlsMode::On,
        7 => TlsMode::Mutual,
        _ => TlsMode::Off,
    }
}

/// The scenario a swarm seed chose, as a scenario file: readable, and loaded by `sim run FILE`
/// as exactly this scenario, so `sim run FILE --seed N` replays `sim run swarm --seed N` (the
/// same trace hash).
pub fn describe(scenario: &Scenario, seed: u64) -> String {
    format!("# The scenario swarm seed {seed} chose; `sim run FILE --seed {seed}` on this file replays the run.\n{}", scenario.to_yaml())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `--dump` writes loads as the scenario the seed made, for every kind of timeline.
    #[test]
    fn a_swarm_scenario_reads_back_as_itself() {
        for seed in 1..=300 {
            let made = generate(seed);
            let text = describe(&made, seed);
            let read = Scenario::parse(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
            assert_eq!(read, made, "seed {seed}:\n{text}");
        }
    }
}
