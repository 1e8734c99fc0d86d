//! The command line: version, help, usage errors, and config loading as `node` commands see it.

use crate::support::{peer_core, repo_root};

const NOT_FOUND: &str = "Fatal error when initializing core config : Could not find config file. Please make sure that FABRIC_CFG_PATH is set to a path which contains core.yaml";

#[test]
fn version_needs_no_config_and_prints_fabrics_block() {
    let dir = tempfile::tempdir().unwrap();
    let run = peer_core(dir.path(), &[], &["version"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.split('\n').collect();
    assert_eq!(lines[0], "peer-core:");
    assert!(lines[1].starts_with(" Version: "), "{lines:?}");
    assert!(lines[2].starts_with(" Commit SHA: "), "{lines:?}");
    assert!(lines[3].starts_with(" Rust version: rustc "), "{lines:?}");
    assert_eq!(lines[4], format!(" OS/Arch: {}/{}", std::env::consts::OS, std::env::consts::ARCH));
    assert_eq!(&lines[5..], [" Chaincode:", "  Base Docker Label: org.hyperledger.fabric", "  Docker Namespace: hyperledger", "", ""]);
    assert_eq!(run.stderr, "");
}

#[test]
fn trailing_args_are_rejected_like_fabric() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["version", "extra"][..], &["node", "start", "extra"][..]] {
        let run = peer_core(dir.path(), &[], args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(run.stderr, "Error: trailing args detected\n", "{args:?}");
    }
}

#[test]
fn help_exits_zero_and_usage_errors_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &[][..], &["node"][..], &["node", "start", "--help"][..], &["node", "rollback", "-h"][..]] {
        let run = peer_core(dir.path(), &[], args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(run.stdout.contains("Usage: peer-core") || run.stderr.contains("Usage: peer-core"), "{args:?}");
    }
    for args in [&["bogus"][..], &["node", "bogus"][..], &["node", "start", "--nope"][..], &["node", "rollback", "-b", "x"][..]] {
        let run = peer_core(dir.path(), &[], args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(run.stderr.starts_with("error: "), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn node_commands_without_a_findable_core_yaml_fail_with_fabrics_error() {
    let dir = tempfile::tempdir().unwrap();
    if std::path::Path::new("/etc/hyperledger/fabric/core.yaml").exists() {
        eprintln!("SKIPPED: this machine has /etc/hyperledger/fabric/core.yaml");
        return;
    }
    for args in [
        &["node", "start"][..],
        &["node", "reset"][..],
        &["node", "rollback", "-c", "ch", "-b", "1"][..],
        &["node", "pause", "-c", "ch"][..],
        &["node", "resume", "-c", "ch"][..],
        &["node", "rebuild-dbs"][..],
        &["node", "upgrade-dbs"][..],
    ] {
        let run = peer_core(dir.path(), &[], args);
        assert_eq!(run.code, 1, "{args:?}");
        assert_eq!(run.stderr, format!("Error: {NOT_FOUND}\n"), "{args:?}");
    }
}

#[test]
fn fabric_cfg_path_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let run = peer_core(dir.path(), &[("FABRIC_CFG_PATH", "/no/such/dir")], &["node", "start"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "Error: Fatal error when initializing core config : FABRIC_CFG_PATH /no/such/dir does not exist\n"
    );
}

#[test]
fn a_bad_env_override_names_the_variable_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo_root().join("sampleconfig");
    let env = [("FABRIC_CFG_PATH", sample.to_str().unwrap()), ("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL", "notaduration")];
    let run = peer_core(dir.path(), &env, &["node", "start"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "Error: Fatal error when initializing core config : invalid value for peer.gossip.aliveTimeInterval in env var \
         CORE_PEER_GOSSIP_ALIVETIMEINTERVAL: \"notaduration\" is not a duration: expected a number followed by a unit, \
         e.g. 5s, 1500ms or 2h45m\n"
    );
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.yaml"), "peer:\n    id: jdoe\n   listenAddress: x\n").unwrap();
    let run = peer_core(dir.path(), &[], &["node", "start"]);
    assert_eq!(run.code, 1);
    let file = dir.path().join("core.yaml");
    assert!(
        run.stderr.starts_with(&format!(
            "Error: Fatal error when initializing core config : error when reading core config file: While parsing config: {}:3:",
            file.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn core_yaml_in_the_working_directory_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(repo_root().join("sampleconfig/core.yaml")).unwrap();
    std::fs::write(dir.path().join("core.yaml"), sample).unwrap();
    let run = peer_core(dir.path(), &[], &["node", "upgrade-dbs"]);
    // Config loads from ./core.yaml; the command itself is built by the ledger issue.
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains(&format!("config loaded from {}", dir.path().join("core.yaml").display())), "{}", run.stderr);
}
