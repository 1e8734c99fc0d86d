//! A deterministic rustls [`CryptoProvider`] for the simulator: the same 32-byte seed gives the
//! same TLS handshakes, every byte on the wire, so a seeded multi-peer run stays reproducible
//! with TLS on. rustls over ring draws randomness in three places, and each is replaced here:
//! - the `secure_random` (hello randoms, session ids, extension order, tickets): a ChaCha20
//!   stream derived from the seed;
//! - ephemeral key exchange: ring generates its ECDHE keys from the OS, so the one group offered
//!   is our own secp256r1 on `p256::ecdh`, its secrets drawn from a second stream of the seed;
//! - handshake signatures: ring's ECDSA is randomized, so private keys load as P-256 keys that
//!   sign with RFC 6979 (deterministic) ECDSA.
//!
//! Cipher suites and signature verification stay ring's: they are deterministic given the keys.
//! Time is not here: `config::EnvTime` gives rustls the env's clock (the simulator's).
//!
//! Deliberately not here: other key exchange groups (no X25519, no P-384, no post-quantum
//! hybrids), other key types (RSA, Ed25519 and P-384 keys are refused), and a session ticket
//! encrypter (rustls' default server keeps stateful tickets, whose ids come from the seeded
//! stream; ring's `Ticketer` would draw its keys from the OS, so do not configure one). This is
//! not a provider for the real peer: seeded randomness is predictable by design. The streams are
//! shared by every connection made with one provider, so handshakes are reproducible only when
//! they happen in a reproducible order, as in the single-threaded simulation.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use der::Decode;
use der::asn1::{AnyRef, ObjectIdentifier};
use p256::PublicKey;
use p256::ecdh::EphemeralSecret;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePrivateKey, PrivateKeyInfoRef};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, NamedGroup, PeerMisbehaved, SignatureAlgorithm, SignatureScheme};
use sha2::{Digest, Sha256};

/// id-ecPublicKey (RFC 5480): the PKCS#8 algorithm of EC keys.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp256r1 (prime256v1), the only curve this provider signs with.
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A provider whose every random choice comes from `seed`: build it once per simulated host start
/// and give it to both the host's client and server configurations.
///
/// The random source and the key exchange group are per seed but rustls wants them `&'static`,
/// so both are leaked (two small allocations). That is fine because a provider is built once per
/// simulated host start, not per connection; do not call this in a loop that runs for long.
pub fn provider(seed: [u8; 32]) -> Arc<CryptoProvider> {
    let random: &'static SeededRandom = Box::leak(Box::new(SeededRandom { rng: Mutex::new(stream(&seed, "secure random")) }));
    let kx: &'static SeededP256 = Box::leak(Box::new(SeededP256 { rng: Mutex::new(stream(&seed, "key exchange")) }));
    // Deprecated for lacking post-quantum key exchange; only its suites and verification
    // algorithms are taken (the signature algorithms are not public otherwise).
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(CryptoProvider {
        cipher_suites: ring.cipher_suites,
        kx_groups: vec![kx],
        signature_verification_algorithms: ring.signature_verification_algorithms,
        secure_random: random,
        key_provider: &P256_KEYS,
    })
}

/// One ChaCha20 stream of the seed per use, so drawing more hello randoms never shifts the key
/// exchange secrets (and the other way round).
fn stream(seed: &[u8; 32], label: &str) -> ChaCha20Rng {
    let mut hash = Sha256::new();
    hash.update(b"peer-core tls seeded v1\0");
    hash.update(label.as_bytes());
    hash.update([0]);
    hash.update(seed);
    ChaCha20Rng::from_seed(hash.finalize().into())
}

/// Locks a stream. A panic while holding it cannot leave a ChaCha20 state half-updated, so a
/// poisoned lock is used as is rather than turned into a panic here.
fn draw<T>(rng: &Mutex<ChaCha20Rng>, f: impl FnOnce(&mut ChaCha20Rng) -> T) -> T {
    let mut guard = rng.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut guard)
}

/// rustls' `secure_random` on a seeded ChaCha20 stream.
struct SeededRandom {
    rng: Mutex<ChaCha20Rng>,
}

impl fmt::Debug for SeededRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededRandom") // never the stream's state
    }
}

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        draw(&self.rng, |rng| rng.fill_bytes(buf));
        Ok(())
    }
}

/// ECDHE over secp256r1 with ephemeral secrets from a seeded stream.
struct SeededP256 {
    rng: Mutex<ChaCha20Rng>,
}

impl fmt::Debug for SeededP256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeededP256")
    }
}

impl SupportedKxGroup for SeededP256 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let secret: EphemeralSecret = draw(&self.rng, EphemeralSecret::generate_from_rng);
        let pub_key = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
        Ok(Box::new(P256Exchange { secret, pub_key }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// One side's half of an ECDHE exchange in progress.
struct P256Exchange {
    secret: EphemeralSecret,
    /// The uncompressed SEC1 point (65 bytes), as TLS sends it.
    pub_key: Vec<u8>,
}

impl ActiveKeyExchange for P256Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        // TLS allows only the uncompressed form for the NIST curves (RFC 8446 §4.2.8.2);
        // from_sec1_bytes checks the point is on the curve and not the identity.
        if peer_pub_key.len() != 65 || peer_pub_key[0] != 0x04 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        let peer = PublicKey::from_sec1_bytes(peer_pub_key).map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self.secret.diffie_hellman(&peer);
        Ok(SharedSecret::from(shared.raw_secret_bytes().as_slice()))
    }

    fn pub_key(&self) -> &[u8] {
        &self.pub_key
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// The key provider: stateless, so a plain static.
static P256_KEYS: P256Keys = P256Keys;

/// Loads P-256 private keys (PKCS#8 or SEC1 DER) as deterministic signers; refuses the rest.
#[derive(Debug)]
struct P256Keys;

impl KeyProvider for P256Keys {
    fn load_private_key(&self, key_der: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        let key = match &key_der {
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                check_pkcs8_algorithm(der)?;
                p256::ecdsa::SigningKey::from_pkcs8_der(der)
                    .map_err(|e| Error::General(format!("malformed p-256 pkcs#8 private key: {e}")))?
            }
            PrivateKeyDer::Sec1(der) => {
                let der = der.secret_sec1_der();
                check_sec1_curve(der)?;
                let secret =
                    p256::SecretKey::from_sec1_der(der).map_err(|e| Error::General(format!("malformed p-256 sec1 private key: {e}")))?;
                p256::ecdsa::SigningKey::from(secret)
            }
            PrivateKeyDer::Pkcs1(_) => {
                return Err(Error::General("unsupported key type: rsa (pkcs#1); only p-256 ecdsa keys are supported".into()));
            }
            _ => return Err(Error::General("unsupported key type: only p-256 ecdsa keys are supported".into())),
        };
        P256SigningKey::new(key).map(|k| Arc::new(k) as Arc<dyn SigningKey>)
    }
}

/// Refuses a PKCS#8 key that is not an EC key on P-256, naming what it is.
fn check_pkcs8_algorithm(der: &[u8]) -> Result<(), Error> {
    let info = PrivateKeyInfoRef::from_der(der).map_err(|e| Error::General(format!("malformed pkcs#8 private key: {e}")))?;
    let oid = info.algorithm.oid;
    if oid != EC_PUBLIC_KEY {
        return Err(Error::General(format!(
            "unsupported key type: pkcs#8 algorithm {} ({oid}); only p-256 ecdsa keys are supported",
            algorithm_name(oid)
        )));
    }
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == SECP256R1 => Ok(()),
        Ok(curve) => Err(Error::General(format!("unsupported key type: ec key on curve {curve}; only p-256 is supported"))),
        Err(e) => Err(Error::General(format!("malformed pkcs#8 ec private key: no named curve ({e})"))),
    }
}

/// The head of a SEC1 `ECPrivateKey` (RFC 5915 §3), decoded only to name its curve.
#[derive(der::Sequence)]
struct EcPrivateKeyHead<'a> {
    version: u8,
    private_key: AnyRef<'a>,
    #[asn1(context_specific = "0", optional = "true")]
    curve: Option<ObjectIdentifier>,
    #[asn1(context_specific = "1", optional = "true")]
    public_key: Option<AnyRef<'a>>,
}

/// Refuses a SEC1 key that names a curve other than P-256 (one that names none is tried as P-256).
fn check_sec1_curve(der: &[u8]) -> Result<(), Error> {
    let head = EcPrivateKeyHead::from_der(der).map_err(|e| Error::General(format!("malformed sec1 ec private key: {e}")))?;
    match head.curve {
        Some(curve) if curve != SECP256R1 => {
            Err(Error::General(format!("unsupported key type: ec key on curve {curve}; only p-256 is supported")))
        }
        _ => Ok(()),
    }
}

/// Names the PKCS#8 algorithms one is likely to meet, for the error text.
fn algorithm_name(oid: ObjectIdentifier) -> &'static str {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => "rsa",
        "1.3.101.112" => "ed25519",
        "1.3.101.113" => "ed448",
        "1.3.101.110" | "1.3.101.111" => "x25519/x448",
        _ => "unknown",
    }
}

/// A P-256 key that signs handshakes with RFC 6979 ECDSA (same key and message, same signature).
struct P256SigningKey {
    key: Arc<p256::ecdsa::SigningKey>,
    /// The SubjectPublicKeyInfo DER, for rustls' check that the key matches the certificate.
    spki: Vec<u8>,
}

impl P256SigningKey {
    fn new(key: p256::ecdsa::SigningKey) -> Result<P256SigningKey, Error> {
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(key.verifying_key())
            .and_then(|info| der::Encode::to_der(&info).map_err(Into::into))
            .map_err(|e| Error::General(format!("cannot encode the p-256 public key: {e}")))?;
        Ok(P256SigningKey { key: Arc::new(key), spki })
    }
}

impl fmt::Debug for P256SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256SigningKey") // never the secret
    }
}

impl SigningKey for P256SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ECDSA_NISTP256_SHA256).then(|| Box::new(P256Signer(self.key.clone())) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

/// Signs with ECDSA_NISTP256_SHA256: SHA-256 inside, DER signature out.
struct P256Signer(Arc<p256::ecdsa::SigningKey>);

impl fmt::Debug for P256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P256Signer")
    }
}

impl Signer for P256Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let signature: p256::ecdsa::Signature =
            self.0.try_sign(message).map_err(|e| Error::General(format!("p-256 signing failed: {e}")))?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::SystemTime;

    use rustls::pki_types::UnixTime;
    use rustls::time_provider::TimeProvider;
    use std::sync::LazyLock;
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer, ServerName};
    use rustls::server::WebPkiClientVerifier;
    use rustls::sign::CertifiedKey;
    use rustls::version::{TLS12, TLS13};
    use rustls::{
        CertificateError, ClientConfig, ClientConnection, ConnectionCommon, InconsistentKeys, ProtocolVersion, RootCertStore, ServerConfig,
        ServerConnection, SupportedProtocolVersion,
    };

    use super::*;
    use crate::msp::generate::{self, Org, OrgSpec, ValidityWindow};

    /// One org, generated once: a TLS CA, `peer0.org1.example.com` (the server) and the admin,
    /// whose TLS certificate is a client certificate (the client).
    static ORG: LazyLock<Org> = LazyLock::new(|| {
        let spec = OrgSpec { msp_id: "Org1MSP".into(), domain: "org1.example.com".into(), peers: 1 };
        generate::generate_org(&spec, &mut generate::org_rng(7, &spec), ValidityWindow::fixed()).unwrap()
    });

    const SERVER_NAME: &str = "peer0.org1.example.com";
    /// 2025-06-01T00:00:00Z, inside the certificates' 2020–2049 validity.
    const JUNE_2025: u64 = 1_748_736_000;
    /// 2050-06-01T00:00:00Z, after their not_after (2049-12-31T23:59:59Z).
    const JUNE_2050: u64 = 2_537_654_400;
    /// 2019-06-01T00:00:00Z, before their not_before (2020-01-01).
    const JUNE_2019: u64 = 1_559_347_200;

    fn certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().unwrap()
    }

    fn key(pem: &[u8]) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(pem).unwrap()
    }

    fn server_cert() -> CertificateDer<'static> {
        certs(&ORG.peers[0].tls.cert).remove(0)
    }

    fn client_cert() -> CertificateDer<'static> {
        certs(&ORG.admin.tls.cert).remove(0)
    }

    /// A clock whose wall time stays at `at`.
    struct Stopped(SystemTime);

    impl crate::env::Clock for Stopped {
        fn now(&self) -> crate::env::Instant {
            crate::env::Instant(0)
        }
        fn wall_clock(&self) -> SystemTime {
            self.0
        }
        fn sleep_until(&self, _: crate::env::Instant) -> crate::env::BoxFuture<'static, ()> {
            Box::pin(std::future::pending())
        }
    }

    /// rustls' time as the peer gives it (`EnvTime`), stopped at `at`.
    fn fixed(at: SystemTime) -> super::super::EnvTime {
        super::super::EnvTime(Arc::new(Stopped(at)))
    }

    fn configs(
        client_seed: [u8; 32],
        server_seed: [u8; 32],
        version: &'static SupportedProtocolVersion,
        now: u64,
    ) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
        let clock: Arc<dyn TimeProvider> = Arc::new(fixed(SystemTime::UNIX_EPOCH + Duration::from_secs(now)));
        let mut roots = RootCertStore::empty();
        for ca in certs(&ORG.tls_ca.cert_pem) {
            roots.add(ca).unwrap();
        }
        let roots = Arc::new(roots);

        let client_provider = provider(client_seed);
        let client = ClientConfig::builder_with_details(client_provider, clock.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(certs(&ORG.admin.tls.cert), key(&ORG.admin.tls.key))
            .unwrap();

        let server_provider = provider(server_seed);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, server_provider.clone()).build().unwrap();
        let server = ServerConfig::builder_with_details(server_provider, clock)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&ORG.peers[0].tls.cert), key(&ORG.peers[0].tls.key))
            .unwrap();
        (Arc::new(client), Arc::new(server))
    }

    /// Every byte each side wrote, in order.
    #[derive(Default, PartialEq, Eq)]
    struct Wire {
        client: Vec<u8>,
        server: Vec<u8>,
    }

    /// Moves what `from` has to write into `to`, recording it. False when there was nothing.
    fn send<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>, record: &mut Vec<u8>) -> Result<bool, Error> {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        record.extend_from_slice(&bytes);
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets()?;
        }
        Ok(!bytes.is_empty())
    }

    /// Pumps bytes both ways until both sides are quiet, or one fails.
    fn pump(client: &mut ClientConnection, server: &mut ServerConnection, wire: &mut Wire) -> Result<(), Error> {
        loop {
            let client_sent = send(client, server, &mut wire.client)?;
            let server_sent = send(server, client, &mut wire.server)?;
            if !client_sent && !server_sent {
                return Ok(());
            }
        }
    }

    /// What a completed session showed.
    struct Session {
        wire: Wire,
        version: Option<ProtocolVersion>,
        group: Option<NamedGroup>,
        server_cert_seen: Vec<CertificateDer<'static>>,
        client_cert_seen: Vec<CertificateDer<'static>>,
    }

    /// A full handshake with client authentication, then a ping and a pong.
    fn session(
        client_seed: [u8; 32],
        server_seed: [u8; 32],
        version: &'static SupportedProtocolVersion,
        now: u64,
    ) -> Result<Session, Error> {
        let (client_config, server_config) = configs(client_seed, server_seed, version, now);
        let mut client = ClientConnection::new(client_config, ServerName::try_from(SERVER_NAME).unwrap()).unwrap();
        let mut server = ServerConnection::new(server_config).unwrap();
        let mut wire = Wire::default();
        pump(&mut client, &mut server, &mut wire)?;
        assert!(!client.is_handshaking() && !server.is_handshaking(), "the handshake did not complete");

        client.writer().write_all(b"ping from the client").unwrap();
        pump(&mut client, &mut server, &mut wire)?;
        let mut got = [0u8; 20];
        server.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping from the client");
        server.writer().write_all(b"pong from the server").unwrap();
        pump(&mut client, &mut server, &mut wire)?;
        client.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong from the server");

        Ok(Session {
            wire,
            version: client.protocol_version(),
            group: client.negotiated_key_exchange_group().map(|g| g.name()),
            server_cert_seen: client.peer_certificates().unwrap_or_default().to_vec(),
            client_cert_seen: server.peer_certificates().unwrap_or_default().to_vec(),
        })
    }

    fn handshakes_are_reproducible(version: &'static SupportedProtocolVersion) {
        let (client_seed, server_seed) = ([1; 32], [2; 32]);
        let first = session(client_seed, server_seed, version, JUNE_2025).unwrap();
        assert_eq!(first.version, Some(version.version));
        assert_eq!(first.group, Some(NamedGroup::secp256r1));
        assert_eq!(first.server_cert_seen.first(), Some(&server_cert()), "the client sees the server's certificate");
        assert_eq!(first.client_cert_seen.first(), Some(&client_cert()), "the server sees the client's certificate");

        let again = session(client_seed, server_seed, version, JUNE_2025).unwrap();
        assert!(!first.wire.client.is_empty() && !first.wire.server.is_empty());
        assert!(first.wire.client == again.wire.client, "same seeds, different client bytes");
        assert!(first.wire.server == again.wire.server, "same seeds, different server bytes");

        let other_client = session([3; 32], server_seed, version, JUNE_2025).unwrap();
        assert!(first.wire.client != other_client.wire.client, "another client seed, same client bytes");
        assert!(first.wire.server != other_client.wire.server, "another client seed, same server bytes");
        let other_server = session(client_seed, [4; 32], version, JUNE_2025).unwrap();
        assert!(first.wire.server != other_server.wire.server, "another server seed, same server bytes");
    }

    #[test]
    fn tls13_handshakes_with_client_auth_are_reproducible() {
        handshakes_are_reproducible(&TLS13);
    }

    #[test]
    fn tls12_handshakes_with_client_auth_are_reproducible() {
        handshakes_are_reproducible(&TLS12);
    }

    #[test]
    fn certificates_are_checked_at_the_clock_time() {
        for version in [&TLS13, &TLS12] {
            let error = session([1; 32], [2; 32], version, JUNE_2050).err().expect("an expired certificate was accepted");
            assert!(
                matches!(error, Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. })),
                "{error:?}"
            );
            let error = session([1; 32], [2; 32], version, JUNE_2019).err().expect("a not yet valid certificate was accepted");
            assert!(
                matches!(error, Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. })),
                "{error:?}"
            );
        }
        let before_1970 = fixed(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before_1970.current_time(), None);
        let at = fixed(SystemTime::UNIX_EPOCH + Duration::from_secs(JUNE_2025));
        assert_eq!(at.current_time(), Some(UnixTime::since_unix_epoch(Duration::from_secs(JUNE_2025))));
    }

    #[test]
    fn key_exchange_is_seeded_and_agrees() {
        let group = provider([5; 32]).kx_groups[0];
        assert_eq!(provider([5; 32]).kx_groups.len(), 1);
        assert_eq!(group.name(), NamedGroup::secp256r1);
        let (a, b) = (group.start().unwrap(), group.start().unwrap());
        assert_eq!(a.pub_key().len(), 65);
        assert_eq!(a.pub_key()[0], 0x04, "uncompressed point");
        assert_ne!(a.pub_key(), b.pub_key(), "each exchange draws a new secret");
        assert_eq!(a.group(), NamedGroup::secp256r1);

        let same = provider([5; 32]).kx_groups[0].start().unwrap();
        assert_eq!(same.pub_key(), a.pub_key(), "same seed, same first key share");
        let other = provider([6; 32]).kx_groups[0].start().unwrap();
        assert_ne!(other.pub_key(), a.pub_key());

        let (a_pub, b_pub) = (a.pub_key().to_vec(), b.pub_key().to_vec());
        let ab = a.complete(&b_pub).unwrap();
        let ba = b.complete(&a_pub).unwrap();
        assert_eq!(ab.secret_bytes(), ba.secret_bytes());
        assert_eq!(ab.secret_bytes().len(), 32);
    }

    /// Hands out fixed bytes, so a test can choose the ephemeral secret.
    struct FixedBytes(Vec<u8>);

    impl rand_core::TryRng for FixedBytes {
        type Error = std::convert::Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            unreachable!("only fill_bytes is used")
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            unreachable!("only fill_bytes is used")
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            let rest = self.0.split_off(dst.len());
            dst.copy_from_slice(&self.0);
            self.0 = rest;
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for FixedBytes {}

    /// RFC 5903 §8.1, the 256-bit random ECP group: the initiator's secret i and public g^i,
    /// the responder's public g^r, and the shared x-coordinate.
    #[test]
    fn key_exchange_matches_rfc_5903() {
        let i = hex::decode("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433").unwrap();
        let gi = "04DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C377258118\
                  05271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3";
        let gr = "04D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63\
                  56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB";
        let girx = "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE";
        let secret = EphemeralSecret::generate_from_rng(&mut FixedBytes(i));
        let pub_key = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
        let exchange = Box::new(P256Exchange { secret, pub_key });
        assert_eq!(hex::encode_upper(exchange.pub_key()), gi);
        let shared = exchange.complete(&hex::decode(gr).unwrap()).unwrap();
        assert_eq!(hex::encode_upper(shared.secret_bytes()), girx);
    }

    #[test]
    fn bad_key_shares_are_errors() {
        let group = provider([7; 32]).kx_groups[0];
        let valid = group.start().unwrap().pub_key().to_vec();
        let mut off_curve = valid.clone();
        off_curve[64] ^= 1;
        let mut compressed = vec![0x02 | (valid[64] & 1)];
        compressed.extend_from_slice(&valid[1..33]);
        let mut identity = vec![0x04];
        identity.extend_from_slice(&[0; 64]);
        let mut too_big = vec![0x04];
        too_big.extend_from_slice(&[0xff; 64]);
        let mut trailing = valid.clone();
        trailing.push(0);
        for garbage in [Vec::new(), vec![0x00], b"not a point at all".to_vec(), off_curve, compressed, identity, too_big, trailing] {
            let result = group.start().unwrap().complete(&garbage);
            assert!(
                matches!(result, Err(Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare))),
                "{garbage:02x?} gave {:?}",
                result.map(|s| s.secret_bytes().to_vec())
            );
        }
    }

    fn load(key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        provider([0; 32]).key_provider.load_private_key(key)
    }

    fn refusal(key: PrivateKeyDer<'static>) -> String {
        match load(key) {
            Err(Error::General(text)) => text,
            other => panic!("expected a general error, got {other:?}"),
        }
    }

    #[test]
    fn p256_keys_load_from_pkcs8_and_sec1_and_sign_deterministically() {
        let pkcs8 = key(&ORG.peers[0].tls.key);
        let PrivateKeyDer::Pkcs8(pkcs8_der) = &pkcs8 else { panic!("cryptogen keys are pkcs#8") };
        let sec1_der = p256::SecretKey::from_pkcs8_der(pkcs8_der.secret_pkcs8_der()).unwrap().to_sec1_der().unwrap().to_vec();
        let from_pkcs8 = load(pkcs8.clone_key()).unwrap();
        let from_sec1 = load(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(sec1_der))).unwrap();
        assert_eq!(from_pkcs8.algorithm(), SignatureAlgorithm::ECDSA);
        assert_eq!(from_pkcs8.public_key(), from_sec1.public_key());

        // The key matches its certificate (rustls compares the SPKIs), and not another one.
        let provider = provider([0; 32]);
        CertifiedKey::from_der(certs(&ORG.peers[0].tls.cert), pkcs8.clone_key(), &provider).unwrap();
        let mismatch = CertifiedKey::from_der(certs(&ORG.admin.tls.cert), pkcs8.clone_key(), &provider).err();
        assert!(matches!(mismatch, Some(Error::InconsistentKeys(InconsistentKeys::KeyMismatch))), "{mismatch:?}");

        assert!(from_pkcs8.choose_scheme(&[SignatureScheme::ED25519, SignatureScheme::ECDSA_NISTP384_SHA384]).is_none());
        let offered = [SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ECDSA_NISTP256_SHA256];
        let signer = from_pkcs8.choose_scheme(&offered).unwrap();
        assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP256_SHA256);
        let signature = signer.sign(b"handshake transcript").unwrap();
        assert_eq!(signature, signer.sign(b"handshake transcript").unwrap(), "RFC 6979");
        assert_eq!(signature, from_sec1.choose_scheme(&offered).unwrap().sign(b"handshake transcript").unwrap());

        // ring verifies it against the certificate's key: a DER ECDSA P-256 SHA-256 signature.
        let cert = crate::msp::crypto::cert_from_der(server_cert().as_ref()).unwrap();
        let point = cert.tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes().to_vec();
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
        public.verify(b"handshake transcript", &signature).unwrap();
        assert!(public.verify(b"another transcript", &signature).is_err());
    }

    #[test]
    fn other_key_types_are_refused() {
        // RFC 8410 §10.3: an Ed25519 private key in PKCS#8.
        let ed25519 =
            hex::decode("302e020100300506032b657004220420d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842").unwrap();
        let text = refusal(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ed25519)));
        assert!(text.contains("unsupported key type") && text.contains("ed25519"), "{text}");

        // rsaEncryption with NULL parameters; the key itself is never looked at.
        let rsa = hex::decode("3016020100300d06092a864886f70d010101050004023000").unwrap();
        let text = refusal(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(rsa)));
        assert!(text.contains("unsupported key type") && text.contains("rsa"), "{text}");
        let text = refusal(PrivateKeyDer::Pkcs1(vec![0x30, 0x00].into()));
        assert!(text.contains("unsupported key type"), "{text}");

        // An EC key on secp384r1, as PKCS#8 and as SEC1.
        let p384_pkcs8 = hex::decode("3019020100301006072a8648ce3d020106052b8104002204023000").unwrap();
        let text = refusal(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(p384_pkcs8)));
        assert!(text.contains("unsupported key type") && text.contains("1.3.132.0.34"), "{text}");
        let mut p384_sec1 = hex::decode("303e0201010430").unwrap();
        p384_sec1.extend_from_slice(&[1; 48]);
        p384_sec1.extend_from_slice(&hex::decode("a00706052b81040022").unwrap());
        let text = refusal(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(p384_sec1)));
        assert!(text.contains("unsupported key type") && text.contains("1.3.132.0.34"), "{text}");

        // Garbage is an error too.
        let text = refusal(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(b"garbage".to_vec())));
        assert!(text.contains("malformed"), "{text}");
        let text = refusal(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(b"garbage".to_vec())));
        assert!(text.contains("malformed"), "{text}");
    }
}
