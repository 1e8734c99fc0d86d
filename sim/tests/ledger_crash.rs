//! The block store under power cuts on the simulated disk (`SimDisk`).
//!
//! - Exhaustive: a power cut at every mutating I/O operation of one channel creation, one append
//!   and one rollback, with unsynced writes lost, and again under the torn-write model (each
//!   unsynced write kept, dropped, or torn at a 512-byte sector boundary).
//! - Randomized: per seed, a sequence of appends, rollbacks and reopens with power cuts at random
//!   I/O points and torn writes. `SIM_SEEDS=n` runs seeds 1..=n (default: a CI batch);
//!   `SIM_SEED=n` replays one.
//!
//! After every cut the store is reopened and must hold: a height no lower than the last
//! acknowledged append (and at most one block above it: the append in flight), exactly the
//! acknowledged blocks, an intact hash chain, and indexes that find every block and transaction.
//! Every failure names the seed and the command that replays it. No turmoil here: the ledger is
//! synchronous, so the tests drive it directly on the disk.

use std::path::Path;
use std::sync::Arc;

use peer_core::env::{Env, StoppedClock};
use peer_core::ledger::block::{envelope, header_hash, new_block};
use peer_core::ledger::{ChannelLedger, LedgerMgr, commands};
use proto::common::{Block, HeaderType};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use sim::env::{SimDisk, SimNetwork, SimStorage};

const FSP: &str = "/sim/data";
const CHANNEL: &str = "ch";
/// Seeds in the default (CI) batch of the randomized test.
const CI_SEEDS: u64 = 40;

fn env(disk: &SimDisk) -> Env {
    // The network is never used by the ledger; it is only built, not dialed.
    let network = SimNetwork { host: "crash".into(), faults: None };
    Env::new(Arc::new(StoppedClock), Arc::new(network), Arc::new(SimStorage(disk.clone())), [3; 32])
}

fn fsp() -> &'static Path {
    Path::new(FSP)
}

fn genesis() -> Block {
    new_block(0, &[], vec![envelope(HeaderType::Config, CHANNEL, "", b"config")])
}

/// The block after `previous`: `txs` transactions of `size` bytes each, IDs `tx-<number>-<i>`.
fn next(previous: &Block, txs: usize, size: usize, salt: u64) -> Block {
    let header = previous.header.clone().unwrap_or_default();
    let number = header.number + 1;
    let envelopes = (0..txs)
        .map(|i| {
            envelope(HeaderType::EndorserTransaction, CHANNEL, &format!("tx-{number}-{i}"), &vec![(salt as u8).wrapping_add(i as u8); size])
        })
        .collect();
    new_block(number, &header_hash(&header), envelopes)
}

/// A disk holding the channel with `height` blocks, closed cleanly.
fn base_disk(height: u64) -> (SimDisk, Vec<Block>) {
    let disk = SimDisk::default();
    let mgr = LedgerMgr::open(&env(&disk), fsp(), "base").unwrap();
    let ledger = mgr.create_from_genesis(&genesis()).unwrap();
    let mut blocks = vec![genesis()];
    while (blocks.len() as u64) < height {
        let block = next(blocks.last().unwrap(), 2, 300, blocks.len() as u64);
        ledger.append(&block).unwrap();
        blocks.push(block);
    }
    (disk, blocks)
}

/// Checks the reopened channel against the blocks that must be there (`acked`), allowing one
/// more (`in_flight`) when given. Returns the blocks now on disk.
fn check(ledger: &ChannelLedger, acked: &[Block], in_flight: Option<&Block>) -> Result<Vec<Block>, String> {
    let height = ledger.height();
    let acked_height = acked.len() as u64;
    let allowed_above = u64::from(in_flight.is_some());
    if height < acked_height || height > acked_height + allowed_above {
        return Err(format!(
            "height {height}, but {acked_height} blocks were acknowledged{}",
            if in_flight.is_some() { " (and one was in flight)" } else { "" }
        ));
    }
    ledger.verify_chain().map_err(|e| format!("hash chain: {e}"))?;
    let mut on_disk: Vec<Block> = acked.to_vec();
    if height > acked_height {
        on_disk.push(in_flight.cloned().unwrap_or_default());
    }
    for (number, expected) in on_disk.iter().enumerate() {
        let stored = ledger.block(number as u64).map_err(|e| e.to_string())?;
        if stored.as_ref() != Some(expected) {
            return Err(format!("block [{number}] is not the one acknowledged"));
        }
        let hash = header_hash(expected.header.as_ref().unwrap());
        if ledger.block_by_hash(&hash).map_err(|e| e.to_string())?.as_ref() != Some(expected) {
            return Err(format!("the hash index does not find block [{number}]"));
        }
        for (index, envelope) in expected.data.as_ref().unwrap().data.iter().enumerate() {
            let tx_id = peer_core::ledger::block::channel_header(envelope).unwrap().tx_id;
            if !tx_id.is_empty() && ledger.tx_location(&tx_id).map_err(|e| e.to_string())? != Some((number as u64, index as u32)) {
                return Err(format!("the transaction index does not find {tx_id} in block [{number}]"));
            }
        }
    }
    if ledger.info().height != height || ledger.info().current_block_hash != header_hash(on_disk.last().unwrap().header.as_ref().unwrap()) {
        return Err("BlockchainInfo does not match the last block".into());
    }
    // Nothing indexed above the height (a rolled-back or lost block).
    let above = next(on_disk.last().unwrap(), 2, 300, 0);
    if ledger.tx_location(&format!("tx-{}-0", above.header.as_ref().unwrap().number)).map_err(|e| e.to_string())?.is_some() {
        return Err("the transaction index points above the height".into());
    }
    Ok(on_disk)
}

/// Power back on and reopen; the channel must be there.
fn reopen(disk: &SimDisk) -> Result<(LedgerMgr, Arc<ChannelLedger>), String> {
    disk.power_on();
    let mgr = LedgerMgr::open(&env(disk), fsp(), "reopen").map_err(|e| format!("reopen failed: {e}"))?;
    if let Some(err) = mgr.channel_errors().get(CHANNEL) {
        return Err(format!("the channel failed to open: {err}"));
    }
    let ledger = mgr.channel(CHANNEL).ok_or("the channel is gone")?;
    Ok((mgr, ledger))
}

/// How many mutating I/O operations `f` does on a copy of `disk`.
fn count_ops(disk: &SimDisk, f: impl FnOnce(&SimDisk)) -> u64 {
    let copy = disk.snapshot();
    let before = copy.mutating_ops();
    f(&copy);
    copy.mutating_ops() - before
}

#[test]
fn a_power_cut_at_every_io_point_of_an_append_keeps_the_chain() {
    let (base, blocks) = base_disk(4);
    let block = next(&blocks[3], 3, 700, 9);
    let append = |disk: &SimDisk, arm: Option<u64>| {
        let mgr = LedgerMgr::open(&env(disk), fsp(), "append").unwrap();
        let ledger = mgr.channel(CHANNEL).unwrap();
        if let Some(n) = arm {
            disk.arm_power_cut(n);
        }
        ledger.append(&block).is_ok()
    };
    // Only the append's own operations (opening happens before arming; closing after it).
    let ops = {
        let disk = base.snapshot();
        let mgr = LedgerMgr::open(&env(&disk), fsp(), "count").unwrap();
        let before = disk.mutating_ops();
        assert!(mgr.channel(CHANNEL).unwrap().append(&block).is_ok());
        disk.mutating_ops() - before
    };
    assert!(ops >= 3, "an append does {ops} mutating operations");
    let mut outcomes = [0u64; 2];
    let mut failures = Vec::new();
    for torn_seed in [None, Some(1), Some(2), Some(3)] {
        // n = ops + 1: the append completes and the power goes right after its acknowledgement.
        for n in 1..=ops + 1 {
            let disk = base.snapshot();
            disk.set_torn_writes(torn_seed);
            let acknowledged = append(&disk, Some(n));
            if disk.is_powered() {
                disk.power_cut();
            }
            let result = reopen(&disk).and_then(|(_mgr, ledger)| {
                let acked = if acknowledged { [blocks.clone(), vec![block.clone()]].concat() } else { blocks.clone() };
                let on_disk = check(&ledger, &acked, Some(&block))?;
                // The store takes appends again.
                let following = next(on_disk.last().unwrap(), 1, 10, 1);
                ledger.append(&following).map_err(|e| format!("append after recovery: {e}"))?;
                Ok(on_disk.len())
            });
            match result {
                Ok(height) => outcomes[height - blocks.len()] += 1,
                Err(e) => failures.push(format!("cut at I/O {n} of {ops} (torn writes: {torn_seed:?}): {e}")),
            }
        }
    }
    assert_eq!(outcomes[1], 4, "the append acknowledged before each cut after it survived");
    println!("append: {ops} I/O points (+1 after it) x 4 fault models: {} recovered the old height, {} the new", outcomes[0], outcomes[1]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_power_cut_at_every_io_point_of_a_channel_creation_leaves_it_created_or_absent() {
    let base = SimDisk::default();
    drop(LedgerMgr::open(&env(&base), fsp(), "init").unwrap());
    let create = |disk: &SimDisk, arm: Option<u64>| {
        let mgr = LedgerMgr::open(&env(disk), fsp(), "create").unwrap();
        if let Some(n) = arm {
            disk.arm_power_cut(n);
        }
        mgr.create_from_genesis(&genesis()).is_ok()
    };
    let opened = count_ops(&base, |d| drop(LedgerMgr::open(&env(d), fsp(), "count").unwrap()));
    let ops = count_ops(&base, |d| assert!(create(d, None))) - opened;
    let (mut created, mut absent) = (0, 0);
    let mut failures = Vec::new();
    for torn_seed in [None, Some(1), Some(2)] {
        for n in 1..=ops {
            let disk = base.snapshot();
            disk.set_torn_writes(torn_seed);
            let acknowledged = create(&disk, Some(n));
            disk.power_on();
            let result = LedgerMgr::open(&env(&disk), fsp(), "reopen").map_err(|e| e.to_string()).and_then(|mgr| {
                if !mgr.channel_errors().is_empty() {
                    return Err(format!("{:?}", mgr.channel_errors()));
                }
                match mgr.channel(CHANNEL) {
                    Some(ledger) => {
                        created += 1;
                        check(&ledger, &[genesis()], None).map(drop)
                    }
                    None if acknowledged => Err("an acknowledged creation was lost".into()),
                    None => {
                        absent += 1;
                        // Creating it again works.
                        mgr.create_from_genesis(&genesis()).map(drop).map_err(|e| format!("creating again: {e}"))
                    }
                }
            });
            if let Err(e) = result {
                failures.push(format!("cut at I/O {n} of {ops} (torn writes: {torn_seed:?}): {e}"));
            }
        }
    }
    println!("create: {ops} I/O points x 3 fault models: {created} created, {absent} absent");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_power_cut_at_every_io_point_of_a_rollback_leaves_the_old_or_the_new_chain() {
    let (base, blocks) = base_disk(30);
    let rollback = |disk: &SimDisk, arm: Option<u64>| {
        if let Some(n) = arm {
            disk.arm_power_cut(n);
        }
        commands::rollback(&env(disk), fsp(), "rollback", CHANNEL, 9).is_ok()
    };
    let ops = count_ops(&base, |d| assert!(rollback(d, None)));
    let mut failures = Vec::new();
    let (mut old, mut new) = (0, 0);
    for torn_seed in [None, Some(1), Some(2)] {
        for n in 1..=ops {
            let disk = base.snapshot();
            disk.set_torn_writes(torn_seed);
            let acknowledged = rollback(&disk, Some(n));
            let result = reopen(&disk).and_then(|(_mgr, ledger)| match ledger.height() {
                30 if !acknowledged => {
                    old += 1;
                    check(&ledger, &blocks, None).map(drop)
                }
                10 => {
                    new += 1;
                    check(&ledger, &blocks[..10], None)?;
                    match ledger.pre_reset_height() {
                        Ok(Some(30)) => Ok(()),
                        other => Err(format!("pre-reset height {other:?} after the rollback")),
                    }
                }
                height => Err(format!("height {height} (acknowledged: {acknowledged})")),
            });
            if let Err(e) = result {
                failures.push(format!("cut at I/O {n} of {ops} (torn writes: {torn_seed:?}): {e}"));
            }
        }
    }
    println!("rollback: {ops} I/O points x 3 fault models: {old} old chain, {new} rolled back");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn knob(name: &str) -> Option<String> {
    // Test knobs, read by the test harness (not by code the simulation runs).
    #[allow(clippy::disallowed_methods)]
    let value = std::env::var(name).ok();
    value.filter(|v| !v.is_empty())
}

/// What one seed did.
#[derive(Default)]
struct Tally {
    appends: u64,
    rollbacks: u64,
    reopens: u64,
    cuts: u64,
}

/// One randomized run: a channel, then steps of appends, rollbacks and reopens, some of them cut
/// short by the power. Returns the tally, or the first violated property.
fn randomized(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let disk = SimDisk::default();
    disk.set_torn_writes(Some(seed));
    let mgr = LedgerMgr::open(&env(&disk), fsp(), "run").map_err(|e| e.to_string())?;
    let ledger = mgr.create_from_genesis(&genesis()).map_err(|e| e.to_string())?;
    let mut open = Some((mgr, ledger));
    let mut acked = vec![genesis()];
    for step in 0..60 {
        let roll = rng.next_u32() % 100;
        let cut = rng.next_u32() % 4 == 0;
        let cut_at = 1 + u64::from(rng.next_u32() % 40);
        let at = |what: &str| format!("step {step} ({what}, cut at I/O {})", if cut { cut_at.to_string() } else { "none".into() });
        if roll < 70 {
            // Append (opening first if closed).
            let (mgr, ledger) = match open.take() {
                Some(open) => open,
                None => reopen(&disk).map_err(|e| format!("{}: {e}", at("open")))?,
            };
            let txs = 1 + rng.next_u32() as usize % 4;
            let size = rng.next_u32() as usize % 2000;
            let block = next(acked.last().unwrap(), txs, size, rng.next_u64());
            if cut {
                disk.arm_power_cut(cut_at);
            }
            let ok = ledger.append(&block).is_ok();
            let struck = !disk.is_powered();
            if !struck && !ok {
                return Err(format!("{}: the append failed with the power on", at("append")));
            }
            if ok {
                tally.appends += 1;
                acked.push(block.clone());
            }
            if struck || cut {
                // A cut armed beyond this append's I/O strikes now, after the acknowledgement.
                if !struck {
                    disk.power_cut();
                }
                tally.cuts += 1;
                drop((mgr, ledger));
                let in_flight = if ok { None } else { Some(&block) };
                let (mgr, ledger) = reopen(&disk).map_err(|e| format!("{}: {e}", at("append")))?;
                acked = check(&ledger, &acked, in_flight).map_err(|e| format!("{}: {e}", at("append")))?;
                open = Some((mgr, ledger));
            } else {
                open = Some((mgr, ledger));
            }
        } else if roll < 80 {
            // Rollback: offline, so the ledger closes first (cleanly).
            drop(open.take());
            if acked.len() < 3 {
                continue;
            }
            let target = u64::from(rng.next_u32()) % (acked.len() as u64 - 2);
            if cut {
                disk.arm_power_cut(cut_at);
            }
            let ok = commands::rollback(&env(&disk), fsp(), "rollback", CHANNEL, target).is_ok();
            let powered = disk.is_powered();
            if powered && !ok {
                return Err(format!("{}: the rollback to {target} failed with the power on", at("rollback")));
            }
            if !powered || cut {
                if powered {
                    disk.power_cut();
                }
                tally.cuts += 1;
            }
            if ok {
                tally.rollbacks += 1;
            }
            let (mgr, ledger) = reopen(&disk).map_err(|e| format!("{}: {e}", at("rollback")))?;
            let kept = target as usize + 1;
            if ok || ledger.height() == kept as u64 {
                acked.truncate(kept);
            }
            acked = check(&ledger, &acked, None).map_err(|e| format!("{}: rollback to {target}: {e}", at("rollback")))?;
            open = Some((mgr, ledger));
        } else {
            // Reopen: a clean close, or a power cut while open (cut first: a drop is a clean close).
            if cut {
                disk.power_cut();
                tally.cuts += 1;
            }
            drop(open.take());
            tally.reopens += 1;
            let (mgr, ledger) = reopen(&disk).map_err(|e| format!("{}: {e}", at("reopen")))?;
            acked = check(&ledger, &acked, None).map_err(|e| format!("{}: {e}", at("reopen")))?;
            open = Some((mgr, ledger));
        }
    }
    Ok(())
}

#[test]
fn randomized_appends_rollbacks_and_reopens_under_torn_power_cuts() {
    let seeds: Vec<u64> = match knob("SIM_SEED") {
        Some(seed) => vec![seed.parse().expect("SIM_SEED is a number")],
        None => (1..=knob("SIM_SEEDS").map_or(CI_SEEDS, |n| n.parse().expect("SIM_SEEDS is a number"))).collect(),
    };
    let mut total = Tally::default();
    let mut violations = Vec::new();
    for &seed in &seeds {
        let mut tally = Tally::default();
        if let Err(e) = randomized(seed, &mut tally) {
            violations.push(format!(
                "seed {seed}: {e}\n  replay: SIM_SEED={seed} cargo test -p sim --test ledger_crash randomized -- --nocapture"
            ));
        }
        total.appends += tally.appends;
        total.rollbacks += tally.rollbacks;
        total.reopens += tally.reopens;
        total.cuts += tally.cuts;
    }
    println!(
        "randomized: {} seeds, {} acknowledged appends, {} rollbacks, {} reopens, {} power cuts, {} violations",
        seeds.len(),
        total.appends,
        total.rollbacks,
        total.reopens,
        total.cuts,
        violations.len()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
