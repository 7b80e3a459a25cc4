//! The RIR statistics parser (`vantage_engines::rir`): a `delegated-<rir>-extended`
//! file; when it parses, every IPv4 record it read answers its own country.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_engines::rir::Delegations;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = Delegations::parse(text, "fuzz") else {
        return;
    };
    assert!(d.len() <= text.lines().count());
    // The first address of every IPv4 record is found (an IPv6 record's first address
    // may lie inside its prefix, where overlapping records, which the registries never
    // publish, can hide it); lookups never panic.
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('|').collect();
        if f.len() >= 7 && f[2] == "ipv4" && matches!(f[6], "allocated" | "assigned") {
            if let Ok(ip) = f[3].parse::<std::net::Ipv4Addr>() {
                let ip = std::net::IpAddr::V4(ip);
                assert!(
                    d.country(ip).is_some(),
                    "record {line:?} not found by its first address"
                );
            }
        }
    }
    let _ = d.country("0.0.0.0".parse().expect("ip"));
    let _ = d.country("255.255.255.255".parse().expect("ip"));
    let _ = d.country("::".parse().expect("ip"));
    let _ = d.country(
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
            .parse()
            .expect("ip"),
    );
});
