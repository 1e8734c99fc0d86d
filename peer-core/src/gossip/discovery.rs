//! Gossip membership (Fabric's gossip/discovery), as a sans-IO state machine.
//!
//! No async, no sockets, no clock: the driver feeds it inputs with the current monotonic time
//! and drains its outputs. Call order (as quinn-proto and str0m document theirs):
//! 1. `handle_message(now, from, message)` for each authenticated message, `handle_timeout(now)`
//!    when `poll_timeout()` has passed, `handle_dial_result`/`handle_presumed_dead` for comm news;
//! 2. then drain `poll_transmit()` and `poll_event()` until they return `None`;
//! 3. then sleep until `poll_timeout()`.
//!
//! Randomness (fan-out targets, sync targets, nonces) comes from the seeded RNG it is given.
//! Identities are validated through [`Identities`]; the wall clock (certificate validity and the
//! incarnation number) is derived from the monotonic clock and the wall time at creation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proto::gossip::gossip_message::Content;
use proto::gossip::{AliveMessage, Envelope, Member, MembershipRequest, MembershipResponse, PeerTime};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tracing::{debug, info, warn};

use super::identity::Identities;
use super::message::{BadMessage, SignedMessage, Signer, empty_tag};
use crate::env::Instant;
use crate::msp::Msp;
use crate::msp::identity::PkiId;

const TARGET: &str = "gossip.discovery";
/// Fabric waits 5 s for the response to a bootstrap membership request (hard-coded there too).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Membership settings (from peer.gossip.*).
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub alive_time_interval: Duration,
    pub alive_expiration_timeout: Duration,
    pub alive_expiration_check_interval: Duration,
    pub reconnect_interval: Duration,
    pub max_connection_attempts: u64,
    pub msg_expiration_factor: u64,
    pub pull_interval: Duration,
    pub pull_peer_num: usize,
    pub publish_cert_period: Duration,
    pub propagate_peer_num: usize,
    pub propagate_iterations: usize,
    pub max_propagation_burst_size: usize,
    pub max_propagation_burst_latency: Duration,
    /// Bootstrap endpoints, already without ourselves.
    pub bootstrap: Vec<String>,
    /// Anchor peers of organizations (endpoint, claimed MSP ID). Fabric takes them from channel
    /// configs; until channels exist peer-core takes them from `peer.gossip.trustedMSPs`.
    pub anchors: Vec<(String, String)>,
}

impl DiscoveryConfig {
    pub fn from_config(gossip: &crate::config::GossipConfig, bootstrap: Vec<String>, anchors: Vec<(String, String)>) -> DiscoveryConfig {
        DiscoveryConfig {
            alive_time_interval: gossip.alive_time_interval,
            alive_expiration_timeout: gossip.alive_expiration_timeout,
            alive_expiration_check_interval: gossip.alive_expiration_check_interval,
            reconnect_interval: gossip.reconnect_interval,
            max_connection_attempts: gossip.max_connection_attempts,
            msg_expiration_factor: gossip.msg_expiration_factor,
            pull_interval: gossip.pull_interval,
            pull_peer_num: gossip.pull_peer_num as usize,
            publish_cert_period: gossip.publish_cert_period,
            propagate_peer_num: gossip.propagate_peer_num as usize,
            propagate_iterations: gossip.propagate_iterations as usize,
            max_propagation_burst_size: gossip.max_propagation_burst_size as usize,
            max_propagation_burst_latency: gossip.max_propagation_burst_latency,
            bootstrap,
            anchors,
        }
    }

    /// How long an alive message stays in the store (500 s by default); a member whose messages
    /// all expire is purged.
    pub fn alive_store_ttl(&self) -> Duration {
        self.alive_expiration_timeout * u32::try_from(self.msg_expiration_factor).unwrap_or(u32::MAX)
    }
}

/// Who we are.
#[derive(Clone, Debug)]
pub struct SelfInfo {
    pub pki_id: PkiId,
    pub org: String,
    /// peer.gossip.externalEndpoint; empty means invisible outside our organization.
    pub external_endpoint: String,
    pub internal_endpoint: String,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Transmit {
    /// Send to a member, connecting to `endpoint` first if there is no connection.
    Send { to: PkiId, endpoint: String, message: SignedMessage },
    /// Bootstrap or anchor contact: handshake (probe) `endpoint`, check the remote's
    /// organization (`org`: ours for a bootstrap peer, the claimed one for an anchor), connect,
    /// send `message`, then report with [`Discovery::handle_dial_result`].
    Contact { endpoint: String, org: String, message: SignedMessage },
    /// Probe a dead member (dial + Ping); if it answers, connect and send `message`.
    ProbeDead { to: PkiId, endpoint: String, message: SignedMessage },
    /// Close the connection to a member.
    Close { to: PkiId },
}

/// Membership changes, for logs, metrics and the operations view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A member we did not know, learned alive or dead.
    Learned {
        pki_id: PkiId,
        endpoint: String,
        internal_endpoint: String,
        alive: bool,
    },
    /// A dead member is alive again (possibly a new incarnation).
    Resurrected {
        pki_id: PkiId,
    },
    Dead {
        pki_id: PkiId,
    },
    /// A member's endpoint or internal endpoint changed (a newer alive message says so).
    Moved {
        pki_id: PkiId,
    },
    Purged {
        pki_id: PkiId,
    },
}

/// A member's last known state.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberInfo {
    pub pki_id: PkiId,
    pub org: String,
    pub endpoint: String,
    pub internal_endpoint: String,
    pub inc_num: u64,
    pub seq_num: u64,
    pub alive: bool,
}

/// What we hold per member. Lean on purpose (a peer holds one per member, a simulation one per
/// pair of peers): the endpoints are read from the messages rather than copied out of them.
#[derive(Clone, Debug)]
struct Record {
    /// The member's organization (shared with every member of it: see `Discovery::orgs`).
    org: Arc<str>,
    ts: (u64, u64),
    last_seen: Instant,
    alive: bool,
    /// The last alive message, as it arrived (re-shared in membership responses). Its endpoint
    /// is the member's external endpoint.
    envelope: SignedMessage,
    /// The last alive message that carried an internal endpoint (a secret), if any. A message
    /// without one (forwarded by another organization) does not make us forget it.
    internal_from: Option<SignedMessage>,
}

impl Record {
    /// The external endpoint (empty if none).
    fn endpoint(&self) -> &str {
        match self.envelope.content() {
            Some(Content::AliveMsg(alive)) => alive.membership.as_ref().map_or("", |m| m.endpoint.as_str()),
            _ => "",
        }
    }

    /// The internal endpoint (empty if never learned).
    fn internal_endpoint(&self) -> String {
        self.internal_from.as_ref().and_then(SignedMessage::internal_endpoint).unwrap_or_default()
    }

    fn info(&self, pki_id: PkiId) -> MemberInfo {
        MemberInfo {
            pki_id,
            org: self.org.to_string(),
            endpoint: self.endpoint().to_string(),
            internal_endpoint: self.internal_endpoint(),
            inc_num: self.ts.0,
            seq_num: self.ts.1,
            alive: self.alive,
        }
    }
}

/// The shared copy of an organization name, made once.
fn intern(orgs: &mut BTreeSet<Arc<str>>, org: &str) -> Arc<str> {
    if let Some(known) = orgs.get(org) {
        return known.clone();
    }
    let shared: Arc<str> = Arc::from(org);
    orgs.insert(shared.clone());
    shared
}

/// An alive-message store entry: the newest timestamp seen, and when it expires.
#[derive(Clone, Debug)]
struct Stored {
    ts: (u64, u64),
    expires: Instant,
}

#[derive(Clone, Debug)]
struct BootstrapState {
    endpoint: String,
    /// The organization the contact must be in (ours for bootstrap peers).
    org: String,
    attempts: u64,
    /// When to try next; `None` while a dial is in flight or once acknowledged.
    next_try: Option<Instant>,
    /// The nonce of the request awaiting its response, and the deadline.
    awaiting: Option<(u64, Instant)>,
    done: bool,
}

impl BootstrapState {
    /// A contact to try at `now`.
    fn new(endpoint: &str, org: &str, now: Instant) -> BootstrapState {
        BootstrapState {
            endpoint: endpoint.to_string(),
            org: org.to_string(),
            attempts: 0,
            next_try: Some(now),
            awaiting: None,
            done: false,
        }
    }
}

/// The membership state machine.
pub struct Discovery {
    config: DiscoveryConfig,
    me: SelfInfo,
    signer: Arc<dyn Signer>,
    /// The identity store: every identity a member or a handshake showed, validated.
    identities: Identities,
    rng: ChaCha20Rng,
    start: Instant,
    start_wall: SystemTime,
    inc_num: u64,
    seq_num: u64,
    members: BTreeMap<PkiId, Record>,
    /// Organization names, one shared copy each (bounded by the MSPs the identity store knows).
    orgs: BTreeSet<Arc<str>>,
    /// Who may receive a gossiped alive message, kept up to date with `members` (see [`Audience`]).
    audiences: BTreeMap<Audience, RankedSet>,
    store: BTreeMap<PkiId, Stored>,
    bootstrap: Vec<BootstrapState>,
    /// Messages waiting to be gossiped, with the peer each came from (not sent back to it).
    emitter: Vec<(SignedMessage, Option<PkiId>)>,
    emitter_deadline: Option<Instant>,
    next_alive: Instant,
    next_check: Instant,
    next_reconnect: Instant,
    next_sync: Instant,
    next_store_sweep: Instant,
    next_identity_sweep: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Identities the timers forgot, for the owner of the pull store.
    forgotten: Vec<PkiId>,
}

/// How long an identity may go unused before it is forgotten (Fabric's identity usage threshold).
const IDENTITY_USAGE_THRESHOLD: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").field("me", &self.me.pki_id).field("members", &self.members.len()).finish_non_exhaustive()
    }
}

fn newer(a: (u64, u64), b: (u64, u64)) -> bool {
    a > b
}

impl Discovery {
    /// Creates the state machine at `now`, when the wall clock reads `wall` (the incarnation
    /// number is the wall time in nanoseconds, as Fabric's `time.Now().UnixNano()`).
    pub fn new(
        config: DiscoveryConfig,
        me: SelfInfo,
        signer: Arc<dyn Signer>,
        identities: Identities,
        rng: ChaCha20Rng,
        now: Instant,
        wall: SystemTime,
    ) -> Discovery {
        let inc_num = u64::try_from(wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos()).unwrap_or(u64::MAX);
        let contact = |endpoint: &String, org: &String| BootstrapState::new(endpoint, org, now);
        let mut bootstrap: Vec<BootstrapState> = config.bootstrap.iter().map(|e| contact(e, &me.org)).collect();
        for (endpoint, org) in &config.anchors {
            if *endpoint == me.internal_endpoint || *endpoint == me.external_endpoint {
                info!(target: TARGET, func = "connect2AnchorPeers", "Anchor peer with same endpoint, skipping connecting to myself");
            } else if *org != me.org && me.external_endpoint.is_empty() {
                info!(
                    target: TARGET,
                    func = "connect2AnchorPeers",
                    "Anchor peer {endpoint} isn't in our org({}) and we have no external endpoint, skipping",
                    me.org
                );
            } else if !bootstrap.iter().any(|b| b.endpoint == *endpoint) {
                bootstrap.push(contact(endpoint, org));
            }
        }
        let sweep = config.alive_store_ttl() / 100;
        Discovery {
            next_alive: now + config.alive_time_interval,
            next_check: now + config.alive_expiration_check_interval,
            next_reconnect: now + config.reconnect_interval,
            next_sync: now + config.pull_interval,
            next_store_sweep: now + sweep.max(Duration::from_millis(1)),
            next_identity_sweep: now + IDENTITY_USAGE_THRESHOLD / 10,
            config,
            me,
            signer,
            identities,
            rng,
            start: now,
            start_wall: wall,
            inc_num,
            seq_num: 0,
            members: BTreeMap::new(),
            orgs: BTreeSet::new(),
            audiences: BTreeMap::new(),
            store: BTreeMap::new(),
            bootstrap,
            emitter: Vec::new(),
            emitter_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            forgotten: Vec::new(),
        }
    }

    /// Anchor peers learned from a channel config (Fabric's `learnAnchorPeers`, after the
    /// per-anchor checks of [`anchor_skip`]): each `(endpoint, org)` is contacted as a bootstrap
    /// peer is (membership request, retries every reconnect interval up to the maximum
    /// attempts), unless this endpoint is already being or was contacted. Fabric starts a new
    /// connect loop per config update even for known anchors; one is enough.
    pub fn learn_anchors(&mut self, now: Instant, anchors: &[(String, String)]) {
        for (endpoint, org) in anchors {
            if self.bootstrap.iter().any(|b| b.endpoint == *endpoint) {
                continue;
            }
            self.bootstrap.push(BootstrapState::new(endpoint, org, now));
        }
        self.check_invariants();
    }

    /// A joined channel's MSPs, as its newest config defines them (see
    /// [`Identities::set_channel_msps`]). A member whose identity is no longer valid (its org
    /// left every channel, its certificate was revoked) is purged at once and its connection
    /// closed (Fabric 2.2 only forgets the identity and lets the member expire; 2.5 purges it,
    /// with this line). Returns the identities forgotten.
    pub fn handle_channel_msps(&mut self, now: Instant, channel: &str, msps: impl IntoIterator<Item = Msp>) -> Vec<PkiId> {
        let wall = self.wall(now);
        let forgotten = self.identities.set_channel_msps(channel, msps, wall);
        for pki_id in forgotten.iter().copied() {
            self.purge_member(pki_id);
        }
        self.check_invariants();
        forgotten
    }

    /// Removes a member whose identity was forgotten, at once, and closes its connection.
    fn purge_member(&mut self, pki_id: PkiId) {
        let Some(record) = self.members.remove(&pki_id) else { return };
        reindex(&mut self.audiences, &self.me.org, pki_id, &record.org, Shape::of(&record), Shape::ABSENT);
        info!(target: TARGET, func = "purge", "Purging {pki_id} from membership");
        self.events.push_back(Event::Purged { pki_id });
        self.transmits.push_back(Transmit::Close { to: pki_id });
    }

    /// Identities forgotten by the timers (expired certificates) since the last call.
    pub fn take_forgotten(&mut self) -> Vec<PkiId> {
        std::mem::take(&mut self.forgotten)
    }

    /// Who this peer is (its org and endpoints).
    pub fn me(&self) -> &SelfInfo {
        &self.me
    }

    /// The wall clock at `now` (certificate validity).
    pub fn wall(&self, now: Instant) -> SystemTime {
        self.start_wall + now.saturating_duration_since(self.start)
    }

    /// The identity store.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    /// The identity store, to add what comm authenticated and the MSPs of joined channels.
    pub fn identities_mut(&mut self) -> &mut Identities {
        &mut self.identities
    }

    pub fn inc_num(&self) -> u64 {
        self.inc_num
    }

    /// The sequence number of our last alive message (read-only: Discovery's self entry).
    pub fn seq_num(&self) -> u64 {
        self.seq_num
    }

    /// Every alive member with the last alive message it sent, as it arrived (secret included),
    /// in PKI-ID order.
    pub fn alive_messages(&self) -> Vec<(PkiId, SignedMessage)> {
        self.members.iter().filter(|(_, r)| r.alive).map(|(pki_id, r)| (*pki_id, r.envelope.clone())).collect()
    }

    /// Every member we know, alive or dead, in PKI-ID order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.iter().map(|(pki_id, r)| r.info(*pki_id)).collect()
    }

    /// The alive members' PKI-IDs, in order.
    pub fn alive_pki_ids(&self) -> Vec<PkiId> {
        self.members.iter().filter(|(_, r)| r.alive).map(|(pki_id, _)| *pki_id).collect()
    }

    /// A member's external endpoint (empty if it has none); None for a stranger. Ours for
    /// ourselves.
    pub fn external_endpoint_of(&self, pki_id: &PkiId) -> Option<&str> {
        if *pki_id == self.me.pki_id {
            return Some(&self.me.external_endpoint);
        }
        self.members.get(pki_id).map(Record::endpoint)
    }

    /// Where to reach a member, as membership's own sends do ([`preferred_endpoint`]; empty for
    /// a stranger: comm then uses the connection it came on).
    pub fn endpoint_to_reach(&self, pki_id: &PkiId) -> String {
        self.members.get(pki_id).map(preferred_endpoint).unwrap_or_default()
    }

    /// A random stream of its own, seeded from this one's (for another state machine of the
    /// same peer).
    pub fn fork_rng(&mut self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        ChaCha20Rng::from_seed(seed)
    }

    /// The signer of our messages.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// One member's last known state.
    pub fn member(&self, pki_id: &PkiId) -> Option<MemberInfo> {
        self.members.get(pki_id).map(|r| r.info(*pki_id))
    }

    /// Builds our alive message (the sequence number advances every time).
    fn self_alive(&mut self, now: Instant) -> SignedMessage {
        self.seq_num += 1;
        let include_identity = now.saturating_duration_since(self.start) < self.config.publish_cert_period;
        let alive = AliveMessage {
            membership: Some(Member {
                endpoint: self.me.external_endpoint.clone(),
                metadata: Vec::new(),
                pki_id: self.me.pki_id.0.to_vec(),
            }),
            timestamp: Some(PeerTime { inc_num: self.inc_num, seq_num: self.seq_num }),
            identity: if include_identity { self.signer.serialized_identity() } else { Vec::new() },
        };
        SignedMessage::sign(empty_tag(Content::AliveMsg(alive), 0), self.signer.as_ref())
            .with_internal_endpoint(&self.me.internal_endpoint, self.signer.as_ref())
    }

    fn membership_request(&mut self, now: Instant, nonce: u64, same_org: bool) -> SignedMessage {
        let mut alive = self.self_alive(now);
        if !same_org {
            alive = alive.without_secret();
        }
        let request = MembershipRequest { self_information: Some(alive.into_envelope()), known: Vec::new() };
        SignedMessage::noop_sign(empty_tag(Content::MemReq(request), nonce))
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// A message from the authenticated peer `from`. Returns why it was rejected, if it was.
    pub fn handle_message(&mut self, now: Instant, from: PkiId, message: SignedMessage) -> Result<(), BadMessage> {
        // Requests and responses are taken apart rather than copied: a response carries every
        // member's alive message.
        let result = if matches!(message.content(), Some(Content::AliveMsg(_))) {
            self.handle_gossiped_alive(now, from, message)
        } else {
            let (_, message) = message.into_parts();
            let nonce = message.nonce;
            match message.content {
                Some(Content::MemReq(request)) => self.handle_membership_request(now, from, nonce, request),
                Some(Content::MemRes(response)) => self.handle_membership_response(now, nonce, response),
                _ => {
                    debug!(target: TARGET, func = "handleMsgFromComm", "ignoring a message that is not about membership");
                    Ok(())
                }
            }
        };
        self.check_invariants();
        result
    }

    /// The comm layer lost contact with `pki_id` (send failure): expire it now if alive. Takes
    /// `now` like every input, though expiring needs no time.
    pub fn handle_presumed_dead(&mut self, _now: Instant, pki_id: PkiId) {
        if self.members.get(&pki_id).is_some_and(|r| r.alive) {
            self.expire(pki_id);
        }
        self.check_invariants();
    }

    /// How a `Contact` transmit went. `Ok` carries the peer that answered.
    pub fn handle_dial_result(&mut self, now: Instant, endpoint: &str, result: Result<PkiId, String>) {
        let reconnect = self.config.reconnect_interval;
        let max = self.config.max_connection_attempts;
        if let Some(state) = self.bootstrap.iter_mut().find(|b| b.endpoint == endpoint && !b.done) {
            match result {
                Ok(_) => {
                    // Sent: wait for the response carrying our nonce.
                    if let Some((nonce, _)) = state.awaiting {
                        state.awaiting = Some((nonce, now + ACK_TIMEOUT));
                    }
                }
                Err(err) => {
                    warn!(
                        target: TARGET,
                        func = "connect2BootstrapPeers",
                        "Could not connect to Endpoint: {endpoint}, InternalEndpoint: {endpoint}, PKI-ID: <nil>, Metadata:  : {err}"
                    );
                    state.awaiting = None;
                    state.next_try = (state.attempts < max).then_some(now + reconnect);
                    if state.next_try.is_none() {
                        warn!(target: TARGET, func = "connect2BootstrapPeers", "Giving up on bootstrap peer {endpoint} after {max} attempts");
                    }
                }
            }
        }
        self.check_invariants();
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_alive {
            self.next_alive = now + self.config.alive_time_interval;
            if self.members.values().any(|r| r.alive) {
                let alive = self.self_alive(now);
                self.emit(now, alive, None);
            } else {
                debug!(target: TARGET, func = "periodicalSendAlive", "Empty membership, no one to send a heartbeat to");
            }
        }
        if now >= self.next_check {
            self.next_check = now + self.config.alive_expiration_check_interval;
            let expired: Vec<PkiId> = self
                .members
                .iter()
                .filter(|(_, r)| r.alive && now.saturating_duration_since(r.last_seen) > self.config.alive_expiration_timeout)
                .map(|(pki_id, _)| *pki_id)
                .collect();
            for pki_id in expired {
                let silent = now.saturating_duration_since(self.members[&pki_id].last_seen);
                warn!(target: TARGET, func = "periodicalCheckAlive", "Haven't heard from {pki_id} for {}", crate::config::format_duration(silent));
                self.expire(pki_id);
            }
            // Certificates that expired: the identity goes, and its member with it (checked
            // with the alive check; Fabric's timer fires at NotAfter itself).
            let wall = self.wall(now);
            for pki_id in self.identities.expire(wall) {
                self.purge_member(pki_id);
                self.forgotten.push(pki_id);
            }
        }
        if now >= self.next_reconnect {
            self.next_reconnect = now + self.config.reconnect_interval;
            let dead: Vec<(PkiId, String, bool)> = self
                .members
                .iter()
                .filter(|(_, r)| !r.alive)
                .map(|(pki_id, r)| (*pki_id, preferred_endpoint(r), *r.org == *self.me.org))
                .filter(|(_, endpoint, _)| !endpoint.is_empty())
                .collect();
            for (pki_id, endpoint, same_org) in dead {
                let nonce = self.rng.next_u64();
                let message = self.membership_request(now, nonce, same_org);
                self.transmits.push_back(Transmit::ProbeDead { to: pki_id, endpoint, message });
            }
        }
        if now >= self.next_sync {
            self.next_sync = now + self.config.pull_interval;
            self.initiate_sync(now);
        }
        if now >= self.next_identity_sweep {
            // Fabric's identity store: identities unused for an hour go, checked every 6 min.
            self.next_identity_sweep = now + IDENTITY_USAGE_THRESHOLD / 10;
            let wall = self.wall(now);
            for pki_id in self.identities.forget_unused(wall, IDENTITY_USAGE_THRESHOLD) {
                self.purge_member(pki_id);
                self.forgotten.push(pki_id);
            }
        }
        if now >= self.next_store_sweep {
            self.next_store_sweep = now + (self.config.alive_store_ttl() / 100).max(Duration::from_millis(1));
            self.sweep_store(now);
        }
        self.bootstrap_timers(now);
        if self.emitter_deadline.is_some_and(|deadline| now >= deadline) {
            self.flush();
        }
        self.check_invariants();
    }

    // ---- outputs ---------------------------------------------------------------------------

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let transmit = self.transmits.pop_front();
        if transmit.is_none() {
            release(&mut self.transmits);
        }
        transmit
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            release(&mut self.events);
        }
        event
    }

    /// The next time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self
            .next_alive
            .min(self.next_check)
            .min(self.next_reconnect)
            .min(self.next_sync)
            .min(self.next_store_sweep)
            .min(self.next_identity_sweep);
        if let Some(deadline) = self.emitter_deadline {
            next = next.min(deadline);
        }
        for state in &self.bootstrap {
            if let Some(at) = state.next_try {
                next = next.min(at);
            }
            if let Some((_, at)) = state.awaiting {
                next = next.min(at);
            }
        }
        next
    }

    // ---- message handling -----------------------------------------------------------------

    /// Checks an alive message's shape, identity and signatures. Returns the sender's PKI-ID and
    /// its timestamp.
    fn validate_alive(&mut self, now: Instant, message: &SignedMessage) -> Result<(PkiId, (u64, u64)), BadMessage> {
        let Some(Content::AliveMsg(alive)) = message.content() else {
            return Err(BadMessage::Unexpected("not an alive message".into()));
        };
        let member = alive.membership.as_ref().ok_or_else(|| BadMessage::Unexpected("Invalid alive message: no membership".into()))?;
        let timestamp = alive.timestamp.as_ref().ok_or_else(|| BadMessage::Unexpected("Invalid alive message: no timestamp".into()))?;
        if message.envelope().signature.is_empty() {
            return Err(BadMessage::EmptySignature);
        }
        let pki_id = PkiId::from_slice(&member.pki_id).ok_or_else(|| BadMessage::Unexpected("Invalid alive message: no PKI-ID".into()))?;
        let wall = self.wall(now);
        let identity = if alive.identity.is_empty() {
            self.identities.get(&pki_id).cloned().ok_or_else(|| BadMessage::BadIdentity(format!("Don't have certificate for {pki_id}")))?
        } else {
            self.identities.put(&member.pki_id, &alive.identity, wall)?.clone()
        };
        self.identities.verify(&identity, message)?;
        self.identities.touch(&pki_id, wall);
        Ok((pki_id, (timestamp.inc_num, timestamp.seq_num)))
    }

    /// The sender and timestamp an alive message claims, unverified. Used only to skip the
    /// signature check of messages that could not change anything (we already hold the same or
    /// a newer one from that peer): most alive messages a peer receives are such repeats, and
    /// ECDSA verification is most of gossip's CPU. Anything that is acted on is verified.
    fn claimed(&self, message: &SignedMessage) -> Option<(PkiId, (u64, u64))> {
        let Some(Content::AliveMsg(alive)) = message.content() else { return None };
        let pki_id = PkiId::from_slice(&alive.membership.as_ref()?.pki_id)?;
        let timestamp = alive.timestamp.as_ref()?;
        (pki_id != self.me.pki_id).then_some((pki_id, (timestamp.inc_num, timestamp.seq_num)))
    }

    /// Whether an alive message is a repeat that cannot change our state (see [`Self::claimed`]).
    fn is_known_repeat(&self, message: &SignedMessage) -> bool {
        self.claimed(message).is_some_and(|(pki_id, ts)| self.is_stale(&pki_id, ts))
    }

    /// Whether the store already has this or a newer message from the peer.
    fn is_stale(&self, pki_id: &PkiId, ts: (u64, u64)) -> bool {
        self.store.get(pki_id).is_some_and(|stored| !newer(ts, stored.ts)) || self.members.get(pki_id).is_some_and(|r| !newer(ts, r.ts))
    }

    fn handle_gossiped_alive(&mut self, now: Instant, from: PkiId, message: SignedMessage) -> Result<(), BadMessage> {
        if self.is_known_repeat(&message) {
            return Err(BadMessage::Stale);
        }
        let (pki_id, ts) = self.validate_alive(now, &message)?;
        if pki_id == self.me.pki_id {
            self.check_self_alive(&message);
            return Ok(());
        }
        if self.store.get(&pki_id).is_some_and(|stored| !newer(ts, stored.ts)) {
            return Err(BadMessage::Stale);
        }
        let expires = now + self.config.alive_store_ttl();
        self.store.insert(pki_id, Stored { ts, expires });
        self.apply_alive(now, pki_id, ts, &message);
        self.emit(now, message, Some(from));
        Ok(())
    }

    fn check_self_alive(&self, message: &SignedMessage) {
        let endpoint = alive_endpoint(message);
        let internal = message.internal_endpoint().unwrap_or_default();
        if endpoint != self.me.external_endpoint || (!internal.is_empty() && internal != self.me.internal_endpoint) {
            tracing::error!(
                target: TARGET,
                func = "handleAliveMessage",
                "Bad configuration detected: Received AliveMessage from a peer with the same PKI-ID as myself: endpoint {endpoint}, internal endpoint {internal}"
            );
        }
    }

    /// Learns, updates or resurrects a member from a validated alive message.
    fn apply_alive(&mut self, now: Instant, pki_id: PkiId, ts: (u64, u64), message: &SignedMessage) {
        let endpoint = alive_endpoint(message);
        match self.members.get_mut(&pki_id) {
            None => {
                let org = { intern(&mut self.orgs, self.identities.org_of(&pki_id).unwrap_or_default()) };
                reindex(
                    &mut self.audiences,
                    &self.me.org,
                    pki_id,
                    &org,
                    Shape::ABSENT,
                    Shape { alive: true, has_endpoint: !endpoint.is_empty() },
                );
                let internal_endpoint = message.internal_endpoint();
                let internal_from = internal_endpoint.is_some().then(|| message.clone());
                let internal_endpoint = internal_endpoint.unwrap_or_default();
                info!(
                    target: TARGET,
                    func = "learnNewMembers",
                    "Learned about a new alive member: Endpoint: {endpoint}, InternalEndpoint: {internal_endpoint}, PKI-ID: {pki_id}"
                );
                self.events.push_back(Event::Learned { pki_id, endpoint, internal_endpoint, alive: true });
                self.members.insert(pki_id, Record { org, ts, last_seen: now, alive: true, envelope: message.clone(), internal_from });
            }
            Some(record) if newer(ts, record.ts) => {
                assert!(newer(ts, record.ts), "membership timestamps only move forward");
                let endpoints_before = (record.endpoint().to_string(), record.internal_endpoint());
                if message.internal_endpoint().is_some() {
                    record.internal_from = Some(message.clone());
                }
                let before = Shape::of(record);
                let after = Shape { alive: true, has_endpoint: !endpoint.is_empty() };
                if before != after {
                    reindex(&mut self.audiences, &self.me.org, pki_id, &record.org, before, after);
                }
                record.ts = ts;
                record.last_seen = now;
                record.envelope = message.clone();
                let moved = endpoints_before != (record.endpoint().to_string(), record.internal_endpoint());
                if !record.alive {
                    record.alive = true;
                    info!(target: TARGET, func = "resurrectMember", "Member {pki_id} is alive again (incarnation {})", ts.0);
                    self.events.push_back(Event::Resurrected { pki_id });
                } else if moved {
                    self.events.push_back(Event::Moved { pki_id });
                }
            }
            Some(_) => {}
        }
    }

    fn expire(&mut self, pki_id: PkiId) {
        if let Some(record) = self.members.get_mut(&pki_id) {
            let before = Shape::of(record);
            reindex(&mut self.audiences, &self.me.org, pki_id, &record.org, before, Shape { alive: false, ..before });
            record.alive = false;
            warn!(target: TARGET, func = "expireDeadMembers", "Entering [{pki_id}]");
            warn!(
                target: TARGET,
                func = "expireDeadMembers",
                "Closing connection to Endpoint: {}, InternalEndpoint: {}, PKI-ID: {pki_id}",
                record.endpoint(),
                record.internal_endpoint()
            );
            warn!(target: TARGET, func = "expireDeadMembers", "Exiting");
            self.events.push_back(Event::Dead { pki_id });
            self.transmits.push_back(Transmit::Close { to: pki_id });
        }
    }

    fn handle_membership_request(&mut self, now: Instant, from: PkiId, nonce: u64, request: MembershipRequest) -> Result<(), BadMessage> {
        let Some(envelope) = request.self_information else {
            warn!(target: TARGET, func = "handleMsgFromComm", "Got membership request with invalid selfInfo");
            return Err(BadMessage::Unexpected("membership request without selfInfo".into()));
        };
        let self_info = SignedMessage::from_envelope(envelope)?;
        let (pki_id, ts) = self.validate_alive(now, &self_info)?;
        if pki_id != from {
            warn!(target: TARGET, func = "handleMsgFromComm", "Got membership request with selfInfo that doesn't match the handshake");
            return Err(BadMessage::Unexpected("Got membership request with selfInfo that doesn't match the handshake".into()));
        }
        if pki_id == self.me.pki_id {
            return Ok(());
        }
        if !self.is_stale(&pki_id, ts) {
            self.apply_alive(now, pki_id, ts, &self_info);
        }
        let requester_org = self.identities.org_of(&from).map(str::to_string);
        let requester_endpoint = alive_endpoint(&self_info);
        let Some(requester_org) = requester_org else {
            warn!(target: TARGET, func = "createMembershipResponse", "Cannot determine organization of {from}");
            return Ok(());
        };
        let our_org = self.me.org.clone();
        let same_org = requester_org == our_org;
        if !disclosed(&our_org, !self.me.external_endpoint.is_empty(), &requester_org, !requester_endpoint.is_empty(), &our_org) {
            warn!(
                target: TARGET,
                func = "handleMsgFromComm",
                "Got a membership request from a peer that shouldn't have sent one: {from}, closing connection to the peer as a result."
            );
            self.transmits.push_back(Transmit::Close { to: from });
            return Ok(());
        }
        let filter = |record: &Record| {
            disclosed(&record.org, !record.endpoint().is_empty(), &requester_org, !requester_endpoint.is_empty(), &our_org)
        };
        let strip =
            |message: &SignedMessage| if same_org { message.envelope().clone() } else { message.without_secret().envelope().clone() };
        let mut alive_list: Vec<Envelope> = Vec::new();
        let mut dead_list: Vec<Envelope> = Vec::new();
        for (member, record) in &self.members {
            if *member == from || !filter(record) {
                continue;
            }
            if record.alive {
                alive_list.push(strip(&record.envelope));
            } else {
                dead_list.push(strip(&record.envelope));
            }
        }
        let own = self.self_alive(now);
        alive_list.push(strip(&own));
        let response = MembershipResponse { alive: alive_list, dead: dead_list };
        let endpoint = self.members.get(&from).map(preferred_endpoint).unwrap_or_default();
        let message = SignedMessage::noop_sign(empty_tag(Content::MemRes(response), nonce));
        self.transmits.push_back(Transmit::Send { to: from, endpoint, message });
        Ok(())
    }

    fn handle_membership_response(&mut self, now: Instant, nonce: u64, response: MembershipResponse) -> Result<(), BadMessage> {
        for state in &mut self.bootstrap {
            if state.awaiting.is_some_and(|(expected, _)| expected == nonce) {
                state.awaiting = None;
                state.done = true;
                state.next_try = None;
            }
        }
        let mut first_error = None;
        for envelope in response.alive {
            let result = SignedMessage::from_envelope(envelope).and_then(|message| {
                if !matches!(message.content(), Some(Content::AliveMsg(_))) {
                    return Err(BadMessage::Unexpected("membership response carries a message that isn't an AliveMessage".into()));
                }
                if self.is_known_repeat(&message) {
                    return Ok(());
                }
                let (pki_id, ts) = self.validate_alive(now, &message)?;
                if pki_id != self.me.pki_id && !self.is_stale(&pki_id, ts) {
                    self.apply_alive(now, pki_id, ts, &message);
                }
                Ok(())
            });
            if let Err(err) = result {
                warn!(target: TARGET, func = "handleMsgFromComm", "Bad alive message in a membership response: {err}");
                first_error.get_or_insert(err);
            }
        }
        for envelope in response.dead {
            let result = SignedMessage::from_envelope(envelope).and_then(|message| {
                // Only unknown peers are learned from the dead list; skip checking the others.
                if self.claimed(&message).is_some_and(|(pki_id, _)| self.members.contains_key(&pki_id)) {
                    return Ok(());
                }
                let (pki_id, ts) = self.validate_alive(now, &message)?;
                if pki_id != self.me.pki_id && !self.members.contains_key(&pki_id) {
                    // Learned dead: in no audience.
                    let endpoint = alive_endpoint(&message);
                    let internal_endpoint = message.internal_endpoint();
                    let internal_from = internal_endpoint.is_some().then(|| message.clone());
                    let org = { intern(&mut self.orgs, self.identities.org_of(&pki_id).unwrap_or_default()) };
                    self.events.push_back(Event::Learned {
                        pki_id,
                        endpoint,
                        internal_endpoint: internal_endpoint.unwrap_or_default(),
                        alive: false,
                    });
                    self.members.insert(pki_id, Record { org, ts, last_seen: now, alive: false, envelope: message, internal_from });
                }
                Ok(())
            });
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    // ---- timers ----------------------------------------------------------------------------

    fn bootstrap_timers(&mut self, now: Instant) {
        let reconnect = self.config.reconnect_interval;
        let max = self.config.max_connection_attempts;
        for i in 0..self.bootstrap.len() {
            let state = &mut self.bootstrap[i];
            if state.done {
                continue;
            }
            if let Some((_, deadline)) = state.awaiting
                && now >= deadline
            {
                // No response in time: try again after the reconnect interval.
                state.awaiting = None;
                state.next_try = (state.attempts < max).then_some(now + reconnect);
            }
            if state.next_try.is_some_and(|at| now >= at) {
                state.attempts += 1;
                state.next_try = None;
                let nonce = self.rng.next_u64();
                // The internal endpoint (the secret) goes only to contacts in our organization.
                let endpoint = self.bootstrap[i].endpoint.clone();
                let org = self.bootstrap[i].org.clone();
                self.bootstrap[i].awaiting = Some((nonce, now + reconnect));
                let message = self.membership_request(now, nonce, org == self.me.org);
                self.transmits.push_back(Transmit::Contact { endpoint, org, message });
            }
        }
    }

    /// Sends membership requests to a few random alive members.
    fn initiate_sync(&mut self, now: Instant) {
        let alive: Vec<PkiId> = self.members.iter().filter(|(_, r)| r.alive).map(|(pki_id, _)| *pki_id).collect();
        let count = self.config.pull_peer_num.min(alive.len());
        for to in self.random_subset(alive, count) {
            let record = &self.members[&to];
            let same_org = *record.org == *self.me.org;
            // Our alive message must be disclosable to the target.
            if !same_org && (self.me.external_endpoint.is_empty() || record.endpoint().is_empty()) {
                continue;
            }
            let endpoint = preferred_endpoint(record);
            let nonce = self.rng.next_u64();
            let message = self.membership_request(now, nonce, same_org);
            self.transmits.push_back(Transmit::Send { to, endpoint, message });
        }
    }

    /// Purges members whose alive messages expired from the store (except bootstrap peers).
    fn sweep_store(&mut self, now: Instant) {
        let ttl = self.config.alive_store_ttl();
        let expired: Vec<PkiId> = self.store.iter().filter(|(_, s)| now >= s.expires).map(|(p, _)| *p).collect();
        for pki_id in expired {
            let keep = self.members.get(&pki_id).is_some_and(|r| {
                let internal = r.internal_endpoint();
                self.bootstrap.iter().any(|b| b.endpoint == r.endpoint() || b.endpoint == internal)
            });
            if keep {
                debug!(target: TARGET, func = "purge", "Do not remove bootstrap or anchor peer endpoint {pki_id} from membership");
                continue;
            }
            if let Some(record) = self.members.remove(&pki_id) {
                reindex(&mut self.audiences, &self.me.org, pki_id, &record.org, Shape::of(&record), Shape::ABSENT);
                info!(
                    target: TARGET,
                    func = "purge",
                    "Removing member: Endpoint: {}, InternalEndpoint: {}, PKIID: {pki_id}",
                    record.endpoint(),
                    record.internal_endpoint()
                );
                self.events.push_back(Event::Purged { pki_id });
                self.identities.forget(&pki_id);
            }
            // Keep the entry as a tombstone until twice the TTL so stale copies stay rejected.
            if let Some(stored) = self.store.get_mut(&pki_id) {
                if now >= stored.expires + ttl {
                    self.store.remove(&pki_id);
                } else {
                    stored.expires = stored.expires.max(now);
                }
            }
        }
        self.store.retain(|_, s| now < s.expires + ttl);
    }

    // ---- dissemination ---------------------------------------------------------------------

    /// Queues a message for gossip; flushed at the burst size or after the burst latency.
    fn emit(&mut self, now: Instant, message: SignedMessage, from: Option<PkiId>) {
        self.emitter.push((message, from));
        if self.emitter.len() >= self.config.max_propagation_burst_size {
            self.flush();
        } else if self.emitter_deadline.is_none() {
            self.emitter_deadline = Some(now + self.config.max_propagation_burst_latency);
        }
    }

    fn flush(&mut self) {
        self.emitter_deadline = None;
        let batch = std::mem::take(&mut self.emitter);
        for (message, from) in batch {
            for _ in 0..self.config.propagate_iterations {
                self.gossip_one(&message, from);
            }
        }
    }

    /// Picks up to propagatePeerNum recipients by Fabric's routing rules and sends to them.
    ///
    /// The candidates are the message's [`Audience`] (alive members in PKI-ID order) without the
    /// peer it came from and its origin; the recipients are a Fisher–Yates prefix of them, drawn
    /// exactly as [`Self::random_subset`] draws it, but touching only the positions it swaps: the
    /// audience is kept as it changes, so this costs O(√members) instead of a scan of every member.
    fn gossip_one(&mut self, message: &SignedMessage, from: Option<PkiId>) {
        let Some(Content::AliveMsg(alive)) = message.content() else { return };
        let Some(origin) = alive.membership.as_ref().and_then(|m| PkiId::from_slice(&m.pki_id)) else { return };
        let origin_endpoint_empty = alive.membership.as_ref().is_none_or(|m| m.endpoint.is_empty());
        let origin_org =
            if origin == self.me.pki_id { Some(self.me.org.clone()) } else { self.identities.org_of(&origin).map(str::to_string) };
        let Some(origin_org) = origin_org else { return };
        let our_org = self.me.org.clone();
        let audience = match (origin_org == our_org, origin_endpoint_empty) {
            // Org-restricted: an alive message of ours without an external endpoint stays home.
            (true, true) => Audience::OwnOrg,
            (true, false) => Audience::All,
            // Never forward a foreign org's alive message to a peer without an external endpoint,
            // nor to a third organization.
            (false, _) => Audience::Foreign(origin_org),
        };
        if !self.audiences.contains_key(&audience) {
            let mut set = RankedSet::default();
            for (pki_id, record) in &self.members {
                if audience.admits(&our_org, &record.org, Shape::of(record)) {
                    set.insert(*pki_id);
                }
            }
            self.audiences.insert(audience.clone(), set);
        }
        let set = &self.audiences[&audience];
        let mut excluded: Vec<usize> = [from, Some(origin)].into_iter().flatten().filter_map(|pki_id| set.rank(&pki_id)).collect();
        excluded.sort_unstable();
        excluded.dedup();
        let candidates = set.len() - excluded.len();
        let count = self.config.propagate_peer_num.min(candidates);
        let positions = self.random_positions(candidates, count);
        let set = &self.audiences[&audience];
        let recipients: Vec<PkiId> = positions
            .into_iter()
            .map(|position| {
                // The position among the candidates → the index in the audience, past the excluded.
                let mut index = position;
                for skipped in &excluded {
                    if index >= *skipped {
                        index += 1;
                    }
                }
                set.nth(index).expect("a candidate position is inside the audience")
            })
            .collect();
        for to in recipients {
            let record = &self.members[&to];
            let out = if *record.org == *our_org { message.clone() } else { message.without_secret() };
            let endpoint = preferred_endpoint(record);
            self.transmits.push_back(Transmit::Send { to, endpoint, message: out });
        }
    }

    /// The positions [`Self::random_subset`] would pick from `n` elements (the same draws, the same
    /// order), without the elements: a Fisher–Yates prefix that records only the swapped positions.
    fn random_positions(&mut self, n: usize, count: usize) -> Vec<usize> {
        // (position, the original position now there); at most 2·count entries.
        let mut moved: Vec<(usize, usize)> = Vec::new();
        let at =
            |moved: &Vec<(usize, usize)>, position: usize| moved.iter().rev().find(|(p, _)| *p == position).map_or(position, |(_, v)| *v);
        for i in 0..count.min(n) {
            let j = i + (self.rng.next_u64() % (n - i) as u64) as usize;
            let (vi, vj) = (at(&moved, i), at(&moved, j));
            moved.push((i, vj));
            moved.push((j, vi));
        }
        (0..count.min(n)).map(|i| at(&moved, i)).collect()
    }

    /// `count` members of `from`, uniformly at random (a seeded Fisher–Yates prefix).
    fn random_subset(&mut self, mut from: Vec<PkiId>, count: usize) -> Vec<PkiId> {
        let n = from.len();
        for i in 0..count.min(n) {
            let j = i + (self.rng.next_u64() % (n - i) as u64) as usize;
            from.swap(i, j);
        }
        from.truncate(count);
        from
    }

    /// Always true between calls; checked after every input (public so harnesses such as the
    /// `gossip_stream` fuzz target can check it between steps too).
    pub fn check_invariants(&self) {
        assert!(!self.members.contains_key(&self.me.pki_id), "we are never a member of our own view");
        #[cfg(debug_assertions)]
        for (audience, set) in &self.audiences {
            let expected: Vec<PkiId> =
                self.members.iter().filter(|(_, r)| audience.admits(&self.me.org, &r.org, Shape::of(r))).map(|(p, _)| *p).collect();
            assert_eq!(set.to_vec(), expected, "the audience {audience:?} follows the membership");
        }
        debug_assert!(self.transmits.iter().all(|t| match t {
            Transmit::Send { to, .. } | Transmit::ProbeDead { to, .. } | Transmit::Close { to } => *to != self.me.pki_id,
            Transmit::Contact { .. } => true,
        }));
    }
}

/// Capacity an output queue keeps once drained.
const QUEUE_KEEP: usize = 64;

/// Gives back a drained queue's memory beyond [`QUEUE_KEEP`]: a burst (a membership response
/// teaching thousands of members at once) must not keep its buffer for the peer's lifetime.
fn release<T>(queue: &mut VecDeque<T>) {
    if queue.capacity() > QUEUE_KEEP {
        queue.shrink_to(QUEUE_KEEP);
    }
}

/// The external endpoint an alive message announces (empty if none).
fn alive_endpoint(message: &SignedMessage) -> String {
    match message.content() {
        Some(Content::AliveMsg(alive)) => alive.membership.as_ref().map(|m| m.endpoint.clone()).unwrap_or_default(),
        _ => String::new(),
    }
}

/// What decides a member's audiences besides its organization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shape {
    alive: bool,
    has_endpoint: bool,
}

impl Shape {
    /// Not a member: in no audience.
    const ABSENT: Shape = Shape { alive: false, has_endpoint: false };

    fn of(record: &Record) -> Shape {
        Shape { alive: record.alive, has_endpoint: !record.endpoint().is_empty() }
    }
}

/// The members an alive message may be gossiped to, by Fabric's routing rules, before excluding
/// the peer it came from and its origin. Each is kept as a [`RankedSet`] of alive members.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Audience {
    /// Every alive member: an alive message of our organization with an external endpoint.
    All,
    /// Alive members of our organization: one of ours without an external endpoint.
    OwnOrg,
    /// Alive members of that organization and those of ours with an external endpoint: an alive
    /// message from another organization.
    Foreign(String),
}

impl Audience {
    fn admits(&self, our_org: &str, org: &str, shape: Shape) -> bool {
        shape.alive
            && match self {
                Audience::All => true,
                Audience::OwnOrg => org == our_org,
                Audience::Foreign(origin_org) => org == origin_org || (org == our_org && shape.has_endpoint),
            }
    }
}

/// Moves a member between audiences as its shape changes (`Shape::ABSENT`: joining or leaving).
fn reindex(audiences: &mut BTreeMap<Audience, RankedSet>, our_org: &str, pki_id: PkiId, org: &str, before: Shape, after: Shape) {
    for (audience, set) in audiences.iter_mut() {
        match (audience.admits(our_org, org, before), audience.admits(our_org, org, after)) {
            (false, true) => {
                set.insert(pki_id);
            }
            (true, false) => {
                set.remove(&pki_id);
            }
            _ => {}
        }
    }
}

/// A sorted set of PKI-IDs with rank and position lookups: sorted blocks of `RANKED_BLOCK` to
/// `2 * RANKED_BLOCK` entries (fewer only when entries are removed), so inserting, removing, [`Self::rank`] and [`Self::nth`] cost
/// O(log n + n / RANKED_BLOCK + RANKED_BLOCK) instead of O(n).
#[derive(Clone, Debug, Default)]
struct RankedSet {
    blocks: Vec<Vec<PkiId>>,
    len: usize,
}

const RANKED_BLOCK: usize = 64;

impl RankedSet {
    fn len(&self) -> usize {
        self.len
    }

    /// The block that holds `pki_id` or would: the first whose last entry is not below it (the
    /// last block for entries above all).
    fn block_of(&self, pki_id: &PkiId) -> usize {
        self.blocks.partition_point(|b| b.last().is_some_and(|last| last < pki_id)).min(self.blocks.len().saturating_sub(1))
    }

    fn insert(&mut self, pki_id: PkiId) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![pki_id]);
            self.len = 1;
            return true;
        }
        let mut b = self.block_of(&pki_id);
        if self.blocks[b].binary_search(&pki_id).is_ok() {
            return false;
        }
        // Split a full block before inserting, so no block outgrows 2 * RANKED_BLOCK entries
        // (nor its allocation: a Vec that grew past it would double and keep the room).
        if self.blocks[b].len() >= 2 * RANKED_BLOCK {
            let upper = self.blocks[b].split_off(RANKED_BLOCK);
            self.blocks.insert(b + 1, upper);
            if self.blocks[b].last().is_some_and(|last| *last < pki_id) {
                b += 1;
            }
        }
        let block = &mut self.blocks[b];
        let Err(at) = block.binary_search(&pki_id) else { return false };
        block.insert(at, pki_id);
        self.len += 1;
        true
    }

    fn remove(&mut self, pki_id: &PkiId) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let b = self.block_of(pki_id);
        let Ok(at) = self.blocks[b].binary_search(pki_id) else { return false };
        self.blocks[b].remove(at);
        if self.blocks[b].is_empty() {
            self.blocks.remove(b);
        }
        self.len -= 1;
        true
    }

    /// The position of `pki_id` in the set, if it is in it.
    fn rank(&self, pki_id: &PkiId) -> Option<usize> {
        if self.blocks.is_empty() {
            return None;
        }
        let b = self.block_of(pki_id);
        let at = self.blocks[b].binary_search(pki_id).ok()?;
        Some(self.blocks[..b].iter().map(Vec::len).sum::<usize>() + at)
    }

    /// The entry at `position`.
    fn nth(&self, mut position: usize) -> Option<PkiId> {
        for block in &self.blocks {
            if position < block.len() {
                return Some(block[position]);
            }
            position -= block.len();
        }
        None
    }

    #[cfg(debug_assertions)]
    fn to_vec(&self) -> Vec<PkiId> {
        self.blocks.iter().flatten().copied().collect()
    }
}

/// The endpoint to dial for a member: its internal endpoint when known (same org), else its
/// external endpoint.
fn preferred_endpoint(record: &Record) -> String {
    let internal = record.internal_endpoint();
    if internal.is_empty() { record.endpoint().to_string() } else { internal }
}

/// Fabric's disclosure policy (spec §5.6): may a message from `message_org` (with or without an
/// external endpoint) be shown to a requester from `requester_org`?
pub fn disclosed(message_org: &str, message_has_endpoint: bool, requester_org: &str, requester_has_endpoint: bool, our_org: &str) -> bool {
    // Same org as the requester: always. Our own org's message to another org: only when both the
    // message and the requester have external endpoints. A third org's message: never.
    message_org == requester_org || (message_org == our_org && message_has_endpoint && requester_has_endpoint)
}

/// Bootstrap endpoints without ourselves: `127.0.0.1:<port>`, `localhost:<port>` (port of our
/// internal endpoint), our internal and our external endpoint are skipped.
/// Why an anchor peer of a channel config is not contacted (Fabric's checks, first match), as
/// the log line Fabric writes for it, with its level; `None`: contact it. `host`/`port` come
/// from the config unvalidated.
pub fn anchor_skip(me: &SelfInfo, channel: &str, anchor_org: &str, host: &str, port: u16) -> Option<(tracing::Level, String)> {
    let shown = format!("{{{host} {port}}}");
    if host.is_empty() {
        return Some((
            tracing::Level::WARN,
            format!("Got empty hostname for channel {channel}, skipping connecting to anchor peer {shown}"),
        ));
    }
    if port == 0 {
        return Some((
            tracing::Level::WARN,
            format!("Got invalid port (0) for channel {channel}, skipping connecting to anchor peer {shown}"),
        ));
    }
    let endpoint = crate::config::HostPort::new(host, port).to_string();
    if endpoint == me.external_endpoint || endpoint == me.internal_endpoint {
        return Some((
            tracing::Level::INFO,
            format!("Anchor peer for channel {channel} with same endpoint, skipping connecting to myself"),
        ));
    }
    if anchor_org != me.org && me.external_endpoint.is_empty() {
        return Some((
            tracing::Level::INFO,
            format!("Anchor peer {host}:{port} isn't in our org({}) and we have no external endpoint, skipping", me.org),
        ));
    }
    None
}

pub fn bootstrap_without_self(bootstrap: &[String], internal: &str, external: &str) -> Vec<String> {
    let port = internal.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    let selves: BTreeSet<String> = [format!("127.0.0.1:{port}"), format!("localhost:{port}"), internal.to_string(), external.to_string()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    bootstrap.iter().filter(|b| !selves.contains(*b)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(external: &str) -> SelfInfo {
        SelfInfo {
            pki_id: PkiId([7; 32]),
            org: "Org1MSP".into(),
            external_endpoint: external.into(),
            internal_endpoint: "10.0.0.1:7051".into(),
        }
    }

    #[test]
    fn anchor_peers_are_skipped_by_fabrics_rules_in_order() {
        let me = me("peer0.org1:7051");
        let skip =
            |org: &str, host: &str, port: u16| anchor_skip(&me, "ch", org, host, port).map(|(level, line)| (level.to_string(), line));
        assert_eq!(
            skip("Org2MSP", "", 0),
            Some(("WARN".into(), "Got empty hostname for channel ch, skipping connecting to anchor peer { 0}".into()))
        );
        assert_eq!(
            skip("Org2MSP", "h", 0),
            Some(("WARN".into(), "Got invalid port (0) for channel ch, skipping connecting to anchor peer {h 0}".into()))
        );
        let myself = Some(("INFO".into(), "Anchor peer for channel ch with same endpoint, skipping connecting to myself".into()));
        assert_eq!(skip("Org1MSP", "peer0.org1", 7051), myself);
        assert_eq!(skip("Org1MSP", "10.0.0.1", 7051), myself);
        assert_eq!(skip("Org2MSP", "peer0.org2", 9051), None);
        assert_eq!(skip("Org1MSP", "peer1.org1", 8051), None);
        let hidden = super::tests::me("");
        assert_eq!(
            anchor_skip(&hidden, "ch", "Org2MSP", "peer0.org2", 9051).map(|(_, line)| line),
            Some("Anchor peer peer0.org2:9051 isn't in our org(Org1MSP) and we have no external endpoint, skipping".into())
        );
        assert_eq!(anchor_skip(&hidden, "ch", "Org1MSP", "peer1.org1", 8051), None, "same-org anchors need no external endpoint");
    }
}
