//! `scenario_file`: any text as a simulation scenario file, through `Scenario::parse` (what
//! `sim run` and the scenario tests call), then what the runner derives from an accepted one.
//!
//! Checked: nothing panics or runs away; an accepted scenario validates again, its peers have
//! distinct names (turmoil host names) and its organizations distinct MSP IDs, and written out
//! as a scenario file (`Scenario::to_yaml`, what `sim run --dump` writes) it reads back as
//! exactly itself.

use std::collections::{BTreeMap, BTreeSet};

use sim::scenario::Scenario;

use crate::Outcome;

/// `scenario_file`: the input is a scenario file's text.
pub fn scenario_file(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::rejected("not UTF-8") };
    let scenario = match Scenario::parse(text) {
        Ok(scenario) => scenario,
        Err(err) => return Outcome::Rejected(err),
    };
    assert_eq!(scenario.check(), Ok(()), "an accepted scenario fails its own check");
    let written = scenario.to_yaml();
    assert_eq!(Scenario::parse(&written).as_ref(), Ok(&scenario), "the scenario written out reads back as another:\n{written}");
    let peers = scenario.peers();
    let names: BTreeSet<&str> = peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), peers.len(), "two peers share a name");
    let mut msp_ids: BTreeMap<&str, &str> = BTreeMap::new();
    for peer in &peers {
        let org = *msp_ids.entry(peer.msp_id.as_str()).or_insert(peer.org.as_str());
        assert_eq!(org, peer.org, "organizations {org} and {} share the MSP ID {}", peer.org, peer.msp_id);
    }
    let _ = scenario.expected_milestones();
    let last = scenario.last_fault();
    assert!(last <= scenario.duration, "an accepted scenario has an event after its end");
    for peer in &peers {
        let _ = scenario.starts_late(&peer.name);
    }
    Outcome::Accepted
}
