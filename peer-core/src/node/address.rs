//! Which address the peer announces, and where chaincode connects (spec §4.1, §4.2).
//!
//! Fabric always auto-detects the first non-loopback IPv4 address and refuses to start without
//! one, even when `peer.address` is a proper hostname. We keep its rules and its log lines, but
//! fall back to a non-loopback IPv6 address, then to loopback, with a warning: IPv6-only and
//! loopback-only hosts can run a peer.

use std::net::IpAddr;

use tracing::{info, warn};

use crate::config::{ChaincodeMode, HostPort, PeerConfig};

/// The interface address Fabric would auto-detect, or our fallback. Pure: the caller passes the
/// interfaces (from the env's Network) in the OS's order.
pub fn detect_local_ip(interfaces: &[IpAddr]) -> IpAddr {
    let ipv4 = interfaces.iter().find(|ip| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = ipv4 {
        return *ip;
    }
    let usable_v6 = |ip: &&IpAddr| match ip {
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && !v6.is_unicast_link_local(),
        IpAddr::V4(_) => false,
    };
    if let Some(ip) = interfaces.iter().find(usable_v6) {
        warn!(target: "peer", func = "getLocalAddress", "No non-loopback IPv4 interface detected; auto-detecting the IPv6 address {ip}");
        return *ip;
    }
    let loopback = interfaces.iter().find(|ip| ip.is_loopback()).copied().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    warn!(
        target: "peer",
        func = "getLocalAddress",
        "No non-loopback interface address detected; auto-detecting {loopback}: peers on other hosts cannot reach this peer through it"
    );
    loopback
}

/// The resolved peer address (Fabric's `PeerAddress`): `peer.address`, unless its host is
/// unspecified (`0.0.0.0`, `::`) or `peer.addressAutoDetect` is set.
pub fn resolve_peer_address(peer: &PeerConfig, interfaces: &[IpAddr]) -> HostPort {
    let auto = HostPort::new(detect_local_ip(interfaces).to_string(), peer.address.port);
    info!(target: "peer", func = "getLocalAddress", "Auto-detected peer address: {auto}");
    if peer.address.is_unspecified() {
        info!(target: "peer", func = "getLocalAddress", "Host is {} , falling back to auto-detected address: {auto}", peer.address.host);
        return auto;
    }
    if peer.address_auto_detect {
        info!(target: "peer", func = "getLocalAddress", "Auto-detect flag is set, returning {auto}");
        return auto;
    }
    info!(target: "peer", func = "getLocalAddress", "Returning {}", peer.address);
    peer.address.clone()
}

/// Where the chaincode server listens and the endpoint chaincode is told to dial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChaincodeEndpoints {
    pub listen: HostPort,
    pub endpoint: HostPort,
}

/// Fabric's computeChaincodeEndpoint plus the listen address choice, with its log lines.
pub fn chaincode_endpoints(peer: &PeerConfig, peer_host: &str, mode: ChaincodeMode) -> Result<ChaincodeEndpoints, String> {
    info!(target: "nodeCmd", func = "computeChaincodeEndpoint", "Entering computeChaincodeEndpoint with peerHostname: {peer_host}");
    let peer_host_unspecified = HostPort::new(peer_host, 0).is_unspecified();
    let computed = match (&peer.chaincode_address, &peer.chaincode_listen_address) {
        (Some(address), _) if address.is_unspecified() => Err(format!("ChaincodeAddress' IP cannot be {} in non-dev mode", address.host)),
        (Some(address), _) => Ok(address.clone()),
        (None, Some(listen)) if listen.is_unspecified() && peer_host_unspecified => {
            Err("ChaincodeAddress is nil while both chaincodeListenAddressIP and peerIP are 0.0.0.0".to_string())
        }
        (None, Some(listen)) if listen.is_unspecified() => Ok(HostPort::new(peer_host, listen.port)),
        (None, Some(listen)) => Ok(listen.clone()),
        (None, None) if peer_host_unspecified => {
            Err(format!("ChaincodeAddress and chaincodeListenAddress are nil and peerIP is {peer_host}"))
        }
        (None, None) => Ok(HostPort::new(peer_host, 7052)),
    };
    let endpoint = match (computed, mode) {
        (Ok(endpoint), _) => endpoint,
        (Err(err), ChaincodeMode::Dev) => {
            let fallback = HostPort::new("0.0.0.0", 7052);
            warn!(target: "nodeCmd", func = "computeChaincodeEndpoint", "use {fallback} as chaincode endpoint because of error in computeChaincodeEndpoint: {err}");
            fallback
        }
        (Err(err), ChaincodeMode::Net) => {
            tracing::error!(target: "nodeCmd", func = "computeChaincodeEndpoint", "Error computing chaincode endpoint: {err}");
            return Err(format!("invalid endpoint for chaincode to connect: {err}"));
        }
    };
    info!(target: "nodeCmd", func = "computeChaincodeEndpoint", "Exit with ccEndpoint: {endpoint}");
    let listen = match &peer.chaincode_listen_address {
        Some(listen) => listen.clone(),
        None => {
            let listen = HostPort::new(peer_host, 7052);
            warn!(target: "nodeCmd", func = "createChaincodeServer", "peer.chaincodeListenAddress is not set, using {listen}");
            listen
        }
    };
    Ok(ChaincodeEndpoints { listen, endpoint })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn detection_prefers_ipv4_then_ipv6_then_loopback() {
        assert_eq!(detect_local_ip(&[ip("127.0.0.1"), ip("fe80::1"), ip("2001:db8::5"), ip("10.0.0.5")]), ip("10.0.0.5"));
        assert_eq!(detect_local_ip(&[ip("127.0.0.1"), ip("::1"), ip("fe80::1"), ip("2001:db8::5")]), ip("2001:db8::5"));
        assert_eq!(detect_local_ip(&[ip("127.0.0.1"), ip("::1")]), ip("127.0.0.1"));
        assert_eq!(detect_local_ip(&[ip("::1")]), ip("::1"));
        assert_eq!(detect_local_ip(&[]), ip("127.0.0.1"));
    }

    fn peer(address: &str, auto_detect: bool, listen: Option<&str>, chaincode: Option<&str>) -> PeerConfig {
        let text = format!(
            "peer:\n  listenAddress: 127.0.0.1:7051\n  address: \"{address}\"\n  addressAutoDetect: {auto_detect}\n  fileSystemPath: /d\n  mspConfigPath: m\n  localMspId: X\n{}{}",
            listen.map(|l| format!("  chaincodeListenAddress: \"{l}\"\n")).unwrap_or_default(),
            chaincode.map(|c| format!("  chaincodeAddress: \"{c}\"\n")).unwrap_or_default(),
        );
        let path = std::path::Path::new("/etc/core.yaml");
        crate::config::Config::from_yaml(&text, path, &crate::config::EnvVars::new()).unwrap().config.peer
    }

    #[test]
    fn peer_address_rules() {
        let interfaces = [ip("127.0.0.1"), ip("10.0.0.5")];
        let resolve = |address: &str, auto: bool| resolve_peer_address(&peer(address, auto, None, None), &interfaces).to_string();
        assert_eq!(resolve("0.0.0.0:7051", false), "10.0.0.5:7051");
        assert_eq!(resolve("[::]:7051", false), "10.0.0.5:7051");
        assert_eq!(resolve("peer0.example.com:7051", false), "peer0.example.com:7051");
        assert_eq!(resolve("peer0.example.com:7051", true), "10.0.0.5:7051");
        // IPv6-only host: Fabric refuses to start; we announce the IPv6 address.
        let v6 = resolve_peer_address(&peer("[::]:7051", false, None, None), &[ip("::1"), ip("2001:db8::9")]);
        assert_eq!(v6.to_string(), "[2001:db8::9]:7051");
    }

    #[test]
    fn chaincode_endpoint_rules() {
        let endpoints = |listen, chaincode, host: &str, mode| {
            chaincode_endpoints(&peer("127.0.0.1:7051", false, listen, chaincode), host, mode)
                .map(|e| (e.listen.to_string(), e.endpoint.to_string()))
        };
        let net = ChaincodeMode::Net;
        let ok = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        assert_eq!(endpoints(None, None, "10.0.0.5", net), ok("10.0.0.5:7052", "10.0.0.5:7052"));
        assert_eq!(endpoints(Some("0.0.0.0:9052"), None, "10.0.0.5", net), ok("0.0.0.0:9052", "10.0.0.5:9052"));
        assert_eq!(endpoints(Some("1.2.3.4:9052"), Some("cc.example:7000"), "10.0.0.5", net), ok("1.2.3.4:9052", "cc.example:7000"));
        assert_eq!(
            endpoints(None, Some("0.0.0.0:7000"), "10.0.0.5", net),
            Err("invalid endpoint for chaincode to connect: ChaincodeAddress' IP cannot be 0.0.0.0 in non-dev mode".to_string())
        );
        assert_eq!(
            endpoints(Some("0.0.0.0:9052"), None, "0.0.0.0", net),
            Err("invalid endpoint for chaincode to connect: ChaincodeAddress is nil while both chaincodeListenAddressIP and peerIP are 0.0.0.0".to_string())
        );
        assert_eq!(endpoints(None, Some("0.0.0.0:7000"), "10.0.0.5", ChaincodeMode::Dev), ok("10.0.0.5:7052", "0.0.0.0:7052"));
    }
}
