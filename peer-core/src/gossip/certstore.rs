//! [`CertStore`]: Fabric's identity pull (the certStore). Peers pull each other's signed
//! identities, so a peer learns the certificate of a member whose alive messages no longer carry
//! it (they do only for `publishCertPeriod` after its start): without it, members that meet late
//! can never verify each other, and at a thousand peers full membership is never reached.
//!
//! Held items are signed `PeerIdentity` messages named by PKI-ID: our own (signed once) and every
//! one accepted from an update, so identities spread transitively. Hellos go to any alive member.
//! What a requester R may see (Fabric's egress filter): nothing if R's org is unknown; everything
//! if R is of our org; otherwise an item whose owner's org is known, which has an external endpoint,
//! and whose org is ours or R's. An update is taken whole or not at all: every element must be a
//! `PeerIdentity` whose certificate is its PKI-ID's, signed by that certificate, and valid for
//! its MSP; the first bad one drops the message.

use std::collections::BTreeMap;

use prost::Message as _;
use proto::gossip::gossip_message::Content;
use proto::gossip::{DataRequest, DataUpdate, Envelope, PeerIdentity, PullMsgType};
use rand_chacha::ChaCha20Rng;
use tracing::warn;

use super::discovery::{Discovery, Transmit};
use super::message::{BadMessage, SignedMessage, empty_tag};
use super::pull::{PullEngine, PullTiming};
use crate::env::Instant;
use crate::msp::identity::PkiId;

const TARGET: &str = "gossip.gossip";

/// The identity pull of one peer.
#[derive(Debug)]
pub struct CertStore {
    engine: PullEngine,
    me: PkiId,
    /// Signed identity messages by PKI-ID (ours included).
    held: BTreeMap<PkiId, Envelope>,
}

impl CertStore {
    /// Holds our own identity, signed by `discovery`'s signer.
    pub fn new(discovery: &Discovery, timing: PullTiming, rng: ChaCha20Rng, now: Instant) -> CertStore {
        let signer = discovery.signer();
        let me = signer.pki_id();
        let identity = PeerIdentity { pki_id: me.0.to_vec(), cert: signer.serialized_identity(), metadata: Vec::new() };
        let own = SignedMessage::sign(empty_tag(Content::PeerIdentity(identity), 0), signer.as_ref());
        let mut held = BTreeMap::new();
        held.insert(me, own.into_envelope());
        CertStore { engine: PullEngine::new(PullMsgType::IdentityMsg, timing, rng, now), me, held }
    }

    pub fn poll_timeout(&self) -> Instant {
        self.engine.poll_timeout()
    }

    /// The round's timers: Hellos to random alive members, then requests for unknown identities.
    pub fn handle_timeout(&mut self, now: Instant, discovery: &Discovery) -> Vec<Transmit> {
        let peers = discovery.alive_pki_ids();
        let held = &self.held;
        let sends = self.engine.handle_timeout(now, &peers, |digest| PkiId::from_slice(digest).is_some_and(|p| held.contains_key(&p)));
        sends.into_iter().map(|(to, message)| send(discovery, to, message)).collect()
    }

    /// Forgets a held identity (its org left, its certificate was revoked or expired).
    pub fn forget(&mut self, pki_id: &PkiId) {
        if *pki_id != self.me {
            self.held.remove(pki_id);
        }
    }

    /// How many identities are held (ours included).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// An identity pull message from `from` (already routed here by its type).
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: PkiId,
        message: &SignedMessage,
        discovery: &mut Discovery,
    ) -> Result<Vec<Transmit>, BadMessage> {
        match message.content() {
            Some(Content::Hello(hello)) => {
                let digests: Vec<Vec<u8>> =
                    self.held.keys().filter(|owner| self.may_show(discovery, from, owner)).map(|p| p.0.to_vec()).collect();
                Ok(self.engine.handle_hello(now, from, hello, digests).map(|m| send(discovery, from, m)).into_iter().collect())
            }
            Some(Content::DataDig(digest)) => {
                // Every identity item not held is requested, known identity or not (as Fabric's
                // pull store does): holding it is what lets us pass it on to the next peer.
                let held = &self.held;
                self.engine.handle_digest(from, digest, |d| PkiId::from_slice(d).is_some_and(|p| !held.contains_key(&p)));
                Ok(Vec::new())
            }
            Some(Content::DataReq(request)) => Ok(self.answer(now, from, request, discovery).into_iter().collect()),
            Some(Content::DataUpdate(update)) => {
                self.take_update(now, from, update, discovery)?;
                Ok(Vec::new())
            }
            _ => Err(BadMessage::Unexpected("not an identity pull message".into())),
        }
    }

    /// Fabric's egress filter for `requester` and the identity of `owner`.
    fn may_show(&self, discovery: &Discovery, requester: PkiId, owner: &PkiId) -> bool {
        let identities = discovery.identities();
        let ours = discovery.me().org.as_str();
        let Some(requester_org) = identities.org_of(&requester) else {
            return false;
        };
        if requester_org == ours {
            return true;
        }
        let Some(owner_org) = identities.org_of(owner) else {
            return false;
        };
        let reachable = discovery.external_endpoint_of(owner).is_some_and(|endpoint| !endpoint.is_empty());
        reachable && (owner_org == ours || owner_org == requester_org)
    }

    /// The update answering a request whose nonce we gave `from`: the requested identities we
    /// hold and may show it (nothing if none).
    fn answer(&self, now: Instant, from: PkiId, request: &DataRequest, discovery: &Discovery) -> Option<Transmit> {
        if !self.engine.handle_request(now, from, request) {
            return None;
        }
        let items: Vec<Envelope> = request
            .digests
            .iter()
            .filter_map(|d| PkiId::from_slice(d))
            .filter(|owner| self.may_show(discovery, from, owner))
            .filter_map(|owner| self.held.get(&owner).cloned())
            .collect();
        (!items.is_empty()).then(|| send(discovery, from, self.engine.update(request, items)))
    }

    /// Checks every element, then stores the identities (and holds them if the update answers
    /// this round's request).
    fn take_update(&mut self, now: Instant, from: PkiId, update: &DataUpdate, discovery: &mut Discovery) -> Result<(), BadMessage> {
        let wall = discovery.wall(now);
        let mut accepted = Vec::with_capacity(update.data.len());
        for envelope in &update.data {
            // Elements are decoded without the tag rules (Fabric checks tags of messages that
            // travel bare; the update they came in was checked as a whole).
            let decoded = proto::gossip::GossipMessage::decode(envelope.payload.as_slice())
                .map(|message| SignedMessage::from_parts(envelope.clone(), message))
                .map_err(|err| BadMessage::Decode(err.to_string()));
            let checked = decoded.and_then(|message| {
                let Some(Content::PeerIdentity(identity)) = message.content() else {
                    return Err(BadMessage::Unexpected("Got a non-identity message in an identity update".into()));
                };
                let trusted = discovery.identities().trusted();
                let (pki_id, cert) = trusted.validate(&identity.pki_id, &identity.cert, wall)?;
                trusted.verify(&cert, &message)?;
                Ok((pki_id, cert, envelope.clone()))
            });
            match checked {
                Ok(item) => accepted.push(item),
                Err(err) => {
                    warn!(target: TARGET, func = "validateIdentityMsg", "Failed validating identity message from {from}: {err}");
                    return Err(err);
                }
            }
        }
        let hold = self.engine.holds_update(update);
        for (pki_id, cert, envelope) in accepted {
            discovery.identities_mut().insert_validated(pki_id, cert);
            if hold {
                self.held.entry(pki_id).or_insert(envelope);
            }
        }
        Ok(())
    }
}

/// A pull message to `to` (empty signature, as Fabric's pull messages travel).
fn send(discovery: &Discovery, to: PkiId, message: proto::gossip::GossipMessage) -> Transmit {
    Transmit::Send { to, endpoint: discovery.endpoint_to_reach(&to), message: SignedMessage::noop_sign(message) }
}

/// Whether `message` belongs to the identity pull.
pub fn is_identity_pull(message: &SignedMessage) -> bool {
    message.content().and_then(super::pull::pull_kind) == Some(PullMsgType::IdentityMsg as i32)
}
