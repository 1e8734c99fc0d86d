//! The local MSP: loading a Fabric MSP directory, validating identities against an MSP, signing.
//!
//! Reading the directory ([`MspFiles::read_dir`]) is the only file-system access; everything else
//! works on bytes, so the simulator can build MSPs in memory with [`generate`]. Validity is
//! checked at a time the caller passes in (the injected clock), never the OS clock.
//!
//! An [`Msp`] comes from either source Fabric has: a local MSP directory ([`Msp::from_files`]) or
//! the `FabricMSPConfig` a channel's config block carries for each org
//! ([`Msp::from_fabric_config`]); [`MspFiles::verifying_config`] turns the first into the second
//! as Fabric's `GetVerifyingMspConfig` does, so both paths give the same verifier.
//!
//! Not covered: CRLs in MSP directories (`crls/` is not read; CRLs in a channel's
//! `FabricMSPConfig.revocation_list` are honoured) and idemix MSPs.

pub mod crypto;
pub mod generate;
pub mod identity;
pub mod inspect;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use der::Encode;
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

pub use identity::{Identity, IdentityError, PkiId};

/// The subdirectories of a Fabric MSP directory that hold certificates and keys.
const CERT_DIRS: [&str; 7] = ["signcerts", "keystore", "cacerts", "intermediatecerts", "admincerts", "tlscacerts", "tlsintermediatecerts"];

/// One file of an MSP directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MspFile {
    /// Relative to the MSP directory, e.g. `cacerts/ca.pem`.
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The contents of an MSP directory, in memory. Files in each folder are sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MspFiles {
    /// Where the files came from, for messages. Generated MSPs use a pretend path.
    pub dir: PathBuf,
    pub signcerts: Vec<MspFile>,
    pub keystore: Vec<MspFile>,
    pub cacerts: Vec<MspFile>,
    pub intermediatecerts: Vec<MspFile>,
    pub admincerts: Vec<MspFile>,
    pub tlscacerts: Vec<MspFile>,
    pub tlsintermediatecerts: Vec<MspFile>,
    pub config_yaml: Option<MspFile>,
    /// Folders that are absent (as opposed to empty): Fabric reports those differently.
    pub missing: Vec<&'static str>,
}

/// Why the local MSP could not be loaded. Texts follow Fabric's, so operators recognise them.
#[derive(Debug, thiserror::Error)]
pub enum MspError {
    /// peer.mspConfigPath does not exist or cannot be read.
    #[error("cannot init crypto, specified path \"{}\" does not exist or cannot be accessed: {source}", path.display())]
    Inaccessible { path: PathBuf, source: std::io::Error },
    /// peer.mspConfigPath is a file.
    #[error("cannot init crypto, specified path \"{}\" is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    /// A file or folder inside the MSP could not be read.
    #[error("cannot init crypto, could not read \"{}\": {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// A file inside the MSP is larger than [`MAX_MSP_FILE_BYTES`] (checked before reading it).
    #[error("cannot init crypto, could not read \"{}\": the file is {size} bytes, more than the {MAX_MSP_FILE_BYTES} bytes an MSP file may have", path.display())]
    TooLarge { path: PathBuf, size: u64 },
    /// A symbolic link in the MSP whose target cannot be read (Fabric would skip it, leaving
    /// e.g. "no certificate found" for a signcerts folder that visibly has a file).
    #[error("cannot init crypto, could not read \"{}\": it is a symbolic link to \"{}\": {source}", path.display(), target.display())]
    BrokenLink { path: PathBuf, target: PathBuf, source: std::io::Error },
    /// peer.localMspId is empty.
    #[error("the local MSP must have an ID")]
    NoId,
    /// The directory was read but its contents are not a usable MSP.
    #[error("error when setting up MSP of type bccsp from directory {}: {problem}", dir.display())]
    Setup { dir: PathBuf, problem: String },
}

impl MspFiles {
    /// Reads a Fabric MSP directory. `keystore` overrides `<dir>/keystore`
    /// (peer.BCCSP.SW.FileKeyStore.KeyStore).
    pub fn read_dir(dir: &Path, keystore: Option<&Path>) -> Result<MspFiles, MspError> {
        let meta = std::fs::metadata(dir).map_err(|source| MspError::Inaccessible { path: dir.to_path_buf(), source })?;
        if !meta.is_dir() {
            return Err(MspError::NotADirectory { path: dir.to_path_buf() });
        }
        let mut files = MspFiles { dir: dir.to_path_buf(), ..MspFiles::default() };
        for folder in CERT_DIRS {
            let path = match (folder, keystore) {
                ("keystore", Some(keystore)) => keystore.to_path_buf(),
                _ => dir.join(folder),
            };
            let Some(read) = read_folder(&path, folder)? else {
                files.missing.push(folder);
                continue;
            };
            *files.folder_mut(folder) = read;
        }
        let config_path = dir.join("config.yaml");
        // As Fabric: if anything is there (even a directory), it must read as the config file.
        if std::fs::symlink_metadata(&config_path).is_ok() {
            let bytes = read_file(&config_path)?;
            files.config_yaml = Some(MspFile { name: "config.yaml".into(), bytes });
        }
        Ok(files)
    }

    fn folder_mut(&mut self, folder: &str) -> &mut Vec<MspFile> {
        match folder {
            "signcerts" => &mut self.signcerts,
            "keystore" => &mut self.keystore,
            "cacerts" => &mut self.cacerts,
            "intermediatecerts" => &mut self.intermediatecerts,
            "admincerts" => &mut self.admincerts,
            "tlscacerts" => &mut self.tlscacerts,
            _ => &mut self.tlsintermediatecerts,
        }
    }

    fn find(&self, name: &str) -> Option<&MspFile> {
        let name = name.trim_start_matches("./");
        [&self.cacerts, &self.intermediatecerts, &self.admincerts, &self.tlscacerts, &self.tlsintermediatecerts, &self.signcerts]
            .into_iter()
            .flatten()
            .find(|f| f.name == name)
    }

    /// Writes the files in Fabric's layout under `dir` (used by `peer-core msp generate`).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        for folder in CERT_DIRS {
            std::fs::create_dir_all(dir.join(folder))?;
        }
        let all = [
            &self.signcerts,
            &self.keystore,
            &self.cacerts,
            &self.intermediatecerts,
            &self.admincerts,
            &self.tlscacerts,
            &self.tlsintermediatecerts,
        ];
        for file in all.into_iter().flatten().chain(self.config_yaml.iter()) {
            std::fs::write(dir.join(&file.name), &file.bytes)?;
        }
        Ok(())
    }
}

/// The regular files of one folder, sorted by name; `None` if the folder does not exist.
/// Largest file read from an MSP folder: certificates and keys are ~1 KB, a CA bundle of
/// hundreds of certificates fits; a huge file must not be pulled into memory.
pub const MAX_MSP_FILE_BYTES: u64 = 1 << 20;

/// Reads one MSP file, refusing a huge one before reading it.
fn read_file(path: &Path) -> Result<Vec<u8>, MspError> {
    use std::io::Read;
    let unreadable = |source| MspError::Unreadable { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    if size > MAX_MSP_FILE_BYTES {
        return Err(MspError::TooLarge { path: path.to_path_buf(), size });
    }
    // Sizes from metadata can lie (files under /proc report 0): read one byte past the limit.
    let mut bytes = Vec::new();
    file.take(MAX_MSP_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > MAX_MSP_FILE_BYTES {
        return Err(MspError::TooLarge { path: path.to_path_buf(), size: bytes.len() as u64 });
    }
    Ok(bytes)
}

fn read_folder(path: &Path, folder: &str) -> Result<Option<Vec<MspFile>>, MspError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MspError::Unreadable { path: path.to_path_buf(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| MspError::Unreadable { path: path.to_path_buf(), source })?;
        let file_path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        match std::fs::metadata(&file_path) {
            Ok(meta) if meta.is_file() => {}
            // Sub-folders (and sockets, devices) are not MSP material.
            Ok(_) => continue,
            Err(source) if is_link => {
                let target = std::fs::read_link(&file_path).unwrap_or_default();
                return Err(MspError::BrokenLink { path: file_path, target, source });
            }
            Err(source) => return Err(MspError::Unreadable { path: file_path, source }),
        }
        let bytes = read_file(&file_path)?;
        files.push(MspFile { name: format!("{folder}/{}", entry.file_name().to_string_lossy()), bytes });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(files))
}

/// A CA certificate with what validation needs from it.
#[derive(Clone, Debug)]
struct CaCert {
    cert: Certificate,
    der: Vec<u8>,
    key: p256::ecdsa::VerifyingKey,
}

/// An organizational unit an identity may be required to carry, optionally tied to a CA cert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OuIdentifier {
    pub ou: String,
    /// DER of the certificate the identity must chain to, if given.
    pub cert_der: Option<Vec<u8>>,
}

/// NodeOUs: roles classified by organizational unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOus {
    pub client: Option<OuIdentifier>,
    pub peer: Option<OuIdentifier>,
    pub admin: Option<OuIdentifier>,
    pub orderer: Option<OuIdentifier>,
}

/// The role an identity has in its MSP, per NodeOUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Peer,
    Admin,
    Orderer,
}

/// An MSP as a verifier: which identities belong to it and which are admins.
#[derive(Clone, Debug)]
pub struct Msp {
    pub id: String,
    roots: Vec<CaCert>,
    intermediates: Vec<CaCert>,
    admins: Vec<Vec<u8>>,
    ou_identifiers: Vec<OuIdentifier>,
    node_ous: Option<NodeOus>,
    /// TLS root and intermediate CA certificates (DER), for TLS verification.
    pub tls_roots: Vec<Vec<u8>>,
    pub tls_intermediates: Vec<Vec<u8>>,
    /// Revoked certificates from CRLs signed by one of this MSP's CAs: (issuer name DER, serial).
    revoked: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The local MSP: the verifier plus this peer's own signing identity.
#[derive(Clone)]
pub struct LocalMsp {
    pub msp: Msp,
    pub identity: Identity,
    key: SigningKey,
}

impl fmt::Debug for LocalMsp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalMsp").field("msp", &self.msp.id).field("identity", &self.identity).finish_non_exhaustive()
    }
}

impl LocalMsp {
    /// Reads and validates a local MSP directory at time `now`.
    pub fn load(dir: &Path, msp_id: &str, keystore: Option<&Path>, now: SystemTime) -> Result<LocalMsp, MspError> {
        if msp_id.is_empty() {
            return Err(MspError::NoId);
        }
        let files = MspFiles::read_dir(dir, keystore)?;
        LocalMsp::from_files(&files, msp_id, now)
    }

    /// Validates MSP files already in memory at time `now`.
    pub fn from_files(files: &MspFiles, msp_id: &str, now: SystemTime) -> Result<LocalMsp, MspError> {
        if msp_id.is_empty() {
            return Err(MspError::NoId);
        }
        let setup = |problem: String| MspError::Setup { dir: files.dir.clone(), problem };
        let msp = Msp::from_files(files, msp_id).map_err(setup)?;
        let signcerts_dir = files.dir.join("signcerts");
        let sign_cert = match files.signcerts.as_slice() {
            [] if files.missing.contains(&"signcerts") => {
                return Err(setup(format!(
                    "could not load a valid signer certificate from directory {}: the folder does not exist",
                    signcerts_dir.display()
                )));
            }
            [] => {
                return Err(setup(format!(
                    "could not load a valid signer certificate from directory {}: no certificate found",
                    signcerts_dir.display()
                )));
            }
            [one] => one,
            more => {
                return Err(setup(format!(
                    "could not load a valid signer certificate from directory {}: found {} files, expected exactly one",
                    signcerts_dir.display(),
                    more.len()
                )));
            }
        };
        let sign_path = files.dir.join(&sign_cert.name);
        let bad_signer =
            |reason: String| setup(format!("could not load a valid signer certificate from {}: {reason}", sign_path.display()));
        let der = identity::single_pem_certificate(&sign_cert.bytes).map_err(bad_signer)?;
        let cert = crypto::cert_from_der(&der).map_err(bad_signer)?;
        let identity = Identity::new(msp_id, cert).map_err(bad_signer)?;
        msp.validate(&identity, now)
            .map_err(|reason| setup(format!("the signing certificate {} is not valid: {reason}", sign_path.display())))?;
        let key = find_private_key(files, &identity).map_err(setup)?;
        Ok(LocalMsp { msp, identity, key })
    }

    /// Signs `message` as this peer: ECDSA P-256 / SHA-256, DER, low-S, deterministic.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        crypto::sign(&self.key, message)
    }

    pub fn pki_id(&self) -> PkiId {
        self.identity.pki_id()
    }

    /// When the signing (enrollment) certificate expires.
    pub fn enrollment_cert_expiry(&self) -> SystemTime {
        self.identity.cert.tbs_certificate().validity().not_after.to_system_time()
    }

    /// Fabric's certmonitor line for the enrollment certificate.
    pub fn expiry_message(&self) -> String {
        format!("The enrollment certificate will expire on {}", go_time(self.enrollment_cert_expiry()))
    }
}

impl MspFiles {
    /// The `FabricMSPConfig` a channel config carries for this MSP, as Fabric's
    /// `GetVerifyingMspConfig` builds it: CA, intermediate, admin and TLS certificates as the
    /// files' PEM bytes, OU identifiers and NodeOUs from config.yaml with their certificates
    /// inlined, SHA2/SHA256 crypto config, and no signing identity.
    pub fn verifying_config(&self, msp_id: &str) -> Result<proto::msp::FabricMspConfig, String> {
        use proto::msp::{FabricCryptoConfig, FabricMspConfig, FabricNodeOUs, FabricOuIdentifier};
        if self.cacerts.is_empty() {
            return Err(format!("could not load a valid ca certificate from directory {}", self.dir.join("cacerts").display()));
        }
        let bytes = |list: &[MspFile]| list.iter().map(|f| f.bytes.clone()).collect::<Vec<_>>();
        let mut config = FabricMspConfig {
            name: msp_id.to_string(),
            root_certs: bytes(&self.cacerts),
            intermediate_certs: bytes(&self.intermediatecerts),
            admins: bytes(&self.admincerts),
            crypto_config: Some(FabricCryptoConfig {
                signature_hash_family: "SHA2".into(),
                identity_identifier_hash_function: "SHA256".into(),
            }),
            tls_root_certs: bytes(&self.tlscacerts),
            // Fabric reads TLS intermediates only when there are TLS roots.
            tls_intermediate_certs: if self.tlscacerts.is_empty() { Vec::new() } else { bytes(&self.tlsintermediatecerts) },
            ..FabricMspConfig::default()
        };
        let Some(yaml) = &self.config_yaml else { return Ok(config) };
        let parsed = parse_config_yaml(self, yaml)?;
        let cert_bytes = |name: Option<&str>| -> Result<Vec<u8>, String> {
            match name.filter(|n| !n.is_empty()) {
                None => Ok(Vec::new()),
                Some(name) => self
                    .find(name)
                    .map(|f| f.bytes.clone())
                    .ok_or_else(|| format!("config.yaml names certificate {name:?}, which is not in the MSP directory")),
            }
        };
        for ou in &parsed.organizational_unit_identifiers {
            config.organizational_unit_identifiers.push(FabricOuIdentifier {
                certificate: cert_bytes(ou.certificate.as_deref())?,
                organizational_unit_identifier: ou.ou.clone(),
            });
        }
        if let Some(node_ous) = parsed.node_ous.filter(|n| n.enable) {
            // An identifier with an empty OU is left out, as Fabric does.
            let convert = |ou: &Option<OuYaml>| -> Result<Option<FabricOuIdentifier>, String> {
                match ou.as_ref().filter(|o| !o.ou.is_empty()) {
                    None => Ok(None),
                    Some(ou) => Ok(Some(FabricOuIdentifier {
                        certificate: cert_bytes(ou.certificate.as_deref())?,
                        organizational_unit_identifier: ou.ou.clone(),
                    })),
                }
            };
            config.fabric_node_ous = Some(FabricNodeOUs {
                enable: true,
                client_ou_identifier: convert(&node_ous.client)?,
                peer_ou_identifier: convert(&node_ous.peer)?,
                admin_ou_identifier: convert(&node_ous.admin)?,
                orderer_ou_identifier: convert(&node_ous.orderer)?,
            });
        }
        Ok(config)
    }
}

impl Msp {
    /// Builds the verifying side of an MSP from the `FabricMSPConfig` in a channel config (an
    /// org's `MSP` value). Certificates are PEM, as Fabric stores them. Revocation lists signed
    /// by one of the MSP's CAs are honoured; a CRL no CA signed can revoke nothing, so it is
    /// ignored, as it is in Fabric. A signing identity in the config is ignored (channel
    /// configs carry none).
    pub fn from_fabric_config(config: &proto::msp::FabricMspConfig) -> Result<Msp, String> {
        if config.name.is_empty() {
            return Err("the MSP config has no name (MSP ID)".into());
        }
        if let Some(crypto) = &config.crypto_config {
            let family_ok = crypto.signature_hash_family.is_empty() || crypto.signature_hash_family == "SHA2";
            let hash_ok = crypto.identity_identifier_hash_function.is_empty() || crypto.identity_identifier_hash_function == "SHA256";
            if !family_ok || !hash_ok {
                return Err(format!(
                    "unsupported crypto config (signature hash family {:?}, identity hash {:?}); peer-core supports SHA2 and SHA256 only",
                    crypto.signature_hash_family, crypto.identity_identifier_hash_function
                ));
            }
        }
        let as_files = |list: &[Vec<u8>], field: &str| -> Vec<MspFile> {
            list.iter().enumerate().map(|(i, bytes)| MspFile { name: format!("{field}[{i}]"), bytes: bytes.clone() }).collect()
        };
        if config.root_certs.is_empty() {
            return Err("the MSP config has no root certificates".into());
        }
        let roots = ca_certs(&as_files(&config.root_certs, "root_certs"))?;
        let intermediates = ca_certs(&as_files(&config.intermediate_certs, "intermediate_certs"))?;
        let ders = |list: &[Vec<u8>], field: &str| -> Result<Vec<Vec<u8>>, String> {
            list.iter()
                .enumerate()
                .map(|(i, pem)| {
                    identity::single_pem_certificate(pem)
                        .and_then(|der| crypto::cert_from_der(&der).map(|_| der))
                        .map_err(|e| format!("{field}[{i}]: {e}"))
                })
                .collect()
        };
        let admins = ders(&config.admins, "admins")?;
        let tls_roots = ders(&config.tls_root_certs, "tls_root_certs")?;
        let tls_intermediates = ders(&config.tls_intermediate_certs, "tls_intermediate_certs")?;
        let ou = |id: &proto::msp::FabricOuIdentifier, field: &str| -> Result<OuIdentifier, String> {
            let cert_der = if id.certificate.is_empty() {
                None
            } else {
                Some(identity::single_pem_certificate(&id.certificate).map_err(|e| format!("{field}: certificate: {e}"))?)
            };
            Ok(OuIdentifier { ou: id.organizational_unit_identifier.clone(), cert_der })
        };
        let ou_identifiers = config
            .organizational_unit_identifiers
            .iter()
            .enumerate()
            .map(|(i, id)| ou(id, &format!("organizational_unit_identifiers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let node_ous = match config.fabric_node_ous.as_ref().filter(|n| n.enable) {
            None => None,
            Some(n) => {
                let opt = |id: &Option<proto::msp::FabricOuIdentifier>, field: &str| id.as_ref().map(|id| ou(id, field)).transpose();
                Some(NodeOus {
                    client: opt(&n.client_ou_identifier, "client_ou_identifier")?,
                    peer: opt(&n.peer_ou_identifier, "peer_ou_identifier")?,
                    admin: opt(&n.admin_ou_identifier, "admin_ou_identifier")?,
                    orderer: opt(&n.orderer_ou_identifier, "orderer_ou_identifier")?,
                })
            }
        };
        let mut msp = Msp {
            id: config.name.clone(),
            roots,
            intermediates,
            admins,
            ou_identifiers,
            node_ous,
            tls_roots,
            tls_intermediates,
            revoked: Vec::new(),
        };
        for (i, pem) in config.revocation_list.iter().enumerate() {
            msp.add_crl(pem).map_err(|e| format!("revocation_list[{i}]: {e}"))?;
        }
        Ok(msp)
    }

    /// Records the serials a CRL revokes, if one of this MSP's CAs signed it.
    fn add_crl(&mut self, pem: &[u8]) -> Result<(), String> {
        use der::Decode as _;
        let blocks = identity::pem_blocks(pem)?;
        let der = match blocks.as_slice() {
            [(label, der)] if label == "X509 CRL" => der,
            [(label, _)] => return Err(format!("expected an X509 CRL PEM block, found {label}")),
            _ => return Err(format!("expected one X509 CRL PEM block, found {}", blocks.len())),
        };
        let crl = <x509_cert::crl::CertificateList>::from_der(der).map_err(|e| format!("not an X.509 CRL: {e}"))?;
        if crl.signature_algorithm.oid != crypto::ECDSA_WITH_SHA256 {
            return Err(format!("unsupported CRL signature algorithm {}", crl.signature_algorithm.oid));
        }
        let tbs = crl.tbs_cert_list.to_der().map_err(|e| format!("cannot encode the CRL: {e}"))?;
        let Some(signature) = crl.signature.as_bytes().and_then(|b| p256::ecdsa::Signature::from_der(b).ok()) else {
            return Err("the CRL signature is malformed".into());
        };
        let signature = signature.normalize_s();
        let signed_by_ca = self.roots.iter().chain(&self.intermediates).any(|ca| {
            use p256::ecdsa::signature::Verifier as _;
            ca.cert.tbs_certificate().subject() == &crl.tbs_cert_list.issuer && ca.key.verify(&tbs, &signature).is_ok()
        });
        if !signed_by_ca {
            return Ok(());
        }
        let issuer = crl.tbs_cert_list.issuer.to_der().map_err(|e| format!("cannot encode the CRL issuer: {e}"))?;
        for revoked in crl.tbs_cert_list.revoked_certificates.iter().flatten() {
            self.revoked.push((issuer.clone(), revoked.serial_number.as_bytes().to_vec()));
        }
        Ok(())
    }

    fn check_not_revoked(&self, cert: &Certificate) -> Result<(), String> {
        if self.revoked.is_empty() {
            return Ok(());
        }
        let issuer = cert.tbs_certificate().issuer().to_der().unwrap_or_default();
        let serial = cert.tbs_certificate().serial_number().as_bytes();
        if self.revoked.iter().any(|(i, s)| *i == issuer && s.as_slice() == serial) {
            return Err("The certificate has been revoked".into());
        }
        Ok(())
    }
}

/// Finds the keystore key whose public key is the signing certificate's.
fn find_private_key(files: &MspFiles, identity: &Identity) -> Result<SigningKey, String> {
    let keystore = files.dir.join("keystore");
    if files.keystore.is_empty() {
        return Err(format!("no private key found in {} for the signing certificate", keystore.display()));
    }
    let mut problems = Vec::new();
    let mut found_other_key = false;
    for file in &files.keystore {
        let blocks = match identity::pem_blocks(&file.bytes) {
            Ok(blocks) if blocks.is_empty() => {
                let what = if file.bytes.is_empty() { "the file is empty" } else { "no PEM block found" };
                problems.push(format!("{}: {what}", file.name));
                continue;
            }
            Ok(blocks) => blocks,
            Err(reason) => {
                problems.push(format!("{}: {reason}", file.name));
                continue;
            }
        };
        for (label, der) in blocks {
            let key = match label.as_str() {
                "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der)
                    .map_err(|_| "unsupported key type: not an ECDSA P-256 PKCS#8 private key (peer-core supports P-256 only)".to_string()),
                "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
                    .map(SigningKey::from)
                    .map_err(|_| "unsupported key type: not an ECDSA P-256 private key".to_string()),
                other => Err(format!(
                    "unsupported key type: a PEM block labelled {other} is not a private key peer-core can use (it reads unencrypted PRIVATE KEY and EC PRIVATE KEY blocks)"
                )),
            };
            match key {
                Ok(key) if *key.verifying_key() == identity.public_key => return Ok(key),
                Ok(_) => found_other_key = true,
                Err(reason) => problems.push(format!("{}: {reason}", file.name)),
            }
        }
    }
    if found_other_key || problems.is_empty() {
        return Err(format!("the private key in {} does not match the public key of the signing certificate", keystore.display()));
    }
    Err(format!("no usable private key in {}: {}", keystore.display(), problems.join("; ")))
}

impl Msp {
    /// Builds the verifying side of an MSP from its files (CA certs, OUs, admins, TLS CAs).
    pub fn from_files(files: &MspFiles, msp_id: &str) -> Result<Msp, String> {
        let folder = |name: &str| files.dir.join(name).display().to_string();
        if files.missing.contains(&"cacerts") {
            return Err(format!("could not load a valid ca certificate from directory {}: the folder does not exist", folder("cacerts")));
        }
        if files.cacerts.is_empty() {
            return Err(format!("could not load a valid ca certificate from directory {}: no certificate found", folder("cacerts")));
        }
        let roots = ca_certs(&files.cacerts)
            .map_err(|e| format!("could not load a valid ca certificate from directory {}: {e}", folder("cacerts")))?;
        let intermediates = ca_certs(&files.intermediatecerts)
            .map_err(|e| format!("could not load a valid intermediate certificate from directory {}: {e}", folder("intermediatecerts")))?;
        let pem_ders = |list: &[MspFile], what: &str, folder_name: &str| -> Result<Vec<Vec<u8>>, String> {
            list.iter()
                .map(|f| {
                    identity::single_pem_certificate(&f.bytes).and_then(|der| crypto::cert_from_der(&der).map(|_| der)).map_err(|e| {
                        format!("could not load a valid {what} certificate from directory {}: {}: {e}", folder(folder_name), f.name)
                    })
                })
                .collect()
        };
        let admins = pem_ders(&files.admincerts, "admin", "admincerts")?;
        let tls_roots = pem_ders(&files.tlscacerts, "TLS CA", "tlscacerts")?;
        let tls_intermediates = pem_ders(&files.tlsintermediatecerts, "TLS intermediate", "tlsintermediatecerts")?;
        let mut msp = Msp {
            id: msp_id.to_string(),
            roots,
            intermediates,
            admins,
            ou_identifiers: Vec::new(),
            node_ous: None,
            tls_roots,
            tls_intermediates,
            revoked: Vec::new(),
        };
        if let Some(config) = &files.config_yaml {
            msp.apply_config_yaml(files, config)?;
        }
        Ok(msp)
    }

    fn apply_config_yaml(&mut self, files: &MspFiles, config: &MspFile) -> Result<(), String> {
        let path = files.dir.join("config.yaml");
        let parsed = parse_config_yaml(files, config)?;
        let resolve = |ou: &OuYaml| -> Result<OuIdentifier, String> {
            let cert_der = match ou.certificate.as_deref().filter(|c| !c.is_empty()) {
                None => None,
                Some(name) => {
                    let file = files.find(name).ok_or_else(|| {
                        format!("invalid {}: certificate {name:?} of OU {:?} is not in the MSP directory", path.display(), ou.ou)
                    })?;
                    Some(identity::single_pem_certificate(&file.bytes).map_err(|e| format!("invalid {}: {name}: {e}", path.display()))?)
                }
            };
            Ok(OuIdentifier { ou: ou.ou.clone(), cert_der })
        };
        self.ou_identifiers = parsed.organizational_unit_identifiers.iter().map(resolve).collect::<Result<_, _>>()?;
        if let Some(node_ous) = parsed.node_ous.filter(|n| n.enable) {
            let opt = |ou: &Option<OuYaml>| ou.as_ref().map(resolve).transpose();
            self.node_ous = Some(NodeOus {
                client: opt(&node_ous.client)?,
                peer: opt(&node_ous.peer)?,
                admin: opt(&node_ous.admin)?,
                orderer: opt(&node_ous.orderer)?,
            });
        }
        Ok(())
    }

    /// Whether `identity` is a valid member of this MSP at `now`: right MSP ID, not a CA cert,
    /// within its validity, chaining to a root through the intermediates, and carrying the OUs
    /// that config.yaml requires.
    pub fn validate(&self, identity: &Identity, now: SystemTime) -> Result<(), String> {
        if identity.msp_id != self.id {
            return Err(format!("the identity belongs to MSP {:?}, not {:?}", identity.msp_id, self.id));
        }
        if is_ca(&identity.cert) {
            return Err("An X509 certificate with Basic Constraint: Certificate Authority equals true cannot be used as an identity".into());
        }
        check_validity(&identity.cert, now)?;
        let chain = self.chain(&identity.cert, now)?;
        self.check_not_revoked(&identity.cert)?;
        let ous = identity.organizational_units();
        let matches = |id: &OuIdentifier| ous.contains(&id.ou) && id.cert_der.as_ref().is_none_or(|der| chain.contains(der));
        if !self.ou_identifiers.is_empty() && !self.ou_identifiers.iter().any(matches) {
            let wanted: Vec<&str> = self.ou_identifiers.iter().map(|o| o.ou.as_str()).collect();
            return Err(format!("none of the identity's organizational units {ous:?} is one the MSP requires {wanted:?}"));
        }
        if let Some(node_ous) = &self.node_ous {
            let roles: Vec<&OuIdentifier> = [&node_ous.client, &node_ous.peer, &node_ous.admin, &node_ous.orderer]
                .into_iter()
                .flatten()
                .filter(|o| matches(o))
                .collect();
            match roles.len() {
                1 => {}
                0 => {
                    return Err(format!(
                        "NodeOUs are enabled but the identity's organizational units {ous:?} name no role (client, peer, admin or orderer)"
                    ));
                }
                _ => return Err(format!("the identity's organizational units {ous:?} name more than one NodeOU role")),
            }
        }
        Ok(())
    }

    /// The NodeOUs of config.yaml, when enabled.
    pub fn node_ous(&self) -> Option<&NodeOus> {
        self.node_ous.as_ref()
    }

    /// Whether the identity's certificate is one of admincerts.
    pub fn is_listed_admin(&self, identity: &Identity) -> bool {
        self.admins.contains(&identity.cert_der())
    }

    /// The role of a valid identity under NodeOUs (None when NodeOUs are off).
    pub fn role(&self, identity: &Identity) -> Option<Role> {
        let node_ous = self.node_ous.as_ref()?;
        let ous = identity.organizational_units();
        let has = |o: &Option<OuIdentifier>| o.as_ref().is_some_and(|o| ous.contains(&o.ou));
        [(Role::Admin, &node_ous.admin), (Role::Peer, &node_ous.peer), (Role::Client, &node_ous.client), (Role::Orderer, &node_ous.orderer)]
            .into_iter()
            .find(|(_, ou)| has(ou))
            .map(|(role, _)| role)
    }

    /// Whether a (valid) identity is an admin of this MSP: listed in admincerts, or carrying the
    /// admin OU when NodeOUs are enabled.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        self.admins.contains(&identity.cert_der()) || self.role(identity) == Some(Role::Admin)
    }

    /// Validation as Fabric's MSP does it when policies are evaluated: the certificate chain is
    /// checked at one second after the identity's `notBefore`, so expiry plays no part (callers
    /// that care, such as the deliver service, check expiry themselves).
    pub fn validate_ignoring_expiry(&self, identity: &Identity) -> Result<(), String> {
        let not_before = identity.cert.tbs_certificate().validity().not_before.to_system_time();
        self.validate(identity, not_before + std::time::Duration::from_secs(1))
    }

    /// Whether `identity` satisfies an `MSPRole` principal of this MSP (`None` is MEMBER), with
    /// the rules of Fabric's MSP version 1.4.2 (the one V2_0 channels use): MEMBER needs a valid
    /// identity; ADMIN needs a certificate listed in admincerts, or a valid identity with the
    /// admin NodeOU; CLIENT, PEER and ORDERER need a valid identity with that NodeOU (so NodeOUs
    /// must be on).
    pub fn satisfies_role(&self, identity: &Identity, role: Option<Role>) -> Result<(), String> {
        if identity.msp_id != self.id {
            return Err(format!("the identity is a member of a different MSP (expected {}, got {})", self.id, identity.msp_id));
        }
        let Some(role) = role else { return self.validate_ignoring_expiry(identity) };
        if role == Role::Admin && self.admins.contains(&identity.cert_der()) {
            return Ok(());
        }
        self.validate_ignoring_expiry(identity).map_err(|e| format!("the identity is not valid under MSP {}: {e}", self.id))?;
        if self.node_ous.is_none() {
            return Err(format!("the identity is not a {role:?} under MSP {}: NodeOUs are not enabled", self.id));
        }
        if self.role(identity) != Some(role) {
            return Err(format!("the identity is not a {role:?} under MSP {}", self.id));
        }
        Ok(())
    }

    /// Fabric's certifiers identifier of a valid identity: SHA-256 over the DER of its chain
    /// from the issuer up to the root (what an `OrganizationUnit` principal names).
    pub fn certifiers_identifier(&self, identity: &Identity) -> Result<[u8; 32], String> {
        let not_before = identity.cert.tbs_certificate().validity().not_before.to_system_time();
        let chain = self.chain(&identity.cert, not_before + std::time::Duration::from_secs(1))?;
        Ok(crypto::sha256(&chain.concat()))
    }

    /// The DER certificates from `cert`'s issuer up to a root, verifying each signature.
    fn chain(&self, cert: &Certificate, now: SystemTime) -> Result<Vec<Vec<u8>>, String> {
        const MAX_DEPTH: usize = 8;
        let mut chain = Vec::new();
        let mut current = cert.clone();
        for _ in 0..MAX_DEPTH {
            let issuer = current.tbs_certificate().issuer();
            let signed_by =
                |ca: &&CaCert| ca.cert.tbs_certificate().subject() == issuer && crypto::cert_signed_by(&current, &ca.key).is_ok();
            if let Some(root) = self.roots.iter().find(signed_by) {
                check_validity(&root.cert, now).map_err(|e| format!("its root CA certificate is not valid: {e}"))?;
                chain.push(root.der.clone());
                return Ok(chain);
            }
            let Some(intermediate) = self.intermediates.iter().find(signed_by) else {
                // A CA of the same name whose key did not sign it: usually a regenerated CA.
                let same_name = self.roots.iter().chain(&self.intermediates).any(|ca| ca.cert.tbs_certificate().subject() == issuer);
                if same_name {
                    return Err(format!(
                        "it is not issued by any CA in cacerts or intermediatecerts: the CA named {issuer} there did not sign it (another key: a regenerated CA?)"
                    ));
                }
                return Err(format!("it is not issued by any CA in cacerts or intermediatecerts (issuer: {issuer})"));
            };
            check_validity(&intermediate.cert, now).map_err(|e| format!("an intermediate CA certificate is not valid: {e}"))?;
            chain.push(intermediate.der.clone());
            current = intermediate.cert.clone();
        }
        Err(format!("its certificate chain is longer than {MAX_DEPTH}"))
    }
}

fn ca_certs(files: &[MspFile]) -> Result<Vec<CaCert>, String> {
    files
        .iter()
        .map(|file| {
            let der = identity::single_pem_certificate(&file.bytes).map_err(|e| format!("{}: {e}", file.name))?;
            let cert = crypto::cert_from_der(&der).map_err(|e| format!("{}: {e}", file.name))?;
            if !is_ca(&cert) {
                return Err(format!("{}: CA Certificate did not have the CA attribute", file.name));
            }
            let key = crypto::cert_public_key(&cert).map_err(|e| format!("{}: {e}", file.name))?;
            Ok(CaCert { cert, der, key })
        })
        .collect()
}

/// True when the certificate has Basic Constraints with cA set.
fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate().get_extension::<BasicConstraints>().ok().flatten().is_some_and(|(_, constraints)| constraints.ca)
}

fn check_validity(cert: &Certificate, now: SystemTime) -> Result<(), String> {
    let validity = cert.tbs_certificate().validity();
    let not_before = validity.not_before.to_system_time();
    let not_after = validity.not_after.to_system_time();
    if now < not_before {
        return Err(format!("the certificate is not valid before {} (now is {})", go_time(not_before), go_time(now)));
    }
    if now > not_after {
        return Err(format!("the certificate expired on {} (now is {})", go_time(not_after), go_time(now)));
    }
    Ok(())
}

/// A time as Go's `time.Time.String` prints a UTC time: `2027-11-10 13:41:11 +0000 UTC`.
pub fn go_time(time: SystemTime) -> String {
    crate::gotime::format(crate::gotime::GO_STRING, time)
}

/// Parses an MSP directory's config.yaml (empty text is an empty config).
fn parse_config_yaml(files: &MspFiles, config: &MspFile) -> Result<ConfigYaml, String> {
    let path = files.dir.join("config.yaml");
    let text = std::str::from_utf8(&config.bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    if text.trim().is_empty() {
        return Ok(ConfigYaml::default());
    }
    let invalid = |e: crate::config::tree::SyntaxError| format!("invalid {}:{}:{}: {}", path.display(), e.line, e.column, e.message);
    // The syntax first, with core.yaml's reader: its messages are ours (a repeated key names
    // where it was first), then the fields.
    crate::config::tree::parse(text).map_err(invalid)?;
    serde_saphyr::from_str(text).map_err(|e| invalid(crate::config::tree::SyntaxError::from(&e)))
}

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigYaml {
    #[serde(rename = "OrganizationalUnitIdentifiers", default)]
    organizational_unit_identifiers: Vec<OuYaml>,
    #[serde(rename = "NodeOUs", default)]
    node_ous: Option<NodeOusYaml>,
}

#[derive(Debug, serde::Deserialize)]
struct OuYaml {
    #[serde(rename = "Certificate", default)]
    certificate: Option<String>,
    #[serde(rename = "OrganizationalUnitIdentifier")]
    ou: String,
}

#[derive(Debug, serde::Deserialize)]
struct NodeOusYaml {
    #[serde(rename = "Enable", default)]
    enable: bool,
    #[serde(rename = "ClientOUIdentifier", default)]
    client: Option<OuYaml>,
    #[serde(rename = "PeerOUIdentifier", default)]
    peer: Option<OuYaml>,
    #[serde(rename = "AdminOUIdentifier", default)]
    admin: Option<OuYaml>,
    #[serde(rename = "OrdererOUIdentifier", default)]
    orderer: Option<OuYaml>,
}
