//! A damaged disk, page by page: every 4 KiB page of a channel store and of the inventory is
//! overwritten, one at a time, with garbage and (separately) with one flipped bit, and the ledger
//! is started and every offline `node` command run on the result. What must hold every time:
//! nothing panics (a panic fails the test), the other channel is served (or processed) as if
//! nothing happened, no block that differs from the one appended is ever returned, and the
//! damaged file is left byte for byte as it was (where it was, or moved to `quarantine/`) unless
//! the damage was in a part of the file no longer in use and the operation legitimately wrote.

use std::path::Path;
use std::sync::Arc;

use peer_core::ledger::{LedgerError, LedgerMgr, commands};
use proto::common::Block;

use crate::ledger::{HOLDER, channel_with, env, fsp};
use peer_core::testkit::MemStorage;

const PAGE: usize = 4096;
const VICTIM: &str = "/mem/data/ledgersData/chains/victim.redb";
const VICTIM_QUARANTINED: &str = "/mem/data/ledgersData/quarantine/victim.redb";
const INVENTORY: &str = "/mem/data/ledgersData/ledgers.redb";
const INVENTORY_QUARANTINED: &str = "/mem/data/ledgersData/quarantine/ledgers.redb";

/// Two channels: `victim` (the one damaged, 12 blocks) and `bystander` (5 blocks).
fn world() -> (MemStorage, Vec<Block>, Vec<Block>) {
    let storage = Arc::new(MemStorage::default());
    let mgr = LedgerMgr::open(&env(&storage), fsp(), HOLDER).unwrap();
    let victim = channel_with(&mgr, "victim", 12);
    let bystander = channel_with(&mgr, "bystander", 5);
    drop(mgr);
    (storage.copy(), victim, bystander)
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    Garbage,
    BitFlip,
}

fn damage(bytes: &mut [u8], page: usize, how: Damage) {
    let range = page * PAGE..((page + 1) * PAGE).min(bytes.len());
    match how {
        Damage::Garbage => {
            let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ page as u64;
            for byte in &mut bytes[range] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
        }
        Damage::BitFlip => {
            let at = range.start + (page * 7919 + 13) % range.len();
            bytes[at] ^= 1 << (page % 8);
        }
    }
}

/// Every block `ledger` returns is the one appended, and nothing is returned at or above the
/// original height. Returns how many blocks read back.
fn check_served(mgr: &LedgerMgr, channel: &str, original: &[Block]) -> usize {
    let Some(ledger) = mgr.channel(channel) else { return 0 };
    assert!(ledger.height() as usize <= original.len(), "{channel} grew");
    let _ = ledger.info();
    let mut good = 0;
    for (number, expected) in original.iter().enumerate() {
        match ledger.block(number as u64) {
            Ok(Some(block)) => {
                assert_eq!(&block, expected, "{channel} served a block [{number}] that differs from the one appended");
                good += 1;
            }
            Ok(None) => assert!(number as u64 >= ledger.height(), "{channel}: block [{number}] missing below the height"),
            Err(err) => assert!(err.is_damage(), "{channel}: {err}"),
        }
    }
    good
}

/// The damaged file is where it was or in quarantine, unchanged.
fn kept_as_found(disk: &MemStorage, path: &str, quarantined: &str, damaged: &[u8]) -> bool {
    let files = disk.files();
    files.get(Path::new(path)).map(Vec::as_slice) == Some(damaged) || files.get(Path::new(quarantined)).map(Vec::as_slice) == Some(damaged)
}

struct Case<'a> {
    base: &'a MemStorage,
    file: &'a str,
    page: usize,
    how: Damage,
}

impl Case<'_> {
    /// A fresh copy of the world with the page damaged, and the damaged bytes.
    fn disk(&self) -> (Arc<MemStorage>, Vec<u8>) {
        let disk = Arc::new(self.base.copy());
        let mut bytes = disk.read(Path::new(self.file));
        damage(&mut bytes, self.page, self.how);
        disk.overwrite(Path::new(self.file), &bytes);
        (disk, bytes)
    }

    fn name(&self) -> String {
        format!("{} page {} {:?}", self.file, self.page, self.how)
    }
}

fn is_victim_error(err: &LedgerError) -> bool {
    let text = err.to_string();
    text.contains("victim") || text.contains("ledgers.redb")
}

#[test]
fn no_damaged_page_panics_loses_the_other_channel_or_changes_the_damaged_file() {
    let (base, victim, bystander) = world();
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    // Where redb panicked (file:line of its panic), for the record (`--nocapture` prints them).
    let mut panics = std::collections::BTreeSet::<String>::new();
    let mut note_panic = |text: &str| {
        if let Some(start) = text.find("failed on a damaged page (") {
            let what = &text[start + "failed on a damaged page (".len()..];
            panics.insert(what.split(')').next().unwrap_or(what).to_string());
        }
    };
    for (file, quarantined) in [(VICTIM, VICTIM_QUARANTINED), (INVENTORY, INVENTORY_QUARANTINED)] {
        let pages = base.read(Path::new(file)).len().div_ceil(PAGE);
        assert!(pages >= 4, "{file} has {pages} pages");
        for page in 0..pages {
            for how in [Damage::Garbage, Damage::BitFlip] {
                let case = Case { base: &base, file, page, how };
                let name = case.name();

                // Start: the ledger manager opens (and heals) what it can.
                let (disk, damaged) = case.disk();
                match LedgerMgr::open(&env(&disk), fsp(), HOLDER) {
                    Ok(mgr) => {
                        assert_eq!(check_served(&mgr, "bystander", &bystander), 5, "{name}");
                        check_served(&mgr, "victim", &victim);
                        for heal in mgr.healed() {
                            note_panic(&heal.damage.to_string());
                        }
                        if mgr.healed().iter().any(|heal| heal.damage.to_string().contains("failed on a damaged page")) {
                            *outcomes.entry("start: a panic in redb caught").or_default() += 1;
                        }
                        if mgr.healed().is_empty() {
                            *outcomes.entry("start: served as found").or_default() += 1;
                        } else {
                            *outcomes.entry("start: healed").or_default() += 1;
                        }
                        drop(mgr);
                        assert!(kept_as_found(&disk, file, quarantined, &damaged), "{name}: start changed the damaged file");
                    }
                    Err(err) => {
                        assert_eq!(file, INVENTORY, "{name}: a damaged channel store stopped the start: {err}");
                        assert!(matches!(err, LedgerError::InventoryDamaged { .. }), "{name}: {err}");
                        assert!(err.to_string().contains("run 'peer-core node rebuild-dbs'"), "{err}");
                        *outcomes.entry("start: inventory refused").or_default() += 1;
                        assert_eq!(disk.read(Path::new(file)), damaged, "{name}");
                    }
                }

                // Every offline command, each on its own copy.
                type Command = fn(&peer_core::env::Env) -> Result<(), LedgerError>;
                let commands: [(&str, Command); 7] = [
                    ("reset", |env| commands::reset(env, fsp(), HOLDER)),
                    ("rollback victim", |env| commands::rollback(env, fsp(), HOLDER, "victim", 2)),
                    ("rollback bystander", |env| commands::rollback(env, fsp(), HOLDER, "bystander", 2)),
                    ("pause victim", |env| commands::pause(env, fsp(), HOLDER, "victim")),
                    ("resume victim", |env| commands::resume(env, fsp(), HOLDER, "victim")),
                    ("rebuild-dbs", |env| commands::rebuild_dbs(env, fsp(), HOLDER)),
                    ("upgrade-dbs", |env| commands::upgrade_dbs(env, fsp(), HOLDER)),
                ];
                for (command, run) in commands {
                    let (disk, damaged) = case.disk();
                    let result = run(&env(&disk));
                    let refused = result.as_ref().is_err_and(is_victim_error);
                    if let Err(err) = &result {
                        note_panic(&err.to_string());
                        if err.to_string().contains("failed on a damaged page") {
                            *outcomes.entry("command: a panic in redb caught").or_default() += 1;
                        }
                        assert!(is_victim_error(err), "{name}, {command}: an error about the healthy channel: {err}");
                        // Refused: the damaged file untouched, wherever it is.
                        assert!(
                            kept_as_found(&disk, file, quarantined, &damaged),
                            "{name}, {command}: refused but changed the damaged file"
                        );
                    }
                    let inventory_refused = result.as_ref().is_err_and(|e| matches!(e, LedgerError::InventoryDamaged { .. }));
                    // The other channel got the command all the same.
                    let after = LedgerMgr::open(&env(&disk), fsp(), HOLDER);
                    match (&after, command) {
                        (Ok(mgr), "reset") if !inventory_refused => {
                            assert_eq!(mgr.channel("bystander").unwrap().height(), 1, "{name}, {command}")
                        }
                        (Ok(mgr), "rollback bystander") if !inventory_refused => {
                            assert_eq!(mgr.channel("bystander").unwrap().height(), 3, "{name}, {command}")
                        }
                        (Ok(mgr), _) if !inventory_refused => {
                            assert_eq!(mgr.channel("bystander").unwrap().height(), 5, "{name}, {command}")
                        }
                        (Ok(_), _) => {}
                        (Err(err), _) => {
                            assert!(
                                file == INVENTORY && matches!(err, LedgerError::InventoryDamaged { .. }),
                                "{name}, {command}: then start failed: {err}"
                            )
                        }
                    }
                    if let Ok(mgr) = &after {
                        check_served(mgr, "victim", &victim);
                    }
                    // rebuild-dbs repairs: the next start serves both channels.
                    if command == "rebuild-dbs" && !refused {
                        let mgr = after.as_ref().unwrap_or_else(|e| panic!("{name}: start after rebuild-dbs: {e}"));
                        assert!(mgr.channel("victim").is_some(), "{name}: victim not served after rebuild-dbs");
                        assert!(mgr.channel_errors().is_empty(), "{name}: {:?}", mgr.channel_errors());
                    }
                    *outcomes.entry(if result.is_ok() { "command: done" } else { "command: refused" }).or_default() += 1;
                }
            }
        }
    }
    // Every kind of outcome happens: this is not a test that damages nothing.
    assert!(outcomes.get("command: a panic in redb caught").copied().unwrap_or(0) > 0, "{outcomes:?}");
    assert!(outcomes.get("start: healed").copied().unwrap_or(0) > 5, "{outcomes:?}");
    assert!(outcomes.get("start: inventory refused").copied().unwrap_or(0) > 5, "{outcomes:?}");
    println!("{outcomes:?}");
    for panic in &panics {
        println!("caught: {panic}");
    }
}
