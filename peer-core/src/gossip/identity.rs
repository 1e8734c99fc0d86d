//! The gossip identity store (Fabric's identity mapper): PKI-ID → identity, each validated
//! against the MSPs this peer knows before it is stored.
//!
//! Fabric learns other organizations' MSPs from joined channels. Until channels exist (issue
//! #7), peer-core also takes them from `peer.gossip.trustedMSPs` (a peer-core key; Fabric
//! ignores it), so two organizations can form membership.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::message::BadMessage;
use crate::msp::identity::{Identity, PkiId};
use crate::msp::{LocalMsp, Msp};

/// Identities known to this peer, all validated.
#[derive(Clone, Debug)]
pub struct Identities {
    msps: BTreeMap<String, Msp>,
    known: BTreeMap<PkiId, Identity>,
    self_pki_id: PkiId,
}

impl Identities {
    /// Starts with our own identity, our MSP and the other organizations' MSPs we trust.
    pub fn new(local: &LocalMsp, others: impl IntoIterator<Item = Msp>) -> Identities {
        let mut msps = BTreeMap::new();
        msps.insert(local.msp.id.clone(), local.msp.clone());
        for msp in others {
            msps.entry(msp.id.clone()).or_insert(msp);
        }
        let mut known = BTreeMap::new();
        known.insert(local.pki_id(), local.identity.clone());
        Identities { msps, known, self_pki_id: local.pki_id() }
    }

    /// Validates and stores an identity that claims to be `pki_id`. Idempotent for known IDs.
    pub fn put(&mut self, pki_id: &[u8], serialized: &[u8], now: SystemTime) -> Result<&Identity, BadMessage> {
        let pki_id = PkiId::from_slice(pki_id).ok_or_else(|| BadMessage::BadIdentity("PKIID is nil or not 32 bytes".into()))?;
        if serialized.is_empty() {
            return Err(BadMessage::BadIdentity("identity is nil".into()));
        }
        let identity = Identity::deserialize(serialized).map_err(|e| BadMessage::BadIdentity(e.to_string()))?;
        if identity.pki_id() != pki_id {
            return Err(BadMessage::PkiIdMismatch);
        }
        if self.known.contains_key(&pki_id) {
            return Ok(&self.known[&pki_id]);
        }
        let msp = self.msps.get(&identity.msp_id).ok_or_else(|| {
            BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated. No MSP found able to do that."))
        })?;
        msp.validate(&identity, now).map_err(|reason| {
            if reason.contains("expired") {
                BadMessage::BadIdentity(format!("gossipping peer identity expired: {reason}"))
            } else {
                BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated: {reason}"))
            }
        })?;
        Ok(self.known.entry(pki_id).or_insert(identity))
    }

    /// Adds MSPs learned later (from joined channels). An MSP ID already known keeps its MSP.
    pub fn add_msps(&mut self, msps: impl IntoIterator<Item = Msp>) {
        for msp in msps {
            self.msps.entry(msp.id.clone()).or_insert(msp);
        }
    }

    pub fn get(&self, pki_id: &PkiId) -> Option<&Identity> {
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
