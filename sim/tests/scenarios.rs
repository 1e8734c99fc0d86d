//! Every scenario in `scenarios/` over a batch of seeds. Each seed runs twice, each time in its
//! own `sim run` process (tokio's task IDs are process-global, so two runs in one process would
//! not start from the same state): the two traces must hash the same, and every check must pass.
//!
//! - `SIM_SCENARIO=name` runs one scenario; `SIM_SEED=n` runs one seed (replay);
//!   `SIM_SEEDS=n` runs n seeds per scenario (default: a small CI batch).
//! - A failure prints the scenario, the seed, the first violated check and the command that
//!   replays it; the traces are in `target/sim-failures/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Seeds per scenario in a default `cargo test` run: 13 entries (12 files and swarm) × 9 seeds ×
/// 2 runs each = 234 runs, one process per core.
const CI_SEEDS: u64 = 9;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// The test harness reads its own knobs from the environment; the simulated peers never do.
#[allow(clippy::disallowed_methods)]
fn knob(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Scenario files, plus `swarm` (the seed chooses the scenario), as (name, argument to `sim run`).
fn scenario_files() -> Vec<(String, PathBuf)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let only = knob("SIM_SCENARIO");
    files
        .into_iter()
        .map(|path| (path.file_stem().unwrap().to_string_lossy().into_owned(), path))
        .chain([("swarm".to_string(), PathBuf::from("swarm"))])
        .filter(|(name, _)| only.as_ref().is_none_or(|o| o == name))
        .collect()
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = knob("SIM_SEED") {
        return vec![seed.parse().expect("SIM_SEED is a number")];
    }
    let count: u64 = knob("SIM_SEEDS").map_or(CI_SEEDS, |n| n.parse().expect("SIM_SEEDS is a number"));
    (1..=count).collect()
}

/// One run in its own process; returns its JSON report.
fn run(path: &Path, seed: u64, trace: &Path) -> Value {
    run_with(path, seed, trace, &[])
}

fn run_with(path: &Path, seed: u64, trace: &Path, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", &path.display().to_string(), "--seed", &seed.to_string(), "--json", "--trace", &trace.display().to_string()])
        .args(extra)
        .output()
        .expect("running the sim binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("sim run {} --seed {seed} printed no report ({e}); stderr:\n{}", path.display(), String::from_utf8_lossy(&output.stderr)))
}

/// How many `sim run` processes at once: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs every job (scenario, seed, which of the two runs) on `workers()` threads, each job in
/// its own process; returns the reports in job order, whatever order they finished in.
fn run_all(jobs: &[(String, PathBuf, u64, &'static str)], dir: &Path) -> Vec<Value> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let reports = std::sync::Mutex::new(vec![Value::Null; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..workers() {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((name, path, seed, which)) = jobs.get(i) else { break };
                    let report = run(path, *seed, &dir.join(format!("{name}-{seed}{which}.log")));
                    reports.lock().unwrap()[i] = report;
                }
            });
        }
    });
    reports.into_inner().unwrap()
}

#[test]
fn every_scenario_over_the_seed_batch_deterministically() {
    let files = scenario_files();
    assert!(!files.is_empty(), "no scenario matched");
    let failures_dir = root().join("target/sim-failures");
    std::fs::create_dir_all(&failures_dir).unwrap();
    let seeds = seeds();
    // Every seed twice: the determinism check compares the two runs' trace hashes.
    let jobs: Vec<(String, PathBuf, u64, &'static str)> = files
        .iter()
        .flat_map(|(name, path)| seeds.iter().flat_map(move |seed| [(name.clone(), path.clone(), *seed, ""), (name.clone(), path.clone(), *seed, ".second")]))
        .collect();
    let reports = run_all(&jobs, &failures_dir);
    let mut failures = Vec::new();
    for (name, path) in &files {
        // What the batch must cover: every fault kind the scenario enables fired, every
        // milestone it should reach was reached (swarm scenarios vary by seed: checked per run).
        let (mut enabled, mut expected) = (Vec::new(), Vec::new());
        if name != "swarm" {
            let scenario = sim::scenario::Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
            enabled = scenario.timeline.iter().map(|s| s.event.kind().to_string()).collect();
            let network = scenario.network.clone().unwrap_or_default();
            if network.delay_probability > 0.0 {
                enabled.push("delay".into());
            }
            if network.duplicate > 0.0 {
                enabled.push("message_duplicate".into());
            }
            if network.loss > 0.0 || scenario.timeline.iter().any(|s| matches!(s.event, sim::scenario::Event::Loss(p) if p > 0.0)) {
                enabled.push("message_loss".into());
            }
            if let Some(disk) = &scenario.disk {
                enabled.extend(disk.rates().into_iter().filter(|(_, rate)| *rate > 0.0).map(|(kind, _)| kind.to_string()));
            }
            expected = scenario.expected_milestones().into_iter().map(str::to_string).collect();
        }
        let mut fired: BTreeMap<String, u64> = BTreeMap::new();
        let mut reached: BTreeMap<String, u64> = BTreeMap::new();
        for seed in &seeds {
            let index = jobs.iter().position(|(n, _, s, w)| n == name && s == seed && w.is_empty()).unwrap();
            let (first, second) = (&reports[index], &reports[index + 1]);
            let trace_a = failures_dir.join(format!("{name}-{seed}.log"));
            let trace_b = failures_dir.join(format!("{name}-{seed}.second.log"));
            let replay = format!("SIM_SCENARIO={name} SIM_SEED={seed} cargo test -p sim --test scenarios -- --nocapture");
            if first["hash"] != second["hash"] {
                let (a, b) = (std::fs::read_to_string(&trace_a).unwrap_or_default(), std::fs::read_to_string(&trace_b).unwrap_or_default());
                let line = a.lines().zip(b.lines()).position(|(x, y)| x != y).map_or(0, |i| i + 1);
                failures.push(format!(
                    "scenario {name} seed {seed}: not deterministic: the traces first differ at line {line}\n  replay: {replay}\n  traces: {} {}",
                    trace_a.display(),
                    trace_b.display()
                ));
            } else if let Some(violation) = first["violations"].as_array().and_then(|v| v.first()) {
                failures.push(format!(
                    "scenario {name} seed {seed}: {violation}\n  options: {}\n  replay: {replay}\n  run alone: cargo run -p sim -- run {} --seed {seed}\n  trace: {}",
                    first["options"].as_str().unwrap_or_default().trim_end(),
                    path.display(),
                    trace_a.display()
                ));
            } else {
                let _ = std::fs::remove_file(&trace_a);
            }
            let _ = std::fs::remove_file(&trace_b);
            for (kind, count) in first["faults"].as_object().into_iter().flatten() {
                *fired.entry(kind.clone()).or_insert(0) += count.as_u64().unwrap_or(0);
            }
            for (kind, count) in first["milestones"].as_object().into_iter().flatten() {
                *reached.entry(kind.clone()).or_insert(0) += count.as_u64().unwrap_or(0);
            }
            eprintln!("{name} seed {seed}: {} trace lines, converged after {}ms, faults {}", first["trace_lines"], first["converged_after_ms"], first["faults"]);
            // The canonical seed's timeline is a snapshot: behaviour changes show up in review.
            if *seed == 1 && failures.is_empty() && name != "swarm" {
                insta::assert_snapshot!(format!("{name}-seed-1"), first["summary"].as_str().unwrap_or_default());
            }
        }
        for kind in enabled {
            if fired.get(&kind).copied().unwrap_or(0) == 0 {
                failures.push(format!("scenario {name}: the {kind} fault never fired in {} seeds", seeds.len()));
            }
        }
        for milestone in expected {
            if reached.get(&milestone).copied().unwrap_or(0) == 0 {
                failures.push(format!("scenario {name}: the milestone {milestone} was never reached in {} seeds", seeds.len()));
            }
        }
        eprintln!("{name}: faults {fired:?}, milestones {reached:?}");
    }
    eprintln!("{} runs", jobs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `scenario` seed 1 with an invariant broken on purpose; returns the report and its
/// first violation.
fn broken_run(scenario: &str, breakage: &str) -> (Value, String) {
    let path = root().join(format!("scenarios/{scenario}.yaml"));
    let trace = root().join(format!("target/sim-failures/broken-{breakage}.log"));
    std::fs::create_dir_all(trace.parent().unwrap()).unwrap();
    let report = run_with(&path, 1, &trace, &["--break-invariant", breakage]);
    let first = report["violations"][0].as_str().unwrap_or_default().to_string();
    // The failure carries what is needed to replay it, and its trace.
    assert_eq!(report["seed"], 1);
    assert_eq!(report["scenario"], scenario);
    assert!(trace.is_file());
    (report, first)
}

#[test]
fn a_deliberately_broken_invariant_is_caught_and_reported() {
    let (report, first) = broken_run("gossip-bootstrap", "disclosure");
    assert!(first.contains("knows the internal endpoint leaked:7051 of"), "{report}");
    assert!(first.contains("a peer of another org"), "{report}");
}

#[test]
fn a_disk_that_loses_acknowledged_data_is_caught() {
    let (report, first) = broken_run("crash-restart", "lost-disk");
    assert!(first.contains("org1-peer1 lost the channel simchannel it had joined"), "{report}");
}

#[test]
fn a_peer_serving_a_block_that_is_not_the_orderers_is_caught() {
    let (report, first) = broken_run("crash-restart-ledger", "corrupt-block");
    assert!(first.contains("org1-peer1's block [1] is not the orderer's (a fork)"), "{report}");
}

#[test]
fn a_second_block_cutter_is_caught_as_a_fork() {
    let (report, _) = broken_run("orderer-failover", "split-brain");
    let violations = report["violations"].as_array().cloned().unwrap_or_default();
    let fork = violations.iter().filter_map(|v| v.as_str()).any(|v| v.contains("orderer2's block [1] is not the orderer's (a fork)"));
    assert!(fork, "{report}");
}

#[test]
fn a_run_draws_its_timeline_as_svg() {
    let scenario = root().join("scenarios/crash-restart.yaml");
    let svg = root().join("target/sim-failures/crash-restart.svg");
    std::fs::create_dir_all(svg.parent().unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", &scenario.display().to_string(), "--seed", "1", "--svg", &svg.display().to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(picture.trim_end().ends_with("</svg>"));
    for peer in ["org1-peer0", "org1-peer1", "org1-peer2", "org2-peer0", "org2-peer1"] {
        assert!(picture.contains(&format!(">{peer}</text>")), "{peer} has a row");
    }
    assert!(picture.contains("<title>crash org1-peer1 at 4s</title>"));
    assert!(picture.contains("<title>restart org1-peer1 at 9s</title>"));
    // The crashed peer shows as grey for part of the run, and the run converges (blue line).
    assert!(picture.contains("#bbbbbb") || picture.contains("#757575"));
    assert!(picture.contains("stroke=\"#1565c0\""));
}
