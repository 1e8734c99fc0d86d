//! The simulator's command line.
//!
//! - `sim run scenarios/crash-restart.yaml --seed 42` runs one scenario with one seed and prints
//!   a readable timeline (the faults as they are injected, membership views as they change, block
//!   flow and failovers), the checks and the trace hash. `sim run swarm --seed 42` runs the
//!   scenario the seed chooses (see `sim::swarm`) and prints it first as a scenario file;
//!   `--dump FILE` writes that file, and `sim run FILE --seed 42` replays the same run.
//!   `--json` prints one machine-readable line; `--trace FILE` writes the full trace; `--svg FILE`
//!   draws the run (see `sim::svg`). A failing run prints the command that replays it with every
//!   option it needs, and keeps its trace in `target/sim-failures/` (see `sim::failures`).
//! - `sim sweep --seeds 1000 [--scenario FILE|swarm]` runs many seeds, each in its own process
//!   (tokio's task IDs are process-global, so only a fresh process replays a seed exactly), two
//!   at a time, with a progress bar and an ETA on a terminal (plain progress lines in a CI log),
//!   each failure's replay command as it comes, and a summary table.
//! - `sim orderer --listen 127.0.0.1:7050 --data DIR --genesis-out FILE` runs the simulator's
//!   orderer (`sim::orderer`) as a real process over peer-core's real Env, for end-to-end tests
//!   with `peer-core node start` peers: it generates the orgs (fixed seed, written in cryptogen's
//!   layout under `--crypto-out`) and the channel's genesis block, writes the block the ledger
//!   holds as block 0 to `--genesis-out`, prints `listening on ADDR`, and on SIGTERM or SIGINT
//!   stops, prints `stopped at height N` and exits 0. With `--max-height N` the synthetic
//!   transactions stop at that height and `reached height N` is printed when it is reached.
//! - `sim protosim --peers 1000 [--orgs 4] [--seed S] [--seconds T] [--join-rate R]
//!   [--preload-identities] [--latency-ms 2..20] [--max-wall S] [--max-rss-mb M] [--progress]
//!   [--json]` simulates the
//!   membership protocol alone (`sim::protosim`) and prints the time to full membership, message
//!   counts, wall time and peak memory (`--json`: one line).

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitCode, Stdio};

use clap::{Parser, Subcommand};
use sim::scenario::Scenario;

#[derive(Parser)]
#[command(name = "sim", about = "Deterministic simulation of peer-core peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario with one seed.
    Run(RunArgs),
    /// Run many seeds and summarize.
    Sweep {
        /// How many seeds (1..=N).
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// Scenario files to sweep, or `swarm` (default: every file in scenarios/ and swarm).
        #[arg(long)]
        scenario: Vec<String>,
    },
    /// Run the simulator's orderer as a real process (for end-to-end tests).
    Orderer(Box<OrdererArgs>),
    /// Simulate the membership protocol alone (no gRPC, no turmoil) for many peers and measure it.
    Protosim(ProtosimArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file, or `swarm` for the scenario the seed chooses.
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON line (hash, violations, faults, convergence, replay) instead of the timeline.
    #[arg(long)]
    json: bool,
    /// Write the whole trace here (a failing run's trace is otherwise kept in target/sim-failures/).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Draw the run as an SVG timeline (peers and orderer nodes as rows, visibility and ledger
    /// height over time, the timeline's events labelled, failovers, a legend).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Write the scenario as a scenario file (for `swarm`, the one the seed chose: `sim run FILE
    /// --seed N` on it replays the run).
    #[arg(long, value_name = "FILE")]
    dump: Option<PathBuf>,
    /// Test-only: deliberately break an invariant (`disclosure`, `lost-disk`, `split-brain`, `corrupt-block`, `foreign-tls`) to see it caught.
    #[arg(long, value_name = "INVARIANT", hide = true)]
    break_invariant: Option<String>,
}

impl RunArgs {
    /// What replays this run: every option that changes it. The destructuring names every
    /// option, so a new one cannot be added without deciding whether a replay needs it.
    fn replay(&self) -> sim::failures::Replay {
        let RunArgs { scenario, seed, break_invariant, json: _, trace: _, svg: _, dump: _ } = self;
        sim::failures::Replay { scenario: scenario.clone(), seed: *seed, break_invariant: break_invariant.clone() }
    }
}

#[derive(clap::Args)]
struct ProtosimArgs {
    /// How many peers.
    #[arg(long)]
    peers: usize,
    /// Organizations; the peers are split evenly between them.
    #[arg(long, default_value_t = 4)]
    orgs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds to run for.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// One-way message latency range in milliseconds, drawn per message (`MIN..MAX`).
    #[arg(long, default_value = "2..20")]
    latency_ms: String,
    /// Peers starting per simulated second after the anchor peers (0: all at once).
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// Start every peer with every identity (as Fabric's identity pull would give it).
    #[arg(long)]
    preload_identities: bool,
    /// Run without the identity pull (peers send no Hellos), for comparison.
    #[arg(long)]
    no_identity_pull: bool,
    /// Stop (and report how far the run got) once this much wall time has passed.
    #[arg(long, value_name = "SECONDS")]
    max_wall: Option<f64>,
    /// Stop (and report how far the run got) once resident memory passes this many MiB.
    #[arg(long, value_name = "MIB")]
    max_rss_mb: Option<f64>,
    /// Print a progress line to stderr every simulated second.
    #[arg(long)]
    progress: bool,
    /// Print one JSON line instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct OrdererArgs {
    /// Where to serve orderer.AtomicBroadcast (port 0: any free port; the bound address is
    /// printed and, unless --endpoint says otherwise, named in the generated genesis block).
    #[arg(long, default_value = "127.0.0.1:7050")]
    listen: String,
    /// The orderer's data directory (its ledger); a second start continues from it.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Order the channel of this genesis block (e.g. from `peer-core channel create-genesis`)
    /// instead of generating orgs and a block; needs --msp and --mspid.
    #[arg(long, value_name = "FILE", requires_all = ["msp", "mspid"], conflicts_with_all = ["crypto_out", "orgs", "peers", "endpoint", "anchor_peers"])]
    genesis: Option<PathBuf>,
    /// With --genesis: the MSP folder of the orderer's signing identity (a member of the
    /// channel's orderer org, e.g. ordererOrganizations/example.com/orderers/orderer.example.com/msp).
    #[arg(long, value_name = "DIR", requires = "genesis")]
    msp: Option<PathBuf>,
    /// With --genesis: the MSP ID of that identity.
    #[arg(long, value_name = "MSPID", requires = "genesis")]
    mspid: Option<String>,
    /// Where to write the channel's genesis block (block 0 of the orderer's ledger, for
    /// `peer-core channel join -b FILE`); required unless --genesis is given.
    #[arg(long, value_name = "FILE", required_unless_present = "genesis")]
    genesis_out: Option<PathBuf>,
    /// Where to write the generated orgs' folders in cryptogen's layout (default: `crypto-config`
    /// beside the genesis block).
    #[arg(long, value_name = "DIR")]
    crypto_out: Option<PathBuf>,
    /// The channel of the generated genesis block.
    #[arg(long, default_value = "mychannel")]
    channel: String,
    /// Synthetic transactions per second (0: blocks only from Broadcast).
    #[arg(long, default_value_t = 10.0)]
    tx_per_second: f64,
    /// BatchTimeout.
    #[arg(long, default_value = "500ms")]
    batch_timeout: String,
    /// BatchSize.MaxMessageCount.
    #[arg(long, default_value_t = 10)]
    max_message_count: u32,
    /// The application orgs to generate (`org<N>`, MSP ID `Org<N>MSP`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "org1")]
    orgs: Vec<String>,
    /// Peer identities generated per org (`peer0` … `peer<N-1>`), for a topology with followers.
    #[arg(long, default_value_t = 1)]
    peers: usize,
    /// The orderer endpoint the generated genesis block names (default: the bound address).
    #[arg(long)]
    endpoint: Option<String>,
    /// An anchor peer the generated genesis block names for a generated org (repeatable).
    #[arg(long = "anchor-peer", value_name = "MSPID=HOST:PORT")]
    anchor_peers: Vec<String>,
    /// Stop the synthetic transactions once the chain is this high, and print `reached height N`.
    #[arg(long)]
    max_height: Option<u64>,
    /// Serve TLS with this certificate (PEM; e.g. orderers/orderer.example.com/tls/server.crt),
    /// as an orderer with General.TLS.Enabled.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM, P-256).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require and verify client certificates (General.TLS.ClientAuthRequired), against
    /// --tls-client-root and the TLS CAs of the channel's orgs.
    #[arg(long, requires = "tls_cert")]
    tls_client_auth: bool,
    /// A PEM file of client root CAs besides the channel orgs' (General.TLS.ClientRootCAs; repeatable).
    #[arg(long = "tls-client-root", value_name = "FILE", requires = "tls_client_auth")]
    tls_client_roots: Vec<PathBuf>,
}

fn load(scenario: &str, seed: u64) -> Result<Scenario, String> {
    if scenario == "swarm" {
        let generated = sim::swarm::generate(seed);
        generated.check()?;
        return Ok(generated);
    }
    let text = std::fs::read_to_string(scenario).map_err(|e| format!("reading {scenario}: {e}"))?;
    Scenario::parse(&text).map_err(|e| format!("{scenario}: {e}"))
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(&args),
        Command::Sweep { seeds, scenario } => sweep(seeds, scenario),
        Command::Protosim(args) => protosim(args),
        Command::Orderer(args) => match orderer(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("Error: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let (scenario, seed) = (args.scenario.as_str(), args.seed);
    let broken = match args.break_invariant.as_deref().map(sim::run::Breakage::parse) {
        None => None,
        Some(Some(breakage)) => Some(breakage),
        Some(None) => {
            eprintln!("Error: unknown invariant to break (known: disclosure, lost-disk, split-brain, corrupt-block, foreign-tls)");
            return ExitCode::FAILURE;
        }
    };
    let parsed = match load(scenario, seed) {
        Ok(parsed) => parsed,
        Err(err) => {
            eprintln!("Error: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A swarm seed's scenario, as a scenario file (empty for a file: it is its own record).
    let options = if scenario == "swarm" { sim::swarm::describe(&parsed, seed) } else { String::new() };
    if let Some(path) = &args.dump {
        let text = if options.is_empty() { parsed.to_yaml() } else { options.clone() };
        if let Err(err) = std::fs::write(path, text) {
            eprintln!("Error: writing {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let outcome = sim::run::run_broken(&parsed, seed, broken);
    let replay = args.replay();
    // The trace file starts with the swarm scenario, as YAML comments.
    let commented = |line: &str| if line.starts_with('#') { format!("{line}\n") } else { format!("# {line}\n") };
    let trace_text = || format!("{}{}", options.lines().map(commented).collect::<String>(), outcome.trace);
    if let Some(path) = &args.trace
        && let Err(err) = std::fs::write(path, trace_text())
    {
        eprintln!("Error: writing {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    // A failing run keeps its trace where the scenario tests keep theirs, unless --trace put it
    // somewhere already.
    let failed = !outcome.violations.is_empty();
    let kept = match (&args.trace, failed) {
        (Some(path), true) => Some(path.clone()),
        (None, true) => {
            let dir = std::env::current_exe().map_or_else(|_| PathBuf::from("target/sim-failures"), |exe| sim::failures::dir(&exe));
            let path = dir.join(replay.trace_file());
            match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, trace_text())) {
                Ok(()) => Some(path),
                Err(err) => {
                    eprintln!("Error: keeping the failing trace in {}: {err}", path.display());
                    None
                }
            }
        }
        (_, false) => None,
    };
    if let Some(path) = &args.svg
        && let Err(err) = std::fs::write(path, sim::svg::render(&parsed, &outcome))
    {
        eprintln!("Error: writing {}: {err}", path.display());
        return ExitCode::FAILURE;
    }
    if args.json {
        let line = serde_json::json!({
            "scenario": outcome.scenario,
            "seed": outcome.seed,
            "hash": outcome.hash,
            "violations": outcome.violations,
            "faults": outcome.faults,
            "milestones": outcome.milestones,
            "catch_up_ms": outcome.catch_up.iter().map(|(peer, d)| (peer.clone(), d.as_millis() as u64)).collect::<Vec<_>>(),
            "converged_after_ms": outcome.converged_after.map(|d| d.as_millis() as u64),
            "diverged_ms": outcome.diverged.iter().map(|(since, at)| (since.as_millis() as u64, at.as_millis() as u64)).collect::<Vec<_>>(),
            "trace_lines": outcome.trace.lines().count(),
            "summary": outcome.summary,
            "options": options,
            "replay": replay.command(),
            "trace_kept": kept.as_ref().map(|p| p.display().to_string()),
        });
        println!("{line}");
    } else {
        println!("scenario {} seed {}", outcome.scenario, outcome.seed);
        if !options.is_empty() {
            println!("{options}");
        }
        print!("{}", outcome.summary);
        println!("faults: {:?}", outcome.faults);
        println!("milestones: {:?}", outcome.milestones);
        let last_fault = parsed.last_fault();
        let earlier: Vec<String> = outcome
            .diverged
            .iter()
            .map(|(since, at)| format!("had converged at {:.2}s and diverged again at {:.2}s", since.as_secs_f64(), at.as_secs_f64()))
            .collect();
        let earlier = if earlier.is_empty() { String::new() } else { format!(" ({})", earlier.join("; ")) };
        match outcome.converged_after {
            Some(after) => println!(
                "converged {:.2}s after the last fault, at {:.2}s, and stayed converged{earlier}",
                after.as_secs_f64(),
                (last_fault + after).as_secs_f64()
            ),
            None => println!("did not converge{earlier}"),
        }
        for violation in &outcome.violations {
            println!("VIOLATION: {violation}");
        }
        println!("trace: {} lines, sha256 {}", outcome.trace.lines().count(), outcome.hash);
        if failed {
            println!("replay: {}", replay.command());
            if let Some(path) = &kept {
                println!("trace kept in {}", path.display());
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn protosim(args: ProtosimArgs) -> ExitCode {
    let latency = args.latency_ms.split_once("..").and_then(|(low, high)| Some((low.trim().parse().ok()?, high.trim().parse().ok()?)));
    let Some(latency_ms) = latency else {
        eprintln!("Error: --latency-ms must be MIN..MAX in milliseconds (got {:?})", args.latency_ms);
        return ExitCode::FAILURE;
    };
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 1e6) {
        eprintln!("Error: --seconds must be a positive number of seconds up to 1000000 (got {})", args.seconds);
        return ExitCode::FAILURE;
    }
    let mut options = sim::protosim::Options::new(args.peers, args.seed, std::time::Duration::from_secs_f64(args.seconds));
    options.orgs = args.orgs;
    options.latency_ms = latency_ms;
    options.join_rate = args.join_rate;
    options.preload_identities = args.preload_identities;
    options.identity_pull = !args.no_identity_pull;
    let limits = sim::protosim::Limits {
        max_wall: args.max_wall.filter(|s| s.is_finite() && *s > 0.0).map(std::time::Duration::from_secs_f64),
        max_rss_mb: args.max_rss_mb,
    };
    let show = args.progress;
    let progress = |p: &sim::protosim::Progress| {
        if show {
            eprintln!(
                "simulated {:>6.1}s  wall {:>8.1}s  rss {:>8.0} MiB  pairs seen {:.4}",
                p.simulated.as_secs_f64(),
                p.wall.as_secs_f64(),
                p.rss_mb.unwrap_or(0.0),
                p.seen_pairs
            );
        }
    };
    let measured = match sim::protosim::measure(&options, &limits, progress) {
        Ok(measured) => measured,
        Err(err) => {
            eprintln!("Error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        println!("{}", measured.json());
        return ExitCode::SUCCESS;
    }
    let o = &measured.outcome;
    if let Some(why) = &measured.stopped {
        println!("stopped early at {:.1} simulated seconds: {why}", o.simulated.as_secs_f64());
    }
    println!(
        "{} peers in {} orgs, seed {}, {:.1} simulated seconds, last peer started at {:.2}s{}",
        o.peers,
        o.orgs,
        o.seed,
        o.simulated.as_secs_f64(),
        o.last_start.as_secs_f64(),
        if o.preload_identities {
            ", identities preloaded"
        } else if o.identity_pull {
            ""
        } else {
            ", no identity pull"
        }
    );
    let at = |d: Option<std::time::Duration>| d.map_or_else(|| "never".to_string(), |d| format!("{:.3}s", d.as_secs_f64()));
    match o.full_membership {
        Some(full) => println!("full membership at {:.3}s ({} messages)", full.as_secs_f64(), o.messages_to_full.unwrap_or(0)),
        None => println!(
            "no full membership within the run: {} pairs missing at the end (alive members seen per peer: {}..{})",
            o.missing_pairs, o.alive_seen.0, o.alive_seen.1
        ),
    }
    println!("99% of pairs at {}, 99.9% at {}", at(o.coverage_99), at(o.coverage_999));
    println!("messages: {} ({:.1} per peer per simulated second) {:?}", o.messages_total(), o.messages_per_peer_per_s(), o.messages);
    println!("payload bytes: {}; rejected: {:?}; events: {}", o.payload_bytes, o.rejected, o.events);
    if let (Some(from), Some(wall), Some(rate)) = (o.steady_from, measured.steady_wall, o.steady_messages_per_peer_per_s()) {
        let steady = o.steady().unwrap_or_default().as_secs_f64();
        println!(
            "steady phase (from {:.1}s): {rate:.1} messages per peer per simulated second, {:.3}s wall per simulated second, {:.2}µs wall per message",
            from.as_secs_f64(),
            wall.as_secs_f64() / steady,
            wall.as_secs_f64() * 1e6 / o.steady_messages.max(1) as f64
        );
    }
    let run_wall = measured.wall - measured.setup_wall;
    let mb = |mb: Option<f64>| mb.map_or_else(|| "unknown".to_string(), |mb| format!("{mb:.1} MiB"));
    println!(
        "wall: {:.2}s ({:.2}s setup, {:.3}s per simulated second); memory: peak {} (VmHWM), {} at the end (VmRSS)",
        measured.wall.as_secs_f64(),
        measured.setup_wall.as_secs_f64(),
        run_wall.as_secs_f64() / o.simulated.as_secs_f64(),
        mb(measured.peak_rss_mb),
        mb(measured.end_rss_mb)
    );
    ExitCode::SUCCESS
}

/// `sim sweep`'s progress on stderr: a bar with an ETA when stderr is a terminal; otherwise (a CI
/// log) a plain line at every tenth of the runs, so the log shows progress without a line per run.
/// Failures are printed as they come in either case.
struct Progress {
    bar: indicatif::ProgressBar,
    terminal: bool,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        use std::io::IsTerminal as _;
        let terminal = std::io::stderr().is_terminal();
        // Hidden, the bar still keeps the time and the ETA for the plain lines.
        let target = if terminal { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::hidden() };
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} runs, {elapsed} elapsed, ETA {eta}  {wide_msg}")
        {
            bar.set_style(style.progress_chars("#>-"));
        }
        Progress { bar, terminal, total }
    }

    /// One more run finished (`what` was it); `failed` runs failed so far.
    fn advance(&self, what: &str, failed: usize) {
        self.bar.inc(1);
        let failures = if failed == 0 { String::new() } else { format!(", {failed} failed") };
        if self.terminal {
            self.bar.set_message(format!("{what}{failures}"));
            return;
        }
        let done = self.bar.position();
        let step = (self.total / 10).max(1);
        if done.is_multiple_of(step) || done == self.total {
            eprintln!(
                "sweep: {done}/{} runs ({}%){failures}, {} elapsed, ETA {}",
                self.total,
                done * 100 / self.total.max(1),
                indicatif::HumanDuration(self.bar.elapsed()),
                indicatif::HumanDuration(self.bar.eta())
            );
        }
    }

    fn println(&self, text: &str) {
        if self.terminal { self.bar.println(text) } else { eprintln!("{text}") }
    }

    fn abandon(&self) {
        self.bar.abandon();
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[derive(Default)]
struct Tally {
    runs: u64,
    /// The replay command of each failed run.
    failed: Vec<String>,
    converge_ms: Vec<u64>,
    faults: BTreeMap<String, u64>,
}

fn sweep(seeds: u64, scenarios: Vec<String>) -> ExitCode {
    let scenarios = if scenarios.is_empty() {
        let mut files: Vec<String> = std::fs::read_dir("scenarios")
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                    .map(|p| p.display().to_string())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.push("swarm".into());
        files
    } else {
        scenarios
    };
    let Ok(me) = std::env::current_exe() else {
        eprintln!("Error: cannot find the sim binary to run seeds with");
        return ExitCode::FAILURE;
    };
    let jobs: Vec<(String, u64)> = scenarios.iter().flat_map(|s| (1..=seeds).map(move |seed| (s.clone(), seed))).collect();
    let total = jobs.len();
    let progress = Progress::new(total as u64);
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut running: VecDeque<(String, u64, Child)> = VecDeque::new();
    let mut pending = jobs.into_iter();
    loop {
        while running.len() < 2 {
            let Some((scenario, seed)) = pending.next() else { break };
            let child = Process::new(&me)
                .args(["run", &scenario, "--seed", &seed.to_string(), "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            match child {
                Ok(child) => running.push_back((scenario, seed, child)),
                Err(err) => {
                    progress.abandon();
                    eprintln!("Error: starting a run: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let Some((scenario, seed, child)) = running.pop_front() else { break };
        let output = child.wait_with_output();
        let report: serde_json::Value = output
            .ok()
            .and_then(|o| serde_json::from_slice(String::from_utf8_lossy(&o.stdout).lines().last()?.as_bytes()).ok())
            .unwrap_or_default();
        let tally = tallies.entry(scenario.clone()).or_default();
        tally.runs += 1;
        let passed = report["violations"].as_array().is_some_and(|v| v.is_empty());
        if !passed {
            // A run that printed no report (it crashed) is replayed the same way.
            let replay = report["replay"].as_str().map_or_else(
                || sim::failures::Replay { scenario: scenario.clone(), seed, break_invariant: None }.command(),
                str::to_string,
            );
            let first = report["violations"][0].as_str().unwrap_or("no report (the run crashed)").to_string();
            progress.println(&format!("FAILED {scenario} seed {seed}: {first}\n    replay: {replay}"));
            tally.failed.push(replay);
        }
        if let Some(ms) = report["converged_after_ms"].as_u64() {
            tally.converge_ms.push(ms);
        }
        for (kind, count) in report["faults"].as_object().into_iter().flatten() {
            *tally.faults.entry(kind.clone()).or_default() += count.as_u64().unwrap_or(0);
        }
        let failed: usize = tallies.values().map(|t| t.failed.len()).sum();
        progress.advance(&format!("{scenario} seed {seed}"), failed);
    }
    progress.finish();
    println!("{:<40} {:>6} {:>7} {:>14}  faults fired", "scenario", "runs", "failed", "converge p50");
    let mut any_failed = false;
    for (scenario, tally) in &tallies {
        let mut ms = tally.converge_ms.clone();
        ms.sort_unstable();
        let p50 = ms.get(ms.len() / 2).map(|m| format!("{:.2}s", *m as f64 / 1000.0)).unwrap_or_else(|| "-".into());
        println!("{scenario:<40} {:>6} {:>7} {p50:>14}  {:?}", tally.runs, tally.failed.len(), tally.faults);
        for replay in tally.failed.iter().take(5) {
            println!("    failed: {replay}");
        }
        any_failed |= !tally.failed.is_empty();
    }
    if any_failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// `sim orderer`: the simulator's orderer over the real Env until SIGTERM or SIGINT.
fn orderer(args: OrdererArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use peer_core::config::{HostPort, parse_duration};
    use peer_core::msp::LocalMsp;
    use peer_core::net::tls::PemFile;
    use prost::Message as _;
    use sim::orderer::{Orderer, OrdererSpec, OrdererTls, generate_world};

    tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
    let listen = HostPort::parse(&args.listen).map_err(anyhow::Error::msg).context("--listen")?;
    let batch_timeout = parse_duration(&args.batch_timeout).map_err(anyhow::Error::msg).context("--batch-timeout")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let env = peer_core::env::real::env().context("building the real environment")?;
        // Bound first: with port 0 the genesis block must name the port actually bound.
        let listener = env.network.bind(&listen).await.with_context(|| format!("--listen: binding {listen}"))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        let (genesis, signer, client) = match &args.genesis {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("--genesis: reading {}", path.display()))?;
                let genesis = proto::common::Block::decode(bytes.as_slice())
                    .map_err(|_| anyhow::anyhow!("--genesis: {} is not a block (it does not decode as common.Block)", path.display()))?;
                let (Some(msp), Some(mspid)) = (&args.msp, &args.mspid) else { anyhow::bail!("--genesis needs --msp and --mspid") };
                let signer = LocalMsp::load(msp, mspid, None, env.clock.wall_clock())
                    .with_context(|| format!("--msp {}: loading the orderer's signing identity", msp.display()))?;
                // The peers check every block against the channel's BlockValidation policy: an
                // identity outside the orderer org would cut blocks nobody accepts.
                let config =
                    peer_core::channel::ChannelConfig::from_block(&genesis).with_context(|| format!("--genesis {}", path.display()))?;
                let probe = b"sim orderer: can this identity sign blocks?".to_vec();
                let signed =
                    peer_core::channel::SignedData { signature: signer.sign(&probe), data: probe, identity: signer.identity.serialize() };
                config.evaluate("/Channel/Orderer/BlockValidation", &[signed]).map_err(|e| {
                    anyhow::anyhow!("--msp {} ({mspid}) cannot sign blocks of channel {}: {e}", msp.display(), config.channel_id)
                })?;
                (genesis, signer.clone(), signer)
            }
            None => {
                // An address that binds every interface is not one a peer can dial: name loopback.
                let endpoint = match &args.endpoint {
                    Some(endpoint) => endpoint.clone(),
                    None if bound.ip().is_unspecified() => format!("127.0.0.1:{}", bound.port()),
                    None => bound.to_string(),
                };
                // A fixed genesis timestamp: the same arguments give the same block on every start.
                let genesis_time = peer_core::testkit::epoch();
                let world = generate_world(&args.channel, &args.orgs, args.peers, &endpoint, &args.anchor_peers, genesis_time)?;
                let genesis_out = args.genesis_out.as_deref().context("--genesis-out is required")?;
                let crypto_out =
                    args.crypto_out.clone().unwrap_or_else(|| genesis_out.parent().unwrap_or(Path::new(".")).join("crypto-config"));
                for org in std::iter::once(&world.orderer_org).chain(&world.application_orgs) {
                    org.write_to(&crypto_out).with_context(|| format!("writing {} under {}", org.spec.msp_id, crypto_out.display()))?;
                }
                (world.genesis, world.signer, world.client)
            }
        };
        let mut spec = OrdererSpec::new(listen, args.data.clone(), genesis, signer, client);
        spec.tx_per_second = args.tx_per_second;
        spec.batch_timeout = batch_timeout;
        spec.max_message_count = args.max_message_count;
        spec.max_height = args.max_height;
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let read = |path: &PathBuf, what| PemFile::read(path, what).map_err(anyhow::Error::new);
            spec.tls = Some(OrdererTls {
                cert: read(cert, "TLS certificate").context("--tls-cert")?,
                key: read(key, "TLS key").context("--tls-key")?,
                client_auth_required: args.tls_client_auth,
                client_roots: args
                    .tls_client_roots
                    .iter()
                    .map(|root| read(root, "TLS client root CA"))
                    .collect::<Result<_, _>>()
                    .context("--tls-client-root")?,
            });
        }
        let running = Orderer::start_on(env, spec, Some(listener)).await?;
        if let Some(out) = &args.genesis_out {
            let genesis = running
                .channels
                .ledger(&running.channel_id)
                .and_then(|ledger| ledger.block(0).ok().flatten())
                .context("reading block 0 of the orderer's ledger")?;
            std::fs::write(out, genesis.encode_to_vec()).with_context(|| format!("writing {}", out.display()))?;
        }
        println!("listening on {}", running.listen_address);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let reached = async {
            let (Some(max), Some(ledger)) = (args.max_height, running.channels.ledger(&running.channel_id)) else {
                return std::future::pending().await;
            };
            while ledger.height() < max {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            println!("reached height {}", ledger.height());
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = reached => {}
        }
        let channel = running.channels.ledger(&running.channel_id).context("the channel's ledger is not open")?;
        running.stop().await;
        // After stop nothing appends any more: this is the chain's final height, which a test
        // waits for its peers to reach. Best effort: a caller that stopped reading stdout after
        // `listening on` (closing the pipe) must not turn a clean stop into a failed one.
        let _ = writeln!(std::io::stdout(), "stopped at height {}", channel.height());
        Ok(())
    })
}
