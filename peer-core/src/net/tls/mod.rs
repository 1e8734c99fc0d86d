//! TLS for every connection peer-core serves or dials (Fabric's `peer.tls.*`, gossip, the
//! deliver client, the operations server), on rustls.
//!
//! - `material.rs`: PEM files and what they must hold (chains, anchors, a P-256 key that
//!   belongs to its certificate), each error naming its file.
//! - `config.rs`: server and client configurations with Fabric's rules (versions, suites, ALPN,
//!   client authentication modes, replaceable client roots), on the env's clock.
//! - `seeded.rs`: a crypto provider whose every random choice comes from a seed (ECDHE secrets,
//!   hello randoms) and whose signatures are RFC 6979, for the simulator: same seed, same
//!   handshake bytes. [`provider`] picks it or the OS-random one by the env.
//!
//! The handshakes themselves run in `net::serve` (accepting) and `net::dial` (dialing), so TLS
//! wraps the same connections under the simulator as on sockets.

pub mod config;
pub mod material;
pub mod seeded;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;

use crate::env::{Env, TlsRandomness};
use crate::msp::Msp;

pub use config::{ClientAuth, ClientRoots, EnvTime, TlsContext};
pub use material::{KeyPair, PemFile, TlsError, cert_hash, certificates, certificates_of};

/// What a TLS connection showed of its remote, put in each request's extensions by the server
/// (gossip checks a ConnEstablish against it; Deliver checks the channel header's hash).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteTls {
    /// SHA-256 of the first certificate the remote presented; `None`: it presented none.
    pub cert_hash: Option<[u8; 32]>,
}

/// An MSP's TLS root then intermediate CAs (from a channel config), as trust anchors: Fabric's
/// pools make intermediates anchors too.
pub fn msp_tls_cas(msp: &Msp) -> impl Iterator<Item = CertificateDer<'static>> + '_ {
    msp.tls_roots.iter().chain(&msp.tls_intermediates).map(|der| CertificateDer::from(der.clone()))
}

/// SHA-256 of the first certificate the remote presented on a TLS connection (client or
/// server side); `None` if it presented none.
pub fn remote_cert_hash(connection: &rustls::CommonState) -> Option<[u8; 32]> {
    connection.peer_certificates().and_then(|chain| chain.first()).map(|leaf| cert_hash(leaf.as_ref()))
}

/// Go's `%v` of a byte slice, as Fabric's TLS binding errors print hashes: `[1 2 250]`.
pub fn go_bytes(bytes: &[u8]) -> String {
    format!("[{}]", bytes.iter().map(u8::to_string).collect::<Vec<_>>().join(" "))
}

/// Fabric's binding inspector (spec §4.1), when the server requires client certificates: the
/// channel header's `tls_cert_hash` must be the hash of the client certificate seen on the
/// connection (`client_cert`; `None`: the client sent none).
pub fn check_binding(claimed: &[u8], client_cert: Option<[u8; 32]>) -> Result<(), String> {
    if claimed.is_empty() {
        return Err("client didn't include its TLS cert hash".into());
    }
    let actual = client_cert.ok_or("client didn't send a TLS certificate")?;
    if claimed != actual {
        return Err(format!("claimed TLS cert hash is {} but actual TLS cert hash is {}", go_bytes(claimed), go_bytes(&actual)));
    }
    Ok(())
}

/// The crypto provider an env's TLS handshakes use: ring's with OS randomness on a real peer, the
/// seeded one otherwise (built once per env, from its TLS seed).
pub fn provider(env: &Env) -> Arc<CryptoProvider> {
    match env.tls_randomness() {
        // ring's provider has no post-quantum groups (hence rustls's deprecation note); Fabric 2.2
        // and the Go TLS stacks it runs on offer none either.
        #[allow(deprecated)]
        TlsRandomness::Os => Arc::new(rustls::crypto::ring::default_provider()),
        TlsRandomness::Seeded { seed, provider } => provider.get_or_init(|| seeded::provider(*seed)).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fabric's binding inspector texts, in its order of checks.
    #[test]
    fn the_binding_check_names_what_is_wrong() {
        let hash = cert_hash(b"a certificate");
        assert_eq!(check_binding(&hash, Some(hash)), Ok(()));
        assert_eq!(check_binding(&[], Some(hash)), Err("client didn't include its TLS cert hash".into()));
        assert_eq!(check_binding(&hash, None), Err("client didn't send a TLS certificate".into()));
        let error = check_binding(&[1, 2, 250], Some([0; 32])).unwrap_err();
        assert!(error.starts_with("claimed TLS cert hash is [1 2 250] but actual TLS cert hash is [0 0 0"), "{error}");
        assert_eq!(go_bytes(&[]), "[]");
    }
}
