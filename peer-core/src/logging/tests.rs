//! End-to-end tests of the logging module: real `tracing` events through a registry with the
//! Fabric layer, a fixed clock and an in-memory sink.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// 2024-05-01 10:00:00.123 UTC.
const T0_MILLIS: u64 = 1_714_557_600_123;

fn fixed_clock() -> WallClockFn {
    Arc::new(|| UNIX_EPOCH + Duration::from_millis(T0_MILLIS))
}

/// Runs `body` with a Fabric layer for `spec`/`format` installed; returns the output lines.
fn run(spec: &str, format: &str, body: impl FnOnce(&LoggingHandle)) -> Vec<String> {
    let output = MemorySink::new();
    let config = LoggingConfig { spec: spec.to_string(), format: format.to_string() };
    let (layer, handle) = layer(&config, fixed_clock(), output.sink()).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || body(&handle));
    output.lines()
}

#[test]
fn default_format_lines_with_counter() {
    let lines = run("", "", |_| {
        tracing::info!(target: "nodeCmd", func = "serve", "Starting peer:\n version: {}", "v2.2.15");
        tracing::warn!(target: "gossip.discovery", func = "periodicalCheckAlive", "Haven't heard from {} for {:?}", "abcd", Duration::from_secs(25));
        tracing::error!(target: "peer", "Cannot run peer because {}", "boom");
        tracing::debug!(target: "peer", "not at INFO");
    });
    assert_eq!(
        lines,
        [
            "\x1b[34m2024-05-01 10:00:00.123 UTC [nodeCmd] serve -> INFO 001\x1b[0m Starting peer:",
            " version: v2.2.15",
            "\x1b[33m2024-05-01 10:00:00.123 UTC [gossip.discovery] periodicalCheckAlive -> WARN 002\x1b[0m Haven't heard from abcd for 25s",
            "\x1b[31m2024-05-01 10:00:00.123 UTC [peer] tests -> ERRO 003\x1b[0m Cannot run peer because boom",
        ]
    );
}

#[test]
fn counter_is_hex_and_grows_past_three_digits() {
    let lines = run("", "%{id:03x} %{message}", |_| {
        for i in 0..4097 {
            tracing::info!(target: "peer", "{i}");
        }
    });
    assert_eq!(lines[0], "001 0");
    assert_eq!(lines[9], "00a 9");
    assert_eq!(lines[4095], "1000 4095");
    assert_eq!(lines.len(), 4097);
}

#[test]
fn each_logging_instance_has_its_own_counter() {
    let shared_output = MemorySink::new();
    let config = LoggingConfig { spec: String::new(), format: "%{module} %{id:03x}".to_string() };
    let (peer0, _) = layer(&config, fixed_clock(), shared_output.sink()).unwrap();
    let (peer1, _) = layer(&config, fixed_clock(), shared_output.sink()).unwrap();
    let peer0 = tracing_subscriber::registry().with(peer0);
    let peer1 = tracing_subscriber::registry().with(peer1);
    tracing::subscriber::with_default(peer0, || tracing::info!(target: "peer0", "a"));
    tracing::subscriber::with_default(peer1, || tracing::info!(target: "peer1", "a"));
    assert_eq!(shared_output.lines(), ["peer0 001", "peer1 001"]);
}

#[test]
fn structured_fields_and_span_context_follow_the_message() {
    let lines = run("", "[%{module}] %{shortfunc} %{message}", |_| {
        tracing::info!(target: "gossip.comm", func = "authenticateRemotePeer", peer = %"peer0.org1:7051", reason = "bad cert", attempts = 3_u64, "Authentication failed");
        let span = tracing::info_span!("peer", id = "peer1");
        let _entered = span.enter();
        tracing::info!(target: "gossip.gossip", channel = "mychannel", "Stopping gossip");
    });
    assert_eq!(
        lines,
        [
            "[gossip.comm] authenticateRemotePeer Authentication failed peer=peer0.org1:7051 reason=\"bad cert\" attempts=3",
            "[gossip.gossip] tests Stopping gossip id=peer1 channel=mychannel",
        ]
    );
}

#[test]
fn json_lines_parse_back() {
    let lines = run("", "json", |_| {
        tracing::info!(target: "nodeCmd", func = "serve", height = 7_u64, ratio = 0.5, ok = true, who = %"org1 peer", "Starting peer:\n");
        tracing::warn!(target: "gossip.discovery", "no func");
    });
    assert_eq!(lines.len(), 2);
    let mut first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    // serde_json parses floats approximately; the exact text is checked below.
    let ts = first.as_object_mut().unwrap().remove("ts").unwrap().as_f64().unwrap();
    assert!((ts - 1_714_557_600.123).abs() < 1e-6, "ts {ts}");
    assert_eq!(
        first,
        serde_json::json!({
            "level": "info", "name": "nodeCmd", "caller": "serve",
            "msg": "Starting peer:\n", "height": 7, "ratio": 0.5, "ok": true, "who": "org1 peer",
        })
    );
    // Keys come in zap's order.
    assert!(lines[0].starts_with("{\"level\":\"info\",\"ts\":1714557600.1230001,\"name\":\"nodeCmd\",\"caller\":\"serve\",\"msg\":"));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["caller"], "peer_core::logging::tests");
    assert_eq!(second["level"], "warn");
}

#[test]
fn logfmt_lines() {
    let lines = run("", "logfmt", |_| tracing::error!(target: "peer", func = "InitCmd", code = 1_i64, "Fatal error"));
    assert_eq!(lines, ["ts=1714557600.1230001 level=error name=peer caller=InitCmd msg=\"Fatal error\" code=1"]);
}

#[test]
fn set_spec_changes_filtering_at_runtime() {
    let lines = run("gossip=warn:info", "[%{module}] %{level} %{message}", |handle| {
        assert_eq!(handle.spec(), "gossip=warn:info");
        // The same callsites run before and after the change, so tracing's per-callsite interest
        // cache must not keep the old answer.
        for round in 0..3 {
            match round {
                1 => handle.set_spec("gossip.discovery=debug:warn").unwrap(),
                2 => handle.set_spec("").unwrap(),
                _ => {}
            }
            tracing::debug!(target: "gossip.discovery", "round {round} debug");
            tracing::info!(target: "gossip.discovery", "round {round} info");
            tracing::info!(target: "peer", "round {round} info");
            tracing::trace!(target: "peer", "round {round} payload");
        }
        assert_eq!(handle.spec(), "info");
        let err = handle.set_spec("gossip=bogus").unwrap_err();
        assert_eq!(err.to_string(), "invalid logging specification 'gossip=bogus': bad segment 'gossip=bogus'");
        assert_eq!(handle.spec(), "info");
        handle.set_spec("PAYLOAD").unwrap();
        assert_eq!(handle.log_spec().as_str(), "PAYLOAD");
        assert_eq!(handle.spec(), "payload");
        assert!(handle.enabled("anything", tracing::Level::TRACE));
        tracing::trace!(target: "peer", "payload now");
    });
    assert_eq!(
        lines,
        [
            "[peer] INFO round 0 info",
            "[gossip.discovery] DEBUG round 1 debug",
            "[gossip.discovery] INFO round 1 info",
            "[gossip.discovery] INFO round 2 info",
            "[peer] INFO round 2 info",
            "[peer] PAYLOAD payload now",
        ]
    );
}

#[test]
fn clock_is_called_per_record() {
    let ticks = Arc::new(AtomicU64::new(0));
    let clock: WallClockFn = {
        let ticks = Arc::clone(&ticks);
        Arc::new(move || -> SystemTime { UNIX_EPOCH + Duration::from_millis(T0_MILLIS + 1000 * ticks.fetch_add(1, Ordering::Relaxed)) })
    };
    let output = MemorySink::new();
    let config = LoggingConfig { spec: String::new(), format: "%{time:15:04:05.000} %{message}".to_string() };
    let (layer, _) = layer(&config, clock, output.sink()).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::debug!(target: "peer", "filtered, no clock read");
        tracing::info!(target: "peer", "one");
        tracing::info!(target: "peer", "two");
    });
    assert_eq!(output.take(), "10:00:00.123 one\n10:00:01.123 two\n");
    assert_eq!(output.contents(), "");
    assert_eq!(ticks.load(Ordering::Relaxed), 2);
}

#[test]
fn bad_config_is_an_error() {
    let sink = MemorySink::new();
    let setup = |spec: &str, format: &str| {
        let config = LoggingConfig { spec: spec.to_string(), format: format.to_string() };
        layer(&config, fixed_clock(), sink.sink()).map(|_| ()).map_err(|err| err.to_string())
    };
    assert_eq!(setup("debug:gossip=", ""), Err("invalid logging specification 'debug:gossip=': bad segment 'gossip='".to_string()));
    // Fabric's text, after the variable and its value.
    assert_eq!(
        setup("", "%{color}%{pid} %{message}"),
        Err("invalid FABRIC_LOGGING_FORMAT \"%{color}%{pid} %{message}\": invalid format verb: pid".to_string())
    );
    // Like Fabric, the format is checked first.
    assert_eq!(setup("bogus", "%{pid}"), Err("invalid FABRIC_LOGGING_FORMAT \"%{pid}\": invalid format verb: pid".to_string()));
    // A verb cut off before its `}`: the variable, its value and the unterminated text.
    assert_eq!(
        setup("", "%{color}%{time"),
        Err("invalid FABRIC_LOGGING_FORMAT \"%{color}%{time\": unterminated verb \"%{time\": no closing '}'".to_string())
    );
    assert_eq!(setup("info", "json"), Ok(()));
}

#[test]
fn library_events_log_under_fabric_names() {
    // What h2, tonic and tokio log under their module paths is filtered and printed as Fabric's
    // `grpc` logger (or a dotted name), so `grpc=debug` selects it.
    let lines = run("grpc=debug:tokio=warn:info", "[%{module}] %{level:.4s} %{message}", |handle| {
        tracing::debug!(target: "h2::codec::framed_read", "received frame=Settings");
        tracing::debug!(target: "tonic::transport::server", "accepted connection");
        tracing::trace!(target: "h2::proto::streams", "not at DEBUG");
        tracing::info!(target: "tokio::runtime::task", "not at WARN");
        tracing::warn!(target: "tokio::runtime::task", "a task warning");
        tracing::debug!(target: "gossip.comm", "not at INFO");
        assert!(handle.enabled("hyper::proto::h2::server", tracing::Level::DEBUG));
        assert!(!handle.enabled("hyper::proto::h2::server", tracing::Level::TRACE));
    });
    assert_eq!(
        lines,
        ["[grpc] DEBU received frame=Settings", "[grpc] DEBU accepted connection", "[tokio.runtime.task] WARN a task warning"]
    );
}
