//! The `peer-core` binary: parses the command line, reads core.yaml and env vars, runs a command.
//!
//! Exit codes follow Fabric's `peer`: 0 on success (and for help), 1 for every error, including
//! usage errors (clap's default of 2 is mapped to 1). Errors are printed once, as a chain.

mod cli;

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use clap::error::ErrorKind;

use std::time::SystemTime;

use cli::{Cli, Command, MspCommand, NodeCommand};
use peer_core::config::{self, EnvVars, Loaded};
use peer_core::metadata;
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};

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
        Command::Msp { command: MspCommand::Generate { org, domain, peers, out, seed } } => {
            msp_generate(&OrgSpec { msp_id: org, domain, peers }, &out, seed)
        }
    }
}

/// The wall clock, read here (the CLI) and handed to the library; nothing below reads the OS clock.
#[allow(clippy::disallowed_methods)]
fn wall_clock_now() -> SystemTime {
    SystemTime::now()
}

fn msp_generate(spec: &OrgSpec, out: &std::path::Path, seed: Option<u64>) -> anyhow::Result<()> {
    if spec.msp_id.is_empty() || spec.domain.is_empty() {
        bail!("--org and --domain must not be empty");
    }
    if spec.peers > 1000 {
        bail!("--peers {} is more than the 1000 this command generates at once", spec.peers);
    }
    let (mut rng, validity) = match seed {
        Some(seed) => (generate::org_rng(seed, spec), ValidityWindow::fixed()),
        None => {
            let mut seed = [0u8; 32];
            // Real keys for people: OS entropy. Seeded runs (tests, the simulator) never get here.
            #[allow(clippy::disallowed_methods)]
            getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("reading OS entropy: {e}"))?;
            (rand_core::SeedableRng::from_seed(seed), ValidityWindow::from_now(wall_clock_now()))
        }
    };
    let org = generate::generate_org(spec, &mut rng, validity).map_err(|e| anyhow::anyhow!("generating {}: {e}", spec.msp_id))?;
    let root = org.write_to(out).with_context(|| format!("writing {}", out.display()))?;
    let plural = if spec.peers == 1 { "" } else { "s" };
    println!("Generated {} ({} peer{plural} and Admin@{}) in {}", spec.msp_id, spec.peers, spec.domain, root.display());
    Ok(())
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
    let peer = &loaded.config.peer;
    let msp = LocalMsp::load(&peer.msp_config_path, &peer.local_msp_id, peer.bccsp.keystore.as_deref(), wall_clock_now())
        .map_err(|e| anyhow::anyhow!("Cannot run peer because {e}"))?;
    if loaded.config.peer.local_msp_type != config::MspType::Fabric {
        bail!("Unsupported msp type idemix: peer-core runs with a Fabric X.509 MSP (peer.localMspType: bccsp)");
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
    bail!(
        "`peer-core {name}` is not implemented yet: config loaded from {} and MSP {} (PKI-ID {}); it arrives with issue {issue}",
        loaded.config.file.display(),
        msp.msp.id,
        msp.pki_id()
    )
}

fn load_config() -> anyhow::Result<Loaded> {
    // The CLI is the one place that reads the process environment; everything else gets EnvVars.
    #[allow(clippy::disallowed_methods)]
    let env = EnvVars::from_pairs(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))));
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(config::load(&env, &cwd)?)
}
