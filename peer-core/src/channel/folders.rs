//! A channel's genesis block from organizations' MSP folders on disk, as configtxgen builds one
//! from the `MSPDir`s of configtx.yaml: what `peer-core channel create-genesis` and
//! `sim orderer --org` read. The arguments are the command line's (`MSPID=DIR`,
//! `MSPID=HOST:PORT`, `HOST:PORT`); every error names the argument and the bad value.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use proto::common::Block;

use super::config::{AnchorPeer, ChannelConfig};
use super::genesis::{FolderOrg, GenesisOrg, GenesisSpec, genesis_block};
use crate::config::HostPort;
use crate::msp::MspFiles;

/// What a genesis block is made of, as the command line gives it.
#[derive(Clone, Debug, Default)]
pub struct FolderGenesis {
    pub channel_id: String,
    /// `MSPID=DIR` of the ordering service org.
    pub orderer_org: String,
    /// `HOST:PORT` of each orderer node.
    pub orderers: Vec<String>,
    /// `MSPID=DIR` of each application org.
    pub orgs: Vec<String>,
    /// `MSPID=HOST:PORT` of each anchor peer.
    pub anchor_peers: Vec<String>,
    pub timestamp: Option<SystemTime>,
}

/// Reads an org argument `MSPID=DIR` given to `flag`. DIR is an MSP folder (it has `cacerts/`) or
/// an org folder of cryptogen's layout whose `msp/` is one.
pub fn read_org(flag: &str, arg: &str) -> Result<FolderOrg, String> {
    let bad = |why: String| format!("{flag} {arg:?}: {why}");
    let (msp_id, dir) = arg.split_once('=').ok_or_else(|| bad("expected MSPID=DIR".into()))?;
    if msp_id.is_empty() || msp_id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(format!("the MSP ID {msp_id:?} must be non-empty, without spaces or control characters")));
    }
    if dir.is_empty() {
        return Err(bad("the MSP folder is empty".into()));
    }
    let dir = msp_folder(Path::new(dir));
    let msp = MspFiles::read_dir(&dir, None).map_err(|e| bad(e.to_string()))?;
    if msp.cacerts.is_empty() {
        return Err(bad(format!("{} holds no CA certificate (cacerts/ is empty or missing): is it an MSP folder?", dir.display())));
    }
    Ok(FolderOrg { msp_id: msp_id.to_string(), msp })
}

/// `DIR` itself, or `DIR/msp` when DIR is an org folder (no `cacerts/`, but an `msp/` that has one).
fn msp_folder(dir: &Path) -> PathBuf {
    let nested = dir.join("msp");
    if !dir.join("cacerts").is_dir() && nested.join("cacerts").is_dir() { nested } else { dir.to_path_buf() }
}

fn endpoint(flag: &str, arg: &str, text: &str) -> Result<HostPort, String> {
    let endpoint = HostPort::parse(text).map_err(|e| format!("{flag} {arg:?}: {e}"))?;
    if endpoint.host.is_empty() || endpoint.port == 0 {
        return Err(format!("{flag} {arg:?}: a peer or orderer must be dialable: give a host and a port other than 0"));
    }
    Ok(endpoint)
}

/// An `--anchor-peer MSPID=HOST:PORT` argument: the org's MSP ID and a dialable anchor peer.
pub fn parse_anchor_peer(arg: &str) -> Result<(String, AnchorPeer), String> {
    let (msp_id, address) = arg.split_once('=').ok_or_else(|| format!("--anchor-peer {arg:?}: expected MSPID=HOST:PORT"))?;
    let address = endpoint("--anchor-peer", arg, address)?;
    Ok((msp_id.to_string(), AnchorPeer { host: address.host, port: address.port }))
}

impl FolderGenesis {
    /// Reads the folders and builds the block; then parses it back as a peer would at join, so a
    /// block this returns is one a peer accepts.
    pub fn build(&self) -> Result<Block, String> {
        crate::ledger::validate_channel_id(&self.channel_id).map_err(|e| format!("-c/--channelID: {e}"))?;
        let orderer = read_org("--orderer-org", &self.orderer_org)?;
        if self.orderers.is_empty() {
            return Err("--orderer: give at least one orderer endpoint (HOST:PORT) for the peers to pull blocks from".into());
        }
        let mut orderers = Vec::new();
        for arg in &self.orderers {
            orderers.push(endpoint("--orderer", arg, arg)?.to_string());
        }
        let mut orgs: Vec<FolderOrg> = Vec::new();
        for arg in &self.orgs {
            let org = read_org("--org", arg)?;
            if org.msp_id == orderer.msp_id || orgs.iter().any(|o| o.msp_id == org.msp_id) {
                return Err(format!("--org {arg:?}: MSP ID {} is given twice", org.msp_id));
            }
            orgs.push(org);
        }
        if orgs.is_empty() {
            return Err("--org: an application channel needs at least one application org".into());
        }
        let mut anchors: Vec<Vec<AnchorPeer>> = vec![Vec::new(); orgs.len()];
        for arg in &self.anchor_peers {
            let (msp_id, anchor) = parse_anchor_peer(arg)?;
            let index = orgs.iter().position(|o| o.msp_id == msp_id).ok_or_else(|| {
                let known: Vec<&str> = orgs.iter().map(|o| o.msp_id.as_str()).collect();
                format!("--anchor-peer {arg:?}: {msp_id} is not one of the --org MSP IDs ({})", known.join(", "))
            })?;
            anchors[index].push(anchor);
        }
        let mut spec = GenesisSpec::new(&self.channel_id, self.timestamp.unwrap_or(SystemTime::UNIX_EPOCH));
        spec.orderer_addresses = orderers.clone();
        spec.orderer_orgs.push(GenesisOrg {
            name: "OrdererOrg".into(),
            org: &orderer,
            anchor_peers: Vec::new(),
            orderer_endpoints: orderers,
        });
        for (org, anchor_peers) in orgs.iter().zip(anchors) {
            spec.application_orgs.push(GenesisOrg { name: org.msp_id.clone(), org, anchor_peers, orderer_endpoints: Vec::new() });
        }
        let block = genesis_block(&spec).map_err(|e| e.to_string())?;
        ChannelConfig::from_block(&block).map_err(|e| format!("a peer would refuse this genesis block: {e}"))?;
        Ok(block)
    }
}
