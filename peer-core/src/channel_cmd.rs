//! `peer-core channel join|list|getinfo|fetch`: clients of a running peer, as Fabric's
//! `peer channel …` (`internal/peer/channel`): signed proposals to `protos.Endorser` for cscc and
//! qscc, a signed DELIVER_SEEK_INFO envelope to `protos.Deliver` for fetch, Fabric's outputs, log
//! lines (logger `channelCmd`) and errors. Plus `create-genesis`, a peer-core helper.
//!
//! Part of the binary: it reads files, the OS clock and entropy, and opens real sockets. The
//! messages themselves are built by the library (`peer_core::proposal`).
//!
//! TLS as Fabric's CLI: to the peer when `peer.tls.enabled`, trusting `peer.tls.rootcert.file`
//! (or `--tlsRootCertFiles` with `--peerAddresses`) and presenting `peer.tls.clientCert/clientKey`
//! when `peer.tls.clientAuthRequired`; `fetch -o` asks the orderer instead, with `--tls`,
//! `--cafile`, `--clientauth`, `--certfile`, `--keyfile`. A Deliver seek sent with a client
//! certificate carries its hash (`tls_cert_hash`), which a server requiring client certificates
//! checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use prost::Message;
use proto::common::{Block, BlockchainInfo, HeaderType};
use proto::orderer::{SeekNewest, SeekOldest, SeekPosition, SeekSpecified, seek_position};
use proto::protos::endorser_client::EndorserClient;
use proto::protos::{ChannelQueryResponse, ProposalResponse, deliver_response};
use tonic::transport::Channel;

use crate::cli::{ChannelCommand, ClientFlags};
use peer_core::config::{Config, HostPort};
use peer_core::env::Env;
use peer_core::msp::LocalMsp;
use peer_core::net::dial::{CallStream, ClientOptions, ClientTls, DialError, dial};
use peer_core::net::tls::{KeyPair, PemFile, TlsContext, certificates};
use peer_core::proposal::{Invocation, NONCE_SIZE, seek_envelope, signed_proposal};

const CHANNEL_CMD: &str = "channelCmd";
const DELIVER_CLIENT: &str = "cli.common";

/// Go's gRPC error text (`rpc error: code = … desc = …`), with the local cause of a transport
/// failure added to the description, as grpc-go's carries it: tonic's status says only
/// `transport error` and keeps the cause (e.g. the TLS alert of a peer that refused our client
/// certificate) as its source. Each part of the cause is added once.
fn rpc_error(status: &tonic::Status) -> String {
    let mut text = peer_core::errors::rpc_error(status);
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = cause.source();
    }
    text
}

/// A usage error (a missing or extra argument): printed with the command's usage line.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    /// `channel` or `node`.
    pub group: &'static str,
    pub command: &'static str,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

fn usage_error(command: &'static str, message: &str) -> anyhow::Error {
    UsageError { message: message.to_string(), group: "channel", command }.into()
}

/// What every channel command needs: the admin signer and where the peer (or orderer) is.
pub struct ChannelContext {
    pub config: Config,
    pub signer: LocalMsp,
    pub client: ClientFlags,
    /// The world the commands dial through (the real one: TCP and the system clock).
    pub env: Env,
}

/// Checks a command's arguments before anything is loaded (cobra's order: argument errors come
/// with usage, before the pre-run loads config and the MSP).
pub fn check_args(command: &ChannelCommand) -> anyhow::Result<()> {
    if let ChannelCommand::Getinfo { channel_id: Some(channel_id), .. } | ChannelCommand::Fetch { channel_id: Some(channel_id), .. } =
        command
    {
        crate::check_channel_flag(channel_id)?;
    }
    match command {
        ChannelCommand::Join { block_path: None, .. } => Err(usage_error("join", "Must supply genesis block path")),
        ChannelCommand::List { trailing, .. } if !trailing.args.is_empty() => {
            Err(anyhow!("trailing args detected: [{}]", trailing.args.join(" ")))
        }
        ChannelCommand::Getinfo { channel_id: None, .. } => Err(usage_error("getinfo", "Must supply channel ID")),
        ChannelCommand::Fetch { args, .. } if args.is_empty() => {
            Err(usage_error("fetch", "fetch target required, oldest, newest, config, or a number"))
        }
        ChannelCommand::Fetch { args, .. } if args.len() > 2 => Err(usage_error("fetch", "trailing args detected")),
        _ => Ok(()),
    }
}

#[allow(clippy::disallowed_methods)]
fn nonce() -> anyhow::Result<[u8; NONCE_SIZE]> {
    let mut nonce = [0u8; NONCE_SIZE];
    getrandom::fill(&mut nonce).map_err(|e| anyhow!("reading OS entropy: {e}"))?;
    Ok(nonce)
}

/// A server a command dials, resolved from core.yaml and the flags before dialing.
struct Server {
    /// `endorser`, `deliver` (the peer) or `orderer`, for Fabric's error texts.
    client: &'static str,
    address: String,
    tls: Option<ServerTls>,
}

struct ServerTls {
    client: ClientTls,
    /// SHA-256 of the client certificate presented, if any: a Deliver seek's `tls_cert_hash`.
    client_cert_hash: Option<[u8; 32]>,
}

/// Reads a TLS file a setting names; `setting` is how the user named it (a core.yaml key or a
/// flag), which every error names along with the file.
fn tls_file(setting: &str, path: Option<&PathBuf>, what: &'static str) -> anyhow::Result<PemFile> {
    let path = path.ok_or_else(|| anyhow!("unable to load {setting}: it is not set"))?;
    PemFile::read(path, what).map_err(|e| anyhow!("unable to load {setting}: {e}"))
}

impl ChannelContext {
    /// The peer: `--peerAddresses` (with `--tlsRootCertFiles`) or `peer.address`, with
    /// `peer.tls.*`.
    fn peer(&self, client: &'static str) -> anyhow::Result<Server> {
        let tls = &self.config.peer.tls;
        let address = self.client.peer_address.clone().unwrap_or_else(|| self.config.peer.address.to_string());
        if !tls.enabled {
            return Ok(Server { client, address, tls: None });
        }
        let root = match &self.client.peer_address {
            Some(address) if self.client.tls_root_cert_file.is_none() => {
                bail!("tls root cert file must be set: with peer.tls.enabled, --peerAddresses {address} needs --tlsRootCertFiles")
            }
            Some(_) => tls_file("--tlsRootCertFiles", self.client.tls_root_cert_file.as_ref(), "TLS root certificate")?,
            None => tls_file("peer.tls.rootcert.file", tls.root_cert_file.as_ref(), "TLS root certificate")?,
        };
        let pair = match tls.client_auth_required {
            false => None,
            true => Some((
                tls_file("peer.tls.clientCert.file", tls.client_cert_file.as_ref(), "TLS client certificate")?,
                tls_file("peer.tls.clientKey.file", tls.client_key_file.as_ref(), "TLS client key")?,
            )),
        };
        let settings = "peer.tls.clientCert.file, peer.tls.clientKey.file";
        let tls = self.server_tls(&root, pair, settings, tls.server_host_override.clone())?;
        Ok(Server { client, address, tls: Some(tls) })
    }

    /// The orderer of `fetch -o`, with the orderer flags; `None` without `-o`.
    fn orderer(&self) -> anyhow::Result<Option<Server>> {
        let flags = &self.client;
        let Some(address) = flags.orderer.clone() else { return Ok(None) };
        if !flags.tls {
            return Ok(Some(Server { client: "orderer", address, tls: None }));
        }
        let root = tls_file("--cafile", flags.cafile.as_ref(), "TLS root certificate")?;
        let pair = match flags.clientauth {
            false => None,
            true => Some((
                tls_file("--certfile", flags.certfile.as_ref(), "TLS client certificate")?,
                tls_file("--keyfile", flags.keyfile.as_ref(), "TLS client key")?,
            )),
        };
        let tls = self.server_tls(&root, pair, "--certfile, --keyfile", flags.orderer_tls_hostname_override.clone())?;
        Ok(Some(Server { client: "orderer", address, tls: Some(tls) }))
    }

    /// The TLS side of a server: trusting `root`, presenting `pair` (named by `pair_settings` in
    /// errors), expecting `server_name` (else the dialed host) in the server's certificate.
    fn server_tls(
        &self,
        root: &PemFile,
        pair: Option<(PemFile, PemFile)>,
        pair_settings: &str,
        server_name: Option<String>,
    ) -> anyhow::Result<ServerTls> {
        let roots = certificates(root)?;
        let pair = pair
            .map(|(cert, key)| KeyPair::from_files_valid_at(&cert, &key, self.env.clock.wall_clock()))
            .transpose()
            .map_err(|e| anyhow!("error parsing client TLS key pair ({pair_settings}): {e}"))?;
        let context = TlsContext::new(&peer_core::net::tls::provider(&self.env), self.env.clock.clone());
        let (config, _) = context.client(&roots, pair.as_ref()).map_err(|e| anyhow!("error creating the TLS client configuration: {e}"))?;
        let client = ClientTls { config, server_name, log_failures: true };
        Ok(ServerTls { client, client_cert_hash: pair.as_ref().map(KeyPair::leaf_hash) })
    }

    /// Dials `server`, retrying until `peer.client.connTimeout` as gRPC's blocking dial does.
    async fn connect(&self, server: &Server) -> anyhow::Result<Channel> {
        let Server { client, address, .. } = server;
        let failed = |reason: String| anyhow!("{client} client failed to connect to {address}: failed to create new connection: {reason}");
        // gRPC's own check of the target comes first (its text for an address that is no URI).
        tonic::transport::Endpoint::from_shared(format!("http://{address}")).map_err(|e| failed(e.to_string()))?;
        let target = HostPort::parse(address).map_err(failed)?;
        let timeout = self.config.peer.client_conn_timeout;
        let env = &self.env;
        let options = ClientOptions { timeout, keepalive: None, tls: server.tls.as_ref().map(|tls| tls.client.clone()) };
        let last_error = std::cell::RefCell::new(None);
        let attempt = async {
            loop {
                match dial(env, &target, &options).await {
                    Ok(dialed) => return Ok(dialed.channel),
                    // A refused TLS handshake stays refused: no point in trying until the deadline.
                    Err(error @ DialError::Handshake(_)) => return Err(failed(error.to_string())),
                    // A pause between dials, as gRPC's backoff.
                    Err(error) => {
                        *last_error.borrow_mut() = Some(error.to_string());
                        env.clock.sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        };
        tokio::select! {
            biased;
            dialed = attempt => dialed,
            () = env.clock.sleep(timeout) => {
                // gRPC says only that the deadline passed; the last failure says why.
                let why = last_error.take().map(|e| format!(" (last attempt: {e})")).unwrap_or_default();
                Err(failed(format!("context deadline exceeded{why}")))
            }
        }
    }

    async fn endorser(&self) -> anyhow::Result<EndorserClient<Channel>> {
        let peer = self.peer("endorser").context("error getting endorser client for channel")?;
        let channel = self.connect(&peer).await.context("error getting endorser client for channel")?;
        tracing::info!(target: CHANNEL_CMD, func = "InitCmdFactory", "Endorser and orderer connections initialized");
        Ok(EndorserClient::new(channel).max_decoding_message_size(self.config.peer.max_recv_msg_size))
    }

    async fn propose(
        &self,
        client: &mut EndorserClient<Channel>,
        header_type: HeaderType,
        chaincode: &str,
        args: Vec<Vec<u8>>,
    ) -> anyhow::Result<Result<ProposalResponse, tonic::Status>> {
        let invocation = Invocation { header_type, channel_id: "", chaincode, args };
        let (signed, _tx_id) = signed_proposal(&self.signer, &invocation, nonce()?, crate::wall_clock_now());
        Ok(client.process_proposal(signed).await.map(tonic::Response::into_inner))
    }
}

pub async fn run(command: ChannelCommand, context: &ChannelContext) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Join { block_path: Some(path), .. } => join(context, &path).await,
        ChannelCommand::List { .. } => list(context).await,
        ChannelCommand::Getinfo { channel_id: Some(channel_id), .. } => getinfo(context, &channel_id).await,
        ChannelCommand::Fetch { channel_id, best_effort, args, .. } => {
            fetch(context, channel_id.as_deref().unwrap_or(""), best_effort, &args).await
        }
        // Rejected by check_args, or handled without a peer.
        _ => Ok(()),
    }
}

async fn join(context: &ChannelContext, path: &Path) -> anyhow::Result<()> {
    // Fabric connects first, then reads the block.
    let mut client = context.endorser().await?;
    let block = read_block_file(path)?;
    let response = context.propose(&mut client, HeaderType::Config, "cscc", vec![b"JoinChain".to_vec(), block]).await?;
    let response = response.map_err(|status| anyhow!("proposal failed (err: {})", rpc_error(&status)))?;
    let (status, message) = response.response.map(|r| (r.status, r.message)).unwrap_or_default();
    if status != 0 && status != 200 {
        bail!("proposal failed (err: bad proposal response {status}: {message})");
    }
    tracing::info!(target: CHANNEL_CMD, func = "executeJoin", "Successfully submitted proposal to join channel");
    Ok(())
}

/// The block file `channel join -b` names. Only a regular file is read, and that is checked
/// before it is opened: opening a FIFO waits for a writer forever, and a directory or a device is
/// no block file either (the same `is_file` test that keeps core.yaml loading from a FIFO).
fn read_block_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::FileTypeExt;
    // A missing or unreadable path falls through to the read, for Fabric's error.
    if let Ok(metadata) = std::fs::metadata(path)
        && !metadata.is_file()
    {
        let kind = metadata.file_type();
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a file"
        };
        bail!("genesis block file {} is {what}, not a regular file", path.display());
    }
    std::fs::read(path).map_err(|e| anyhow!("genesis block file not found open {}: {}", path.display(), go_io_error(&e)))
}

/// Go's text for common I/O errors (`no such file or directory`, …), without Rust's `(os error N)`.
fn go_io_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    let mut chars = text.chars();
    chars.next().map(|first| first.to_lowercase().chain(chars).collect()).unwrap_or(text)
}

async fn list(context: &ChannelContext) -> anyhow::Result<()> {
    let mut client = context.endorser().await?;
    let response = context.propose(&mut client, HeaderType::EndorserTransaction, "cscc", vec![b"GetChannels".to_vec()]).await?;
    let response = response.map_err(|status| anyhow!("Failed sending proposal, got {}", rpc_error(&status)))?;
    let inner = response.response.unwrap_or_default();
    if inner.status != 200 {
        bail!("Received bad response, status {}: {}", inner.status, inner.message);
    }
    let channels =
        ChannelQueryResponse::decode(inner.payload.as_slice()).map_err(|e| anyhow!("Cannot read channels list response, {e}"))?;
    println!("Channels peers has joined: ");
    for channel in channels.channels {
        println!("{}", channel.channel_id);
    }
    Ok(())
}

async fn getinfo(context: &ChannelContext, channel_id: &str) -> anyhow::Result<()> {
    let args = vec![b"GetChainInfo".to_vec(), channel_id.as_bytes().to_vec()];
    let mut client = context.endorser().await?;
    let response = context.propose(&mut client, HeaderType::EndorserTransaction, "qscc", args).await?;
    let response = response.map_err(|status| anyhow!("failed sending proposal: {}", rpc_error(&status)))?;
    let inner = response.response.unwrap_or_default();
    if inner.status != 200 {
        bail!("received bad response, status {}: {}", inner.status, inner.message);
    }
    let info = BlockchainInfo::decode(inner.payload.as_slice()).map_err(|e| anyhow!("cannot read qscc response: {e}"))?;
    println!("Blockchain info: {}", blockchain_info_json(&info));
    Ok(())
}

/// Go's `json.Marshal` of a `common.BlockchainInfo`: proto field names, `omitempty`, bytes as
/// standard base64.
pub fn blockchain_info_json(info: &BlockchainInfo) -> String {
    let mut fields = Vec::new();
    if info.height != 0 {
        fields.push(format!("\"height\":{}", info.height));
    }
    if !info.current_block_hash.is_empty() {
        fields.push(format!("\"currentBlockHash\":\"{}\"", base64(&info.current_block_hash)));
    }
    if !info.previous_block_hash.is_empty() {
        fields.push(format!("\"previousBlockHash\":\"{}\"", base64(&info.previous_block_hash)));
    }
    if let Some(snapshot) = &info.bootstrapping_snapshot_info {
        let inner = if snapshot.last_block_in_snapshot == 0 {
            String::new()
        } else {
            format!("\"lastBlockInSnapshot\":{}", snapshot.last_block_in_snapshot)
        };
        fields.push(format!("\"bootstrappingSnapshotInfo\":{{{inner}}}"));
    }
    format!("{{{}}}", fields.join(","))
}

/// Standard base64 with padding (Go's `encoding/json` for `[]byte`).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One Deliver stream: each request is a seek for one block, answered by the block and a status.
/// The stream is opened with the first request already queued, so a server that reads the first
/// envelope before answering with headers does not wait on us.
struct DeliverClient<'a> {
    context: &'a ChannelContext,
    server: Server,
    channel_id: &'a str,
    best_effort: bool,
    send: tokio::sync::mpsc::Sender<proto::common::Envelope>,
    responses: Responses,
}

/// The answer of the peer's Deliver service, or of the orderer's (`fetch -o`); the call starts at
/// the first read, with the first request queued ([`CallStream`]).
enum Responses {
    Peer(CallStream<proto::protos::DeliverResponse>),
    Orderer(CallStream<proto::orderer::DeliverResponse>),
}

fn status_name(status: i32) -> String {
    proto::common::Status::try_from(status).map_or_else(|_| status.to_string(), |s| s.as_str_name().to_string())
}

impl<'a> DeliverClient<'a> {
    async fn open(context: &'a ChannelContext, channel_id: &'a str, best_effort: bool) -> anyhow::Result<DeliverClient<'a>> {
        let size = context.config.peer.max_recv_msg_size;
        let (send, receive) = tokio::sync::mpsc::channel(4);
        let requests = tokio_stream::wrappers::ReceiverStream::new(receive);
        let (server, responses) = match context.orderer().context("failed to create deliver client for orderer")? {
            Some(orderer) => {
                let channel = context.connect(&orderer).await.context("failed to create deliver client for orderer")?;
                let mut client =
                    proto::orderer::atomic_broadcast_client::AtomicBroadcastClient::new(channel).max_decoding_message_size(size);
                (orderer, Responses::Orderer(CallStream::new(async move { client.deliver(requests).await })))
            }
            None => {
                let peer = context.peer("deliver").context("error getting deliver client for channel")?;
                let channel = context.connect(&peer).await.context("error getting deliver client for channel")?;
                let mut client = proto::protos::deliver_client::DeliverClient::new(channel).max_decoding_message_size(size);
                (peer, Responses::Peer(CallStream::new(async move { client.deliver(requests).await })))
            }
        };
        tracing::info!(target: CHANNEL_CMD, func = "InitCmdFactory", "Endorser and orderer connections initialized");
        Ok(DeliverClient { context, server, channel_id, best_effort, send, responses })
    }

    /// The next response; the orderer's (status or block, the same field numbers) as the peer's.
    async fn next(&mut self) -> Result<Option<proto::protos::DeliverResponse>, tonic::Status> {
        use proto::orderer::deliver_response as orderer;
        match &mut self.responses {
            Responses::Peer(responses) => responses.message().await,
            Responses::Orderer(responses) => Ok(responses.message().await?.map(|response| proto::protos::DeliverResponse {
                r#type: response.r#type.map(|answer| match answer {
                    orderer::Type::Status(status) => deliver_response::Type::Status(status),
                    orderer::Type::Block(block) => deliver_response::Type::Block(block),
                }),
            })),
        }
    }

    async fn block(&mut self, position: seek_position::Type, what: &str) -> anyhow::Result<Block> {
        let seek = SeekPosition { r#type: Some(position) };
        let client_cert_hash = self.server.tls.as_ref().and_then(|tls| tls.client_cert_hash);
        let now = crate::wall_clock_now();
        let envelope = seek_envelope(&self.context.signer, self.channel_id, seek, self.best_effort, nonce()?, now, client_cert_hash);
        self.send.send(envelope).await.map_err(|_| anyhow!("error getting {what} block: the stream is closed"))?;
        let service = match self.responses {
            Responses::Peer(_) => "peer",
            Responses::Orderer(_) => "orderer",
        };
        let response =
            self.next().await.map_err(|s| anyhow!("error receiving: error receiving from {service} deliver service: {}", rpc_error(&s)))?;
        let response = response.ok_or_else(|| anyhow!("error receiving: error receiving from {service} deliver service: EOF"))?;
        match response.r#type {
            Some(deliver_response::Type::Status(status)) => {
                let name = status_name(status);
                tracing::info!(target: DELIVER_CLIENT, func = "readBlock", "Expect block, but got status: &{{{name}}}");
                // Fabric's text, then which channel and server: Fabric's names neither.
                let channel = self.channel_id;
                let address = &self.server.address;
                let (server, joined) = match self.responses {
                    Responses::Peer(_) => ("peer", "has not joined"),
                    Responses::Orderer(_) => ("orderer", "does not serve"),
                };
                let why = match (proto::common::Status::try_from(status), position) {
                    (Ok(proto::common::Status::NotFound), seek_position::Type::Specified(SeekSpecified { number })) => {
                        format!("{server} {address} {joined} channel '{channel}', or has no block {number} in it")
                    }
                    (Ok(proto::common::Status::NotFound), _) => format!("{server} {address} {joined} channel '{channel}'"),
                    _ => format!("channel '{channel}' on {server} {address}"),
                };
                bail!("can't read the block: &{{{name}}}: {why}")
            }
            Some(deliver_response::Type::Block(block)) => {
                let number = block.header.as_ref().map_or(0, |h| h.number);
                tracing::info!(target: DELIVER_CLIENT, func = "readBlock", "Received block: {number}");
                match self.next().await {
                    Err(status) => {
                        tracing::error!(target: DELIVER_CLIENT, func = "readBlock", "Failed to flush success message: {}", rpc_error(&status))
                    }
                    Ok(Some(proto::protos::DeliverResponse { r#type: Some(deliver_response::Type::Status(200)) })) => {}
                    Ok(other) => {
                        let status = match other.and_then(|r| r.r#type) {
                            Some(deliver_response::Type::Status(s)) => status_name(s),
                            _ => "UNKNOWN".into(),
                        };
                        tracing::error!(target: DELIVER_CLIENT, func = "readBlock", "Expect status to be SUCCESS, got: {status}");
                    }
                }
                Ok(block)
            }
            _ => bail!("response error: unknown type"),
        }
    }
}

async fn fetch(context: &ChannelContext, channel_id: &str, best_effort: bool, args: &[String]) -> anyhow::Result<()> {
    let Some(target) = args.first() else { return Ok(()) };
    let mut deliver = DeliverClient::open(context, channel_id, best_effort).await?;
    let block = match target.as_str() {
        "oldest" => deliver.block(seek_position::Type::Oldest(SeekOldest {}), "oldest").await?,
        "newest" => deliver.block(seek_position::Type::Newest(SeekNewest {}), "newest").await?,
        "config" => {
            let newest = deliver.block(seek_position::Type::Newest(SeekNewest {}), "newest").await?;
            let index = peer_core::channels::last_config_index(&newest).ok_or_else(|| {
                anyhow!("failed to retrieve metadata: no last config index in block [{}]", newest.header.as_ref().map_or(0, |h| h.number))
            })?;
            tracing::info!(target: CHANNEL_CMD, func = "fetch", "Retrieving last config block: {index}");
            deliver.block(seek_position::Type::Specified(SeekSpecified { number: index }), "specified").await?
        }
        number => {
            // Go's strconv.Atoi then uint64(): a negative number wraps around.
            let number: i64 = number.parse().map_err(|_| anyhow!("fetch target illegal: {number}"))?;
            deliver
                .block(seek_position::Type::Specified(SeekSpecified { number: u64::from_ne_bytes(number.to_ne_bytes()) }), "specified")
                .await?
        }
    };
    let file = args.get(1).cloned().unwrap_or_else(|| format!("{channel_id}_{target}.block"));
    std::fs::write(&file, block.encode_to_vec()).map_err(|e| anyhow!("open {file}: {}", go_io_error(&e)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(&[0xfb, 0xff]), "+/8=");
    }
}
