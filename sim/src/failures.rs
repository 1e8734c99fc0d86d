//! What a failing run leaves behind: the command that replays it and where its trace is kept.
//! Shared by `sim run`, `sim sweep` and the scenario tests, so every failure names the same
//! command with every option it needs, and keeps its trace under the same name in the same
//! folder. It runs nothing and does not decide what failed.

use std::path::{Path, PathBuf};

/// What reproduces one run of `sim run`: the scenario argument (a file, or `swarm`), the seed,
/// and every option that changes what the run does. Options that only change what is written
/// (`--json`, `--trace`, `--svg`, `--dump`) are left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    pub scenario: String,
    pub seed: u64,
    /// `--break-invariant NAME` (test-only sabotage: the run is a different run without it).
    pub break_invariant: Option<String>,
}

impl Replay {
    /// `sim run`'s arguments for the run: `run scenarios/x.yaml --seed 3 --break-invariant lost-disk`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["run".to_string(), self.scenario.clone(), "--seed".to_string(), self.seed.to_string()];
        if let Some(name) = &self.break_invariant {
            args.extend(["--break-invariant".to_string(), name.clone()]);
        }
        args
    }

    /// The command that replays the run from the workspace root.
    pub fn command(&self) -> String {
        let args: Vec<String> = self.args().iter().map(|a| shell_word(a)).collect();
        format!("cargo run -p sim -- {}", args.join(" "))
    }

    /// The name the run's trace is kept under in [`dir`]: `crash-restart-3.log`,
    /// `crash-restart-1-lost-disk.log`, `swarm-7.log` (the scenario file's stem, the seed, and
    /// the broken invariant if any, so that two runs that differ never share a file).
    pub fn trace_file(&self) -> String {
        let stem = Path::new(&self.scenario).file_stem().map_or_else(|| self.scenario.clone(), |s| s.to_string_lossy().into_owned());
        match &self.break_invariant {
            Some(name) => format!("{stem}-{}-{name}.log", self.seed),
            None => format!("{stem}-{}.log", self.seed),
        }
    }
}

/// Where failing runs' traces are kept: `sim-failures` in the target folder the `sim` binary
/// was built into (`target/debug/sim` keeps them in `target/sim-failures`), whatever folder it
/// runs from.
pub fn dir(sim_binary: &Path) -> PathBuf {
    let target = sim_binary.parent().and_then(Path::parent).unwrap_or(Path::new("target"));
    target.join("sim-failures")
}

/// `word`, quoted for a POSIX shell if it needs to be.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_names_every_option_that_changes_the_run() {
        let broken = Replay { scenario: "scenarios/crash-restart.yaml".into(), seed: 1, break_invariant: Some("lost-disk".into()) };
        assert_eq!(broken.command(), "cargo run -p sim -- run scenarios/crash-restart.yaml --seed 1 --break-invariant lost-disk");
        assert_eq!(broken.trace_file(), "crash-restart-1-lost-disk.log");
        let swarm = Replay { scenario: "swarm".into(), seed: 7, break_invariant: None };
        assert_eq!(swarm.command(), "cargo run -p sim -- run swarm --seed 7");
        assert_eq!(swarm.trace_file(), "swarm-7.log");
        let spaced = Replay { scenario: "my scenarios/it's.yaml".into(), seed: 2, break_invariant: None };
        assert_eq!(spaced.command(), r"cargo run -p sim -- run 'my scenarios/it'\''s.yaml' --seed 2");
        assert_eq!(dir(Path::new("/w/target/debug/sim")), Path::new("/w/target/sim-failures"));
    }
}
