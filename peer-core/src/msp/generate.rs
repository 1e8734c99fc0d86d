//! Generates an organization's crypto material in Fabric's layout, like Fabric's `cryptogen`:
//! a signing CA and a TLS CA, N peers and an admin, each with an MSP folder and TLS files.
//!
//! Everything is derived from a seed (keys from a ChaCha20 stream, serial numbers from the same
//! stream, a validity window given by the caller), so the same seed and spec give the same bytes:
//! the simulator and tests can build any topology reproducibly. NodeOUs are enabled, as cryptogen
//! does with `EnableNodeOUs: true`: roles come from the OU (`peer`, `admin`, `client`, `orderer`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use der::asn1::{Ia5String, OctetString};
use der::pem::LineEnding;
use der::{EncodePem, asn1::ObjectIdentifier};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use spki::SubjectPublicKeyInfoRef;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::crypto::{self, LowSSigner};
use super::{MspFile, MspFiles};

const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
const CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

/// What to generate for one organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgSpec {
    /// The MSP ID, e.g. `Org1MSP`.
    pub msp_id: String,
    /// The organization's domain, e.g. `org1.example.com`; peers are `peer<i>.<domain>`.
    pub domain: String,
    pub peers: usize,
}

/// A certificate validity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidityWindow {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl ValidityWindow {
    /// The fixed window for seeded generation: 2020-01-01 to 2049-12-31 (UTCTime's last year),
    /// so simulated clocks anywhere in it see valid certificates and the bytes never change.
    pub fn fixed() -> ValidityWindow {
        ValidityWindow {
            not_before: SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_836_800),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(2_524_607_999),
        }
    }

    /// cryptogen's window: from five minutes before `now`, for ten years.
    pub fn from_now(now: SystemTime) -> ValidityWindow {
        let not_before = now - Duration::from_secs(300);
        ValidityWindow { not_before, not_after: not_before + Duration::from_secs(10 * 365 * 24 * 3600) }
    }
}

/// One node (peer or user): its MSP folder and its TLS files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// e.g. `peer0.org1.example.com` or `Admin@org1.example.com`.
    pub name: String,
    pub msp: MspFiles,
    pub tls: TlsFiles,
}

/// A node's TLS material: the TLS CA certificate, its certificate and key (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_crt: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// What an organization runs: peers (cryptogen's `peerOrganizations`) or ordering service
/// nodes (`ordererOrganizations`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OrgKind {
    #[default]
    Peer,
    Orderer,
}

impl OrgKind {
    /// The top folder of cryptogen's layout.
    pub fn top_folder(self) -> &'static str {
        match self {
            OrgKind::Peer => "peerOrganizations",
            OrgKind::Orderer => "ordererOrganizations",
        }
    }

    /// The folder of the org's nodes.
    pub fn nodes_folder(self) -> &'static str {
        match self {
            OrgKind::Peer => "peers",
            OrgKind::Orderer => "orderers",
        }
    }

    /// The name of node `index` (cryptogen's default hostnames): `peer<i>.<domain>`, or
    /// `orderer.<domain>`, `orderer2.<domain>`, …
    pub fn node_name(self, index: usize, domain: &str) -> String {
        match (self, index) {
            (OrgKind::Peer, i) => format!("peer{i}.{domain}"),
            (OrgKind::Orderer, 0) => format!("orderer.{domain}"),
            (OrgKind::Orderer, i) => format!("orderer{}.{domain}", i + 1),
        }
    }

    /// The NodeOU of its nodes' certificates.
    fn ou(self) -> &'static str {
        match self {
            OrgKind::Peer => "peer",
            OrgKind::Orderer => "orderer",
        }
    }
}

/// A generated organization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub spec: OrgSpec,
    pub kind: OrgKind,
    /// The organization's MSP as a channel sees it: CA certs, TLS CA certs and config.yaml.
    pub msp: MspFiles,
    pub ca: Issued,
    pub tls_ca: Issued,
    /// Its peers, or its orderer nodes for an orderer org (`spec.peers` of them).
    pub peers: Vec<Node>,
    pub admin: Node,
}

/// A certificate with its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// The seed stream for an org: the same (seed, MSP ID, domain) always gives the same material,
/// and two orgs generated from one seed still get different keys.
pub fn org_rng(seed: u64, spec: &OrgSpec) -> ChaCha20Rng {
    let mut input = b"peer-core msp generate v1\0".to_vec();
    input.extend_from_slice(&seed.to_le_bytes());
    input.extend_from_slice(spec.msp_id.as_bytes());
    input.push(0);
    input.extend_from_slice(spec.domain.as_bytes());
    ChaCha20Rng::from_seed(crypto::sha256(&input))
}

/// Generates a peer organization. All randomness comes from `rng`.
pub fn generate_org(spec: &OrgSpec, rng: &mut ChaCha20Rng, validity: ValidityWindow) -> Result<Org, String> {
    generate(spec, OrgKind::Peer, rng, validity)
}

/// Generates an organization of `kind` (`spec.peers` is its number of nodes). Peer orgs are
/// drawn from `rng` exactly as [`generate_org`] draws them.
pub fn generate(spec: &OrgSpec, kind: OrgKind, rng: &mut ChaCha20Rng, validity: ValidityWindow) -> Result<Org, String> {
    let domain = &spec.domain;
    let top = kind.top_folder();
    let base = "L=San Francisco,ST=California,C=US";
    let ca_key = SigningKey::generate_from_rng(rng);
    let tls_ca_key = SigningKey::generate_from_rng(rng);
    let ca_name = name(&format!("CN=ca.{domain},O={domain},{base}"))?;
    let tls_ca_name = name(&format!("CN=tlsca.{domain},O={domain},{base}"))?;
    let ca_cert = issue(rng, &ca_key, &ca_key, &ca_name, &ca_name, Kind::Ca, validity)?;
    let tls_ca_cert = issue(rng, &tls_ca_key, &tls_ca_key, &tls_ca_name, &tls_ca_name, Kind::Ca, validity)?;
    let ca = Issued { cert_pem: ca_cert.clone(), key_pem: key_pem(&ca_key)? };
    let tls_ca = Issued { cert_pem: tls_ca_cert.clone(), key_pem: key_pem(&tls_ca_key)? };
    let ca_file = format!("ca.{domain}-cert.pem");
    let tls_ca_file = format!("tlsca.{domain}-cert.pem");
    let config_yaml = node_ous_config(&ca_file);
    let org_msp = MspFiles {
        dir: PathBuf::from(format!("{top}/{domain}/msp")),
        cacerts: vec![MspFile { name: format!("cacerts/{ca_file}"), bytes: ca_cert.clone() }],
        tlscacerts: vec![MspFile { name: format!("tlscacerts/{tls_ca_file}"), bytes: tls_ca_cert.clone() }],
        config_yaml: Some(MspFile { name: "config.yaml".into(), bytes: config_yaml.clone().into_bytes() }),
        ..MspFiles::default()
    };
    let node = |rng: &mut ChaCha20Rng, common_name: &str, ou: &str, folder: &str| -> Result<Node, String> {
        let key = SigningKey::generate_from_rng(rng);
        let subject = name(&format!("CN={common_name},OU={ou},{base}"))?;
        let cert = issue(rng, &key, &ca_key, &subject, &ca_name, Kind::Signing, validity)?;
        let tls_key = SigningKey::generate_from_rng(rng);
        let short = common_name.split(['.', '@']).next().unwrap_or(common_name);
        let tls_subject = name(&format!("CN={common_name},{base}"))?;
        // Nodes' TLS certificates name the host (plus localhost for local tests); users' are client
        // certificates without SANs, as cryptogen makes them.
        let sans = if folder != "users" { vec![common_name.to_string(), short.to_string(), "localhost".to_string()] } else { Vec::new() };
        let tls_cert = issue(rng, &tls_key, &tls_ca_key, &tls_subject, &tls_ca_name, Kind::Tls(sans), validity)?;
        let msp = MspFiles {
            dir: PathBuf::from(format!("{top}/{domain}/{folder}/{common_name}/msp")),
            signcerts: vec![MspFile { name: format!("signcerts/{common_name}-cert.pem"), bytes: cert }],
            keystore: vec![MspFile { name: "keystore/priv_sk".into(), bytes: key_pem(&key)? }],
            cacerts: org_msp.cacerts.clone(),
            tlscacerts: org_msp.tlscacerts.clone(),
            config_yaml: org_msp.config_yaml.clone(),
            ..MspFiles::default()
        };
        Ok(Node {
            name: common_name.to_string(),
            msp,
            tls: TlsFiles { ca_crt: tls_ca_cert.clone(), cert: tls_cert, key: key_pem(&tls_key)? },
        })
    };
    let mut peers = Vec::with_capacity(spec.peers);
    for i in 0..spec.peers {
        peers.push(node(rng, &kind.node_name(i, domain), kind.ou(), kind.nodes_folder())?);
    }
    let admin = node(rng, &format!("Admin@{domain}"), "admin", "users")?;
    Ok(Org { spec: spec.clone(), kind, msp: org_msp, ca, tls_ca, peers, admin })
}

impl Org {
    /// A TLS server/client pair for a node known by `hosts` (its certificate's DNS names; the
    /// first is its common name), issued by this org's TLS CA with keys and serial from `rng`:
    /// for hosts whose names are not cryptogen's (the simulator's `org1-peer0`, `orderer2`).
    pub fn issue_tls(&self, hosts: &[&str], rng: &mut ChaCha20Rng, validity: ValidityWindow) -> Result<TlsFiles, String> {
        use p256::pkcs8::DecodePrivateKey;
        let common_name = hosts.first().ok_or("a TLS certificate needs a host name")?;
        let ca_key = SigningKey::from_pkcs8_pem(std::str::from_utf8(&self.tls_ca.key_pem).map_err(|e| e.to_string())?)
            .map_err(|e| format!("the TLS CA key does not load: {e}"))?;
        let base = "L=San Francisco,ST=California,C=US";
        let domain = &self.spec.domain;
        let tls_ca_name = name(&format!("CN=tlsca.{domain},O={domain},{base}"))?;
        let key = SigningKey::generate_from_rng(rng);
        let subject = name(&format!("CN={common_name},{base}"))?;
        let sans = hosts.iter().map(ToString::to_string).collect();
        let cert = issue(rng, &key, &ca_key, &subject, &tls_ca_name, Kind::Tls(sans), validity)?;
        Ok(TlsFiles { ca_crt: self.tls_ca.cert_pem.clone(), cert, key: key_pem(&key)? })
    }

    /// Writes cryptogen's layout under `out`: `peerOrganizations/<domain>/{ca,tlsca,msp,peers,users}`
    /// (`ordererOrganizations/<domain>/{…,orderers,users}` for an orderer org).
    pub fn write_to(&self, out: &Path) -> std::io::Result<PathBuf> {
        let root = out.join(self.kind.top_folder()).join(&self.spec.domain);
        let domain = &self.spec.domain;
        for (folder, prefix, issued) in [("ca", "ca", &self.ca), ("tlsca", "tlsca", &self.tls_ca)] {
            let dir = root.join(folder);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(format!("{prefix}.{domain}-cert.pem")), &issued.cert_pem)?;
            write_secret(&dir.join("priv_sk"), &issued.key_pem)?;
        }
        self.msp.write_to(&root.join("msp"))?;
        for (folder, node) in self.peers.iter().map(|p| (self.kind.nodes_folder(), p)).chain([("users", &self.admin)]) {
            let dir = root.join(folder).join(&node.name);
            node.msp.write_to(&dir.join("msp"))?;
            for file in &node.msp.keystore {
                write_secret(&dir.join("msp").join(&file.name), &file.bytes)?;
            }
            let tls = dir.join("tls");
            std::fs::create_dir_all(&tls)?;
            // cryptogen's names: peers and orderers hold server.*, users client.*.
            let stem = if folder == "users" { "client" } else { "server" };
            std::fs::write(tls.join("ca.crt"), &node.tls.ca_crt)?;
            std::fs::write(tls.join(format!("{stem}.crt")), &node.tls.cert)?;
            write_secret(&tls.join(format!("{stem}.key")), &node.tls.key)?;
        }
        Ok(root)
    }
}

/// Private keys are written readable by the owner only.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn node_ous_config(ca_file: &str) -> String {
    let mut text = String::from("NodeOUs:\n  Enable: true\n");
    for (key, ou) in
        [("ClientOUIdentifier", "client"), ("PeerOUIdentifier", "peer"), ("AdminOUIdentifier", "admin"), ("OrdererOUIdentifier", "orderer")]
    {
        text.push_str(&format!("  {key}:\n    Certificate: cacerts/{ca_file}\n    OrganizationalUnitIdentifier: {ou}\n"));
    }
    text
}

fn name(rfc4514: &str) -> Result<Name, String> {
    Name::from_str(rfc4514).map_err(|e| format!("bad name {rfc4514:?}: {e}"))
}

fn key_pem(key: &SigningKey) -> Result<Vec<u8>, String> {
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format!("cannot encode a private key: {e}"))?;
    Ok(pem.as_bytes().to_vec())
}

#[derive(Clone, Debug)]
enum Kind {
    Ca,
    Signing,
    Tls(Vec<String>),
}

/// Issues a certificate for `key`, signed by `issuer_key`, and returns it as PEM.
fn issue(
    rng: &mut ChaCha20Rng,
    key: &SigningKey,
    issuer_key: &SigningKey,
    subject: &Name,
    issuer: &Name,
    kind: Kind,
    validity: ValidityWindow,
) -> Result<Vec<u8>, String> {
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x40; // positive, and 16 bytes long
    let serial = SerialNumber::new(&serial).map_err(|e| e.to_string())?;
    let time = |t: SystemTime| Time::try_from(t).map_err(|e| format!("bad validity time: {e}"));
    let validity = Validity::new(time(validity.not_before)?, time(validity.not_after)?);
    let spki = spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|e| e.to_string())?;
    let profile = Profile { subject: subject.clone(), issuer: issuer.clone(), kind };
    let builder = CertificateBuilder::new(profile, serial, validity, spki).map_err(|e| e.to_string())?;
    let cert = builder.build::<_, DerSignature>(&LowSSigner(issuer_key)).map_err(|e| e.to_string())?;
    Ok(cert.to_pem(LineEnding::LF).map_err(|e| e.to_string())?.into_bytes())
}

/// The extensions cryptogen puts on CA, signing and TLS certificates; key identifiers are
/// SHA-256 of the public key point, as Fabric computes SKIs.
struct Profile {
    subject: Name,
    issuer: Name,
    kind: Kind,
}

fn key_id(spk: &SubjectPublicKeyInfoRef<'_>) -> x509_cert::builder::Result<OctetString> {
    Ok(OctetString::new(crypto::sha256(spk.subject_public_key.raw_bytes()))?)
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let mut out: Vec<Extension> = Vec::new();
        let subject = tbs.subject();
        match &self.kind {
            Kind::Ca => {
                let usage = KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment | KeyUsages::KeyCertSign | KeyUsages::CRLSign;
                out.push(KeyUsage(usage).to_extension(subject, &out)?);
                out.push(ExtendedKeyUsage(vec![CLIENT_AUTH, SERVER_AUTH]).to_extension(subject, &out)?);
                out.push(BasicConstraints { ca: true, path_len_constraint: None }.to_extension(subject, &out)?);
                out.push(SubjectKeyIdentifier(key_id(&spk)?).to_extension(subject, &out)?);
            }
            Kind::Signing | Kind::Tls(_) => {
                let usage = match self.kind {
                    Kind::Tls(_) => KeyUsages::DigitalSignature | KeyUsages::KeyEncipherment,
                    _ => KeyUsages::DigitalSignature.into(),
                };
                out.push(KeyUsage(usage).to_extension(subject, &out)?);
                if let Kind::Tls(_) = self.kind {
                    out.push(ExtendedKeyUsage(vec![SERVER_AUTH, CLIENT_AUTH]).to_extension(subject, &out)?);
                }
                out.push(BasicConstraints { ca: false, path_len_constraint: None }.to_extension(subject, &out)?);
                let aki = AuthorityKeyIdentifier { key_identifier: Some(key_id(&issuer_spk)?), ..Default::default() };
                out.push(aki.to_extension(subject, &out)?);
                if let Kind::Tls(names) = &self.kind
                    && !names.is_empty()
                {
                    let mut general: Vec<GeneralName> =
                        names.iter().map(|n| Ok(GeneralName::DnsName(Ia5String::new(n)?))).collect::<der::Result<_>>()?;
                    general.push(GeneralName::from(std::net::IpAddr::from([127, 0, 0, 1])));
                    out.push(SubjectAltName(general).to_extension(subject, &out)?);
                }
            }
        }
        Ok(out)
    }
}
