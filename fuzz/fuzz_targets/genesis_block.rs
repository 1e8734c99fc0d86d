//! `genesis_block`: see `fuzz_entry::ledger::genesis_block` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::ledger::genesis_block(data);
});
