//! `peer-core msp inspect`: what an MSP directory holds, in words an operator can check against
//! what they expect: the MSP ID, every certificate with its names, validity and NodeOU role, and
//! the signing identity's gossip PKI-ID.
//!
//! Works on [`MspFiles`] already read and a time the caller passes in: no file system, no clock.
//! The PKI-ID and the role come from the same code the peer uses ([`Identity::pki_id`],
//! [`Msp::role`], [`LocalMsp::from_files`]), so what is printed is what the peer would compute.
//! A directory that does not load as an MSP is still described: each problem is printed where
//! it is, and the last line says whether the peer would accept it.

use std::fmt::Write as _;
use std::time::SystemTime;

use x509_cert::Certificate;

use super::{Identity, LocalMsp, Msp, MspFile, MspFiles, Role, crypto, go_time, identity};
use crate::config::value::escape_non_printable;

/// Where the MSP ID came from, for the report (`--mspid`, or a core.yaml key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MspIdSource {
    pub msp_id: String,
    /// e.g. `--mspid` or `peer.localMspId in /etc/hyperledger/fabric/core.yaml`.
    pub from: String,
}

/// Which folder a certificate is in decides what it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Identity,
    Ca,
    IntermediateCa,
    TlsCa,
    TlsIntermediateCa,
}

/// The report `msp inspect` prints. `msp_id` is `Err(why)` when it is not known; then no PKI-ID
/// can be computed (it hashes the MSP ID) and the report says why.
pub fn report(files: &MspFiles, msp_id: Result<&MspIdSource, &str>, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "MSP directory: {}", files.dir.display());
    match msp_id {
        Ok(source) => {
            let _ = writeln!(out, "MSP ID: {} (from {})", escaped(&source.msp_id), source.from);
        }
        Err(why) => {
            let _ = writeln!(out, "MSP ID: unknown ({why})");
        }
    }
    let id = msp_id.map(|source| source.msp_id.as_str()).ok();
    // The verifier, for roles: built as the peer builds it (the MSP ID plays no part in roles).
    let msp = Msp::from_files(files, id.unwrap_or_default());
    match &msp {
        Ok(msp) => match msp.node_ous() {
            Some(node_ous) => {
                let named =
                    [("client", &node_ous.client), ("peer", &node_ous.peer), ("admin", &node_ous.admin), ("orderer", &node_ous.orderer)]
                        .into_iter()
                        .filter_map(|(role, ou)| ou.as_ref().map(|ou| format!("{role}: OU={}", escaped(&ou.ou))))
                        .collect::<Vec<_>>();
                let _ = writeln!(out, "NodeOUs: enabled ({})", named.join(", "));
            }
            None => {
                let _ = writeln!(out, "NodeOUs: not enabled (roles come from admincerts only)");
            }
        },
        Err(_) => {
            let _ = writeln!(out, "NodeOUs: unknown (the MSP does not load, see the end)");
        }
    }
    let folders: [(&str, &[MspFile], Kind); 6] = [
        ("signcerts", &files.signcerts, Kind::Identity),
        ("cacerts", &files.cacerts, Kind::Ca),
        ("intermediatecerts", &files.intermediatecerts, Kind::IntermediateCa),
        ("admincerts", &files.admincerts, Kind::Identity),
        ("tlscacerts", &files.tlscacerts, Kind::TlsCa),
        ("tlsintermediatecerts", &files.tlsintermediatecerts, Kind::TlsIntermediateCa),
    ];
    for (folder, list, kind) in folders {
        if list.is_empty() {
            let what = if files.missing.contains(&folder) { "no such folder" } else { "empty" };
            let _ = writeln!(out, "{folder}/: {what}");
            continue;
        }
        for file in list {
            describe(&mut out, file, kind, msp.as_ref().ok(), now);
        }
    }
    let keys: Vec<String> = files.keystore.iter().map(|f| escaped(&f.name)).collect();
    match keys.as_slice() {
        [] if files.missing.contains(&"keystore") => out.push_str("keystore/: no such folder\n"),
        [] => out.push_str("keystore/: empty\n"),
        names => {
            let _ = writeln!(out, "keystore/: {} file{} ({})", names.len(), if names.len() == 1 { "" } else { "s" }, names.join(", "));
        }
    }
    signing_identity(&mut out, files, id, now);
    out
}

/// One certificate: names, validity and role.
fn describe(out: &mut String, file: &MspFile, kind: Kind, msp: Option<&Msp>, now: SystemTime) {
    let _ = writeln!(out, "{}", escaped(&file.name));
    let cert = match identity::single_pem_certificate(&file.bytes).and_then(|der| crypto::cert_from_der(&der)) {
        Ok(cert) => cert,
        Err(reason) => {
            let _ = writeln!(out, "  error:      not a certificate: {reason}");
            return;
        }
    };
    let tbs = cert.tbs_certificate();
    let subject = tbs.subject().to_string();
    let issuer = tbs.issuer().to_string();
    let _ = writeln!(out, "  subject:    {}", escaped(&subject));
    let self_signed = if subject == issuer { " (self-signed)" } else { "" };
    let _ = writeln!(out, "  issuer:     {}{self_signed}", escaped(&issuer));
    let (not_before, not_after) = validity(&cert);
    let early = if now < not_before { " NOT YET VALID" } else { "" };
    let expired = if now > not_after { " EXPIRED" } else { "" };
    let _ = writeln!(out, "  not before: {}{early}", go_time(not_before));
    let _ = writeln!(out, "  not after:  {}{expired}", go_time(not_after));
    let role = match kind {
        Kind::Ca => "root CA".to_string(),
        Kind::IntermediateCa => "intermediate CA".to_string(),
        Kind::TlsCa => "TLS root CA".to_string(),
        Kind::TlsIntermediateCa => "TLS intermediate CA".to_string(),
        Kind::Identity => identity_role(&cert, msp),
    };
    let _ = writeln!(out, "  role:       {role}");
}

/// The NodeOU role of an identity certificate, as the peer classifies it.
fn identity_role(cert: &Certificate, msp: Option<&Msp>) -> String {
    let Some(msp) = msp else { return "unknown (the MSP does not load, see the end)".to_string() };
    let identity = match Identity::new(&msp.id, cert.clone()) {
        Ok(identity) => identity,
        Err(reason) => return format!("unknown ({reason})"),
    };
    let ous: Vec<String> = identity.organizational_units().iter().map(|ou| escaped(ou)).collect();
    let admin = if msp.is_listed_admin(&identity) { ", listed in admincerts" } else { "" };
    match (msp.node_ous(), msp.role(&identity)) {
        (None, _) => format!("none: NodeOUs are not enabled{admin}"),
        (Some(_), Some(role)) => format!("{}{admin}", role_name(role)),
        (Some(_), None) => format!("none: its OUs [{}] name no NodeOU role{admin}", ous.join(", ")),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Peer => "peer",
        Role::Admin => "admin",
        Role::Orderer => "orderer",
    }
}

/// The signing identity: its PKI-ID and whether the peer would load it as its local MSP now.
fn signing_identity(out: &mut String, files: &MspFiles, msp_id: Option<&str>, now: SystemTime) {
    let sign_cert = match files.signcerts.as_slice() {
        [one] => one,
        [] => {
            out.push_str("signing identity: none (signcerts/ is empty: an MSP that verifies, as channels hold an org's; a local MSP signs with one)\n");
            return;
        }
        more => {
            let _ = writeln!(out, "signing identity: none (signcerts/ has {} certificates; a local MSP has exactly one)", more.len());
            return;
        }
    };
    let _ = writeln!(out, "signing identity: {}", escaped(&sign_cert.name));
    let Some(msp_id) = msp_id else {
        out.push_str("  PKI-ID:     unknown without the MSP ID (give --mspid)\n");
        return;
    };
    let identity = identity::single_pem_certificate(&sign_cert.bytes)
        .and_then(|der| crypto::cert_from_der(&der))
        .and_then(|cert| Identity::new(msp_id, cert));
    match identity {
        Ok(identity) => {
            let _ = writeln!(out, "  PKI-ID:     {}", identity.pki_id());
        }
        Err(reason) => {
            let _ = writeln!(out, "  PKI-ID:     unknown ({reason})");
        }
    }
    match LocalMsp::from_files(files, msp_id, now) {
        Ok(_) => {
            let _ = writeln!(out, "  loads:      yes, as the local MSP {} at {}", escaped(msp_id), go_time(whole_seconds(now)));
        }
        Err(err) => {
            let _ = writeln!(out, "  loads:      no: {err}");
        }
    }
}

/// `now` without its fraction of a second, for printing.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs()),
        Err(_) => time,
    }
}

fn validity(cert: &Certificate) -> (SystemTime, SystemTime) {
    let validity = cert.tbs_certificate().validity();
    (validity.not_before.to_system_time(), validity.not_after.to_system_time())
}

/// Text from a certificate or a file name, with non-printable characters escaped (`\u{1b}`), so
/// a hostile name cannot write to the terminal.
fn escaped(text: &str) -> String {
    escape_non_printable(text).into_owned()
}
