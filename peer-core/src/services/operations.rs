//! The operations HTTP server (spec §4.4): `/healthz`, `/version`, `/logspec`, `/metrics`, and
//! peer-core's `/membership` (who this peer sees in gossip).
//!
//! Responses use Fabric's JSON shapes so existing tooling keeps working. Times come from the
//! env's clock. TLS on this listener is not supported yet (operations.tls.enabled is refused at
//! start rather than silently served in clear text).
//!
//! `/metrics` speaks what Fabric's peer serves (client_golang's `promhttp.Handler`): the Prometheus
//! text format 0.0.4, never OpenMetrics, whatever the scraper accepts. The difference matters to
//! dashboards: a 0.0.4 counter's samples carry the family's name (`endorser_proposals_received 3`),
//! where OpenMetrics appends `_total` and Prometheus stores that name instead. So a counter's
//! family name is its sample name here, and our own counters are named with their `_total`
//! (`peer_core_ledger_heals_total`). prometheus-client only writes OpenMetrics;
//! [`prometheus_text`] rewrites its output line by line.

use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use prometheus_client::registry::Registry;

use crate::env::Clock;
use crate::metadata;
use crate::net::tls::RemoteTls;

/// Reading and changing the log level spec at run time (implemented by the logging module).
pub trait LogControl: Send + Sync + 'static {
    fn spec(&self) -> String;
    fn set_spec(&self, spec: &str) -> Result<(), String>;
    /// Registers the logging metrics (`logging_entries_checked`, `logging_entries_written`), if
    /// this log control counts log events.
    fn register_metrics(&self, _registry: &mut Registry) {}
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
    /// Served over TLS: `/logspec` and `/metrics` then need a verified client certificate.
    pub tls: bool,
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
        let path = request.uri().path();
        // Fabric's RequireCert middleware (spec §5): with TLS on, only a client whose certificate
        // verified may read metrics or change the log spec; 401 with an empty body, before any
        // other handling.
        let verified = request.extensions().get::<RemoteTls>().is_some_and(|tls| tls.cert_hash.is_some());
        if self.tls && !verified && (path == "/logspec" || path == "/metrics") {
            return empty(StatusCode::UNAUTHORIZED);
        }
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
                    let Ok(text) = prometheus_text(registry) else {
                        return empty(StatusCode::INTERNAL_SERVER_ERROR);
                    };
                    Response::builder()
                        .header(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
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

/// The registry in the Prometheus text format 0.0.4, as client_golang writes it (see the module
/// docs): prometheus-client's OpenMetrics text with each counter sample named as its family (its
/// `_total` suffix dropped), without `# UNIT` and `# EOF` lines, and histogram bounds written as Go
/// writes floats (`le="1"`, not `le="1.0"`). A family without samples (a labelled one nothing has
/// counted yet) is not written at all, by prometheus-client as by client_golang.
pub fn prometheus_text(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode_registry(&mut openmetrics, registry)?;
    let mut text = String::with_capacity(openmetrics.len());
    // The counter family whose samples follow, if the current family is a counter.
    let mut counter: Option<String> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.rsplit_once(' ').unwrap_or((declaration, ""));
            counter = (kind == "counter").then(|| name.to_string());
            // OpenMetrics types 0.0.4 does not have are untyped there (we register none).
            let kind = if matches!(kind, "counter" | "gauge" | "histogram" | "summary") { kind } else { "untyped" };
            text.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            text.push_str(line);
            text.push('\n');
            continue;
        }
        let sample = match &counter {
            Some(name) => match line.strip_prefix(name.as_str()).and_then(|rest| rest.strip_prefix("_total")) {
                Some(rest) if rest.starts_with(['{', ' ']) => format!("{name}{rest}"),
                _ => line.to_string(),
            },
            None => line.to_string(),
        };
        text.push_str(&go_bucket_bound(&sample));
        text.push('\n');
    }
    Ok(text)
}

/// A histogram bucket sample with its `le` bound as Go formats a float (`1`, `10`, `0.005`).
fn go_bucket_bound(sample: &str) -> std::borrow::Cow<'_, str> {
    let Some(start) = sample.find("le=\"") else { return sample.into() };
    let value_start = start + 4;
    let Some(length) = sample[value_start..].find('"') else { return sample.into() };
    let bound = &sample[value_start..value_start + length];
    match bound.strip_suffix(".0") {
        Some(whole) if !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{}{whole}{}", &sample[..value_start], &sample[value_start + length..]).into()
        }
        _ => sample.into(),
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
    fn register_metrics(&self, registry: &mut Registry) {
        crate::logging::LoggingHandle::register_metrics(self, registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn metrics_are_written_in_the_text_format_fabric_serves() {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::histogram::Histogram;
        let mut registry = Registry::default();
        let received = Counter::<u64>::default();
        received.inc_by(3);
        registry.register("endorser_proposals_received", "Proposals", received);
        let ours = Counter::<u64>::default();
        ours.inc();
        registry.register("peer_core_ledger_heals_total", "Heals", ours);
        let sent: Family<Vec<(String, String)>, Counter> = Family::default();
        sent.get_or_create(&vec![("channel".into(), "mychannel".into())]).inc_by(2);
        registry.register("deliver_blocks_sent", "Blocks", sent);
        // A labelled family nothing has counted yet is left out.
        let unused: Family<Vec<(String, String)>, Counter> = Family::default();
        registry.register("deliver_requests_received", "Requests", unused);
        let histogram = Histogram::new([0.005, 1.0, 10.0]);
        histogram.observe(0.5);
        registry.register("ledger_blockstorage_commit_time", "Seconds", histogram);
        let text = prometheus_text(&registry).unwrap();
        assert_eq!(
            text,
            "# HELP endorser_proposals_received Proposals.\n\
             # TYPE endorser_proposals_received counter\n\
             endorser_proposals_received 3\n\
             # HELP peer_core_ledger_heals_total Heals.\n\
             # TYPE peer_core_ledger_heals_total counter\n\
             peer_core_ledger_heals_total 1\n\
             # HELP deliver_blocks_sent Blocks.\n\
             # TYPE deliver_blocks_sent counter\n\
             deliver_blocks_sent{channel=\"mychannel\"} 2\n\
             # HELP ledger_blockstorage_commit_time Seconds.\n\
             # TYPE ledger_blockstorage_commit_time histogram\n\
             ledger_blockstorage_commit_time_sum 0.5\n\
             ledger_blockstorage_commit_time_count 1\n\
             ledger_blockstorage_commit_time_bucket{le=\"0.005\"} 0\n\
             ledger_blockstorage_commit_time_bucket{le=\"1\"} 1\n\
             ledger_blockstorage_commit_time_bucket{le=\"10\"} 1\n\
             ledger_blockstorage_commit_time_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn times_print_like_go_rfc3339nano() {
        assert_eq!(rfc3339(crate::testkit::epoch()), "2025-06-01T00:00:00Z");
        assert_eq!(rfc3339(crate::testkit::epoch() + Duration::from_millis(120)), "2025-06-01T00:00:00.12Z");
    }
}
