//! The `peer-core` command tree, mirroring Fabric's `peer` (spec §1.1).
//!
//! Trailing positional arguments are collected rather than rejected by clap, so that they get
//! Fabric's own error (`trailing args detected`).

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "peer-core",
    about = "A Hyperledger Fabric peer core, in Rust",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Legacy Fabric flag: accepted, but only earns a warning (use FABRIC_LOGGING_SPEC).
    #[arg(long = "logging-level", global = true, hide = true, value_name = "LEVEL")]
    pub logging_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print peer-core version.
    Version(Trailing),
    /// Operate a peer node: start|reset|rollback|pause|resume|rebuild-dbs|upgrade-dbs.
    #[command(arg_required_else_help = true)]
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Operate a channel: fetch|join|list|getinfo (and create-genesis, a peer-core helper).
    #[command(arg_required_else_help = true)]
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// Generate and inspect MSP material.
    #[command(arg_required_else_help = true)]
    Msp {
        #[command(subcommand)]
        command: MspCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum MspCommand {
    /// Generate an organization's CA, TLS CA, peers and admin in Fabric's (cryptogen's) layout:
    /// OUT/peerOrganizations/DOMAIN/{ca,tlsca,msp,peers,users}. With --seed the output is the
    /// same bytes on every run (fixed validity 2020-01-01 to 2049-12-31); without it keys are
    /// random and certificates are valid for ten years from now.
    Generate {
        /// The organization's MSP ID.
        #[arg(long, value_name = "MSPID")]
        org: String,
        /// The organization's domain; peers are named peer<N>.<DOMAIN>.
        #[arg(long, value_name = "DOMAIN")]
        domain: String,
        /// How many peers to generate (with --orderer: orderer nodes, orderer.DOMAIN, orderer2.DOMAIN, …).
        #[arg(long, default_value_t = 1, value_name = "N")]
        peers: usize,
        /// An ordering service organization: OUT/ordererOrganizations/DOMAIN/{ca,tlsca,msp,orderers,users}.
        #[arg(long)]
        orderer: bool,
        /// Output directory (created if needed).
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Derive every key and serial number from this seed.
        #[arg(long, value_name = "N")]
        seed: Option<u64>,
    },
    /// Describe an MSP directory: its MSP ID, every certificate (subject, issuer, validity,
    /// NodeOU role), the signing identity's gossip PKI-ID, and whether the peer would load it.
    Inspect {
        /// The MSP directory (the one peer.mspConfigPath names).
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The MSP ID (default: peer.localMspId of the core.yaml `node start` would read).
        #[arg(long = "mspid", value_name = "MSPID")]
        msp_id: Option<String>,
    },
}

/// Where a channel command connects and how: the peer (`--peerAddresses`, else `peer.address`;
/// TLS from `peer.tls.*`) or, for `fetch -o`, the orderer with Fabric's orderer TLS flags.
#[derive(Clone, Debug, Default, Args)]
pub struct ClientFlags {
    /// The peer to talk to (default: peer.address, i.e. CORE_PEER_ADDRESS).
    #[arg(long = "peerAddresses", value_name = "HOST:PORT")]
    pub peer_address: Option<String>,
    /// PEM file of the TLS root certificate(s) of --peerAddresses (needed when peer.tls.enabled).
    #[arg(long = "tlsRootCertFiles", value_name = "FILE")]
    pub tls_root_cert_file: Option<std::path::PathBuf>,
    /// Ordering service endpoint: `fetch` asks the orderer's Deliver service instead of the peer.
    #[arg(short = 'o', long = "orderer", value_name = "HOST:PORT")]
    pub orderer: Option<String>,
    /// Use TLS when communicating with the orderer endpoint.
    #[arg(long = "tls")]
    pub tls: bool,
    /// Path to file containing PEM-encoded trusted certificate(s) for the ordering endpoint.
    #[arg(long = "cafile", value_name = "FILE")]
    pub cafile: Option<std::path::PathBuf>,
    /// Use mutual TLS when communicating with the orderer endpoint.
    #[arg(long = "clientauth")]
    pub clientauth: bool,
    /// Path to file containing PEM-encoded X509 public key to use for mutual TLS communication
    /// with the orderer endpoint.
    #[arg(long = "certfile", value_name = "FILE")]
    pub certfile: Option<std::path::PathBuf>,
    /// Path to file containing PEM-encoded private key to use for mutual TLS communication with
    /// the orderer endpoint.
    #[arg(long = "keyfile", value_name = "FILE")]
    pub keyfile: Option<std::path::PathBuf>,
    /// The hostname override to use when validating the TLS connection to the orderer.
    #[arg(long = "ordererTLSHostnameOverride", value_name = "NAME")]
    pub orderer_tls_hostname_override: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Joins the peer to a channel.
    Join {
        /// Path to file containing genesis block.
        #[arg(short = 'b', long = "blockpath", value_name = "FILE")]
        block_path: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List of channels peer has joined.
    List {
        #[command(flatten)]
        trailing: Trailing,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// get blockchain information of a specified channel. Requires '-c'.
    Getinfo {
        /// The channel.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: Option<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Fetch a specified block, writing it to a file: fetch <newest|oldest|config|(number)> [outputfile].
    Fetch {
        /// The channel.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: Option<String>,
        /// Whether fetch requests should ignore errors and return blocks on a best effort basis.
        #[arg(long = "bestEffort")]
        best_effort: bool,
        /// newest|oldest|config|(number), then optionally the output file.
        #[arg(value_name = "ARGS")]
        args: Vec<String>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Write an application channel's genesis block from the orgs' MSP folders, as configtxgen's
    /// `-outputBlock` does for a TwoOrgsApplicationGenesis-style profile (solo orderer, Fabric
    /// 2.x policies and capabilities): a peer-core helper, offline.
    #[command(name = "create-genesis")]
    CreateGenesis {
        /// The channel ID.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: String,
        /// The ordering service org: its MSP ID and MSP folder (cryptogen's
        /// ordererOrganizations/DOMAIN/msp, or the org folder that holds it).
        #[arg(long = "orderer-org", value_name = "MSPID=DIR")]
        orderer_org: String,
        /// An orderer endpoint the peers pull blocks from (repeatable).
        #[arg(long = "orderer", value_name = "HOST:PORT", required = true)]
        orderers: Vec<String>,
        /// An application org: its MSP ID and MSP folder (repeatable).
        #[arg(long = "org", value_name = "MSPID=DIR", required = true)]
        orgs: Vec<String>,
        /// An anchor peer of an application org (repeatable); peers of other orgs dial it to
        /// form cross-org membership.
        #[arg(long = "anchor-peer", value_name = "MSPID=HOST:PORT")]
        anchor_peers: Vec<String>,
        /// The channel header timestamp, in seconds since the Unix epoch (fixed by default, so
        /// the same folders give the same block).
        #[arg(long, value_name = "SECONDS", default_value_t = 1_748_736_000)]
        timestamp: u64,
        /// Output file.
        #[arg(long = "outputBlock", value_name = "FILE")]
        output: std::path::PathBuf,
    },
}

impl ChannelCommand {
    /// The connection flags of a command that talks to a peer or an orderer.
    pub fn client_flags(&self) -> ClientFlags {
        match self {
            ChannelCommand::Join { client, .. }
            | ChannelCommand::List { client, .. }
            | ChannelCommand::Getinfo { client, .. }
            | ChannelCommand::Fetch { client, .. } => client.clone(),
            ChannelCommand::CreateGenesis { .. } => ClientFlags::default(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Start the peer.
    Start {
        /// Run with user-run chaincode (chaincode.mode = dev).
        #[arg(long = "peer-chaincodedev")]
        chaincode_dev: bool,
        #[command(flatten)]
        trailing: Trailing,
    },
    /// Reset all channels to the genesis block. When the command is executed, the peer must be
    /// offline. When the peer starts after the reset, it will receive blocks starting with block
    /// number one from an orderer or another peer to rebuild the block store and state database.
    Reset,
    /// Roll back a channel to a block number. The peer must be offline.
    Rollback {
        /// Channel to roll back.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: Option<String>,
        /// Block number to roll back to.
        #[arg(short = 'b', long = "blockNumber", default_value_t = 0, value_name = "NUMBER")]
        block_number: u64,
    },
    /// Pause a channel on the peer. The peer must be offline; the channel stays paused until resumed.
    Pause {
        /// Channel to pause.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: Option<String>,
    },
    /// Resume a paused channel on the peer. The peer must be offline.
    Resume {
        /// Channel to resume.
        #[arg(short = 'c', long = "channelID", value_name = "CHANNEL")]
        channel_id: Option<String>,
    },
    /// Drop the databases so they are rebuilt from the block store at the next start.
    #[command(name = "rebuild-dbs")]
    RebuildDbs,
    /// Upgrade the databases to the current format; they are rebuilt at the next start.
    #[command(name = "upgrade-dbs")]
    UpgradeDbs,
}

/// Positional arguments a command does not take; any present is Fabric's "trailing args" error.
#[derive(Debug, Args)]
pub struct Trailing {
    #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = false)]
    pub args: Vec<String>,
}
