#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| shunt_fuzz::stack_file(data));
