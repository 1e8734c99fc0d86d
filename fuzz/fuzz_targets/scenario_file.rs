//! `scenario_file`: see `fuzz_entry::scenario::scenario_file` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::scenario::scenario_file(data);
});
