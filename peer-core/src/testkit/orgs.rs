//! Generated organizations and their identities, as the tests build them: `msp generate --seed 7`
//! (the orgs behind peer-core/tests/data/blocks), certificates valid 2020–2049, identities
//! loaded at [`epoch`](super::epoch); and organizations read back from cryptogen's layout on disk
//! ([`read_org`], for material made by Fabric's own cryptogen).

use std::path::Path;

use crate::msp::generate::{self, Issued, Node, Org, OrgKind, OrgSpec, TlsFiles, ValidityWindow};
use crate::msp::{LocalMsp, MspFile, MspFiles};

/// The seed of `msp generate --seed` the tests' orgs come from.
pub const ORG_SEED: u64 = 7;

/// An org with one peer, generated from [`ORG_SEED`].
pub fn org(msp_id: &str, domain: &str) -> Org {
    org_with_peers(msp_id, domain, 1)
}

/// An org with `peers` peers, generated from [`ORG_SEED`].
pub fn org_with_peers(msp_id: &str, domain: &str, peers: usize) -> Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers };
    generate::generate_org(&spec, &mut generate::org_rng(ORG_SEED, &spec), ValidityWindow::fixed()).unwrap()
}

/// A generated node's signing identity, loaded at the epoch.
pub fn local_msp(node: &Node, msp_id: &str) -> LocalMsp {
    LocalMsp::from_files(&node.msp, msp_id, super::epoch()).unwrap()
}

/// The org's admin as a signing identity.
pub fn admin(org: &Org) -> LocalMsp {
    local_msp(&org.admin, &org.spec.msp_id)
}

/// A generated node's TLS files as a host hands them to `node::start`: its server pair, its org's
/// TLS CA as `peer.tls.rootcert.file` and (with `mutual`) as the client root CAs. The paths are
/// where [`tls_vars`] points the config, under `/tls/<node name>/` (nothing is on a disk).
pub fn tls_files(node: &Node, mutual: bool) -> crate::node::tls::TlsFiles {
    use crate::net::tls::PemFile;
    let file = |name: &str, bytes: &[u8]| PemFile { path: format!("/tls/{}/{name}", node.name).into(), bytes: bytes.to_vec() };
    crate::node::tls::TlsFiles {
        cert: file("server.crt", &node.tls.cert),
        key: file("server.key", &node.tls.key),
        root_cert: Some(file("ca.crt", &node.tls.ca_crt)),
        client_root_cas: if mutual { vec![file("ca.crt", &node.tls.ca_crt)] } else { Vec::new() },
        client: None,
        orderer_override_cas: Vec::new(),
    }
}

/// The `CORE_PEER_TLS_*` variables that turn TLS on with [`tls_files`]' paths.
pub fn tls_vars(node: &Node, mutual: bool) -> Vec<(String, String)> {
    tls_dir_vars(Path::new(&format!("/tls/{}", node.name)), mutual)
}

/// The `CORE_PEER_TLS_*` variables that serve the pair of a node's `tls/` folder as cryptogen
/// lays it out (`server.crt`, `server.key`, `ca.crt`), `ca.crt` as the root certificate and (with
/// `mutual`, client certificates required) as the client root CAs.
pub fn tls_dir_vars(dir: &Path, mutual: bool) -> Vec<(String, String)> {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut vars = vec![
        ("CORE_PEER_TLS_ENABLED".into(), "true".into()),
        ("CORE_PEER_TLS_CLIENTAUTHREQUIRED".into(), mutual.to_string()),
        ("CORE_PEER_TLS_CERT_FILE".into(), file("server.crt")),
        ("CORE_PEER_TLS_KEY_FILE".into(), file("server.key")),
        ("CORE_PEER_TLS_ROOTCERT_FILE".into(), file("ca.crt")),
    ];
    if mutual {
        vars.push(("CORE_PEER_TLS_CLIENTROOTCAS_FILES".into(), file("ca.crt")));
    }
    vars
}

/// The `CORE_OPERATIONS_TLS_*` variables that serve the operations server over HTTPS with the
/// pair of a `tls/` folder ([`tls_dir_vars`]), client certificates under `ca.crt` required with
/// `mutual` (else verified when given).
pub fn operations_tls_dir_vars(dir: &Path, mutual: bool) -> Vec<(String, String)> {
    let file = |name: &str| dir.join(name).display().to_string();
    vec![
        ("CORE_OPERATIONS_TLS_ENABLED".into(), "true".into()),
        ("CORE_OPERATIONS_TLS_CLIENTAUTHREQUIRED".into(), mutual.to_string()),
        ("CORE_OPERATIONS_TLS_CERT_FILE".into(), file("server.crt")),
        ("CORE_OPERATIONS_TLS_KEY_FILE".into(), file("server.key")),
        ("CORE_OPERATIONS_TLS_CLIENTROOTCAS_FILES".into(), file("ca.crt")),
    ]
}

/// An org in cryptogen's layout under `out` (`out/peerOrganizations/<domain>/…`, as Fabric's
/// cryptogen or [`Org::write_to`] writes it): its `msp`, nodes `kind.node_name(i)` for
/// `i < spec.peers` and `Admin@<domain>`, each with its `msp` and `tls` folders. The CAs'
/// certificates come from the org's `msp`; their private keys from `ca/priv_sk` and
/// `tlsca/priv_sk`, left empty when absent (such an org cannot issue more certificates).
pub fn read_org(out: &Path, kind: OrgKind, spec: OrgSpec) -> Result<Org, String> {
    let root = out.join(kind.top_folder()).join(&spec.domain);
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let msp = MspFiles::read_dir(&root.join("msp"), None).map_err(|e| e.to_string())?;
    let issued = |certs: &[MspFile], folder: &str| -> Result<Issued, String> {
        let cert = certs.first().ok_or_else(|| format!("{}: the org's msp has no {folder} certificate", root.display()))?;
        let key = root.join(folder).join("priv_sk");
        Ok(Issued { cert_pem: cert.bytes.clone(), key_pem: if key.exists() { read(&key)? } else { Vec::new() } })
    };
    let (ca, tls_ca) = (issued(&msp.cacerts, "ca")?, issued(&msp.tlscacerts, "tlsca")?);
    let node = |folder: &str, name: String| -> Result<Node, String> {
        let dir = root.join(folder).join(&name);
        let msp = MspFiles::read_dir(&dir.join("msp"), None).map_err(|e| e.to_string())?;
        // cryptogen's names: peers and orderers hold server.*, users client.*.
        let stem = if folder == "users" { "client" } else { "server" };
        let tls = dir.join("tls");
        let tls = TlsFiles {
            ca_crt: read(&tls.join("ca.crt"))?,
            cert: read(&tls.join(format!("{stem}.crt")))?,
            key: read(&tls.join(format!("{stem}.key")))?,
        };
        Ok(Node { name, msp, tls })
    };
    let peers = (0..spec.peers).map(|i| node(kind.nodes_folder(), kind.node_name(i, &spec.domain))).collect::<Result<_, _>>()?;
    let admin = node("users", format!("Admin@{}", spec.domain))?;
    Ok(Org { spec, kind, msp, ca, tls_ca, peers, admin })
}
