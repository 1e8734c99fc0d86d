//! `signed_proposal`: see `fuzz_entry::endorser::signed_proposal` for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fuzz_entry::endorser::signed_proposal(data);
});
