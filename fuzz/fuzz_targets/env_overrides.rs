//! `env_overrides`: see `fuzz_entry::config::env_overrides` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::config::env_overrides(data);
});
