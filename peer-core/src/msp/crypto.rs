//! ECDSA P-256 over SHA-256, as Fabric's software BCCSP does it.
//!
//! Signatures are DER `(r, s)`. Signing is deterministic (RFC 6979, so simulated runs reproduce
//! byte for byte) and always low-S; verification rejects high-S, as Fabric does, so a signature
//! cannot be re-shaped into a second valid one. Certificates are X.509 with P-256 keys.

use der::asn1::AnyRef;
use der::{Decode, Encode};
use p256::ecdsa::signature::{Keypair, Signer as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::scalar::IsHigh;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifier, DecodePublicKey, ObjectIdentifier, SignatureAlgorithmIdentifier};
use x509_cert::Certificate;

/// ecdsa-with-SHA256, the only certificate signature algorithm peer-core verifies.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// id-ecPublicKey and the P-256 curve.
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes are not a DER-encoded ECDSA signature.
    #[error("the signature is not a DER-encoded ECDSA signature")]
    Malformed,
    /// S is in the upper half of the curve order (Fabric rejects these).
    #[error("Invalid S. Must be smaller than half the order")]
    HighS,
    /// The signature does not match the message and key.
    #[error("the signature does not verify with the signer's public key")]
    Mismatch,
}

/// Signs `message` (hashed with SHA-256 inside) and returns a low-S DER signature.
pub fn sign(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let signature: Signature = key.sign(message);
    let signature = signature.normalize_s();
    signature.to_der().as_bytes().to_vec()
}

/// Verifies a DER signature over `message`, rejecting high-S signatures.
pub fn verify(key: &VerifyingKey, message: &[u8], der_signature: &[u8]) -> Result<(), VerifyError> {
    let signature = Signature::from_der(der_signature).map_err(|_| VerifyError::Malformed)?;
    if bool::from(signature.s().is_high()) {
        return Err(VerifyError::HighS);
    }
    verify_parsed(key, message, &signature).map_err(|()| VerifyError::Mismatch)
}

/// The ECDSA check itself, by ring (assembly P-256 arithmetic, about 4.5 times faster than p256's
/// portable code on this machine: 63 vs 279 µs per verification). p256 has already parsed and
/// range-checked the key and the signature, so both libraries accept exactly the same signatures;
/// signing stays with p256 (RFC 6979, deterministic), which ring does not offer.
fn verify_parsed(key: &VerifyingKey, message: &[u8], signature: &Signature) -> Result<(), ()> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    let point = key.to_sec1_point(false);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point.as_bytes()).verify(message, &signature.to_bytes()).map_err(|_| ())
}

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The certificate's public key, if it is an EC P-256 key.
pub fn cert_public_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = cert.tbs_certificate().subject_public_key_info();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(PRIME256V1) {
        let what = match curve {
            Some(curve) if spki.algorithm.oid == EC_PUBLIC_KEY => format!("an EC key on curve {curve}"),
            _ => format!("a key of type {}", spki.algorithm.oid),
        };
        return Err(format!("unsupported key type: the certificate has {what}; peer-core supports ECDSA P-256 only"));
    }
    let der = spki.to_der().map_err(|e| format!("cannot encode the public key: {e}"))?;
    VerifyingKey::from_public_key_der(&der).map_err(|e| format!("the public key is not a valid P-256 point: {e}"))
}

/// Checks that `issuer`'s key signed `cert`. Certificate signatures may be high-S (tools other
/// than Fabric's make them); Fabric accepts those, so this check does too.
pub fn cert_signed_by(cert: &Certificate, issuer_key: &VerifyingKey) -> Result<(), String> {
    if cert.signature_algorithm().oid != ECDSA_WITH_SHA256 {
        return Err(format!(
            "unsupported certificate signature algorithm {}; peer-core verifies ecdsa-with-SHA256 only",
            cert.signature_algorithm().oid
        ));
    }
    let tbs = cert.tbs_certificate().to_der().map_err(|e| format!("cannot encode the certificate: {e}"))?;
    let signature_bytes = cert.signature().raw_bytes();
    let signature = Signature::from_der(signature_bytes).map_err(|_| "the certificate signature is malformed".to_string())?;
    let signature = signature.normalize_s();
    verify_parsed(issuer_key, &tbs, &signature).map_err(|()| "the certificate signature does not verify".to_string())
}

/// Parses one certificate from DER.
pub fn cert_from_der(der: &[u8]) -> Result<Certificate, String> {
    Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// A signer that always produces low-S signatures, for building certificates with x509-cert's
/// builder (whose ECDSA signer would otherwise emit high-S half the time).
pub struct LowSSigner<'k>(pub &'k SigningKey);

impl Keypair for LowSSigner<'_> {
    type VerifyingKey = VerifyingKey;
    fn verifying_key(&self) -> VerifyingKey {
        *self.0.verifying_key()
    }
}

impl SignatureAlgorithmIdentifier for LowSSigner<'_> {
    type Params = AnyRef<'static>;
    const SIGNATURE_ALGORITHM_IDENTIFIER: AlgorithmIdentifier<Self::Params> =
        <SigningKey as SignatureAlgorithmIdentifier>::SIGNATURE_ALGORITHM_IDENTIFIER;
}

impl p256::ecdsa::signature::Signer<DerSignature> for LowSSigner<'_> {
    fn try_sign(&self, message: &[u8]) -> Result<DerSignature, p256::ecdsa::signature::Error> {
        let signature: Signature = self.0.try_sign(message)?;
        Ok(signature.normalize_s().to_der())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::Generate;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> SigningKey {
        SigningKey::generate_from_rng(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    /// Flips a low-S signature to its high-S twin (n - s): still a valid ECDSA signature.
    fn to_high_s(der: &[u8]) -> Vec<u8> {
        let sig = Signature::from_der(der).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        assert!(bool::from(high.s().is_high()));
        high.to_der().as_bytes().to_vec()
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_verify() {
        let key = key(1);
        for i in 0..64u32 {
            let message = format!("message {i}");
            let a = sign(&key, message.as_bytes());
            assert_eq!(a, sign(&key, message.as_bytes()), "RFC 6979: same key and message, same signature");
            let parsed = Signature::from_der(&a).unwrap();
            assert!(!bool::from(parsed.s().is_high()));
            assert_eq!(verify(key.verifying_key(), message.as_bytes(), &a), Ok(()));
            assert_eq!(verify(key.verifying_key(), b"other", &a), Err(VerifyError::Mismatch));
            assert_eq!(verify(key.verifying_key(), message.as_bytes(), &to_high_s(&a)), Err(VerifyError::HighS));
        }
        assert_eq!(verify(key.verifying_key(), b"x", b"\x30\x00"), Err(VerifyError::Malformed));
        assert_eq!(verify(key.verifying_key(), b"x", &[]), Err(VerifyError::Malformed));
    }

    #[test]
    fn another_keys_signature_does_not_verify() {
        let signature = sign(&key(1), b"hello");
        assert_eq!(verify(key(2).verifying_key(), b"hello", &signature), Err(VerifyError::Mismatch));
    }

    /// ring does the arithmetic, p256 the parsing: over good signatures, signatures of other
    /// messages and keys, and single-bit corruptions of r or s, ring's answer is p256's own.
    #[test]
    fn ring_and_p256_agree_on_every_signature() {
        use p256::ecdsa::signature::Verifier as _;
        let keys = [key(1), key(2)];
        let mut checked = 0;
        for i in 0..48u32 {
            let message = format!("message {i}");
            let good = Signature::from_der(&sign(&keys[0], message.as_bytes())).unwrap();
            let mut candidates = vec![good];
            let other = Signature::from_der(&sign(&keys[0], b"other")).unwrap();
            candidates.push(other);
            let mut bytes = good.to_bytes();
            bytes[(i as usize * 7) % 64] ^= 1 << (i % 8);
            candidates.extend(Signature::from_slice(&bytes));
            for signature in candidates {
                for key in &keys {
                    let p256 = key.verifying_key().verify(message.as_bytes(), &signature).is_ok();
                    let ours = verify_parsed(key.verifying_key(), message.as_bytes(), &signature).is_ok();
                    assert_eq!(ours, p256, "message {i}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 250);
        // And a certificate-style high-S signature is accepted by both (only gossip refuses high-S).
        let high = Signature::from_der(&to_high_s(&sign(&keys[0], b"cert"))).unwrap();
        assert!(keys[0].verifying_key().verify(b"cert", &high).is_ok());
        assert!(verify_parsed(keys[0].verifying_key(), b"cert", &high).is_ok());
    }
}

#[cfg(test)]
mod rfc6979 {
    use super::*;

    /// RFC 6979 A.2.5: P-256, SHA-256, message "sample". The RFC's s is high, so we emit n - s.
    #[test]
    fn matches_the_published_vector_with_s_normalized() {
        let x = hex::decode("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721").unwrap();
        let key = SigningKey::from_slice(&x).unwrap();
        let der = sign(&key, b"sample");
        let signature = Signature::from_der(&der).unwrap();
        let (r, s) = signature.split_bytes();
        assert_eq!(hex::encode_upper(r), "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716");
        // n - 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8
        assert_eq!(hex::encode_upper(s), "0834E36AD29A83BF2BC9385E491D6099C8FDF9D1ED67AA7EA5F51F93782857A9");
    }
}
