//! Config properties (proptest, fixed seed): a valid config means the same thing however it is
//! written.
//!
//! - **Written out and reloaded, equal.** The sample core.yaml, parsed into the config tree and
//!   written back as YAML (every scalar double-quoted, every map and list in block style),
//!   loads to the same `Config`; so does any valid set of values written into the file.
//! - **File or environment, equal.** Any valid set of values for a range of keys (durations in
//!   every Go form, integers, booleans, addresses, strings, lists) gives the same `Config`
//!   whether written into core.yaml or given as `CORE_*` overrides over the sample file.

use std::path::Path;

use peer_core::config::tree::{self, Node, NodeKind};
use peer_core::config::{Config, EnvVars};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

const SAMPLE: &str = include_str!("../../../sampleconfig/core.yaml");

fn path() -> &'static Path {
    Path::new("/etc/hyperledger/fabric/core.yaml")
}

fn load(text: &str, env: &EnvVars) -> Config {
    match Config::from_yaml(text, path(), env) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("a valid config was refused: {err}\n--- text ---\n{text}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Writing a tree back as YAML.

fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Block-style YAML for `node` at `indent` spaces, as the value after `key:` or `-`.
fn write(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match &node.kind {
        NodeKind::Null => out.push_str(" ~\n"),
        NodeKind::Scalar(text) => {
            out.push(' ');
            out.push_str(&quote(text));
            out.push('\n');
        }
        NodeKind::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        NodeKind::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        NodeKind::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&format!("{pad}-"));
                match &item.kind {
                    NodeKind::Map(_) | NodeKind::Seq(_) => {
                        // A nested collection starts on its own line, indented under the dash.
                        write(item, indent + 2, out);
                    }
                    _ => write(item, indent + 2, out),
                }
            }
        }
        NodeKind::Map(entries) => {
            out.push('\n');
            for (key, value) in entries {
                out.push_str(&format!("{pad}{}:", quote(&key.name)));
                write(value, indent + 2, out);
            }
        }
    }
}

fn to_yaml(root: &Node) -> String {
    let NodeKind::Map(entries) = &root.kind else { panic!("core.yaml is a map") };
    let mut out = String::new();
    for (key, value) in entries {
        out.push_str(&format!("{}:", quote(&key.name)));
        write(value, 2, &mut out);
    }
    out
}

/// Sets `dotted` (case-insensitive, as the reader matches keys) in the tree to `value`.
fn set(root: &mut Node, dotted: &str, value: NodeKind) {
    let mut node = root;
    for part in dotted.split('.') {
        let NodeKind::Map(entries) = &mut node.kind else { panic!("{dotted}: {part} is not under a map") };
        let index = match entries.iter().position(|(k, _)| k.name.eq_ignore_ascii_case(part)) {
            Some(index) => index,
            None => {
                entries.push((
                    tree::Key { name: part.to_string(), line: 0, column: 0 },
                    Node { kind: NodeKind::Map(Vec::new()), line: 0, column: 0 },
                ));
                entries.len() - 1
            }
        };
        node = &mut entries[index].1;
    }
    node.kind = value;
}

// ---------------------------------------------------------------------------------------------
// Valid values.

/// A valid value for one key: as YAML (a scalar or a list) and as an env var's text.
#[derive(Clone, Debug)]
enum Value {
    Scalar(String),
    List(Vec<String>),
}

impl Value {
    fn env_text(&self) -> String {
        match self {
            Value::Scalar(text) => text.clone(),
            // Fabric's env lists are whitespace-separated.
            Value::List(items) => items.join(" "),
        }
    }

    fn node(&self) -> NodeKind {
        let scalar = |text: &str| Node { kind: NodeKind::Scalar(text.to_string()), line: 0, column: 0 };
        match self {
            Value::Scalar(text) => NodeKind::Scalar(text.clone()),
            Value::List(items) => NodeKind::Seq(items.iter().map(|i| scalar(i)).collect()),
        }
    }
}

/// A positive duration in one of Go's spellings (`1500ms`, `1.5s`, `2m3s`, `1h`, `90s`, `250000us`).
fn duration() -> impl Strategy<Value = String> {
    (1u64..7_200_000, 0usize..4).prop_map(|(ms, form)| match form {
        0 => format!("{ms}ms"),
        1 if ms % 1000 == 0 => format!("{}s", ms / 1000),
        1 => format!("{}.{:03}s", ms / 1000, ms % 1000),
        2 => {
            let (m, rest) = (ms / 60_000, ms % 60_000);
            if m == 0 { format!("{ms}ms") } else { format!("{m}m{rest}ms") }
        }
        _ => format!("{}us", ms * 1000),
    })
}

fn boolean() -> impl Strategy<Value = String> {
    prop_oneof![Just("true"), Just("false"), Just("True"), Just("FALSE"), Just("t"), Just("0")].prop_map(String::from)
}

fn count(max: u64) -> impl Strategy<Value = String> {
    (1..=max).prop_map(|n| n.to_string())
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("127.0.0.1".to_string()),
        Just("[::1]".to_string()),
        Just("0.0.0.0".to_string()),
        "[a-z][a-z0-9-]{0,12}(\\.[a-z][a-z0-9-]{0,8}){0,2}",
    ]
}

fn address() -> impl Strategy<Value = String> {
    (host(), 1u16..=65535).prop_map(|(h, p)| format!("{h}:{p}"))
}

/// Keys with independent valid values (no cross-key rules), with their generators.
fn assignments() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let scalar = |s: BoxedStrategy<String>| s.prop_map(Value::Scalar).boxed();
    let keys: Vec<(&'static str, BoxedStrategy<Value>)> = vec![
        ("peer.id", scalar("[a-z][a-z0-9.-]{0,20}".boxed())),
        ("peer.networkId", scalar("[a-z][a-z0-9]{0,10}".boxed())),
        ("peer.authentication.timewindow", scalar(duration().boxed())),
        ("peer.keepalive.interval", scalar(duration().boxed())),
        ("peer.keepalive.deliveryClient.timeout", scalar(duration().boxed())),
        ("peer.limits.concurrency.deliverService", scalar(count(100_000).boxed())),
        ("peer.limits.concurrency.endorserService", scalar(count(100_000).boxed())),
        ("peer.gossip.pullInterval", scalar(duration().boxed())),
        ("peer.gossip.propagatePeerNum", scalar(count(64).boxed())),
        ("peer.gossip.maxBlockCountToStore", scalar(count(10_000).boxed())),
        ("peer.gossip.publishStateInfoInterval", scalar(duration().boxed())),
        ("peer.gossip.externalEndpoint", scalar(address().boxed())),
        ("peer.gossip.bootstrap", proptest::collection::vec(address(), 1..4).prop_map(Value::List).boxed()),
        ("peer.gossip.election.leaderAliveThreshold", scalar(duration().boxed())),
        ("peer.gossip.election.startupGracePeriod", scalar(duration().boxed())),
        ("peer.gossip.state.enabled", scalar(boolean().boxed())),
        ("peer.gossip.state.batchSize", scalar(count(1_000).boxed())),
        ("peer.gossip.state.checkInterval", scalar(duration().boxed())),
        ("peer.deliveryclient.connTimeout", scalar(duration().boxed())),
        ("peer.deliveryclient.reConnectBackoffThreshold", scalar(duration().boxed())),
        ("peer.discovery.enabled", scalar(boolean().boxed())),
        ("operations.listenAddress", scalar(address().boxed())),
    ];
    // Each key is set or left alone.
    let per_key: Vec<BoxedStrategy<Option<(&'static str, Value)>>> =
        keys.into_iter().map(|(key, value)| proptest::option::of(value.prop_map(move |v| (key, v))).boxed()).collect();
    per_key.prop_map(|set| set.into_iter().flatten().collect())
}

fn env_name(key: &str) -> String {
    format!("CORE_{}", key.replace('.', "_").to_uppercase())
}

fn config() -> ProptestConfig {
    ProptestConfig { rng_seed: RngSeed::Fixed(0xC0F16), cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

#[test]
fn the_sample_config_written_back_as_yaml_loads_the_same() {
    let root = tree::parse(SAMPLE).unwrap();
    let written = to_yaml(&root);
    assert_eq!(load(&written, &EnvVars::new()), load(SAMPLE, &EnvVars::new()));
    // The writer is exact: parsing its output gives the same tree shape and text.
    let reparsed = tree::parse(&written).unwrap();
    assert_eq!(to_yaml(&reparsed), written);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn values_in_the_file_or_in_the_environment_load_the_same(values in assignments()) {
        let mut root = tree::parse(SAMPLE).unwrap();
        let mut env = EnvVars::new();
        for (key, value) in &values {
            set(&mut root, key, value.node());
            env = env.with(&env_name(key), &value.env_text());
        }
        let from_file = load(&to_yaml(&root), &EnvVars::new());
        let from_env = load(SAMPLE, &env);
        prop_assert_eq!(&from_file, &from_env);
        // And the file written once more (reloaded tree, written again) is still the same config.
        let again = to_yaml(&tree::parse(&to_yaml(&root)).unwrap());
        prop_assert_eq!(load(&again, &EnvVars::new()), from_file);
    }
}
