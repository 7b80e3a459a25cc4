//! The RIR statistics parser (`vantage_engines::rir`): a `delegated-<rir>-extended`
//! file; when it parses, every IPv4 record it did not report as a bad line answers
//! its own country, and every bad line it reports is one of the input's lines.
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
    let lines = text.lines().count();
    let bad: std::collections::HashSet<usize> = d.bad_lines().iter().map(|b| b.line).collect();
    assert!(
        bad.iter().all(|&n| n >= 1 && n <= lines),
        "bad line number out of range"
    );
    // Only the first bad lines are kept: past that, which lines were skipped is unknown.
    let all_bad_known = d.bad_line_count() == d.bad_lines().len() as u64;
    // The first address of every IPv4 record is found (an IPv6 record's first address
    // may lie inside its prefix, where overlapping records, which the registries never
    // publish, can hide it); lookups never panic.
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if bad.contains(&(n + 1)) || !all_bad_known {
            continue;
        }
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
