//! [`PullEngine`]: Fabric's gossip pull protocol, sans-IO, for one kind of item (identities here;
//! the message type says which). Items are named by digests (bytes); what is held, what may be
//! shown to whom and what an item is belong to the owner, which asks the engine when to talk and
//! whether an answer counts.
//!
//! A round, every `pullInterval`: the initiator sends `GossipHello{nonce}` to `pullPeerNum` random
//! peers, each with its own fresh nonce; a responder keeps the nonce for `requestWaitTime` and
//! answers `DataDigest{nonce, digests it holds}`. After `digestWaitTime` the initiator asks, for
//! every digest advertised that it does not hold, one advertiser chosen at random
//! (`DataRequest{nonce, digests}`); a responder answers a request whose nonce it still keeps with
//! `DataUpdate{nonce, items}`. After `responseWaitTime` the round's nonces are forgotten. The four
//! messages travel with empty signatures and the EMPTY tag; the round nonce sits inside, the
//! outer nonce is 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proto::gossip::gossip_message::Content;
use proto::gossip::{DataDigest, DataRequest, DataUpdate, Envelope, GossipHello, GossipMessage, PullMsgType};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use super::message::empty_tag;
use crate::env::Instant;
use crate::msp::identity::PkiId;

/// The pull timings (`peer.gossip.*`; Fabric's defaults 4s, 3, 1s, 1.5s, 2s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullTiming {
    pub interval: Duration,
    pub peer_num: usize,
    pub digest_wait: Duration,
    pub request_wait: Duration,
    pub response_wait: Duration,
}

impl PullTiming {
    pub fn from_config(gossip: &crate::config::GossipConfig) -> PullTiming {
        PullTiming {
            interval: gossip.pull_interval,
            peer_num: usize::try_from(gossip.pull_peer_num).unwrap_or(usize::MAX),
            digest_wait: gossip.digest_wait_time,
            request_wait: gossip.request_wait_time,
            response_wait: gossip.response_wait_time,
        }
    }
}

/// Where the initiator is in its round.
#[derive(Debug)]
enum Round {
    /// Waiting for the next round.
    Idle { next: Instant },
    /// Hellos sent: digests are taken until `until`.
    Digests { until: Instant },
    /// Requests sent: updates count until `until`.
    Responses { until: Instant },
}

/// One kind of pull, both sides (initiator and responder).
#[derive(Debug)]
pub struct PullEngine {
    kind: PullMsgType,
    timing: PullTiming,
    rng: ChaCha20Rng,
    round: Round,
    /// This round's nonces, by the peer each was sent to.
    outstanding: BTreeMap<u64, PkiId>,
    /// Digests advertised this round, each with who advertised it (and under which nonce).
    advertised: BTreeMap<Vec<u8>, Vec<(PkiId, u64)>>,
    /// Responder: the Hello nonces we answered, each kept until its deadline.
    answered: BTreeMap<u64, (PkiId, Instant)>,
}

/// Most Hello nonces a responder keeps at once (a peer hellos us at most a few times a round; this
/// bounds what a flood of Hellos can make us hold).
const MAX_ANSWERED: usize = 4096;

impl PullEngine {
    pub fn new(kind: PullMsgType, timing: PullTiming, rng: ChaCha20Rng, now: Instant) -> PullEngine {
        PullEngine {
            kind,
            timing,
            rng,
            round: Round::Idle { next: now + timing.interval },
            outstanding: BTreeMap::new(),
            advertised: BTreeMap::new(),
            answered: BTreeMap::new(),
        }
    }

    /// The pull message type this engine speaks.
    pub fn kind(&self) -> PullMsgType {
        self.kind
    }

    /// When [`Self::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Instant {
        let round = match self.round {
            Round::Idle { next } => next,
            Round::Digests { until } | Round::Responses { until } => until,
        };
        self.answered.values().map(|(_, until)| *until).min().map_or(round, |answered| answered.min(round))
    }

    /// Runs the round's timers. `peers` are the candidates for this round's Hellos; `held`
    /// says whether we hold an item. Returns the messages to send.
    pub fn handle_timeout(&mut self, now: Instant, peers: &[PkiId], held: impl Fn(&[u8]) -> bool) -> Vec<(PkiId, GossipMessage)> {
        self.answered.retain(|_, (_, until)| *until > now);
        let mut out = Vec::new();
        match self.round {
            Round::Idle { next } if now >= next => {
                self.outstanding.clear();
                self.advertised.clear();
                let mut candidates = peers.to_vec();
                let k = self.timing.peer_num.min(candidates.len());
                if k == 0 {
                    // Nobody to ask: no windows to wait out, the next round comes at once.
                    self.round = Round::Idle { next: now + self.timing.interval };
                    return out;
                }
                for i in 0..k {
                    let j = i + (self.rng.next_u64() % (candidates.len() - i) as u64) as usize;
                    candidates.swap(i, j);
                    let nonce = self.fresh_nonce();
                    self.outstanding.insert(nonce, candidates[i]);
                    let hello = GossipHello { nonce, metadata: Vec::new(), msg_type: self.kind as i32 };
                    out.push((candidates[i], empty_tag(Content::Hello(hello), 0)));
                }
                self.round = Round::Digests { until: now + self.timing.digest_wait };
            }
            Round::Digests { until } if now >= until => {
                // One advertiser per missing item, chosen at random; one request per advertiser.
                let mut requests: BTreeMap<(PkiId, u64), Vec<Vec<u8>>> = BTreeMap::new();
                for (digest, advertisers) in std::mem::take(&mut self.advertised) {
                    if held(&digest) || advertisers.is_empty() {
                        continue;
                    }
                    let pick = advertisers[(self.rng.next_u64() % advertisers.len() as u64) as usize];
                    requests.entry(pick).or_default().push(digest);
                }
                for ((to, nonce), digests) in requests {
                    let request = DataRequest { nonce, digests, msg_type: self.kind as i32 };
                    out.push((to, empty_tag(Content::DataReq(request), 0)));
                }
                self.round = Round::Responses { until: now + self.timing.response_wait };
            }
            Round::Responses { until } if now >= until => {
                self.outstanding.clear();
                let next = until.max(now) + self.timing.interval.saturating_sub(self.timing.digest_wait + self.timing.response_wait);
                self.round = Round::Idle { next };
            }
            _ => {}
        }
        out
    }

    /// A random nonce not outstanding this round.
    fn fresh_nonce(&mut self) -> u64 {
        loop {
            let nonce = self.rng.next_u64();
            if !self.outstanding.contains_key(&nonce) {
                return nonce;
            }
        }
    }

    /// Responder: a Hello from `from`. Keeps its nonce for `requestWaitTime` and answers with
    /// the digests `from` may see (nothing when there are none).
    pub fn handle_hello(&mut self, now: Instant, from: PkiId, hello: &GossipHello, digests: Vec<Vec<u8>>) -> Option<GossipMessage> {
        if digests.is_empty() {
            return None;
        }
        if self.answered.len() >= MAX_ANSWERED && !self.answered.contains_key(&hello.nonce) {
            return None;
        }
        self.answered.insert(hello.nonce, (from, now + self.timing.request_wait));
        let digest = DataDigest { nonce: hello.nonce, digests, msg_type: self.kind as i32 };
        Some(empty_tag(Content::DataDig(digest), 0))
    }

    /// Initiator: a digest from `from`. Counts only inside the digest window, under a nonce of
    /// this round sent to `from`; `wanted` filters the digests (the owner's ingress filter).
    pub fn handle_digest(&mut self, from: PkiId, digest: &DataDigest, wanted: impl Fn(&[u8]) -> bool) {
        if !matches!(self.round, Round::Digests { .. }) || self.outstanding.get(&digest.nonce) != Some(&from) {
            return;
        }
        let unique: BTreeSet<&Vec<u8>> = digest.digests.iter().collect();
        for item in unique.into_iter().filter(|d| wanted(d)) {
            let advertisers = self.advertised.entry(item.clone()).or_default();
            if !advertisers.iter().any(|(peer, _)| *peer == from) {
                advertisers.push((from, digest.nonce));
            }
        }
    }

    /// Responder: whether a request from `from` may be answered (its nonce is one we gave out
    /// to it and still keep).
    pub fn handle_request(&self, now: Instant, from: PkiId, request: &DataRequest) -> bool {
        self.answered.get(&request.nonce).is_some_and(|(to, until)| *to == from && *until > now)
    }

    /// Initiator: whether an update's items become held (re-advertised): only under a nonce of
    /// this round inside the response window. (Its items are taken either way, as Fabric does.)
    pub fn holds_update(&self, update: &DataUpdate) -> bool {
        matches!(self.round, Round::Responses { .. }) && self.outstanding.contains_key(&update.nonce)
    }

    /// The update answering `request`, with `items`.
    pub fn update(&self, request: &DataRequest, items: Vec<Envelope>) -> GossipMessage {
        empty_tag(Content::DataUpdate(DataUpdate { nonce: request.nonce, data: items, msg_type: self.kind as i32 }), 0)
    }
}

/// The pull message type of a pull message, if `content` is one.
pub fn pull_kind(content: &Content) -> Option<i32> {
    match content {
        Content::Hello(m) => Some(m.msg_type),
        Content::DataDig(m) => Some(m.msg_type),
        Content::DataReq(m) => Some(m.msg_type),
        Content::DataUpdate(m) => Some(m.msg_type),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    fn timing() -> PullTiming {
        PullTiming {
            interval: Duration::from_secs(4),
            peer_num: 3,
            digest_wait: Duration::from_secs(1),
            request_wait: Duration::from_millis(1500),
            response_wait: Duration::from_secs(2),
        }
    }

    fn engine() -> PullEngine {
        PullEngine::new(PullMsgType::IdentityMsg, timing(), ChaCha20Rng::seed_from_u64(1), Instant(0))
    }

    fn peer(n: u8) -> PkiId {
        PkiId([n; 32])
    }

    fn at(secs: f64) -> Instant {
        Instant(0) + Duration::from_secs_f64(secs)
    }

    fn hello_nonces(sends: &[(PkiId, GossipMessage)]) -> Vec<(PkiId, u64)> {
        sends
            .iter()
            .map(|(to, m)| match &m.content {
                Some(Content::Hello(h)) => (*to, h.nonce),
                other => panic!("not a hello: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_round_asks_three_peers_then_one_advertiser_per_missing_item_and_forgets_its_nonces() {
        let mut engine = engine();
        let peers = [peer(1), peer(2), peer(3), peer(4), peer(5)];
        assert!(engine.handle_timeout(at(3.9), &peers, |_| false).is_empty(), "nothing before the interval");
        let hellos = hello_nonces(&engine.handle_timeout(at(4.0), &peers, |_| false));
        assert_eq!(hellos.len(), 3);
        assert_eq!(hellos.iter().map(|(p, _)| *p).collect::<BTreeSet<_>>().len(), 3, "distinct peers");
        // Digests: a wrong nonce or a peer other than the one asked counts for nothing.
        let (asked, nonce) = hellos[0];
        let other = hellos[1];
        engine.handle_digest(asked, &DataDigest { nonce: nonce ^ 1, digests: vec![b"x".to_vec()], msg_type: 2 }, |_| true);
        engine.handle_digest(other.0, &DataDigest { nonce, digests: vec![b"y".to_vec()], msg_type: 2 }, |_| true);
        engine.handle_digest(asked, &DataDigest { nonce, digests: vec![b"held".to_vec(), b"new".to_vec()], msg_type: 2 }, |_| true);
        engine.handle_digest(other.0, &DataDigest { nonce: other.1, digests: vec![b"new".to_vec()], msg_type: 2 }, |_| true);
        let requests = engine.handle_timeout(at(5.0), &peers, |d| d == b"held");
        assert_eq!(requests.len(), 1, "one request: 'new' from one of its two advertisers");
        let (to, message) = &requests[0];
        let Some(Content::DataReq(request)) = &message.content else { panic!("not a request") };
        assert_eq!(request.digests, [b"new".to_vec()]);
        assert!(*to == asked || *to == other.0);
        // An update under this round's nonce, inside the response window, is held.
        let update = DataUpdate { nonce: request.nonce, data: Vec::new(), msg_type: 2 };
        assert!(engine.holds_update(&update));
        assert!(engine.handle_timeout(at(7.0), &peers, |_| false).is_empty());
        assert!(!engine.holds_update(&update), "after the response window, nonces are forgotten");
        // The next round comes an interval after the last.
        assert!(engine.handle_timeout(at(7.9), &peers, |_| false).is_empty());
        assert_eq!(engine.handle_timeout(at(8.0), &peers, |_| false).len(), 3);
    }

    #[test]
    fn a_responder_answers_only_requests_under_a_nonce_it_gave_that_peer_and_still_keeps() {
        let mut engine = engine();
        let hello = GossipHello { nonce: 42, metadata: Vec::new(), msg_type: 2 };
        assert!(engine.handle_hello(at(1.0), peer(1), &hello, Vec::new()).is_none(), "nothing to show: no answer");
        let digest = engine.handle_hello(at(1.0), peer(1), &hello, vec![b"a".to_vec()]).expect("a digest");
        assert!(matches!(digest.content, Some(Content::DataDig(DataDigest { nonce: 42, .. }))));
        let request = DataRequest { nonce: 42, digests: vec![b"a".to_vec()], msg_type: 2 };
        assert!(engine.handle_request(at(2.0), peer(1), &request));
        assert!(!engine.handle_request(at(2.0), peer(2), &request), "another peer cannot use the nonce");
        assert!(!engine.handle_request(at(2.0), peer(1), &DataRequest { nonce: 7, ..request.clone() }));
        assert!(!engine.handle_request(at(2.6), peer(1), &request), "kept for requestWaitTime only");
    }

    #[test]
    fn a_lone_peer_wakes_once_per_interval() {
        let mut engine = engine();
        assert!(engine.handle_timeout(at(4.0), &[], |_| false).is_empty());
        assert_eq!(engine.poll_timeout(), at(8.0));
    }
}
