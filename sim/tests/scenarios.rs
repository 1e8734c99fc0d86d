//! Every scenario in `scenarios/` over a batch of seeds. Each seed runs twice, each time in its
//! own `sim run` process (tokio's task IDs are process-global, so two runs in one process would
//! not start from the same state): the two traces must hash the same, and every check must pass.
//!
//! - `SIM_SCENARIO=name` runs one scenario; `SIM_SEED=n` runs one seed (replay);
//!   `SIM_SEEDS=n` runs n seeds per scenario (default: a small CI batch).
//! - A failure prints the scenario, the seed, the first violated check and the commands that
//!   replay it (this test, and `sim run` with every option the run had); the traces are in
//!   `target/sim-failures/` (`sim::failures`, where `sim run` keeps a failing trace too).

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

/// Where failing runs keep their traces (as `sim run` does).
fn failures_dir() -> PathBuf {
    sim::failures::dir(Path::new(env!("CARGO_BIN_EXE_sim")))
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
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
        panic!("sim run {} --seed {seed} printed no report ({e}); stderr:\n{}", path.display(), String::from_utf8_lossy(&output.stderr))
    })
}

/// Where a run's trace goes: the name `sim run` keeps a failing trace under (`x-3.log` for
/// `scenarios/x.yaml` seed 3), `which` (`.second`) before the extension for the second run.
fn trace_path(dir: &Path, path: &Path, seed: u64, which: &str) -> PathBuf {
    let kept = sim::failures::Replay { scenario: path.display().to_string(), seed, break_invariant: None }.trace_file();
    dir.join(kept.replace(".log", &format!("{which}.log")))
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
                    let Some((_, path, seed, which)) = jobs.get(i) else { break };
                    let report = run(path, *seed, &trace_path(dir, path, *seed, which));
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
    let failures_dir = failures_dir();
    std::fs::create_dir_all(&failures_dir).unwrap();
    let seeds = seeds();
    // A long scenario may run fewer seeds of the default batch (`ci_seeds`).
    let seeds_of = |path: &Path| -> Vec<u64> {
        let limit = (knob("SIM_SEED").is_none() && knob("SIM_SEEDS").is_none() && path.is_file())
            .then(|| sim::scenario::Scenario::parse(&std::fs::read_to_string(path).unwrap()).unwrap().ci_seeds)
            .flatten();
        seeds.iter().copied().take(limit.map_or(usize::MAX, |n| n as usize)).collect()
    };
    // Every seed twice: the determinism check compares the two runs' trace hashes.
    let jobs: Vec<(String, PathBuf, u64, &'static str)> = files
        .iter()
        .flat_map(|(name, path)| {
            seeds_of(path)
                .into_iter()
                .flat_map(move |seed| [(name.clone(), path.clone(), seed, ""), (name.clone(), path.clone(), seed, ".second")])
        })
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
        for seed in &seeds_of(path) {
            let index = jobs.iter().position(|(n, _, s, w)| n == name && s == seed && w.is_empty()).unwrap();
            let (first, second) = (&reports[index], &reports[index + 1]);
            let (trace_a, trace_b) = (trace_path(&failures_dir, path, *seed, ""), trace_path(&failures_dir, path, *seed, ".second"));
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
                // A swarm seed's scenario, indented under the failure (a scenario file as is).
                let options: String = first["options"].as_str().unwrap_or_default().lines().map(|l| format!("\n    {l}")).collect();
                failures.push(format!(
                    "scenario {name} seed {seed}: {violation}{}{options}\n  replay: {replay}\n  run alone: {}\n  trace: {}",
                    if options.is_empty() { "" } else { "\n  scenario:" },
                    first["replay"].as_str().unwrap_or_default(),
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
            eprintln!(
                "{name} seed {seed}: {} trace lines, converged after {}ms, faults {}",
                first["trace_lines"], first["converged_after_ms"], first["faults"]
            );
            // The canonical seed's timeline is a snapshot: behaviour changes show up in review.
            if *seed == 1 && failures.is_empty() && name != "swarm" {
                insta::assert_snapshot!(format!("{name}-seed-1"), first["summary"].as_str().unwrap_or_default());
            }
        }
        for kind in enabled {
            if fired.get(&kind).copied().unwrap_or(0) == 0 {
                failures.push(format!("scenario {name}: the {kind} fault never fired in {} seeds", seeds_of(path).len()));
            }
        }
        for milestone in expected {
            if reached.get(&milestone).copied().unwrap_or(0) == 0 {
                failures.push(format!("scenario {name}: the milestone {milestone} was never reached in {} seeds", seeds_of(path).len()));
            }
        }
        eprintln!("{name}: faults {fired:?}, milestones {reached:?}");
    }
    eprintln!("{} runs", jobs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `scenario` seed 1 with an invariant broken on purpose, without `--trace`; returns the
/// report and its first violation. The failure names a replay command with the broken
/// invariant, and keeps its trace where the scenario tests keep theirs.
fn broken_run(scenario: &str, breakage: &str) -> (Value, String) {
    let path = root().join(format!("scenarios/{scenario}.yaml"));
    let kept = failures_dir().join(format!("{scenario}-1-{breakage}.log"));
    let _ = std::fs::remove_file(&kept);
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", &path.display().to_string(), "--seed", "1", "--json", "--break-invariant", breakage])
        .output()
        .expect("running the sim binary");
    assert_eq!(output.status.code(), Some(1), "a broken invariant fails the run");
    let report: Value =
        serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default()).expect("a JSON report");
    let first = report["violations"][0].as_str().unwrap_or_default().to_string();
    assert_eq!(report["seed"], 1);
    assert_eq!(report["scenario"], scenario);
    let replay = report["replay"].as_str().unwrap_or_default();
    assert_eq!(replay, format!("cargo run -p sim -- run {} --seed 1 --break-invariant {breakage}", path.display()), "{report}");
    assert_eq!(report["trace_kept"].as_str().map(PathBuf::from), Some(kept.clone()), "{report}");
    let trace = std::fs::read_to_string(&kept).expect("the failing trace is kept");
    assert_eq!(trace.lines().count() as u64, report["trace_lines"].as_u64().unwrap_or_default(), "the whole trace is kept");
    (report, first)
}

#[test]
fn a_deliberately_broken_invariant_is_caught_and_reported() {
    let (report, first) = broken_run("gossip-bootstrap", "disclosure");
    assert!(first.contains("knows the internal endpoint leaked:7051 of"), "{report}");
    assert!(first.contains("a peer of another org"), "{report}");
}

/// In text mode too: the violation, the replay command with every option the run had, and where
/// its trace was kept.
#[test]
fn a_disk_that_loses_acknowledged_data_is_caught() {
    let path = root().join("scenarios/crash-restart.yaml");
    let kept = failures_dir().join("crash-restart-1-lost-disk.log");
    let _ = std::fs::remove_file(&kept);
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", &path.display().to_string(), "--seed", "1", "--break-invariant", "lost-disk"])
        .output()
        .expect("running the sim binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("VIOLATION: at "), "{stdout}");
    assert!(stdout.contains("org1-peer1 lost the channel simchannel it had joined"), "{stdout}");
    let replay = format!("replay: cargo run -p sim -- run {} --seed 1 --break-invariant lost-disk\n", path.display());
    assert!(stdout.contains(&replay), "{stdout}");
    assert!(stdout.contains(&format!("trace kept in {}\n", kept.display())), "{stdout}");
    let trace = std::fs::read_to_string(&kept).expect("the failing trace is kept");
    assert!(trace.contains("timeline: Crash(\"org1-peer1\")"), "the kept file is the run's trace");
}

#[test]
fn a_peer_serving_a_block_that_is_not_the_orderers_is_caught() {
    // Every restarted peer's block 1 is altered. A peer whose chain is short enough re-checks it
    // at open and heals (the checker then reports the blocks it dropped); org1-peer1's chain is
    // long by its restart, so it serves the altered block: a fork.
    let (report, _) = broken_run("crash-restart-ledger", "corrupt-block");
    let violations = report["violations"].as_array().cloned().unwrap_or_default();
    let fork = violations.iter().filter_map(|v| v.as_str()).any(|v| v.contains("org1-peer1's block [1] is not the orderer's (a fork)"));
    assert!(fork, "{report}");
}

/// A peer whose TLS certificate comes from a CA nobody trusts is refused by every handshake: it
/// never becomes a member nor gets a block, and the checks say so.
#[test]
fn a_peer_presenting_a_foreign_tls_certificate_is_refused() {
    let (report, _) = broken_run("tls-mutual", "foreign-tls");
    let violations: Vec<String> =
        report["violations"].as_array().cloned().unwrap_or_default().iter().filter_map(|v| v.as_str().map(String::from)).collect();
    assert!(violations.iter().any(|v| v.contains("never converged") && v.contains("org2-peer1 sees {}")), "{report}");
    assert!(violations.iter().any(|v| v.contains("org2-peer1 is at height 1")), "{report}");
}

#[test]
fn a_second_block_cutter_is_caught_as_a_fork() {
    let (report, _) = broken_run("orderer-failover", "split-brain");
    let violations = report["violations"].as_array().cloned().unwrap_or_default();
    let fork = violations.iter().filter_map(|v| v.as_str()).any(|v| v.contains("orderer2's block [1] is not the orderer's (a fork)"));
    assert!(fork, "{report}");
}

/// `sim run swarm --seed N --dump FILE` writes the scenario the seed chose as a scenario file;
/// it loads as that scenario, and `sim run FILE --seed N` is the same run (the same trace hash).
/// Seeds with different mixes: kills, crashes, org partitions, message loss, a late start.
#[test]
fn a_dumped_swarm_scenario_replays_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = [3u64, 7, 12, 21];
    let hashes = std::sync::Mutex::new(BTreeMap::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers() {
            scope.spawn(|| {
                while let Some(seed) = seeds.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).copied() {
                    let file = dir.path().join(format!("swarm-{seed}.yaml"));
                    let swarm = report_of(&["run", "swarm", "--seed", &seed.to_string(), "--json", "--dump", &file.display().to_string()]);
                    let text = std::fs::read_to_string(&file).expect("--dump wrote the scenario");
                    let loaded = sim::scenario::Scenario::parse(&text)
                        .unwrap_or_else(|e| panic!("seed {seed}: the dumped scenario does not load: {e}\n{text}"));
                    assert_eq!(loaded, sim::swarm::generate(seed), "seed {seed}: the file is not the scenario the seed chose:\n{text}");
                    assert_eq!(swarm["options"].as_str(), Some(text.as_str()), "seed {seed}: what is printed is what is dumped");
                    let replayed = report_of(&["run", &file.display().to_string(), "--seed", &seed.to_string(), "--json"]);
                    hashes.lock().unwrap().insert(seed, (swarm["hash"].clone(), replayed["hash"].clone(), loaded.timeline.len()));
                }
            });
        }
    });
    let hashes = hashes.into_inner().unwrap();
    for (seed, (swarm, replayed, _)) in &hashes {
        assert!(swarm.is_string(), "seed {seed}: no hash");
        assert_eq!(swarm, replayed, "seed {seed}: the replay from the dumped file is another run");
    }
    assert!(hashes.values().any(|(_, _, events)| *events > 0), "some seed has faults");
}

/// `sim run ARGS` (from the workspace root); its JSON report.
fn report_of(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_sim")).args(args).current_dir(root()).output().expect("running the sim binary");
    serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("sim {args:?} printed no report ({e}); stderr:\n{}", String::from_utf8_lossy(&output.stderr)))
}

/// The SVG of a run with two orderer nodes: well-formed XML; every row, orderer lanes, labelled
/// event lines, ledger heights, failovers and a legend are drawn; and the same seed draws the
/// same bytes.
#[test]
fn a_run_draws_its_timeline_as_svg() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = root().join("scenarios/orderer-failover.yaml");
    let draw = |name: &str| {
        let svg = dir.path().join(name);
        let output = Command::new(env!("CARGO_BIN_EXE_sim"))
            .args(["run", &scenario.display().to_string(), "--seed", "1", "--svg", &svg.display().to_string()])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
        std::fs::read_to_string(&svg).unwrap()
    };
    let (picture, again) = std::thread::scope(|scope| {
        let first = scope.spawn(|| draw("first.svg"));
        let second = scope.spawn(|| draw("second.svg"));
        (first.join().unwrap(), second.join().unwrap())
    });
    assert!(picture == again, "the same seed drew different pictures");
    if let Err(err) = well_formed(&picture) {
        panic!("the SVG is not well-formed XML: {err}");
    }
    assert!(picture.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for row in ["org1-peer0", "org1-peer1", "org2-peer0", "org2-peer1", "orderer (cutter)", "orderer2 (replica)"] {
        assert!(picture.contains(&format!(">{row}</text>")), "{row} has a row");
    }
    // The event lines are labelled in the picture (numbered) and listed in the legend.
    assert!(picture.contains(">1 partition orderer | every peer (4 pairs)</text>"), "{picture}");
    assert!(picture.contains(">3 crash orderer2</text>"));
    assert!(picture.contains("<title>crash orderer2 at 10s</title>"));
    assert!(picture.contains(r#"<g id="legend">"#));
    assert!(picture.contains(">1. 3.00s partition orderer | every peer (4 pairs)</text>"));
    assert!(picture.contains(">4. 18.00s restart orderer2</text>"));
    assert!(picture.contains("ledger height over time"));
    // Heights: a line per row, and each row's height at the end (the orderer's chain is 41 long).
    assert!(picture.matches("<polyline ").count() >= 6, "a height line per row");
    assert!(picture.contains(">h 41</text>"));
    // Failovers: the leaders moved to orderer2 after the cut, and back after its crash.
    assert!(picture.contains("org1-peer0 fails over to orderer2 at "), "a failover is marked");
    assert!(picture.contains("&#8594;orderer</text>"), "a failover back to the cutter is marked");
    // orderer2 is down from 10s to 18s (grey), and the run converges (blue line).
    assert!(picture.contains("#bbbbbb"));
    assert!(picture.contains("stroke=\"#1565c0\""));
}

/// A small XML well-formedness check: tags nest and close, attributes are quoted, text and
/// attribute values escape `<` and `&`, one root element.
fn well_formed(text: &str) -> Result<(), String> {
    fn entity_ok(rest: &str) -> bool {
        let Some(end) = rest.find(';') else { return false };
        let name = &rest[1..end];
        matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
            || name.strip_prefix('#').is_some_and(|n| {
                !n.is_empty()
                    && (n.chars().all(|c| c.is_ascii_digit())
                        || n.strip_prefix('x').is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())))
            })
    }
    fn text_ok(chunk: &str) -> Result<(), String> {
        for (at, _) in chunk.match_indices('&') {
            if !entity_ok(&chunk[at..]) {
                return Err(format!("a bare & in {chunk:?}"));
            }
        }
        Ok(())
    }
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let before = &rest[..open];
        text_ok(before)?;
        if stack.is_empty() && !before.trim().is_empty() {
            return Err(format!("text outside the root: {before:?}"));
        }
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            let end = after.find("-->").ok_or("an unclosed comment")?;
            rest = &after[end + 3..];
            continue;
        }
        // The tag up to its `>`, outside quotes.
        let mut quote = None;
        let end = rest
            .char_indices()
            .find(|&(_, c)| match quote {
                Some(q) if c == q => {
                    quote = None;
                    false
                }
                Some(_) => false,
                None if c == '"' || c == '\'' => {
                    quote = Some(c);
                    false
                }
                None => c == '>',
            })
            .map(|(i, _)| i)
            .ok_or("an unclosed tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let (tag, closed) = match tag.strip_suffix('/') {
            Some(tag) => (tag, true),
            None => (tag, false),
        };
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let name = &tag[..name_end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':' || c == '_') {
            return Err(format!("a bad tag name in <{tag}>"));
        }
        // Attributes: name="value" (or 'value'), separated by whitespace.
        let mut attributes = tag[name_end..].trim_start();
        while !attributes.is_empty() {
            let equals = attributes.find('=').ok_or_else(|| format!("an attribute without a value in <{tag}>"))?;
            let attribute = attributes[..equals].trim();
            if attribute.is_empty() || attribute.contains(char::is_whitespace) {
                return Err(format!("a bad attribute name in <{tag}>"));
            }
            let value = &attributes[equals + 1..];
            let q = value.chars().next().filter(|c| *c == '"' || *c == '\'').ok_or_else(|| format!("an unquoted attribute in <{tag}>"))?;
            let close = value[1..].find(q).ok_or_else(|| format!("an unclosed attribute in <{tag}>"))?;
            let inner = &value[1..1 + close];
            if inner.contains('<') {
                return Err(format!("a < in an attribute of <{tag}>"));
            }
            text_ok(inner)?;
            attributes = value[close + 2..].trim_start();
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !closed {
            stack.push(name.to_string());
        }
    }
    text_ok(rest)?;
    if !rest.trim().is_empty() {
        return Err(format!("text after the root: {rest:?}"));
    }
    match (stack.is_empty(), roots) {
        (true, 1) => Ok(()),
        (false, _) => Err(format!("unclosed elements: {stack:?}")),
        (true, n) => Err(format!("{n} root elements")),
    }
}

#[test]
fn the_xml_check_finds_mistakes() {
    assert_eq!(well_formed(r#"<svg a="1"><g><text x="1">a &amp; b</text><rect/></g></svg>"#), Ok(()));
    for bad in [r#"<svg><g></svg>"#, r#"<svg a=1></svg>"#, "<svg>a & b</svg>", "<svg></svg><svg></svg>", r#"<svg a="<"></svg>"#, "<svg>"] {
        assert!(well_formed(bad).is_err(), "{bad}");
    }
}
