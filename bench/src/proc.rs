//! A child process under measurement: its stderr lines with the moment each was read, its
//! memory and CPU from /proc, and SIGTERM with the time to exit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A spawned process; killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    spawned: Instant,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Every stderr line read so far, with when it was read.
    pub seen: Vec<(Instant, String)>,
    exited: bool,
}

impl Proc {
    /// Spawns `command` with stdin closed, stdout to `stdout` and stderr read line by line by a
    /// thread of this process. The clock starts just before the spawn.
    pub fn spawn(name: &str, mut command: Command, stdout: Stdio) -> Result<Proc> {
        command.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = command.spawn().with_context(|| format!("spawning {name} ({command:?})"))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if send.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { name: name.to_string(), child, spawned, lines, seen: Vec::new(), exited: false })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// Moves whatever lines have arrived into `seen`, waiting up to `wait` for the first.
    pub fn pump(&mut self, wait: Duration) {
        if let Ok(line) = self.lines.recv_timeout(wait) {
            self.seen.push(line);
        }
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The moment the first line containing `needle` was read, waiting up to `limit` for it; fails
    /// with the process's output if it does not come or the process exits first.
    pub fn wait_line(&mut self, needle: &str, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((at, _)) = self.seen.iter().find(|(_, line)| line.contains(needle)) {
                return Ok(*at);
            }
            if Instant::now() >= deadline {
                bail!("{}: no line with {needle:?} within {limit:?}; stderr:\n{}", self.name, self.tail(30));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.pump(Duration::from_millis(100));
                if self.seen.iter().any(|(_, line)| line.contains(needle)) {
                    continue;
                }
                self.exited = true;
                bail!("{} exited ({status}) before printing {needle:?}; stderr:\n{}", self.name, self.tail(30));
            }
            self.pump(Duration::from_millis(20));
        }
    }

    /// How many lines seen so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.seen.iter().filter(|(_, line)| line.contains(needle)).count()
    }

    /// The last `n` lines of stderr.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.seen.iter().map(|(_, l)| l.as_str()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Peak resident set size so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).context("reading /proc/<pid>/status")?;
        let kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .context("no VmHWM in /proc/<pid>/status")?;
        Ok(kb / 1024.0)
    }

    /// User plus system CPU time used so far (utime + stime of /proc/<pid>/stat), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Sends SIGTERM and waits up to `limit` for the exit; the time from the signal to the exit.
    pub fn terminate(&mut self, limit: Duration) -> Result<Duration> {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).context("pid 0")?;
        let sent = Instant::now();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).context("sending SIGTERM")?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let took = sent.elapsed();
                self.exited = true;
                // Killed by SIGTERM's default action (the floor) or exited 0 (a clean stop).
                if status.code().is_some_and(|code| code != 0) {
                    self.pump(Duration::from_millis(100));
                    bail!("{} exited with {status} after SIGTERM; stderr:\n{}", self.name, self.tail(30));
                }
                return Ok(took);
            }
            if sent.elapsed() > limit {
                bail!("{} did not exit within {limit:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits for the process to exit on its own (up to `limit`): its exit code and the time since spawn.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<(i32, Duration)> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                let took = self.spawned.elapsed();
                self.exited = true;
                return Ok((status.code().unwrap_or(-1), took));
            }
            if self.spawned.elapsed() > limit {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("malformed /proc/<pid>/stat");
    // utime is field 14, stime 15; `rest` starts at field 3.
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks() as f64)
}

/// The kernel's clock ticks per second for /proc times (USER_HZ).
fn clock_ticks() -> u64 {
    use std::sync::OnceLock;
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Runs `run` again (up to three times in all) when it failed because a port it was given was
/// taken in the moment between choosing it and the child binding it.
pub fn retry_taken_port<T>(mut run: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut attempt = 1;
    loop {
        match run() {
            Err(err) if attempt < 3 && format!("{err:#}").contains("Address already in use") => {
                eprintln!("bench: a port was taken meanwhile; again with new ports");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A command with a cleared environment plus PATH and HOME, started in `cwd`.
pub fn clean_command(program: &Path, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(cwd).env_clear();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// A plain HTTP/1.1 GET on 127.0.0.1:`port`; the body of a 200 answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// The first sample of `metric` in a Prometheus text exposition.
pub fn metric(text: &str, metric: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == metric || name.starts_with(&format!("{metric}{{"))).then(|| value.parse().ok())?
    })
}

/// A fresh directory under `root`.
pub fn fresh_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_a_metric_with_or_without_labels_and_skips_comments() {
        let text = "# HELP ledger_blockchain_height Height\n# TYPE ledger_blockchain_height gauge\nledger_blockchain_height{channel=\"mychannel\"} 42\nledger_blockchain_height_other 7\nup 1\n";
        assert_eq!(metric(text, "ledger_blockchain_height"), Some(42.0));
        assert_eq!(metric(text, "up"), Some(1.0));
        assert_eq!(metric(text, "missing"), None);
    }
}
