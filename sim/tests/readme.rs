//! README.md's examples, run as printed: every ```sh block of the README, in order, in one bash
//! session started in a scratch copy of the clone's root (its `sampleconfig/` copied, `scenarios/`
//! linked), with the binaries this test build made standing in for the release ones
//! (`target/release` links to them, and `cargo build`/`cargo run -p X -- …` in a block runs the
//! built `X`: the commands and their arguments are what is tested, not cargo).
//!
//! A comment line right before a block says how to treat it:
//! - `<!-- readme-test: skip: WHY -->`: not run (the test suite itself, benchmarks, fuzzing);
//! - `<!-- readme-test: until-started "TEXT" -->`: a foreground server; run alone until its stderr
//!   shows TEXT, then Ctrl-C (SIGINT) must stop it with exit code 0;
//! - `<!-- readme-test: check network -->`: before it runs, the README's network must be what the
//!   README says it is: every peer at the orderer's final height (printed by the stopped orderer),
//!   and every peer seeing the two others alive, across orgs.
//!
//! Any command that fails stops the session (`set -e`) and fails the test with the block's line.
//! Outside the simulation: real processes, real time, fixed ports (7050, 7051, 8051, 9051, 9443-9445,
//! as the README prints them); waits poll with deadlines and assert nothing about durations.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

#[path = "support/binaries.rs"]
mod binaries;

/// The longest any single wait may take (normally seconds).
const DEADLINE: Duration = Duration::from_secs(120);

// Real time: this test drives real processes, outside any simulation.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[derive(Debug, PartialEq)]
enum Kind {
    Run,
    Skip(String),
    UntilStarted(String),
    CheckNetwork,
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    kind: Kind,
    text: String,
}

/// The README's ```sh blocks with what their marker comments say.
fn blocks(readme: &str) -> Vec<Block> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let marker = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).and_then(|l| {
            l.trim().strip_prefix("<!-- readme-test:").and_then(|rest| rest.strip_suffix("-->")).map(|m| m.trim().to_string())
        });
        let kind = match marker.as_deref() {
            None => Kind::Run,
            Some("check network") => Kind::CheckNetwork,
            Some(m) if m.starts_with("skip:") => {
                let why = m["skip:".len()..].trim();
                assert!(!why.is_empty(), "README.md:{}: a skipped block must say why", i + 1);
                Kind::Skip(why.to_string())
            }
            Some(m) if m.starts_with("until-started ") => {
                Kind::UntilStarted(m["until-started ".len()..].trim().trim_matches('"').to_string())
            }
            Some(m) => panic!("README.md:{}: unknown readme-test marker {m:?}", i + 1),
        };
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or_else(|| panic!("README.md:{}: unterminated block", i + 1));
        blocks.push(Block { line: i + 1, kind, text: lines[i + 1..end].join("\n") });
        i = end + 1;
    }
    blocks
}

/// What every bash the test starts runs first: strict mode, and `cargo` answered from the built
/// binaries (in `bin`).
fn prelude(bin: &Path) -> String {
    format!(
        r#"set -euo pipefail
BUILT={bin}
cargo() {{
    case "$1" in
        build) return 0 ;;
        run)
            shift
            local package=
            while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
                if [ "$1" = "-p" ]; then package=$2; shift; fi
                shift
            done
            [ "$#" -gt 0 ] && shift
            "$BUILT/$package" "$@" ;;
        *) echo "README test: cargo $* is not something this test runs" >&2; return 1 ;;
    esac
}}
"#,
        bin = bin.display()
    )
}

/// The scratch copy of the clone's root the blocks run in.
fn workdir(root: &Path, bin: &Path) {
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp").arg("-R").arg(from).arg(to).status().unwrap();
        assert!(status.success(), "copying {}", from.display());
    };
    copy(&repo_root().join("sampleconfig"), &root.join("sampleconfig"));
    // A peer the developer ran on the sample config leaves its data here; the README starts fresh.
    let _ = std::fs::remove_dir_all(root.join("sampleconfig/production"));
    std::os::unix::fs::symlink(repo_root().join("scenarios"), root.join("scenarios")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::os::unix::fs::symlink(bin, root.join("target/release")).unwrap();
}

/// A bash (and everything it starts) in its own process group, killed as a group on drop.
struct Shell {
    child: Child,
    log: PathBuf,
}

impl Shell {
    fn spawn(root: &Path, log: &Path, stdin: Stdio) -> Command {
        use std::os::unix::process::CommandExt as _;
        let out = std::fs::File::create(log).unwrap();
        let mut command = Command::new("bash");
        command
            .current_dir(root)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", root)
            .stdin(stdin)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        command
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args([&format!("-{signal}"), "--", &group]).stderr(Stdio::null()).status();
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 200 ms until it holds; panics naming `what` after `DEADLINE`.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` on 127.0.0.1:port: the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn height(operations_port: u16) -> Option<u64> {
    let metrics = http_get(operations_port, "/metrics")?;
    metrics.lines().find_map(|l| l.strip_prefix("ledger_blockchain_height{channel=\"mychannel\"} ")).and_then(|v| v.trim().parse().ok())
}

/// The README's network: (peer name, org, operations port).
const NETWORK: [(&str, &str, u16); 3] =
    [("peer0.org1.example.com", "Org1MSP", 9443), ("peer1.org1.example.com", "Org1MSP", 9444), ("peer0.org2.example.com", "Org2MSP", 9445)];

/// Every peer at the stopped orderer's height; every peer sees the two others alive.
fn check_network(root: &Path, shell: &Shell) {
    let out = std::fs::read_to_string(root.join("net/orderer.out")).unwrap_or_default();
    let final_height: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("stopped at height "))
        .and_then(|h| h.trim().parse().ok())
        .unwrap_or_else(|| panic!("net/orderer.out has no `stopped at height N`:\n{out}\nsession:\n{}", shell.tail()));
    assert!(final_height > 1, "the orderer cut no block");
    for (name, _, port) in NETWORK {
        wait_until(&format!("{name} is at the orderer's height {final_height} (now {:?})", height(port)), || {
            height(port) == Some(final_height)
        });
    }
    for (name, org, port) in NETWORK {
        wait_until(&format!("{name} sees the two other peers alive"), || {
            let Some(body) = http_get(port, "/membership") else { return false };
            let view: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(view["self"]["org"], org);
            let alive: Vec<(String, String)> = view["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["alive"] == true)
                .map(|m| (m["org"].as_str().unwrap().to_string(), m["endpoint"].as_str().unwrap().to_string()))
                .collect();
            alive.len() == 2 && alive.iter().any(|(o, _)| o != org)
        });
    }
}

/// A foreground server block: it starts (its stderr shows `text`) and Ctrl-C stops it cleanly.
fn run_until_started(root: &Path, bin: &Path, block: &Block, text: &str) {
    let log = root.join(format!("block-{}.log", block.line));
    let mut command = Shell::spawn(root, &log, Stdio::null());
    command.arg("-c").arg(format!("{}{}", prelude(bin), block.text));
    let mut shell = Shell { child: command.spawn().unwrap(), log };
    wait_until(&format!("README.md:{}: the block's output shows {text:?}", block.line), || {
        if let Some(status) = shell.child.try_wait().unwrap() {
            panic!("README.md:{}: the block exited ({status}) before {text:?}:\n{}", block.line, shell.tail());
        }
        std::fs::read_to_string(&shell.log).is_ok_and(|t| t.contains(text))
    });
    shell.signal("INT");
    let mut status = None;
    wait_until(&format!("README.md:{}: Ctrl-C stops it", block.line), || {
        status = shell.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "README.md:{}: Ctrl-C must stop it with exit code 0:\n{}", block.line, shell.tail());
}

#[test]
fn every_command_block_of_the_readme_runs_as_printed() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let blocks = blocks(&readme);
    assert!(blocks.iter().any(|b| b.kind == Kind::CheckNetwork), "the README's network is checked");
    binaries::peer_core();
    let bin = Path::new(env!("CARGO_BIN_EXE_sim")).parent().unwrap().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("clone");
    std::fs::create_dir(&root).unwrap();
    workdir(&root, &bin);

    let log = root.join("session.log");
    let mut command = Shell::spawn(&root, &log, Stdio::piped());
    let mut shell = Shell { child: command.spawn().unwrap(), log };
    let mut stdin = shell.child.stdin.take().unwrap();
    stdin.write_all(prelude(&bin).as_bytes()).unwrap();
    let (mut ran, mut skipped) = (0, Vec::new());
    for (index, block) in blocks.iter().enumerate() {
        match &block.kind {
            Kind::Skip(why) => {
                skipped.push(format!("README.md:{}: {why}", block.line));
                continue;
            }
            Kind::UntilStarted(text) => {
                run_until_started(&root, &bin, block, text);
                ran += 1;
                continue;
            }
            Kind::CheckNetwork => check_network(&root, &shell),
            Kind::Run => {}
        }
        let done = format!("@@ block {index} done");
        writeln!(stdin, "{}\necho '{done}'", block.text).unwrap();
        stdin.flush().unwrap();
        wait_until(&format!("README.md:{}: the block finishes", block.line), || {
            if let Some(status) = shell.child.try_wait().unwrap() {
                panic!(
                    "README.md:{}: a command of this block failed ({status}):\n{}\n--- session output:\n{}",
                    block.line,
                    block.text,
                    shell.tail()
                );
            }
            std::fs::read_to_string(&shell.log).is_ok_and(|t| t.lines().any(|l| l == done))
        });
        ran += 1;
    }
    drop(stdin);
    let output = std::fs::read_to_string(&shell.log).unwrap();
    // What the blocks say they show.
    assert!(output.contains("Wrote the genesis block of channel mychannel to net/mychannel.block"), "{output}");
    assert_eq!(output.matches("Successfully submitted proposal to join channel").count(), 3, "{output}");
    assert!(output.contains("trace: "), "sim run prints the trace hash:\n{output}");
    let generated = std::fs::read_to_string(root.join("net/generated.out")).unwrap();
    assert!(generated.starts_with("listening on 127.0.0.1:") && generated.contains("stopped at height "), "{generated}");
    assert!(root.join("net/crypto-config/ordererOrganizations/example.com/orderers/orderer.example.com/msp").is_dir());
    eprintln!("ran {ran} blocks; skipped:\n{}", skipped.join("\n"));
    assert!(ran >= 10, "ran only {ran} blocks");
}
