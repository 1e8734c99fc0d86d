//! `protos.Deliver` on a node started on the in-memory Env, driven through tonic's client: seek
//! positions, waiting for blocks, statuses, access checks, several seeks on one stream, client
//! disconnects, filtered blocks and the concurrency limit. Nothing sleeps: the clock is a manual
//! one whose monotonic time stands still and whose wall clock the test sets, "nothing arrives
//! yet" polls the stream once, and waiting for a session to end yields to the runtime a bounded
//! number of times.

use peer_core::testkit::{ManualClock, MemNetwork, MemStorage, admin, epoch, org};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::exposition::{self, Exposition};
use peer_core::channel::{GenesisOrg, GenesisSpec, genesis_block, sign_block};
use peer_core::config::{Config, EnvVars, HostPort};
use peer_core::env::{Clock, Env, Network};
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::logging::{self, LoggingConfig, MemorySink};
use peer_core::msp::LocalMsp;
use peer_core::msp::generate::Org;
use peer_core::net::dial::CallStream;
use peer_core::node::{self, RunningNode};
use prost::Message;
use proto::common::{Block, ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{SeekInfo, SeekNewest, SeekOldest, SeekPosition, SeekSpecified, seek_position};
use proto::protos::deliver_client::DeliverClient;
use proto::protos::{DeliverResponse, deliver_response};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CHANNEL: &str = "mychannel";

struct Orgs {
    orderer: Org,
    org1: Org,
    org2: Org,
    /// Not a member of the channel.
    org3: Org,
}

fn orgs() -> Orgs {
    Orgs {
        orderer: org("OrdererMSP", "example.com"),
        org1: org("Org1MSP", "org1.example.com"),
        org2: org("Org2MSP", "org2.example.com"),
        org3: org("Org3MSP", "org3.example.com"),
    }
}

fn genesis_org(org: &Org) -> GenesisOrg<'_> {
    GenesisOrg { name: org.spec.msp_id.clone(), org, anchor_peers: Vec::new(), orderer_endpoints: Vec::new() }
}

/// The channel's genesis block with the given application orgs.
fn genesis(orgs: &Orgs, members: &[&Org]) -> Block {
    let mut spec = GenesisSpec::new(CHANNEL, epoch());
    spec.orderer_orgs.push(GenesisOrg { orderer_endpoints: vec!["orderer.example.com:7050".into()], ..genesis_org(&orgs.orderer) });
    spec.application_orgs = members.iter().map(|o| genesis_org(o)).collect();
    genesis_block(&spec).unwrap()
}

/// A started node plus what the tests drive it with.
struct Fixture {
    network: Arc<MemNetwork>,
    clock: Arc<ManualClock>,
    running: RunningNode,
    orgs: Orgs,
    orderer: LocalMsp,
    tip: Block,
    rng: ChaCha20Rng,
    logs: MemorySink,
    _log_guard: tracing::subscriber::DefaultGuard,
}

impl Fixture {
    /// A node with `mychannel` (Org1 and Org2) at `height` blocks; `env` adds CORE_* variables.
    async fn start(height: u64, env: &[(&str, &str)]) -> Fixture {
        let network = Arc::new(MemNetwork::default());
        let clock = ManualClock::new();
        let peer_env = Env::new(clock.clone(), network.clone(), Arc::new(MemStorage::default()), [3; 32]);
        let logs = MemorySink::new();
        let config =
            LoggingConfig { spec: "common.deliver,common.deliverevents=debug:info".into(), format: "%{module} %{level} %{message}".into() };
        let (layer, handle) = logging::layer(&config, Arc::new(epoch), logs.sink()).unwrap();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer);
        let log_guard = tracing::subscriber::set_default(subscriber);

        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("sampleconfig");
        let text = std::fs::read_to_string(sample.join("core.yaml")).unwrap();
        let mut vars = EnvVars::new().with("CORE_PEER_FILESYSTEMPATH", "/mem/data");
        for (name, value) in env {
            vars = vars.with(name, value);
        }
        let config: Config = Config::from_yaml(&text, &sample.join("core.yaml"), &vars).unwrap().config;
        let msp = LocalMsp::load(&sample.join("msp"), "SampleOrg", None, epoch()).unwrap();
        let setup = node::Setup::new(config, msp, Arc::new(handle), "deliver test");
        let running = node::start(peer_env, setup).await.unwrap();

        let orgs = orgs();
        let genesis = genesis(&orgs, &[&orgs.org1, &orgs.org2]);
        running.channels.join(&genesis).unwrap();
        let orderer = admin(&orgs.orderer);
        let mut fixture = Fixture {
            network,
            clock,
            running,
            orgs,
            orderer,
            tip: genesis,
            rng: ChaCha20Rng::seed_from_u64(11),
            logs,
            _log_guard: log_guard,
        };
        while fixture.height() < height {
            fixture.append();
        }
        fixture
    }

    fn height(&self) -> u64 {
        self.running.channels.ledger(CHANNEL).unwrap().height()
    }

    /// Appends the next block (one endorser transaction), signed by the orderer org.
    fn append(&mut self) {
        let number = self.height();
        let tx = envelope(HeaderType::EndorserTransaction, CHANNEL, &format!("tx-{number}"), b"");
        let mut block = new_block(number, &header_hash(self.tip.header.as_ref().unwrap()), vec![tx]);
        sign_block(&mut block, &self.orderer, 0, &mut self.rng);
        self.append_block(block);
    }

    fn append_block(&mut self, block: Block) {
        self.running.channels.append(CHANNEL, &block).unwrap();
        self.tip = block;
    }

    async fn client(&self) -> DeliverClient<tonic::transport::Channel> {
        let network = self.network.clone();
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let connect = network.connect(&HostPort::new("peer", 7051), Duration::from_secs(1));
            async move { connect.await.map(hyper_util::rt::TokioIo::new) }
        });
        let channel = tonic::transport::Endpoint::from_static("http://peer:7051").connect_with_connector(connector).await.unwrap();
        DeliverClient::new(channel)
    }

    /// Opens a Deliver stream; the sender feeds it envelopes.
    /// A Deliver stream, opened as a Go client opens one: the call starts without waiting for
    /// the response headers, which the server sends with its first message.
    async fn open(&self) -> Stream {
        let (requests, queue) = mpsc::channel(8);
        let mut client = self.client().await;
        let responses = CallStream::new(async move { client.deliver(ReceiverStream::new(queue)).await });
        Stream { requests, responses }
    }

    fn logs(&self) -> String {
        self.logs.lines().join("\n")
    }

    /// `GET /metrics` on the node's operations server, parsed.
    async fn metrics(&self) -> (Exposition, String) {
        crate::metrics::scrape_node(&self.network, &self.running).await
    }
}

struct Stream {
    requests: mpsc::Sender<Envelope>,
    responses: CallStream<DeliverResponse>,
}

/// What came back for one request: the block numbers, then the status (None if the stream
/// ended without one).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    blocks: Vec<u64>,
    status: Option<FabricStatus>,
}

impl Stream {
    async fn ask(&mut self, envelope: Envelope) -> Answer {
        self.requests.send(envelope).await.unwrap();
        self.read().await
    }

    async fn read(&mut self) -> Answer {
        let mut blocks = Vec::new();
        loop {
            let Some(response) = self.responses.message().await.unwrap() else { return Answer { blocks, status: None } };
            match response.r#type.unwrap() {
                deliver_response::Type::Block(block) => blocks.push(block.header.unwrap().number),
                deliver_response::Type::Status(status) => {
                    return Answer { blocks, status: Some(FabricStatus::try_from(status).unwrap()) };
                }
                other => panic!("unexpected response {other:?}"),
            }
        }
    }

    /// The stream has ended (the server closed it after a failure status).
    async fn assert_ended(&mut self) {
        assert!(self.responses.message().await.unwrap().is_none());
    }
}

fn answer(blocks: impl IntoIterator<Item = u64>, status: FabricStatus) -> Answer {
    Answer { blocks: blocks.into_iter().collect(), status: Some(status) }
}

fn oldest() -> SeekPosition {
    SeekPosition { r#type: Some(seek_position::Type::Oldest(SeekOldest {})) }
}

fn newest() -> SeekPosition {
    SeekPosition { r#type: Some(seek_position::Type::Newest(SeekNewest {})) }
}

fn at(number: u64) -> SeekPosition {
    SeekPosition { r#type: Some(seek_position::Type::Specified(SeekSpecified { number })) }
}

fn seek(start: SeekPosition, stop: SeekPosition, behavior: SeekBehavior) -> SeekInfo {
    SeekInfo { start: Some(start), stop: Some(stop), behavior: behavior as i32, ..SeekInfo::default() }
}

/// A DELIVER_SEEK_INFO envelope for `channel` at `time`, created and signed by `signer`.
fn request_at(signer: &LocalMsp, channel: &str, time: SystemTime, seek_info: &SeekInfo) -> Envelope {
    let since = time.duration_since(UNIX_EPOCH).unwrap();
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        channel_id: channel.into(),
        timestamp: Some(prost_types::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap(),
            nanos: i32::try_from(since.subsec_nanos()).unwrap(),
        }),
        ..ChannelHeader::default()
    };
    let signature_header = SignatureHeader { creator: signer.identity.serialize(), nonce: vec![1; 24] };
    let payload = Payload {
        header: Some(Header { channel_header: channel_header.encode_to_vec(), signature_header: signature_header.encode_to_vec() }),
        data: seek_info.encode_to_vec(),
    }
    .encode_to_vec();
    Envelope { signature: signer.sign(&payload), payload }
}

fn request(signer: &LocalMsp, seek_info: &SeekInfo) -> Envelope {
    request_at(signer, CHANNEL, epoch(), seek_info)
}

#[tokio::test]
async fn seeks_oldest_specified_and_newest_on_one_stream() {
    let f = Fixture::start(5, &[]).await;
    let client = admin(&f.orgs.org1);
    let mut stream = f.open().await;
    let ready = SeekBehavior::BlockUntilReady;
    assert_eq!(stream.ask(request(&client, &seek(oldest(), newest(), ready))).await, answer(0..5, FabricStatus::Success));
    // Further SeekInfo requests on the same stream.
    assert_eq!(stream.ask(request(&client, &seek(at(2), at(3), ready))).await, answer(2..4, FabricStatus::Success));
    assert_eq!(stream.ask(request(&client, &seek(newest(), newest(), ready))).await, answer([4], FabricStatus::Success));
    assert_eq!(stream.ask(request(&client, &seek(oldest(), oldest(), ready))).await, answer([0], FabricStatus::Success));
    assert_eq!(stream.ask(request(&client, &seek(at(3), at(3), SeekBehavior::FailIfNotReady))).await, answer([3], FabricStatus::Success));
    // Beyond the height with FAIL_IF_NOT_READY: NOT_FOUND, and the stream ends.
    assert_eq!(stream.ask(request(&client, &seek(at(5), at(6), SeekBehavior::FailIfNotReady))).await, answer([], FabricStatus::NotFound));
    stream.assert_ended().await;

    // Start after stop: BAD_REQUEST.
    let mut stream = f.open().await;
    assert_eq!(stream.ask(request(&client, &seek(at(3), at(2), ready))).await, answer([], FabricStatus::BadRequest));
    stream.assert_ended().await;
    // A specified start beyond the height is NOT_FOUND even when waiting (Fabric's iterator).
    let mut stream = f.open().await;
    assert_eq!(stream.ask(request(&client, &seek(at(9), at(10), ready))).await, answer([], FabricStatus::NotFound));
    // FAIL_IF_NOT_READY delivers what exists, then fails at the first missing block.
    let mut stream = f.open().await;
    assert_eq!(stream.ask(request(&client, &seek(at(3), at(8), SeekBehavior::FailIfNotReady))).await, answer(3..5, FabricStatus::NotFound));

    let logs = f.logs();
    for needle in [
        "common.deliver DEBUG Starting new deliver loop for 10.0.0.1:40000",
        "common.deliver DEBUG [channel: mychannel] Received seekInfo (0x1) start:<oldest:<> > stop:<newest:<> >  from 10.0.0.1:40000",
        "common.deliver DEBUG [channel: mychannel] Delivering block [4] for (0x1) for 10.0.0.1:40000",
        "common.deliver DEBUG [channel: mychannel] Done delivering to 10.0.0.1:40000 for (0x1)",
        "common.deliver DEBUG Waiting for new SeekInfo from 10.0.0.1:40000",
        "common.deliver WARN [channel: mychannel] Received invalid seekInfo message from 10.0.0.1:40000: start number 3 greater than stop number 2",
        "common.deliver ERROR [channel: mychannel] Error reading from channel, cause was: NOT_FOUND",
        "common.deliverevents DEBUG Starting new Deliver handler",
    ] {
        assert!(logs.contains(needle), "{needle:?} missing from:\n{logs}");
    }
}

#[tokio::test]
async fn block_until_ready_waits_for_appended_blocks() {
    let mut f = Fixture::start(3, &[]).await;
    let client = admin(&f.orgs.org2);
    let mut stream = f.open().await;
    stream.requests.send(request(&client, &seek(at(2), at(4), SeekBehavior::BlockUntilReady))).await.unwrap();
    let first = stream.responses.message().await.unwrap().unwrap();
    assert!(matches!(first.r#type, Some(deliver_response::Type::Block(ref b)) if b.header.as_ref().unwrap().number == 2));
    // Block 3 does not exist yet: nothing arrives (a zero timeout polls once).
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(tokio::time::timeout(Duration::ZERO, stream.responses.message()).await.is_err());
    f.append();
    f.append();
    assert_eq!(stream.read().await, answer(3..5, FabricStatus::Success));

    // `newest` as the stop is the height when the request arrived.
    let mut stream = f.open().await;
    stream.requests.send(request(&client, &seek(at(4), newest(), SeekBehavior::BlockUntilReady))).await.unwrap();
    assert_eq!(stream.read().await, answer([4], FabricStatus::Success));
}

#[tokio::test]
async fn rejected_requests_get_fabrics_statuses_and_end_the_stream() {
    let f = Fixture::start(2, &[]).await;
    let org1 = admin(&f.orgs.org1);
    let all = seek(oldest(), newest(), SeekBehavior::BlockUntilReady);
    let check = |envelope: Envelope, status: FabricStatus| {
        let f = &f;
        async move {
            let mut stream = f.open().await;
            assert_eq!(stream.ask(envelope).await, answer([], status));
            stream.assert_ended().await;
        }
    };
    // Unknown channel.
    check(request_at(&org1, "otherchannel", epoch(), &all), FabricStatus::NotFound).await;
    // An org that is not a member of the channel.
    check(request(&admin(&f.orgs.org3), &all), FabricStatus::Forbidden).await;
    // A signature that is not the creator's.
    let mut forged = request(&org1, &all);
    forged.signature = admin(&f.orgs.org2).sign(&forged.payload);
    check(forged, FabricStatus::Forbidden).await;
    // Timestamps outside peer.authentication.timewindow (15m) either way.
    check(request_at(&org1, CHANNEL, epoch() - Duration::from_secs(16 * 60), &all), FabricStatus::BadRequest).await;
    check(request_at(&org1, CHANNEL, epoch() + Duration::from_secs(16 * 60), &all), FabricStatus::BadRequest).await;
    // ... and just inside it.
    let mut stream = f.open().await;
    let inside = request_at(&org1, CHANNEL, epoch() - Duration::from_secs(14 * 60), &all);
    assert_eq!(stream.ask(inside).await, answer(0..2, FabricStatus::Success));
    // Garbage of every layer.
    check(Envelope { payload: vec![0xff; 7], signature: Vec::new() }, FabricStatus::BadRequest).await;
    check(Envelope::default(), FabricStatus::BadRequest).await;
    let mut no_timestamp = Payload::decode(request(&org1, &all).payload.as_slice()).unwrap();
    let header = no_timestamp.header.as_mut().unwrap();
    let mut channel_header = ChannelHeader::decode(header.channel_header.as_slice()).unwrap();
    channel_header.timestamp = None;
    header.channel_header = channel_header.encode_to_vec();
    check(
        Envelope { signature: org1.sign(&no_timestamp.encode_to_vec()), payload: no_timestamp.encode_to_vec() },
        FabricStatus::BadRequest,
    )
    .await;
    let mut bad_seek = Payload::decode(request(&org1, &all).payload.as_slice()).unwrap();
    bad_seek.data = vec![0x0a, 0xff, 0x01];
    check(Envelope { signature: org1.sign(&bad_seek.encode_to_vec()), payload: bad_seek.encode_to_vec() }, FabricStatus::BadRequest).await;
    let no_start = SeekInfo { stop: Some(newest()), ..SeekInfo::default() };
    check(request(&org1, &no_start), FabricStatus::BadRequest).await;
    // Random bytes in every field: a status, never a panic.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for _ in 0..32 {
        let mut payload = vec![0u8; usize::try_from(rng.next_u32() % 300).unwrap()];
        rng.fill_bytes(&mut payload);
        let mut stream = f.open().await;
        let answer = stream.ask(Envelope { payload, signature: vec![1, 2, 3] }).await;
        assert!(answer.blocks.is_empty());
        assert_ne!(answer.status, Some(FabricStatus::Success));
    }
    // A message larger than a seek request: refused by the decoder with a gRPC error.
    let mut stream = f.open().await;
    stream.requests.send(Envelope { payload: vec![0; 2 << 20], signature: Vec::new() }).await.unwrap();
    let err = stream.responses.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");

    let logs = f.logs();
    for needle in [
        "common.deliver DEBUG Rejecting deliver for 10.0.0.1:40000 because channel otherchannel not found",
        "common.deliver WARN [channel: mychannel] Client 10.0.0.1:40000 is not authorized: Failed evaluating policy on signed data during check policy on channel [mychannel] with policy [/Channel/Application/Readers]",
        "common.deliver WARN error parsing envelope from 10.0.0.1:40000: envelope timestamp 2025-05-31 23:44:00 +0000 UTC is more than 15m0s apart from current server time 2025-06-01 00:00:00 +0000 UTC",
        "common.deliver WARN error parsing envelope from 10.0.0.1:40000: channel header in envelope must contain timestamp",
        "common.deliver WARN error parsing envelope from 10.0.0.1:40000: envelope has no header",
        "with malformed seekInfo payload",
        "with missing start or stop <nil>, newest:<>",
    ] {
        assert!(logs.contains(needle), "{needle:?} missing from:\n{logs}");
    }
}

#[tokio::test]
async fn access_is_re_evaluated_on_expiry_and_on_a_new_config() {
    let mut f = Fixture::start(2, &[]).await;
    let org1 = admin(&f.orgs.org1);
    let org2 = admin(&f.orgs.org2);
    let follow = seek(at(2), at(u64::MAX), SeekBehavior::BlockUntilReady);

    // Org2 follows the chain; a config block that drops Org2 ends its stream with FORBIDDEN,
    // while Org1 still receives it.
    let mut org2_stream = f.open().await;
    org2_stream.requests.send(request(&org2, &follow)).await.unwrap();
    let mut org1_stream = f.open().await;
    org1_stream.requests.send(request(&org1, &follow)).await.unwrap();
    f.append();
    for stream in [&mut org1_stream, &mut org2_stream] {
        let block = stream.responses.message().await.unwrap().unwrap();
        assert!(matches!(block.r#type, Some(deliver_response::Type::Block(_))));
    }
    let config_block = config_update(&f, &[&f.orgs.org1]);
    f.append_block(config_block);
    assert_eq!(org2_stream.read().await, answer([], FabricStatus::Forbidden));
    let block = org1_stream.responses.message().await.unwrap().unwrap();
    assert!(matches!(block.r#type, Some(deliver_response::Type::Block(ref b)) if b.header.as_ref().unwrap().number == 3));

    // The client certificate expires (the generated ones end 2049-12-31) while Org1 waits.
    f.clock.set_wall_clock(UNIX_EPOCH + Duration::from_secs(2_524_608_000 + 3600));
    f.append();
    assert_eq!(org1_stream.read().await, answer([], FabricStatus::Forbidden));
    // A new request with the expired certificate is refused before any block.
    let mut stream = f.open().await;
    let now = f.clock.wall_clock();
    assert_eq!(stream.ask(request_at(&org1, CHANNEL, now, &follow)).await, answer([], FabricStatus::Forbidden));
    let logs = f.logs();
    assert!(
        logs.contains(
            "Client authorization revoked for deliver request from 10.0.0.1:40000: deliver client identity expired 1h0m1s before"
        ),
        "{logs}"
    );
}

/// A config block (sequence 1) whose application orgs are `members`, signed by the orderer.
fn config_update(f: &Fixture, members: &[&Org]) -> Block {
    let template = genesis(&f.orgs, members);
    let mut tx = Envelope::decode(template.data.as_ref().unwrap().data[0].as_slice()).unwrap();
    let mut payload = Payload::decode(tx.payload.as_slice()).unwrap();
    let mut config = proto::common::ConfigEnvelope::decode(payload.data.as_slice()).unwrap();
    config.config.as_mut().unwrap().sequence = 1;
    payload.data = config.encode_to_vec();
    tx.payload = payload.encode_to_vec();
    let number = f.tip.header.as_ref().unwrap().number + 1;
    let mut block = new_block(number, &header_hash(f.tip.header.as_ref().unwrap()), vec![tx.encode_to_vec()]);
    sign_block(&mut block, &f.orderer, number, &mut ChaCha20Rng::seed_from_u64(number));
    block
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_session_and_frees_its_slot() {
    let f = Fixture::start(2, &[("CORE_PEER_LIMITS_CONCURRENCY_DELIVERSERVICE", "1")]).await;
    let client = admin(&f.orgs.org1);
    let ledger = f.running.channels.ledger(CHANNEL).unwrap();
    let idle = Arc::strong_count(&ledger);
    let mut stream = f.open().await;
    stream.requests.send(request(&client, &seek(oldest(), at(u64::MAX), SeekBehavior::BlockUntilReady))).await.unwrap();
    assert_eq!(
        stream.responses.message().await.unwrap().unwrap().r#type.map(|t| matches!(t, deliver_response::Type::Block(_))),
        Some(true)
    );
    assert_eq!(
        stream.responses.message().await.unwrap().unwrap().r#type.map(|t| matches!(t, deliver_response::Type::Block(_))),
        Some(true)
    );
    // The session waits for block 2 and holds the ledger.
    assert_eq!(Arc::strong_count(&ledger), idle + 1);

    // Over the limit: a second stream is refused.
    let (_requests, queue) = mpsc::channel::<Envelope>(1);
    let refused = f.client().await.deliver(ReceiverStream::new(queue)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "too many requests for /protos.Deliver, exceeding concurrency limit (1)");

    // The client leaves mid-stream: its session ends and lets go of the ledger and the slot.
    drop(stream);
    for _ in 0..10_000 {
        if Arc::strong_count(&ledger) == idle {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(Arc::strong_count(&ledger), idle, "the session outlived its client");
    let mut stream = f.open().await;
    assert_eq!(stream.ask(request(&client, &seek(at(1), at(1), SeekBehavior::BlockUntilReady))).await, answer([1], FabricStatus::Success));
}

#[tokio::test]
async fn filtered_blocks_carry_transaction_ids_types_codes_and_events() {
    use proto::protos::{
        ChaincodeAction, ChaincodeActionPayload, ChaincodeEndorsedAction, ChaincodeEvent, ProposalResponsePayload, Transaction,
        TransactionAction, TxValidationCode, filtered_transaction,
    };
    let mut f = Fixture::start(1, &[]).await;
    let event =
        ChaincodeEvent { chaincode_id: "basic".into(), tx_id: "tx-ev".into(), event_name: "Created".into(), payload: b"secret".to_vec() };
    let action = ChaincodeAction { events: event.encode_to_vec(), ..ChaincodeAction::default() };
    let response = ProposalResponsePayload { extension: action.encode_to_vec(), ..ProposalResponsePayload::default() };
    let payload = ChaincodeActionPayload {
        action: Some(ChaincodeEndorsedAction { proposal_response_payload: response.encode_to_vec(), endorsements: Vec::new() }),
        ..ChaincodeActionPayload::default()
    };
    let transaction = Transaction { actions: vec![TransactionAction { header: Vec::new(), payload: payload.encode_to_vec() }] };
    let txs = vec![envelope(HeaderType::EndorserTransaction, CHANNEL, "tx-ev", &transaction.encode_to_vec()), b"\xff\xff".to_vec()];
    let mut block = new_block(1, &header_hash(f.tip.header.as_ref().unwrap()), txs);
    block.metadata.as_mut().unwrap().metadata[2] = vec![TxValidationCode::Valid as u8, 0];
    sign_block(&mut block, &f.orderer, 0, &mut ChaCha20Rng::seed_from_u64(1));
    f.append_block(block);

    let (requests, queue) = mpsc::channel(1);
    // Queued first: the server answers (headers included) with its first message.
    requests.send(request(&admin(&f.orgs.org1), &seek(oldest(), newest(), SeekBehavior::FailIfNotReady))).await.unwrap();
    let mut responses = f.client().await.deliver_filtered(ReceiverStream::new(queue)).await.unwrap().into_inner();
    let mut filtered = Vec::new();
    while let Some(response) = responses.message().await.unwrap() {
        match response.r#type.unwrap() {
            deliver_response::Type::FilteredBlock(block) => filtered.push(block),
            deliver_response::Type::Status(status) => {
                assert_eq!(status, FabricStatus::Success as i32);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(filtered.len(), 2);
    assert_eq!((filtered[0].channel_id.as_str(), filtered[0].number), (CHANNEL, 0));
    let genesis_tx = &filtered[0].filtered_transactions[0];
    assert_eq!(genesis_tx.r#type, HeaderType::Config as i32);
    // peer-core does not validate transactions yet: no flags, NOT_VALIDATED.
    assert_eq!(genesis_tx.tx_validation_code, TxValidationCode::NotValidated as i32);
    assert_eq!(filtered[1].number, 1);
    // The undecodable second envelope is skipped.
    assert_eq!(filtered[1].filtered_transactions.len(), 1);
    let tx = &filtered[1].filtered_transactions[0];
    assert_eq!((tx.txid.as_str(), tx.r#type, tx.tx_validation_code), ("tx-ev", HeaderType::EndorserTransaction as i32, 0));
    let Some(filtered_transaction::Data::TransactionActions(actions)) = &tx.data else { panic!("no actions") };
    let event = actions.chaincode_actions[0].chaincode_event.as_ref().unwrap();
    assert_eq!((event.chaincode_id.as_str(), event.event_name.as_str(), event.tx_id.as_str()), ("basic", "Created", "tx-ev"));
    assert!(event.payload.is_empty(), "filtered events carry no payload");

    // Private data stays unimplemented.
    let (_requests, queue) = mpsc::channel::<Envelope>(1);
    let err = f.client().await.deliver_with_private_data(ReceiverStream::new(queue)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

/// Fabric's deliver metrics and the gRPC stream metrics count streams, requests, blocks and
/// messages as Fabric's do: a request for a joined channel is received and completed (successful
/// with status SUCCESS), every block sent counts, a stream ends OK, one whose client leaves ends
/// Canceled, and one refused by the concurrency limit is a gRPC stream but no deliver stream.
#[tokio::test]
async fn deliver_streams_requests_blocks_and_messages_are_counted() {
    let f = Fixture::start(3, &[("CORE_PEER_LIMITS_CONCURRENCY_DELIVERSERVICE", "1")]).await;
    let client = admin(&f.orgs.org1);
    let mut first = f.open().await;
    assert_eq!(
        first.ask(request(&client, &seek(oldest(), newest(), SeekBehavior::BlockUntilReady))).await,
        answer(0..3, FabricStatus::Success)
    );
    let beyond = seek(at(5), at(6), SeekBehavior::FailIfNotReady);
    assert_eq!(first.ask(request(&client, &beyond)).await, answer([], FabricStatus::NotFound));
    first.assert_ended().await;
    // A request for a channel this peer has not joined is not a deliver request (Fabric's either).
    let mut elsewhere = f.open().await;
    let unknown = request_at(&client, "otherchannel", epoch(), &seek(oldest(), oldest(), SeekBehavior::BlockUntilReady));
    assert_eq!(elsewhere.ask(unknown).await, answer([], FabricStatus::NotFound));
    elsewhere.assert_ended().await;
    drop((first, elsewhere));

    let mut second = f.open().await;
    assert_eq!(
        second.ask(request(&client, &seek(oldest(), oldest(), SeekBehavior::BlockUntilReady))).await,
        answer([0], FabricStatus::Success)
    );
    let (_requests, queue) = mpsc::channel::<Envelope>(1);
    let refused = f.client().await.deliver(ReceiverStream::new(queue)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    drop(second);

    let deliver = [("service", "protos_Deliver"), ("method", "Deliver")];
    let block = [("channel", CHANNEL), ("filtered", "false"), ("data_type", "block")];
    let (mut metrics, mut text) = f.metrics().await;
    for _ in 0..200 {
        if exposition::value(&metrics, "deliver_streams_closed", &[]) == 3.0
            && exposition::value(&metrics, "grpc_server_stream_requests_completed", &deliver) == 4.0
        {
            break;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        (metrics, text) = f.metrics().await;
    }
    exposition::assert_fabric(
        &metrics,
        &[exposition::ALWAYS, exposition::CHANNEL, exposition::STREAM, exposition::DELIVER].concat(),
        &text,
    );
    let value = |name: &str, labels: &[(&str, &str)]| exposition::value(&metrics, name, labels);
    assert_eq!(value("deliver_streams_opened", &[]), 3.0, "{text}");
    assert_eq!(value("deliver_streams_closed", &[]), 3.0, "{text}");
    assert_eq!(value("deliver_requests_received", &block), 3.0, "{text}");
    assert_eq!(value("deliver_requests_completed", &[block.as_slice(), &[("success", "true")]].concat()), 2.0, "{text}");
    assert_eq!(value("deliver_requests_completed", &[block.as_slice(), &[("success", "false")]].concat()), 1.0, "{text}");
    assert_eq!(value("deliver_requests_received", &[]), 3.0, "only mychannel's: {text}");
    assert_eq!(value("deliver_blocks_sent", &block), 4.0, "{text}");
    assert_eq!(value("grpc_server_stream_requests_received", &deliver), 4.0, "{text}");
    for (code, count) in [("OK", 2.0), ("Canceled", 1.0), ("ResourceExhausted", 1.0)] {
        let labels = [deliver.as_slice(), &[("code", code)]].concat();
        assert_eq!(value("grpc_server_stream_requests_completed", &labels), count, "{code}: {text}");
        assert_eq!(value("grpc_server_stream_request_duration_count", &labels), count, "{code}: {text}");
    }
    // Received: the four envelopes; sent: 3 blocks and 2 statuses, a status, a block and a status.
    assert_eq!(value("grpc_server_stream_messages_received", &deliver), 4.0, "{text}");
    assert_eq!(value("grpc_server_stream_messages_sent", &deliver), 8.0, "{text}");
    // Each `open` dialed a connection of its own; each finished its handshake.
    assert_eq!(value("grpc_comm_conn_opened", &[]), 4.0, "{text}");
    assert!(value("grpc_comm_conn_closed", &[]) <= 4.0, "{text}");
    // The test's logging layer counted what it checked and wrote.
    assert!(value("logging_entries_written", &[("level", "debug")]) > 0.0, "{text}");
    assert!(value("logging_entries_checked", &[("level", "debug")]) >= value("logging_entries_written", &[("level", "debug")]), "{text}");
}
