//! The bodies of the cargo-fuzz targets in `fuzz/`, as plain functions over `&[u8]`.
//!
//! Each `fuzz/fuzz_targets/<name>.rs` is one line calling the function of the same name here,
//! and `tests/it` runs the same functions over the committed corpus (`fuzz/corpus/<name>/`) and
//! over seeded random inputs, so `cargo test --workspace` guards what the fuzzer found without
//! running it. A body calls the entry points the peer itself uses (never a re-implementation),
//! must not panic on any input, and asserts the invariants that must hold whatever the input
//! (an assertion failure is a finding).
//!
//! - [`config`]: `config_yaml`, `env_overrides` (core.yaml and `CORE_*` variables).
//! - [`gossip`]: `gossip_envelope` (one message through the receive path), `gossip_stream`
//!   (the membership state machine under a sequence of inputs).
//! - [`ledger`]: `block` (appending), `genesis_block` (channel configuration and joining).
//! - [`endorser`]: `signed_proposal` (the Endorser, cscc and qscc).
//! - [`scenario`]: `scenario_file` (the simulator's scenario files).
//! - [`world`]: the fixed organizations, channel and in-memory peers they run against.
//! - [`seeds`]: the generated seed inputs.
//!
//! Not here: anything async or networked (the targets call the synchronous cores the services
//! wrap), and the real file system.

pub mod config;
pub mod endorser;
pub mod gossip;
pub mod ledger;
pub mod scenario;
pub mod seeds;
pub mod world;

/// What a target made of an input (the fuzzer ignores it; the corpus tests check it against the
/// seed's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The input got all the way through: loaded, delivered, appended, joined, endorsed.
    Accepted,
    /// The input was refused, with the error the peer gave.
    Rejected(String),
}

impl Outcome {
    fn rejected(why: &str) -> Outcome {
        Outcome::Rejected(why.to_string())
    }
}

/// A target's body.
pub type Body = fn(&[u8]) -> Outcome;

/// Every target, by the name of its fuzz binary and corpus directory.
pub const TARGETS: [(&str, Body); 8] = [
    ("config_yaml", config::config_yaml),
    ("env_overrides", config::env_overrides),
    ("gossip_envelope", gossip::gossip_envelope),
    ("gossip_stream", gossip::gossip_stream),
    ("block", ledger::block),
    ("genesis_block", ledger::genesis_block),
    ("signed_proposal", endorser::signed_proposal),
    ("scenario_file", scenario::scenario_file),
];
