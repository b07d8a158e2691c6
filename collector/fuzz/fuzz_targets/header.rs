//! Any bytes as a sampled packet header: the first byte picks the sFlow
//! header protocol (Ethernet, IPv4, IPv6 or another), the rest is the
//! header. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&p, rest)) = data.split_first() else {
        return;
    };
    let protocol = match p % 4 {
        0 => 1,
        1 => 11,
        2 => 12,
        _ => p as u32,
    };
    let _ = collector::header::decode(protocol, rest);
});
