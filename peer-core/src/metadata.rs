//! Build metadata, printed by `peer-core version` and as the first line of `node start`.

/// peer-core's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit of the build, or "development build".
pub const COMMIT_SHA: &str = env!("PEER_CORE_COMMIT");
/// The compiler that built this binary (`rustc 1.95.0 (…)`).
pub const RUSTC_VERSION: &str = env!("PEER_CORE_RUSTC");
/// Kept for tools that parse Fabric's `peer version` output; peer-core runs no chaincode images.
pub const BASE_DOCKER_LABEL: &str = "org.hyperledger.fabric";
pub const DOCKER_NAMESPACE: &str = "hyperledger";

/// The version block, laid out as Fabric's `peer version` prints it (the Go version line becomes
/// the Rust version), ending with an empty line.
pub fn version_block(program: &str) -> String {
    format!(
        "{program}:\n Version: {VERSION}\n Commit SHA: {COMMIT_SHA}\n Rust version: {RUSTC_VERSION}\n OS/Arch: {}/{}\n Chaincode:\n  Base Docker Label: {BASE_DOCKER_LABEL}\n  Docker Namespace: {DOCKER_NAMESPACE}\n\n",
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}
