//! The command line: version, help, usage errors, and config loading as `node` commands see it.

use crate::support::{Run, peer_core, repo_root};

/// Asserts the run failed with exactly one line on stderr: Fabric's ERROR log line from InitCmd.
fn assert_init_error(run: &Run, message: &str) {
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stderr);
    assert!(lines[0].contains(" UTC [main] InitCmd -> ERRO "), "{}", lines[0]);
    assert!(lines[0].ends_with(&format!("\u{1b}[0m {message}")), "{}\nexpected to end with: {message}", lines[0]);
}

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
        assert_init_error(&run, NOT_FOUND);
    }
}

#[test]
fn fabric_cfg_path_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let run = peer_core(dir.path(), &[("FABRIC_CFG_PATH", "/no/such/dir")], &["node", "start"]);
    assert_init_error(&run, "Fatal error when initializing core config : FABRIC_CFG_PATH /no/such/dir does not exist");
}

#[test]
fn a_bad_env_override_names_the_variable_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo_root().join("sampleconfig");
    let env = [("FABRIC_CFG_PATH", sample.to_str().unwrap()), ("CORE_PEER_GOSSIP_ALIVETIMEINTERVAL", "notaduration")];
    let run = peer_core(dir.path(), &env, &["node", "start"]);
    assert_init_error(
        &run,
        "Fatal error when initializing core config : invalid value for peer.gossip.aliveTimeInterval in env var \
         CORE_PEER_GOSSIP_ALIVETIMEINTERVAL: \"notaduration\" is not a duration: expected a number followed by a unit, \
         e.g. 5s, 1500ms or 2h45m",
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
        run.stderr.contains(&format!(
            "[main] InitCmd -> ERRO 001\u{1b}[0m Fatal error when initializing core config : error when reading core config file: While parsing config: {}:3:",
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
    let msp = repo_root().join("sampleconfig/msp");
    let run = peer_core(dir.path(), &[("CORE_PEER_MSPCONFIGPATH", msp.to_str().unwrap())], &["node", "upgrade-dbs"]);
    // Config loads from ./core.yaml, and its relative fileSystemPath resolves beside it.
    assert_eq!(run.code, 0, "{}", run.stderr);
    let data = dir.path().join("production/ledgersData");
    assert!(run.stderr.contains(&format!("Ledger data folder from config = [{}]", data.display())), "{}", run.stderr);
}

#[test]
fn node_commands_load_the_local_msp_after_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo_root().join("sampleconfig");
    let cfg = ("FABRIC_CFG_PATH", sample.to_str().unwrap());
    let run = peer_core(dir.path(), &[cfg, ("CORE_PEER_MSPCONFIGPATH", "/no/msp")], &["node", "start"]);
    assert_init_error(
        &run,
        "Cannot run peer because cannot init crypto, specified path \"/no/msp\" does not exist or cannot be accessed: \
         No such file or directory (os error 2)",
    );
    // The MSP ID is a label from config (certificates do not carry it), so it names the MSP and
    // feeds the PKI-ID: the same directory under another ID is another gossip identity.
    let pki_id = |run: &crate::support::Run| run.stderr.split("PKI-ID ").nth(1).map(|s| s[..64].to_string());
    let data = dir.path().join("data");
    let debug = [cfg, ("FABRIC_LOGGING_SPEC", "main=debug:info"), ("CORE_PEER_FILESYSTEMPATH", data.to_str().unwrap())];
    let sample_org = peer_core(dir.path(), &debug, &["node", "rebuild-dbs"]);
    let org9 = peer_core(dir.path(), &[&debug[..], &[("CORE_PEER_LOCALMSPID", "Org9MSP")]].concat(), &["node", "rebuild-dbs"]);
    assert!(org9.stderr.contains("Loaded the local MSP Org9MSP (PKI-ID "), "{}", org9.stderr);
    assert!(pki_id(&org9).is_some());
    assert_ne!(pki_id(&org9), pki_id(&sample_org));
}

#[test]
fn fabrics_own_core_yaml_and_sample_msp_load() {
    let fixtures = repo_root().join("../shared/fixtures/fabric-v2.2.15");
    if !fixtures.is_dir() {
        eprintln!("SKIPPED: {} is not there", fixtures.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("FABRIC_CFG_PATH", fixtures.to_str().unwrap()),
        ("CORE_PEER_FILESYSTEMPATH", data.to_str().unwrap()),
        ("FABRIC_LOGGING_SPEC", "main=debug:info"),
    ];
    let run = peer_core(dir.path(), &env, &["node", "rebuild-dbs"]);
    // Config and MSP load, with Fabric's PKI-ID, and the command runs.
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("MSP SampleOrg (PKI-ID 0d46737a45894d123895671221dbaddf8480fb0364f404be3aed491df442945f)"),
        "{}",
        run.stderr
    );
}

#[test]
fn msp_generate_is_reproducible_with_a_seed_and_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &str| {
        ["msp", "generate", "--org", "Org1MSP", "--domain", "org1.example.com", "--peers", "2", "--seed", "7", "--out", out]
            .map(String::from)
    };
    for out in ["a", "b"] {
        let a = args(out);
        let run = peer_core(dir.path(), &[], &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            run.stdout,
            format!(
                "Generated Org1MSP (peer0.org1.example.com, peer1.org1.example.com, Admin@org1.example.com) in {out}/peerOrganizations/org1.example.com\n"
            )
        );
    }
    let diff = std::process::Command::new("diff").arg("-r").arg(dir.path().join("a")).arg(dir.path().join("b")).output();
    if let Ok(diff) = diff {
        assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stdout));
    }
    // The generated peer MSP is usable as a peer's local MSP.
    let sample = repo_root().join("sampleconfig");
    let msp = dir.path().join("a/peerOrganizations/org1.example.com/peers/peer1.org1.example.com/msp");
    let data = dir.path().join("data");
    let env = [
        ("FABRIC_CFG_PATH", sample.to_str().unwrap()),
        ("CORE_PEER_MSPCONFIGPATH", msp.to_str().unwrap()),
        ("CORE_PEER_LOCALMSPID", "Org1MSP"),
        ("CORE_PEER_FILESYSTEMPATH", data.to_str().unwrap()),
        ("FABRIC_LOGGING_SPEC", "main=debug:info"),
    ];
    let run = peer_core(dir.path(), &env, &["node", "rebuild-dbs"]);
    assert!(run.stderr.contains("Loaded the local MSP Org1MSP (PKI-ID "), "{}", run.stderr);
    // Without a seed the keys are fresh each time.
    let run = peer_core(dir.path(), &[], &["msp", "generate", "--org", "O", "--domain", "o.example", "--out", "c"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = peer_core(dir.path(), &[], &["msp", "generate", "--org", "O", "--domain", "o.example", "--out", "d"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let key = |out: &str| std::fs::read(dir.path().join(out).join("peerOrganizations/o.example/ca/priv_sk")).unwrap();
    assert_ne!(key("c"), key("d"));
}

/// An ordering-service org in cryptogen's layout, and a genesis block made from the folders
/// (the orgs' `msp/` or the org folder above it): a peer accepts it (`ChannelConfig` parses it),
/// with the given orderer endpoint and anchor peers.
#[test]
fn msp_generate_orderer_org_and_create_genesis_from_the_folders() {
    let dir = tempfile::tempdir().unwrap();
    let run =
        peer_core(dir.path(), &[], &["msp", "generate", "--orderer", "--org", "OrdererMSP", "--domain", "example.com", "--out", "crypto"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "Generated OrdererMSP (orderer.example.com, Admin@example.com) in crypto/ordererOrganizations/example.com\n");
    let node = dir.path().join("crypto/ordererOrganizations/example.com/orderers/orderer.example.com");
    for file in ["msp/signcerts/orderer.example.com-cert.pem", "msp/keystore/priv_sk", "tls/server.crt", "tls/server.key", "tls/ca.crt"] {
        assert!(node.join(file).is_file(), "{file} is missing");
    }
    let run = peer_core(dir.path(), &[], &["msp", "generate", "--org", "Org1MSP", "--domain", "org1.example.com", "--out", "crypto"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Fabric's own sample MSP (no NodeOUs, admincerts) is an org folder too.
    let sample_msp = format!("SampleOrg={}", repo_root().join("sampleconfig/msp").display());
    let args = [
        "channel",
        "create-genesis",
        "-c",
        "mychannel",
        "--outputBlock",
        "mychannel.block",
        "--orderer-org",
        "OrdererMSP=crypto/ordererOrganizations/example.com/msp",
        "--orderer",
        "127.0.0.1:7050",
        "--org",
        "Org1MSP=crypto/peerOrganizations/org1.example.com",
        "--anchor-peer",
        "Org1MSP=127.0.0.1:7051",
        "--org",
        &sample_msp,
    ];
    let run = peer_core(dir.path(), &[], &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "Wrote the genesis block of channel mychannel to mychannel.block\n");
    let bytes = std::fs::read(dir.path().join("mychannel.block")).unwrap();
    let block = <proto::common::Block as prost::Message>::decode(bytes.as_slice()).unwrap();
    let config = peer_core::channel::ChannelConfig::from_block(&block).unwrap();
    assert_eq!(config.orderer_endpoints(), ["127.0.0.1:7050"]);
    let anchors: Vec<(String, u16)> = config.application.orgs["Org1MSP"].anchor_peers.iter().map(|a| (a.host.clone(), a.port)).collect();
    assert_eq!(anchors, [("127.0.0.1".to_string(), 7051)]);
    assert!(config.msps().contains_key("SampleOrg") && config.msps().contains_key("OrdererMSP"));
}

/// The PKI-ID the peer itself logs for its local MSP (`node rebuild-dbs` loads it first).
fn pki_id_the_peer_computes(dir: &std::path::Path, msp: &std::path::Path, msp_id: &str) -> String {
    let sample = repo_root().join("sampleconfig");
    let data = dir.join("pki-id-data");
    let env = [
        ("FABRIC_CFG_PATH", sample.to_str().unwrap()),
        ("CORE_PEER_MSPCONFIGPATH", msp.to_str().unwrap()),
        ("CORE_PEER_LOCALMSPID", msp_id),
        ("CORE_PEER_FILESYSTEMPATH", data.to_str().unwrap()),
        ("FABRIC_LOGGING_SPEC", "main=debug:info"),
    ];
    let run = peer_core(dir, &env, &["node", "rebuild-dbs"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let marker = format!("Loaded the local MSP {msp_id} (PKI-ID ");
    let at = run.stderr.find(&marker).unwrap_or_else(|| panic!("no PKI-ID logged:\n{}", run.stderr)) + marker.len();
    run.stderr[at..at + 64].to_string()
}

/// The value printed after `label` in an `msp inspect` report.
fn report_value<'r>(report: &'r str, label: &str) -> &'r str {
    let line = report.lines().find(|line| line.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label:?} in:\n{report}"));
    line.trim_start()[label.len()..].trim()
}

#[test]
fn msp_inspect_describes_the_sample_msp() {
    let dir = tempfile::tempdir().unwrap();
    let msp = repo_root().join("sampleconfig/msp");
    let run = peer_core(dir.path(), &[], &["msp", "inspect", msp.to_str().unwrap(), "--mspid", "Org1MSP"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    let lines: Vec<&str> = run.stdout.lines().collect();
    let (loads, report) = lines.split_last().unwrap();
    assert_eq!(
        report.join("\n"),
        format!(
            "MSP directory: {}
MSP ID: Org1MSP (from --mspid)
NodeOUs: enabled (client: OU=client, peer: OU=peer, admin: OU=admin, orderer: OU=orderer)
signcerts/peer0.org1.example.com-cert.pem
  subject:    CN=peer0.org1.example.com,OU=peer,L=San Francisco,ST=California,C=US
  issuer:     CN=ca.org1.example.com,O=org1.example.com,L=San Francisco,ST=California,C=US
  not before: 2020-01-01 00:00:00 +0000 UTC
  not after:  2049-12-31 23:59:59 +0000 UTC
  role:       peer
cacerts/ca.org1.example.com-cert.pem
  subject:    CN=ca.org1.example.com,O=org1.example.com,L=San Francisco,ST=California,C=US
  issuer:     CN=ca.org1.example.com,O=org1.example.com,L=San Francisco,ST=California,C=US (self-signed)
  not before: 2020-01-01 00:00:00 +0000 UTC
  not after:  2049-12-31 23:59:59 +0000 UTC
  role:       root CA
intermediatecerts/: no such folder
admincerts/: no such folder
tlscacerts/tlsca.org1.example.com-cert.pem
  subject:    CN=tlsca.org1.example.com,O=org1.example.com,L=San Francisco,ST=California,C=US
  issuer:     CN=tlsca.org1.example.com,O=org1.example.com,L=San Francisco,ST=California,C=US (self-signed)
  not before: 2020-01-01 00:00:00 +0000 UTC
  not after:  2049-12-31 23:59:59 +0000 UTC
  role:       TLS root CA
tlsintermediatecerts/: no such folder
keystore/: 1 file (keystore/priv_sk)
signing identity: signcerts/peer0.org1.example.com-cert.pem
  PKI-ID:     {}",
            msp.display(),
            pki_id_the_peer_computes(dir.path(), &msp, "Org1MSP"),
        )
    );
    assert!(loads.starts_with("  loads:      yes, as the local MSP Org1MSP at "), "{loads}");
}

#[test]
fn msp_inspect_of_generated_orgs_gives_roles_and_the_peers_pki_id() {
    let dir = tempfile::tempdir().unwrap();
    let run = peer_core(
        dir.path(),
        &[],
        &["msp", "generate", "--org", "Org1MSP", "--domain", "org1.example.com", "--seed", "7", "--out", "crypto"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let org = dir.path().join("crypto/peerOrganizations/org1.example.com");
    let sample = repo_root().join("sampleconfig");
    // Without --mspid: peer.localMspId of the core.yaml `node start` would read, and which it is.
    let env = [("FABRIC_CFG_PATH", sample.to_str().unwrap()), ("CORE_PEER_LOCALMSPID", "Org1MSP")];
    for (node, role) in [("peers/peer0.org1.example.com", "peer"), ("users/Admin@org1.example.com", "admin")] {
        let msp = org.join(node).join("msp");
        let run = peer_core(dir.path(), &env, &["msp", "inspect", msp.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report = &run.stdout;
        assert_eq!(report_value(report, "MSP ID:"), format!("Org1MSP (from peer.localMspId in {})", sample.join("core.yaml").display()));
        assert_eq!(report_value(report, "role:"), role, "{report}");
        assert_eq!(report_value(report, "PKI-ID:"), pki_id_the_peer_computes(dir.path(), &msp, "Org1MSP"), "{node}");
        assert!(report_value(report, "loads:").starts_with("yes, as the local MSP Org1MSP at "), "{report}");
    }
    // No --mspid and no core.yaml: the certificates still, and why there is no PKI-ID.
    let msp = org.join("peers/peer0.org1.example.com/msp");
    let run = peer_core(dir.path(), &[], &["msp", "inspect", msp.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(report_value(&run.stdout, "MSP ID:"), "unknown (no --mspid, and no core.yaml to take peer.localMspId from)");
    assert_eq!(report_value(&run.stdout, "PKI-ID:"), "unknown without the MSP ID (give --mspid)");
    assert_eq!(report_value(&run.stdout, "role:"), "peer");
}

#[test]
fn msp_inspect_marks_expired_certificates_and_says_why_the_msp_does_not_load() {
    use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
    let dir = tempfile::tempdir().unwrap();
    let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers: 1 };
    let secs = |n: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(n);
    // Valid 2020-01-01 to 2021-01-01 only.
    let window = ValidityWindow { not_before: secs(1_577_836_800), not_after: secs(1_609_459_200) };
    let org = generate::generate_org(&spec, &mut generate::org_rng(7, &spec), window).unwrap();
    let root = org.write_to(dir.path()).unwrap();
    let msp = root.join("peers/peer0.org1.example.com/msp");
    let run = peer_core(dir.path(), &[], &["msp", "inspect", msp.to_str().unwrap(), "--mspid", "Org1MSP"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let expired: Vec<&str> = run.stdout.lines().filter(|line| line.ends_with(" EXPIRED")).collect();
    assert_eq!(expired, ["  not after:  2021-01-01 00:00:00 +0000 UTC EXPIRED"; 3], "{}", run.stdout);
    let loads = report_value(&run.stdout, "loads:");
    assert!(loads.starts_with("no: error when setting up MSP of type bccsp from directory "), "{loads}");
    assert!(loads.contains("the certificate expired on 2021-01-01 00:00:00 +0000 UTC"), "{loads}");
}
