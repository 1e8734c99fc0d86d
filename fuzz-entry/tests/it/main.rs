//! Every fuzz target as an ordinary test: over its seeds (generated, and committed in
//! `fuzz/corpus/<target>/`), then over seeded random and mutated inputs. A panic here is a
//! finding of the fuzzer's kind; a seed whose outcome contradicts its name (`ok-*` accepted,
//! `bad-*` refused) means the seeds went stale or the peer changed its mind.

use std::path::{Path, PathBuf};

use fuzz_entry::{Body, Outcome, TARGETS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

mod regressions;

fn body(target: &str) -> Body {
    TARGETS.iter().find(|(name, _)| *name == target).map(|(_, body)| *body).unwrap_or_else(|| panic!("no target {target}"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `target` on `bytes` and checks the outcome against the seed's name.
fn check_seed(target: &str, name: &str, bytes: &[u8]) {
    let outcome = body(target)(bytes);
    if name.starts_with("ok-") {
        assert_eq!(outcome, Outcome::Accepted, "{target}/{name} should be accepted");
    } else if name.starts_with("bad-") {
        assert!(matches!(outcome, Outcome::Rejected(_)), "{target}/{name} should be refused, got {outcome:?}");
    }
}

/// The committed corpus of a target: (file name, bytes), sorted.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz").join("corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn run_corpus(target: &str) {
    let files = corpus(target);
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    for (name, bytes) in files {
        check_seed(target, &name, &bytes);
    }
}

fn run_generated_seeds(target: &str) {
    let seeds: Vec<_> = fuzz_entry::seeds::seeds().into_iter().filter(|s| s.target == target).collect();
    assert!(!seeds.is_empty(), "no generated seeds for {target}");
    for seed in seeds {
        check_seed(target, &seed.name, &seed.bytes);
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config { rng_seed: RngSeed::Fixed(0xF0221), cases, failure_persistence: None, ..Config::default() })
}

/// Random bytes, and seeds with a few bytes changed or cut short.
fn run_random(target: &str, random: u32, mutated: u32) {
    let body = body(target);
    runner(random)
        .run(&vec(any::<u8>(), 0..512), |bytes| {
            body(&bytes);
            Ok(())
        })
        .unwrap();
    if mutated == 0 {
        return;
    }
    let seeds: Vec<Vec<u8>> = fuzz_entry::seeds::seeds().into_iter().filter(|s| s.target == target).map(|s| s.bytes).collect();
    let mutation =
        (any::<prop::sample::Index>(), vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), any::<Option<prop::sample::Index>>());
    runner(mutated)
        .run(&mutation, |(which, changes, cut)| {
            let mut bytes = which.get(&seeds).clone();
            if bytes.is_empty() {
                bytes.push(0);
            }
            for (at, value) in changes {
                let i = at.index(bytes.len());
                bytes[i] ^= value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            body(&bytes);
            Ok(())
        })
        .unwrap();
}

macro_rules! target_tests {
    ($($target:ident: $random:expr, $mutated:expr;)*) => {
        $(
            mod $target {
                #[test]
                fn committed_corpus() {
                    super::run_corpus(stringify!($target));
                }
                #[test]
                fn generated_seeds() {
                    super::run_generated_seeds(stringify!($target));
                }
                #[test]
                fn random_and_mutated_inputs() {
                    super::run_random(stringify!($target), $random, $mutated);
                }
            }
        )*
    };
}

// Cases per target: random inputs, then mutated seeds (a target that reads its input through
// `arbitrary` makes something meaningful of any bytes, so it needs no mutated seeds). Sized so
// the whole binary runs in a few seconds in a debug build.
target_tests! {
    config_yaml: 128, 128;
    env_overrides: 96, 0;
    gossip_envelope: 128, 256;
    gossip_stream: 96, 0;
    block: 64, 128;
    genesis_block: 64, 128;
    signed_proposal: 64, 128;
    scenario_file: 128, 128;
}

/// Every target has a test module above and a fuzz binary in fuzz/.
#[test]
fn every_target_is_tested_and_has_a_binary() {
    let listed = include_str!("main.rs");
    let manifest = std::fs::read_to_string(root().join("fuzz").join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(listed.contains(&format!("    {name}: ")), "no tests for target {name}");
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no binary {name}");
        assert!(root().join("fuzz").join("fuzz_targets").join(format!("{name}.rs")).is_file(), "no fuzz_targets/{name}.rs");
    }
}

/// Fabric's own sample core.yaml (from ../shared/fixtures, not copied into the repository) is a
/// config_yaml seed too.
#[test]
fn fabric_sample_core_yaml_loads() {
    let path = root().join("..").join("shared").join("fixtures").join("fabric-v2.2.15").join("core.yaml");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("skipped: {} is not there", path.display());
        return;
    };
    check_seed("config_yaml", "ok-fabric-core.yaml", &bytes);
}
