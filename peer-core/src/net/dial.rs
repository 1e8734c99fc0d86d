//! Dialing a gRPC server: the one way every client in peer-core opens a connection (gossip's
//! comm, the deliver client, the `channel` commands, the simulator's orderer through the deliver
//! client). The connection comes from the env's [`crate::env::Network`], so a dial is a TCP
//! connect on the real env and a simulated one under the simulator, with the same timeouts.
//!
//! With [`ClientOptions::tls`] the connection is wrapped in TLS (rustls; the server name is the
//! dialed host unless overridden) before HTTP/2, and the server's certificate hash is returned.
//!
//! The whole dial (network connection, TLS and HTTP/2 handshakes) is bounded by
//! [`ClientOptions::timeout`] on the env's clock. Client keepalive pings are HTTP/2 PINGs sent
//! while idle too, as grpc-go's `keepalive.ClientParameters{PermitWithoutStream: true}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use super::tls::remote_cert_hash;
use crate::config::HostPort;
use crate::env::{Connection, Env, StreamConnection};
use crate::errors::error_chain;

/// How a client connection is opened and kept.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Opening the network connection, the TLS handshake and the HTTP/2 handshake, together.
    pub timeout: Duration,
    /// HTTP/2 keepalive pings; `None` sends none.
    pub keepalive: Option<ClientKeepalive>,
    /// TLS; `None`: plaintext.
    pub tls: Option<ClientTls>,
}

/// How a client speaks TLS.
#[derive(Clone, Debug)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must hold; `None`: the dialed host (Fabric's
    /// `serverhostoverride` sets another).
    pub server_name: Option<String>,
    /// Log a failed handshake at ERROR (`comm.tls`), as the clients built on Fabric's `comm`
    /// package do (the deliver client, the CLI). Gossip's dials do not: Fabric reports their
    /// failures only as a failed connection.
    pub log_failures: bool,
}

impl ClientTls {
    /// `config` for the dialed host, failures logged.
    pub fn new(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls { config, server_name: None, log_failures: true }
    }
}

/// A dialed connection.
#[derive(Clone, Debug)]
pub struct Dialed {
    pub channel: Channel,
    /// With TLS: SHA-256 of the certificate the server presented (gossip binds its handshake to
    /// it). `None` without TLS.
    pub server_cert_hash: Option<[u8; 32]>,
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
    /// The TLS handshake failed (the server is no TLS server, or one of the two refused the
    /// other's certificate): trying again will not help.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// Nothing failed, but the dial did not finish within the timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Dials `address` over the env's network and performs the TLS (when `options.tls`) and HTTP/2
/// handshakes, within `options.timeout`.
pub async fn dial(env: &Env, address: &HostPort, options: &ClientOptions) -> Result<Dialed, DialError> {
    let mut endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| DialError::Failed(e.to_string()))?;
    if let Some(keepalive) = options.keepalive {
        endpoint = endpoint.http2_keep_alive_interval(keepalive.interval).keep_alive_timeout(keepalive.timeout).keep_alive_while_idle(true);
    }
    let network = env.network.clone();
    let clock = env.clock.clone();
    let target = address.clone();
    let timeout = options.timeout;
    let tls = options.tls.clone().map(|tls| (tokio_rustls::TlsConnector::from(tls.config), tls.server_name, tls.log_failures));
    let seen: Arc<Mutex<Option<[u8; 32]>>> = Arc::default();
    let server_cert = seen.clone();
    let handshake_failure: Arc<Mutex<Option<String>>> = Arc::default();
    let failure = handshake_failure.clone();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let connect = network.connect(&target, timeout);
        let (tls, target, clock, server_cert, failure) = (tls.clone(), target.clone(), clock.clone(), server_cert.clone(), failure.clone());
        async move {
            let connection = connect.await?;
            let Some((tls, server_name, log_failures)) = tls else { return Ok(TokioIo::new(connection)) };
            let started = clock.now();
            let host = server_name.unwrap_or_else(|| target.host.clone());
            let name = ServerName::try_from(host.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host} is not a TLS server name: {e}")))?;
            let (local, peer) = (connection.local_addr()?, connection.peer_addr()?);
            match tls.connect(name, connection).await {
                Ok(stream) => {
                    *server_cert.lock().unwrap_or_else(|p| p.into_inner()) = remote_cert_hash(stream.get_ref().1);
                    let stream: Box<dyn Connection> = Box::new(StreamConnection { stream, local, peer });
                    Ok(TokioIo::new(stream))
                }
                Err(err) => {
                    if log_failures {
                        let elapsed = crate::config::format_duration(clock.now().saturating_duration_since(started));
                        tracing::error!(target: "comm.tls", func = "ClientHandshake", remote_address = %target, "Client TLS handshake failed after {elapsed} with error: {err}");
                    }
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err.to_string());
                    Err(err)
                }
            }
        }
    });
    let channel = tokio::select! {
        biased;
        channel = endpoint.connect_with_connector(connector) => channel.map_err(|e| {
            match handshake_failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(failure) => DialError::Handshake(failure),
                None => DialError::Failed(error_chain(&e)),
            }
        })?,
        () = env.clock.sleep(timeout) => return Err(DialError::TimedOut(timeout)),
    };
    let server_cert_hash = *seen.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Dialed { channel, server_cert_hash })
}

/// The answer of a server-streaming (or bidirectional) call as a Go client sees it: the call is
/// started without waiting for the response headers, which a grpc-go server sends only with its
/// first message (a Deliver for a block not cut yet is answered when it is). [`CallStream::message`]
/// waits for the headers, then reads the messages; nothing here bounds the wait (keepalive ends a
/// dead connection, a status ends the call).
pub enum CallStream<T> {
    Opening(PendingCall<T>),
    Open(Box<tonic::Streaming<T>>),
}

/// A call on its way: it completes with the response headers.
pub type PendingCall<T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>> + Send>>;

impl<T> CallStream<T> {
    /// `call` (e.g. `async move { client.deliver(requests).await }`), not started until read.
    pub fn new(
        call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>> + Send + 'static,
    ) -> Self {
        CallStream::Opening(Box::pin(call))
    }

    /// The next message, after the headers if they have not come yet.
    pub async fn message(&mut self) -> Result<Option<T>, tonic::Status> {
        if let CallStream::Opening(opening) = self {
            *self = CallStream::Open(Box::new(opening.await?.into_inner()));
        }
        match self {
            CallStream::Open(stream) => stream.message().await,
            CallStream::Opening(_) => Ok(None),
        }
    }
}
