//! `block`: see `fuzz_entry::ledger::block` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::ledger::block(data);
});
