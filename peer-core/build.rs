//! Records what `peer-core version` prints: the commit and the compiler. Without git (a source
//! tarball) the commit reads "development build", as Fabric's unreleased builds do.

use std::process::Command;

// Build scripts run at compile time, never in the simulation: reading env vars is fine here.
#[allow(clippy::disallowed_methods)]
fn main() {
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=PEER_CORE_COMMIT");
    let commit = std::env::var("PEER_CORE_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let out = Command::new("git").args(["rev-parse", "--short", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|c| !c.is_empty())
    });
    println!("cargo:rustc-env=PEER_CORE_COMMIT={}", commit.as_deref().unwrap_or("development build"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PEER_CORE_RUSTC={version}");
}
