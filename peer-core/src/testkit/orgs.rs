//! Generated organizations and their identities, as the tests build them: `msp generate --seed 7`
//! (the orgs behind peer-core/tests/data/blocks), certificates valid 2020–2049, identities
//! loaded at [`epoch`](super::epoch).

use crate::msp::LocalMsp;
use crate::msp::generate::{self, Node, Org, OrgSpec, ValidityWindow};

/// The seed of `msp generate --seed` the tests' orgs come from.
pub const ORG_SEED: u64 = 7;

/// An org with one peer, generated from [`ORG_SEED`].
pub fn org(msp_id: &str, domain: &str) -> Org {
    org_with_peers(msp_id, domain, 1)
}

/// An org with `peers` peers, generated from [`ORG_SEED`].
pub fn org_with_peers(msp_id: &str, domain: &str, peers: usize) -> Org {
    let spec = OrgSpec { msp_id: msp_id.into(), domain: domain.into(), peers };
    generate::generate_org(&spec, &mut generate::org_rng(ORG_SEED, &spec), ValidityWindow::fixed()).unwrap()
}

/// A generated node's signing identity, loaded at the epoch.
pub fn local_msp(node: &Node, msp_id: &str) -> LocalMsp {
    LocalMsp::from_files(&node.msp, msp_id, super::epoch()).unwrap()
}

/// The org's admin as a signing identity.
pub fn admin(org: &Org) -> LocalMsp {
    local_msp(&org.admin, &org.spec.msp_id)
}
