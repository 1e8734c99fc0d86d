//! The `peer-core` binary: parses the command line, reads core.yaml and env vars, runs a command.
//!
//! This is, with `env::real`, the only place that reads the process environment, the system
//! clock and OS entropy; it hands them to the library. Exit codes follow Fabric's `peer`: 0 on
//! success (and for help), 1 for every error, including usage errors (clap's 2 becomes 1).
//! Errors are printed once: failures to load config or the MSP as Fabric's ERROR log line (as
//! its InitCmd does), everything else as `Error: <chain>`.

mod channel_cmd;
mod cli;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Parser;
use clap::error::ErrorKind;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use cli::{ChannelCommand, Cli, Command, MspCommand, NodeCommand};
use peer_core::channel::FolderGenesis;
use peer_core::config::{self, EnvVars, Loaded, Note, NoteLevel};
use peer_core::ledger;
use peer_core::logging::{self, LoggingConfig, Sink};
use peer_core::metadata;
use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::msp::{LocalMsp, Msp, MspFiles};
use peer_core::node;

/// An error already reported through the log; main only sets the exit code.
#[derive(Debug)]
struct Logged;

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(logged)")
    }
}

impl std::error::Error for Logged {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::FAILURE,
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is::<Logged>() => ExitCode::FAILURE,
        Err(err) if err.is::<channel_cmd::UsageError>() => {
            // A usage error gets the command's usage line, as clap prints it for a bad flag.
            eprintln!("Error: {}", error_chain(&err));
            if let Some(usage) = err.downcast_ref::<channel_cmd::UsageError>() {
                eprint!("{}", subcommand_usage(usage.group, usage.command));
            }
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("Error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `a: b: c`, once each: many errors print their source in their own
/// text (`opening X: Not a directory`), so `{:#}` would repeat it.
fn error_chain(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// The process environment, read once. A `CORE_*` or `FABRIC_*` variable that is not UTF-8 is
/// an error naming it (dropping it would silently run with the file's value instead).
fn process_env() -> anyhow::Result<EnvVars> {
    use std::os::unix::ffi::OsStrExt;
    let mut vars = Vec::new();
    #[allow(clippy::disallowed_methods)]
    for (name, value) in std::env::vars_os() {
        let ours = |name: &[u8]| name.starts_with(b"CORE_") || name.starts_with(b"FABRIC_");
        if !ours(name.as_bytes()) {
            continue;
        }
        match (name.to_str(), value.to_str()) {
            (Some(name), Some(value)) => vars.push((name.to_string(), value.to_string())),
            _ => bail!("env var {} is not valid UTF-8: \"{}\"", name.as_bytes().escape_ascii(), value.as_bytes().escape_ascii()),
        }
    }
    Ok(EnvVars::from_pairs(vars))
}

/// The wall clock, read here (the CLI) and handed to the library; nothing below reads the OS clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_clock_now() -> SystemTime {
    SystemTime::now()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let env = process_env()?;
    // Fabric sets logging up before anything else (an invalid spec fails even `peer version`).
    let logging_config = LoggingConfig {
        spec: env.get("FABRIC_LOGGING_SPEC").unwrap_or_default().to_string(),
        format: env.get("FABRIC_LOGGING_FORMAT").unwrap_or_default().to_string(),
    };
    let (layer, log_handle) = logging::layer(&logging_config, Arc::new(wall_clock_now), Sink::stderr())?;
    tracing_subscriber::registry().with(layer).init();
    if cli.logging_level.is_some() {
        tracing::warn!(target: "main", func = "InitCmd", "CORE_LOGGING_LEVEL is no longer supported, please use the FABRIC_LOGGING_SPEC environment variable");
    }
    match cli.command {
        Command::Version(trailing) => {
            no_trailing(&trailing.args)?;
            print!("{}", metadata::version_block("peer-core"));
            Ok(())
        }
        Command::Node { command } => run_node(command, &env, log_handle),
        Command::Channel { command } => run_channel(command, &env),
        Command::Msp { command: MspCommand::Generate { org, domain, peers, orderer, out, seed } } => {
            let kind = if orderer { generate::OrgKind::Orderer } else { generate::OrgKind::Peer };
            msp_generate(&OrgSpec { msp_id: org, domain, peers }, kind, &out, seed)
        }
        Command::Msp { command: MspCommand::Inspect { dir, msp_id } } => msp_inspect(&dir, msp_id, &env),
    }
}

fn no_trailing(args: &[String]) -> anyhow::Result<()> {
    if !args.is_empty() {
        bail!("trailing args detected");
    }
    Ok(())
}

fn log_note(note: &Note) {
    macro_rules! emit {
        ($($target:literal),*) => {
            match (note.target, note.level) {
                $(
                    ($target, NoteLevel::Debug) => tracing::debug!(target: $target, func = "InitCmd", "{}", note.message),
                    ($target, NoteLevel::Info) => tracing::info!(target: $target, func = "InitCmd", "{}", note.message),
                    ($target, NoteLevel::Warn) => tracing::warn!(target: $target, func = "InitCmd", "{}", note.message),
                )*
                (_, _) => tracing::info!(target: "config", func = "InitCmd", "{}", note.message),
            }
        };
    }
    emit!("config", "main", "common.deliverevents", "gossip.privdata", "deliveryClient");
}

/// Fabric's InitCmd: load core.yaml, then the local MSP. Failures are ERROR log lines on logger
/// `main`, then exit 1.
fn init_cmd(env: &EnvVars) -> anyhow::Result<(Loaded, LocalMsp, Vec<Msp>)> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let loaded = match config::load(env, &cwd) {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::error!(target: "main", func = "InitCmd", "{err}");
            return Err(Logged.into());
        }
    };
    loaded.notes.iter().for_each(log_note);
    let peer = &loaded.config.peer;
    if peer.local_msp_type != config::MspType::Fabric {
        tracing::error!(target: "main", func = "InitCmd", "Cannot run peer because Unsupported msp type idemix: peer-core runs with a Fabric X.509 MSP (peer.localMspType: bccsp)");
        return Err(Logged.into());
    }
    let msp = match LocalMsp::load(&peer.msp_config_path, &peer.local_msp_id, peer.bccsp.keystore.as_deref(), wall_clock_now()) {
        Ok(msp) => msp,
        Err(err) => {
            tracing::error!(target: "main", func = "InitCmd", "Cannot run peer because {err}");
            return Err(Logged.into());
        }
    };
    tracing::debug!(target: "main", func = "InitCmd", "Loaded the local MSP {} (PKI-ID {}) for config {}", msp.msp.id, msp.pki_id(), loaded.config.file.display());
    let mut trusted = Vec::new();
    for org in &loaded.config.gossip.trusted_msps {
        let loaded_msp = MspFiles::read_dir(&org.dir, None).map_err(|e| e.to_string()).and_then(|files| Msp::from_files(&files, &org.id));
        match loaded_msp {
            Ok(msp) => trusted.push(msp),
            Err(err) => {
                tracing::error!(
                    target: "main",
                    func = "InitCmd",
                    "Cannot run peer because the MSP of {} in peer.gossip.trustedMSPs ({}) does not load: {err}",
                    org.id,
                    org.dir.display()
                );
                return Err(Logged.into());
            }
        }
    }
    Ok((loaded, msp, trusted))
}

fn run_node(command: NodeCommand, env: &EnvVars, log_handle: logging::LoggingHandle) -> anyhow::Result<()> {
    if let NodeCommand::Start { trailing, .. } = &command {
        no_trailing(&trailing.args)?;
    }
    if let NodeCommand::Rollback { channel_id: Some(channel_id), .. }
    | NodeCommand::Pause { channel_id: Some(channel_id) }
    | NodeCommand::Resume { channel_id: Some(channel_id) } = &command
    {
        check_channel_flag(channel_id)?;
    }
    let (loaded, msp, trusted_msps) = init_cmd(env)?;
    let mut config = loaded.config;
    let name = match command {
        NodeCommand::Start { chaincode_dev, .. } => {
            if chaincode_dev {
                tracing::info!(target: "nodeCmd", func = "serve", "Running in chaincode development mode");
                tracing::info!(target: "nodeCmd", func = "serve", "Disable loading validity system chaincode");
                config.chaincode.mode = config::ChaincodeMode::Dev;
            }
            return node_start(config, msp, trusted_msps, log_handle);
        }
        NodeCommand::Reset => "reset",
        NodeCommand::Rollback { .. } => "rollback",
        NodeCommand::Pause { .. } => "pause",
        NodeCommand::Resume { .. } => "resume",
        NodeCommand::RebuildDbs => "rebuild-dbs",
        NodeCommand::UpgradeDbs => "upgrade-dbs",
    };
    let env = peer_core::env::real::env().context("setting up the environment")?;
    let fsp = config.peer.file_system_path.as_path();
    let holder = format!("peer-core node {name}, pid {}", std::process::id());
    let result = match &command {
        NodeCommand::Reset => ledger::commands::reset(&env, fsp, &holder),
        NodeCommand::Rollback { channel_id, block_number } => {
            ledger::commands::rollback(&env, fsp, &holder, channel_id.as_deref().unwrap_or(""), *block_number)
        }
        NodeCommand::Pause { channel_id } => ledger::commands::pause(&env, fsp, &holder, channel_id.as_deref().unwrap_or("")),
        NodeCommand::Resume { channel_id } => ledger::commands::resume(&env, fsp, &holder, channel_id.as_deref().unwrap_or("")),
        NodeCommand::RebuildDbs => ledger::commands::rebuild_dbs(&env, fsp, &holder),
        NodeCommand::UpgradeDbs => ledger::commands::upgrade_dbs(&env, fsp, &holder),
        NodeCommand::Start { .. } => Ok(()),
    };
    // A failure at run time is not a usage error: the error alone, without the command's help.
    // Departure from Fabric 2.2 on purpose: its cobra prints the whole usage after the error
    // (spec §1.4), which buries the error under text about flags that were used correctly.
    result.map_err(|error| match error {
        // A missing -c is a usage error: it gets the usage line, as a bad flag does.
        ledger::LedgerError::MissingChannelId => {
            channel_cmd::UsageError { message: error.to_string(), group: "node", command: name }.into()
        }
        error => anyhow::Error::from(error),
    })
}

/// What clap prints after a usage error: the command's usage line and where to read more.
fn subcommand_usage(group: &str, name: &str) -> String {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    command
        .find_subcommand_mut(group)
        .and_then(|node| node.find_subcommand_mut(name))
        .map(|sub| format!("\n{}\n\nFor more information, try '--help'.\n", sub.render_usage()))
        .unwrap_or_default()
}

/// A channel name given with `-c/--channelID`: printable text only, checked before anything is
/// loaded or asked of a peer (a control character would go into log lines and error texts as it
/// is). The error names the flag and shows the value escaped.
pub(crate) fn check_channel_flag(channel_id: &str) -> anyhow::Result<()> {
    config::value::check_printable(channel_id)
        .map_err(|reason| anyhow::anyhow!("invalid value for -c/--channelID on the command line: {reason}"))
}

/// `channel …`: argument checks (with usage), then InitCmd (config and the admin MSP), then one
/// call to the peer on a single-threaded runtime.
fn run_channel(command: ChannelCommand, env: &EnvVars) -> anyhow::Result<()> {
    channel_cmd::check_args(&command)?;
    if let ChannelCommand::CreateGenesis { channel_id, orderer_org, orderers, orgs, anchor_peers, timestamp, output } = command {
        let genesis = FolderGenesis { channel_id, orderer_org, orderers, orgs, anchor_peers, timestamp: None };
        return create_genesis(genesis, timestamp, &output);
    }
    let (loaded, signer, _trusted) = init_cmd(env)?;
    let client = command.client_flags();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let world = peer_core::env::real::env().context("setting up the environment")?;
    let context = channel_cmd::ChannelContext { config: loaded.config, signer, client, env: world };
    runtime.block_on(channel_cmd::run(command, &context))
}

/// `channel create-genesis`: the channel's genesis block from the orgs' MSP folders.
fn create_genesis(mut genesis: FolderGenesis, timestamp: u64, output: &std::path::Path) -> anyhow::Result<()> {
    // A protobuf Timestamp holds seconds up to year 9999; beyond that the time is not representable.
    const MAX_TIMESTAMP: u64 = 253_402_300_799;
    if timestamp > MAX_TIMESTAMP {
        bail!("--timestamp {timestamp} is after the year 9999 (the largest is {MAX_TIMESTAMP})");
    }
    genesis.timestamp = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(timestamp));
    let block = genesis.build().map_err(anyhow::Error::msg)?;
    std::fs::write(output, prost::Message::encode_to_vec(&block)).with_context(|| format!("writing {}", output.display()))?;
    println!("Wrote the genesis block of channel {} to {}", genesis.channel_id, output.display());
    Ok(())
}

/// `node start`: the real Env, `node::start`, then wait for SIGINT or SIGTERM.
fn node_start(config: config::Config, msp: LocalMsp, trusted_msps: Vec<Msp>, log_handle: logging::LoggingHandle) -> anyhow::Result<()> {
    // One thread: the peer's work is I/O-bound, and a single-threaded runtime starts fastest.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let env = peer_core::env::real::env().context("setting up the environment")?;
        let holder = format!("peer-core node start, pid {}", std::process::id());
        let tls_files = node::tls::TlsFiles::read(&config.peer.tls, &config.delivery_client.address_overrides)
            .map_err(|e| anyhow::anyhow!("Error loading secure config for peer ({e})"))?;
        let operations_tls_files = node::tls::OperationsTlsFiles::read(&config.operations.tls)
            .map_err(|e| anyhow::anyhow!("failed to initialize operations subsystem: {e}"))?;
        let setup = node::Setup {
            trusted_msps,
            tls_files,
            operations_tls_files,
            open_file_limit: peer_core::env::real::open_file_limit(),
            ..node::Setup::new(config, msp, Arc::new(log_handle), holder)
        };
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).context("installing a SIGINT handler")?;
        let running = node::start(env, setup).await?;
        let (number, name) = tokio::select! {
            _ = terminate.recv() => (15, "terminated"),
            _ = interrupt.recv() => (2, "interrupt"),
        };
        tracing::info!(target: "nodeCmd", func = "func1", "Received signal: {number} ({name})");
        running.stop().await;
        Ok(())
    })
}

/// A domain must be a DNS name: it becomes certificate names and a folder name
/// (`peerOrganizations/<domain>`), so `../x` or `a/b` must not escape `--out`.
fn check_domain(domain: &str) -> anyhow::Result<()> {
    let bad = |why: &str| Err(anyhow::anyhow!("domain {domain:?} is not a DNS name: {why}"));
    if domain.is_empty() {
        return bad("it is empty");
    }
    if domain.len() > 253 {
        return bad("it is longer than 253 characters");
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("each dot-separated label must have 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || label.starts_with('-') || label.ends_with('-') {
            return bad("labels are letters, digits and inner hyphens");
        }
    }
    Ok(())
}

fn msp_generate(spec: &OrgSpec, kind: generate::OrgKind, out: &std::path::Path, seed: Option<u64>) -> anyhow::Result<()> {
    if spec.msp_id.is_empty() || spec.domain.is_empty() {
        bail!("--org and --domain must not be empty");
    }
    config::value::check_printable(&spec.msp_id)
        .map_err(|reason| anyhow::anyhow!("invalid value for --org on the command line: {reason}"))?;
    check_domain(&spec.domain).map_err(|e| anyhow::anyhow!("--domain: {e}"))?;
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
    let org = generate::generate(spec, kind, &mut rng, validity).map_err(|e| anyhow::anyhow!("generating {}: {e}", spec.msp_id))?;
    let root = org.write_to(out).with_context(|| format!("writing {}", out.display()))?;
    let mut nodes: Vec<String> = org.peers.iter().map(|n| n.name.clone()).collect();
    nodes.push(format!("Admin@{}", spec.domain));
    println!("Generated {} ({}) in {}", spec.msp_id, nodes.join(", "), root.display());
    Ok(())
}

/// `msp inspect DIR`: reads the directory, finds the MSP ID (`--mspid`, else the core.yaml
/// `node start` would read), prints the report. Exit 0 whenever the directory could be read,
/// whether or not the MSP is valid (the report's last line says).
fn msp_inspect(dir: &std::path::Path, msp_id: Option<String>, env: &EnvVars) -> anyhow::Result<()> {
    use peer_core::msp::MspError;
    use peer_core::msp::inspect::{self, MspIdSource};
    let files = match MspFiles::read_dir(dir, None) {
        Ok(files) => files,
        Err(MspError::Inaccessible { path, source }) => bail!("MSP directory {} cannot be read: {source}", path.display()),
        Err(MspError::NotADirectory { path }) => {
            bail!("{} is not a directory: an MSP is a directory (cacerts/, signcerts/, keystore/, …)", path.display())
        }
        Err(MspError::Unreadable { path, source }) => bail!("cannot read {}: {source}", path.display()),
        Err(MspError::TooLarge { path, size }) => {
            bail!("{} is {size} bytes, more than the {} bytes an MSP file may have", path.display(), peer_core::msp::MAX_MSP_FILE_BYTES)
        }
        Err(MspError::BrokenLink { path, target, source }) => {
            bail!("{} is a symbolic link to {}, which cannot be read: {source}", path.display(), target.display())
        }
        Err(err) => return Err(anyhow::Error::new(err).context(format!("reading the MSP directory {}", dir.display()))),
    };
    let folders = [
        &files.signcerts,
        &files.keystore,
        &files.cacerts,
        &files.intermediatecerts,
        &files.admincerts,
        &files.tlscacerts,
        &files.tlsintermediatecerts,
    ];
    if files.config_yaml.is_none() && folders.iter().all(|folder| folder.is_empty()) {
        bail!(
            "{} is not an MSP directory: it has no certificates, keys or config.yaml (an MSP has cacerts/, signcerts/, keystore/, …)",
            dir.display()
        );
    }
    let source = match msp_id {
        Some(msp_id) => {
            config::value::check_printable(&msp_id)
                .map_err(|reason| anyhow::anyhow!("invalid value for --mspid on the command line: {reason}"))?;
            Ok(MspIdSource { msp_id, from: "--mspid".into() })
        }
        None => msp_id_from_core_yaml(env),
    };
    print!("{}", inspect::report(&files, source.as_ref().map_err(String::as_str), wall_clock_now()));
    Ok(())
}

/// `peer.localMspId` of the core.yaml `node start` would read, or why there is none.
fn msp_id_from_core_yaml(env: &EnvVars) -> Result<peer_core::msp::inspect::MspIdSource, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no --mspid, and the current directory cannot be read: {e}"))?;
    match config::load(env, &cwd) {
        Ok(loaded) => Ok(peer_core::msp::inspect::MspIdSource {
            msp_id: loaded.config.peer.local_msp_id,
            from: format!("peer.localMspId in {}", loaded.config.file.display()),
        }),
        Err(config::ConfigError::NotFound { .. }) => Err("no --mspid, and no core.yaml to take peer.localMspId from".into()),
        Err(err) => Err(format!("no --mspid, and core.yaml does not load: {err}")),
    }
}
