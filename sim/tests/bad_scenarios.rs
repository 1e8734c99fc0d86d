//! Scenario files with mistakes are refused before anything runs, with an error that says what
//! is wrong; `sim run` exits 1 and prints it.

use std::process::Command;

use sim::scenario::Scenario;

const GOOD_HEAD: &str = "name: t\nduration: 10s\norgs: [{name: org1, peers: 2}, {name: org2, peers: 2}]\n";
const CHECKS: &str = "checks: {converge_within: 5s}\n";

fn error(text: &str) -> String {
    match Scenario::parse(text) {
        Ok(_) => "accepted".into(),
        Err(err) => err,
    }
}

#[test]
fn mistakes_in_scenario_files_are_named() {
    let cases: Vec<(&str, String)> = vec![
        ("not yaml", "name: [unclosed\n".into()),
        ("missing checks", GOOD_HEAD.into()),
        ("unknown field", format!("{GOOD_HEAD}{CHECKS}colour: blue\n")),
        ("bad tls", format!("{GOOD_HEAD}{CHECKS}tls: sometimes\n")),
        ("bad duration", "name: t\nduration: ten seconds\norgs: []\nchecks: {converge_within: 5s}\n".into()),
        ("unknown event", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, explode: org1-peer0}}]\n")),
        ("unknown peer", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, crash: org3-peer0}}]\n")),
        ("event after the end", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 11s, crash: org1-peer1}}]\n")),
        ("anchor without endpoint", format!("{GOOD_HEAD}{CHECKS}no_external_endpoint: [org1-peer0]\n")),
        ("unknown peer without endpoint", format!("{GOOD_HEAD}{CHECKS}no_external_endpoint: [org1-peer7]\n")),
        ("peer_env for an unknown peer", format!("{GOOD_HEAD}{CHECKS}peer_env: {{org2-peer9: {{CORE_PEER_ID: x}}}}\n")),
        ("probability above 1", format!("{GOOD_HEAD}{CHECKS}network: {{delay_probability: 1.5, max_delay: 10ms}}\n")),
        ("delay without max", format!("{GOOD_HEAD}{CHECKS}network: {{delay_probability: 0.1}}\n")),
        ("loss and duplicate above 1", format!("{GOOD_HEAD}{CHECKS}network: {{loss: 0.6, duplicate: 0.5}}\n")),
        ("negative loss event", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, loss: -0.1}}]\n")),
        ("started twice", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, start: org1-peer1}}, {{at: 2s, start: org1-peer1}}]\n")),
        (
            "crash before the late start",
            format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, crash: org1-peer1}}, {{at: 2s, start: org1-peer1}}]\n"),
        ),
        ("two events in one step", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, crash: org1-peer1, restart: org1-peer1}}]\n")),
        ("a step without an event", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s}}]\n")),
        (
            "partition names a later peer",
            format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, partition: [org1-peer0, org2-peer1]}}, {{at: 3s, start: org2-peer1}}]\n"),
        ),
        (
            "a replica without nodes: 2",
            format!("{GOOD_HEAD}{CHECKS}orderer: {{tx_per_second: 20}}\ntimeline: [{{at: 1s, crash: orderer2}}]\n"),
        ),
        ("an orderer node started late", format!("{GOOD_HEAD}{CHECKS}orderer: {{nodes: 2}}\ntimeline: [{{at: 1s, start: orderer2}}]\n")),
        ("no orderer nodes", format!("{GOOD_HEAD}{CHECKS}orderer: {{nodes: 0}}\n")),
        ("new_blocks without an orderer", format!("{GOOD_HEAD}checks: {{converge_within: 5s, new_blocks: [{{after: 2s, by: 4s}}]}}\n")),
        ("a tick too long", format!("{GOOD_HEAD}{CHECKS}tick: 1s\n")),
        ("a disk fault rate above 0.1", format!("{GOOD_HEAD}{CHECKS}disk: {{read_corruption: 0.5, until: 5s}}\n")),
        ("disk faults that never end", format!("{GOOD_HEAD}{CHECKS}disk: {{fsync_failure: 0.01}}\n")),
        ("disk faults past the end", format!("{GOOD_HEAD}{CHECKS}disk: {{full: 0.01, until: 20s}}\n")),
        ("an unknown disk fault", format!("{GOOD_HEAD}{CHECKS}disk: {{head_crash: 0.01, until: 5s}}\n")),
        (
            "new_blocks window backwards",
            format!("{GOOD_HEAD}checks: {{converge_within: 5s, new_blocks: [{{after: 4s, by: 2s}}]}}\norderer: {{}}\n"),
        ),
        ("a quiet window backwards", format!("{GOOD_HEAD}{CHECKS}orderer: {{quiet: [{{from: 5s, until: 2s}}]}}\n")),
        ("a quiet window past the end", format!("{GOOD_HEAD}{CHECKS}orderer: {{quiet: [{{from: 5s, until: 11s}}]}}\n")),
        ("anchors of an unknown org", format!("{GOOD_HEAD}{CHECKS}anchors: [org3]\n")),
        ("a config update without an orderer", format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, add_anchor: org2}}]\n")),
        ("an anchor added twice", format!("{GOOD_HEAD}{CHECKS}orderer: {{}}\ntimeline: [{{at: 1s, add_anchor: org2}}]\n")),
        (
            "every org removed",
            format!("{GOOD_HEAD}{CHECKS}orderer: {{}}\ntimeline: [{{at: 1s, remove_org: org1}}, {{at: 2s, remove_org: org2}}]\n"),
        ),
    ];
    let mut report = String::new();
    for (name, text) in &cases {
        report.push_str(&format!("{name}: {}\n", error(text)));
    }
    insta::assert_snapshot!(report);
}

#[test]
fn sim_run_refuses_a_bad_file_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, format!("{GOOD_HEAD}{CHECKS}timeline: [{{at: 1s, crash: org9-peer0}}]\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sim")).args(["run", &path.display().to_string(), "--seed", "1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.yaml: the timeline names unknown peer org9-peer0"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing ran");
}
