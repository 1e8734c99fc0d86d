//! The peer's TLS (`peer.tls.*`): the files the host reads, their checks at start with Fabric's
//! texts, the peer port's server configuration, the client pair and trust pool gossip dials with,
//! and keeping both trust pools current as channels are joined and reconfigured.
//!
//! Trust follows Fabric (spec §1.4, §2.1): the peer port's client-certificate roots are every
//! joined channel's application orgs' TLS root and intermediate CAs, plus
//! `peer.tls.clientRootCAs.files`, plus `peer.tls.rootcert.file`; gossip dials trust
//! `peer.tls.rootcert.file` plus the same channel CAs. Orderer orgs' CAs are trusted by neither.
//! A new set applies to new handshakes; open connections are not re-verified.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use tracing::{debug, info, warn};

use crate::blocks::deliverclient::DeliverTls;
use crate::channel::config::ChannelConfig;
use crate::config::{AddressOverride, OperationsTlsConfig, TlsConfig};
use crate::env::Env;
use crate::msp::go_time;
use crate::net::tls::{ClientAuth, ClientRoots, KeyPair, PemFile, TlsContext, TlsError, certificates, certificates_of, msp_tls_cas};

/// The files of `peer.tls.*`, read by the host (the CLI from disk; the simulator from its
/// generated orgs). Each keeps its path for errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PemFile,
    pub key: PemFile,
    pub root_cert: Option<PemFile>,
    /// Read only when `peer.tls.clientAuthRequired` is true (as Fabric does).
    pub client_root_cas: Vec<PemFile>,
    /// `peer.tls.clientCert.file` and `clientKey.file`, both or neither (the config checks it).
    pub client: Option<(PemFile, PemFile)>,
    /// The `caCertsFile` of each `peer.deliveryclient.addressOverrides` entry that has one, by
    /// the overridden address (`from`).
    pub orderer_override_cas: Vec<(String, PemFile)>,
}

impl TlsFiles {
    /// Reads the files `tls` and the orderer address `overrides` name; `None` when TLS is off.
    /// The first unreadable file is the error, with Fabric's `error loading …` wording (Fabric
    /// only warns about an unreadable `caCertsFile` and drops the override: peer-core refuses
    /// to start, as the operator asked for that CA).
    pub fn read(tls: &TlsConfig, overrides: &[AddressOverride]) -> Result<Option<TlsFiles>, TlsError> {
        if !tls.enabled {
            return Ok(None);
        }
        let required = |path: &Option<std::path::PathBuf>, what: &'static str| -> Result<PemFile, TlsError> {
            let path = path.as_deref().unwrap_or(Path::new(""));
            PemFile::read(path, what)
        };
        let key = required(&tls.key_file, "TLS key")?;
        let cert = required(&tls.cert_file, "TLS certificate")?;
        let root_cert = tls.root_cert_file.as_deref().map(|p| PemFile::read(p, "TLS root certificate")).transpose()?;
        let client_root_cas = if tls.client_auth_required {
            tls.client_root_cas.iter().map(|p| PemFile::read(p, "client root CAs")).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let client = match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(cert), Some(key)) => Some((PemFile::read(cert, "client TLS certificate")?, PemFile::read(key, "client TLS key")?)),
            _ => None,
        };
        let orderer_override_cas = overrides
            .iter()
            .filter_map(|o| o.ca_certs_file.as_deref().map(|path| (o, path)))
            .map(|(o, path)| Ok((o.from.clone(), PemFile::read(path, "peer.deliveryclient.addressOverrides caCertsFile")?)))
            .collect::<Result<_, TlsError>>()?;
        Ok(Some(TlsFiles { cert, key, root_cert, client_root_cas, client, orderer_override_cas }))
    }
}

/// The files of `operations.tls.*` when `operations.tls.enabled`, read by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationsTlsFiles {
    pub cert: PemFile,
    pub key: PemFile,
    pub client_root_cas: Vec<PemFile>,
}

impl OperationsTlsFiles {
    /// Reads the files `tls` names; `None` when operations TLS is off.
    pub fn read(tls: &OperationsTlsConfig) -> Result<Option<OperationsTlsFiles>, TlsError> {
        if !tls.enabled {
            return Ok(None);
        }
        let path = |p: &Option<std::path::PathBuf>| p.clone().unwrap_or_default();
        let key = PemFile::read(&path(&tls.key_file), "TLS key")?;
        let cert = PemFile::read(&path(&tls.cert_file), "TLS certificate")?;
        let client_root_cas = tls.client_root_cas.iter().map(|p| PemFile::read(p, "client root CAs")).collect::<Result<_, _>>()?;
        Ok(Some(OperationsTlsFiles { cert, key, client_root_cas }))
    }

    /// The operations server's configuration (spec §5): its pair; client certificates verified
    /// against `clientRootCAs.files`, required with `clientAuthRequired`, else verified if given.
    pub fn server(&self, env: &Env, client_auth_required: bool) -> Result<Arc<rustls::ServerConfig>, String> {
        let context = TlsContext::new(&crate::net::tls::provider(env), env.clock.clone());
        let pair = KeyPair::from_files_valid_at(&self.cert, &self.key, env.clock.wall_clock()).map_err(|e| e.to_string())?;
        let roots = certificates_of(&self.client_root_cas).map_err(|e| e.to_string())?;
        let auth = if client_auth_required {
            ClientAuth::Require(ClientRoots::trusting(&context, &roots).map_err(|e| e.to_string())?)
        } else {
            ClientAuth::VerifyIfGiven(roots)
        };
        context.http1_server(&pair, auth).map_err(|e| e.to_string())
    }
}

/// Why the peer's TLS could not be set up: Fabric's FATAL texts, the cause naming the file.
#[derive(Debug, thiserror::Error)]
pub enum PeerTlsError {
    /// `peer.tls.enabled` is true but the host gave no TLS files.
    #[error("Error loading secure config for peer (peer.tls.enabled is true but no TLS files were given)")]
    NoFiles,
    /// The server pair is unusable.
    #[error("Failed to create peer server ({0})")]
    Server(String),
    /// The client pair is unusable.
    #[error("Failed to set TLS client certificate ({0})")]
    Client(String),
    /// A root certificate file holds nothing usable.
    #[error("Error loading secure config for peer ({0})")]
    Roots(String),
}

/// The peer's TLS, set up at start.
pub struct PeerTls {
    pub context: TlsContext,
    /// The peer port's configuration.
    pub server: Arc<rustls::ServerConfig>,
    /// The server pair (its leaf hash goes into ConnEstablish messages this peer answers).
    pub server_pair: KeyPair,
    /// What gossip dials present (`clientCert`/`clientKey`, else the server pair).
    pub client_pair: KeyPair,
    pub client_auth_required: bool,
    /// The peer port's client roots, with `clientAuthRequired`.
    client_roots: Option<Arc<ClientRoots>>,
    /// `peer.tls.rootcert.file` and `clientRootCAs.files`, parsed.
    root_cert: Vec<CertificateDer<'static>>,
    client_root_cas: Vec<CertificateDer<'static>>,
    /// Gossip's dial configuration, rebuilt when the channel CAs change.
    gossip_client: Arc<RwLock<Arc<rustls::ClientConfig>>>,
    /// The orderer address overrides' CAs, parsed (see [`DeliverTls::override_roots`]).
    override_roots: Vec<(String, Vec<CertificateDer<'static>>)>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").field("client_auth_required", &self.client_auth_required).finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Checks the files and builds the configurations, trusting no channel yet (see
    /// [`PeerTls::trust_channels`]).
    pub fn new(env: &Env, tls: &TlsConfig, files: &TlsFiles) -> Result<PeerTls, PeerTlsError> {
        let context = TlsContext::new(&crate::net::tls::provider(env), env.clock.clone());
        let now = env.clock.wall_clock();
        let server_pair = KeyPair::from_files_valid_at(&files.cert, &files.key, now).map_err(|e| PeerTlsError::Server(e.to_string()))?;
        let client_pair = match &files.client {
            Some((cert, key)) => KeyPair::from_files_valid_at(cert, key, now)
                .map_err(|e| PeerTlsError::Client(format!("error parsing client TLS key pair: {e}")))?,
            None => server_pair.clone(),
        };
        let root_cert = match &files.root_cert {
            Some(file) => certificates(file).map_err(|e| PeerTlsError::Roots(format!("error loading TLS root certificate ({e})")))?,
            None => Vec::new(),
        };
        let client_root_cas =
            certificates_of(&files.client_root_cas).map_err(|e| PeerTlsError::Roots(format!("error loading client root CAs ({e})")))?;
        let override_roots = files
            .orderer_override_cas
            .iter()
            .map(|(from, file)| Ok((from.clone(), certificates(file)?)))
            .collect::<Result<_, TlsError>>()
            .map_err(|e| PeerTlsError::Roots(format!("error loading the caCertsFile of an orderer address override ({e})")))?;
        let client_roots = tls.client_auth_required.then(|| ClientRoots::new(&context));
        let auth = match &client_roots {
            Some(roots) => ClientAuth::Require(roots.clone()),
            None => ClientAuth::Request,
        };
        let server = context.server(&server_pair, auth).map_err(|e| PeerTlsError::Server(e.to_string()))?;
        let (gossip, _) = context.client(&root_cert, Some(&client_pair)).map_err(|e| PeerTlsError::Client(e.to_string()))?;
        Ok(PeerTls {
            context,
            server,
            server_pair,
            client_pair,
            client_auth_required: tls.client_auth_required,
            client_roots,
            root_cert,
            client_root_cas,
            gossip_client: Arc::new(RwLock::new(gossip)),
            override_roots,
        })
    }

    /// How the deliver client speaks TLS to the orderers: the client pair only with
    /// `clientAuthRequired` (as Fabric), the address overrides' CAs.
    pub fn deliver(&self) -> DeliverTls {
        DeliverTls {
            context: self.context.clone(),
            client_pair: self.client_auth_required.then(|| self.client_pair.clone()),
            override_roots: self.override_roots.clone(),
        }
    }

    /// Trusts the channels joined at start. With `clientAuthRequired`, a peer that then has no
    /// client root at all could accept no client: that is an error, not a silent refusal.
    pub fn trust_channels(&self, channels: &[Arc<ChannelConfig>]) -> Result<(), PeerTlsError> {
        self.update_trust(channels);
        if self.client_roots.as_ref().is_some_and(|roots| roots.is_empty()) {
            return Err(PeerTlsError::Server(
                "peer.tls.clientAuthRequired is true but there are no client root certificates: set peer.tls.clientRootCAs.files \
                 or peer.tls.rootcert.file, or join a channel first"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Fabric's start-up lines for the server TLS certificate's expiry (`certmonitor`).
    pub fn log_start(&self, now: SystemTime) {
        expiry_lines("server TLS", self.server_pair.not_after, now);
    }

    /// Rebuilds both trust pools from the joined channels' configs (Fabric's
    /// `updateTrustedRoots`): the peer port's client roots and gossip's dial trust.
    pub fn update_trust(&self, channels: &[Arc<ChannelConfig>]) {
        let mut channel_cas = Vec::new();
        for config in channels {
            debug!(target: "peer", func = "updateTrustedRoots", "Updating trusted root authorities for channel {}", config.channel_id);
            channel_cas.extend(application_tls_cas(config));
        }
        if let Some(roots) = &self.client_roots {
            let all: Vec<CertificateDer<'static>> =
                channel_cas.iter().chain(&self.client_root_cas).chain(&self.root_cert).cloned().collect();
            if !all.is_empty() {
                match roots.set(&all) {
                    Ok(0) => {}
                    Ok(skipped) => {
                        warn!(target: "comm", func = "updateTrustedRoots", "Failed adding {skipped} certificates to the peer's client root CAs")
                    }
                    Err(err) => warn!(
                        target: "peer",
                        func = "updateTrustedRoots",
                        "Failed to update trusted roots from latest config block. This peer may not be able to communicate with members of the channels ({err})"
                    ),
                }
            }
        }
        let trust: Vec<CertificateDer<'static>> = self.root_cert.iter().chain(&channel_cas).cloned().collect();
        match self.context.client(&trust, Some(&self.client_pair)) {
            Ok((config, skipped)) => {
                if skipped > 0 {
                    warn!(target: "comm", func = "updateTrustedRoots", "Failed adding certificates to peer's client TLS trust pool: {skipped} did not parse");
                }
                *self.gossip_client.write().unwrap_or_else(|p| p.into_inner()) = config;
            }
            Err(err) => {
                warn!(target: "comm", func = "updateTrustedRoots", "Failed adding certificates to peer's client TLS trust pool: {err}")
            }
        }
    }

    /// What gossip dials with now.
    pub fn gossip_client(&self) -> Arc<RwLock<Arc<rustls::ClientConfig>>> {
        self.gossip_client.clone()
    }
}

/// The TLS root and intermediate CAs of a channel's application orgs, in MSP ID order.
fn application_tls_cas(config: &ChannelConfig) -> Vec<CertificateDer<'static>> {
    config.application.orgs.values().filter_map(|org| config.msp(&org.msp_id)).flat_map(msp_tls_cas).collect()
}

/// Fabric's certmonitor lines for one certificate.
fn expiry_lines(role: &str, not_after: SystemTime, now: SystemTime) {
    info!(target: "certmonitor", func = "trackCertExpiration", "The {role} certificate will expire on {}", go_time(not_after));
    match not_after.duration_since(now) {
        Err(_) => warn!(target: "certmonitor", func = "trackCertExpiration", "The {role} certificate has expired"),
        Ok(left) if left < Duration::from_secs(7 * 24 * 3600) => {
            let hours = left.as_secs() / 3600;
            warn!(target: "certmonitor", func = "trackCertExpiration", "The {role} certificate expires within {} days and {} hours", hours / 24, hours % 24);
        }
        Ok(_) => {}
    }
}
