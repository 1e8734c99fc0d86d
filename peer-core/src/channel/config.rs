//! A channel's configuration, read from its genesis or latest config block.
//!
//! The block is unwrapped as Fabric does (`Envelope → Payload → ChannelHeader` of type CONFIG
//! `→ ConfigEnvelope → Config → channel group`) and the config tree is turned into plain types:
//! orderer addresses, the orderer and application orgs with an [`Msp`] each, anchor peers,
//! capabilities, and the policy tree that [`ChannelConfig::evaluate`] walks.
//!
//! Every problem is an error naming where in the tree it is (`group Application/Org1MSP value
//! MSP`). Values peer-core does not use (e.g. `Consortium`, `KafkaBrokers`, BFT `Orderers`) are
//! ignored rather than rejected, so newer configs still load; the values it does use are decoded
//! strictly. Only SHA-256 block data hashing over the whole block (width `u32::MAX`) is accepted,
//! the one scheme Fabric implements.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prost::Message;
use proto::common::{Block, ConfigEnvelope, ConfigGroup, Envelope, HeaderType, Payload};

use super::policy::{self, Policy, PolicyError, SignedData};
use crate::msp::Msp;

/// Config group and value names Fabric uses.
pub const CHANNEL_GROUP: &str = "Channel";
pub const ORDERER_GROUP: &str = "Orderer";
pub const APPLICATION_GROUP: &str = "Application";
/// The orderer policy whose signatures a block must carry.
pub const BLOCK_VALIDATION_POLICY: &str = "/Channel/Orderer/BlockValidation";

/// Why a block is not a usable config block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigBlockError {
    /// The block does not carry a config transaction (checked before the channel ID is known).
    #[error("not a config block: {0}")]
    NotConfig(String),
    /// An element of the config tree is missing or invalid.
    #[error("channel [{channel}] {element}: {reason}")]
    Element { channel: String, element: String, reason: String },
}

/// An anchor peer of an application org.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnchorPeer {
    pub host: String,
    pub port: u16,
}

/// An organization of the channel (orderer or application side).
#[derive(Clone, Debug)]
pub struct Org {
    /// The org's group name in the config (configtx.yaml's `Name`), e.g. `OrdererOrg`.
    pub name: String,
    /// The MSP ID its identities carry, e.g. `OrdererMSP`.
    pub msp_id: String,
    pub msp: Msp,
    /// The org's `FabricMSPConfig` as the config block carries it (what Discovery's config
    /// query answers with).
    pub msp_config: proto::msp::FabricMspConfig,
    /// Orderer orgs: the org's orderer endpoints (`Endpoints` value), host:port.
    pub endpoints: Vec<String>,
    /// Application orgs: the anchor peers (`AnchorPeers` value).
    pub anchor_peers: Vec<AnchorPeer>,
}

/// The orderer's `BatchSize` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSize {
    pub max_message_count: u32,
    pub absolute_max_bytes: u32,
    pub preferred_max_bytes: u32,
}

/// The `Orderer` group.
#[derive(Clone, Debug)]
pub struct OrdererConfig {
    /// `ConsensusType.type`: `solo`, `etcdraft`, `BFT`, ...
    pub consensus_type: String,
    /// `ConsensusType.state` is MAINTENANCE.
    pub maintenance_mode: bool,
    pub batch_size: Option<BatchSize>,
    pub batch_timeout: Option<Duration>,
    /// `ChannelRestrictions.max_count` (0: unlimited).
    pub max_channels: u64,
    pub capabilities: BTreeSet<String>,
    /// By group name.
    pub orgs: BTreeMap<String, Org>,
}

/// The `Application` group.
#[derive(Clone, Debug)]
pub struct ApplicationConfig {
    pub capabilities: BTreeSet<String>,
    /// `ACLs`: resource name to policy reference.
    pub acls: BTreeMap<String, String>,
    /// By group name.
    pub orgs: BTreeMap<String, Org>,
}

/// The policies of one config group and of its sub-groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyGroup {
    pub policies: BTreeMap<String, Policy>,
    pub groups: BTreeMap<String, PolicyGroup>,
}

/// A channel's configuration.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    pub channel_id: String,
    /// `Config.sequence`: how many config updates the channel has had.
    pub sequence: u64,
    /// The channel-level `OrdererAddresses` value (deprecated upstream in favour of the orgs'
    /// `Endpoints`, but still written by configtxgen when `Orderer.Addresses` is set).
    pub orderer_addresses: Vec<String>,
    /// Channel capabilities, e.g. `V2_0`.
    pub capabilities: BTreeSet<String>,
    pub orderer: OrdererConfig,
    pub application: ApplicationConfig,
    /// The `/Channel` policy tree.
    pub policies: PolicyGroup,
    /// Every org's MSP, by MSP ID.
    msps: BTreeMap<String, Msp>,
}

/// Errors while walking the tree: the element path, then the reason.
struct Walk<'a> {
    channel: &'a str,
}

impl Walk<'_> {
    fn err(&self, element: impl Into<String>, reason: impl Into<String>) -> ConfigBlockError {
        ConfigBlockError::Element { channel: self.channel.to_string(), element: element.into(), reason: reason.into() }
    }

    /// Decodes an optional value of a group.
    fn value<T: Message + Default>(&self, group: &ConfigGroup, path: &str, key: &str) -> Result<Option<T>, ConfigBlockError> {
        let Some(value) = group.values.get(key) else { return Ok(None) };
        T::decode(value.value.as_slice())
            .map(Some)
            .map_err(|e| self.err(format!("group {path} value {key}"), format!("cannot decode: {e}")))
    }

    fn required<T: Message + Default>(&self, group: &ConfigGroup, path: &str, key: &str) -> Result<T, ConfigBlockError> {
        self.value(group, path, key)?.ok_or_else(|| self.err(format!("group {path}"), format!("missing value {key}")))
    }

    fn capabilities(&self, group: &ConfigGroup, path: &str) -> Result<BTreeSet<String>, ConfigBlockError> {
        let caps: Option<proto::common::Capabilities> = self.value(group, path, "Capabilities")?;
        Ok(caps.map(|c| c.capabilities.into_keys().collect()).unwrap_or_default())
    }

    fn policies(&self, group: &ConfigGroup, path: &str) -> Result<PolicyGroup, ConfigBlockError> {
        let mut out = PolicyGroup::default();
        for (name, config_policy) in &group.policies {
            let element = format!("group {path} policy {name}");
            let proto_policy = config_policy.policy.as_ref().ok_or_else(|| self.err(&element, "the policy is empty"))?;
            out.policies.insert(name.clone(), Policy::parse(proto_policy).map_err(|e| self.err(&element, e))?);
        }
        for (name, sub) in &group.groups {
            // Sub-groups are named from below the channel group: `Application/Org1MSP`.
            let sub_path = if path == CHANNEL_GROUP { name.clone() } else { format!("{path}/{name}") };
            out.groups.insert(name.clone(), self.policies(sub, &sub_path)?);
        }
        Ok(out)
    }

    /// An org group: its MSP plus the side-specific values.
    fn org(&self, name: &str, group: &ConfigGroup, path: &str) -> Result<(Org, Vec<u8>), ConfigBlockError> {
        let element = format!("group {path} value MSP");
        let config: proto::msp::MspConfig = self.required(group, path, "MSP")?;
        if config.r#type != 0 {
            return Err(self.err(&element, format!("MSP type {} is not supported (peer-core supports X.509 MSPs, type 0)", config.r#type)));
        }
        let fabric = proto::msp::FabricMspConfig::decode(config.config.as_slice())
            .map_err(|e| self.err(&element, format!("cannot decode FabricMSPConfig: {e}")))?;
        let msp = Msp::from_fabric_config(&fabric).map_err(|e| self.err(&element, e))?;
        let endpoints: Option<proto::common::OrdererAddresses> = self.value(group, path, "Endpoints")?;
        let anchors: Option<proto::protos::AnchorPeers> = self.value(group, path, "AnchorPeers")?;
        let anchor_peers = anchors
            .map(|a| a.anchor_peers)
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                let port = u16::try_from(a.port).ok().filter(|p| *p != 0).ok_or_else(|| {
                    self.err(format!("group {path} value AnchorPeers"), format!("anchor peer {} has invalid port {}", a.host, a.port))
                })?;
                Ok(AnchorPeer { host: a.host, port })
            })
            .collect::<Result<Vec<_>, ConfigBlockError>>()?;
        let org = Org {
            name: name.to_string(),
            msp_id: msp.id.clone(),
            msp,
            msp_config: fabric,
            endpoints: endpoints.map(|e| e.addresses).unwrap_or_default(),
            anchor_peers,
        };
        Ok((org, config.config))
    }

    fn orgs(
        &self,
        group: &ConfigGroup,
        path: &str,
        msps: &mut BTreeMap<String, (Msp, Vec<u8>)>,
    ) -> Result<BTreeMap<String, Org>, ConfigBlockError> {
        let mut orgs = BTreeMap::new();
        for (name, org_group) in &group.groups {
            let org_path = format!("{path}/{name}");
            let (org, raw) = self.org(name, org_group, &org_path)?;
            // One org may sit in both the orderer and the application group; its MSP must then be
            // defined identically.
            if let Some((_, existing)) = msps.get(&org.msp_id) {
                if *existing != raw {
                    return Err(self.err(
                        format!("group {org_path} value MSP"),
                        format!("MSP {} is already defined by another org with a different config", org.msp_id),
                    ));
                }
            } else {
                msps.insert(org.msp_id.clone(), (org.msp.clone(), raw));
            }
            orgs.insert(name.clone(), org);
        }
        Ok(orgs)
    }
}

/// Unwraps a config block down to its `ConfigEnvelope` and channel ID.
pub fn config_envelope(block: &Block) -> Result<(String, ConfigEnvelope), ConfigBlockError> {
    let not_config = |reason: String| ConfigBlockError::NotConfig(reason);
    let data = block.data.as_ref().map(|d| d.data.as_slice()).unwrap_or_default();
    let [envelope] = data else {
        return Err(not_config(format!("a config block holds exactly one transaction, this one holds {}", data.len())));
    };
    let envelope = Envelope::decode(envelope.as_slice()).map_err(|e| not_config(format!("cannot decode the envelope: {e}")))?;
    let payload = Payload::decode(envelope.payload.as_slice()).map_err(|e| not_config(format!("cannot decode the payload: {e}")))?;
    let header = payload.header.as_ref().ok_or_else(|| not_config("the payload has no header".into()))?;
    let channel_header = proto::common::ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| not_config(format!("cannot decode the channel header: {e}")))?;
    if channel_header.r#type != HeaderType::Config as i32 {
        let name = HeaderType::try_from(channel_header.r#type)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| channel_header.r#type.to_string());
        return Err(not_config(format!("the transaction has header type {name}, expected CONFIG")));
    }
    if channel_header.channel_id.is_empty() {
        return Err(not_config("the channel header names no channel".into()));
    }
    let channel = channel_header.channel_id;
    let config_envelope = ConfigEnvelope::decode(payload.data.as_slice()).map_err(|e| ConfigBlockError::Element {
        channel: channel.clone(),
        element: "config envelope".into(),
        reason: format!("cannot decode: {e}"),
    })?;
    Ok((channel, config_envelope))
}

impl ChannelConfig {
    /// Reads a channel's configuration from a config block (genesis or later).
    pub fn from_block(block: &Block) -> Result<ChannelConfig, ConfigBlockError> {
        let (channel_id, envelope) = config_envelope(block)?;
        let walk = Walk { channel: &channel_id };
        let config = envelope.config.as_ref().ok_or_else(|| walk.err("config envelope", "it has no config"))?;
        let channel = config.channel_group.as_ref().ok_or_else(|| walk.err("config", "it has no channel group"))?;
        let path = CHANNEL_GROUP;

        let hashing: proto::common::HashingAlgorithm = walk.required(channel, path, "HashingAlgorithm")?;
        if hashing.name != "SHA256" {
            return Err(walk.err(
                format!("group {path} value HashingAlgorithm"),
                format!("unsupported hashing algorithm {:?}: Fabric and peer-core support SHA256 only", hashing.name),
            ));
        }
        let structure: proto::common::BlockDataHashingStructure = walk.required(channel, path, "BlockDataHashingStructure")?;
        if structure.width != u32::MAX {
            return Err(walk.err(
                format!("group {path} value BlockDataHashingStructure"),
                format!("unsupported block data hashing width {}: only {} (hash all data at once) is supported", structure.width, u32::MAX),
            ));
        }
        let addresses: Option<proto::common::OrdererAddresses> = walk.value(channel, path, "OrdererAddresses")?;
        let capabilities = walk.capabilities(channel, path)?;

        let mut msps = BTreeMap::new();
        let group = |name: &str| channel.groups.get(name).ok_or_else(|| walk.err(format!("group {path}"), format!("missing group {name}")));

        let orderer_group = group(ORDERER_GROUP)?;
        let orderer_path = ORDERER_GROUP;
        let consensus: proto::orderer::ConsensusType = walk.required(orderer_group, orderer_path, "ConsensusType")?;
        let batch_size: Option<proto::orderer::BatchSize> = walk.value(orderer_group, orderer_path, "BatchSize")?;
        let batch_timeout: Option<proto::orderer::BatchTimeout> = walk.value(orderer_group, orderer_path, "BatchTimeout")?;
        let batch_timeout = batch_timeout
            .map(|t| {
                crate::config::value::parse_duration(&t.timeout)
                    .map_err(|e| walk.err(format!("group {orderer_path} value BatchTimeout"), format!("{:?}: {e}", t.timeout)))
            })
            .transpose()?;
        let restrictions: Option<proto::orderer::ChannelRestrictions> = walk.value(orderer_group, orderer_path, "ChannelRestrictions")?;
        let orderer = OrdererConfig {
            consensus_type: consensus.r#type,
            maintenance_mode: consensus.state == proto::orderer::consensus_type::State::Maintenance as i32,
            batch_size: batch_size.map(|b| BatchSize {
                max_message_count: b.max_message_count,
                absolute_max_bytes: b.absolute_max_bytes,
                preferred_max_bytes: b.preferred_max_bytes,
            }),
            batch_timeout,
            max_channels: restrictions.map(|r| r.max_count).unwrap_or(0),
            capabilities: walk.capabilities(orderer_group, orderer_path)?,
            orgs: walk.orgs(orderer_group, orderer_path, &mut msps)?,
        };

        let app_group = group(APPLICATION_GROUP)?;
        let app_path = APPLICATION_GROUP;
        let acls: Option<proto::protos::AcLs> = walk.value(app_group, app_path, "ACLs")?;
        let application = ApplicationConfig {
            capabilities: walk.capabilities(app_group, app_path)?,
            acls: acls.map(|a| a.acls.into_iter().map(|(k, v)| (k, v.policy_ref)).collect()).unwrap_or_default(),
            orgs: walk.orgs(app_group, app_path, &mut msps)?,
        };

        Ok(ChannelConfig {
            channel_id: channel_id.clone(),
            sequence: config.sequence,
            orderer_addresses: addresses.map(|a| a.addresses).unwrap_or_default(),
            capabilities,
            orderer,
            application,
            policies: walk.policies(channel, path)?,
            msps: msps.into_iter().map(|(id, (msp, _))| (id, msp)).collect(),
        })
    }

    /// The MSP of a channel member, by MSP ID.
    pub fn msp(&self, msp_id: &str) -> Option<&Msp> {
        self.msps.get(msp_id)
    }

    /// Every channel MSP, by MSP ID.
    pub fn msps(&self) -> &BTreeMap<String, Msp> {
        &self.msps
    }

    /// Where to reach the ordering service: the orgs' `Endpoints` if any org has some (Fabric
    /// then ignores the channel-level value), else the channel-level `OrdererAddresses`.
    pub fn orderer_endpoints(&self) -> Vec<String> {
        let per_org: Vec<String> = self.orderer.orgs.values().flat_map(|o| o.endpoints.iter().cloned()).collect();
        if per_org.is_empty() { self.orderer_addresses.clone() } else { per_org }
    }

    /// Looks a policy up by its absolute path, e.g. `/Channel/Application/Readers`.
    pub fn policy(&self, path: &str) -> Option<&Policy> {
        let (group, name) = self.policy_group(path)?;
        group.policies.get(name)
    }

    fn policy_group<'a>(&self, path: &'a str) -> Option<(&PolicyGroup, &'a str)> {
        let rest = path.strip_prefix('/')?.strip_prefix(CHANNEL_GROUP)?.strip_prefix('/')?;
        let mut segments: Vec<&str> = rest.split('/').collect();
        let name = segments.pop().filter(|n| !n.is_empty())?;
        let mut group = &self.policies;
        for segment in segments {
            group = group.groups.get(segment)?;
        }
        Some((group, name))
    }

    /// Evaluates the policy at `path` (absolute, e.g. `/Channel/Application/Readers`) over a
    /// signature set, as Fabric's policy manager does.
    pub fn evaluate(&self, path: &str, signed: &[SignedData]) -> Result<(), PolicyError> {
        let Some((group, name)) = self.policy_group(path) else {
            return Err(PolicyError::NotFound { channel: self.channel_id.clone(), path: path.to_string() });
        };
        let Some(policy) = group.policies.get(name) else {
            return Err(PolicyError::NotFound { channel: self.channel_id.clone(), path: path.to_string() });
        };
        self.evaluate_in(group, policy, signed).map_err(|reason| PolicyError::NotSatisfied {
            channel: self.channel_id.clone(),
            path: path.to_string(),
            reason,
        })
    }

    fn evaluate_in(&self, group: &PolicyGroup, policy: &Policy, signed: &[SignedData]) -> Result<(), String> {
        match policy {
            Policy::Signature(signature_policy) => policy::evaluate_signature_policy(signature_policy, signed, |id| self.msps.get(id)),
            Policy::ImplicitMeta { sub_policy, rule } => {
                let threshold = rule.threshold(group.groups.len());
                let mut satisfied = 0;
                let mut failures = Vec::new();
                for (name, sub) in &group.groups {
                    if satisfied >= threshold {
                        break;
                    }
                    match sub.policies.get(sub_policy) {
                        None => failures.push(format!("{name}/{sub_policy}: no such policy")),
                        Some(p) => match self.evaluate_in(sub, p, signed) {
                            Ok(()) => satisfied += 1,
                            Err(e) => failures.push(format!("{name}/{sub_policy}: {e}")),
                        },
                    }
                }
                if satisfied >= threshold {
                    return Ok(());
                }
                Err(format!(
                    "implicit policy evaluation failed - {satisfied} sub-policies were satisfied, but this policy requires {threshold} of the '{sub_policy}' sub-policies to be satisfied [{}]",
                    failures.join("; ")
                ))
            }
        }
    }
}
