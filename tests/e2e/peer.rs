//! A running peer process: `peer-core node start` on 127.0.0.1 with free ports (the test kit's
//! [`Ports`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use peer_core::testkit::Ports;

/// A peer process and the stderr lines it has printed so far.
pub struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub ports: Ports,
}

/// Env vars that point the sample config at `ports` and `data`.
pub fn sample_env(ports: Ports, data: &Path) -> Vec<(String, String)> {
    let sample = crate::support::repo_root().join("sampleconfig");
    vec![
        ("FABRIC_CFG_PATH".into(), sample.display().to_string()),
        ("CORE_PEER_LISTENADDRESS".into(), format!("127.0.0.1:{}", ports.peer)),
        ("CORE_PEER_ADDRESS".into(), format!("127.0.0.1:{}", ports.peer)),
        ("CORE_PEER_CHAINCODELISTENADDRESS".into(), format!("127.0.0.1:{}", ports.chaincode)),
        ("CORE_OPERATIONS_LISTENADDRESS".into(), format!("127.0.0.1:{}", ports.operations)),
        ("CORE_PEER_FILESYSTEMPATH".into(), data.display().to_string()),
    ]
}

impl Peer {
    /// Spawns `peer-core node start` with a cleared environment plus `env`.
    pub fn spawn(cwd: &Path, env: &[(String, String)], ports: Ports) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_peer-core"));
        command.args(["node", "start"]).current_dir(cwd).env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawning peer-core");
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        // A reader thread owned by this test process (not by the peer): it ends at EOF.
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send(strip_colors(&line)).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines, seen: Vec::new(), ports }
    }

    /// The peer's process ID (for /proc/<pid>/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `needle` (up to `limit`), returning it.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(limit) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {limit:?}; stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Reads one more line if one comes within `limit` (a bounded wait on the peer, not a sleep).
    pub fn next_line(&mut self, limit: Duration) {
        if let Ok(line) = self.lines.recv_timeout(limit) {
            self.seen.push(line);
        }
    }

    /// Sends a signal and waits for the exit code (up to `limit`).
    pub fn signal_and_wait(&mut self, signal: &str, limit: Duration) -> (i32, Duration) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        self.wait_exit(limit)
    }

    /// Waits for the process to exit, draining stderr; returns the exit code and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
        let started = now();
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), elapsed(started));
            }
            if elapsed(started) > limit {
                let _ = self.child.kill();
                panic!("the peer did not exit within {limit:?}; stderr:\n{}", self.seen.join("\n"));
            }
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(20)) {
                self.seen.push(line);
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// Measuring how long a real process took (to exit, to answer) needs the real clock; this is test
// code. Shared by the e2e tests.
#[allow(clippy::disallowed_methods, clippy::disallowed_types)]
pub(crate) fn now() -> std::time::Instant {
    std::time::Instant::now()
}

#[allow(clippy::disallowed_types)]
pub(crate) fn elapsed(started: std::time::Instant) -> Duration {
    started.elapsed()
}

/// A minimal HTTP/1.1 request; returns (status code, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A temp dir for one peer's data.
pub fn data_dir(tmp: &Path) -> PathBuf {
    tmp.join("data")
}

/// The line without ANSI colour sequences (`ESC [ … m`), which Fabric's default format emits.
pub fn strip_colors(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
