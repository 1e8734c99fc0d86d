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

/// The MSPs identities are validated against (our own, `peer.gossip.trustedMSPs` and the
/// joined channels' orgs), with the verifier. An immutable, cheaply cloned snapshot: comm
/// authenticates handshakes against the one the gossip aggregate last handed it
/// ([`super::instance::Output::Trust`]), the aggregate's identity store against its own.
#[derive(Clone)]
pub struct TrustedMsps {
    msps: Arc<BTreeMap<String, Msp>>,
    verifier: Arc<dyn IdentityVerifier>,
}

impl std::fmt::Debug for TrustedMsps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedMsps").field("msps", &self.msps.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl TrustedMsps {
    /// Our own MSP and the other organizations' MSPs we trust, checked with `verifier`.
    pub fn new(local: &LocalMsp, others: impl IntoIterator<Item = Msp>, verifier: Arc<dyn IdentityVerifier>) -> TrustedMsps {
        let mut msps = BTreeMap::new();
        msps.insert(local.msp.id.clone(), local.msp.clone());
        for msp in others {
            msps.entry(msp.id.clone()).or_insert(msp);
        }
        TrustedMsps { msps: Arc::new(msps), verifier }
    }

    /// The MSP IDs trusted, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.msps.keys().map(String::as_str)
    }

    /// Decodes `serialized`, checks that it is `pki_id` and validates it against its MSP at `now`.
    pub fn validate(&self, pki_id: &[u8], serialized: &[u8], now: SystemTime) -> Result<(PkiId, Arc<Identity>), BadMessage> {
        let pki_id = Self::claimed(pki_id, serialized)?;
        let (computed, identity) = self.verifier.decode(serialized)?;
        if computed != pki_id {
            return Err(BadMessage::PkiIdMismatch);
        }
        self.check(pki_id, &identity, now)?;
        Ok((pki_id, identity))
    }

    fn claimed(pki_id: &[u8], serialized: &[u8]) -> Result<PkiId, BadMessage> {
        let pki_id = PkiId::from_slice(pki_id).ok_or_else(|| BadMessage::BadIdentity("PKIID is nil or not 32 bytes".into()))?;
        if serialized.is_empty() {
            return Err(BadMessage::BadIdentity("identity is nil".into()));
        }
        Ok(pki_id)
    }

    fn check(&self, pki_id: PkiId, identity: &Identity, now: SystemTime) -> Result<(), BadMessage> {
        let msp = self
            .msps
            .get(&identity.msp_id)
            .ok_or_else(|| BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated. No MSP found able to do that.")))?;
        self.verifier.validate(msp, identity, now).map_err(|reason| {
            if reason.contains("expired") {
                BadMessage::BadIdentity(format!("gossipping peer identity expired: {reason}"))
            } else {
                BadMessage::BadIdentity(format!("Peer Identity {pki_id} cannot be validated: {reason}"))
            }
        })
    }

    /// Checks `message`'s signatures as made by `identity`.
    pub fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage> {
        self.verifier.verify(identity, message)
    }
}

/// Identities known to this peer, all validated. Owned by the gossip aggregate (its membership
/// layer), the only writer; comm hands it the identities it authenticated as events. Identities
/// are shared (`Arc`): handing one to a caller does not copy its certificate.
#[derive(Clone, Debug)]
pub struct Identities {
    trusted: TrustedMsps,
    /// What [`Self::trusted`] is made of: our own MSP, each joined channel's MSPs by channel (as
    /// its current config defines them), and `peer.gossip.trustedMSPs`'.
    local: Msp,
    channels: BTreeMap<String, Vec<Msp>>,
    configured: Vec<Msp>,
    known: BTreeMap<PkiId, Arc<Identity>>,
    /// When each identity was last used (stored, or a message checked with it).
    last_used: BTreeMap<PkiId, SystemTime>,
    self_pki_id: PkiId,
}

impl Identities {
    /// Starts with our own identity, our MSP and the other organizations' MSPs we trust.
    pub fn new(local: &LocalMsp, others: impl IntoIterator<Item = Msp>) -> Identities {
        Identities::with_verifier(local, others, Arc::new(MspVerifier))
    }

    /// As [`Self::new`], checking identities and signatures with `verifier` (the protocol-level
    /// simulator's seam; the peer uses [`MspVerifier`]).
    pub fn with_verifier(local: &LocalMsp, others: impl IntoIterator<Item = Msp>, verifier: Arc<dyn IdentityVerifier>) -> Identities {
        let configured: Vec<Msp> = others.into_iter().collect();
        let trusted = TrustedMsps::new(local, configured.iter().cloned(), verifier);
        let mut known = BTreeMap::new();
        known.insert(local.pki_id(), Arc::new(local.identity.clone()));
        Identities {
            trusted,
            local: local.msp.clone(),
            channels: BTreeMap::new(),
            configured,
            known,
            last_used: BTreeMap::new(),
            self_pki_id: local.pki_id(),
        }
    }

    /// Validates and stores an identity that claims to be `pki_id`. Idempotent for known IDs.
    pub fn put(&mut self, pki_id: &[u8], serialized: &[u8], now: SystemTime) -> Result<&Arc<Identity>, BadMessage> {
        let claimed = TrustedMsps::claimed(pki_id, serialized)?;
        let (computed, identity) = self.trusted.verifier.decode(serialized)?;
        if computed != claimed {
            return Err(BadMessage::PkiIdMismatch);
        }
        if !self.known.contains_key(&claimed) {
            self.trusted.check(claimed, &identity, now)?;
        }
        self.last_used.insert(claimed, now);
        Ok(self.known.entry(claimed).or_insert(identity))
    }

    /// Stores an identity comm already validated against [`Self::trusted`] (a handshake).
    pub fn insert_validated(&mut self, pki_id: PkiId, identity: Arc<Identity>) {
        self.known.entry(pki_id).or_insert(identity);
    }

    /// Checks `message`'s signatures as made by `identity`, with this store's verifier.
    pub fn verify(&self, identity: &Identity, message: &SignedMessage) -> Result<(), BadMessage> {
        self.trusted.verify(identity, message)
    }

    /// The MSPs identities are validated against.
    pub fn trusted(&self) -> &TrustedMsps {
        &self.trusted
    }

    /// A joined channel's MSPs as its current config defines them: they replace the channel's
    /// previous ones (a config update can change a CA or a CRL, or remove an org). What is
    /// trusted is then our own MSP, each joined channel's MSPs (channels in ID order; the first
    /// definition of an MSP ID wins), and `peer.gossip.trustedMSPs`' for orgs no channel defines.
    /// Every stored identity is validated again, as Fabric suspects them all at each config
    /// block: the PKI-IDs of those no longer valid (their org is gone, their certificate revoked)
    /// are forgotten and returned, for membership to purge.
    pub fn set_channel_msps(&mut self, channel: &str, msps: impl IntoIterator<Item = Msp>, now: SystemTime) -> Vec<PkiId> {
        self.channels.insert(channel.to_string(), msps.into_iter().collect());
        let mut trusted: BTreeMap<String, Msp> = BTreeMap::new();
        trusted.insert(self.local.id.clone(), self.local.clone());
        for msp in self.channels.values().flatten().chain(&self.configured) {
            trusted.entry(msp.id.clone()).or_insert_with(|| msp.clone());
        }
        self.trusted.msps = Arc::new(trusted);
        let trusted = self.trusted.clone();
        self.forget_where(|pki_id, identity, _| trusted.check(*pki_id, identity, now).is_err())
    }

    /// Forgets every identity but ours for which `doomed(pki_id, identity, last used)` holds;
    /// returns their PKI-IDs.
    fn forget_where(&mut self, doomed: impl Fn(&PkiId, &Identity, Option<SystemTime>) -> bool) -> Vec<PkiId> {
        let gone: Vec<PkiId> = self
            .known
            .iter()
            .filter(|(pki_id, identity)| **pki_id != self.self_pki_id && doomed(pki_id, identity, self.last_used.get(pki_id).copied()))
            .map(|(pki_id, _)| *pki_id)
            .collect();
        for pki_id in &gone {
            self.known.remove(pki_id);
            self.last_used.remove(pki_id);
        }
        gone
    }

    /// Every known identity (ours included), in PKI-ID order.
    pub fn known(&self) -> impl Iterator<Item = (&PkiId, &Arc<Identity>)> {
        self.known.iter()
    }

    /// Notes that `pki_id`'s identity was used at `now` (a message checked with it).
    pub fn touch(&mut self, pki_id: &PkiId, now: SystemTime) {
        if self.known.contains_key(pki_id) {
            self.last_used.insert(*pki_id, now);
        }
    }

    /// Forgets every identity (ours excepted) not used for `threshold` (Fabric: an hour, swept
    /// every six minutes). An identity stored without a time of use counts from `now`.
    pub fn forget_unused(&mut self, now: SystemTime, threshold: std::time::Duration) -> Vec<PkiId> {
        for pki_id in self.known.keys() {
            self.last_used.entry(*pki_id).or_insert(now);
        }
        self.forget_where(|_, _, used| used.is_some_and(|used| now.duration_since(used).unwrap_or_default() > threshold))
    }

    /// Forgets every identity (ours excepted) whose certificate expired by `now` (Fabric deletes
    /// one when its NotAfter passes). Returns their PKI-IDs.
    pub fn expire(&mut self, now: SystemTime) -> Vec<PkiId> {
        self.forget_where(|_, identity, _| identity.not_after() < now)
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
            self.last_used.remove(pki_id);
        }
    }
}
