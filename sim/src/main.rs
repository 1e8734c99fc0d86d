//! The simulator's command line.
//!
//! `sim run scenarios/crash-restart.yaml --seed 42` runs one scenario with one seed and prints a
//! readable timeline (membership views as they change), the checks, and the trace hash.
//! `--json` prints one machine-readable line instead (the test suite runs every seed in its own
//! process through this, because tokio's task IDs are process-global and would otherwise make
//! the second run of a seed in one process differ from the first). `--trace FILE` writes the
//! full trace.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sim", about = "Deterministic simulation of peer-core peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed.
    Run {
        /// The scenario file.
        scenario: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON line (hash, violations, faults, convergence) instead of the timeline.
        #[arg(long)]
        json: bool,
        /// Write the whole trace here.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Test-only: deliberately break an invariant (`disclosure`) to see it caught.
        #[arg(long, value_name = "INVARIANT", hide = true)]
        break_invariant: Option<String>,
    },
}

fn main() -> ExitCode {
    let Cli { command: Command::Run { scenario, seed, json, trace, break_invariant } } = Cli::parse();
    let broken = match break_invariant.as_deref().map(sim::run::Breakage::parse) {
        None => None,
        Some(Some(breakage)) => Some(breakage),
        Some(None) => {
            eprintln!("Error: unknown invariant to break (known: disclosure)");
            return ExitCode::FAILURE;
        }
    };
    let text = match std::fs::read_to_string(&scenario) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("Error: reading {}: {err}", scenario.display());
            return ExitCode::FAILURE;
        }
    };
    let parsed = match sim::scenario::Scenario::parse(&text) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("Error: {}: {err}", scenario.display());
            return ExitCode::FAILURE;
        }
    };
    let outcome = sim::run::run_broken(&parsed, seed, broken);
    if let Some(path) = trace
        && let Err(err) = std::fs::write(&path, &outcome.trace)
    {
        eprintln!("Error: writing {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    if json {
        let line = serde_json::json!({
            "scenario": outcome.scenario,
            "seed": outcome.seed,
            "hash": outcome.hash,
            "violations": outcome.violations,
            "faults": outcome.faults,
            "converged_after_ms": outcome.converged_after.map(|d| d.as_millis() as u64),
            "trace_lines": outcome.trace.lines().count(),
            "summary": outcome.summary,
        });
        println!("{line}");
    } else {
        println!("scenario {} seed {}", outcome.scenario, outcome.seed);
        print!("{}", outcome.summary);
        println!("faults: {:?}", outcome.faults);
        match outcome.converged_after {
            Some(after) => println!("converged {:.2}s after the last fault", after.as_secs_f64()),
            None => println!("did not converge"),
        }
        for violation in &outcome.violations {
            println!("VIOLATION: {violation}");
        }
        println!("trace: {} lines, sha256 {}", outcome.trace.lines().count(), outcome.hash);
    }
    if outcome.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
