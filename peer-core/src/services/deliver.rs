//! `protos.Deliver`: blocks of a joined channel, streamed to clients per SeekInfo, with the
//! behaviour, status codes and log lines of Fabric's `common/deliver` handler and the peer's
//! `core/peer/deliverevents.go`.
//!
//! One stream is one [`Session`]: it reads a SeekInfo envelope, checks it (header, timestamp
//! window, channel, access), sends the blocks from start to stop, ends with a status, and reads
//! the next envelope. A status other than SUCCESS ends the stream (as Fabric's handler does).
//! Waiting for blocks that do not exist yet uses the ledger's height watch; nothing polls.
//!
//! The session is a future owned and driven by the response stream (no task of its own): when
//! the client goes away, hyper drops the stream and with it the session. Nothing outlives the
//! stream.
//!
//! The same session serves an ordering service's `orderer.AtomicBroadcast/Deliver` ([`OrdererDeliver`],
//! used by the simulator's orderer): full blocks only, access by a fixed policy (Fabric's orderers
//! check `/Channel/Readers`) instead of the peer's ACLs, and the responses converted at the edge
//! into `orderer.DeliverResponse` (the same oneof shape in another package).
//!
//! The peer's sessions count Fabric's deliver metrics (streams opened and closed, requests received
//! and completed, blocks sent; see `services::metrics::DeliverMetrics`); the orderer's do not.
//!
//! Deliberately not done: TLS binding of `tls_cert_hash` (peer-core serves no TLS yet), private
//! data (`DeliverWithPrivateData` answers UNIMPLEMENTED), and Fabric's check for a consenter error
//! (a peer's channels never report one).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use proto::common::{Block, BlockMetadataIndex, ChannelHeader, Envelope, HeaderType, Payload, SignatureHeader, Status as FabricStatus};
use proto::orderer::seek_info::SeekBehavior;
use proto::orderer::{SeekInfo, SeekPosition, seek_position};
use proto::protos::deliver_server::Deliver;
use proto::protos::{DeliverResponse, FilteredBlock, FilteredTransaction, deliver_response};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, warn};

use super::metrics::DeliverMetrics;
use crate::channel::SignedData;
use crate::channels::Channels;
use crate::config::value::format_duration;
use crate::env::Clock;
use crate::ledger::channel::ChannelLedger;
use crate::metrics::Labels;
use crate::msp::{Identity, go_time};
use crate::net::tls::{RemoteTls, check_binding};

/// A deliver response stream (boxed, so services can name it).
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Fabric's logger for the deliver handler.
const DELIVER: &str = "common.deliver";
/// Fabric's logger for the peer's deliver server (filtered blocks).
const DELIVER_EVENTS: &str = "common.deliverevents";

/// The largest request envelope a deliver stream accepts. A SeekInfo envelope holds a header
/// with the creator's certificate and a few positions (a few KB); anything near this is not a
/// seek request. Applied as the service's decoding limit (tonic rejects larger messages with
/// OUT_OF_RANGE before decoding them).
pub const MAX_ENVELOPE_BYTES: usize = 1 << 20;

/// Responses queued between the session and the connection. Small, so a slow client holds
/// back the session (each entry may be a whole block) instead of memory growing.
const RESPONSE_QUEUE: usize = 4;

/// Fabric's default ACL policy for `event/Block` and `event/FilteredBlock`.
const CHANNEL_READERS: &str = "/Channel/Application/Readers";

/// The policy a Fabric orderer's deliver service checks (`policies.ChannelReaders`).
pub const ORDERER_READERS: &str = "/Channel/Readers";

/// Who may read a channel's blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadAccess {
    /// A peer: the ACL resource of the stream's kind (`event/Block`, `event/FilteredBlock`),
    /// `/Channel/Application/Readers` unless the channel's ACLs name another policy.
    Acl(&'static str),
    /// An orderer: one policy, by absolute path.
    Policy(&'static str),
}

/// `protos.Deliver`.
pub struct DeliverService {
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
    /// `peer.authentication.timewindow`: how far a request's timestamp may be from now.
    time_window: Duration,
    /// Fabric's deliver metrics, when registered ([`DeliverService::with_metrics`]).
    metrics: Option<DeliverMetrics>,
    /// The server requires client certificates (TLS and `clientAuthRequired`): each request's
    /// channel header must carry the hash of the client's certificate.
    binding: bool,
}

impl DeliverService {
    pub fn new(channels: Arc<Channels>, clock: Arc<dyn Clock>, time_window: Duration) -> DeliverService {
        DeliverService { channels, clock, time_window, metrics: None, binding: false }
    }

    /// Checks every request's TLS binding (Fabric's binding inspector, spec §4): for a server
    /// with TLS that requires client certificates.
    pub fn with_binding(mut self, binding: bool) -> DeliverService {
        self.binding = binding;
        self
    }

    /// Counts streams, requests and blocks in `metrics` (the node's registered ones).
    pub fn with_metrics(mut self, metrics: DeliverMetrics) -> DeliverService {
        self.metrics = Some(metrics);
        self
    }

    async fn open(&self, request: Request<Streaming<Envelope>>, kind: Kind) -> Response<BoxStream<DeliverResponse>> {
        let access = ReadAccess::Acl(kind.resource());
        let checks = Checks { channels: &self.channels, clock: &self.clock, time_window: self.time_window, binding: self.binding };
        let stream = open_session(checks, request, kind, access, self.metrics.clone());
        Response::new(headers_with_first_message(Box::pin(stream)).await)
    }
}

/// grpc-go sends a server stream's response headers with its first message (or, for a call that
/// ends without one, with its trailers), so Fabric's peer and orderer answer a Deliver call for a
/// block not cut yet only when it is. Tonic sends them as soon as the handler returns: this
/// returns only once the first message is ready, so a client sees the same wire behaviour as from
/// a Go server (and a client that bounds the wait for headers is caught in tests).
async fn headers_with_first_message<T: Send + 'static>(mut stream: BoxStream<T>) -> BoxStream<T> {
    match stream.next().await {
        Some(first) => Box::pin(tokio_stream::once(first).chain(stream)),
        None => Box::pin(tokio_stream::empty()),
    }
}

/// A session over `request`'s envelopes, owned by the returned response stream.
/// What every session of a server shares: the channels, the clock and the request checks.
struct Checks<'a> {
    channels: &'a Arc<Channels>,
    clock: &'a Arc<dyn Clock>,
    time_window: Duration,
    /// Check the TLS binding of each request.
    binding: bool,
}

fn open_session(
    checks: Checks<'_>,
    request: Request<Streaming<Envelope>>,
    kind: Kind,
    access: ReadAccess,
    metrics: Option<DeliverMetrics>,
) -> ResponseStream {
    let Checks { channels, clock, time_window, binding } = checks;
    let address = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
    let binding = binding.then(|| request.extensions().get::<RemoteTls>().and_then(|tls| tls.cert_hash));
    let (responses, queue) = mpsc::channel(RESPONSE_QUEUE);
    let session = Session {
        channels: channels.clone(),
        clock: clock.clone(),
        time_window,
        kind,
        access,
        address,
        responses,
        seeks: 0,
        metrics,
        request: None,
        binding,
    };
    let session = Box::pin(session.run(request.into_inner()));
    ResponseStream { queue, session: Some(session) }
}

/// An ordering service's `orderer.AtomicBroadcast/Deliver` over the same sessions as the peer's
/// `protos.Deliver`: full blocks, access by [`ORDERER_READERS`] (Fabric's orderer checks
/// `/Channel/Readers` and has no ACLs), the timestamp window of `General.Authentication.TimeWindow`.
pub struct OrdererDeliver {
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
    time_window: Duration,
    /// Mutual TLS: the orderer checks the binding as the peer does.
    binding: bool,
}

impl OrdererDeliver {
    pub fn new(channels: Arc<Channels>, clock: Arc<dyn Clock>, time_window: Duration) -> OrdererDeliver {
        OrdererDeliver { channels, clock, time_window, binding: false }
    }

    /// Checks every request's TLS binding (an orderer with mutual TLS).
    pub fn with_binding(mut self, binding: bool) -> OrdererDeliver {
        self.binding = binding;
        self
    }

    /// Answers one `Deliver` stream (its headers with the first message, as a Go orderer); the
    /// session lives as long as the returned stream.
    pub async fn deliver(&self, request: Request<Streaming<Envelope>>) -> Response<BoxStream<proto::orderer::DeliverResponse>> {
        let checks = Checks { channels: &self.channels, clock: &self.clock, time_window: self.time_window, binding: self.binding };
        let stream = open_session(checks, request, Kind::Blocks, ReadAccess::Policy(ORDERER_READERS), None);
        Response::new(headers_with_first_message(Box::pin(stream.map(|item| item.map(to_orderer_response)))).await)
    }
}

/// A `protos.DeliverResponse` as the orderer's `orderer.DeliverResponse` (same oneof numbers).
/// Only statuses and full blocks reach here (an orderer session is `Kind::Blocks`); anything
/// else would be a bug, answered with INTERNAL_SERVER_ERROR rather than a panic.
fn to_orderer_response(response: DeliverResponse) -> proto::orderer::DeliverResponse {
    use proto::orderer::deliver_response::Type as OrdererType;
    let r#type = match response.r#type {
        Some(deliver_response::Type::Status(status)) => Some(OrdererType::Status(status)),
        Some(deliver_response::Type::Block(block)) => Some(OrdererType::Block(block)),
        Some(deliver_response::Type::FilteredBlock(_) | deliver_response::Type::BlockAndPrivateData(_)) => {
            error!(target: DELIVER, func = "deliverBlocks", "an orderer deliver session produced a filtered block");
            Some(OrdererType::Status(FabricStatus::InternalServerError as i32))
        }
        None => None,
    };
    proto::orderer::DeliverResponse { r#type }
}

#[tonic::async_trait]
impl Deliver for DeliverService {
    type DeliverStream = BoxStream<DeliverResponse>;
    type DeliverFilteredStream = BoxStream<DeliverResponse>;
    type DeliverWithPrivateDataStream = BoxStream<DeliverResponse>;

    async fn deliver(&self, request: Request<Streaming<Envelope>>) -> Result<Response<Self::DeliverStream>, Status> {
        debug!(target: DELIVER_EVENTS, func = "Deliver", "Starting new Deliver handler");
        Ok(self.open(request, Kind::Blocks).await)
    }

    async fn deliver_filtered(&self, request: Request<Streaming<Envelope>>) -> Result<Response<Self::DeliverFilteredStream>, Status> {
        debug!(target: DELIVER_EVENTS, func = "DeliverFiltered", "Starting new DeliverFiltered handler");
        Ok(self.open(request, Kind::Filtered).await)
    }

    async fn deliver_with_private_data(
        &self,
        _request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverWithPrivateDataStream>, Status> {
        Err(Status::unimplemented("private data is not supported by peer-core"))
    }
}

/// The response stream of one deliver call. It owns the session as a future and drives it
/// whenever the connection polls for the next response, so the session is no task of its own:
/// dropping the stream (the client went away, or the server closed the connection) drops the
/// session at once, with its handles on the channels and the ledger.
struct ResponseStream {
    queue: mpsc::Receiver<Result<DeliverResponse, Status>>,
    /// `None` once the session has finished (the queue then drains and ends).
    session: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Stream for ResponseStream {
    type Item = Result<DeliverResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Drive the session first: it fills the queue (and waits on it when the queue is full;
        // taking an item below wakes this same task to drive it again).
        if let Some(session) = self.session.as_mut()
            && session.as_mut().poll(cx).is_ready()
        {
            self.session = None;
        }
        self.queue.poll_recv(cx)
    }
}

/// Full blocks (`Deliver`) or filtered ones (`DeliverFiltered`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Blocks,
    Filtered,
}

impl Kind {
    /// The ACL resource checked for this kind (Fabric's `resources.Event_*`).
    fn resource(self) -> &'static str {
        match self {
            Kind::Blocks => "event/Block",
            Kind::Filtered => "event/FilteredBlock",
        }
    }
}

/// The response queue is gone: the session ends without a status. (The queue's receiver owns
/// the session, so this is a defensive path.)
#[derive(Debug)]
struct Gone;

/// One deliver stream.
struct Session {
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
    time_window: Duration,
    kind: Kind,
    access: ReadAccess,
    /// The client's address, for log lines.
    address: String,
    responses: mpsc::Sender<Result<DeliverResponse, Status>>,
    /// SeekInfo requests handled so far on this stream; names a request in log lines where
    /// Fabric prints the SeekInfo's pointer (`(%p)`).
    seeks: u64,
    metrics: Option<DeliverMetrics>,
    /// The request being answered, once counted as received (completed when it ends, as failed
    /// if the session is dropped first).
    request: Option<CountedRequest>,
    /// With the TLS binding check on: the hash of the client certificate seen on the
    /// connection (`None` inside: the client sent none).
    binding: Option<Option<[u8; 32]>>,
}

/// A stream counted as opened; counted as closed when dropped (with its session).
struct CountedStream(DeliverMetrics);

impl CountedStream {
    fn open(metrics: &DeliverMetrics) -> CountedStream {
        metrics.streams_opened.inc();
        CountedStream(metrics.clone())
    }
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        self.0.streams_closed.inc();
    }
}

/// A SeekInfo request counted as received; counted as completed when dropped, successful only
/// after [`CountedRequest::succeeded`].
struct CountedRequest {
    metrics: DeliverMetrics,
    labels: Labels,
    success: bool,
}

impl CountedRequest {
    fn received(metrics: &DeliverMetrics, channel: &str, kind: Kind) -> CountedRequest {
        let labels = DeliverMetrics::request_labels(channel, kind == Kind::Filtered);
        metrics.requests_received.get_or_create(&labels).inc();
        CountedRequest { metrics: metrics.clone(), labels, success: false }
    }

    fn block_sent(&self) {
        self.metrics.blocks_sent.get_or_create(&self.labels).inc();
    }

    fn succeeded(mut self) {
        self.success = true;
    }
}

impl Drop for CountedRequest {
    fn drop(&mut self) {
        let mut labels = self.labels.clone();
        labels.push(("success".to_string(), self.success.to_string()));
        self.metrics.requests_completed.get_or_create(&labels).inc();
    }
}

impl Session {
    /// Fabric's `Handler.Handle`: one SeekInfo after another until EOF, an error, or a status
    /// other than SUCCESS.
    async fn run<S>(mut self, mut incoming: S)
    where
        S: Stream<Item = Result<Envelope, Status>> + Unpin + Send,
    {
        let address = self.address.clone();
        debug!(target: DELIVER, func = "Handle", "Starting new deliver loop for {address}");
        let _counted = self.metrics.as_ref().map(CountedStream::open);
        loop {
            debug!(target: DELIVER, func = "Handle", "Attempting to read seek info message from {address}");
            let envelope = match incoming.next().await {
                None => {
                    debug!(target: DELIVER, func = "Handle", "Received EOF from {address}, hangup");
                    return;
                }
                Some(Err(status)) => {
                    warn!(target: DELIVER, func = "Handle", "Error reading from {address}: {}", status.message());
                    let _ = self.responses.send(Err(status)).await;
                    return;
                }
                Some(Ok(envelope)) => envelope,
            };
            self.seeks += 1;
            let Ok(status) = self.deliver_blocks(&envelope).await else { return };
            // Completed before the status is sent, as Fabric's deferred count is.
            if let Some(request) = self.request.take()
                && status == FabricStatus::Success
            {
                request.succeeded();
            }
            if self.send(deliver_response::Type::Status(status as i32)).await.is_err() {
                warn!(target: DELIVER, func = "Handle", "Error sending to {address}: the client has gone");
                return;
            }
            if status != FabricStatus::Success {
                return;
            }
            debug!(target: DELIVER, func = "Handle", "Waiting for new SeekInfo from {address}");
        }
    }

    async fn send(&self, response: deliver_response::Type) -> Result<(), Gone> {
        self.responses.send(Ok(DeliverResponse { r#type: Some(response) })).await.map_err(|_| Gone)
    }

    /// Fabric's `deliverBlocks`: one SeekInfo request, answered with blocks and a status.
    async fn deliver_blocks(&mut self, envelope: &Envelope) -> Result<FabricStatus, Gone> {
        let address = self.address.clone();
        let seek = format!("{:#x}", self.seeks);
        let now = self.clock.wall_clock();
        let (payload, channel_header, signature_header) = match parse_envelope(envelope, now, self.time_window) {
            Ok(parsed) => parsed,
            Err(err) => {
                warn!(target: DELIVER, func = "deliverBlocks", "error parsing envelope from {address}: {err}");
                return Ok(FabricStatus::BadRequest);
            }
        };
        if let Some(client_cert) = self.binding
            && let Err(err) = check_binding(&channel_header.tls_cert_hash, client_cert)
        {
            warn!(target: DELIVER, func = "deliverBlocks", "error parsing envelope from {address}: {err}");
            return Ok(FabricStatus::BadRequest);
        }
        let channel = channel_header.channel_id.clone();
        let Some(ledger) = self.channels.ledger(&channel) else {
            // Fabric logs this at DEBUG: SDKs poll while waiting for a channel to be created.
            debug!(target: DELIVER, func = "deliverBlocks", "Rejecting deliver for {address} because channel {channel} not found");
            return Ok(FabricStatus::NotFound);
        };
        self.request = self.metrics.as_ref().map(|metrics| CountedRequest::received(metrics, &channel, self.kind));
        let seek_info = match SeekInfo::decode(payload.data.as_slice()) {
            Ok(seek_info) => seek_info,
            Err(err) => {
                warn!(
                    target: DELIVER,
                    func = "deliverBlocks",
                    "[channel: {channel}] Received a signed deliver request from {address} with malformed seekInfo payload: {err}"
                );
                return Ok(FabricStatus::BadRequest);
            }
        };

        let mut access = SessionAccess::new(
            SignedData {
                data: envelope.payload.clone(),
                identity: signature_header.creator.clone(),
                signature: envelope.signature.clone(),
            },
            channel.clone(),
            self.access,
        );
        if let Err(err) = access.evaluate(&self.channels, now) {
            warn!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Client {address} is not authorized: {err}");
            return Ok(FabricStatus::Forbidden);
        }

        let (Some(start), Some(stop)) = (seek_info.start.as_ref(), seek_info.stop.as_ref()) else {
            warn!(
                target: DELIVER,
                func = "deliverBlocks",
                "[channel: {channel}] Received seekInfo message from {address} with missing start or stop {}, {}",
                position_text(seek_info.start.as_ref()),
                position_text(seek_info.stop.as_ref())
            );
            return Ok(FabricStatus::BadRequest);
        };
        debug!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Received seekInfo ({seek}) {} from {address}", seek_info_text(&seek_info));

        // Fabric's `Reader().Iterator(start)`: where the cursor starts, or a cursor that fails
        // with NOT_FOUND (a specified start beyond the height, or no start type).
        let height = ledger.height();
        let cursor = match &start.r#type {
            Some(seek_position::Type::Oldest(_)) => Some(0),
            Some(seek_position::Type::Newest(_)) => Some(height.saturating_sub(1)),
            Some(seek_position::Type::Specified(specified)) => (specified.number <= height).then_some(specified.number),
            Some(seek_position::Type::NextCommit(_)) => Some(height),
            None => None,
        };
        let mut number = cursor.unwrap_or(0);
        let stop_number = match &stop.r#type {
            Some(seek_position::Type::Oldest(_)) => number,
            // Seeking only the newest block (start and stop both newest) does not re-read the
            // height, which could send two blocks when one is expected.
            Some(seek_position::Type::Newest(_)) if start == stop => number,
            Some(seek_position::Type::Newest(_)) => ledger.height().saturating_sub(1),
            Some(seek_position::Type::Specified(specified)) => {
                if specified.number < number {
                    warn!(
                        target: DELIVER,
                        func = "deliverBlocks",
                        "[channel: {channel}] Received invalid seekInfo message from {address}: start number {number} greater than stop number {}",
                        specified.number
                    );
                    return Ok(FabricStatus::BadRequest);
                }
                specified.number
            }
            // Fabric's switch has no case for these: the stop stays at 0.
            Some(seek_position::Type::NextCommit(_)) | None => 0,
        };
        let fail_if_not_ready = seek_info.behavior == SeekBehavior::FailIfNotReady as i32;
        let mut height_watch = ledger.subscribe();

        // The blocks. The loop ends when the block numbered `stop_number` has been sent. As in
        // Fabric, a stop below the start (possible with a `newest` stop) is never reached, and
        // the stream then follows the chain until the client leaves.
        loop {
            if fail_if_not_ready && number >= ledger.height() {
                return Ok(FabricStatus::NotFound);
            }
            if cursor.is_none() {
                error!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Error reading from channel, cause was: NOT_FOUND");
                return Ok(FabricStatus::NotFound);
            }
            let wanted = number;
            // A client that leaves drops the session here (see `ResponseStream`).
            let arrived = height_watch.wait_for(|height| *height > wanted).await.is_ok();
            let block = if arrived { read_block(&ledger, number) } else { None };
            let Some(block) = block else {
                error!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Error reading from channel, cause was: SERVICE_UNAVAILABLE");
                return Ok(FabricStatus::ServiceUnavailable);
            };
            number += 1;

            if let Err(err) = access.evaluate(&self.channels, self.clock.wall_clock()) {
                warn!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Client authorization revoked for deliver request from {address}: {err}");
                return Ok(FabricStatus::Forbidden);
            }
            debug!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Delivering block [{wanted}] for ({seek}) for {address}");
            let response = match self.kind {
                Kind::Blocks => deliver_response::Type::Block(block),
                Kind::Filtered => match filtered_block(&block) {
                    Ok(filtered) => deliver_response::Type::FilteredBlock(filtered),
                    Err(err) => {
                        // As Fabric's filtered sender: a BAD_REQUEST status in place of the
                        // block, and the loop goes on.
                        warn!(target: DELIVER_EVENTS, func = "SendBlockResponse", "Failed to generate filtered block due to: {err}");
                        deliver_response::Type::Status(FabricStatus::BadRequest as i32)
                    }
                },
            };
            let is_block = !matches!(response, deliver_response::Type::Status(_));
            if self.send(response).await.is_err() {
                warn!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Error sending to {address}: the client has gone");
                return Err(Gone);
            }
            if is_block && let Some(request) = &self.request {
                request.block_sent();
            }
            if wanted == stop_number {
                break;
            }
        }
        debug!(target: DELIVER, func = "deliverBlocks", "[channel: {channel}] Done delivering to {address} for ({seek})");
        Ok(FabricStatus::Success)
    }
}

/// Block `number` of a ledger that has it; `None` if the store fails to read it.
fn read_block(ledger: &ChannelLedger, number: u64) -> Option<Block> {
    match ledger.block(number) {
        Ok(block) => block,
        Err(err) => {
            error!(target: DELIVER, func = "deliverBlocks", "[channel: {}] reading block [{number}] failed: {err}", ledger.id());
            None
        }
    }
}

/// Fabric's `parseEnvelope` and `validateChannelHeader`: payload, header, channel and signature
/// headers decode, and the channel header's timestamp is within `window` of `now`.
fn parse_envelope(envelope: &Envelope, now: SystemTime, window: Duration) -> Result<(Payload, ChannelHeader, SignatureHeader), String> {
    let payload = Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("error unmarshalling Payload: {e}"))?;
    let header = payload.header.as_ref().ok_or("envelope has no header")?;
    let channel_header =
        ChannelHeader::decode(header.channel_header.as_slice()).map_err(|e| format!("error unmarshalling ChannelHeader: {e}"))?;
    let signature_header =
        SignatureHeader::decode(header.signature_header.as_slice()).map_err(|e| format!("error unmarshalling SignatureHeader: {e}"))?;
    let timestamp = channel_header.timestamp.as_ref().ok_or("channel header in envelope must contain timestamp")?;
    let envelope_nanos = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
    let now_nanos = nanos_since_epoch(now);
    if (now_nanos - envelope_nanos).unsigned_abs() > window.as_nanos() {
        let envelope_time = time_from_nanos(envelope_nanos)
            .map(go_time)
            .unwrap_or_else(|| format!("{} seconds {} nanoseconds since the epoch", timestamp.seconds, timestamp.nanos));
        return Err(format!(
            "envelope timestamp {envelope_time} is more than {} apart from current server time {}",
            format_duration(window),
            go_time(now)
        ));
    }
    Ok((payload, channel_header, signature_header))
}

fn nanos_since_epoch(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

fn time_from_nanos(nanos: i128) -> Option<SystemTime> {
    let magnitude = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).ok()?);
    if nanos >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) }
}

/// Fabric's `SessionAccessControl`: the access check of one SeekInfo request, evaluated before
/// every block but re-run only when the channel's config sequence has advanced; an expired
/// client certificate fails it at once.
struct SessionAccess {
    signed: SignedData,
    channel: String,
    access: ReadAccess,
    /// The client certificate's notAfter (none when the creator is not an X.509 identity).
    session_end: Option<SystemTime>,
    last_sequence: u64,
    used: bool,
}

impl SessionAccess {
    fn new(signed: SignedData, channel: String, access: ReadAccess) -> SessionAccess {
        let session_end =
            Identity::deserialize(&signed.identity).ok().map(|id| id.cert.tbs_certificate().validity().not_after.to_system_time());
        SessionAccess { signed, channel, access, session_end, last_sequence: 0, used: false }
    }

    fn evaluate(&mut self, channels: &Channels, now: SystemTime) -> Result<(), String> {
        if let Some(end) = self.session_end
            && let Ok(since) = now.duration_since(end)
            && !since.is_zero()
        {
            return Err(format!("deliver client identity expired {} before", format_duration(since)));
        }
        let config =
            channels.config(&self.channel).ok_or_else(|| format!("Failed to get policy manager for channel [{}]", self.channel))?;
        let mut needed = !self.used;
        if config.sequence > self.last_sequence {
            self.last_sequence = config.sequence;
            needed = true;
        }
        if !needed {
            return Ok(());
        }
        self.used = true;
        // A channel ACL for the resource overrides the default; relative references are under
        // /Channel/Application (Fabric's aclsProvider).
        let policy = match self.access {
            ReadAccess::Policy(policy) => policy.to_string(),
            ReadAccess::Acl(resource) => match config.application.acls.get(resource) {
                Some(reference) if reference.starts_with('/') => reference.clone(),
                Some(reference) => format!("/Channel/Application/{reference}"),
                None => CHANNEL_READERS.to_string(),
            },
        };
        config.evaluate(&policy, std::slice::from_ref(&self.signed)).map_err(|err| {
            format!(
                "Failed evaluating policy on signed data during check policy on channel [{}] with policy [{policy}]: [{err}]",
                self.channel
            )
        })
    }
}

/// A seek position as Go's `%v` of a protobuf message prints it (`<nil>` for none).
fn position_text(position: Option<&SeekPosition>) -> String {
    match position.and_then(|p| p.r#type.as_ref()) {
        None if position.is_none() => "<nil>".into(),
        None => String::new(),
        Some(seek_position::Type::Oldest(_)) => "oldest:<> ".into(),
        Some(seek_position::Type::Newest(_)) => "newest:<> ".into(),
        Some(seek_position::Type::NextCommit(_)) => "next_commit:<> ".into(),
        Some(seek_position::Type::Specified(s)) => format!("specified:<number:{} > ", s.number),
    }
}

/// A SeekInfo in the compact text form Fabric's logs show.
fn seek_info_text(seek_info: &SeekInfo) -> String {
    let mut text = String::new();
    if seek_info.start.is_some() {
        text += &format!("start:<{}> ", position_text(seek_info.start.as_ref()));
    }
    if seek_info.stop.is_some() {
        text += &format!("stop:<{}> ", position_text(seek_info.stop.as_ref()));
    }
    if seek_info.behavior != 0 {
        text += &format!("behavior:{} ", seek_info.behavior().as_str_name());
    }
    if seek_info.error_response != 0 {
        text += &format!("error_response:{} ", seek_info.error_response().as_str_name());
    }
    text
}

/// Fabric's `toFilteredBlock`: per transaction its ID, header type and validation code (from
/// the TRANSACTIONS_FILTER metadata), plus the chaincode events of endorser transactions.
/// Transactions whose envelope does not decode, or whose payload has no header, are skipped;
/// a payload, channel header or endorser transaction that does not decode fails the block.
/// A transaction with no validation flag (peer-core does not validate transactions yet, so its
/// blocks carry none) reports NOT_VALIDATED where Fabric would index out of range.
fn filtered_block(block: &Block) -> Result<FilteredBlock, String> {
    let number = block.header.as_ref().map_or(0, |h| h.number);
    let flags: &[u8] =
        block.metadata.as_ref().and_then(|m| m.metadata.get(BlockMetadataIndex::TransactionsFilter as usize)).map_or(&[], Vec::as_slice);
    let mut filtered = FilteredBlock { number, ..FilteredBlock::default() };
    let envelopes = block.data.as_ref().map(|d| d.data.as_slice()).unwrap_or_default();
    for (index, bytes) in envelopes.iter().enumerate() {
        let envelope = match Envelope::decode(bytes.as_slice()) {
            Ok(envelope) => envelope,
            Err(err) => {
                error!(target: DELIVER_EVENTS, func = "toFilteredBlock", "error getting tx from block, {err}");
                continue;
            }
        };
        let payload = Payload::decode(envelope.payload.as_slice()).map_err(|e| format!("could not extract payload from envelope: {e}"))?;
        let Some(header) = payload.header.as_ref() else {
            debug!(target: DELIVER_EVENTS, func = "toFilteredBlock", "transaction payload header is nil, {index}, block num {number}");
            continue;
        };
        let channel_header =
            ChannelHeader::decode(header.channel_header.as_slice()).map_err(|e| format!("error unmarshalling ChannelHeader: {e}"))?;
        filtered.channel_id = channel_header.channel_id.clone();
        let code = flags.get(index).map_or(proto::protos::TxValidationCode::NotValidated as i32, |flag| i32::from(*flag));
        let mut transaction =
            FilteredTransaction { txid: channel_header.tx_id.clone(), r#type: channel_header.r#type, tx_validation_code: code, data: None };
        if channel_header.r#type == HeaderType::EndorserTransaction as i32 {
            transaction.data = Some(proto::protos::filtered_transaction::Data::TransactionActions(chaincode_events(&payload.data)?));
        }
        filtered.filtered_transactions.push(transaction);
    }
    Ok(filtered)
}

/// Fabric's `toFilteredActions`: the chaincode event (ID, name, tx ID; no payload) of each
/// action that has one.
fn chaincode_events(transaction: &[u8]) -> Result<proto::protos::FilteredTransactionActions, String> {
    use proto::protos::{
        ChaincodeAction, ChaincodeActionPayload, ChaincodeEvent, FilteredChaincodeAction, FilteredTransactionActions,
        ProposalResponsePayload, Transaction,
    };
    let transaction = Transaction::decode(transaction).map_err(|e| format!("error unmarshal transaction payload for block event: {e}"))?;
    let mut actions = FilteredTransactionActions::default();
    for action in &transaction.actions {
        let payload = ChaincodeActionPayload::decode(action.payload.as_slice())
            .map_err(|e| format!("error unmarshal transaction action payload for block event: {e}"))?;
        let Some(endorsed) = payload.action.as_ref() else {
            debug!(target: DELIVER_EVENTS, func = "toFilteredActions", "chaincode action, the payload action is nil, skipping");
            continue;
        };
        let response = ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice())
            .map_err(|e| format!("error unmarshal proposal response payload for block event: {e}"))?;
        let chaincode_action = ChaincodeAction::decode(response.extension.as_slice())
            .map_err(|e| format!("error unmarshal chaincode action for block event: {e}"))?;
        let event = ChaincodeEvent::decode(chaincode_action.events.as_slice())
            .map_err(|e| format!("error unmarshal chaincode event for block event: {e}"))?;
        if !event.chaincode_id.is_empty() {
            actions.chaincode_actions.push(FilteredChaincodeAction {
                chaincode_event: Some(ChaincodeEvent {
                    tx_id: event.tx_id,
                    chaincode_id: event.chaincode_id,
                    event_name: event.event_name,
                    payload: Vec::new(),
                }),
            });
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::common::Header;

    fn envelope_at(seconds: i64, nanos: i32) -> Envelope {
        let channel_header = ChannelHeader { timestamp: Some(prost_types::Timestamp { seconds, nanos }), ..ChannelHeader::default() };
        let header = Header { channel_header: channel_header.encode_to_vec(), signature_header: Vec::new() };
        Envelope { payload: Payload { header: Some(header), data: Vec::new() }.encode_to_vec(), signature: Vec::new() }
    }

    #[test]
    fn the_timestamp_window_holds_for_any_timestamp_without_overflow() {
        let now = crate::testkit::epoch();
        let window = Duration::from_secs(15 * 60);
        let epoch_secs = i64::try_from(crate::testkit::EPOCH_SECS).unwrap();
        assert!(parse_envelope(&envelope_at(epoch_secs + 900, 0), now, window).is_ok());
        let err = parse_envelope(&envelope_at(epoch_secs + 900, 1), now, window).unwrap_err();
        assert_eq!(
            err,
            "envelope timestamp 2025-06-01 00:15:00.000000001 +0000 UTC is more than 15m0s apart from current server time 2025-06-01 00:00:00 +0000 UTC"
        );
        for (seconds, nanos) in [(i64::MIN, i32::MIN), (i64::MAX, i32::MAX), (-1, -1), (0, 0)] {
            let err = parse_envelope(&envelope_at(seconds, nanos), now, window).unwrap_err();
            assert!(err.starts_with("envelope timestamp "), "{err}");
        }
    }

    #[test]
    fn seek_infos_print_in_protobuf_text_form() {
        let specified = SeekPosition { r#type: Some(seek_position::Type::Specified(proto::orderer::SeekSpecified { number: 5 })) };
        let info = SeekInfo {
            start: Some(SeekPosition { r#type: Some(seek_position::Type::Newest(proto::orderer::SeekNewest {})) }),
            stop: Some(specified),
            behavior: SeekBehavior::FailIfNotReady as i32,
            ..SeekInfo::default()
        };
        assert_eq!(seek_info_text(&info), "start:<newest:<> > stop:<specified:<number:5 > > behavior:FAIL_IF_NOT_READY ");
        assert_eq!(position_text(None), "<nil>");
    }

    #[test]
    fn filtered_blocks_of_garbage_fail_or_skip_without_panicking() {
        let block = Block {
            header: None,
            data: Some(proto::common::BlockData {
                data: vec![vec![0xff], Envelope { payload: vec![0xff, 0xff], signature: Vec::new() }.encode_to_vec()],
            }),
            metadata: None,
        };
        assert!(filtered_block(&block).unwrap_err().starts_with("could not extract payload from envelope"));
        assert_eq!(filtered_block(&Block::default()).unwrap(), FilteredBlock::default());
    }
}
