//! The gossip identity store (Fabric's identity mapper): PKI-ID → identity, each validated
//! against the MSPs this peer knows before it is stored.
//!
//! Fabric learns other organizations' MSPs from joined channels (the gossip aggregate adds each
//! new channel configuration's MSPs); peer-core also takes them from `peer.gossip.trustedMSPs` (a
//! peer-core key; Fabric ignores it), so two organizations can form membership before any channel.
//!
//! How identities are decoded and validated, and how gossip signatures are checked, is an
//! [`IdentityVerifier`] chosen at construction, from `node::Setup` through `gossip::GossipSetup`:
//! [`MspVerifier`] (X.509 against the MSPs, ECDSA P-256) for the real peer; the full-stack
//! simulator wraps it in a memo shared by all its peers (the same answers, each distinct signature
//! checked once per run). The protocol-level simulator (`sim protosim`) injects a cheap stand-in
//! through [`Identities::with_verifier`] so that thousands of peers fit in one process; crypto cost
//! is measured by the micro-benchmarks instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::message::{BadMessage, SignedMessage};
use crate::msp::identity::{Identity, PkiId};
use crate::msp::{LocalMsp, Msp};

/// How the gossip layer checks identities and message signatures.
pub trait IdentityVerifier: Send + Sync {
    /// Decodes `msp.SerializedIdentity` bytes off the wire into an identity and its PKI-ID.
    /// Checks the format only; [`Self::validate`] checks it against its MSP.
    fn decode(&self, serialized: &[u8]) -> Result<(PkiId, Arc<Identity>), BadMessage>;
    /// Whether `identity` is valid for `msp` at `now` (Fabric's reason if not).
    fn validate(&self, msp: &Msp, identity: &Identity, now: SystemTime) -> Result<(), String>;
    /// Checks `message`'s signature (and its secret's) as made by `identity`.
    fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage>;
}

/// The peer's verifier: certificates validated by the MSP (chain, validity, OUs, CRLs),
/// signatures by ECDSA P-256 (low-S only).
#[derive(Clone, Copy, Debug, Default)]
pub struct MspVerifier;

impl IdentityVerifier for MspVerifier {
    fn decode(&self, serialized: &[u8]) -> Result<(PkiId, Arc<Identity>), BadMessage> {
        let identity = Identity::deserialize(serialized).map_err(|e| BadMessage::BadIdentity(e.to_string()))?;
        Ok((identity.pki_id(), Arc::new(identity)))
    }

    fn validate(&self, msp: &Msp, identity: &Identity, now: SystemTime) -> Result<(), String> {
        msp.validate(identity, now)
    }

    fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage> {
        message.verify(identity)
    }
}

/// Identities known to this peer, all validated. Identities are shared (`Arc`): handing one to a
/// caller does not copy its certificate.
#[derive(Clone)]
pub struct Identities {
    msps: BTreeMap<String, Msp>,
    known: BTreeMap<PkiId, Arc<Identity>>,
    self_pki_id: PkiId,
    verifier: Arc<dyn IdentityVerifier>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("msps", &self.msps.keys().collect::<Vec<_>>())
            .field("known", &self.known.len())
            .field("self_pki_id", &self.self_pki_id)
            .finish_non_exhaustive()
    }
}

impl Identities {
    /// Starts with our own identity, our MSP and the other organizations' MSPs we trust.
    pub fn new(local: &LocalMsp, others: impl IntoIterator<Item = Msp>) -> Identities {
        Identities::with_verifier(local, others, Arc::new(MspVerifier))
    }

    /// As [`Self::new`], checking identities and signatures with `verifier` (the protocol-level
    /// simulator's seam; the peer uses [`MspVerifier`]).
    pub fn with_verifier(local: &LocalMsp, others: impl IntoIterator<Item = Msp>, verifier: Arc<dyn IdentityVerifier>) -> Identities {
        let mut msps = BTreeMap::new();
        msps.insert(local.msp.id.clone(), local.msp.clone());
        for msp in others {
            msps.entry(msp.id.clone()).or_insert(msp);
        }
        let mut known = BTreeMap::new();
        known.insert(local.pki_id(), Arc::new(local.identity.clone()));
        Identities { msps, known, self_pki_id: local.pki_id(), verifier }
    }

    /// Validates and stores an identity that claims to be `pki_id`. Idempotent for known IDs.
    pub fn put(&mut self, pki_id: &[u8], serialized: &[u8], now: SystemTime) -> Result<&Arc<Identity>, BadMessage> {
        let pki_id = PkiId::from_slice(pki_id).ok_or_else(|| BadMessage::BadIdentity("PKIID is nil or not 32 bytes".into()))?;
        if serialized.is_empty() {
            return Err(BadMessage::BadIdentity("identity is nil".into()));
        }
        let (computed, identity) = self.verifier.decode(serialized)?;
        if computed != pki_id {
            return Err(BadMessage::PkiIdMismatch);
        }
        if self.known.contains_key(&pki_id) {
            return Ok(&self.known[&pki_id]);
        }
        let msp = self
            .msps
            .get(&identity.msp_id)
            .ok_or_else(|| BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated. No MSP found able to do that.")))?;
        self.verifier.validate(msp, &identity, now).map_err(|reason| {
            if reason.contains("expired") {
                BadMessage::BadIdentity(format!("gossipping peer identity expired: {reason}"))
            } else {
                BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated: {reason}"))
            }
        })?;
        Ok(self.known.entry(pki_id).or_insert(identity))
    }

    /// Checks `message`'s signatures as made by `identity`, with this store's verifier.
    pub fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage> {
        self.verifier.verify(identity, message)
    }

    /// The verifier, for checking a signature without holding the store's lock.
    pub fn verifier(&self) -> Arc<dyn IdentityVerifier> {
        self.verifier.clone()
    }

    /// Adds MSPs learned later (from joined channels). An MSP ID already known keeps its MSP.
    pub fn add_msps(&mut self, msps: impl IntoIterator<Item = Msp>) {
        for msp in msps {
            self.msps.entry(msp.id.clone()).or_insert(msp);
        }
    }

    pub fn get(&self, pki_id: &PkiId) -> Option<&Arc<Identity>> {
        self.known.get(pki_id)
    }

    /// The organization (MSP ID) of a known identity.
    pub fn org_of(&self, pki_id: &PkiId) -> Option<&str> {
        self.known.get(pki_id).map(|identity| identity.msp_id.as_str())
    }

    pub fn self_pki_id(&self) -> PkiId {
        self.self_pki_id
    }

    /// Forgets an identity (purged member). Our own is kept.
    pub fn forget(&mut self, pki_id: &PkiId) {
        if *pki_id != self.self_pki_id {
            self.known.remove(pki_id);
        }
    }
}
