//! The local MSP seen from outside: Fabric's sample MSP loads with its known PKI-ID, our
//! signatures verify under an independent implementation (ring), generated MSPs load and are
//! reproducible, and broken MSP directories fail with the errors recorded in the snapshot.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peer_core::msp::generate::{self, OrgSpec, ValidityWindow};
use peer_core::msp::{Identity, LocalMsp, MspError, MspFile, MspFiles};
use peer_core::testkit::epoch;

fn fabric_msp() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("../shared/fixtures/fabric-v2.2.15/msp");
    if path.is_dir() {
        Some(path)
    } else {
        eprintln!("SKIPPED: {} is not there (shared/ is not beside the checkout)", path.display());
        None
    }
}

fn org(msp_id: &str, domain: &str, peers: usize, seed: u64) -> generate::Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers };
    generate::generate_org(&spec, &mut generate::org_rng(seed, &spec), ValidityWindow::fixed()).unwrap()
}

#[test]
fn fabric_sample_msp_loads_with_its_known_pki_id() {
    let Some(dir) = fabric_msp() else { return };
    let msp = LocalMsp::load(&dir, "SampleOrg", None, epoch()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(msp.pki_id().to_string(), "0d46737a45894d123895671221dbaddf8480fb0364f404be3aed491df442945f");
    assert_eq!(msp.identity.common_name().as_deref(), Some("peer0.org1.example.com"));
    assert_eq!(msp.expiry_message(), "The enrollment certificate will expire on 2027-11-10 13:41:11 +0000 UTC");
    // The sample lists the peer's own certificate in admincerts (NodeOUs are off), so it is an admin.
    assert!(msp.msp.is_admin(&msp.identity));
    // SerializedIdentity round-trips and keeps the PKI-ID.
    let back = Identity::deserialize(&msp.identity.serialize()).unwrap();
    assert_eq!(back.pki_id(), msp.pki_id());
    msp.msp.validate(&back, epoch()).unwrap();
}

#[test]
fn signatures_verify_under_an_independent_implementation() {
    let generated = org("Org1MSP", "org1.example.com", 1, 7);
    let mut msps = vec![LocalMsp::from_files(&generated.peers[0].msp, "Org1MSP", epoch()).unwrap()];
    if let Some(dir) = fabric_msp() {
        msps.push(LocalMsp::load(&dir, "SampleOrg", None, epoch()).unwrap());
    }
    for msp in msps {
        let point = msp.identity.public_key.to_sec1_point(false);
        let ring_key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point.as_bytes().to_vec());
        for i in 0..50u32 {
            let message = format!("gossip message {i}").repeat(i as usize + 1);
            let signature = msp.sign(message.as_bytes());
            ring_key.verify(message.as_bytes(), &signature).expect("ring verifies our signature");
            assert!(ring_key.verify(b"something else", &signature).is_err());
            msp.identity.verify(message.as_bytes(), &signature).unwrap();
        }
    }
}

#[test]
fn generated_org_loads_and_classifies_roles() {
    let generated = org("Org1MSP", "org1.example.com", 2, 1);
    let now = epoch();
    let peer0 = LocalMsp::from_files(&generated.peers[0].msp, "Org1MSP", now).unwrap();
    let peer1 = LocalMsp::from_files(&generated.peers[1].msp, "Org1MSP", now).unwrap();
    let admin = LocalMsp::from_files(&generated.admin.msp, "Org1MSP", now).unwrap();
    assert_ne!(peer0.pki_id(), peer1.pki_id());
    assert_eq!(peer0.identity.common_name().as_deref(), Some("peer0.org1.example.com"));
    assert_eq!(peer0.identity.organizational_units(), ["peer"]);
    // The org-level MSP (what a channel knows) validates its members and spots the admin.
    let org_msp = peer_core::msp::Msp::from_files(&generated.msp, "Org1MSP").unwrap();
    org_msp.validate(&peer1.identity, now).unwrap();
    assert!(org_msp.is_admin(&admin.identity));
    assert!(!org_msp.is_admin(&peer0.identity));
    // Another org's identity is not a member, even under the same MSP ID.
    let other = org("Org1MSP", "org2.example.com", 1, 1);
    let stranger = LocalMsp::from_files(&other.peers[0].msp, "Org1MSP", now).unwrap();
    let err = org_msp.validate(&stranger.identity, now).unwrap_err();
    assert!(err.starts_with("it is not issued by any CA in cacerts or intermediatecerts"), "{err}");
}

#[test]
fn generation_is_reproducible_from_a_seed() {
    let a = org("Org1MSP", "org1.example.com", 3, 42);
    let b = org("Org1MSP", "org1.example.com", 3, 42);
    assert_eq!(a, b, "same seed, same bytes");
    let c = org("Org1MSP", "org1.example.com", 3, 43);
    assert_ne!(a.ca.cert_pem, c.ca.cert_pem);
    let d = org("Org2MSP", "org2.example.com", 3, 42);
    assert_ne!(a.ca.key_pem, d.ca.key_pem, "one seed, two orgs: different keys");
}

#[test]
fn generated_org_written_to_disk_loads_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = org("Org1MSP", "org1.example.com", 2, 5);
    let root = generated.write_to(tmp.path()).unwrap();
    assert_eq!(root, tmp.path().join("peerOrganizations/org1.example.com"));
    for (node, folder, tls_file) in
        [("peer1.org1.example.com", "peers", "tls/server.crt"), ("Admin@org1.example.com", "users", "tls/client.crt")]
    {
        let msp = LocalMsp::load(&root.join(folder).join(node).join("msp"), "Org1MSP", None, epoch()).unwrap();
        assert_eq!(msp.identity.common_name().as_deref(), Some(node));
        assert!(root.join(folder).join(node).join(tls_file).is_file());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = root.join("peers/peer0.org1.example.com/msp/keystore/priv_sk");
        assert_eq!(std::fs::metadata(key).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

/// Every way we know to break an MSP, with the error an operator sees.
#[test]
fn broken_msp_directories() {
    let good = org("Org1MSP", "org1.example.com", 2, 9);
    let other = org("Org2MSP", "org2.example.com", 1, 9);
    let base = good.peers[0].msp.clone();
    let now = epoch();
    let file = |name: &str, bytes: &[u8]| MspFile { name: name.into(), bytes: bytes.to_vec() };
    let peer1_key = good.peers[1].msp.keystore[0].bytes.clone();
    // An Ed25519 PKCS#8 key (RFC 8410's example): a key type peer-core does not support.
    let ed25519 =
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    type Mutation = Box<dyn Fn(&mut MspFiles, &mut SystemTime, &mut String)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("empty MSP ID", Box::new(|_, _, id| id.clear())),
        (
            "no signcerts folder",
            Box::new(|m, _, _| {
                m.signcerts.clear();
                m.missing.push("signcerts");
            }),
        ),
        ("empty signcerts folder", Box::new(|m, _, _| m.signcerts.clear())),
        (
            "two signing certificates",
            Box::new(|m, _, _| {
                let extra = m.signcerts[0].clone();
                m.signcerts.push(MspFile { name: "signcerts/extra.pem".into(), ..extra });
            }),
        ),
        ("signing certificate is not PEM", Box::new(move |m, _, _| m.signcerts[0] = file("signcerts/cert.pem", b"hello"))),
        ("signing certificate holds a key", Box::new(move |m, _, _| m.signcerts[0].bytes = m.keystore[0].bytes.clone())),
        (
            "signing certificate is corrupt DER",
            Box::new(move |m, _, _| {
                m.signcerts[0] = file("signcerts/cert.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            }),
        ),
        (
            "signing certificate from another org's CA",
            Box::new({
                let foreign = other.peers[0].msp.signcerts[0].clone();
                move |m, _, _| m.signcerts[0] = foreign.clone()
            }),
        ),
        ("signing certificate is the CA certificate", Box::new(|m, _, _| m.signcerts[0].bytes = m.cacerts[0].bytes.clone())),
        (
            "no cacerts folder",
            Box::new(|m, _, _| {
                m.cacerts.clear();
                m.missing.push("cacerts");
            }),
        ),
        ("empty cacerts folder", Box::new(|m, _, _| m.cacerts.clear())),
        (
            "a non-CA certificate in cacerts",
            Box::new(|m, _, _| m.cacerts.push(MspFile { name: "cacerts/peer.pem".into(), bytes: m.signcerts[0].bytes.clone() })),
        ),
        ("garbage in intermediatecerts", Box::new(move |m, _, _| m.intermediatecerts.push(file("intermediatecerts/x.pem", b"junk")))),
        ("empty keystore", Box::new(|m, _, _| m.keystore.clear())),
        ("key does not match the certificate", Box::new(move |m, _, _| m.keystore[0].bytes = peer1_key.clone())),
        ("unsupported key type", Box::new(move |m, _, _| m.keystore[0].bytes = ed25519.to_vec())),
        ("keystore file is not PEM", Box::new(move |m, _, _| m.keystore[0].bytes = b"\xff\xfe".to_vec())),
        ("certificate expired", Box::new(|_, now, _| *now = UNIX_EPOCH + Duration::from_secs(2_600_000_000))),
        ("certificate not yet valid", Box::new(|_, now, _| *now = UNIX_EPOCH + Duration::from_secs(1_500_000_000))),
        (
            "NodeOUs without the peer's OU",
            Box::new(|m, _, _| {
                let text = String::from_utf8(m.config_yaml.as_ref().unwrap().bytes.clone()).unwrap();
                m.config_yaml.as_mut().unwrap().bytes =
                    text.replace("OrganizationalUnitIdentifier: peer", "OrganizationalUnitIdentifier: peers").into_bytes();
            }),
        ),
        ("config.yaml is not YAML", Box::new(move |m, _, _| m.config_yaml = Some(file("config.yaml", b"NodeOUs: [unclosed\n")))),
        (
            "config.yaml names a missing certificate",
            Box::new(move |m, _, _| {
                m.config_yaml = Some(file("config.yaml", b"NodeOUs:\n  Enable: true\n  PeerOUIdentifier:\n    Certificate: cacerts/nope.pem\n    OrganizationalUnitIdentifier: peer\n"))
            }),
        ),
        (
            "OU identifiers the certificate lacks",
            Box::new(move |m, _, _| {
                m.config_yaml = Some(file("config.yaml", b"OrganizationalUnitIdentifiers:\n  - OrganizationalUnitIdentifier: COP\n"))
            }),
        ),
        (
            "an admin certificate that is not one",
            Box::new(move |m, _, _| {
                m.admincerts.push(file("admincerts/admin.pem", b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
            }),
        ),
    ];
    let mut report = String::new();
    for (name, mutate) in &cases {
        let mut files = base.clone();
        let mut time = now;
        let mut id = "Org1MSP".to_string();
        mutate(&mut files, &mut time, &mut id);
        let outcome = match LocalMsp::from_files(&files, &id, time) {
            Ok(_) => "LOADED (expected an error)".to_string(),
            Err(err) => err.to_string(),
        };
        report.push_str(&format!("{name}:\n  {outcome}\n"));
    }
    // Cases that need a real directory.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let a_file = tmp.path().join("file");
    std::fs::write(&a_file, "x").unwrap();
    for (name, path) in [("directory does not exist", &missing), ("path is a file", &a_file)] {
        let err: MspError = LocalMsp::load(path, "Org1MSP", None, now).unwrap_err();
        report.push_str(&format!("{name}:\n  {}\n", err.to_string().replace(tmp.path().to_str().unwrap(), "<tmp>")));
    }
    assert!(cases.len() + 2 >= 15);
    assert!(!report.contains("LOADED"), "{report}");
    insta::assert_snapshot!(report);
}

/// sampleconfig/msp is the generator's output, not hand-made: regenerate it with
/// `peer-core msp generate --org SampleOrg --domain org1.example.com --peers 1 --seed 1 --out DIR`
/// and copy `peers/peer0.org1.example.com/{msp,tls}`.
#[test]
fn sampleconfig_msp_is_the_seeded_generator_output() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
    let generated = org("SampleOrg", "org1.example.com", 1, 1);
    let peer = &generated.peers[0];
    let on_disk = MspFiles::read_dir(&sample.join("msp"), None).unwrap();
    for (ours, theirs) in [
        (&on_disk.signcerts, &peer.msp.signcerts),
        (&on_disk.keystore, &peer.msp.keystore),
        (&on_disk.cacerts, &peer.msp.cacerts),
        (&on_disk.tlscacerts, &peer.msp.tlscacerts),
    ] {
        assert_eq!(ours, theirs);
    }
    assert_eq!(on_disk.config_yaml, peer.msp.config_yaml);
    assert_eq!(std::fs::read(sample.join("tls/server.crt")).unwrap(), peer.tls.cert);
    let msp = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, epoch()).unwrap();
    assert_eq!(msp.identity.common_name().as_deref(), Some("peer0.org1.example.com"));
}
