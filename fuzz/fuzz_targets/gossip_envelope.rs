//! `gossip_envelope`: see `fuzz_entry::gossip::gossip_envelope` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::gossip::gossip_envelope(data);
});
