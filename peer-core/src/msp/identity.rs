//! Identities as Fabric puts them on the wire: `msp.SerializedIdentity { mspid, id_bytes }` with
//! the PEM of an X.509 certificate, and the gossip PKI-ID derived from it.

use std::fmt;

use der::{Encode, EncodePem, pem::LineEnding};
use p256::ecdsa::VerifyingKey;
use prost::Message;
use x509_cert::Certificate;

use super::crypto::{self, VerifyError};

/// Largest serialized identity accepted off the wire (a certificate chain is a few KB).
pub const MAX_SERIALIZED_IDENTITY_BYTES: usize = 64 << 10;

/// A gossip PKI-ID: SHA-256 over the MSP ID bytes followed by the identity bytes (the PEM).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PkiId(pub [u8; 32]);

/// The bytes' lexicographic order (as derived), compared as four big-endian words: PKI-IDs key
/// every membership map and audience, and a call to `memcmp` per comparison was a sixth of the
/// protocol simulator's time at a few hundred peers.
impl Ord for PkiId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let words =
            |id: &PkiId| -> [u64; 4] { std::array::from_fn(|i| u64::from_be_bytes(id.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"))) };
        words(self).cmp(&words(other))
    }
}

impl PartialOrd for PkiId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PkiId {
    pub fn of(msp_id: &str, id_bytes: &[u8]) -> PkiId {
        let mut input = Vec::with_capacity(msp_id.len() + id_bytes.len());
        input.extend_from_slice(msp_id.as_bytes());
        input.extend_from_slice(id_bytes);
        PkiId(crypto::sha256(&input))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<PkiId> {
        bytes.try_into().ok().map(PkiId)
    }
}

impl fmt::Display for PkiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PkiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PkiId({})", hex::encode(&self.0[..8]))
    }
}

/// Why bytes off the wire are not a usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Over [`MAX_SERIALIZED_IDENTITY_BYTES`].
    #[error("serialized identity is {0} bytes, more than the {MAX_SERIALIZED_IDENTITY_BYTES} allowed")]
    TooLarge(usize),
    /// Not a `msp.SerializedIdentity`.
    #[error("could not deserialize a SerializedIdentity: {0}")]
    Decode(String),
    /// `id_bytes` is not one PEM certificate.
    #[error("could not decode the identity certificate of MSP {msp_id:?}: {reason}")]
    BadCertificate { msp_id: String, reason: String },
}

/// An identity: an MSP ID and a certificate, with the encodings Fabric derives from them.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub msp_id: String,
    pub cert: Certificate,
    /// The certificate as PEM, exactly as it travels in `SerializedIdentity.id_bytes`.
    pub pem: Vec<u8>,
    pub public_key: VerifyingKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({} {})", self.msp_id, self.common_name().unwrap_or_default())
    }
}

impl Identity {
    /// Builds an identity from a parsed certificate; the PEM is re-encoded as Go's
    /// `pem.EncodeToMemory` writes it, which is what Fabric serializes.
    pub fn new(msp_id: &str, cert: Certificate) -> Result<Identity, String> {
        let public_key = crypto::cert_public_key(&cert)?;
        let pem = cert.to_pem(LineEnding::LF).map_err(|e| format!("cannot encode the certificate as PEM: {e}"))?;
        Ok(Identity { msp_id: msp_id.to_string(), cert, pem: pem.into_bytes(), public_key })
    }

    /// Decodes `msp.SerializedIdentity` bytes from an untrusted source. This checks the format
    /// only; whether the identity is valid for its MSP is [`super::Msp::validate`]'s job.
    pub fn deserialize(bytes: &[u8]) -> Result<Identity, IdentityError> {
        if bytes.len() > MAX_SERIALIZED_IDENTITY_BYTES {
            return Err(IdentityError::TooLarge(bytes.len()));
        }
        let serialized = proto::msp::SerializedIdentity::decode(bytes).map_err(|e| IdentityError::Decode(e.to_string()))?;
        let bad = |reason: String| IdentityError::BadCertificate { msp_id: serialized.mspid.clone(), reason };
        let der = single_pem_certificate(&serialized.id_bytes).map_err(bad)?;
        let cert = crypto::cert_from_der(&der).map_err(bad)?;
        let mut identity = Identity::new(&serialized.mspid, cert).map_err(bad)?;
        // Keep the bytes as sent: the PKI-ID is computed over them.
        identity.pem = serialized.id_bytes;
        Ok(identity)
    }

    /// `msp.SerializedIdentity` bytes.
    pub fn serialize(&self) -> Vec<u8> {
        proto::msp::SerializedIdentity { mspid: self.msp_id.clone(), id_bytes: self.pem.clone() }.encode_to_vec()
    }

    /// When the certificate stops being valid (its NotAfter).
    pub fn not_after(&self) -> std::time::SystemTime {
        self.cert.tbs_certificate().validity().not_after.to_system_time()
    }

    pub fn pki_id(&self) -> PkiId {
        PkiId::of(&self.msp_id, &self.pem)
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
        crypto::verify(&self.public_key, message, signature)
    }

    pub fn common_name(&self) -> Option<String> {
        name_attribute(&self.cert, COMMON_NAME)
    }

    /// The certificate's organizational units, in order.
    pub fn organizational_units(&self) -> Vec<String> {
        name_attributes(&self.cert, ORGANIZATIONAL_UNIT)
    }

    /// The certificate's DER encoding.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }
}

const COMMON_NAME: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
const ORGANIZATIONAL_UNIT: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.4.11");

fn name_attributes(cert: &Certificate, oid: der::asn1::ObjectIdentifier) -> Vec<String> {
    cert.tbs_certificate()
        .subject()
        .iter()
        .filter(|atv| atv.oid == oid)
        .filter_map(|atv| atv.value.decode_as::<x509_cert::ext::pkix::name::DirectoryString>().ok())
        .map(|s| s.value().into_owned())
        .collect()
}

fn name_attribute(cert: &Certificate, oid: der::asn1::ObjectIdentifier) -> Option<String> {
    name_attributes(cert, oid).into_iter().next()
}

/// Decodes exactly one `CERTIFICATE` PEM block into DER.
pub fn single_pem_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    let blocks = pem_blocks(pem)?;
    match blocks.as_slice() {
        [] => Err("no PEM block found".into()),
        [(label, der)] if label == "CERTIFICATE" => Ok(der.clone()),
        [(label, _)] => Err(format!("expected a CERTIFICATE PEM block, found {label}")),
        more => Err(format!("expected one certificate, found {} PEM blocks", more.len())),
    }
}

/// Every PEM block in `text`, as (label, DER). Text outside blocks is ignored, as Go does.
pub fn pem_blocks(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "the file is not text (expected PEM)".to_string())?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start..];
        let Some(label_end) = after[11..].find("-----") else { return Err("a PEM header is not terminated".into()) };
        let label = &after[11..11 + label_end];
        let footer = format!("-----END {label}-----");
        let Some(end) = after.find(&footer) else { return Err(format!("the PEM block {label} has no END line")) };
        let block = &after[..end + footer.len()];
        let (decoded_label, der) = der::pem::decode_vec(block.as_bytes()).map_err(|e| format!("bad PEM block {label}: {e}"))?;
        blocks.push((decoded_label.to_string(), der));
        rest = &after[end + footer.len()..];
    }
    Ok(blocks)
}

#[cfg(test)]
mod pki_id_order {
    use super::PkiId;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(7), ..ProptestConfig::default() })]
        /// Maps keyed by PKI-ID iterate in byte order, as they did with the derived order.
        #[test]
        fn orders_as_its_bytes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), shared in 0usize..32) {
            let mut b = b;
            b[..shared].copy_from_slice(&a[..shared]);
            prop_assert_eq!(PkiId(a).cmp(&PkiId(b)), a.cmp(&b));
            prop_assert_eq!(PkiId(a).cmp(&PkiId(a)), std::cmp::Ordering::Equal);
        }
    }
}
