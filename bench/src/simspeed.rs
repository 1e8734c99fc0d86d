//! The simulator's speed: full-stack turmoil runs by peer count, seeds per second, and the
//! protocol-level membership simulation (`sim protosim`) at scale.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// A no-fault scenario of `peers` peers (orgs of at most 25) over `seconds` simulated seconds,
/// with Fabric's default gossip timings, every peer bootstrapping from its org's peer0, on a
/// turmoil tick of `tick_ms`.
pub fn scenario_yaml(peers: usize, seconds: u64, tick_ms: u64) -> String {
    let mut orgs = String::new();
    let mut left = peers;
    let mut org = 1;
    while left > 0 {
        let here = left.min(25);
        orgs.push_str(&format!("  - {{name: org{org}, peers: {here}}}\n"));
        left -= here;
        org += 1;
    }
    format!(
        "name: speed-{peers}\nduration: {seconds}s\norgs:\n{orgs}bootstrap: first\ntick: {tick_ms}ms\nchecks: {{converge_within: {seconds}s}}\n"
    )
}

/// Wall seconds of one `sim run` of the scenario above (seed 1).
pub fn full_stack(sim: &Path, work: &Path, peers: usize, seconds: u64, tick_ms: u64) -> Result<f64> {
    let file = work.join(format!("speed-{peers}-{tick_ms}ms.yaml"));
    std::fs::write(&file, scenario_yaml(peers, seconds, tick_ms))?;
    let started = Instant::now();
    let output = Command::new(sim).arg("run").arg(&file).args(["--seed", "1", "--json"]).output().context("running sim run")?;
    let wall = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // A run whose checks fail still measures the speed; one that did not finish does not.
    if !stdout.contains("\"hash\"") {
        bail!("sim run of {peers} peers did not finish: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(wall)
}

/// Seeds per second of `sim sweep` over the bootstrap scenario (each seed its own process, two at
/// a time).
pub fn seeds_per_second(sim: &Path, repo: &Path, seeds: u64) -> Result<f64> {
    let started = Instant::now();
    let output = Command::new(sim)
        .current_dir(repo)
        .args(["sweep", "--seeds", &seeds.to_string(), "--scenario", "scenarios/gossip-bootstrap.yaml"])
        .output()
        .context("running sim sweep")?;
    if !output.status.success() {
        bail!("sim sweep failed: {}", String::from_utf8_lossy(&output.stdout));
    }
    Ok(seeds as f64 / started.elapsed().as_secs_f64())
}

/// Wall-time and memory limits of one protocol-level run.
pub const PROTOSIM_MAX_WALL_S: u64 = 420;
pub const PROTOSIM_MAX_RSS_MB: u64 = 12_000;

/// One protocol-level run (`sim protosim --peers N --json`); None when this `sim` has no such
/// command.
pub fn protosim(sim: &Path, peers: usize, seconds: u64) -> Result<Option<serde_json::Value>> {
    let output = Command::new(sim)
        .args(["protosim", "--peers", &peers.to_string(), "--seconds", &seconds.to_string(), "--seed", "1", "--json"])
        // Past these a run stops and reports how far it got (5,000 peers need more of both than
        // a 2-core, 24 GiB machine has: steady-state gossip is N² messages per interval).
        .args(["--max-wall", &PROTOSIM_MAX_WALL_S.to_string(), "--max-rss-mb", &PROTOSIM_MAX_RSS_MB.to_string()])
        .output()
        .context("running sim protosim")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("unrecognized subcommand") {
        return Ok(None);
    }
    if !output.status.success() {
        bail!("sim protosim --peers {peers} failed: {stderr}");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("sim protosim printed nothing")?;
    Ok(Some(serde_json::from_str(line).context("sim protosim's JSON line")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn speed_scenarios_are_valid_and_split_into_orgs_of_at_most_25() {
        for peers in [5, 10, 20, 50] {
            let scenario = sim::scenario::Scenario::parse(&super::scenario_yaml(peers, 60, 10)).unwrap();
            assert_eq!(scenario.peers().len(), peers);
            assert!(scenario.orgs.iter().all(|org| org.peers <= 25));
        }
    }
}
