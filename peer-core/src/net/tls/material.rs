//! TLS material: PEM files as read from disk, and what they must hold before a server or client
//! uses them: certificate chains, trust anchors and a P-256 private key that belongs to its
//! certificate.
//!
//! Reading is separate from checking. The host (the CLI on a real peer) reads the files named by
//! `peer.tls.*` into [`PemFile`]s, which keep their path, so every later error names the file;
//! the simulator builds the same [`PemFile`]s from generated organizations without a disk.
//! Nothing here reads a clock: whether a certificate has expired is the caller's question (Fabric
//! only warns at start, and TLS verification checks it at the handshake's time).
//!
//! Only ECDSA P-256 keys are accepted: they are what Fabric's cryptogen and Fabric CA issue, and
//! the only kind the simulator's deterministic provider signs with. An RSA or Ed25519 key file is
//! refused at start with the file named, rather than failing at the first handshake.

use std::path::{Path, PathBuf};

use der::Decode;
use der::referenced::OwnedToRef;
use p256::pkcs8::DecodePrivateKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use sha2::{Digest, Sha256};

/// A file's bytes with the path they came from (errors name it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFile {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl PemFile {
    /// Reads `path`; `what` names the file's role in the error (`TLS certificate`, …).
    pub fn read(path: &Path, what: &'static str) -> Result<PemFile, TlsError> {
        std::fs::read(path).map(|bytes| PemFile { path: path.to_path_buf(), bytes }).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            reason: io_reason(&source),
        })
    }
}

/// Go's wording for a failed open, which Fabric's messages embed (`open PATH: no such file or
/// directory`).
fn io_reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let text = error.to_string();
            text.split(" (os error").next().unwrap_or(&text).to_lowercase()
        }
    }
}

/// Why TLS material is unusable. Every variant names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("error loading {what} (open {}: {reason})", path.display())]
    Read { what: &'static str, path: PathBuf, reason: String },
    /// The file holds no PEM block of the kind needed.
    #[error("tls: failed to find any PEM data in {input} input {}", path.display())]
    NoPem { input: &'static str, path: PathBuf },
    /// A certificate in the file does not parse.
    #[error("tls: failed to parse certificate in {}: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// The key does not parse (or is not PKCS#8/SEC1).
    #[error("tls: failed to parse private key in {}: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    /// The key (or the certificate's public key) is not ECDSA P-256.
    #[error("tls: {} holds {kind}; peer-core takes ECDSA P-256 TLS keys only (as cryptogen and Fabric CA issue)", path.display())]
    NotP256 { path: PathBuf, kind: String },
    /// Key and certificate do not belong together.
    #[error("tls: private key does not match public key (certificate {}, key {})", cert.display(), key.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    /// The certificate is not valid now (expired, or not yet valid): every peer would refuse it.
    #[error("tls: the certificate in {} {when}", path.display())]
    NotValidNow { path: PathBuf, when: String },
}

/// Every certificate (DER) of the PEM `CERTIFICATE` blocks in `file`, in order. No block at all is
/// an error; so is a block that is not a certificate.
pub fn certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(&file.bytes) {
        let der = item.map_err(|e| TlsError::BadCertificate { path: file.path.clone(), reason: e.to_string() })?;
        x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|e| TlsError::BadCertificate { path: file.path.clone(), reason: e.to_string() })?;
        out.push(der);
    }
    if out.is_empty() {
        return Err(TlsError::NoPem { input: "certificate", path: file.path.clone() });
    }
    Ok(out)
}

/// Every certificate of `files`, file by file ([`certificates`] of each; the first bad file is
/// the error).
pub fn certificates_of(files: &[PemFile]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for file in files {
        out.extend(certificates(file)?);
    }
    Ok(out)
}

/// SHA-256 of a certificate's DER: Fabric's TLS certificate hash (gossip's ConnEstablish, the
/// channel header's `tls_cert_hash`).
pub fn cert_hash(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// A certificate chain (leaf first) with its private key, checked to belong together.
#[derive(Debug)]
pub struct KeyPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// When the leaf expires (for the start-up expiry lines).
    pub not_after: std::time::SystemTime,
    /// When the leaf becomes valid.
    pub not_before: std::time::SystemTime,
    /// Where the pair came from (for log lines).
    pub cert_path: PathBuf,
}

impl Clone for KeyPair {
    fn clone(&self) -> KeyPair {
        KeyPair {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            not_after: self.not_after,
            not_before: self.not_before,
            cert_path: self.cert_path.clone(),
        }
    }
}

impl KeyPair {
    /// Parses `cert` (a chain, leaf first) and `key` and checks that the key is the leaf's.
    pub fn from_files(cert: &PemFile, key: &PemFile) -> Result<KeyPair, TlsError> {
        let chain = certificates(cert)?;
        let leaf = x509_cert::Certificate::from_der(chain[0].as_ref())
            .map_err(|e| TlsError::BadCertificate { path: cert.path.clone(), reason: e.to_string() })?;
        let spki = &leaf.tbs_certificate().subject_public_key_info();
        let leaf_point = p256::PublicKey::try_from(spki.owned_to_ref())
            .map_err(|_| TlsError::NotP256 { path: cert.path.clone(), kind: key_kind(&spki.algorithm.oid.to_string()) })?;
        let (der, secret) = private_key(key)?;
        if secret.public_key() != leaf_point {
            return Err(TlsError::Mismatch { cert: cert.path.clone(), key: key.path.clone() });
        }
        let validity = leaf.tbs_certificate().validity();
        let (not_before, not_after) = (validity.not_before.to_system_time(), validity.not_after.to_system_time());
        Ok(KeyPair { chain, key: der, not_after, not_before, cert_path: cert.path.clone() })
    }

    /// [`KeyPair::from_files`], and the leaf valid at `now` ([`KeyPair::check_valid_at`]).
    pub fn from_files_valid_at(cert: &PemFile, key: &PemFile, now: std::time::SystemTime) -> Result<KeyPair, TlsError> {
        let pair = KeyPair::from_files(cert, key)?;
        pair.check_valid_at(now)?;
        Ok(pair)
    }

    /// Whether the leaf is valid at `now` (the caller's clock: the env's, so the simulator's
    /// certificates expire on simulated time). A pair that is not is refused where it is loaded:
    /// Fabric starts with it and only warns, then every handshake fails.
    pub fn check_valid_at(&self, now: std::time::SystemTime) -> Result<(), TlsError> {
        let when = if now > self.not_after {
            format!("expired on {}", crate::gotime::format(crate::gotime::GO_STRING, self.not_after))
        } else if now < self.not_before {
            format!("is not valid before {}", crate::gotime::format(crate::gotime::GO_STRING, self.not_before))
        } else {
            return Ok(());
        };
        Err(TlsError::NotValidNow { path: self.cert_path.clone(), when })
    }

    /// SHA-256 of the leaf certificate.
    pub fn leaf_hash(&self) -> [u8; 32] {
        cert_hash(self.chain[0].as_ref())
    }
}

/// The P-256 private key of `file`: PKCS#8 (`PRIVATE KEY`, what cryptogen writes) or SEC1
/// (`EC PRIVATE KEY`).
fn private_key(file: &PemFile) -> Result<(PrivateKeyDer<'static>, p256::SecretKey), TlsError> {
    let der = PrivateKeyDer::from_pem_slice(&file.bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPem { input: "key", path: file.path.clone() },
        other => TlsError::BadKey { path: file.path.clone(), reason: other.to_string() },
    })?;
    let secret = match &der {
        PrivateKeyDer::Pkcs8(pkcs8) => pkcs8_secret(file, pkcs8)?,
        PrivateKeyDer::Sec1(sec1) => sec1_secret(file, sec1)?,
        PrivateKeyDer::Pkcs1(_) => return Err(TlsError::NotP256 { path: file.path.clone(), kind: "an RSA key".into() }),
        _ => return Err(TlsError::BadKey { path: file.path.clone(), reason: "unknown key format".into() }),
    };
    Ok((der, secret))
}

fn pkcs8_secret(file: &PemFile, der: &PrivatePkcs8KeyDer<'_>) -> Result<p256::SecretKey, TlsError> {
    p256::SecretKey::from_pkcs8_der(der.secret_pkcs8_der()).map_err(|e| {
        match p256::pkcs8::PrivateKeyInfoRef::from_der(der.secret_pkcs8_der()) {
            Ok(info) => TlsError::NotP256 { path: file.path.clone(), kind: key_kind(&info.algorithm.oid.to_string()) },
            Err(_) => TlsError::BadKey { path: file.path.clone(), reason: e.to_string() },
        }
    })
}

fn sec1_secret(file: &PemFile, der: &PrivateSec1KeyDer<'_>) -> Result<p256::SecretKey, TlsError> {
    p256::SecretKey::from_sec1_der(der.secret_sec1_der())
        .map_err(|e| TlsError::BadKey { path: file.path.clone(), reason: format!("not a P-256 EC key: {e}") })
}

/// A readable name for a public key algorithm.
fn key_kind(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.1" => "an RSA key".into(),
        "1.3.101.112" => "an Ed25519 key".into(),
        "1.3.101.113" => "an Ed448 key".into(),
        "1.2.840.10045.2.1" => "an ECDSA key on another curve than P-256".into(),
        other => format!("a key of unknown algorithm {other}"),
    }
}
