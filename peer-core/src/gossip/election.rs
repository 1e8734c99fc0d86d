//! Dynamic org-leader election for one channel (`peer.gossip.useLeaderElection`), as a sans-IO
//! state machine. Fabric: `gossip/election/election.go`; the algorithm and its timings are
//! Fabric's, so a peer-core peer and a Fabric peer of the same org elect one leader together.
//!
//! The algorithm (IDs are PKI-IDs, compared as bytes; the smallest wins):
//! 1. **Stabilize.** After joining, sample the org's view of the channel every
//!    `membershipSampleInterval` until it stops growing between two samples, a leader declares
//!    itself, or `startupGracePeriod` passes.
//! 2. **Elect** (when no leader is known and this peer is not yielding): gossip a *proposal*,
//!    wait `leaderElectionDuration` (cut short by a declaration). If nobody declared and no
//!    proposal came from a smaller ID, become leader.
//! 3. **Lead:** gossip a *declaration*, wait `leaderAliveThreshold / 2` (cut short by any
//!    declaration), repeat. A declaration from a smaller ID makes this peer step down.
//!    **Follow:** forget proposals and the known leader, wait `leaderAliveThreshold`; if no
//!    declaration arrived meanwhile, elect again.
//! 4. **Yield:** a leader whose deliver client gave up on the ordering service steps down and
//!    stays out of elections for `6 × leaderAliveThreshold` (or until another leader declares).
//!
//! Messages count only from peers in the view (alive, same org, in the channel); the caller
//! checks signatures and drops stale ones before [`Election::handle_message`]. As in Fabric, a
//! peer is in the view only once its StateInfo for the channel arrived, so peers of an org
//! that join at the same moment can see an empty, "stable" view, all elect themselves, and
//! settle on the smallest ID at the first declarations (milliseconds later in the simulator):
//! a short overlap in which two peers pull the same blocks, which is harmless.
//!
//! Call order: `handle_*` with the current `now`, then drain [`Election::poll_action`]; sleep
//! until [`Election::poll_timeout`] and call [`Election::handle_timeout`].

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use tracing::{debug, info};

use crate::env::Instant;
use crate::msp::identity::PkiId;

/// Fabric's `gossip.election` logger.
pub const GOSSIP_ELECTION: &str = "gossip.election";

/// How long a yielding leader stays out of elections, in units of `leaderAliveThreshold`.
const YIELD_THRESHOLDS: u32 = 6;

/// `peer.gossip.election.*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    pub startup_grace_period: Duration,
    pub membership_sample_interval: Duration,
    pub leader_alive_threshold: Duration,
    pub leader_election_duration: Duration,
}

impl From<&crate::config::ElectionConfig> for ElectionConfig {
    fn from(config: &crate::config::ElectionConfig) -> ElectionConfig {
        ElectionConfig {
            startup_grace_period: config.startup_grace_period,
            membership_sample_interval: config.membership_sample_interval,
            leader_alive_threshold: config.leader_alive_threshold,
            leader_election_duration: config.leader_election_duration,
        }
    }
}

/// What the caller must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Gossip a LeadershipMessage to the org's peers in the channel: a declaration ("I am the
    /// leader") or a proposal ("I would be").
    Gossip { declaration: bool },
    /// This peer became leader (`true`: start pulling from the ordering service) or stepped
    /// down (`false`: stop).
    Leadership(bool),
}

/// Where the election loop waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the view to settle; `view` is the size at the last sample.
    Stabilizing { until: Instant, next_sample: Instant, view: usize },
    /// Proposed; deciding at `until` unless a declaration comes first.
    Electing { until: Instant },
    /// Declared; declaring again at `until` (or at the next declaration heard).
    Leading { until: Instant },
    /// Waiting `leaderAliveThreshold` for the leader's declarations.
    Following { until: Instant },
}

/// The election of one channel. See the module docs.
#[derive(Debug)]
pub struct Election {
    me: PkiId,
    config: ElectionConfig,
    phase: Phase,
    is_leader: bool,
    /// A declaration was heard (or this peer became leader) since the loop last reset it.
    leader_exists: bool,
    /// Smaller-or-larger IDs that proposed during the current follow/elect round.
    proposals: BTreeSet<PkiId>,
    /// Until when this peer stays out of elections after yielding.
    yielding_until: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Election {
    /// Starts stabilizing at `now` with `view` peers of the org in the channel.
    pub fn new(me: PkiId, config: ElectionConfig, now: Instant, view: usize) -> Election {
        let phase =
            Phase::Stabilizing { until: now + config.startup_grace_period, next_sample: now + config.membership_sample_interval, view };
        Election {
            me,
            config,
            phase,
            is_leader: false,
            leader_exists: false,
            proposals: BTreeSet::new(),
            yielding_until: None,
            actions: VecDeque::new(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_timeout(&self) -> Instant {
        match self.phase {
            Phase::Stabilizing { next_sample, .. } => next_sample,
            Phase::Electing { until } | Phase::Leading { until } | Phase::Following { until } => until,
        }
    }

    /// A LeadershipMessage from `sender`, who is in the view (the caller checked it and its
    /// signature). A declaration cuts short an election or a leader's wait, and a smaller ID's
    /// declaration makes this peer step down.
    pub fn handle_message(&mut self, now: Instant, sender: PkiId, declaration: bool) {
        if !declaration {
            debug!(target: GOSSIP_ELECTION, func = "handleMessage", "{}: {sender} sent us proposal", self.me);
            self.proposals.insert(sender);
            self.check_invariants();
            return;
        }
        debug!(target: GOSSIP_ELECTION, func = "handleMessage", "{}: {sender} sent us declaration", self.me);
        self.leader_exists = true;
        if sender < self.me && self.is_leader {
            self.stop_being_leader();
        }
        match self.phase {
            Phase::Electing { .. } => self.decide(now),
            Phase::Leading { .. } => self.run(now),
            // A declaration during stabilization ends it at the next sample (Fabric checks
            // `leaderExists` there); a follower just notes it.
            Phase::Stabilizing { .. } | Phase::Following { .. } => {}
        }
        self.check_invariants();
    }

    /// The timer [`Self::poll_timeout`] named has fired. `view` is the number of the org's peers
    /// in the channel now (only stabilization samples it).
    pub fn handle_timeout(&mut self, now: Instant, view: usize) {
        if now < self.poll_timeout() {
            return;
        }
        match self.phase {
            Phase::Stabilizing { until, view: before, .. } => {
                if view == before || now >= until || self.leader_exists {
                    debug!(target: GOSSIP_ELECTION, func = "waitForMembershipStabilization", "{}: Exiting, peers found {view}", self.me);
                    self.run(now);
                } else {
                    self.phase = Phase::Stabilizing { until, next_sample: now + self.config.membership_sample_interval, view };
                }
            }
            Phase::Electing { .. } => self.decide(now),
            Phase::Leading { .. } | Phase::Following { .. } => self.run(now),
        }
        self.check_invariants();
    }

    /// The deliver client gave up on the ordering service: step down and stay out of elections
    /// for a while so another peer of the org can try (Fabric's `Yield`). Only a leader yields.
    pub fn handle_yield(&mut self, now: Instant) {
        if !self.is_leader || self.is_yielding(now) {
            return;
        }
        self.yielding_until = Some(now + self.config.leader_alive_threshold * YIELD_THRESHOLDS);
        self.stop_being_leader();
        self.leader_exists = false;
        // Fabric's leader loop notices at its next wake-up; stepping down right away is the
        // same decision without the wait.
        if let Phase::Leading { .. } = self.phase {
            self.run(now);
        }
        self.check_invariants();
    }

    fn is_yielding(&self, now: Instant) -> bool {
        self.yielding_until.is_some_and(|until| now < until)
    }

    /// One turn of Fabric's `run` loop, up to its next wait.
    fn run(&mut self, now: Instant) {
        if !self.leader_exists && !self.is_yielding(now) {
            self.actions.push_back(Action::Gossip { declaration: false });
            self.phase = Phase::Electing { until: now + self.config.leader_election_duration };
            return;
        }
        self.after_election(now);
    }

    /// The end of an election round: a declaration was heard, or the wait is over.
    fn decide(&mut self, now: Instant) {
        if self.leader_exists {
            info!(target: GOSSIP_ELECTION, func = "leaderElection", "{}: Some peer is already a leader", self.me);
        } else if self.is_yielding(now) {
            debug!(target: GOSSIP_ELECTION, func = "leaderElection", "{}: Aborting leader election because yielding", self.me);
        } else if self.proposals.first().is_none_or(|smallest| *smallest > self.me) {
            // Nobody declared and no better candidate proposed.
            info!(target: GOSSIP_ELECTION, func = "beLeader", "{}: Becoming a leader", self.me);
            self.is_leader = true;
            self.leader_exists = true;
            self.actions.push_back(Action::Leadership(true));
        }
        self.after_election(now);
    }

    /// The rest of a loop turn: lead or follow.
    fn after_election(&mut self, now: Instant) {
        if self.leader_exists && self.yielding_until.is_some() {
            debug!(target: GOSSIP_ELECTION, func = "stopYielding", "Stopped yielding");
            self.yielding_until = None;
        }
        if self.is_leader {
            self.actions.push_back(Action::Gossip { declaration: true });
            self.phase = Phase::Leading { until: now + self.config.leader_alive_threshold / 2 };
        } else {
            self.proposals.clear();
            self.leader_exists = false;
            self.phase = Phase::Following { until: now + self.config.leader_alive_threshold };
        }
    }

    /// What holds after every `handle_*`: a peer leads exactly while it is in the leading phase,
    /// and a leader knows a leader exists.
    pub fn check_invariants(&self) {
        assert_eq!(self.is_leader, matches!(self.phase, Phase::Leading { .. }), "{}: leadership and the leading phase agree", self.me);
        assert!(!self.is_leader || self.leader_exists, "{}: a leader knows a leader exists", self.me);
    }

    fn stop_being_leader(&mut self) {
        // Fabric logs the ID and the text without a separator; peer-core keeps the `: `.
        info!(target: GOSSIP_ELECTION, func = "stopBeingLeader", "{}: Stopped being a leader", self.me);
        self.is_leader = false;
        self.actions.push_back(Action::Leadership(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn id(byte: u8) -> PkiId {
        PkiId([byte; 32])
    }

    fn config() -> ElectionConfig {
        ElectionConfig {
            startup_grace_period: Duration::from_secs(15),
            membership_sample_interval: Duration::from_secs(1),
            leader_alive_threshold: Duration::from_secs(10),
            leader_election_duration: Duration::from_secs(5),
        }
    }

    fn at(seconds: u64) -> Instant {
        Instant(seconds * SECOND)
    }

    fn actions(election: &mut Election) -> Vec<Action> {
        std::iter::from_fn(|| election.poll_action()).collect()
    }

    /// Runs timers up to `end` with a fixed view size; returns every action with its time.
    fn run_until(election: &mut Election, end: Instant, view: usize) -> Vec<(Instant, Action)> {
        let mut out = Vec::new();
        while election.poll_timeout() <= end {
            let now = election.poll_timeout();
            election.handle_timeout(now, view);
            out.extend(actions(election).into_iter().map(|a| (now, a)));
        }
        out
    }

    #[test]
    fn a_lone_peer_proposes_after_the_view_settles_and_leads_after_the_election_duration() {
        let mut election = Election::new(id(5), config(), at(0), 0);
        let out = run_until(&mut election, at(12), 0);
        // The view did not change over the first sample (1 s): propose at 1 s, lead at 6 s,
        // declare again every 5 s.
        assert_eq!(
            out,
            vec![
                (at(1), Action::Gossip { declaration: false }),
                (at(6), Action::Leadership(true)),
                (at(6), Action::Gossip { declaration: true }),
                (at(11), Action::Gossip { declaration: true }),
            ]
        );
        assert!(election.is_leader());
    }

    #[test]
    fn a_growing_view_delays_the_election_up_to_the_grace_period() {
        let mut election = Election::new(id(5), config(), at(0), 0);
        // The view grows at every sample: the grace period (15 s) ends the wait.
        let mut view = 0;
        while election.poll_timeout() < at(15) {
            view += 1;
            let now = election.poll_timeout();
            election.handle_timeout(now, view);
            assert_eq!(actions(&mut election), vec![]);
        }
        let now = election.poll_timeout();
        election.handle_timeout(now, view + 1);
        assert_eq!((now, actions(&mut election)), (at(15), vec![Action::Gossip { declaration: false }]));
    }

    #[test]
    fn a_smaller_proposal_wins_and_the_larger_peer_follows() {
        let mut big = Election::new(id(9), config(), at(0), 1);
        big.handle_timeout(at(1), 1);
        assert_eq!(actions(&mut big), vec![Action::Gossip { declaration: false }]);
        big.handle_message(at(2), id(3), false);
        big.handle_timeout(at(6), 1);
        assert_eq!(actions(&mut big), vec![], "a smaller ID proposed: no leadership");
        assert!(!big.is_leader());
        // The winner's declaration keeps it following; a follow round with no declaration
        // ends in a new election.
        big.handle_message(at(7), id(3), true);
        big.handle_timeout(at(16), 1);
        assert_eq!(actions(&mut big), vec![], "a declaration was heard during the follow round");
        big.handle_timeout(at(26), 1);
        assert_eq!(actions(&mut big), vec![Action::Gossip { declaration: false }], "the leader went quiet");
        big.handle_timeout(at(31), 1);
        assert_eq!(actions(&mut big), vec![Action::Leadership(true), Action::Gossip { declaration: true }]);
    }

    #[test]
    fn a_declaration_during_the_election_aborts_it() {
        let mut election = Election::new(id(1), config(), at(0), 1);
        election.handle_timeout(at(1), 1);
        assert_eq!(actions(&mut election), vec![Action::Gossip { declaration: false }]);
        // Even a larger ID that already leads keeps its leadership: this peer follows.
        election.handle_message(at(2), id(9), true);
        assert_eq!(actions(&mut election), vec![]);
        assert!(!election.is_leader());
        assert_eq!(election.poll_timeout(), at(12), "following: the next check is leaderAliveThreshold later");
    }

    #[test]
    fn a_leader_steps_down_for_a_smaller_declaring_id_but_not_for_a_larger_one() {
        let mut election = Election::new(id(5), config(), at(0), 0);
        run_until(&mut election, at(6), 0);
        assert!(election.is_leader());
        election.handle_message(at(7), id(8), true);
        assert_eq!(actions(&mut election), vec![Action::Gossip { declaration: true }], "a larger leader hears us at once");
        election.handle_message(at(8), id(2), true);
        assert_eq!(actions(&mut election), vec![Action::Leadership(false)]);
        assert!(!election.is_leader());
    }

    #[test]
    fn a_yielding_leader_stays_out_of_elections_for_six_alive_thresholds() {
        let mut election = Election::new(id(5), config(), at(0), 0);
        run_until(&mut election, at(6), 0);
        election.handle_yield(at(7));
        assert_eq!(actions(&mut election), vec![Action::Leadership(false)]);
        // No proposals while yielding (until 67 s): follow rounds only.
        let out = run_until(&mut election, at(66), 0);
        assert_eq!(out, vec![]);
        let out = run_until(&mut election, at(80), 0);
        assert_eq!(out.first(), Some(&(at(67), Action::Gossip { declaration: false })), "{out:?}");
        assert!(election.is_leader());
    }

    #[test]
    fn only_a_leader_yields() {
        let mut election = Election::new(id(5), config(), at(0), 0);
        election.handle_yield(at(0));
        assert_eq!(actions(&mut election), vec![]);
        let out = run_until(&mut election, at(6), 0);
        assert!(out.contains(&(at(6), Action::Leadership(true))), "{out:?}");
    }

    /// Peers of one org on a perfect network (every message reaches every started peer at
    /// once), starting at the given offsets: after the timings settle there is exactly one
    /// leader, and with simultaneous starts it is the smallest ID.
    fn elect(starts: &[u64]) -> Vec<bool> {
        let mut peers: Vec<Option<Election>> = starts.iter().map(|_| None).collect();
        let mut leader = vec![false; starts.len()];
        let end = at(120);
        loop {
            let started = peers.iter().filter(|p| p.is_some()).count();
            // The next thing to happen: a start or a timer.
            let next_start =
                starts.iter().enumerate().filter(|(i, _)| peers[*i].is_none()).map(|(i, ms)| (Instant(ms * 1_000_000), i)).min();
            let next_timer = peers.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|e| (e.poll_timeout(), i))).min();
            let (now, i, is_start) = match (next_start, next_timer) {
                (Some(s), Some(t)) if s.0 <= t.0 => (s.0, s.1, true),
                (_, Some(t)) => (t.0, t.1, false),
                (Some(s), None) => (s.0, s.1, true),
                (None, None) => unreachable!("peers exist"),
            };
            if now > end {
                return leader;
            }
            if is_start {
                peers[i] = Some(Election::new(id(i as u8 + 1), config(), now, started));
                continue;
            }
            let mut queue = vec![i];
            peers[i].as_mut().unwrap().handle_timeout(now, started.saturating_sub(1));
            while let Some(from) = queue.pop() {
                while let Some(action) = peers[from].as_mut().unwrap().poll_action() {
                    match action {
                        Action::Leadership(l) => leader[from] = l,
                        Action::Gossip { declaration } => {
                            for (to, peer) in peers.iter_mut().enumerate() {
                                if to != from
                                    && let Some(peer) = peer.as_mut()
                                {
                                    peer.handle_message(now, id(from as u8 + 1), declaration);
                                    queue.push(to);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn simultaneous_starts_elect_the_smallest_id() {
        assert_eq!(elect(&[0, 0, 0, 0]), vec![true, false, false, false]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xE1EC7),
            cases: 256,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn any_start_order_ends_with_exactly_one_leader(starts in proptest::collection::vec(0u64..40_000, 1..6)) {
            let leaders = elect(&starts).into_iter().filter(|l| *l).count();
            proptest::prop_assert_eq!(leaders, 1);
        }
    }
}
