//! core.yaml and `CORE_*` overrides: `config_yaml` (any text as core.yaml) and `env_overrides`
//! (any overrides over the shipped sampleconfig/core.yaml).
//!
//! Both load through [`Config::from_yaml`], which is what `config::load` calls once it has read
//! the file, then derive what `node start` derives from a validated config before it binds
//! anything (the announced address, the chaincode endpoints, the gossip, state and deliver
//! settings, a membership state machine and its first timers). Checked: nothing panics, the
//! same text and variables give the same result, and every error carries Fabric's prefix.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use peer_core::blocks::deliverclient::{DeliverClientConfig, retry_delay};
use peer_core::config::reader::env_var_name;
use peer_core::config::tree::{self, Node, NodeKind};
use peer_core::config::{Config, ConfigError, EnvVars, Loaded};
use peer_core::env::Instant;
use peer_core::gossip::comm::CommConfig;
use peer_core::gossip::discovery::{self, Discovery, DiscoveryConfig, SelfInfo};
use peer_core::gossip::identity::Identities;
use peer_core::gossip::message::Signer;
use peer_core::gossip::state::StateConfig;
use peer_core::node::address;
use rand_core::SeedableRng;

use crate::Outcome;
use crate::world::world;
use peer_core::testkit::epoch;

/// The shipped sample config, the base of `env_overrides`.
pub const SAMPLE_CORE_YAML: &str = include_str!("../../sampleconfig/core.yaml");

/// Where the fuzzed text claims to come from (relative paths resolve against its directory).
const CONFIG_PATH: &str = "/etc/hyperledger/fabric/core.yaml";

/// The prefix every config loading error carries (Fabric's).
const FATAL: &str = "Fatal error when initializing core config : ";

/// Overrides a test or the simulator typically sets, for the "with env overrides" half of
/// `config_yaml`.
fn typical_overrides() -> EnvVars {
    EnvVars::new()
        .with("CORE_PEER_LISTENADDRESS", "0.0.0.0:7051")
        .with("CORE_PEER_ADDRESS", "peer0.org1.example.com:7051")
        .with("CORE_PEER_MSPCONFIGPATH", "msp")
        .with("CORE_PEER_FILESYSTEMPATH", "/var/fuzz/production")
        .with("CORE_PEER_ID", "peer0.org1.example.com")
        .with("CORE_PEER_LOCALMSPID", "Org1MSP")
        .with("CORE_PEER_GOSSIP_BOOTSTRAP", "peer1.org1.example.com:7051 peer2.org1.example.com:7051")
        .with("CORE_PEER_GOSSIP_EXTERNALENDPOINT", "peer0.org1.example.com:7051")
        .with("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL", "500ms")
        .with("CORE_OPERATIONS_LISTENADDRESS", "127.0.0.1:0")
        .with("CORE_CHAINCODE_MODE", "dev")
        // An unused variable is reported, never an error.
        .with("CORE_NO_SUCH_KEY", "x")
}

/// `config_yaml`: the input is core.yaml's text. Loaded without env vars and with
/// [`typical_overrides`] (which supply the keys a peer cannot start without); the outcome is
/// the latter's.
pub fn config_yaml(data: &[u8]) -> Outcome {
    // The CLI reads the file as UTF-8 (`read_to_string`); other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return Outcome::rejected("not UTF-8") };
    let plain = load(text, &EnvVars::new());
    let overridden = load(text, &typical_overrides());
    // A syntax error is one no variable can fix.
    if let Err(ConfigError::Syntax { .. }) = &plain {
        assert!(matches!(overridden, Err(ConfigError::Syntax { .. })), "env vars changed a YAML syntax error: {overridden:?}");
    }
    // The outcome is the one with overrides, as a peer in a test or the simulator runs.
    match overridden {
        Ok(_) => Outcome::Accepted,
        Err(err) => Outcome::Rejected(err.to_string()),
    }
}

/// One `CORE_*` variable: a real key's name (from the sample's keys) or any name, and any value.
#[derive(Arbitrary, Debug)]
enum Var {
    Known { key: u16, value: String },
    Any { suffix: String, value: String },
}

/// The env var names of every key in the sample core.yaml (maps walked; leaves and lists).
static SAMPLE_KEY_VARS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let root = tree::parse(SAMPLE_CORE_YAML).expect("the sample core.yaml parses");
    let mut names = Vec::new();
    collect_keys(&root, "", &mut names);
    names.iter().map(|key| env_var_name(key)).collect()
});

fn collect_keys(node: &Node, prefix: &str, out: &mut Vec<String>) {
    if let NodeKind::Map(entries) = &node.kind {
        for (key, child) in entries {
            let path = if prefix.is_empty() { key.name.clone() } else { format!("{prefix}.{}", key.name) };
            out.push(path.clone());
            collect_keys(child, &path, out);
        }
    }
}

/// `env_overrides`: the input is a list of `CORE_*` variables (through `arbitrary`) applied over
/// the shipped sampleconfig/core.yaml.
pub fn env_overrides(data: &[u8]) -> Outcome {
    let Ok(vars) = Vec::<Var>::arbitrary_take_rest(Unstructured::new(data)) else { return Outcome::rejected("not a list of variables") };
    let names = &*SAMPLE_KEY_VARS;
    let mut env = EnvVars::new();
    for var in vars {
        env = match var {
            Var::Known { key, value } => env.with(&names[usize::from(key) % names.len()], &value),
            Var::Any { suffix, value } => env.with(&format!("CORE_{suffix}"), &value),
        };
    }
    match load(SAMPLE_CORE_YAML, &env) {
        Ok(_) => Outcome::Accepted,
        Err(ConfigError::Syntax { .. }) => panic!("env vars made the sample core.yaml a syntax error"),
        Err(err) => Outcome::Rejected(err.to_string()),
    }
}

/// Loads `text` twice (the results must agree) and derives the start settings from the config.
fn load(text: &str, env: &EnvVars) -> Result<Loaded, ConfigError> {
    let path = Path::new(CONFIG_PATH);
    let first = Config::from_yaml(text, path, env);
    let second = Config::from_yaml(text, path, env);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.config, b.config, "the same core.yaml and env gave two configs");
            assert_eq!(a.notes, b.notes, "the same core.yaml and env gave two sets of notes");
            derive(&a.config);
        }
        (Err(a), Err(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            assert_eq!(a, b, "the same core.yaml and env failed two ways");
            assert!(a.starts_with(FATAL), "a config error without Fabric's prefix: {a}");
        }
        _ => panic!("the same core.yaml and env loaded once and failed once: {first:?} / {second:?}"),
    }
    first
}

/// What `node start` computes from a validated config before binding anything.
fn derive(config: &Config) {
    let interfaces = [IpAddr::from([10, 0, 0, 5]), IpAddr::from([127, 0, 0, 1])];
    let peer_address = address::resolve_peer_address(&config.peer, &interfaces);
    // May refuse (e.g. an unspecified chaincode address outside dev mode): an error, not a panic.
    let _ = address::chaincode_endpoints(&config.peer, &peer_address.host, config.chaincode.mode);
    let _ = CommConfig::from_config(config);
    let _ = StateConfig::from_config(config);
    let deliver = DeliverClientConfig::from_config(config);
    for failures in [0, 1, 10, 100, u32::MAX] {
        let delay = retry_delay(failures, deliver.reconnect_backoff_threshold);
        assert!(delay <= deliver.reconnect_backoff_threshold.max(Duration::from_millis(100)), "retry delay {delay:?} above its cap");
    }

    let internal = config.gossip.endpoint.clone().unwrap_or_else(|| peer_address.clone()).to_string();
    let external = config.gossip.external_endpoint.as_ref().map(ToString::to_string).unwrap_or_default();
    let bootstrap: Vec<String> = config.gossip.bootstrap.iter().map(ToString::to_string).collect();
    let bootstrap = discovery::bootstrap_without_self(&bootstrap, &internal, &external);
    let anchors =
        config.gossip.trusted_msps.iter().flat_map(|org| org.anchor_peers.iter().map(|a| (a.to_string(), org.id.clone()))).collect();
    let settings = DiscoveryConfig::from_config(&config.gossip, bootstrap, anchors);
    let _ = settings.alive_store_ttl();

    // The membership state machine starts on these settings and runs its first timers.
    let world = world();
    let signer: Arc<dyn Signer> = Arc::new(world.peer.clone());
    let identities = Identities::new(&world.peer, world.trusted_msps());
    let me =
        SelfInfo { pki_id: world.peer.pki_id(), org: world.peer.msp.id.clone(), external_endpoint: external, internal_endpoint: internal };
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut discovery = Discovery::new(settings, me, signer, identities, rng, Instant(0), epoch());
    let mut now = Instant(0);
    for _ in 0..3 {
        now = now.max(discovery.poll_timeout());
        discovery.handle_timeout(now);
        while discovery.poll_transmit().is_some() {}
        while discovery.poll_event().is_some() {}
    }
}
