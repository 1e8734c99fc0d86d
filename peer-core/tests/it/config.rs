//! core.yaml loading, seen from the outside: real files load, and every case under
//! `tests/data/config/` gives the outcome recorded in its snapshot.
//!
//! A case file is a core.yaml. Its leading comment lines are directives: the first is a
//! description; `# env: NAME=VALUE` sets an env var; `# show: <section>` adds that section of the
//! loaded config to the snapshot (sections: peer, gossip, delivery_client, ledger, operations,
//! metrics, chaincode, vm). Cases are loaded as if from `/etc/peer/<case>.yaml`, so paths in
//! snapshots do not depend on the checkout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use peer_core::config::{self, Config, ConfigError, EnvVars, NoteLevel};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fabric_fixture() -> Option<PathBuf> {
    let path = repo_root().join("../shared/fixtures/fabric-v2.2.15/core.yaml");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIPPED: {} is not there (shared/ is not beside the checkout)", path.display());
        None
    }
}

fn load_file(path: &Path, env: &EnvVars) -> Result<config::Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).unwrap();
    Config::from_yaml(&text, path, env)
}

#[test]
fn fabric_v2_2_15_core_yaml_loads_unchanged_with_fabric_defaults() {
    let Some(path) = fabric_fixture() else { return };
    let loaded = load_file(&path, &EnvVars::new()).unwrap_or_else(|e| panic!("{e}"));
    let config = loaded.config;
    let dir = path.parent().unwrap();
    assert_eq!(config.peer.id, "jdoe");
    assert_eq!(config.peer.network_id, "dev");
    assert_eq!(config.peer.listen_address.to_string(), "0.0.0.0:7051");
    assert_eq!(config.peer.local_msp_id, "SampleOrg");
    assert_eq!(config.peer.msp_config_path, dir.join("msp"));
    assert_eq!(config.peer.file_system_path, Path::new("/var/hyperledger/production"));
    assert_eq!(config.peer.tls.cert_file, Some(dir.join("tls/server.crt")));
    assert_eq!(config.peer.endorser_concurrency, 2500);
    assert_eq!(config.peer.max_recv_msg_size, 104_857_600);
    assert_eq!(config.gossip.external_endpoint, None);
    assert_eq!(config.gossip.alive_expiration_timeout.as_secs(), 25);
    assert_eq!(config.gossip.send_buff_size, 200);
    assert_eq!(config.vm.endpoint, "unix:///var/run/docker.sock");
    assert_eq!(config.ledger.snapshots_root_dir, Path::new("/var/hyperledger/production/ledgersData/snapshots"));
    assert_eq!(config.chaincode.system.values().filter(|on| **on).count(), 4);
    // Every key of Fabric's file is one the peer reads (or knows it may ignore), and nothing warns.
    let loud: Vec<_> = loaded.notes.iter().filter(|n| n.level > NoteLevel::Debug).collect();
    assert!(loaded.notes.iter().all(|n| !n.message.starts_with("ignoring key")), "{:#?}", loaded.notes);
    assert!(loud.is_empty(), "{loud:#?}");
}

#[test]
fn fabric_core_yaml_takes_env_overrides_for_addresses_and_paths() {
    let Some(path) = fabric_fixture() else { return };
    let env = EnvVars::new()
        .with("CORE_PEER_LISTENADDRESS", "127.0.0.1:17051")
        .with("CORE_PEER_ADDRESS", "127.0.0.1:17051")
        .with("CORE_PEER_FILESYSTEMPATH", "/tmp/peer-data")
        .with("CORE_OPERATIONS_LISTENADDRESS", "127.0.0.1:19443")
        .with("CORE_PEER_GOSSIP_BOOTSTRAP", "a.example:7051  b.example:8051");
    let config = load_file(&path, &env).unwrap_or_else(|e| panic!("{e}")).config;
    assert_eq!(config.peer.listen_address.port, 17051);
    assert_eq!(config.peer.file_system_path, Path::new("/tmp/peer-data"));
    assert_eq!(config.operations.listen_address.unwrap().port, 19443);
    let bootstrap: Vec<String> = config.gossip.bootstrap.iter().map(ToString::to_string).collect();
    assert_eq!(bootstrap, ["a.example:7051", "b.example:8051"]);
}

#[test]
fn sampleconfig_loads_and_is_fabric_compatible() {
    let path = repo_root().join("sampleconfig/core.yaml");
    let loaded = load_file(&path, &EnvVars::new()).unwrap_or_else(|e| panic!("{e}"));
    let config = loaded.config;
    assert!(loaded.notes.iter().all(|n| n.level == NoteLevel::Debug && !n.message.starts_with("ignoring key")), "{:#?}", loaded.notes);
    assert_eq!(config.peer.listen_address.to_string(), "127.0.0.1:7051");
    assert_eq!(config.peer.file_system_path, repo_root().join("sampleconfig/production"));
    assert_eq!(config.peer.msp_config_path, repo_root().join("sampleconfig/msp"));
    assert_eq!(config.vm.endpoint, "");
    if let Some(fabric) = fabric_fixture() {
        // Same gossip timings and limits as Fabric's sample: only addresses and paths differ.
        let fabric = load_file(&fabric, &EnvVars::new()).unwrap().config;
        assert_eq!(config.gossip, fabric.gossip);
        assert_eq!(config.delivery_client, fabric.delivery_client);
        assert_eq!(config.peer.keepalive, fabric.peer.keepalive);
        // Ours chains Fabric 3.x's TimeWindowCheck after Fabric 2.2's filters; the rest is the same.
        let mut handlers = fabric.peer.handlers.clone();
        handlers.auth_filters.push("TimeWindowCheck".into());
        assert_eq!(config.peer.handlers, handlers);
        assert_eq!(config.chaincode, fabric.chaincode);
    }
}

#[test]
fn locating_core_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let env = EnvVars::new();
    // Nothing in ./ (and, on a dev machine, nothing in /etc/hyperledger/fabric).
    if !Path::new("/etc/hyperledger/fabric/core.yaml").exists() {
        let err = config::locate(&env, cwd).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Fatal error when initializing core config : Could not find config file. Please make sure that FABRIC_CFG_PATH is set to a path which contains core.yaml"
        );
    }
    let missing = cwd.join("nope");
    let err = config::locate(&env.clone().with("FABRIC_CFG_PATH", missing.to_str().unwrap()), cwd).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Fatal error when initializing core config : FABRIC_CFG_PATH {} does not exist", missing.display())
    );
    // FABRIC_CFG_PATH is the only place searched, even when ./ has a core.yaml.
    std::fs::write(cwd.join("core.yaml"), "peer: {}\n").unwrap();
    std::fs::create_dir(cwd.join("cfg")).unwrap();
    let env_cfg = env.clone().with("FABRIC_CFG_PATH", "cfg");
    assert!(matches!(config::locate(&env_cfg, cwd), Err(ConfigError::NotFound { .. })));
    assert_eq!(config::locate(&env, cwd).unwrap(), cwd.join("core.yaml"));
    // viper's extension order: core.json beats core.yaml; core.yml is found too.
    std::fs::write(cwd.join("cfg/core.yml"), "").unwrap();
    assert_eq!(config::locate(&env_cfg, cwd).unwrap(), cwd.join("cfg/core.yml"));
    std::fs::write(cwd.join("cfg/core.toml"), "").unwrap();
    let err = config::load(&env_cfg, cwd).unwrap_err();
    assert!(err.to_string().contains("peer-core reads core.yaml (YAML or JSON), not toml"), "{err}");
}

#[test]
fn config_cases() {
    insta::glob!("../data/config", "*.yaml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let (description, env, sections) = directives(&text);
        let name = path.file_name().unwrap();
        let pretend = Path::new("/etc/peer").join(name);
        let mut out = format!("{description}\n");
        match Config::from_yaml(&text, &pretend, &env) {
            Ok(loaded) => {
                out.push_str("outcome: loaded\n");
                for note in &loaded.notes {
                    let _ = writeln!(out, "note: {:?} [{}] {}", note.level, note.target, note.message);
                }
                for section in &sections {
                    let _ = writeln!(out, "{section}: {}", section_debug(&loaded.config, section));
                }
            }
            Err(err) => {
                let _ = write!(out, "outcome: error\n{err}\n");
            }
        }
        insta::assert_snapshot!(out);
    });
}

fn directives(text: &str) -> (String, EnvVars, Vec<String>) {
    let mut description = String::new();
    let mut env = EnvVars::new();
    let mut sections = Vec::new();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let line = line.trim_start_matches('#').trim();
        if let Some(pair) = line.strip_prefix("env:") {
            let (name, value) = pair.trim().split_once('=').expect("env: NAME=VALUE");
            env = env.with(name, value);
        } else if let Some(section) = line.strip_prefix("show:") {
            sections.push(section.trim().to_string());
        } else if description.is_empty() {
            description = line.to_string();
        }
    }
    assert!(!description.is_empty(), "a case needs a description line");
    (description, env, sections)
}

fn section_debug(config: &Config, section: &str) -> String {
    match section {
        "peer" => format!("{:#?}", config.peer),
        "gossip" => format!("{:#?}", config.gossip),
        "delivery_client" => format!("{:#?}", config.delivery_client),
        "ledger" => format!("{:#?}", config.ledger),
        "operations" => format!("{:#?}", config.operations),
        "metrics" => format!("{:#?}", config.metrics),
        "chaincode" => format!("{:#?}", config.chaincode),
        "vm" => format!("{:#?}", config.vm),
        other => panic!("unknown section {other}"),
    }
}
