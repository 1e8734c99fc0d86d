//! Inputs the fuzzer found that broke an invariant or panicked, one test each, with the fix
//! named. (Their bytes are also in the target's committed corpus as `crash-*`.)
