//! Inputs the fuzzer found that broke an invariant or panicked, one test each, with the fix
//! named. (Their bytes are also in the target's committed corpus as `crash-*`.)

use sim::scenario::Scenario;

const CHECKS: &str = "checks: {converge_within: 5s}\n";

fn scenario_error(orgs: &str) -> String {
    match Scenario::parse(&format!("name: t\nduration: 10s\norgs: {orgs}\n{CHECKS}")) {
        Ok(_) => "accepted".into(),
        Err(err) => err,
    }
}

/// scenario_file, crash-duplicate-org-name.yaml: two orgs of one name gave two peers of one name
/// (one turmoil host name) and one MSP ID. Fixed in `Scenario::validate`: org names are simple,
/// distinct, with distinct MSP IDs, and sizes are bounded.
#[test]
fn scenario_orgs_must_be_distinct_simple_and_bounded() {
    assert_eq!(scenario_error("[{name: org1, peers: 2}, {name: org1, peers: 2}]"), "org org1 is listed twice");
    assert_eq!(scenario_error("[{name: org1, peers: 1}, {name: a1, peers: 1}]"), "org a1 has the same MSP ID as org org1 (Org1MSP)");
    assert_eq!(
        scenario_error("[{name: 'Org 1', peers: 1}]"),
        "org name \"Org 1\" must be lowercase letters and digits (it becomes host names and a domain)"
    );
    assert_eq!(scenario_error("[{name: org1, peers: 0}]"), "org org1 has 0 peers; give 1 to 32");
    assert_eq!(scenario_error("[{name: org1, peers: 99999999999}]"), "org org1 has 99999999999 peers; give 1 to 32");
    assert_eq!(
        scenario_error("[{name: org1, peers: 32}, {name: org2, peers: 32}, {name: org3, peers: 1}]"),
        "the scenario has 65 peers; at most 64 are simulated"
    );
    assert_eq!(scenario_error("[{name: org1, peers: 32}, {name: org2, peers: 32}]"), "accepted");
}
