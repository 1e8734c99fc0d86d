//! The operations HTTP server (spec §4.4): `/healthz`, `/version`, `/logspec`, `/metrics`, and
//! peer-core's `/membership` (who this peer sees in gossip).
//!
//! Responses use Fabric's JSON shapes so existing tooling keeps working. Times come from the
//! env's clock. TLS on this listener is not supported yet (operations.tls.enabled is refused at
//! start rather than silently served in clear text).

use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use prometheus_client::registry::Registry;

use crate::env::Clock;
use crate::metadata;

/// Reading and changing the log level spec at run time (implemented by the logging module).
pub trait LogControl: Send + Sync + 'static {
    fn spec(&self) -> String;
    fn set_spec(&self, spec: &str) -> Result<(), String>;
}

/// A health check: `Err(reason)` makes `/healthz` answer 503.
pub trait HealthCheck: Send + Sync + 'static {
    fn component(&self) -> &str;
    fn check(&self) -> Result<(), String>;
}

/// What the handlers need.
#[derive(Clone)]
pub struct Operations {
    pub clock: Arc<dyn Clock>,
    pub log_control: Arc<dyn LogControl>,
    /// `None` when metrics.provider is not prometheus: `/metrics` is then 404.
    pub metrics: Option<Arc<Registry>>,
    pub checks: Arc<Vec<Box<dyn HealthCheck>>>,
    /// The current gossip membership as JSON, for `GET /membership` (a peer-core addition).
    pub membership: Option<Arc<dyn Fn() -> serde_json::Value + Send + Sync>>,
}

/// Largest request body read (a `/logspec` PUT is a few bytes).
const MAX_BODY_BYTES: usize = 64 << 10;

fn json(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = value.to_string();
    body.push('\n');
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::new())).unwrap_or_default()
}

impl Operations {
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = request.method().clone();
        match request.uri().path() {
            "/healthz" => self.healthz(&method),
            "/version" => match method {
                Method::GET => json(StatusCode::OK, serde_json::json!({"CommitSHA": metadata::COMMIT_SHA, "Version": metadata::VERSION})),
                other => json(StatusCode::BAD_REQUEST, serde_json::json!({"Error": format!("invalid request method: {other}")})),
            },
            "/logspec" => self.logspec(request).await,
            "/membership" => match (&self.membership, method) {
                (None, _) => empty(StatusCode::NOT_FOUND),
                (Some(view), Method::GET) => json(StatusCode::OK, view()),
                (Some(_), _) => empty(StatusCode::METHOD_NOT_ALLOWED),
            },
            "/metrics" => match (&self.metrics, method) {
                (None, _) => empty(StatusCode::NOT_FOUND),
                (Some(registry), Method::GET) => {
                    let mut text = String::new();
                    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
                        return empty(StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                        .body(Full::new(Bytes::from(text)))
                        .unwrap_or_default()
                }
                (Some(_), _) => empty(StatusCode::METHOD_NOT_ALLOWED),
            },
            _ => empty(StatusCode::NOT_FOUND),
        }
    }

    fn healthz(&self, method: &Method) -> Response<Full<Bytes>> {
        if method != Method::GET {
            return empty(StatusCode::METHOD_NOT_ALLOWED);
        }
        let time = rfc3339(self.clock.wall_clock());
        let failed: Vec<serde_json::Value> = self
            .checks
            .iter()
            .filter_map(|check| check.check().err().map(|reason| serde_json::json!({"component": check.component(), "reason": reason})))
            .collect();
        if failed.is_empty() {
            json(StatusCode::OK, serde_json::json!({"status": "OK", "time": time}))
        } else {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "Service Unavailable", "time": time, "failed_checks": failed}),
            )
        }
    }

    async fn logspec(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        match *request.method() {
            Method::GET => json(StatusCode::OK, serde_json::json!({"spec": self.log_control.spec()})),
            Method::PUT => {
                let body = match http_body_util::Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": "request body too large or unreadable"})),
                };
                #[derive(serde::Deserialize)]
                struct Spec {
                    spec: String,
                }
                let spec: Spec = match serde_json::from_slice(&body) {
                    Ok(spec) => spec,
                    Err(err) => return json(StatusCode::BAD_REQUEST, serde_json::json!({"error": err.to_string()})),
                };
                match self.log_control.set_spec(&spec.spec) {
                    Ok(()) => empty(StatusCode::NO_CONTENT),
                    Err(err) => json(StatusCode::BAD_REQUEST, serde_json::json!({"error": err})),
                }
            }
            ref other => json(StatusCode::BAD_REQUEST, serde_json::json!({"error": format!("invalid request method: {other}")})),
        }
    }
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's time.RFC3339Nano), in UTC.
pub fn rfc3339(time: SystemTime) -> String {
    crate::gotime::format(crate::gotime::RFC3339_NANO, time)
}

impl LogControl for crate::logging::LoggingHandle {
    fn spec(&self) -> String {
        crate::logging::LoggingHandle::spec(self)
    }
    fn set_spec(&self, spec: &str) -> Result<(), String> {
        crate::logging::LoggingHandle::set_spec(self, spec).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn times_print_like_go_rfc3339nano() {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_748_736_000)), "2025-06-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::new(1_748_736_000, 120_000_000)), "2025-06-01T00:00:00.12Z");
    }
}
