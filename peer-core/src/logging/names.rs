//! Fabric logger names for events from libraries.
//!
//! peer-core's own events name their Fabric logger as the `tracing` target (`gossip.comm`,
//! `nodeCmd`). Libraries log under their module path (`h2::codec::framed_read`,
//! `tonic::transport::server`), which `FABRIC_LOGGING_SPEC` cannot address (`:` separates its
//! segments) and which reads nothing like Fabric's `[grpc]`. [`logger_name`] maps them: the gRPC
//! stack (HTTP/2, hyper, tonic, tower, TLS) logs as Fabric's `grpc` logger (Fabric routes grpc-go's
//! logs there, `common/flogging/global.go`), and any other module path becomes a dotted name
//! (`tokio::runtime` → `tokio.runtime`), so `FABRIC_LOGGING_SPEC=grpc=debug` or
//! `tokio=debug` select them as Fabric's names do. This file knows no levels and no spec.

use std::borrow::Cow;

/// Fabric's logger for the gRPC library (grpc-go there; the crates below here).
pub const GRPC: &str = "grpc";

/// Crates whose events are the gRPC stack's: transport, HTTP/2, the service layers and TLS.
const GRPC_CRATES: &[&str] = &[
    "axum",
    "h2",
    "http_body",
    "http_body_util",
    "hyper",
    "hyper_util",
    "rustls",
    "tokio_rustls",
    "tonic",
    "tonic_health",
    "tonic_prost",
    "tower",
    "tower_http",
];

/// The Fabric logger name an event with `target` is filtered and printed under. Targets without
/// `::` (peer-core's Fabric names) are returned as they are.
pub fn logger_name(target: &str) -> Cow<'_, str> {
    if !target.contains("::") && !GRPC_CRATES.contains(&target) {
        return Cow::Borrowed(target);
    }
    let crate_name = target.split("::").next().unwrap_or(target);
    if GRPC_CRATES.contains(&crate_name) {
        return Cow::Borrowed(GRPC);
    }
    Cow::Owned(target.split("::").filter(|segment| !segment.is_empty()).collect::<Vec<_>>().join("."))
}

#[cfg(test)]
mod tests {
    use super::logger_name;

    #[test]
    fn libraries_get_fabric_style_names() {
        for target in [
            "h2::codec::framed_read",
            "h2",
            "hyper::proto::h1",
            "hyper_util::client::legacy",
            "tonic::transport::server",
            "tower::buffer::worker",
            "rustls::conn",
        ] {
            assert_eq!(logger_name(target), "grpc", "{target}");
        }
        assert_eq!(logger_name("tokio::runtime::task"), "tokio.runtime.task");
        assert_eq!(logger_name("peer_core::net::serve"), "peer_core.net.serve");
        // Fabric names stay as they are, dots and all.
        for target in ["gossip.comm", "nodeCmd", "comm.grpc.server", "grpc", "h2c"] {
            assert_eq!(logger_name(target), target);
        }
    }
}
