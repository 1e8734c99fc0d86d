//! Serving gRPC (tonic routes) and plain HTTP over listeners from the env's Network.
//!
//! We run our own accept loop instead of `tonic::transport::Server` for two reasons: the listener
//! comes from the [`Network`](crate::env::Network) trait (sockets or the simulator), and hyper's
//! automatic `date` header would leak the wall clock into the bytes on the wire (it is switched
//! off here). Every connection task is owned by the loop's JoinSet and aborted on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tonic::body::Body;

use crate::config::KeepaliveConfig;
use crate::env::{Clock, Connection, Listener};

/// Accepts connections until `shutdown` turns true, serving each with `serve` in a task owned
/// here; on shutdown every connection task is aborted. A failing accept (e.g. out of file
/// descriptors) is retried after a short pause rather than in a busy loop.
async fn accept_loop<F, Fut>(mut listener: Box<dyn Listener>, clock: Arc<dyn Clock>, mut shutdown: watch::Receiver<bool>, serve: F)
where
    F: Fn(Box<dyn Connection>) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let failed = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => false,
            accepted = listener.accept() => match accepted {
                Ok((connection, _peer)) => {
                    connections.spawn(serve(connection));
                    false
                }
                Err(err) => {
                    tracing::warn!(target: "comm.grpc.server", func = "Serve", "accept failed: {err}; retrying");
                    true
                }
            },
        };
        if failed {
            clock.sleep(Duration::from_millis(50)).await;
        }
    }
    connections.shutdown().await;
}

/// Serves tonic routes over HTTP/2 on `listener` until `shutdown` turns true.
pub async fn serve_grpc<S>(
    listener: Box<dyn Listener>,
    clock: Arc<dyn Clock>,
    service: S,
    keepalive: KeepaliveConfig,
    shutdown: watch::Receiver<bool>,
) where
    S: tower::Service<Request<hyper::body::Incoming>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    accept_loop(listener, clock, shutdown, move |connection| {
        // tonic's `Request::remote_addr()` reads this; gossip logs name the remote with it.
        let info = tonic::transport::server::TcpConnectInfo {
            local_addr: connection.local_addr().ok(),
            remote_addr: connection.peer_addr().ok(),
        };
        let service = tower::ServiceExt::map_request(service.clone(), move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(info.clone());
            request
        });
        let service = TowerToHyperService::new(service);
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .auto_date_header(false)
            .keep_alive_interval(Some(keepalive.interval))
            .keep_alive_timeout(keepalive.timeout);
        async move {
            let _ = builder.serve_connection(TokioIo::new(connection), service).await;
        }
    })
    .await;
}

/// Serves plain HTTP/1.1 (the operations server) on `listener` until `shutdown` turns true.
pub async fn serve_http1<F, Fut>(listener: Box<dyn Listener>, clock: Arc<dyn Clock>, handler: F, shutdown: watch::Receiver<bool>)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<http_body_util::Full<hyper::body::Bytes>>> + Send + 'static,
{
    accept_loop(listener, clock, shutdown, move |connection| {
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Fabric's operations server has a 10 s read timeout.
            builder.timer(TokioTimer::new()).auto_date_header(false).header_read_timeout(Duration::from_secs(10));
            let _ = builder.serve_connection(TokioIo::new(connection), service).await;
        }
    })
    .await;
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
