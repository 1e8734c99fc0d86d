//! The accept loops of `net::serve` over the in-memory network, in paused tokio time (which the
//! system clock and hyper's timers both follow): the connection bound (one over it is closed at
//! once; one WARN per episode), the handshake deadline (HTTP/2 preface and first SETTINGS frame;
//! HTTP/1 request heads), keepalive closing a connection whose client never answers a ping, and
//! failing accepts logged once per episode.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use peer_core::config::{HostPort, KeepaliveConfig};
use peer_core::env::real::SystemClock;
use peer_core::env::{BoxFuture, Clock, Connection, Listener, Network};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::net::serve::{self, ConnectionLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use peer_core::testkit::{MemNetwork, epoch};

/// The limits the other test worlds serve with: the peer's defaults.
pub fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: peer_core::config::DEFAULT_PEER_MAX_CONNECTIONS,
        bound_by: "peer.limits.maxConnections".into(),
        handshake_timeout: Duration::from_secs(5),
    }
}

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame (length 0, type 4, no flags, stream 0).
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
/// The header of a SETTINGS frame carrying one setting (6 bytes), and that setting
/// (SETTINGS_MAX_CONCURRENT_STREAMS = 100).
const SETTINGS_HEADER_6: [u8; 9] = [0, 0, 6, 4, 0, 0, 0, 0, 0];
const ONE_SETTING: [u8; 6] = [0, 3, 0, 0, 0, 100];

fn keepalive(interval: Duration, timeout: Duration) -> KeepaliveConfig {
    KeepaliveConfig { interval, timeout, ..KeepaliveConfig::default() }
}

/// One server on the in-memory network, with its log.
struct World {
    network: Arc<MemNetwork>,
    clock: Arc<SystemClock>,
    logs: MemorySink,
    _log_guard: tracing::subscriber::DefaultGuard,
    stop: watch::Sender<bool>,
}

const PORT: u16 = 7051;

impl World {
    fn new() -> World {
        let logs = MemorySink::new();
        let config = LoggingConfig { spec: "debug".into(), format: "%{level} [%{module}] %{message}".into() };
        let (layer, _handle) = logging::layer(&config, Arc::new(epoch), logs.sink()).unwrap();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
        let guard = tracing::subscriber::set_default(subscriber);
        World {
            network: Arc::new(MemNetwork::default()),
            clock: Arc::new(SystemClock::new()),
            logs,
            _log_guard: guard,
            stop: watch::channel(false).0,
        }
    }

    async fn listener(&self) -> Box<dyn Listener> {
        self.network.bind(&HostPort::new("peer", PORT)).await.unwrap()
    }

    /// Serves gRPC-style HTTP/2 (every request answered 200) with `limits` and `keepalive`.
    async fn grpc(&self, limits: ConnectionLimits, keepalive: KeepaliveConfig) {
        let service = tower::service_fn(|_request: Request<hyper::body::Incoming>| async {
            Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
        });
        let listener = self.listener().await;
        tokio::spawn(serve::serve_grpc(listener, self.clock.clone(), service, keepalive, limits, self.stop.subscribe()));
    }

    /// Serves HTTP/1.1 (every request answered 200 "ok") with `limits`.
    async fn http1(&self, limits: ConnectionLimits) {
        let listener = self.listener().await;
        let handler = |_request| async { Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(b"ok"))) };
        tokio::spawn(serve::serve_http1(listener, self.clock.clone(), handler, limits, None, self.stop.subscribe()));
    }

    async fn connect(&self) -> Box<dyn Connection> {
        let connection = self.network.connect(&HostPort::new("peer", PORT), Duration::from_secs(1)).await.unwrap();
        // Let the server accept it (and read what was sent) before the test goes on.
        settle().await;
        connection
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.clock.now().0)
    }

    /// Reads until the server closes the connection (failing after a simulated day); returns the
    /// time then and the bytes read.
    async fn until_closed(&self, connection: &mut Box<dyn Connection>) -> (Duration, Vec<u8>) {
        let mut bytes = Vec::new();
        let result = tokio::time::timeout(Duration::from_secs(24 * 3600), connection.read_to_end(&mut bytes)).await;
        assert!(matches!(result, Ok(Ok(_))), "not closed by the server: {result:?}");
        (self.now(), bytes)
    }

    /// Whether the server still holds `connection` open after `wait` (reads until then).
    async fn open_after(&self, connection: &mut Box<dyn Connection>, wait: Duration) -> bool {
        let mut bytes = Vec::new();
        tokio::time::timeout(wait, connection.read_to_end(&mut bytes)).await.is_err()
    }

    fn lines(&self, needle: &str) -> Vec<String> {
        self.logs.lines().into_iter().filter(|line| line.contains(needle)).collect()
    }
}

/// Lets every task run; paused time moves on by a millisecond.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A connection that has sent the preface and an empty SETTINGS frame (its handshake is done).
async fn handshaken(world: &World) -> Box<dyn Connection> {
    let mut connection = world.connect().await;
    connection.write_all(PREFACE).await.unwrap();
    connection.write_all(&EMPTY_SETTINGS).await.unwrap();
    settle().await;
    connection
}

#[tokio::test(start_paused = true)]
async fn over_the_bound_a_connection_is_closed_at_once_and_the_bound_is_logged_once_per_episode() {
    let world = World::new();
    let limits = ConnectionLimits { max_connections: 10, ..limits() };
    assert_eq!(limits.resume_at(), 9);
    world.grpc(limits, keepalive(Duration::from_secs(7200), Duration::from_secs(20))).await;

    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(handshaken(&world).await);
    }
    // Five more: each is closed at once, without a byte (no HTTP/2 SETTINGS from the server).
    for _ in 0..5 {
        let mut refused = world.connect().await;
        let before = world.now();
        let (closed_at, bytes) = world.until_closed(&mut refused).await;
        assert_eq!(closed_at, before, "closed at once");
        assert!(bytes.is_empty());
    }
    let warnings = world.lines("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("10 connections are open on 10.9.8.7:7051, the bound set by peer.limits.maxConnections: new connections are closed at once until 9 or fewer are open; raise it to allow more"),
        "{}",
        warnings[0]
    );
    // The held ones are served all along.
    for connection in &mut held {
        assert!(world.open_after(connection, Duration::from_millis(10)).await);
    }

    // One closes: 9 open, the episode ends with one INFO line counting the refusals.
    drop(held.pop());
    settle().await;
    let resumed = world.lines("accepting connections on 10.9.8.7:7051 again");
    assert_eq!(resumed.len(), 1, "{:#?}", world.logs.lines());
    assert!(resumed[0].contains("9 open, below the bound of 10; 5 were closed at once meanwhile"), "{}", resumed[0]);

    // Back at the bound, a refusal starts a second episode: a second WARN.
    held.push(handshaken(&world).await);
    let mut refused = world.connect().await;
    assert!(world.until_closed(&mut refused).await.1.is_empty());
    assert_eq!(world.lines("WARN").len(), 2, "{:#?}", world.logs.lines());
}

#[tokio::test(start_paused = true)]
async fn the_handshake_deadline_closes_silent_and_half_finished_http2_connections_only() {
    let world = World::new();
    world.grpc(limits(), keepalive(Duration::from_secs(7200), Duration::from_secs(20))).await;

    let mut silent = world.connect().await;
    let mut half_preface = world.connect().await;
    half_preface.write_all(&PREFACE[..12]).await.unwrap();
    let mut preface_only = world.connect().await;
    preface_only.write_all(PREFACE).await.unwrap();
    // The SETTINGS frame header arrives, but only half its payload.
    let mut half_settings = world.connect().await;
    half_settings.write_all(PREFACE).await.unwrap();
    half_settings.write_all(&SETTINGS_HEADER_6).await.unwrap();
    half_settings.write_all(&ONE_SETTING[..3]).await.unwrap();
    let mut done = handshaken(&world).await;
    // A handshake in three pieces that ends before the deadline.
    let mut slow = world.connect().await;
    slow.write_all(PREFACE).await.unwrap();
    slow.write_all(&SETTINGS_HEADER_6).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.write_all(&ONE_SETTING).await.unwrap();

    for connection in [&mut silent, &mut half_preface, &mut preface_only, &mut half_settings] {
        let (closed_at, _) = world.until_closed(connection).await;
        assert!(closed_at >= Duration::from_secs(5) && closed_at < Duration::from_millis(5100), "closed at {closed_at:?}");
    }
    // Finished handshakes live on (keepalive pings come after two hours).
    assert!(world.open_after(&mut done, Duration::from_secs(600)).await);
    assert!(world.open_after(&mut slow, Duration::from_secs(1)).await);
    let debug = world.lines("did not finish within 5s");
    assert_eq!(debug.len(), 4, "{:#?}", world.logs.lines());
    assert!(world.lines("WARN").is_empty(), "{:#?}", world.logs.lines());
}

#[tokio::test(start_paused = true)]
async fn keepalive_closes_a_connection_whose_client_never_answers_a_ping() {
    let world = World::new();
    world.grpc(limits(), keepalive(Duration::from_secs(10), Duration::from_secs(5))).await;
    let started = world.now();
    let mut silent_after_settings = handshaken(&world).await;
    let (closed_at, bytes) = world.until_closed(&mut silent_after_settings).await;
    // A ping after 10 s without reads, unanswered for 5 s.
    let after = closed_at - started;
    assert!(after >= Duration::from_secs(15) && after < Duration::from_secs(16), "closed after {after:?}");
    // Among what the server sent: a PING frame (type 6).
    assert!(bytes.windows(4).any(|w| w[..3] == [0, 0, 8] && w[3] == 6), "no PING in {bytes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_keeps_its_connection() {
    let world = World::new();
    world.grpc(limits(), keepalive(Duration::from_secs(10), Duration::from_secs(5))).await;
    let connection = world.connect().await;
    let (mut send, driver) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(connection))
            .await
            .unwrap();
    let driving = tokio::spawn(driver);
    for _ in 0..3 {
        let request = Request::get("http://peer/x").body(http_body_util::Empty::<hyper::body::Bytes>::new()).unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        // Idle for a minute: pings come and are answered.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    assert!(!driving.is_finished());
}

#[tokio::test(start_paused = true)]
async fn http1_connections_must_send_each_request_head_in_time() {
    let world = World::new();
    world
        .http1(ConnectionLimits {
            handshake_timeout: serve::OPERATIONS_READ_HEADER_TIMEOUT,
            max_connections: 64,
            bound_by: "operations.limits.maxConnections".into(),
        })
        .await;
    let mut silent = world.connect().await;
    let mut half_head = world.connect().await;
    half_head.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut served = world.connect().await;
    served.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    for connection in [&mut silent, &mut half_head] {
        let (closed_at, bytes) = world.until_closed(connection).await;
        assert!(closed_at >= Duration::from_secs(10) && closed_at < Duration::from_millis(10_100), "closed at {closed_at:?}");
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    }
    // Answered, then closed when no second request head came within 10 s (keep-alive idle).
    let (closed_at, bytes) = world.until_closed(&mut served).await;
    assert!(String::from_utf8_lossy(&bytes).starts_with("HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&bytes));
    assert!(closed_at >= Duration::from_secs(10) && closed_at < Duration::from_millis(10_100), "closed at {closed_at:?}");
}

#[tokio::test(start_paused = true)]
async fn the_operations_bound_is_its_own() {
    let world = World::new();
    world
        .http1(ConnectionLimits {
            handshake_timeout: serve::OPERATIONS_READ_HEADER_TIMEOUT,
            max_connections: 2,
            bound_by: "operations.limits.maxConnections".into(),
        })
        .await;
    let _held = [world.connect().await, world.connect().await];
    let mut refused = world.connect().await;
    let before = world.now();
    assert_eq!(world.until_closed(&mut refused).await, (before, Vec::new()));
    let warnings = world.lines("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("[fabhttp]") && warnings[0].contains("the bound set by operations.limits.maxConnections"),
        "{}",
        warnings[0]
    );
}

/// A listener whose first `failures` accepts fail with EMFILE.
struct FailingListener {
    inner: Box<dyn Listener>,
    failures: Arc<AtomicUsize>,
}

impl Listener for FailingListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(Box<dyn Connection>, SocketAddr)>> {
        if self.failures.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
            return Box::pin(async { Err(io::Error::from_raw_os_error(24)) });
        }
        self.inner.accept()
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[tokio::test(start_paused = true)]
async fn failing_accepts_are_logged_once_per_episode_and_retried_after_a_pause() {
    let world = World::new();
    let failures = Arc::new(AtomicUsize::new(100));
    let listener = Box::new(FailingListener { inner: world.listener().await, failures: failures.clone() });
    let service = tower::service_fn(|_request: Request<hyper::body::Incoming>| async {
        Ok::<_, Infallible>(Response::new(tonic::body::Body::empty()))
    });
    let keepalive = keepalive(Duration::from_secs(7200), Duration::from_secs(20));
    tokio::spawn(serve::serve_grpc(listener, world.clock.clone(), service, keepalive, limits(), world.stop.subscribe()));
    // 100 failures, 50 ms apart: about 5 s.
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert!(failures.load(Ordering::Relaxed) > 0, "retried in a busy loop");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    let _connection = handshaken(&world).await;
    let warnings = world.lines("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("accept failed on 10.9.8.7:7051: Too many open files (os error 24); retrying every 50ms"),
        "{}",
        warnings[0]
    );
    let resumed = world.lines("again after");
    assert_eq!(resumed.len(), 1, "{:#?}", world.logs.lines());
    assert!(resumed[0].contains("accepting connections on 10.9.8.7:7051 again after 100 failed accepts"), "{}", resumed[0]);
}
