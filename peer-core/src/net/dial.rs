//! Dialing a gRPC server: the one way every client in peer-core opens a connection (gossip's
//! comm, the deliver client, the `channel` commands, the simulator's orderer through the deliver
//! client). The connection comes from the env's [`crate::env::Network`], so a dial is a TCP
//! connect on the real env and a simulated one under the simulator, with the same timeouts.
//!
//! The whole dial (network connection and HTTP/2 handshake) is bounded by
//! [`ClientOptions::timeout`] on the env's clock. Client keepalive pings are HTTP/2 PINGs sent
//! while idle too, as grpc-go's `keepalive.ClientParameters{PermitWithoutStream: true}`.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::HostPort;
use crate::env::Env;
use crate::errors::error_chain;

/// How a client connection is opened and kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Opening the network connection and the HTTP/2 handshake, together.
    pub timeout: Duration,
    /// HTTP/2 keepalive pings; `None` sends none.
    pub keepalive: Option<ClientKeepalive>,
}

/// Client-side keepalive (Fabric's `peer.keepalive.client.*` and `deliveryClient.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientKeepalive {
    /// Time between pings.
    pub interval: Duration,
    /// How long to wait for a ping's answer before the connection is closed.
    pub timeout: Duration,
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// The connection or the handshake failed; the text is the whole cause chain.
    #[error("{0}")]
    Failed(String),
    /// Nothing failed, but the dial did not finish within the timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Dials `address` over the env's network and performs the HTTP/2 handshake, within
/// `options.timeout`.
pub async fn dial(env: &Env, address: &HostPort, options: &ClientOptions) -> Result<Channel, DialError> {
    let mut endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| DialError::Failed(e.to_string()))?;
    if let Some(keepalive) = options.keepalive {
        endpoint = endpoint.http2_keep_alive_interval(keepalive.interval).keep_alive_timeout(keepalive.timeout).keep_alive_while_idle(true);
    }
    let network = env.network.clone();
    let target = address.clone();
    let timeout = options.timeout;
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = network.connect(&target, timeout);
        async move { connect.await.map(hyper_util::rt::TokioIo::new) }
    });
    tokio::select! {
        biased;
        channel = endpoint.connect_with_connector(connector) => channel.map_err(|e| DialError::Failed(error_chain(&e))),
        () = env.clock.sleep(timeout) => Err(DialError::TimedOut(timeout)),
    }
}
