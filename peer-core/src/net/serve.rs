//! Serving gRPC (tonic routes) and plain HTTP over listeners from the env's Network.
//!
//! We run our own accept loop instead of `tonic::transport::Server` for two reasons: the listener
//! comes from the [`Network`](crate::env::Network) trait (sockets or the simulator), and hyper's
//! automatic `date` header would leak the wall clock into the bytes on the wire (it is switched
//! off here). Every connection task is owned by the loop's JoinSet and aborted on shutdown.
//!
//! Connections are bounded ([`ConnectionLimits`]), so idle clients cannot use up the process's
//! file descriptors:
//! - At most `max_connections` are open per server. One more is accepted and closed at once (left
//!   in the kernel's backlog, its client would hang), and the bound is logged once per episode:
//!   one WARN when it is reached, one INFO when the open count is back at 90% of it.
//! - A connection must finish its handshake within `handshake_timeout` or it is closed. HTTP/2:
//!   the client preface and its first frame (SETTINGS), what grpc-go's `ConnectionTimeout`
//!   (Fabric's `peer.connectiontimeout`) covers. HTTP/1: each request head, also between
//!   keep-alive requests (hyper's header read timeout).
//! - After its handshake, an HTTP/2 connection lives by Fabric's server keepalive: a ping after
//!   `peer.keepalive.interval` without reads, closed when it is not answered within
//!   `peer.keepalive.timeout` (hyper pings idle connections too).
//! - Failing accepts (e.g. EMFILE) are retried every 50 ms and logged once per episode.
//!
//! [`serve_grpc_counted`] also counts Fabric's `grpc_comm_conn_opened` (a connection whose HTTP/2
//! handshake finished) and `grpc_comm_conn_closed` (such a connection dropped), with no timer or
//! task of its own.
//!
//! The count of open connections is the JoinSet's length: finished tasks are reaped before each
//! accept (the select is biased), so it is exact, and no second count (a semaphore) can drift
//! from it. The handshake deadline is dropped the moment the handshake is done, so a served
//! connection carries no timer and wakes nothing (the simulator's runs are unchanged).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tonic::body::Body;

use super::grpc_metrics::ConnectionCounters;
use super::tls::{RemoteTls, remote_cert_hash};
use crate::config::KeepaliveConfig;
use crate::env::{BoxFuture, Clock, Connection, Listener, StreamConnection};

const GRPC_SERVER: &str = "comm.grpc.server";
/// Fabric logs the server side of TLS handshakes under `core.comm`.
const TLS_SERVER: &str = "core.comm";
/// Fabric's operations server logger (`common/fabhttp`).
const OPERATIONS_SERVER: &str = "fabhttp";

/// How long a failing accept waits before it is tried again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Fabric's operations server read-header timeout.
pub const OPERATIONS_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors the peer port's bound leaves to the rest of the process, beyond the other
/// servers' own bounds: ledger files (two, plus one per channel), outbound connections (gossip
/// peers, orderers), the listeners, stdio and the runtime's own (epoll, eventfd).
pub const FD_RESERVE: u64 = 256;

/// The least the open-file limit may lower the peer port's bound to: below it the peer could not
/// serve even a small network, and running out of descriptors is handled anyway (accept errors).
pub const MIN_PEER_CONNECTIONS: usize = 16;

/// How many connections one server holds, and how long a new one may take to finish its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; one more is accepted and closed at once.
    pub max_connections: usize,
    /// What sets `max_connections`, named in the WARN when it is reached: the key (or limit) an
    /// operator raises to allow more.
    pub bound_by: String,
    /// A connection whose handshake is not finished by then is closed.
    pub handshake_timeout: Duration,
}

impl ConnectionLimits {
    /// The open count at which an episode at the bound ends: 90% of it, so a server held at its
    /// bound by a flood logs a pair of lines per wave, not one per connection.
    pub fn resume_at(&self) -> usize {
        self.max_connections - self.max_connections.div_ceil(10)
    }

    /// The peer port's limits: `configured` (`peer.limits.maxConnections`), lowered when the
    /// process's open-file limit could not hold that many besides `reserved` descriptors (the
    /// other servers' bounds plus [`FD_RESERVE`]); never below [`MIN_PEER_CONNECTIONS`].
    pub fn peer_port(configured: usize, handshake_timeout: Duration, reserved: u64, open_file_limit: Option<u64>) -> ConnectionLimits {
        let fits = open_file_limit.map(|limit| usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX));
        match fits {
            Some(fits) if fits < configured => ConnectionLimits {
                max_connections: fits.max(MIN_PEER_CONNECTIONS.min(configured)),
                bound_by: format!(
                    "the open-file limit (ulimit -n {}, less {reserved} kept for the rest of the peer)",
                    open_file_limit.unwrap_or_default()
                ),
                handshake_timeout,
            },
            _ => ConnectionLimits { max_connections: configured, bound_by: "peer.limits.maxConnections".into(), handshake_timeout },
        }
    }
}

/// Something that keeps happening (a server at its bound, accepts failing), logged once when it
/// starts and once when it ends instead of once per event. Pure, so the rule is tested alone.
#[derive(Debug, Default)]
pub struct Episode {
    /// Events since the episode started; 0: no episode.
    events: u64,
}

impl Episode {
    /// Counts one event; true when it starts an episode (log it then).
    pub fn record(&mut self) -> bool {
        self.events = self.events.saturating_add(1);
        self.events == 1
    }

    /// Ends the episode: how many events it had, or `None` when there was none.
    pub fn end(&mut self) -> Option<u64> {
        (self.events > 0).then(|| std::mem::take(&mut self.events))
    }
}

/// Which server a loop runs, for its log lines.
#[derive(Clone, Copy, Debug)]
enum Server {
    Grpc,
    Operations,
}

impl Server {
    fn warn(self, message: &str) {
        match self {
            Server::Grpc => tracing::warn!(target: GRPC_SERVER, func = "Serve", "{message}"),
            Server::Operations => tracing::warn!(target: OPERATIONS_SERVER, func = "Start", "{message}"),
        }
    }

    fn info(self, message: &str) {
        match self {
            Server::Grpc => tracing::info!(target: GRPC_SERVER, func = "Serve", "{message}"),
            Server::Operations => tracing::info!(target: OPERATIONS_SERVER, func = "Start", "{message}"),
        }
    }
}

/// Accepts connections until `shutdown` turns true, serving each with `serve` in a task owned
/// here, at most `limits.max_connections` at once; on shutdown every connection task is aborted.
/// A failing accept (e.g. out of file descriptors) is retried after a short pause rather than in
/// a busy loop.
async fn accept_loop<F, Fut>(
    mut listener: Box<dyn Listener>,
    clock: Arc<dyn Clock>,
    limits: ConnectionLimits,
    server: Server,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Box<dyn Connection>) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    // `max_connections` is at least 1 (the config refuses 0); were it 0, every connection would be
    // closed at once, which is a refusal, not a crash.
    let address = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut connections = JoinSet::new();
    let mut at_bound = Episode::default();
    let mut failing = Episode::default();
    loop {
        let failed = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                if connections.len() <= limits.resume_at()
                    && let Some(refused) = at_bound.end()
                {
                    server.info(&format!(
                        "accepting connections on {address} again: {} open, below the bound of {}; {refused} were closed at once meanwhile",
                        connections.len(),
                        limits.max_connections,
                    ));
                }
                false
            }
            accepted = listener.accept() => match accepted {
                Ok((connection, _peer)) => {
                    if let Some(failures) = failing.end() {
                        server.info(&format!("accepting connections on {address} again after {failures} failed accepts"));
                    }
                    if connections.len() < limits.max_connections {
                        connections.spawn(serve(connection));
                    } else {
                        // Closed at once: its client sees the connection end rather than hang.
                        drop(connection);
                        if at_bound.record() {
                            server.warn(&format!(
                                "{} connections are open on {address}, the bound set by {}: new connections are closed at once \
                                 until {} or fewer are open; raise it to allow more",
                                connections.len(),
                                limits.bound_by,
                                limits.resume_at(),
                            ));
                        }
                    }
                    false
                }
                Err(err) => {
                    if failing.record() {
                        server.warn(&format!("accept failed on {address}: {err}; retrying every {ACCEPT_RETRY:?} (logged once until an accept succeeds)"));
                    }
                    true
                }
            },
        };
        if failed {
            clock.sleep(ACCEPT_RETRY).await;
        }
    }
    connections.shutdown().await;
}

/// Routes that answer a call to a service they do not serve as grpc-go does: UNIMPLEMENTED with
/// `unknown service <package.Service>` (tonic's own answer carries no message; a Fabric client
/// that dials the wrong port reads the service's name in the error).
pub fn answering_unknown_services(mut routes: tonic::service::Routes) -> tonic::service::Routes {
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.fallback(unknown_service);
    routes
}

async fn unknown_service(uri: http::Uri) -> Response<Body> {
    // The path is `/package.Service/Method`.
    let service = uri.path().trim_start_matches('/').split('/').next().unwrap_or_default();
    tonic::Status::unimplemented(format!("unknown service {service}")).into_http()
}

/// Serves tonic routes over HTTP/2 on `listener` until `shutdown` turns true (plaintext, no
/// connection counts: see [`serve_grpc_with`]).
pub async fn serve_grpc<S>(
    listener: Box<dyn Listener>,
    clock: Arc<dyn Clock>,
    service: S,
    keepalive: KeepaliveConfig,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let server = GrpcServer { name: "GRPCServer", keepalive, limits, counters: None, tls: None };
    serve_grpc_with(listener, clock, service, server, shutdown).await;
}

/// How a gRPC server serves its connections.
#[derive(Clone)]
pub struct GrpcServer {
    /// How the server's log lines name it (Fabric's `server=PeerServer`).
    pub name: &'static str,
    pub keepalive: KeepaliveConfig,
    pub limits: ConnectionLimits,
    /// Counts connections as Fabric's peer server does (`grpc_comm_conn_opened` once a
    /// connection's HTTP/2 handshake is done, `grpc_comm_conn_closed` when such a connection
    /// ends, however it ends).
    pub counters: Option<ConnectionCounters>,
    /// TLS: every connection completes a TLS handshake (within `limits.handshake_timeout`,
    /// together with the HTTP/2 handshake) before HTTP/2; each request then carries the
    /// remote's certificate hash as a [`RemoteTls`] extension.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves tonic routes over HTTP/2 (over TLS when `server.tls` says so) on `listener` until
/// `shutdown` turns true.
pub async fn serve_grpc_with<S>(
    listener: Box<dyn Listener>,
    clock: Arc<dyn Clock>,
    service: S,
    server: GrpcServer,
    shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let GrpcServer { name, keepalive, limits, counters, tls } = server;
    let handshake_timeout = limits.handshake_timeout;
    let timer = clock.clone();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    accept_loop(listener, clock, limits, Server::Grpc, shutdown, move |connection| {
        // tonic's `Request::remote_addr()` reads this; gossip logs name the remote with it.
        let info =
            tonic::transport::server::TcpConnectInfo { local_addr: connection.local_addr().ok(), remote_addr: connection.peer_addr().ok() };
        let remote = info.remote_addr;
        let service = service.clone();
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .auto_date_header(false)
            .keep_alive_interval(Some(keepalive.interval))
            .keep_alive_timeout(keepalive.timeout);
        let mut deadline = timer.sleep(handshake_timeout);
        let counters = counters.clone();
        let acceptor = acceptor.clone();
        let clock = timer.clone();
        async move {
            let (connection, peer_tls) = match acceptor {
                None => (connection, None),
                Some(acceptor) => match accept_tls(&acceptor, connection, &mut deadline, clock.as_ref()).await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        let remote = remote.map_or_else(|| "unknown".to_string(), |address| address.to_string());
                        tracing::error!(target: TLS_SERVER, func = "ServerHandshake", server = name, remoteaddress = %remote, "Server TLS handshake failed in {error}");
                        return;
                    }
                },
            };
            let service = tower::ServiceExt::map_request(service, move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(info.clone());
                if let Some(peer_tls) = &peer_tls {
                    request.extensions_mut().insert(peer_tls.clone());
                }
                request
            });
            let service = TowerToHyperService::new(service);
            let (connection, finished) = WatchHandshake::new(connection, counters);
            let serving = builder.serve_connection(TokioIo::new(connection), service);
            if !serve_with_deadline(serving, deadline, &finished).await {
                tracing::debug!(
                    target: GRPC_SERVER,
                    func = "handleRawConn",
                    remote = ?remote,
                    "closing a connection whose HTTP/2 handshake did not finish within {handshake_timeout:?}"
                );
            }
        }
    })
    .await;
}

/// The server side of a TLS handshake on `connection`, before `deadline`. On success: the TLS
/// stream as a connection, and what the remote presented. On failure: Fabric's `%s with error %s`
/// (how long it took, why).
async fn accept_tls(
    acceptor: &tokio_rustls::TlsAcceptor,
    connection: Box<dyn Connection>,
    deadline: &mut BoxFuture<'static, ()>,
    clock: &dyn Clock,
) -> Result<(Box<dyn Connection>, Option<RemoteTls>), String> {
    let started = clock.now();
    let (local, peer) = (connection.local_addr(), connection.peer_addr());
    let elapsed = || crate::config::format_duration(clock.now().saturating_duration_since(started));
    let stream = tokio::select! {
        biased;
        accepted = acceptor.accept(connection) => accepted.map_err(|e| format!("{} with error {e}", elapsed()))?,
        () = deadline => return Err(format!("{} with error context deadline exceeded", elapsed())),
    };
    tracing::debug!(target: TLS_SERVER, func = "ServerHandshake", "Server TLS handshake completed in {}", elapsed());
    let cert_hash = remote_cert_hash(stream.get_ref().1);
    let (Ok(local), Ok(peer)) = (local, peer) else {
        return Err(format!("{} with error the connection has no address", elapsed()));
    };
    Ok((Box::new(StreamConnection { stream, local, peer }), Some(RemoteTls { cert_hash })))
}

/// Serves HTTP/1.1 (the operations server) on `listener` until `shutdown` turns true, over TLS
/// when `tls` is given (each request then carries the client's certificate hash as a
/// [`RemoteTls`], present only when the client showed one that verified). Each request head (and
/// a TLS handshake) must arrive within `limits.handshake_timeout` (also on an idle keep-alive
/// connection), or the connection is closed.
pub async fn serve_http1<F, Fut>(
    listener: Box<dyn Listener>,
    clock: Arc<dyn Clock>,
    handler: F,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: watch::Receiver<bool>,
) where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::Full<hyper::body::Bytes>>> + Send + 'static,
{
    let header_read_timeout = limits.handshake_timeout;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let timer = clock.clone();
    accept_loop(listener, clock, limits, Server::Operations, shutdown, move |connection| {
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        let clock = timer.clone();
        async move {
            // With TLS, the handshake must finish within the header read timeout too.
            let (connection, remote_tls) = match acceptor {
                None => (connection, None),
                Some(acceptor) => {
                    let remote = connection.peer_addr().ok();
                    let mut deadline = clock.sleep(header_read_timeout);
                    match accept_tls(&acceptor, connection, &mut deadline, clock.as_ref()).await {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::debug!(target: OPERATIONS_SERVER, func = "handshake", remote = ?remote, "TLS handshake failed in {error}");
                            return;
                        }
                    }
                }
            };
            let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                if let Some(remote_tls) = &remote_tls {
                    request.extensions_mut().insert(remote_tls.clone());
                }
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(request).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).auto_date_header(false).header_read_timeout(header_read_timeout);
            let _ = builder.serve_connection(TokioIo::new(connection), service).await;
        }
    })
    .await;
}

/// Drives `serving` to its end, unless `deadline` comes before `finished` says the client's
/// handshake is done: then `serving` is dropped, which closes the connection. The deadline is
/// dropped as soon as the handshake is done, so it never fires for a served connection. Returns
/// false when the deadline closed the connection.
async fn serve_with_deadline(serving: impl Future, deadline: BoxFuture<'static, ()>, finished: &AtomicBool) -> bool {
    let mut serving = std::pin::pin!(serving);
    let mut deadline = Some(deadline);
    std::future::poll_fn(move |cx| {
        if serving.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if finished.load(Ordering::Relaxed) {
            deadline = None;
        }
        match deadline.as_mut().map(|deadline| deadline.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(false),
            _ => Poll::Pending,
        }
    })
    .await
}

/// How far a client's HTTP/2 handshake has come, from the bytes it sent: the 24-byte preface,
/// then its first frame (h2 insists it is SETTINGS), a 9-byte header whose first three bytes give
/// the payload length, then the payload. Only counts; h2 checks the bytes themselves.
#[derive(Debug, Default)]
pub struct Http2Handshake {
    /// Bytes received so far.
    seen: u64,
    /// The first frame's header, as far as it has arrived.
    frame_header: [u8; Self::FRAME_HEADER],
}

/// The first byte of a TLS handshake record (content type 22).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

impl Http2Handshake {
    const PREFACE: u64 = 24;
    const FRAME_HEADER: usize = 9;

    /// Nothing received yet.
    fn at_start(&self) -> bool {
        self.seen == 0
    }

    /// Takes the next bytes the client sent; true once the handshake is complete.
    pub fn received(&mut self, bytes: &[u8]) -> bool {
        let header_start = Self::PREFACE;
        let header_end = Self::PREFACE + Self::FRAME_HEADER as u64;
        let (from, to) = (self.seen, self.seen.saturating_add(bytes.len() as u64));
        // The part of `bytes` that falls in the frame header, if any.
        let (start, end) = (from.max(header_start), to.min(header_end));
        if start < end {
            let slice = &bytes[(start - from) as usize..(end - from) as usize];
            self.frame_header[(start - header_start) as usize..(end - header_start) as usize].copy_from_slice(slice);
        }
        self.seen = to;
        self.complete()
    }

    /// Whether the preface and the whole first frame have arrived.
    pub fn complete(&self) -> bool {
        let header_end = Self::PREFACE + Self::FRAME_HEADER as u64;
        if self.seen < header_end {
            return false;
        }
        let [a, b, c, ..] = self.frame_header;
        let payload = u64::from(u32::from_be_bytes([0, a, b, c]));
        self.seen >= header_end + payload
    }
}

/// A connection that feeds what the client sends to an [`Http2Handshake`] until it is complete,
/// then says so through the flag it was made with (read by [`serve_with_deadline`], in the same
/// task), and counts it as opened; dropped, it counts as closed if it was opened. Passes every
/// byte through unchanged.
struct WatchHandshake {
    inner: Box<dyn Connection>,
    /// `None` once the handshake is complete.
    progress: Option<Http2Handshake>,
    finished: Arc<AtomicBool>,
    counters: Option<ConnectionCounters>,
}

impl WatchHandshake {
    fn new(inner: Box<dyn Connection>, counters: Option<ConnectionCounters>) -> (WatchHandshake, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(false));
        (WatchHandshake { inner, progress: Some(Http2Handshake::default()), finished: finished.clone(), counters }, finished)
    }
}

impl Drop for WatchHandshake {
    fn drop(&mut self) {
        if self.progress.is_none()
            && let Some(counters) = &self.counters
        {
            counters.closed.inc();
        }
    }
}

impl AsyncRead for WatchHandshake {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        // A TLS record (a ClientHello) where the HTTP/2 preface (`PRI * …`) should begin: a TLS
        // client at this plaintext port. h2 refuses the bytes; this says why, naming the remote.
        if self.progress.as_ref().is_some_and(Http2Handshake::at_start) && buf.filled().get(before) == Some(&TLS_HANDSHAKE_RECORD) {
            let remote = self.inner.peer_addr().map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
            tracing::warn!(
                target: GRPC_SERVER,
                func = "handleRawConn",
                "{remote} began a TLS handshake, but this port serves plaintext gRPC (peer.tls.enabled is false): closing the connection"
            );
        }
        if let Some(progress) = self.progress.as_mut()
            && progress.received(&buf.filled()[before..])
        {
            self.progress = None;
            self.finished.store(true, Ordering::Relaxed);
            if let Some(counters) = &self.counters {
                counters.opened.inc();
            }
        }
        result
    }
}

impl AsyncWrite for WatchHandshake {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Fabric's per-service concurrency limits (spec §4.3): at most `limit` calls in flight on the
/// services whose full method names start with `prefix`; a stream holds its slot until it ends.
/// Unlike Fabric (status Unknown), a rejected call gets RESOURCE_EXHAUSTED.
#[derive(Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limits: Arc<Vec<(String, u32, Arc<Semaphore>)>>,
}

impl<S> ConcurrencyLimit<S> {
    /// `limits`: (service prefix such as `/protos.Deliver`, limit); a limit of 0 means none.
    pub fn new(inner: S, limits: &[(&str, u32)]) -> Self {
        let limits = limits
            .iter()
            .filter(|(_, limit)| *limit > 0)
            .map(|(prefix, limit)| (format!("{prefix}/"), *limit, Arc::new(Semaphore::new(*limit as usize))))
            .collect();
        ConcurrencyLimit { inner, limits: Arc::new(limits) }
    }
}

impl<S, B> tower::Service<Request<B>> for ConcurrencyLimit<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let limited = self.limits.iter().find(|(prefix, _, _)| path.starts_with(prefix.as_str()));
        let permit: Option<OwnedSemaphorePermit> = match limited {
            None => None,
            Some((prefix, limit, semaphore)) => match semaphore.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let service = prefix.trim_end_matches('/');
                    tracing::error!(target: "nodeCmd", func = "initGrpcSemaphores", "Too many requests for {service}, exceeding concurrency limit ({limit})");
                    let status = tonic::Status::resource_exhausted(format!(
                        "too many requests for {service}, exceeding concurrency limit ({limit})"
                    ));
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            },
        };
        // The clone is the ready one; keep the un-polled original for next time (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(match permit {
                None => response,
                Some(permit) => response.map(|body| Body::new(PermitBody { inner: body, _permit: permit })),
            })
        })
    }
}

/// A response body that holds a concurrency slot until the body (the stream) is finished.
struct PermitBody {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for PermitBody {
    type Data = hyper::body::Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service, ServiceExt};

    /// A response body that never ends: a stream held open by its client.
    struct Endless;

    impl http_body::Body for Endless {
        type Data = hyper::body::Bytes;
        type Error = tonic::Status;
        fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }

    fn request(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    fn grpc_status(response: &Response<Body>) -> Option<String> {
        response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn an_episode_is_logged_when_it_starts_and_counted_when_it_ends() {
        let mut episode = Episode::default();
        assert_eq!(episode.end(), None, "no episode yet");
        assert!(episode.record(), "the first event starts one");
        assert!(!episode.record());
        assert!(!episode.record());
        assert_eq!(episode.end(), Some(3));
        assert_eq!(episode.end(), None, "ended once");
        assert!(episode.record(), "the next event starts a new one");
    }

    #[test]
    fn an_episode_at_the_bound_ends_at_ninety_percent() {
        let at =
            |max_connections| ConnectionLimits { max_connections, bound_by: String::new(), handshake_timeout: Duration::ZERO }.resume_at();
        assert_eq!([at(1), at(2), at(10), at(11), at(64), at(1000), at(4096)], [0, 1, 9, 9, 57, 900, 3686]);
    }

    #[test]
    fn the_peer_port_bound_fits_the_open_file_limit() {
        let timeout = Duration::from_secs(5);
        let bound = |configured, limit| {
            let limits = ConnectionLimits::peer_port(configured, timeout, 384, limit);
            assert_eq!(limits.handshake_timeout, timeout);
            (limits.max_connections, limits.bound_by)
        };
        let key = || "peer.limits.maxConnections".to_string();
        assert_eq!(bound(4096, None), (4096, key()), "no limit known");
        assert_eq!(bound(4096, Some(1_048_576)), (4096, key()), "a high limit");
        assert_eq!(bound(4096, Some(4096 + 384)), (4096, key()), "just enough");
        let fd = |limit| format!("the open-file limit (ulimit -n {limit}, less 384 kept for the rest of the peer)");
        assert_eq!(bound(4096, Some(4095 + 384)), (4095, fd(4479)));
        assert_eq!(bound(4096, Some(1024)), (640, fd(1024)), "Debian's default soft limit");
        assert_eq!(bound(4096, Some(100)), (MIN_PEER_CONNECTIONS, fd(100)), "never below the floor");
        assert_eq!(bound(8, Some(100)), (8, fd(100)), "nor above what was configured");
    }

    /// The handshake is complete exactly when the preface and the whole first frame are in, however
    /// the bytes are split.
    #[test]
    fn an_http2_handshake_is_complete_after_the_preface_and_the_first_frame() {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend([0, 0, 12, 4, 0, 0, 0, 0, 0]);
        bytes.extend([0, 3, 0, 0, 0, 100, 0, 4, 0, 1, 0, 0]);
        assert_eq!(bytes.len(), 45);
        for chunk in [1, 2, 5, 9, 24, 33, 44, 45] {
            let mut handshake = Http2Handshake::default();
            let mut seen = 0;
            for piece in bytes.chunks(chunk) {
                seen += piece.len();
                assert_eq!(handshake.received(piece), seen == 45, "chunks of {chunk}, after {seen} bytes");
            }
        }
        // Bytes after the first frame change nothing.
        let mut handshake = Http2Handshake::default();
        assert!(handshake.received(&[bytes.as_slice(), &[0xff; 100]].concat()));
        assert!(handshake.received(&[1, 2, 3]));
        // An empty SETTINGS frame ends it right after its header.
        let mut handshake = Http2Handshake::default();
        assert!(!handshake.received(&bytes[..24]));
        assert!(!handshake.received(&[0, 0, 0, 4, 0, 0, 0, 0]));
        assert!(handshake.received(&[0]));
        assert!(!Http2Handshake::default().received(&[]));
    }

    #[tokio::test]
    async fn streams_hold_their_slot_and_the_excess_gets_resource_exhausted() {
        let inner = tower::service_fn(|_request: Request<()>| async { Ok::<_, Infallible>(Response::new(Body::new(Endless))) });
        let mut service = ConcurrencyLimit::new(inner, &[("/protos.Deliver", 2), ("/protos.Endorser", 0)]);
        let first = service.ready().await.unwrap().call(request("/protos.Deliver/Deliver")).await.unwrap();
        let second = service.ready().await.unwrap().call(request("/protos.Deliver/DeliverFiltered")).await.unwrap();
        assert_eq!(grpc_status(&first), None);
        assert_eq!(grpc_status(&second), None);
        let third = service.ready().await.unwrap().call(request("/protos.Deliver/Deliver")).await.unwrap();
        assert_eq!(grpc_status(&third).as_deref(), Some("8"), "RESOURCE_EXHAUSTED");
        let status = tonic::Status::from_header_map(third.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.message(), "too many requests for /protos.Deliver, exceeding concurrency limit (2)");
        // Other services are not limited (a limit of 0 means none).
        for _ in 0..5 {
            let other = service.ready().await.unwrap().call(request("/protos.Endorser/ProcessProposal")).await.unwrap();
            assert_eq!(grpc_status(&other), None);
        }
        // A stream ending frees its slot.
        drop(first);
        let fourth = service.ready().await.unwrap().call(request("/protos.Deliver/Deliver")).await.unwrap();
        assert_eq!(grpc_status(&fourth), None);
        drop(second);
    }
}
