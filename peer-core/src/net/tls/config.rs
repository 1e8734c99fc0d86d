//! rustls configurations with Fabric's TLS rules, for the peer's servers and its clients.
//!
//! - Versions TLS 1.2 and 1.3; for TLS 1.2 only Fabric's ECDHE AES-GCM suites; ALPN `h2`; no
//!   session tickets or resumption (Fabric has none).
//! - Server client authentication ([`ClientAuth`]): `Request` asks for a certificate and takes
//!   whatever is sent without checking its chain (Go's `RequestClientCert`: possession is still
//!   proven by the handshake signature); `Require` demands one that chains to the current
//!   [`ClientRoots`], which can be replaced while serving (joined channels add their orgs' TLS CAs;
//!   a new set applies to new handshakes only, as in Fabric).
//! - Time comes from the env's clock ([`EnvTime`]): certificate validity follows the simulated
//!   clock under the simulator. Randomness comes from the env's provider (OS randomness on a real
//!   peer, a seeded stream under the simulator).
//!
//! This module builds configurations only; `serve.rs` and `dial.rs` run the handshakes.

use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{CipherSuite, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use super::material::KeyPair;
use crate::env::Clock;

/// The ALPN protocol of gRPC.
const H2: &[u8] = b"h2";

/// TLS 1.2 suites Fabric's servers offer (its list also has RSA-keyed ones; peer-core keys are
/// P-256, and the ECDHE-RSA suites are kept for RSA-keyed remotes).
const TLS12_SUITES: [CipherSuite; 4] = [
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
];

/// The wall clock of the env, for certificate validity.
#[derive(Clone)]
pub struct EnvTime(pub Arc<dyn Clock>);

impl std::fmt::Debug for EnvTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvTime")
    }
}

impl TimeProvider for EnvTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self.0.wall_clock().duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

/// What every configuration is built from: the crypto provider (randomness, key exchange,
/// signing) and the clock.
#[derive(Clone, Debug)]
pub struct TlsContext {
    provider: Arc<CryptoProvider>,
    time: Arc<EnvTime>,
}

impl TlsContext {
    /// `provider` restricted to Fabric's suites.
    pub fn new(provider: &CryptoProvider, clock: Arc<dyn Clock>) -> TlsContext {
        let mut provider = provider.clone();
        provider.cipher_suites.retain(|suite| suite.tls13().is_some() || TLS12_SUITES.contains(&suite.suite()));
        TlsContext { provider: Arc::new(provider), time: Arc::new(EnvTime(clock)) }
    }

    fn algorithms(&self) -> WebPkiSupportedAlgorithms {
        self.provider.signature_verification_algorithms
    }

    /// A gRPC server configuration (ALPN `h2`) presenting `pair`, authenticating clients as
    /// `auth` says.
    pub fn server(&self, pair: &KeyPair, auth: ClientAuth) -> Result<Arc<ServerConfig>, rustls::Error> {
        self.server_for(pair, auth, H2)
    }

    /// [`TlsContext::server`] for an HTTP/1.1 server (the operations server: ALPN `http/1.1`).
    pub fn http1_server(&self, pair: &KeyPair, auth: ClientAuth) -> Result<Arc<ServerConfig>, rustls::Error> {
        self.server_for(pair, auth, b"http/1.1")
    }

    fn server_for(&self, pair: &KeyPair, auth: ClientAuth, alpn: &[u8]) -> Result<Arc<ServerConfig>, rustls::Error> {
        let verifier: Arc<dyn ClientCertVerifier> = match auth {
            ClientAuth::Request => Arc::new(AnyClientCert { algorithms: self.algorithms() }),
            ClientAuth::Require(roots) => roots,
            ClientAuth::VerifyIfGiven(roots) => {
                let (store, _) = root_store(&roots);
                if store.is_empty() {
                    // Nothing to verify against: any certificate a client shows is refused.
                    Arc::new(ClientRoots { context: self.clone(), current: RwLock::new(None), mandatory: false })
                } else {
                    WebPkiClientVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| rustls::Error::General(e.to_string()))?
                }
            }
        };
        let mut config = ServerConfig::builder_with_details(self.provider.clone(), self.time.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(pair.chain.clone(), pair.key.clone_key())?;
        config.alpn_protocols = vec![alpn.to_vec()];
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

    /// A client configuration trusting `roots` (every certificate a trust anchor, intermediates
    /// too, as Fabric's pools), presenting `pair` when given. Roots that do not parse are
    /// skipped and returned (the caller logs them).
    pub fn client(&self, roots: &[CertificateDer<'static>], pair: Option<&KeyPair>) -> Result<(Arc<ClientConfig>, usize), rustls::Error> {
        let (store, skipped) = root_store(roots);
        let builder = ClientConfig::builder_with_details(self.provider.clone(), self.time.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)?
            .with_root_certificates(Arc::new(store));
        let mut config = match pair {
            Some(pair) => builder.with_client_auth_cert(pair.chain.clone(), pair.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![H2.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok((Arc::new(config), skipped))
    }

    /// A client-certificate verifier over `roots`, for [`ClientRoots::set`].
    fn client_verifier(&self, roots: &[CertificateDer<'static>]) -> Result<(Arc<dyn ClientCertVerifier>, usize), rustls::Error> {
        let (store, skipped) = root_store(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("no client root certificates found ({e})")))?;
        Ok((verifier, skipped))
    }
}

/// The anchors of `roots`, and how many did not parse.
fn root_store(roots: &[CertificateDer<'static>]) -> (RootCertStore, usize) {
    let mut store = RootCertStore::empty();
    let (_, skipped) = store.add_parsable_certificates(roots.iter().cloned());
    (store, skipped)
}

/// How a server treats client certificates (Fabric's `peer.tls.clientAuthRequired`).
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// Ask for one; take any (Go's `RequestClientCert`).
    Request,
    /// Demand one that chains to these roots (Go's `RequireAndVerifyClientCert`).
    Require(Arc<ClientRoots>),
    /// Take none, or one that chains to these roots (Go's `VerifyClientCertIfGiven`).
    VerifyIfGiven(Vec<CertificateDer<'static>>),
}

/// A server's client-certificate roots, replaceable while it serves.
pub struct ClientRoots {
    context: TlsContext,
    current: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    /// Whether a client must show a certificate.
    mandatory: bool,
}

impl std::fmt::Debug for ClientRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRoots").finish_non_exhaustive()
    }
}

impl ClientRoots {
    /// No roots yet: every client is refused until [`ClientRoots::set`].
    pub fn new(context: &TlsContext) -> Arc<ClientRoots> {
        Arc::new(ClientRoots { context: context.clone(), current: RwLock::new(None), mandatory: true })
    }

    /// From now on, client certificates must chain to one of `roots`. An empty or wholly
    /// unparsable set is refused and the previous roots stay (Fabric keeps the old pool).
    /// Returns how many roots were skipped as unparsable.
    pub fn set(&self, roots: &[CertificateDer<'static>]) -> Result<usize, rustls::Error> {
        let (verifier, skipped) = self.context.client_verifier(roots)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(verifier);
        Ok(skipped)
    }

    /// Client roots set to `roots` at once (see [`ClientRoots::set`]).
    pub fn trusting(context: &TlsContext, roots: &[CertificateDer<'static>]) -> Result<Arc<ClientRoots>, rustls::Error> {
        let client_roots = ClientRoots::new(context);
        client_roots.set(roots)?;
        Ok(client_roots)
    }

    /// Whether no roots were ever set (every client is refused).
    pub fn is_empty(&self) -> bool {
        self.current().is_none()
    }

    fn any(&self) -> AnyClientCert {
        AnyClientCert { algorithms: self.context.algorithms() }
    }

    fn current(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ClientCertVerifier for ClientRoots {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Go sends the pool's subjects; clients here pick their one certificate regardless.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.current() {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::General("no client root certificates found".into())),
        }
    }

    // Handshake signatures are checked as for any client (possession of the key).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.any().supported_verify_schemes()
    }
}

/// Takes any client certificate without checking its chain; the handshake signature still
/// proves the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
