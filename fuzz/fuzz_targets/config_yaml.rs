//! `config_yaml`: see `fuzz_entry::config::config_yaml` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::config::config_yaml(data);
});
