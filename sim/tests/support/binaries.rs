//! The `peer-core` binary for the `sim` tests that run it as a process. A test of one package
//! cannot name another package's binary through `CARGO_BIN_EXE_*`, so it asks cargo to build it
//! (a no-op when it is up to date) into this test's own target directory and profile: then
//! `cargo test -p sim` works on a fresh clone and never runs a stale peer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the `sim` binary of this test build lives (`<target>/<profile>/`).
fn profile_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sim")).parent().expect("the sim binary has a directory")
}

/// Builds `peer-core` (once per test process) and returns its path.
pub fn peer_core() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = profile_dir();
        let target = dir.parent().expect("the profile directory is inside the target directory");
        // The cargo that built this test (tests may read their environment; the rule is for the peer).
        #[allow(clippy::disallowed_methods)]
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet", "-p", "peer-core", "--bin", "peer-core", "--target-dir"]).arg(target);
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                command.arg("--release");
            }
            Some(profile) => {
                command.args(["--profile", profile]);
            }
            None => panic!("cannot tell the build profile from {}", dir.display()),
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("sim is a workspace member");
        let output = command.current_dir(workspace).output().expect("running cargo build -p peer-core");
        assert!(output.status.success(), "cargo build -p peer-core failed:\n{}", String::from_utf8_lossy(&output.stderr));
        let path = dir.join("peer-core");
        assert!(path.is_file(), "cargo built peer-core, but {} is not there", path.display());
        path
    })
}
