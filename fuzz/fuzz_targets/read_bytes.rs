#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tilefarm_fuzz::read_bytes(data));
