//! `discovery.Discovery/Discover` end to end: three peers of two orgs started with `node::start` on
//! one in-memory network (a manual clock the test advances, no sleeps) form a channel's
//! membership; a client built from the discovery protos signs requests with generated admin and
//! member identities and asks for the channel's config, its peers, the local peers and
//! endorsers. The answers are checked field by field, then rendered as Fabric's `discover` CLI
//! prints them (its JSON shapes, recorded from the real CLI in `tests/data/discover/README.md`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use peer_core::channel::{AnchorPeer, GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::config::{Config, EnvVars, HostPort};
use peer_core::env::{Env, Network};
use peer_core::gossip::message::SignedMessage;
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::generate::Org;
use peer_core::msp::{Identity, LocalMsp};
use peer_core::node::{self, RunningNode};
use prost::Message;
use proto::common::{Block, HeaderType};
use proto::discovery::discovery_client::DiscoveryClient;
use proto::discovery::query::Query as Kind;
use proto::discovery::query_result::Result as Answer;
use proto::discovery::{
    AuthInfo, ChaincodeQuery, ConfigQuery, ConfigResult, LocalPeerQuery, PeerMembershipQuery, PeerMembershipResult, Query, QueryResult,
    Request, SignedRequest,
};
use proto::gossip::gossip_message::Content;
use proto::protos::{ChaincodeCall, ChaincodeInterest};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tracing_subscriber::layer::SubscriberExt;

use peer_core::testkit::{ManualClock, MemNetwork, MemStorage, admin, epoch, local_msp, org_with_peers};

const CHANNEL: &str = "mychannel";

/// Org1 with two peers (ports 7051, 8051), Org2 with one (9051), an orderer org, one channel.
struct Net {
    network: Arc<MemNetwork>,
    clock: Arc<ManualClock>,
    orderer: LocalMsp,
    org1: Org,
    org2: Org,
    genesis: Block,
    rng: ChaCha20Rng,
}

/// Where a peer listens: `127.0.0.1:<port>` is also its external endpoint.
fn port(org: usize, peer: usize) -> u16 {
    7051 + 1000 * (2 * org + peer) as u16
}

impl Net {
    fn new() -> Net {
        let orderer_org = org_with_peers("OrdererMSP", "example.com", 0);
        let org1 = org_with_peers("Org1MSP", "org1.example.com", 2);
        let org2 = org_with_peers("Org2MSP", "org2.example.com", 1);
        let mut spec = GenesisSpec::new(CHANNEL, epoch());
        spec.orderer_orgs.push(GenesisOrg {
            name: "OrdererOrg".into(),
            org: &orderer_org,
            anchor_peers: Vec::new(),
            orderer_endpoints: vec!["orderer.example.com:7050".into()],
        });
        for (i, org) in [&org1, &org2].into_iter().enumerate() {
            spec.application_orgs.push(GenesisOrg {
                name: org.spec.msp_id.clone(),
                org,
                anchor_peers: vec![AnchorPeer { host: "127.0.0.1".into(), port: port(i, 0) }],
                orderer_endpoints: Vec::new(),
            });
        }
        let genesis = genesis_block(&spec).unwrap();
        Net {
            network: Arc::new(MemNetwork::default()),
            clock: ManualClock::at(epoch()),
            orderer: admin(&orderer_org),
            org1,
            org2,
            genesis,
            rng: ChaCha20Rng::seed_from_u64(5),
        }
    }

    fn org(&self, org: usize) -> &Org {
        [&self.org1, &self.org2][org]
    }

    /// Starts peer `peer` of org `org` (0: Org1, 1: Org2) with more `CORE_*` variables, and joins
    /// the channel.
    async fn start(&self, org: usize, peer: usize, vars: &[(&str, &str)]) -> RunningNode {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
        let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
        let address = format!("127.0.0.1:{}", port(org, peer));
        let base = port(org, peer);
        let all = EnvVars::new()
            .with("CORE_PEER_FILESYSTEMPATH", "/mem/data")
            .with("CORE_PEER_ID", &format!("peer{peer}.{}", self.org(org).spec.domain))
            .with("CORE_PEER_LISTENADDRESS", &address)
            .with("CORE_PEER_ADDRESS", &address)
            .with("CORE_PEER_CHAINCODELISTENADDRESS", &format!("127.0.0.1:{}", base + 1))
            .with("CORE_OPERATIONS_LISTENADDRESS", &format!("127.0.0.1:{}", base + 2))
            .with("CORE_PEER_GOSSIP_BOOTSTRAP", &format!("127.0.0.1:{}", port(org, 0)))
            .with("CORE_PEER_GOSSIP_EXTERNALENDPOINT", &address)
            .with("CORE_PEER_GOSSIP_ORGLEADER", "false");
        let all = vars.iter().fold(all, |all, (name, value)| all.with(name, value));
        let config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &all).unwrap().config;
        let msp = local_msp(&self.org(org).peers[peer], &self.org(org).spec.msp_id);
        let (_layer, handle) = logging::layer(&LoggingConfig::default(), Arc::new(epoch), MemorySink::new().sink()).unwrap();
        let setup = node::Setup::new(config, msp, Arc::new(handle), address);
        let env = Env::new(self.clock.clone(), self.network.clone(), Arc::new(MemStorage::default()), [(10 * org + peer) as u8 + 1; 32]);
        let running = node::start(env, setup).await.unwrap();
        running.channels.join(&self.genesis).unwrap();
        running
    }

    /// An orderer-signed block on top of the channel's genesis block, for every peer to append.
    fn block_1(&mut self) -> Block {
        let genesis_header = self.genesis.header.as_ref().unwrap();
        let tx = envelope(HeaderType::EndorserTransaction, CHANNEL, "tx-1", b"");
        let mut block = new_block(1, &header_hash(genesis_header), vec![tx]);
        sign_block(&mut block, &self.orderer, 0, &mut self.rng);
        block
    }

    /// Moves time forward in 50 ms steps, letting every task run in between.
    async fn advance(&self, by: Duration) {
        for _ in 0..by.as_millis() / 50 {
            self.clock.advance(Duration::from_millis(50));
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
    }

    async fn client(&self, port: u16) -> DiscoveryClient<Channel> {
        let network = self.network.clone();
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let connect = network.connect(&HostPort::new("127.0.0.1", port), Duration::from_secs(1));
            async move { connect.await.map(hyper_util::rt::TokioIo::new) }
        });
        let channel = tonic::transport::Endpoint::from_static("http://peer").connect_with_connector(connector).await.unwrap();
        DiscoveryClient::new(channel)
    }
}

fn query(channel: &str, kind: Kind) -> Query {
    Query { channel: channel.into(), query: Some(kind) }
}

fn config_query() -> Kind {
    Kind::ConfigQuery(ConfigQuery {})
}

fn peer_query() -> Kind {
    Kind::PeerQuery(PeerMembershipQuery { filter: None })
}

fn local_query() -> Kind {
    Kind::LocalPeers(LocalPeerQuery {})
}

fn interest(names: &[&str]) -> ChaincodeInterest {
    ChaincodeInterest { chaincodes: names.iter().map(|n| ChaincodeCall { name: n.to_string(), ..ChaincodeCall::default() }).collect() }
}

/// A request as the `discover` CLI builds it: the client identity, the hash of no TLS
/// certificate, the queries; signed over the payload.
fn request(signer: &LocalMsp, queries: Vec<Query>) -> SignedRequest {
    let authentication = AuthInfo { client_identity: signer.identity.serialize(), client_tls_cert_hash: Sha256::digest(b"").to_vec() };
    let payload = Request { authentication: Some(authentication), queries }.encode_to_vec();
    let signature = signer.sign(&payload);
    SignedRequest { payload, signature }
}

async fn discover(client: &mut DiscoveryClient<Channel>, request: SignedRequest) -> Vec<QueryResult> {
    client.discover(request).await.unwrap().into_inner().results
}

fn error_text(result: &QueryResult) -> &str {
    match &result.result {
        Some(Answer::Error(error)) => &error.content,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn members(result: &QueryResult) -> &PeerMembershipResult {
    match &result.result {
        Some(Answer::Members(members)) => members,
        other => panic!("expected peers, got {other:?}"),
    }
}

fn config_of(result: &QueryResult) -> &ConfigResult {
    match &result.result {
        Some(Answer::ConfigResult(config)) => config,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn decode_gossip(envelope: &proto::gossip::Envelope) -> SignedMessage {
    SignedMessage::from_envelope(envelope.clone()).unwrap()
}

/// The peers of an answer as (org, endpoint, ledger height or none, identity), org by org.
fn summary(result: &PeerMembershipResult) -> Vec<(String, String, Option<u64>, Identity)> {
    let mut out = Vec::new();
    for (org, peers) in &result.peers_by_org {
        for peer in &peers.peers {
            let alive = decode_gossip(peer.membership_info.as_ref().unwrap());
            let Some(Content::AliveMsg(alive_msg)) = alive.content() else { panic!("not an alive message") };
            assert!(peer.membership_info.as_ref().unwrap().secret_envelope.is_none(), "no secret leaves the peer");
            let height = peer.state_info.as_ref().map(|envelope| match decode_gossip(envelope).content() {
                Some(Content::StateInfo(info)) => info.properties.as_ref().unwrap().ledger_height,
                _ => panic!("not a StateInfo"),
            });
            let identity = Identity::deserialize(&peer.identity).unwrap();
            out.push((org.clone(), alive_msg.membership.as_ref().unwrap().endpoint.clone(), height, identity));
        }
    }
    out
}

#[tokio::test]
async fn discovery_answers_config_peers_local_peers_and_endorsers() {
    let sink = MemorySink::new();
    let format = LoggingConfig { spec: "info".into(), format: "[%{module}] %{shortfunc} -> %{level} %{message}".into() };
    let (layer, _handle) = logging::layer(&format, Arc::new(epoch), sink.sink()).unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let mut net = Net::new();
    let peers = [net.start(0, 0, &[]).await, net.start(0, 1, &[]).await, net.start(1, 0, &[]).await];
    let block = net.block_1();
    for peer in &peers {
        peer.channels.append(CHANNEL, &block).unwrap();
    }
    // Membership forms (bootstrap in Org1, anchors across orgs) and StateInfo goes around.
    for _ in 0..60 {
        net.advance(Duration::from_secs(1)).await;
        if peers.iter().all(|p| p.gossip_view.channel_peers(CHANNEL).len() == 2) {
            break;
        }
    }
    net.advance(Duration::from_secs(5)).await;
    assert!(peers.iter().all(|p| p.gossip_view.channel_peers(CHANNEL).iter().all(|c| c.height == 2)), "heights went around");

    let org1_admin = admin(&net.org1);
    let org2_admin = admin(&net.org2);
    let mut client = net.client(port(0, 0)).await;

    // Config, channel peers, local peers and endorsers in one request, answered in order.
    let queries = vec![
        query(CHANNEL, config_query()),
        query(CHANNEL, peer_query()),
        query("", local_query()),
        query(CHANNEL, Kind::CcQuery(ChaincodeQuery { interests: vec![interest(&["mycc"])] })),
    ];
    let results = discover(&mut client, request(&org1_admin, queries)).await;
    assert_eq!(results.len(), 4);

    let config = config_of(&results[0]);
    assert_eq!(config.msps.keys().collect::<Vec<_>>(), ["OrdererMSP", "Org1MSP", "Org2MSP"]);
    for (id, msp) in &config.msps {
        assert_eq!(&msp.name, id);
        assert_eq!(msp.root_certs.len(), 1, "{id}: the MSP config as the block carries it");
        assert!(msp.root_certs[0].starts_with(b"-----BEGIN CERTIFICATE-----"));
    }
    let orderers: Vec<(&String, Vec<(String, u32)>)> =
        config.orderers.iter().map(|(id, e)| (id, e.endpoint.iter().map(|e| (e.host.clone(), e.port)).collect())).collect();
    assert_eq!(orderers, [(&"OrdererMSP".to_string(), vec![("orderer.example.com".to_string(), 7050)])]);

    let channel_peers = summary(members(&results[1]));
    let expected: Vec<(String, String, Identity)> = [(0, 0), (0, 1), (1, 0)]
        .iter()
        .map(|&(org, peer)| {
            let msp = local_msp(&net.org(org).peers[peer], &net.org(org).spec.msp_id);
            (net.org(org).spec.msp_id.clone(), format!("127.0.0.1:{}", port(org, peer)), msp.identity)
        })
        .collect();
    let mut got: Vec<(String, String, Identity)> = channel_peers.iter().map(|(o, e, _, i)| (o.clone(), e.clone(), i.clone())).collect();
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        got.iter().map(|(o, e, i)| (o.as_str(), e.as_str(), i.pem.as_slice())).collect::<Vec<_>>(),
        expected.iter().map(|(o, e, i)| (o.as_str(), e.as_str(), i.pem.as_slice())).collect::<Vec<_>>()
    );
    assert!(channel_peers.iter().all(|(_, _, height, _)| *height == Some(2)), "{channel_peers:?}");
    // Others' alive messages come as they signed them; this peer's own is unsigned.
    for peer in members(&results[1]).peers_by_org.values().flat_map(|p| &p.peers) {
        let identity = Identity::deserialize(&peer.identity).unwrap();
        let alive = peer.membership_info.as_ref().unwrap();
        if identity.pem == expected[0].2.pem {
            assert!(alive.signature.is_empty(), "self's alive message is not signed");
        } else {
            identity.verify(&alive.payload, &alive.signature).unwrap();
        }
        let state_info = peer.state_info.as_ref().unwrap();
        identity.verify(&state_info.payload, &state_info.signature).unwrap();
    }

    // The local query: the same peers, without StateInfo.
    let local = summary(members(&results[2]));
    assert_eq!(local.len(), 3);
    assert!(local.iter().all(|(_, _, height, _)| height.is_none()));

    assert_eq!(error_text(&results[3]), "failed constructing descriptor for chaincodes:<name:\"mycc\" > ");

    // What the CLI prints for them.
    let peers_json = render_channel_peers(members(&results[1]));
    check_shape(&peers_json, &["MSPID", "LedgerHeight", "Endpoint", "Identity", "Chaincodes"]);
    assert!(
        peers_json.starts_with("[\n\t{\n\t\t\"MSPID\": \"Org1MSP\",\n\t\t\"LedgerHeight\": 2,\n\t\t\"Endpoint\": \"127.0.0.1:"),
        "{peers_json}"
    );
    assert!(peers_json.contains("\t\t\"Identity\": \"-----BEGIN CERTIFICATE-----\\nMII"), "{peers_json}");
    assert!(peers_json.contains("\t\t\"Chaincodes\": null\n\t}"), "{peers_json}");
    let local_json = render_local_peers(members(&results[2]));
    check_shape(&local_json, &["MSPID", "Endpoint", "Identity"]);
    let config_json = render_config(config);
    assert!(
        config_json.starts_with(
            "{\n\t\"msps\": {\n\t\t\"OrdererMSP\": {\n\t\t\t\"name\": \"OrdererMSP\",\n\t\t\t\"root_certs\": [\n\t\t\t\t\"LS0tLS1CRUdJTi"
        ),
        "{config_json}"
    );
    assert!(
        config_json.ends_with(
            "\t\"orderers\": {\n\t\t\"OrdererMSP\": {\n\t\t\t\"endpoint\": [\n\t\t\t\t{\n\t\t\t\t\t\"host\": \"orderer.example.com\",\n\t\t\t\t\t\"port\": 7050\n\t\t\t\t}\n\t\t\t]\n\t\t}\n\t}\n}"
        ),
        "{config_json}"
    );
    check_against_fabric_cli(&peers_json, &local_json, &config_json);

    // Org2's peer answers Org2's admin alike.
    let mut org2_client = net.client(port(1, 0)).await;
    let results = discover(&mut org2_client, request(&org2_admin, vec![query(CHANNEL, peer_query())])).await;
    assert_eq!(summary(members(&results[0])).len(), 3);

    // Refusals, one result each, in order.
    let member = local_msp(&net.org1.peers[1], "Org1MSP");
    let queries = vec![
        query("", local_query()),
        // A peer identity is not a channel writer (admins and clients are).
        query(CHANNEL, peer_query()),
        query("nochannel", config_query()),
    ];
    let results = discover(&mut client, request(&member, queries)).await;
    assert_eq!(results.iter().map(error_text).collect::<Vec<_>>(), ["access denied"; 3]);
    // Org2's admin is not an admin of this peer's MSP.
    let results = discover(&mut client, request(&org2_admin, vec![query("", local_query()), query(CHANNEL, config_query())])).await;
    assert_eq!(error_text(&results[0]), "access denied");
    config_of(&results[1]);
    // A bad signature, and none.
    let mut forged = request(&org1_admin, vec![query(CHANNEL, config_query()), query("", local_query())]);
    forged.signature = org2_admin.sign(&forged.payload);
    let results = discover(&mut client, forged.clone()).await;
    assert_eq!(results.iter().map(error_text).collect::<Vec<_>>(), ["access denied"; 2]);
    forged.signature.clear();
    let results = discover(&mut client, forged).await;
    assert_eq!(results.iter().map(error_text).collect::<Vec<_>>(), ["access denied"; 2]);

    // Queries a channel or the local scope does not take; a chaincode filter; chaincode checks.
    let queries = vec![
        query(CHANNEL, local_query()),
        query("", config_query()),
        Query { channel: CHANNEL.into(), query: None },
        query(CHANNEL, Kind::PeerQuery(PeerMembershipQuery { filter: Some(interest(&["mycc", "other"])) })),
        query(CHANNEL, Kind::PeerQuery(PeerMembershipQuery { filter: Some(interest(&[])) })),
        query(CHANNEL, Kind::CcQuery(ChaincodeQuery { interests: Vec::new() })),
        query(CHANNEL, Kind::CcQuery(ChaincodeQuery { interests: vec![interest(&[])] })),
        query(CHANNEL, Kind::CcQuery(ChaincodeQuery { interests: vec![interest(&[""])] })),
        query(CHANNEL, Kind::CcQuery(ChaincodeQuery { interests: vec![interest(&["a", "b"]), interest(&["c"])] })),
    ];
    let results = discover(&mut client, request(&org1_admin, queries)).await;
    assert_eq!(error_text(&results[0]), "unknown or missing request type");
    assert_eq!(error_text(&results[1]), "unknown or missing request type");
    assert_eq!(error_text(&results[2]), "unknown or missing request type");
    assert_eq!(error_text(&results[3]), "No metadata was found for chaincode mycc in channel mychannel");
    assert_eq!(summary(members(&results[4])).len(), 3, "an empty filter filters nothing");
    assert_eq!(error_text(&results[5]), "chaincode query must have at least one chaincode interest");
    assert_eq!(error_text(&results[6]), "chaincode interest must contain at least one chaincode");
    assert_eq!(error_text(&results[7]), "chaincode name in interest cannot be empty");
    assert_eq!(error_text(&results[8]), "failed constructing descriptor for chaincodes:<name:\"a\" > chaincodes:<name:\"b\" > ");

    // Malformed requests fail the call, with Fabric's texts.
    let garbage = SignedRequest { payload: vec![0xff, 0xff], signature: Vec::new() };
    let status = client.discover(garbage).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown);
    assert!(status.message().starts_with("failed parsing request: "), "{}", status.message());
    let no_auth = SignedRequest { payload: Request { authentication: None, queries: Vec::new() }.encode_to_vec(), signature: Vec::new() };
    let status = client.discover(no_auth).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "access denied, no authentication info in request"));
    let anonymous = Request { authentication: Some(AuthInfo::default()), queries: vec![query(CHANNEL, config_query())] };
    let status = client.discover(SignedRequest { payload: anonymous.encode_to_vec(), signature: Vec::new() }).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Unknown, "access denied, client identity wasn't supplied"));
    // Any claimed TLS certificate hash is accepted, as Fabric 2.2 does.
    let mut odd_hash = Request { authentication: None, queries: vec![query(CHANNEL, config_query())] };
    odd_hash.authentication =
        Some(AuthInfo { client_identity: org1_admin.identity.serialize(), client_tls_cert_hash: b"not a hash".to_vec() });
    let payload = odd_hash.encode_to_vec();
    let signature = org1_admin.sign(&payload);
    config_of(&discover(&mut client, SignedRequest { payload, signature }).await[0]);

    let log = sink.contents();
    for line in [
        "[discovery] NewService -> INFO Created with config TLS: false, authCacheMaxSize: 1000, authCachePurgeRatio: 0.750000",
        "[nodeCmd] registerDiscoveryService -> INFO Discovery service activated",
        "[discovery] processQuery -> WARN got query for channel nochannel from ",
        "[discovery] processQuery -> WARN got query for channel  from ",
        "[discovery] chaincodeQuery -> ERROR Failed constructing descriptor for chaincode chaincodes:<name:\"mycc\" > ,: No metadata was found for chaincode mycc in channel mychannel",
        "[discovery] Discover -> WARN Request from ",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    assert!(log.contains(" but it doesn't exist\n") && log.contains(" but it isn't eligible: "), "{log}");
    // The creation line comes before the activation line, for every peer.
    let created = log.match_indices("Created with config").count();
    assert_eq!(created, 3);
    assert_eq!(log.match_indices("Discovery service activated").count(), 3);

    for peer in peers {
        peer.stop().await;
    }
}

#[tokio::test]
async fn members_may_ask_for_local_peers_when_allowed_and_a_disabled_service_is_unknown() {
    let sink = MemorySink::new();
    let format = LoggingConfig { spec: "info".into(), format: "[%{module}] %{shortfunc} -> %{level} %{message}".into() };
    let (layer, _handle) = logging::layer(&format, Arc::new(epoch), sink.sink()).unwrap();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let net = Net::new();
    let open = net
        .start(0, 0, &[("CORE_PEER_DISCOVERY_ORGMEMBERSALLOWEDACCESS", "true"), ("CORE_PEER_DISCOVERY_AUTHCACHEENABLED", "false")])
        .await;
    net.advance(Duration::from_secs(1)).await;

    let member = local_msp(&net.org1.peers[1], "Org1MSP");
    let mut client = net.client(port(0, 0)).await;
    let results = discover(&mut client, request(&member, vec![query("", local_query())])).await;
    // A lone peer knows itself.
    let local = summary(members(&results[0]));
    assert_eq!(local.len(), 1);
    assert_eq!((local[0].0.as_str(), local[0].1.as_str()), ("Org1MSP", "127.0.0.1:7051"));
    // ...and its channel, with a StateInfo signed on the spot (gossip publishes none yet).
    let results = discover(&mut client, request(&admin(&net.org1), vec![query(CHANNEL, peer_query())])).await;
    let channel = summary(members(&results[0]));
    assert_eq!(channel.iter().map(|(org, _, height, _)| (org.as_str(), *height)).collect::<Vec<_>>(), [("Org1MSP", Some(1))]);
    // Members of other orgs are still refused.
    let results = discover(&mut client, request(&admin(&net.org2), vec![query("", local_query())])).await;
    assert_eq!(error_text(&results[0]), "access denied");

    let disabled = net.start(1, 0, &[("CORE_PEER_DISCOVERY_ENABLED", "false")]).await;
    let mut client = net.client(port(1, 0)).await;
    let status = client.discover(request(&admin(&net.org2), vec![query(CHANNEL, config_query())])).await.unwrap_err();
    assert_eq!((status.code(), status.message()), (tonic::Code::Unimplemented, "unknown service discovery.Discovery"));

    let log = sink.contents();
    assert!(log.contains("[discovery] NewService -> INFO Created with config TLS: false, auth cache disabled\n"), "{log}");
    assert_eq!(log.match_indices("Discovery service activated").count(), 1, "only the enabled peer says so:\n{log}");
    open.stop().await;
    disabled.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The `discover` CLI's output (Fabric 2.2's `discovery/cmd`), rendered from the answers.

/// `discover peers --channel`: one object per peer (org by org), Go's field order, tab-indented.
fn render_channel_peers(result: &PeerMembershipResult) -> String {
    #[derive(serde::Serialize)]
    #[allow(non_snake_case)]
    struct ChannelPeer {
        MSPID: String,
        LedgerHeight: u64,
        Endpoint: String,
        Identity: String,
        Chaincodes: Option<Vec<String>>,
    }
    let mut out = Vec::new();
    for (org, peers) in &result.peers_by_org {
        for peer in &peers.peers {
            let (height, chaincodes) = match peer.state_info.as_ref().map(decode_gossip).as_ref().and_then(SignedMessage::content) {
                Some(Content::StateInfo(info)) => {
                    let properties = info.properties.clone().unwrap_or_default();
                    let names: Vec<String> = properties.chaincodes.iter().map(|c| c.name.clone()).collect();
                    (properties.ledger_height, (!names.is_empty()).then_some(names))
                }
                _ => (0, None),
            };
            out.push(ChannelPeer {
                MSPID: org.clone(),
                LedgerHeight: height,
                Endpoint: endpoint(peer),
                Identity: id_bytes(peer),
                Chaincodes: chaincodes,
            });
        }
    }
    go_json(&(!out.is_empty()).then_some(out))
}

/// `discover peers` (no channel).
fn render_local_peers(result: &PeerMembershipResult) -> String {
    #[derive(serde::Serialize)]
    #[allow(non_snake_case)]
    struct LocalPeer {
        MSPID: String,
        Endpoint: String,
        Identity: String,
    }
    let out: Vec<LocalPeer> = result
        .peers_by_org
        .iter()
        .flat_map(|(org, peers)| {
            peers.peers.iter().map(move |p| LocalPeer { MSPID: org.clone(), Endpoint: endpoint(p), Identity: id_bytes(p) })
        })
        .collect();
    go_json(&(!out.is_empty()).then_some(out))
}

fn endpoint(peer: &proto::discovery::Peer) -> String {
    match peer.membership_info.as_ref().map(decode_gossip).as_ref().and_then(SignedMessage::content) {
        Some(Content::AliveMsg(alive)) => alive.membership.as_ref().map(|m| m.endpoint.clone()).unwrap_or_default(),
        _ => String::new(),
    }
}

fn id_bytes(peer: &proto::discovery::Peer) -> String {
    let identity = proto::msp::SerializedIdentity::decode(peer.identity.as_slice()).unwrap_or_default();
    String::from_utf8_lossy(&identity.id_bytes).into_owned()
}

/// `discover config`: Go's `encoding/json` of `discovery.ConfigResult` (proto field names, empty
/// fields left out, bytes in base64, map keys sorted).
fn render_config(config: &ConfigResult) -> String {
    use serde_json::{Map, Value};
    fn bytes_list(items: &[Vec<u8>]) -> Option<Value> {
        (!items.is_empty()).then(|| Value::Array(items.iter().map(|b| Value::String(base64(b))).collect()))
    }
    fn ou(id: &proto::msp::FabricOuIdentifier) -> Value {
        let mut o = Ordered::default();
        o.put("certificate", (!id.certificate.is_empty()).then(|| Value::String(base64(&id.certificate))));
        o.put("organizational_unit_identifier", non_empty(&id.organizational_unit_identifier));
        o.into_value()
    }
    fn non_empty(text: &str) -> Option<Value> {
        (!text.is_empty()).then(|| Value::String(text.to_string()))
    }
    let mut msps = Ordered::default();
    for (id, msp) in &config.msps {
        let mut m = Ordered::default();
        m.put("name", non_empty(&msp.name));
        m.put("root_certs", bytes_list(&msp.root_certs));
        m.put("intermediate_certs", bytes_list(&msp.intermediate_certs));
        m.put("admins", bytes_list(&msp.admins));
        m.put("revocation_list", bytes_list(&msp.revocation_list));
        m.put("signing_identity", msp.signing_identity.as_ref().map(|_| Value::Object(Map::new())));
        m.put(
            "organizational_unit_identifiers",
            (!msp.organizational_unit_identifiers.is_empty())
                .then(|| Value::Array(msp.organizational_unit_identifiers.iter().map(ou).collect())),
        );
        m.put(
            "crypto_config",
            msp.crypto_config.as_ref().map(|c| {
                let mut o = Ordered::default();
                o.put("signature_hash_family", non_empty(&c.signature_hash_family));
                o.put("identity_identifier_hash_function", non_empty(&c.identity_identifier_hash_function));
                o.into_value()
            }),
        );
        m.put("tls_root_certs", bytes_list(&msp.tls_root_certs));
        m.put("tls_intermediate_certs", bytes_list(&msp.tls_intermediate_certs));
        m.put(
            "fabric_node_ous",
            msp.fabric_node_ous.as_ref().map(|n| {
                let mut o = Ordered::default();
                o.put("enable", n.enable.then_some(Value::Bool(true)));
                o.put("client_ou_identifier", n.client_ou_identifier.as_ref().map(ou));
                o.put("peer_ou_identifier", n.peer_ou_identifier.as_ref().map(ou));
                o.put("admin_ou_identifier", n.admin_ou_identifier.as_ref().map(ou));
                o.put("orderer_ou_identifier", n.orderer_ou_identifier.as_ref().map(ou));
                o.into_value()
            }),
        );
        msps.put(id, Some(m.into_value()));
    }
    let mut orderers = Ordered::default();
    for (id, endpoints) in &config.orderers {
        let list: Vec<Value> = endpoints
            .endpoint
            .iter()
            .map(|e| {
                let mut o = Ordered::default();
                o.put("host", non_empty(&e.host));
                o.put("port", (e.port != 0).then(|| Value::from(e.port)));
                o.into_value()
            })
            .collect();
        let mut o = Ordered::default();
        o.put("endpoint", (!list.is_empty()).then_some(Value::Array(list)));
        orderers.put(id, Some(o.into_value()));
    }
    let mut top = Ordered::default();
    top.put("msps", (!config.msps.is_empty()).then(|| msps.into_value()));
    top.put("orderers", (!config.orderers.is_empty()).then(|| orderers.into_value()));
    top.render()
}

/// A JSON object that keeps its fields in insertion order (Go's struct order), rendered as Go's
/// `json.MarshalIndent(v, "", "\t")` renders it.
#[derive(Default)]
struct Ordered(Vec<(String, serde_json::Value)>);

impl Ordered {
    fn put(&mut self, key: &str, value: Option<serde_json::Value>) {
        if let Some(value) = value {
            self.0.push((key.to_string(), value));
        }
    }

    /// As a value: a marker object whose keys are numbered so that serde_json's sorted maps keep
    /// the order; [`Ordered::render`] strips the numbers.
    fn into_value(self) -> serde_json::Value {
        let map = self.0.into_iter().enumerate().map(|(i, (k, v))| (format!("{i:04}\u{1}{k}"), v)).collect();
        serde_json::Value::Object(map)
    }

    fn render(self) -> String {
        let text = go_json(&self.into_value());
        // Drop the ordering prefixes: `"0003\u0001name"` -> `"name"`.
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find("\\u0001") {
            let quote = rest[..at].rfind('"').unwrap();
            out.push_str(&rest[..=quote]);
            rest = &rest[at + "\\u0001".len()..];
        }
        out.push_str(rest);
        out
    }
}

/// Go's `json.MarshalIndent(v, "", "\t")`.
fn go_json<T: serde::Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    value.serialize(&mut serializer).unwrap();
    String::from_utf8(out).unwrap()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Each object of a peers listing has exactly `fields`, in this order, at two tabs.
fn check_shape(json: &str, fields: &[&str]) {
    let objects: Vec<Vec<&str>> = json
        .split("\n\t{\n")
        .skip(1)
        .map(|object| {
            object
                .lines()
                .take_while(|line| line.starts_with("\t\t\""))
                .map(|line| line.trim_start_matches('\t').trim_start_matches('"').split('"').next().unwrap())
                .collect()
        })
        .collect();
    assert!(!objects.is_empty(), "{json}");
    for object in objects {
        assert_eq!(object, fields, "{json}");
    }
}

/// The same shapes as the outputs of Fabric's own `discover` recorded in
/// `tests/data/discover/README.md`: values replaced, keys and layout kept.
fn check_against_fabric_cli(peers: &str, local: &str, config: &str) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/discover/README.md")).unwrap();
    let recorded = |name: &str| -> String {
        let start = readme.find(&format!("<!-- output: {name} -->")).unwrap_or_else(|| panic!("no {name} output recorded"));
        let block = &readme[start..];
        let body = &block[block.find("```text\n").unwrap() + "```text\n".len()..];
        body[..body.find("\n```").unwrap()].to_string()
    };
    assert_eq!(first_object_shape(peers), first_object_shape(&recorded("peers-channel")));
    assert_eq!(first_object_shape(local), first_object_shape(&recorded("peers-local")));
    assert_eq!(key_shape(config), key_shape(&recorded("config")));
}

/// The first object of a listing with its values blanked: keys, indentation, punctuation.
fn first_object_shape(json: &str) -> String {
    let end = json.find("\n\t}").unwrap_or(json.len());
    blank_values(&json[..end])
}

/// Every line's indentation and key, values blanked, repeated array items collapsed.
fn key_shape(json: &str) -> Vec<String> {
    let mut shape: Vec<String> = Vec::new();
    for line in blank_values(json).lines() {
        if shape.last().is_some_and(|last| *last == line) {
            continue;
        }
        shape.push(line.to_string());
    }
    shape
}

fn blank_values(json: &str) -> String {
    json.lines()
        .map(|line| {
            let indent: String = line.chars().take_while(|c| *c == '\t').collect();
            let body = line.trim_start_matches('\t');
            match body.split_once("\": ") {
                Some((key, value)) => {
                    let open = value.trim_end_matches(',');
                    let shown = if open == "{" || open == "[" { open } else { "V" };
                    format!("{indent}{key}\": {shown}")
                }
                None if body.starts_with('"') || body.chars().next().is_some_and(|c| c.is_ascii_digit()) => format!("{indent}V"),
                None => format!("{indent}{}", body.trim_end_matches(',')),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn renderers_write_what_go_writes() {
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
    let mut o = Ordered::default();
    o.put("zeta", Some(serde_json::Value::from(1)));
    o.put("alpha", None);
    o.put("beta", Some(serde_json::Value::from("x")));
    assert_eq!(o.render(), "{\n\t\"zeta\": 1,\n\t\"beta\": \"x\"\n}");
    assert_eq!(go_json(&None::<Vec<u8>>), "null");
}
