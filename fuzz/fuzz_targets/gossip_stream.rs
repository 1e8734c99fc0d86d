//! `gossip_stream`: see `fuzz_entry::gossip::gossip_stream` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::gossip::gossip_stream(data);
});
