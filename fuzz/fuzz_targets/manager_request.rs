#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shunt_fuzz::manager_request(data));
