//! Reading a `/metrics` exposition (the Prometheus text format 0.0.4) and checking it against
//! Fabric 2.2's peer metrics (`peer-core/tests/data/fabric-2.2-peer-metrics.txt`): every family is
//! Fabric's, with Fabric's type, label names and buckets, and samples named as Fabric's peer names
//! them; or it is ours and starts with `peer_core_`. Shared with the e2e suite (`#[path]`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Fabric 2.2's families for what peer-core does. As client_golang does, a family with labels
/// appears with its first sample, so which ones a peer shows depends on what it has done: each
/// test asserts the groups below that its peers' work makes appear, and together they cover this
/// whole list (`expected_families_are_all_covered`).
pub const EXPECTED: &[&str] = &[
    "fabric_version",
    "grpc_server_unary_requests_received",
    "grpc_server_unary_requests_completed",
    "grpc_server_unary_request_duration",
    "grpc_server_stream_requests_received",
    "grpc_server_stream_requests_completed",
    "grpc_server_stream_request_duration",
    "grpc_server_stream_messages_received",
    "grpc_server_stream_messages_sent",
    "grpc_comm_conn_opened",
    "grpc_comm_conn_closed",
    "deliver_streams_opened",
    "deliver_streams_closed",
    "deliver_requests_received",
    "deliver_requests_completed",
    "deliver_blocks_sent",
    "endorser_proposals_received",
    "endorser_successful_proposals",
    "endorser_proposal_validation_failures",
    "endorser_duplicate_transaction_failures",
    "endorser_proposal_acl_failures",
    "endorser_proposal_duration",
    "gossip_comm_messages_sent",
    "gossip_comm_messages_received",
    "gossip_comm_overflow_count",
    "gossip_membership_total_peers_known",
    "gossip_state_height",
    "gossip_state_commit_duration",
    "gossip_payload_buffer_size",
    "gossip_leader_election_leader",
    "ledger_blockchain_height",
    "ledger_block_processing_time",
    "ledger_blockstorage_commit_time",
    "logging_entries_checked",
    "logging_entries_written",
];

/// On every started peer (with metrics on): the families without labels, which start at 0, and
/// those set at start.
pub const ALWAYS: &[&str] = &[
    "fabric_version",
    "grpc_comm_conn_opened",
    "grpc_comm_conn_closed",
    "deliver_streams_opened",
    "deliver_streams_closed",
    "endorser_proposals_received",
    "endorser_successful_proposals",
    "endorser_proposal_validation_failures",
    "gossip_comm_messages_sent",
    "gossip_comm_messages_received",
    "gossip_comm_overflow_count",
    "logging_entries_checked",
    "logging_entries_written",
];

/// Once a channel is joined.
pub const CHANNEL: &[&str] = &["ledger_blockchain_height", "ledger_block_processing_time", "ledger_blockstorage_commit_time"];

/// Once gossip has run with a joined channel (its driver keeps these current as it works).
pub const CHANNEL_GOSSIP: &[&str] = &["gossip_membership_total_peers_known", "gossip_payload_buffer_size"];

/// Once a unary gRPC call was served (an endorser proposal, a gossip Ping).
pub const UNARY: &[&str] =
    &["grpc_server_unary_requests_received", "grpc_server_unary_requests_completed", "grpc_server_unary_request_duration"];

/// Once a gRPC stream was served and ended (a Deliver or gossip stream).
pub const STREAM: &[&str] = &[
    "grpc_server_stream_requests_received",
    "grpc_server_stream_requests_completed",
    "grpc_server_stream_request_duration",
    "grpc_server_stream_messages_received",
    "grpc_server_stream_messages_sent",
];

/// Once blocks were committed by gossip, with leader election on.
pub const GOSSIP: &[&str] = &["gossip_state_height", "gossip_state_commit_duration", "gossip_leader_election_leader"];

/// Once a deliver request for a joined channel was answered.
pub const DELIVER: &[&str] = &["deliver_requests_received", "deliver_requests_completed", "deliver_blocks_sent"];

/// Once proposals were answered, one refused as a duplicate and one by the channel's ACL.
pub const ENDORSER: &[&str] = &["endorser_proposal_duration", "endorser_duplicate_transaction_failures", "endorser_proposal_acl_failures"];

/// The process families, on the real binary only.
pub const PROCESS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
];

/// One sample: its name, labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One family of an exposition.
#[derive(Clone, Debug, Default)]
pub struct Family {
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// What Fabric's list says about a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub kind: String,
    pub labels: BTreeSet<String>,
    /// Histograms: the bucket bounds, without +Inf.
    pub buckets: Option<Vec<f64>>,
}

/// A parsed exposition, by family name.
pub type Exposition = BTreeMap<String, Family>;

/// Parses the text format 0.0.4: `# TYPE` lines open families, samples belong to the family
/// last opened (a sample outside its family is a problem [`check`] reports).
pub fn parse(text: &str) -> Exposition {
    let mut families = Exposition::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declaration.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert!(
                families.insert(name.to_string(), Family { kind: kind.to_string(), samples: Vec::new() }).is_none(),
                "{name} declared twice"
            );
            current = Some(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = parse_sample(line);
        let family = current.as_ref().unwrap_or_else(|| panic!("sample before any TYPE line: {line:?}"));
        families.get_mut(family).unwrap().samples.push(sample);
    }
    families
}

fn parse_sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample {line:?}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    let (name, labels) = match head.split_once('{') {
        None => (head.to_string(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
            let mut labels = BTreeMap::new();
            // Label values here never hold `",` (channel names, codes, levels, versions).
            for pair in body.split("\",").filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                labels.insert(key.to_string(), value.trim_end_matches('"').to_string());
            }
            (name.to_string(), labels)
        }
    };
    Sample { name, labels, value }
}

/// Fabric's list (the data file), by family name.
pub fn fabric_reference() -> BTreeMap<String, Reference> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fabric-2.2-peer-metrics.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut reference = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, kind, labels) = (fields[0], fields[1], fields[2]);
        let labels = if labels == "-" { BTreeSet::new() } else { labels.split(',').map(str::to_string).collect() };
        let buckets = fields.get(3).map(|b| b.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<_>>());
        assert_eq!(kind == "histogram", buckets.is_some(), "{line}");
        reference.insert(name.to_string(), Reference { kind: kind.to_string(), labels, buckets });
    }
    reference
}

/// Everything wrong with `exposition` as Fabric's peer would have it (empty when it conforms).
pub fn check(exposition: &Exposition) -> Vec<String> {
    let reference = fabric_reference();
    let mut problems = Vec::new();
    for (name, family) in exposition {
        // Sample names: a 0.0.4 counter's and gauge's are the family's; a histogram's add a suffix.
        let suffixes: &[&str] = match family.kind.as_str() {
            "counter" | "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count"],
            other => {
                problems.push(format!("{name}: type {other} (Fabric's peer has counters, gauges and histograms)"));
                continue;
            }
        };
        for sample in &family.samples {
            if !suffixes.iter().any(|suffix| sample.name == format!("{name}{suffix}")) {
                problems.push(format!("{name}: a sample named {}", sample.name));
            }
        }
        if name.starts_with("peer_core_") {
            continue;
        }
        let Some(expected) = reference.get(name) else {
            problems.push(format!("{name}: not one of Fabric 2.2's peer metrics, and not named peer_core_*"));
            continue;
        };
        if family.kind != expected.kind {
            problems.push(format!("{name}: type {} where Fabric's is {}", family.kind, expected.kind));
        }
        for sample in &family.samples {
            let labels: BTreeSet<String> =
                sample.labels.keys().filter(|key| !(sample.name.ends_with("_bucket") && *key == "le")).cloned().collect();
            if labels != expected.labels {
                problems.push(format!("{name}: labels {labels:?} where Fabric's are {:?}", expected.labels));
            }
        }
        if let Some(buckets) = &expected.buckets {
            let bounds: BTreeMap<Vec<(String, String)>, Vec<f64>> =
                family.samples.iter().filter(|s| s.name.ends_with("_bucket")).fold(BTreeMap::new(), |mut by_series, sample| {
                    let series: Vec<(String, String)> =
                        sample.labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect();
                    let le = &sample.labels["le"];
                    let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                    by_series.entry(series).or_default().push(bound);
                    by_series
                });
            let mut expected_bounds = buckets.clone();
            expected_bounds.push(f64::INFINITY);
            for (series, bounds) in bounds {
                if bounds != expected_bounds {
                    problems.push(format!("{name}{series:?}: buckets {bounds:?} where Fabric's are {expected_bounds:?}"));
                }
            }
        }
    }
    problems
}

/// Asserts `exposition` conforms ([`check`]) and has every family in `families`.
pub fn assert_fabric(exposition: &Exposition, families: &[&str], text: &str) {
    let problems = check(exposition);
    assert!(problems.is_empty(), "the exposition does not speak Fabric 2.2:\n{}\n\n{text}", problems.join("\n"));
    let missing: Vec<&str> = families.iter().copied().filter(|f| !exposition.contains_key(*f)).collect();
    assert!(missing.is_empty(), "missing families {missing:?}:\n{text}");
}

/// The sum of the samples named `sample` whose labels include `labels`.
pub fn value(exposition: &Exposition, sample: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .values()
        .flat_map(|family| &family.samples)
        .filter(|s| s.name == sample && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v)))
        .map(|s| s.value)
        .sum()
}

/// Whether the family has at least one sample.
pub fn has_samples(exposition: &Exposition, family: &str) -> bool {
    exposition.get(family).is_some_and(|f| !f.samples.is_empty())
}

/// The body of an HTTP/1.1 response (after the blank line).
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or(response, |(_, body)| body)
}

#[test]
fn expected_families_are_all_covered() {
    let groups: BTreeSet<&str> = [ALWAYS, CHANNEL, CHANNEL_GOSSIP, UNARY, STREAM, GOSSIP, DELIVER, ENDORSER].concat().into_iter().collect();
    let expected: BTreeSet<&str> = EXPECTED.iter().copied().collect();
    assert_eq!(groups, expected);
    // And every one is Fabric's, with the type the data file gives.
    let reference = fabric_reference();
    for family in EXPECTED.iter().chain(PROCESS) {
        assert!(reference.contains_key(*family), "{family} is not in Fabric's list");
    }
}
