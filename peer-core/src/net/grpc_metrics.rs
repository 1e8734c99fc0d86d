//! Fabric's gRPC server metrics for the peer port, as one tower layer around the peer's routes
//! (Fabric: `common/grpcmetrics` interceptors and `comm.ServerStatsHandler`, installed on the peer
//! server only, not on the chaincode server).
//!
//! - Unary calls: `grpc_server_unary_requests_received{service,method}`, then
//!   `grpc_server_unary_requests_completed{service,method,code}` and
//!   `grpc_server_unary_request_duration{service,method,code}` when the call's status is known.
//! - Streams: the same three as `grpc_server_stream_*`, plus
//!   `grpc_server_stream_messages_received` / `_sent{service,method}`, one per gRPC message.
//! - Connections: `grpc_comm_conn_opened` once a connection's HTTP/2 handshake is done (when
//!   grpc-go reports `ConnBegin`), `grpc_comm_conn_closed` when such a connection ends (counted by
//!   `serve.rs`, which owns connections).
//!
//! Labels are Fabric's: the full method `/protos.Endorser/ProcessProposal` becomes service
//! `protos_Endorser`, method `ProcessProposal`; `code` is the gRPC code's name (`OK`,
//! `Unimplemented`, …). A call's status is read at the HTTP level: from the response headers of a
//! trailers-only response (an error before any message, e.g. the concurrency limit's
//! RESOURCE_EXHAUSTED), else from the trailers that end the response body. A response dropped
//! before its trailers (the client went away) completes as `Canceled`, as a Go handler whose
//! context was cancelled does. Messages are counted by following the gRPC framing (a 5-byte prefix
//! with the length) of the request and response bodies, so several messages in one HTTP/2 frame
//! count as several.
//!
//! Only the methods of the services registered on the peer port are counted (grpc-go answers an
//! unknown service before any interceptor runs). The layer sits outside the concurrency limit, as
//! Fabric's interceptors come before its semaphores, so refused calls are counted too.
//!
//! Deliberately nothing else: counting reads the env's monotonic clock and updates atomics. It
//! never logs, sleeps, spawns or draws randomness, and passes every frame through unchanged, so a
//! simulated peer behaves the same with it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::body::Body;

use crate::env::{Clock, Instant};
use crate::metrics::{Labels, default_histogram};

/// Unary or streaming, as the service's proto declares the method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Unary,
    Stream,
}

/// The methods of the services peer-core can serve on the peer port: (gRPC service, method, kind).
pub const PEER_METHODS: &[(&str, &str, CallKind)] = &[
    ("gossip.Gossip", "GossipStream", CallKind::Stream),
    ("gossip.Gossip", "Ping", CallKind::Unary),
    ("protos.Deliver", "Deliver", CallKind::Stream),
    ("protos.Deliver", "DeliverFiltered", CallKind::Stream),
    ("protos.Deliver", "DeliverWithPrivateData", CallKind::Stream),
    ("protos.Endorser", "ProcessProposal", CallKind::Unary),
    ("discovery.Discovery", "Discover", CallKind::Unary),
];

/// The gRPC server metrics. Cheap to clone: clones share their values.
#[derive(Clone)]
pub struct GrpcServerMetrics {
    unary_received: Family<Labels, Counter>,
    unary_completed: Family<Labels, Counter>,
    unary_duration: Family<Labels, Histogram, fn() -> Histogram>,
    stream_received: Family<Labels, Counter>,
    stream_completed: Family<Labels, Counter>,
    stream_duration: Family<Labels, Histogram, fn() -> Histogram>,
    stream_messages_received: Family<Labels, Counter>,
    stream_messages_sent: Family<Labels, Counter>,
    /// `grpc_comm_conn_opened` / `grpc_comm_conn_closed` (see `serve::serve_grpc_counted`).
    pub connections: ConnectionCounters,
}

/// Connections whose handshake finished, and those of them that ended.
#[derive(Clone, Debug, Default)]
pub struct ConnectionCounters {
    pub opened: Counter,
    pub closed: Counter,
}

impl Default for GrpcServerMetrics {
    fn default() -> GrpcServerMetrics {
        GrpcServerMetrics {
            unary_received: Family::default(),
            unary_completed: Family::default(),
            unary_duration: Family::new_with_constructor(default_histogram),
            stream_received: Family::default(),
            stream_completed: Family::default(),
            stream_duration: Family::new_with_constructor(default_histogram),
            stream_messages_received: Family::default(),
            stream_messages_sent: Family::default(),
            connections: ConnectionCounters::default(),
        }
    }
}

impl std::fmt::Debug for GrpcServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServerMetrics").finish_non_exhaustive()
    }
}

impl GrpcServerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register("grpc_server_unary_requests_received", "Unary gRPC calls received", self.unary_received.clone());
        registry.register(
            "grpc_server_unary_requests_completed",
            "Unary gRPC calls completed, by status code",
            self.unary_completed.clone(),
        );
        registry.register(
            "grpc_server_unary_request_duration",
            "Seconds from receiving a unary gRPC call to its status",
            self.unary_duration.clone(),
        );
        registry.register("grpc_server_stream_requests_received", "Streaming gRPC calls received", self.stream_received.clone());
        registry.register(
            "grpc_server_stream_requests_completed",
            "Streaming gRPC calls completed, by status code",
            self.stream_completed.clone(),
        );
        registry.register(
            "grpc_server_stream_request_duration",
            "Seconds from opening a gRPC stream to its status",
            self.stream_duration.clone(),
        );
        registry.register(
            "grpc_server_stream_messages_received",
            "Messages received on gRPC streams",
            self.stream_messages_received.clone(),
        );
        registry.register("grpc_server_stream_messages_sent", "Messages sent on gRPC streams", self.stream_messages_sent.clone());
        registry.register(
            "grpc_comm_conn_opened",
            "gRPC connections opened on the peer port (opened minus closed are open)",
            self.connections.opened.clone(),
        );
        registry.register("grpc_comm_conn_closed", "gRPC connections closed on the peer port", self.connections.closed.clone());
    }
}

/// One counted method: its labels and kind.
#[derive(Clone, Debug)]
struct Method {
    service: String,
    method: String,
    kind: CallKind,
}

impl Method {
    fn labels(&self) -> Labels {
        vec![("service".to_string(), self.service.clone()), ("method".to_string(), self.method.clone())]
    }
}

/// Fabric's labels for a full method name: dots become underscores, then `/service/method`.
fn service_method(service: &str, method: &str) -> (String, String) {
    (service.replace('.', "_"), method.replace('.', "_"))
}

/// The tower service that counts calls to `inner` (see the module docs).
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: GrpcServerMetrics,
    clock: Arc<dyn Clock>,
    /// Counted methods by path (`/protos.Endorser/ProcessProposal`).
    methods: Arc<BTreeMap<String, Method>>,
}

impl<S> GrpcMetrics<S> {
    /// Counts the calls to the methods of `services` (gRPC service names, e.g. `protos.Deliver`)
    /// listed in [`PEER_METHODS`]; timed by `clock`.
    pub fn new(inner: S, metrics: GrpcServerMetrics, clock: Arc<dyn Clock>, services: &[&str]) -> GrpcMetrics<S> {
        let methods = PEER_METHODS
            .iter()
            .filter(|(service, _, _)| services.contains(service))
            .map(|(service, method, kind)| {
                let (service_label, method_label) = service_method(service, method);
                (format!("/{service}/{method}"), Method { service: service_label, method: method_label, kind: *kind })
            })
            .collect();
        GrpcMetrics { inner, metrics, clock, methods: Arc::new(methods) }
    }
}

impl<S, B> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<CountedBody<B>>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: HttpBody<Data = Bytes> + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // A counted method: received now, completed when its status is known.
        let (completion, received_messages) = match self.methods.get(request.uri().path()) {
            None => (None, None),
            Some(method) => {
                let labels = method.labels();
                let received_messages = match method.kind {
                    CallKind::Unary => {
                        self.metrics.unary_received.get_or_create(&labels).inc();
                        None
                    }
                    CallKind::Stream => {
                        self.metrics.stream_received.get_or_create(&labels).inc();
                        Some(self.metrics.stream_messages_received.get_or_create_owned(&labels))
                    }
                };
                let started = self.clock.now();
                let completion =
                    Completion { metrics: self.metrics.clone(), kind: method.kind, labels, clock: self.clock.clone(), started };
                (Some(completion), received_messages)
            }
        };
        let request = request.map(|body| CountedBody::new(body, received_messages));
        // The clone is the ready one; keep the un-polled original for next time (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            let Some(completion) = completion else { return Ok(response) };
            // A trailers-only response carries its status in the headers: the call is over.
            if let Some(code) = grpc_code(response.headers()) {
                completion.complete(code);
                return Ok(response);
            }
            let sent = (completion.kind == CallKind::Stream)
                .then(|| completion.metrics.stream_messages_sent.get_or_create_owned(&completion.labels));
            Ok(response.map(|body| Body::new(CompletingBody { inner: body, sent: MessageCount::new(sent), completion: Some(completion) })))
        })
    }
}

/// What to record when a counted call ends.
struct Completion {
    metrics: GrpcServerMetrics,
    kind: CallKind,
    labels: Labels,
    clock: Arc<dyn Clock>,
    started: Instant,
}

impl Completion {
    fn complete(self, code: tonic::Code) {
        let mut labels = self.labels;
        labels.push(("code".to_string(), crate::errors::go_code_name(code).to_string()));
        let seconds = self.clock.now().saturating_duration_since(self.started).as_secs_f64();
        let (completed, duration) = match self.kind {
            CallKind::Unary => (&self.metrics.unary_completed, &self.metrics.unary_duration),
            CallKind::Stream => (&self.metrics.stream_completed, &self.metrics.stream_duration),
        };
        completed.get_or_create(&labels).inc();
        duration.get_or_create(&labels).observe(seconds);
    }
}

/// The `grpc-status` of a header map, if it has one.
fn grpc_code(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(value.as_bytes()))
}

/// Counts the complete gRPC messages in a byte stream: each is a 1-byte flag, a 4-byte
/// big-endian length, then that many bytes. Pure, so the rule is tested alone.
#[derive(Debug, Default)]
pub struct MessageFraming {
    /// The prefix of the next message, as far as it has arrived.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come (0: reading a prefix).
    remaining: u64,
}

impl MessageFraming {
    /// Takes the next bytes; returns how many messages they completed.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut completed = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(bytes.len());
                bytes = &bytes[take..];
                self.remaining -= take as u64;
                if self.remaining == 0 {
                    completed += 1;
                }
                continue;
            }
            let take = (self.prefix.len() - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
            self.prefix_len += take;
            bytes = &bytes[take..];
            if self.prefix_len == self.prefix.len() {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
                if self.remaining == 0 {
                    completed += 1;
                }
            }
        }
        completed
    }
}

/// A message counter fed with a body's data frames (or nothing, for calls not counted).
struct MessageCount {
    counter: Option<(Counter, MessageFraming)>,
}

impl MessageCount {
    fn new(counter: Option<Counter>) -> MessageCount {
        MessageCount { counter: counter.map(|counter| (counter, MessageFraming::default())) }
    }

    fn frame<E>(&mut self, frame: &Poll<Option<Result<Frame<Bytes>, E>>>) {
        if let (Some((counter, framing)), Poll::Ready(Some(Ok(frame)))) = (self.counter.as_mut(), frame)
            && let Some(data) = frame.data_ref()
        {
            let messages = framing.feed(data);
            if messages > 0 {
                counter.inc_by(messages);
            }
        }
    }
}

/// A request body passed through unchanged, counting the gRPC messages of a stream in it.
pub struct CountedBody<B> {
    inner: Pin<Box<B>>,
    received: MessageCount,
}

impl<B> CountedBody<B> {
    fn new(inner: B, received: Option<Counter>) -> CountedBody<B> {
        CountedBody { inner: Box::pin(inner), received: MessageCount::new(received) }
    }
}

impl<B: HttpBody<Data = Bytes>> HttpBody for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        self.received.frame(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body passed through unchanged, completing the call at its trailers (or as
/// `Canceled` when dropped before them) and counting the messages a stream sends.
struct CompletingBody {
    inner: Body,
    sent: MessageCount,
    /// `None` once recorded.
    completion: Option<Completion>,
}

impl HttpBody for CompletingBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.sent.frame(&polled);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|trailers| grpc_code(trailers).unwrap_or(tonic::Code::Unknown)),
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            // Ended without trailers: not a gRPC status; grpc-go would report Unknown.
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(completion) = self.completion.take()
        {
            completion.complete(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CompletingBody {
    fn drop(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion.complete(tonic::Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend(len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(7u8, len as usize));
        bytes
    }

    #[test]
    fn messages_are_counted_however_the_bytes_are_split() {
        let stream: Vec<u8> = [message(3), message(0), message(300), message(1)].concat();
        for chunk in [1, 2, 4, 5, 6, 9, 64, stream.len()] {
            let mut framing = MessageFraming::default();
            let mut seen = Vec::new();
            let mut total = 0;
            for piece in stream.chunks(chunk) {
                total += framing.feed(piece);
                seen.push(total);
            }
            assert_eq!(total, 4, "chunks of {chunk}");
            assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        }
        // Half a message is not a message.
        let mut framing = MessageFraming::default();
        assert_eq!(framing.feed(&message(10)[..9]), 0);
        assert_eq!(framing.feed(&message(10)[9..]), 1);
    }

    #[test]
    fn labels_and_codes_read_as_fabrics() {
        assert_eq!(service_method("protos.Endorser", "ProcessProposal"), ("protos_Endorser".to_string(), "ProcessProposal".to_string()));
        assert_eq!(crate::errors::go_code_name(tonic::Code::Cancelled), "Canceled");
        assert_eq!(crate::errors::go_code_name(tonic::Code::ResourceExhausted), "ResourceExhausted");
        assert_eq!(crate::errors::go_code_name(tonic::Code::Ok), "OK");
    }
}
