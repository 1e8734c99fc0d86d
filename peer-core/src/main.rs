//! The `peer-core` binary: parses the command line, reads core.yaml and env vars, runs a command.
//!
//! Exit codes follow Fabric's `peer`: 0 on success (and for help), 1 for every error, including
//! usage errors (clap's default of 2 is mapped to 1). Errors are printed once, as a chain.

mod cli;

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use clap::error::ErrorKind;

use cli::{Cli, Command, NodeCommand};
use peer_core::config::{self, EnvVars, Loaded};
use peer_core::metadata;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.logging_level.is_some() {
        eprintln!(
            "WARN: CORE_LOGGING_LEVEL is no longer supported, please use the FABRIC_LOGGING_SPEC environment variable"
        );
    }
    match cli.command {
        Command::Version(trailing) => {
            no_trailing(&trailing.args)?;
            print!("{}", metadata::version_block("peer-core"));
            Ok(())
        }
        Command::Node { command } => run_node(command),
    }
}

fn no_trailing(args: &[String]) -> anyhow::Result<()> {
    if !args.is_empty() {
        bail!("trailing args detected");
    }
    Ok(())
}

/// Every `node` subcommand first loads core.yaml (Fabric's InitCmd), then does its own work.
fn run_node(command: NodeCommand) -> anyhow::Result<()> {
    if let NodeCommand::Start { trailing, .. } = &command {
        no_trailing(&trailing.args)?;
    }
    let loaded = load_config()?;
    for note in &loaded.notes {
        if note.level > config::NoteLevel::Debug {
            eprintln!("{:?} [{}] {}", note.level, note.target, note.message);
        }
    }
    let (name, issue) = match command {
        NodeCommand::Start { .. } => ("node start", "#4 (start-and-serve)"),
        NodeCommand::Reset => ("node reset", "#7 (the ledger)"),
        NodeCommand::Rollback { .. } => ("node rollback", "#7 (the ledger)"),
        NodeCommand::Pause { .. } => ("node pause", "#7 (the ledger)"),
        NodeCommand::Resume { .. } => ("node resume", "#7 (the ledger)"),
        NodeCommand::RebuildDbs => ("node rebuild-dbs", "#7 (the ledger)"),
        NodeCommand::UpgradeDbs => ("node upgrade-dbs", "#7 (the ledger)"),
    };
    bail!("`peer-core {name}` is not implemented yet: config loaded from {}; it arrives with issue {issue}", loaded.config.file.display())
}

fn load_config() -> anyhow::Result<Loaded> {
    // The CLI is the one place that reads the process environment; everything else gets EnvVars.
    #[allow(clippy::disallowed_methods)]
    let env = EnvVars::from_pairs(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))));
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(config::load(&env, &cwd)?)
}
