//! Running the binary and looking at what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().expect("the binary was killed by a signal (a panic aborts?)"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts no Rust panic message reached stderr.
    pub fn no_panic(&self) -> &Self {
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        self
    }
}

/// Runs `peer-core <args>` in `cwd` with only the given env vars (plus PATH and HOME).
pub fn peer_core(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_peer-core"));
    command.args(args).current_dir(cwd).env_clear();
    // The test harness passes PATH and HOME through; the peer under test gets nothing else.
    #[allow(clippy::disallowed_methods)]
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let run = Run::from(command.output().expect("running peer-core"));
    run.no_panic();
    run
}
