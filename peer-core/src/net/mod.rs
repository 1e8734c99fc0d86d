//! The transport: serving gRPC and HTTP/1 on an [`crate::env::Listener`] with the peer's
//! connection bounds and keepalive ([`serve`]), dialing gRPC servers ([`dial`]), and the gRPC
//! metrics around the peer port. Both ends reach the OS only through the [`crate::env::Env`].

pub mod dial;
pub mod grpc_metrics;
pub mod serve;
pub mod tls;
