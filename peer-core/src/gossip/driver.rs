//! The gossip driver: the async middle ring between the membership state machine and comm.
//!
//! One task owns the [`Discovery`] state machine. It waits on a closed set of things (a comm
//! event, the result of a dial it started, the state machine's next deadline, shutdown), feeds
//! each to the state machine with the env clock's `now`, then carries out every transmit:
//! sending on an existing connection, or starting a bounded number of dial tasks (handshake,
//! probe, connect) whose results come back to it. It also keeps the operations view of the
//! membership and the gossip metrics up to date.


use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::comm::{Comm, CommEvent};
use super::discovery::{Discovery, MemberInfo, Transmit};
use super::message::BadMessage;
use crate::config::HostPort;
use crate::env::Env;
use crate::msp::identity::PkiId;

/// Dials in flight at once; beyond this a transmit needing a new connection waits for the next
/// round (the state machine retries on its own timers).
const MAX_DIALS: usize = 64;

/// Gossip metrics, registered with the operations registry.
#[derive(Clone, Default)]
pub struct GossipMetrics {
    /// `gossip_bad_messages_total{reason=…}`.
    pub bad_messages: Family<Vec<(String, String)>, Counter>,
    /// `gossip_membership_members{state="alive"|"dead"}`.
    pub members: Family<Vec<(String, String)>, Gauge>,
}

impl GossipMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("gossip_bad_messages", "Gossip messages rejected, by reason", self.bad_messages.clone());
        registry.register("gossip_membership_members", "Members in this peer's view, by state", self.members.clone());
    }

    fn bad(&self, error: &BadMessage) {
        self.bad_messages.get_or_create(&vec![("reason".to_string(), error.reason().to_string())]).inc();
    }
}

/// What `/membership` shows.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub pki_id: String,
    pub org: String,
    pub endpoint: String,
    pub internal_endpoint: String,
    pub inc_num: u64,
    pub members: Vec<MemberInfo>,
}

impl View {
    pub fn to_json(&self) -> serde_json::Value {
        let members: Vec<serde_json::Value> = self
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "pki_id": m.pki_id.to_string(), "org": m.org, "endpoint": m.endpoint,
                    "internal_endpoint": m.internal_endpoint, "alive": m.alive, "inc_num": m.inc_num, "seq_num": m.seq_num,
                })
            })
            .collect();
        serde_json::json!({
            "self": {"pki_id": self.pki_id, "org": self.org, "endpoint": self.endpoint, "internal_endpoint": self.internal_endpoint, "inc_num": self.inc_num},
            "members": members,
        })
    }
}

/// How a dial task ended.
enum DialOutcome {
    /// A bootstrap/anchor contact: the remote's PKI-ID, or why not.
    Contact(String, Result<PkiId, String>),
    /// A member could not be reached: Fabric calls it "presumed dead".
    Unreachable(PkiId),
}

/// Runs the membership until `stop` turns true.
pub async fn drive(
    env: Env,
    mut discovery: Discovery,
    comm: Comm,
    mut comm_events: mpsc::Receiver<CommEvent>,
    view: Arc<Mutex<View>>,
    metrics: GossipMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let (dial_tx, mut dial_rx) = mpsc::channel::<DialOutcome>(MAX_DIALS);
    let mut dials: JoinSet<()> = JoinSet::new();
    loop {
        carry_out(&mut discovery, &comm, &dial_tx, &mut dials, &view, &metrics);
        let sleep = env.clock.sleep_until(discovery.poll_timeout());
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            event = comm_events.recv() => {
                let Some(event) = event else { break };
                let now = env.clock.now();
                match event {
                    CommEvent::Message { from, message } => {
                        // Duplicates are normal in epidemic gossip; only real rejections count.
                        if let Err(error) = discovery.handle_message(now, from, message)
                            && error != BadMessage::Stale
                        {
                            metrics.bad(&error);
                            debug!(target: "gossip.discovery", func = "handleMsgFromComm", "rejected a message from {from}: {error}");
                        }
                    }
                    CommEvent::PresumedDead { pki_id } => discovery.handle_presumed_dead(now, pki_id),
                    CommEvent::Rejected { error, .. } => metrics.bad(&error),
                    CommEvent::ConnectionUp { .. } | CommEvent::ConnectionDown { .. } => {}
                }
            }
            Some(outcome) = dial_rx.recv() => {
                let now = env.clock.now();
                match outcome {
                    DialOutcome::Contact(endpoint, result) => discovery.handle_dial_result(now, &endpoint, result),
                    DialOutcome::Unreachable(pki_id) => discovery.handle_presumed_dead(now, pki_id),
                }
            }
            Some(_) = dials.join_next(), if !dials.is_empty() => {}
            _ = sleep => discovery.handle_timeout(env.clock.now()),
        }
    }
    dials.shutdown().await;
    comm.stop();
}

/// Drains the state machine's outputs: transmits go to comm, events to the view and metrics.
fn carry_out(
    discovery: &mut Discovery,
    comm: &Comm,
    dial_tx: &mpsc::Sender<DialOutcome>,
    dials: &mut JoinSet<()>,
    view: &Arc<Mutex<View>>,
    metrics: &GossipMetrics,
) {
    while let Some(transmit) = discovery.poll_transmit() {
        match transmit {
            Transmit::Send { to, endpoint, message } => {
                if comm.is_connected(&to) {
                    comm.send(&to, message);
                    continue;
                }
                let Some(address) = parse_endpoint(&endpoint) else { continue };
                if dials.len() >= MAX_DIALS {
                    continue;
                }
                let (comm, tx) = (comm.clone(), dial_tx.clone());
                dials.spawn(async move {
                    match comm.connect(&address, Some(to)).await {
                        Ok(pki_id) => {
                            comm.send(&pki_id, message);
                        }
                        Err(err) => {
                            warn!(target: "gossip.comm", func = "SendToPeer", "Failed obtaining connection for {endpoint} reason: {err}");
                            let _ = tx.send(DialOutcome::Unreachable(to)).await;
                        }
                    }
                });
            }
            Transmit::Contact { endpoint, org, message } => {
                let Some(address) = parse_endpoint(&endpoint) else {
                    let _ = dial_tx.try_send(DialOutcome::Contact(endpoint.clone(), Err(format!("{endpoint} is not host:port"))));
                    continue;
                };
                let (comm, tx) = (comm.clone(), dial_tx.clone());
                dials.spawn(async move {
                    let result = contact(&comm, &address, &org, message).await;
                    let _ = tx.send(DialOutcome::Contact(endpoint, result)).await;
                });
            }
            Transmit::ProbeDead { to, endpoint, message } => {
                let Some(address) = parse_endpoint(&endpoint) else { continue };
                if dials.len() >= MAX_DIALS {
                    continue;
                }
                let comm = comm.clone();
                dials.spawn(async move {
                    if comm.probe(&address).await.is_ok()
                        && let Ok(pki_id) = comm.connect(&address, Some(to)).await
                    {
                        comm.send(&pki_id, message);
                    }
                });
            }
            Transmit::Close { to } => comm.close(&to),
        }
    }
    let mut changed = false;
    while discovery.poll_event().is_some() {
        changed = true;
    }
    let members = discovery.members();
    if changed {
        let alive = members.iter().filter(|m| m.alive).count() as i64;
        metrics.members.get_or_create(&vec![("state".to_string(), "alive".to_string())]).set(alive);
        metrics.members.get_or_create(&vec![("state".to_string(), "dead".to_string())]).set(members.len() as i64 - alive);
    }
    view.lock().unwrap_or_else(|p| p.into_inner()).members = members;
}

/// Handshake, org check, connect, send the membership request.
async fn contact(comm: &Comm, address: &HostPort, org: &str, message: super::message::SignedMessage) -> Result<PkiId, String> {
    let (pki_id, identity) = comm.handshake(address).await.map_err(|e| e.to_string())?;
    if identity.msp_id != org {
        return Err(format!("{address} isn't in our organization, cannot be a bootstrap peer (it is in {})", identity.msp_id));
    }
    let pki_id = comm.connect(address, Some(pki_id)).await.map_err(|e| e.to_string())?;
    if !comm.send(&pki_id, message) {
        return Err(format!("could not queue the membership request to {address}"));
    }
    Ok(pki_id)
}

fn parse_endpoint(endpoint: &str) -> Option<HostPort> {
    if endpoint.is_empty() {
        return None;
    }
    match HostPort::parse(endpoint) {
        Ok(address) => Some(address),
        Err(err) => {
            debug!(target: "gossip.discovery", func = "createConnection", "cannot dial member endpoint: {err}");
            None
        }
    }
}

