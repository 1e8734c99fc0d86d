//! Builds an application channel's genesis block in the shape Fabric 2.3+'s
//! `configtxgen -profile TwoOrgsApplicationGenesis -outputBlock` gives it, for tests and the
//! simulator.
//!
//! The tree (groups, values, policies, mod_policies) follows configtxgen's encoder with the
//! policies of fabric-samples' test-network `configtx.yaml`:
//! - `/Channel`: HashingAlgorithm SHA256, BlockDataHashingStructure, OrdererAddresses (only when
//!   given, mod_policy `/Channel/Orderer/Admins`), Capabilities; Readers/Writers ANY,
//!   Admins MAJORITY (implicit meta).
//! - `/Channel/Orderer`: ConsensusType `solo`, BatchSize, BatchTimeout, ChannelRestrictions,
//!   Capabilities; Readers/Writers/Admins plus BlockValidation = ANY Writers; one group per
//!   orderer org with MSP, Endpoints and member/member/admin signature policies.
//! - `/Channel/Application`: Capabilities, ACLs (when given); Readers, Writers, Admins,
//!   LifecycleEndorsement and Endorsement; one group per org with MSP, AnchorPeers and
//!   Readers (admin|peer|client), Writers (admin|client), Admins (admin), Endorsement (peer).
//!
//! Consensus is `solo`: etcdraft's metadata must name each consenter's TLS certificates, which a
//! peer-side test has no use for, and solo's needs none. Peers never interpret the consensus
//! type beyond reading it.
//!
//! Deterministic: configtxgen stamps the wall clock and a random nonce; here the timestamp is an
//! input and the nonce is derived from the config bytes, so the same input gives the same
//! block bytes. Maps encode in key order (as Go's deterministic marshalling would).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use prost::Message;
use proto::common::{
    Block, BlockData, BlockHeader, BlockMetadata, ChannelHeader, Config, ConfigEnvelope, ConfigGroup, ConfigPolicy, ConfigValue, Envelope,
    Header, HeaderType, ImplicitMetaPolicy, LastConfig, Metadata, MspPrincipal, MspRole, OrdererBlockMetadata, Payload, SignatureHeader,
    SignaturePolicy, SignaturePolicyEnvelope,
};

use super::config::AnchorPeer;
use super::signatures::NONCE_BYTES;
use crate::ledger::block::data_hash;
use crate::msp::MspFiles;
use crate::msp::crypto::sha256;
use crate::msp::generate::Org;

/// configtxgen's `msgVersion` for the genesis block's channel header.
const GENESIS_HEADER_VERSION: i32 = 1;
const ADMINS: &str = "Admins";
const ORDERER_ADMINS: &str = "/Channel/Orderer/Admins";

/// An organization as a channel config names it: its MSP ID and the MSP folder whose CA
/// certificates, TLS CA certificates and `config.yaml` go into the config (configtxgen's `MSPDir`).
pub trait ChannelMsp: std::fmt::Debug + Sync {
    fn msp_id(&self) -> &str;
    fn channel_msp(&self) -> &MspFiles;
}

impl<T: ChannelMsp + ?Sized> ChannelMsp for &T {
    fn msp_id(&self) -> &str {
        (**self).msp_id()
    }
    fn channel_msp(&self) -> &MspFiles {
        (**self).channel_msp()
    }
}

/// A generated org: its MSP ID and its org-level `msp` folder.
impl ChannelMsp for Org {
    fn msp_id(&self) -> &str {
        &self.spec.msp_id
    }
    fn channel_msp(&self) -> &MspFiles {
        &self.msp
    }
}

/// An org read from an MSP folder on disk (cryptogen's `…/<domain>/msp`, or any Fabric MSP folder).
#[derive(Clone, Debug)]
pub struct FolderOrg {
    pub msp_id: String,
    pub msp: MspFiles,
}

impl ChannelMsp for FolderOrg {
    fn msp_id(&self) -> &str {
        &self.msp_id
    }
    fn channel_msp(&self) -> &MspFiles {
        &self.msp
    }
}

/// One org of the channel.
#[derive(Clone, Debug)]
pub struct GenesisOrg<'a> {
    /// The org's group name (configtx.yaml `Name`), e.g. `OrdererOrg` or `Org1MSP`.
    pub name: String,
    /// The org's MSP ID and channel MSP folder.
    pub org: &'a dyn ChannelMsp,
    /// Application orgs: anchor peers.
    pub anchor_peers: Vec<AnchorPeer>,
    /// Orderer orgs: orderer endpoints, host:port.
    pub orderer_endpoints: Vec<String>,
}

/// What the genesis block is built from.
#[derive(Clone, Debug)]
pub struct GenesisSpec<'a> {
    pub channel_id: String,
    pub orderer_orgs: Vec<GenesisOrg<'a>>,
    pub application_orgs: Vec<GenesisOrg<'a>>,
    /// Channel-level `OrdererAddresses` (configtx.yaml `Orderer.Addresses`); left out when empty.
    pub orderer_addresses: Vec<String>,
    /// Application ACLs, resource to policy path; left out when empty.
    pub acls: BTreeMap<String, String>,
    pub batch_timeout: Duration,
    pub max_message_count: u32,
    pub absolute_max_bytes: u32,
    pub preferred_max_bytes: u32,
    /// The channel header timestamp (whole seconds, as configtxgen writes it).
    pub timestamp: SystemTime,
}

impl<'a> GenesisSpec<'a> {
    /// A spec with configtx.yaml's sample orderer defaults (2s, 500 messages, 10 MB, 2 MB).
    pub fn new(channel_id: &str, timestamp: SystemTime) -> GenesisSpec<'a> {
        GenesisSpec {
            channel_id: channel_id.to_string(),
            orderer_orgs: Vec::new(),
            application_orgs: Vec::new(),
            orderer_addresses: Vec::new(),
            acls: BTreeMap::new(),
            batch_timeout: Duration::from_secs(2),
            max_message_count: 500,
            absolute_max_bytes: 10 << 20,
            preferred_max_bytes: 2 << 20,
            timestamp,
        }
    }
}

/// Why a genesis block could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// An org's MSP folder cannot be turned into a channel MSP config.
    #[error("org {org}: {reason}")]
    Msp { org: String, reason: String },
    /// The spec is unusable.
    #[error("invalid genesis spec: {0}")]
    Spec(String),
}

/// Builds the genesis block (number 0) for `spec`.
pub fn genesis_block(spec: &GenesisSpec<'_>) -> Result<Block, GenesisError> {
    if spec.channel_id.is_empty() {
        return Err(GenesisError::Spec("the channel ID is empty".into()));
    }
    if spec.orderer_orgs.is_empty() || spec.application_orgs.is_empty() {
        return Err(GenesisError::Spec("an application channel needs at least one orderer org and one application org".into()));
    }
    let channel_group = channel_group(spec)?;
    let config = ConfigEnvelope { config: Some(Config { sequence: 0, channel_group: Some(channel_group) }), last_update: None };
    let data = config.encode_to_vec();

    let seconds = spec.timestamp.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let seconds = i64::try_from(seconds).map_err(|_| GenesisError::Spec("the timestamp is out of range".into()))?;
    // configtxgen's nonce is random; ours is a digest of what the block says, so it is fixed
    // for a given input and still differs between channels and configs.
    let mut nonce_input = b"peer-core genesis nonce\0".to_vec();
    nonce_input.extend_from_slice(spec.channel_id.as_bytes());
    nonce_input.push(0);
    nonce_input.extend_from_slice(&seconds.to_be_bytes());
    nonce_input.extend_from_slice(&data);
    let nonce = sha256(&nonce_input)[..NONCE_BYTES].to_vec();
    // The genesis transaction has no creator: tx_id = hex(SHA-256(nonce ‖ creator)).
    let tx_id = hex::encode(sha256(&nonce));
    let channel_header = ChannelHeader {
        r#type: HeaderType::Config as i32,
        version: GENESIS_HEADER_VERSION,
        timestamp: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        channel_id: spec.channel_id.clone(),
        tx_id,
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = SignatureHeader { creator: Vec::new(), nonce };
    let payload = Payload {
        header: Some(Header { channel_header: channel_header.encode_to_vec(), signature_header: signature_header.encode_to_vec() }),
        data,
    };
    let envelope = Envelope { payload: payload.encode_to_vec(), signature: Vec::new() };
    let block_data = BlockData { data: vec![envelope.encode_to_vec()] };
    let header = BlockHeader { number: 0, previous_hash: Vec::new(), data_hash: data_hash(&block_data).to_vec() };
    // configtxgen's metadata: five slots; SIGNATURES holds an unsigned OrdererBlockMetadata with
    // last_config 0, LAST_CONFIG a Metadata with LastConfig 0.
    let mut metadata = vec![Vec::new(); 5];
    metadata[0] = Metadata {
        value: OrdererBlockMetadata { last_config: Some(LastConfig { index: 0 }), consenter_metadata: Vec::new() }.encode_to_vec(),
        signatures: Vec::new(),
    }
    .encode_to_vec();
    metadata[1] = Metadata { value: LastConfig { index: 0 }.encode_to_vec(), signatures: Vec::new() }.encode_to_vec();
    Ok(Block { header: Some(header), data: Some(block_data), metadata: Some(BlockMetadata { metadata }) })
}

fn channel_group(spec: &GenesisSpec<'_>) -> Result<ConfigGroup, GenesisError> {
    let mut channel = group();
    standard_policies(&mut channel);
    value(&mut channel, "HashingAlgorithm", proto::common::HashingAlgorithm { name: "SHA256".into() }, ADMINS);
    value(&mut channel, "BlockDataHashingStructure", proto::common::BlockDataHashingStructure { width: u32::MAX }, ADMINS);
    if !spec.orderer_addresses.is_empty() {
        value(
            &mut channel,
            "OrdererAddresses",
            proto::common::OrdererAddresses { addresses: spec.orderer_addresses.clone() },
            ORDERER_ADMINS,
        );
    }
    value(&mut channel, "Capabilities", capabilities(), ADMINS);

    let mut orderer = group();
    standard_policies(&mut orderer);
    implicit_meta(&mut orderer, "BlockValidation", "Writers", proto::common::implicit_meta_policy::Rule::Any);
    value(
        &mut orderer,
        "BatchSize",
        proto::orderer::BatchSize {
            max_message_count: spec.max_message_count,
            absolute_max_bytes: spec.absolute_max_bytes,
            preferred_max_bytes: spec.preferred_max_bytes,
        },
        ADMINS,
    );
    let timeout = crate::config::value::format_duration(spec.batch_timeout);
    value(&mut orderer, "BatchTimeout", proto::orderer::BatchTimeout { timeout }, ADMINS);
    value(&mut orderer, "ChannelRestrictions", proto::orderer::ChannelRestrictions { max_count: 0 }, ADMINS);
    value(&mut orderer, "Capabilities", capabilities(), ADMINS);
    value(&mut orderer, "ConsensusType", proto::orderer::ConsensusType { r#type: "solo".into(), metadata: Vec::new(), state: 0 }, ADMINS);
    for org in &spec.orderer_orgs {
        let msp_id = &org.org.msp_id().to_string();
        let mut org_group = org_group(org)?;
        signature(&mut org_group, "Readers", &[(msp_id, Role::Member)]);
        signature(&mut org_group, "Writers", &[(msp_id, Role::Member)]);
        signature(&mut org_group, "Admins", &[(msp_id, Role::Admin)]);
        if !org.orderer_endpoints.is_empty() {
            value(&mut org_group, "Endpoints", proto::common::OrdererAddresses { addresses: org.orderer_endpoints.clone() }, ADMINS);
        }
        insert_group(&mut orderer, &org.name, org_group)?;
    }

    let mut application = group();
    standard_policies(&mut application);
    implicit_meta(&mut application, "LifecycleEndorsement", "Endorsement", proto::common::implicit_meta_policy::Rule::Majority);
    implicit_meta(&mut application, "Endorsement", "Endorsement", proto::common::implicit_meta_policy::Rule::Majority);
    if !spec.acls.is_empty() {
        let acls = spec.acls.iter().map(|(k, v)| (k.clone(), proto::protos::ApiResource { policy_ref: v.clone() })).collect();
        value(&mut application, "ACLs", proto::protos::AcLs { acls }, ADMINS);
    }
    value(&mut application, "Capabilities", capabilities(), ADMINS);
    for org in &spec.application_orgs {
        let msp_id = &org.org.msp_id().to_string();
        let mut org_group = org_group(org)?;
        signature(&mut org_group, "Readers", &[(msp_id, Role::Admin), (msp_id, Role::Peer), (msp_id, Role::Client)]);
        signature(&mut org_group, "Writers", &[(msp_id, Role::Admin), (msp_id, Role::Client)]);
        signature(&mut org_group, "Admins", &[(msp_id, Role::Admin)]);
        signature(&mut org_group, "Endorsement", &[(msp_id, Role::Peer)]);
        if !org.anchor_peers.is_empty() {
            let anchor_peers =
                org.anchor_peers.iter().map(|a| proto::protos::AnchorPeer { host: a.host.clone(), port: i32::from(a.port) }).collect();
            value(&mut org_group, "AnchorPeers", proto::protos::AnchorPeers { anchor_peers }, ADMINS);
        }
        insert_group(&mut application, &org.name, org_group)?;
    }

    insert_group(&mut channel, "Orderer", orderer)?;
    insert_group(&mut channel, "Application", application)?;
    Ok(channel)
}

/// An empty group with mod_policy Admins (every group configtxgen writes for this profile has it).
fn group() -> ConfigGroup {
    ConfigGroup { mod_policy: ADMINS.into(), ..ConfigGroup::default() }
}

fn insert_group(parent: &mut ConfigGroup, name: &str, child: ConfigGroup) -> Result<(), GenesisError> {
    if parent.groups.insert(name.to_string(), child).is_some() {
        return Err(GenesisError::Spec(format!("two orgs are named {name}")));
    }
    Ok(())
}

/// An org group with its `MSP` value (policies and the side-specific values are added by the caller).
fn org_group(org: &GenesisOrg<'_>) -> Result<ConfigGroup, GenesisError> {
    let msp_id = org.org.msp_id();
    let fabric = org.org.channel_msp().verifying_config(msp_id).map_err(|reason| GenesisError::Msp { org: org.name.clone(), reason })?;
    let mut g = group();
    value(&mut g, "MSP", proto::msp::MspConfig { r#type: 0, config: fabric.encode_to_vec() }, ADMINS);
    Ok(g)
}

fn value(group: &mut ConfigGroup, key: &str, message: impl Message, mod_policy: &str) {
    group.values.insert(key.to_string(), ConfigValue { version: 0, value: message.encode_to_vec(), mod_policy: mod_policy.to_string() });
}

/// `{V2_0}`: the capability level this builder targets on every level.
fn capabilities() -> proto::common::Capabilities {
    proto::common::Capabilities { capabilities: BTreeMap::from([("V2_0".to_string(), proto::common::Capability {})]) }
}

/// Readers ANY Readers, Writers ANY Writers, Admins MAJORITY Admins.
fn standard_policies(group: &mut ConfigGroup) {
    use proto::common::implicit_meta_policy::Rule;
    implicit_meta(group, "Readers", "Readers", Rule::Any);
    implicit_meta(group, "Writers", "Writers", Rule::Any);
    implicit_meta(group, "Admins", "Admins", Rule::Majority);
}

fn implicit_meta(group: &mut ConfigGroup, name: &str, sub_policy: &str, rule: proto::common::implicit_meta_policy::Rule) {
    let policy = ImplicitMetaPolicy { sub_policy: sub_policy.to_string(), rule: rule as i32 };
    let policy = proto::common::Policy { r#type: proto::common::policy::PolicyType::ImplicitMeta as i32, value: policy.encode_to_vec() };
    group.policies.insert(name.to_string(), ConfigPolicy { version: 0, policy: Some(policy), mod_policy: ADMINS.into() });
}

#[derive(Clone, Copy)]
enum Role {
    Member,
    Admin,
    Client,
    Peer,
}

/// `OR('<msp>.<role>', ...)` as configtxgen's policy DSL encodes it: a 1-out-of gate over one
/// `signed_by` per principal, principals in the order written.
fn signature(group: &mut ConfigGroup, name: &str, principals: &[(&String, Role)]) {
    use proto::common::msp_role::MspRoleType;
    use proto::common::signature_policy::{NOutOf, Type};
    let identities = principals
        .iter()
        .map(|(msp_id, role)| {
            let role = match role {
                Role::Member => MspRoleType::Member,
                Role::Admin => MspRoleType::Admin,
                Role::Client => MspRoleType::Client,
                Role::Peer => MspRoleType::Peer,
            };
            MspPrincipal {
                principal_classification: proto::common::msp_principal::Classification::Role as i32,
                principal: MspRole { msp_identifier: (*msp_id).clone(), role: role as i32 }.encode_to_vec(),
            }
        })
        .collect();
    let rules =
        (0..principals.len()).map(|i| SignaturePolicy { r#type: Some(Type::SignedBy(i32::try_from(i).unwrap_or(i32::MAX))) }).collect();
    let envelope = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(SignaturePolicy { r#type: Some(Type::NOutOf(NOutOf { n: 1, rules })) }),
        identities,
    };
    let policy = proto::common::Policy { r#type: proto::common::policy::PolicyType::Signature as i32, value: envelope.encode_to_vec() };
    group.policies.insert(name.to_string(), ConfigPolicy { version: 0, policy: Some(policy), mod_policy: ADMINS.into() });
}
